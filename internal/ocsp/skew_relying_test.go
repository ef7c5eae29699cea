package ocsp

import (
	"crypto"
	"math/big"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// aheadClock is the wall clock moved forward: the responder's view when the relying party's clock runs behind.
type aheadClock time.Duration

func (c aheadClock) Now() time.Time { return time.Now().Add(time.Duration(c)) }

// TestRelyingPartyClockBehind asks the responder with openssl ocsp from a relying party whose clock runs two minutes
// behind the responder's and that allows no skew itself (-validity_period 0; the JDK allows 15 minutes, OpenSSL's
// other callers what they pass): a thisUpdate at the signing instant is in that party's future and fails as
// "status not yet valid".
func TestRelyingPartyClockBehind(t *testing.T) {
	t.Parallel()
	opensslPath, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is required for the relying-party test: ", err)
	}
	const skew = 2 * time.Minute
	f := newFixture(t, Options{Clock: aheadClock(skew)})
	leaf := f.ca.issue(t, big.NewInt(0x5eed))
	f.src.set(leaf.SerialNumber, Status{Known: true})
	srv := httptest.NewServer(Handler(f.r))
	defer srv.Close()

	write := pemWriter(t)
	caPath, leafPath := write("ca.pem", f.ca.cert.Raw), write("leaf.pem", leaf.Raw)
	out, err := exec.CommandContext(t.Context(), opensslPath, "ocsp", "-issuer", caPath, "-cert", leafPath,
		"-url", srv.URL+"/api/ocsp", "-CAfile", caPath, "-no_nonce", "-validity_period", "0").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl ocsp: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "leaf.pem: good") || strings.Contains(string(out), "WARNING") ||
		strings.Contains(string(out), "not yet valid") {
		t.Errorf("a relying party %v behind rejects the response:\n%s", skew, out)
	}

	// The same from Go's parser: thisUpdate lies the back-date before the signing, never before the responder
	// certificate's notBefore, and nextUpdate still lies the full validity after the signing.
	before := time.Now().Add(skew).Truncate(time.Second)
	resp := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, leaf.SerialNumber, crypto.SHA256, nonceExt(t, []byte("n")))), f.ca.cert)
	after := time.Now().Add(skew)
	if got := resp.ProducedAt.Sub(resp.ThisUpdate); got < DefaultBackdate || got >= DefaultBackdate+time.Second {
		t.Errorf("thisUpdate %v is %v before producedAt %v, want %v", resp.ThisUpdate, got, resp.ProducedAt, DefaultBackdate)
	}
	if resp.ThisUpdate.Before(before.Add(-DefaultBackdate)) || resp.ThisUpdate.After(after.Add(-DefaultBackdate)) {
		t.Errorf("thisUpdate %v not %v before the signing (between %v and %v)", resp.ThisUpdate, DefaultBackdate, before, after)
	}
	if resp.ThisUpdate.Before(resp.Certificate.NotBefore) {
		t.Errorf("thisUpdate %v precedes the responder certificate's notBefore %v", resp.ThisUpdate, resp.Certificate.NotBefore)
	}
	if got := resp.NextUpdate.Sub(resp.ThisUpdate); got != DefaultResponseValidity+DefaultBackdate {
		t.Errorf("nextUpdate − thisUpdate = %v, want the validity plus the back-date", got)
	}
}
