package keyvault_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/transport"
)

// padded pads every successful answer's JSON with whitespace past keyvault.MaxAnswerBytes: still a valid answer,
// which the SDK would read whole and accept without the cap.
type padded struct{ inner policy.Transporter }

func (p padded) Do(req *http.Request) (*http.Response, error) {
	resp, err := p.inner.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	body = append(body, bytes.Repeat([]byte{' '}, keyvault.MaxAnswerBytes)...)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), -1
	resp.Header.Del("Content-Length")
	return resp, nil
}

// TestAnswersAreCapped: the keys client NewClient builds and the secrets client Resolve builds read at most
// MaxAnswerBytes of an answer; the same answers pass through clients without the cap.
func TestAnswersAreCapped(t *testing.T) {
	testKeys(t)
	f := kvfake.New(t)
	f.MustImportKey(t, "ca", rsaKey, kvfake.KeyOptions{})
	f.SetSecret("static-challenge", "a-long-static-secret")
	opts := f.ClientOptions()
	opts.Transport = padded{inner: opts.Transport}

	c, err := keyvault.NewClient(f.URL(), f.Credential(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetKey(t.Context(), "ca", "", nil); !errors.Is(err, transport.ErrAnswerTooLarge) {
		t.Errorf("GetKey through NewClient's client: %v, want ErrAnswerTooLarge", err)
	}
	if _, err := f.Client(t).GetKey(t.Context(), "ca", "", nil); err != nil {
		t.Fatalf("the fake's own client: %v (the padded answer must be valid)", err)
	}

	sopts := &azsecrets.ClientOptions{ClientOptions: opts.ClientOptions, DisableChallengeResourceVerification: true}
	ref := keyvault.Reference{VaultURL: f.URL() + "/", Name: "static-challenge"}
	if _, err := keyvault.Resolve(t.Context(), ref, f.URL(), f.Credential(), sopts); !errors.Is(err, keyvault.ErrUnavailable) ||
		!strings.Contains(err.Error(), transport.ErrAnswerTooLarge.Error()) {
		t.Errorf("Resolve: %v, want unavailable: answer too large", err)
	}
}

// counting counts the requests that reach the vault.
type counting struct {
	inner policy.Transporter
	n     atomic.Int32
}

func (c *counting) Do(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.inner.Do(req)
}

// TestOversizedAnswerNotAskedAgain: Key's own retries (azcore's are off) take an answer over the cap for an
// outage and do not read another one: the bearer challenge and one read reach the vault.
func TestOversizedAnswerNotAskedAgain(t *testing.T) {
	testKeys(t)
	f := kvfake.New(t)
	f.MustImportKey(t, "ca", rsaKey, kvfake.KeyOptions{})
	opts := f.ClientOptions()
	cnt := &counting{inner: padded{inner: opts.Transport}}
	opts.Transport = cnt
	c, err := keyvault.NewClient(f.URL(), f.Credential(), opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = keyvault.New(t.Context(), c, "ca", "", keyvault.Options{
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if !errors.Is(err, keyvault.ErrUnavailable) || !errors.Is(err, transport.ErrAnswerTooLarge) {
		t.Fatalf("New = %v, want unavailable: answer too large", err)
	}
	if n := cnt.n.Load(); n != 2 {
		t.Errorf("%d requests, want 2: the challenge and one read", n)
	}
}
