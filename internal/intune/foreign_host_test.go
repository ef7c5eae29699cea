package intune_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/intune"
)

// scopedCred hands out a recognisable Intune token, so a test can see where it went.
type scopedCred struct{}

func (scopedCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok := "graph-token"
	if strings.Contains(o.Scopes[0], "manage.microsoft.com") {
		tok = "INTUNE-BEARER"
	}
	return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// seenRequests records what reached a server that is not Intune.
type seenRequests struct {
	mu     sync.Mutex
	auth   []string
	bodies []string
}

func (s *seenRequests) handler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	_, _ = io.WriteString(w, `{"code":"Success","errorDescription":""}`)
}

func (s *seenRequests) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.auth)
}

// TestRedirectIsNotFollowed: the discovered validation service answers 307 to a plain-http location (same host
// name, other scheme and port: Go keeps the Authorization header then). The client must not re-send the CSR with
// its challenge, nor the token, nor take that server's Success as Intune's.
func TestRedirectIsNotFollowed(t *testing.T) {
	other := &seenRequests{}
	plain := httptest.NewServer(http.HandlerFunc(other.handler))
	defer plain.Close()
	var svc *httptest.Server
	svc = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/endpoints"):
			fmt.Fprintf(w, `{"value":[{"providerName":"ScepRequestValidationFEService","uri":"%s/scep"}]}`, svc.URL)
		case strings.HasSuffix(r.URL.Path, "/ScepActions/validateRequest"):
			w.Header().Set("Location", plain.URL+"/anything")
			w.WriteHeader(http.StatusTemporaryRedirect)
		default:
			http.NotFound(w, r)
		}
	}))
	defer svc.Close()
	c, err := intune.New(intune.Config{Credential: scopedCred{}, ProviderNameAndVersion: "test/1",
		GraphBase: svc.URL + "/", HTTPClient: svc.Client(), CallTimeout: 5 * time.Second, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = c.ValidateRequest(t.Context(), "tx-redirect", makeCSR(t, csrSpec{password: "a-challenge", rsaBits: 2048}))
	if err == nil {
		t.Fatal("validateRequest succeeded on a redirect")
	}
	var he *intune.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusTemporaryRedirect {
		t.Errorf("err = %v, want the 307 as an HTTP error", err)
	}
	if n := other.count(); n != 0 {
		t.Errorf("the redirect target got %d request(s) (token %q)", n, other.auth)
	}
	if svc.Client().CheckRedirect != nil {
		t.Error("the caller's HTTP client was changed")
	}
}

// TestDiscoveredHostOutsideIntuneIgnored: a discovery answer naming a host outside the Intune resource's domain
// (manage.microsoft.com for the default resource) is ignored like an http URI: the Intune token is never sent
// there, and with no usable entry the call fails closed.
func TestDiscoveredHostOutsideIntuneIgnored(t *testing.T) {
	other := &seenRequests{}
	var graph *httptest.Server
	graph = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/endpoints") {
			_, port, _ := net.SplitHostPort(graph.Listener.Addr().String())
			fmt.Fprintf(w, `{"value":[{"providerName":"ScepRequestValidationFEService","uri":"https://not-intune.example.net:%s/x"},`+
				`{"providerName":"PkiConnectorFEService","uri":"https://manage.microsoft.com.example.net:%s/y"}]}`, port, port)
			return
		}
		other.handler(w, r)
	}))
	defer graph.Close()
	tr := graph.Client().Transport.(*http.Transport).Clone()
	addr := graph.Listener.Addr().String()
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) { return dial(ctx, network, addr) }
	tr.TLSClientConfig.InsecureSkipVerify = true // the test certificate names 127.0.0.1; a real foreign host has its own
	c, err := intune.New(intune.Config{Credential: scopedCred{}, ProviderNameAndVersion: "test/1",
		GraphBase: graph.URL + "/", HTTPClient: &http.Client{Transport: tr}, CallTimeout: 5 * time.Second, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = c.ValidateRequest(t.Context(), "tx", makeCSR(t, csrSpec{password: "a-challenge", rsaBits: 2048}))
	if !errors.Is(err, intune.ErrServiceNotFound) {
		t.Errorf("err = %v, want ErrServiceNotFound", err)
	}
	if _, err := c.DownloadRevocationRequests(t.Context(), 10); !errors.Is(err, intune.ErrServiceNotFound) {
		t.Errorf("download err = %v, want ErrServiceNotFound", err)
	}
	if n := other.count(); n != 0 {
		t.Errorf("a foreign host got %d request(s) with %q", n, other.auth)
	}
}
