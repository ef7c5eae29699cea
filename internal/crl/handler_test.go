package crl

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHandler_DERByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Validity: 24 * time.Hour})
	f.src.entries = []Entry{{Serial: big.NewInt(42), RevokedAt: f.clock.Now().Add(-time.Hour), Reason: 1}}
	srv := httptest.NewServer(Handler(f.pub))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/crl")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c, _ := f.pub.Current(t.Context())
	if string(body) != string(c.DER) {
		t.Fatal("body is not the CRL DER")
	}
	h := resp.Header
	checks := map[string]string{
		"Content-Type":  "application/pkix-crl",
		"ETag":          c.ETag,
		"Cache-Control": "public, max-age=43200", // until the half-life refresh point
		"Last-Modified": c.Signed.Format(http.TimeFormat),
		"Expires":       f.clock.Now().Add(12 * time.Hour).Format(http.TimeFormat),
		"Vary":          "Accept",
	}
	for k, want := range checks {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// Six hours later the max-age shrinks: caches must not keep it past the refresh point.
	f.clock.Advance(6 * time.Hour)
	resp, err = http.Get(srv.URL + "/api/crl")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=21600" {
		t.Errorf("Cache-Control later = %q", got)
	}
}

func TestHandler_PEMOnAccept(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	h := Handler(f.pub)
	tests := []struct {
		accept  string
		wantPEM bool
	}{
		{"", false},
		{"*/*", false},
		{"application/pkix-crl", false},
		{"application/x-pem-file", true},
		{"text/html, application/x-pem-file;q=0.9", true},
		{"application/pkix-crl;q=1, application/x-pem-file;q=0.5", false},
		{"application/x-pem-file;q=0", false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/api/crl", nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("Accept %q: status %d", tt.accept, rec.Code)
		}
		isPEM := strings.HasPrefix(rec.Body.String(), "-----BEGIN X509 CRL-----")
		if isPEM != tt.wantPEM {
			t.Errorf("Accept %q: PEM = %v, want %v", tt.accept, isPEM, tt.wantPEM)
		}
		wantType := ContentTypeDER
		if tt.wantPEM {
			wantType = ContentTypePEM
			if block, _ := pem.Decode(rec.Body.Bytes()); block == nil || block.Type != "X509 CRL" {
				t.Errorf("Accept %q: body is not a PEM CRL", tt.accept)
			}
		}
		if got := rec.Header().Get("Content-Type"); got != wantType {
			t.Errorf("Accept %q: Content-Type %q, want %q", tt.accept, got, wantType)
		}
	}
}

func TestHandler_ConditionalGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	h := Handler(f.pub)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/crl", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	req := httptest.NewRequest(http.MethodGet, "/api/crl", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("If-None-Match current: status %d, %d body bytes; want 304 and none", rec.Code, rec.Body.Len())
	}
	if rec.Header().Get("ETag") != etag {
		t.Error("304 lacks the ETag")
	}

	// The PEM representation has its own tag: the DER tag does not validate it.
	req = httptest.NewRequest(http.MethodGet, "/api/crl", nil)
	req.Header.Set("If-None-Match", etag)
	req.Header.Set("Accept", ContentTypePEM)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("ETag") == etag {
		t.Fatalf("PEM with DER ETag: status %d, etag %q", rec.Code, rec.Header().Get("ETag"))
	}

	// After a revocation the old tag no longer matches.
	f.pub.Invalidate()
	req = httptest.NewRequest(http.MethodGet, "/api/crl", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("ETag") == etag {
		t.Fatalf("stale ETag after Invalidate: status %d", rec.Code)
	}
}

func TestHandler_HeadHasNoBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	rec := httptest.NewRecorder()
	Handler(f.pub).ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/api/crl", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("ETag") == "" {
		t.Fatalf("HEAD: status %d, body %d bytes, etag %q", rec.Code, rec.Body.Len(), rec.Header().Get("ETag"))
	}
}

func TestHandler_MethodNotAllowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		rec := httptest.NewRecorder()
		Handler(f.pub).ServeHTTP(rec, httptest.NewRequest(m, "/api/crl", strings.NewReader("x")))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d, Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
	if f.ca.signer.Calls() != 0 {
		t.Error("a rejected method caused a CRL generation")
	}
}

func TestHandler_UnavailableIs503Problem(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{RetryBackoff: 45 * time.Second})
	f.src.setErr(errStoreDown)
	rec := httptest.NewRecorder()
	Handler(f.pub).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/crl", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != "45" {
		t.Errorf("Retry-After = %q, want 45", got)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("Content-Type = %q", got)
	}
	var p map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if p["type"] != "about:blank" || p["status"] != float64(503) || p["code"] != "crl_unavailable" || p["title"] == "" {
		t.Errorf("problem = %v", p)
	}
	if strings.Contains(rec.Body.String(), errStoreDown.Error()) {
		t.Error("internal error text leaked to the client")
	}
}

// TestOpenSSLVerifiesCRL checks interoperability with an independent implementation.
func TestOpenSSLVerifiesCRL(t *testing.T) {
	t.Parallel()
	opensslPath, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is required for the interoperability test: ", err)
	}
	f := newFixture(t, Options{})
	f.src.entries = []Entry{
		{Serial: big.NewInt(0x0102030405), RevokedAt: f.clock.Now().Add(-time.Hour), Reason: 1},
		{Serial: big.NewInt(99), RevokedAt: f.clock.Now().Add(-2 * time.Hour)},
	}
	c, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crlPath, caPath := filepath.Join(dir, "ca.crl"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(crlPath, c.DER, 0o600); err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.ca.cert.Raw})
	if err := os.WriteFile(caPath, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), opensslPath, "crl", "-inform", "DER", "-in", crlPath,
		"-CAfile", caPath, "-noout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl did not verify the CRL:\n%s", out)
	}

	out, err = exec.CommandContext(t.Context(), opensslPath, "crl", "-inform", "DER", "-in", crlPath,
		"-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl -text: %v\n%s", err, out)
	}
	for _, want := range []string{"X509v3 CRL Number", "Serial Number: 0102030405", "Key Compromise", "Serial Number: 63"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("openssl -text lacks %q:\n%s", want, out)
		}
	}
}

// TestHandler_IfModifiedSinceIsNoValidator: a client (or an HTTP cache) revalidating with If-Modified-Since gets
// the current CRL, never 304: not when the current CRL was signed a minute after the client's (by another
// instance, say), and not when a revocation made the next CRL within the same second, which an HTTP date cannot
// tell apart. Only the strong ETag earns a 304.
func TestHandler_IfModifiedSinceIsNoValidator(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	h := Handler(f.pub)
	get := func(header, value string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/crl", nil)
		if header != "" {
			req.Header.Set(header, value)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	first := get("", "")
	if first.Code != http.StatusOK || first.Header().Get("Last-Modified") == "" {
		t.Fatalf("first download: status %d, Last-Modified %q", first.Code, first.Header().Get("Last-Modified"))
	}
	if rec := get("If-Modified-Since", first.Header().Get("Last-Modified")); rec.Code != http.StatusOK {
		t.Errorf("If-Modified-Since the CRL's own date: status %d, want 200", rec.Code)
	}

	// A revocation, and the next CRL signed within the same second.
	f.src.add(Entry{Serial: big.NewInt(0x5EC), RevokedAt: f.clock.Now(), Reason: 1})
	f.pub.Invalidate()
	f.clock.Advance(400 * time.Millisecond)
	rec := get("If-Modified-Since", first.Header().Get("Last-Modified"))
	if rec.Code != http.StatusOK || rec.Header().Get("Last-Modified") != first.Header().Get("Last-Modified") {
		t.Fatalf("If-Modified-Since after a revocation in the same second: status %d, Last-Modified %q; want 200 "+
			"with the same date", rec.Code, rec.Header().Get("Last-Modified"))
	}
	rl, err := x509.ParseRevocationList(rec.Body.Bytes())
	if err != nil || len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("the CRL served after the revocation: %v, %v; want it listed", rl, err)
	}
	if rec := get("If-None-Match", first.Header().Get("ETag")); rec.Code != http.StatusOK {
		t.Errorf("If-None-Match with the old CRL's ETag: status %d, want 200", rec.Code)
	}

	// A CRL signed a minute later.
	f.clock.Advance(time.Minute)
	f.pub.Invalidate()
	if rec := get("If-Modified-Since", first.Header().Get("Last-Modified")); rec.Code != http.StatusOK {
		t.Errorf("If-Modified-Since a minute before the current CRL: status %d, want 200", rec.Code)
	}
	cur := get("", "")
	if rec := get("If-None-Match", cur.Header().Get("ETag")); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match with the current ETag: status %d, want 304", rec.Code)
	}
}

// TestHandler_OutdatedCRLNotCachedUntilRefresh: after a revocation whose CRL cannot be signed yet (Key Vault or
// the store down), the handler still serves the last CRL, which lacks the revocation; HTTP caches must not keep it
// until its half-life refresh point, or relying parties behind them would miss the revocation for hours after the
// outage ended.
func TestHandler_OutdatedCRLNotCachedUntilRefresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Validity: 24 * time.Hour, RetryBackoff: 30 * time.Second})
	h := Handler(f.pub)
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/crl", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		return rec
	}
	first := get()
	if got := first.Header().Get("Cache-Control"); got != "public, max-age=43200" {
		t.Fatalf("Cache-Control of a fresh CRL = %q", got)
	}

	f.clock.Advance(time.Hour)
	f.src.add(Entry{Serial: big.NewInt(7), RevokedAt: f.clock.Now(), Reason: 1})
	f.pub.Invalidate()
	f.ca.signer.Fail(errSignerDown)
	stale := get()
	if stale.Body.String() != first.Body.String() {
		t.Fatal("the outdated CRL was not served while no new one can be signed")
	}
	if got := stale.Header().Get("Cache-Control"); got != "public, max-age=0" {
		t.Errorf("Cache-Control of a CRL that lacks a known revocation = %q, want public, max-age=0", got)
	}
	if got, want := stale.Header().Get("Expires"), f.clock.Now().Format(http.TimeFormat); got != want {
		t.Errorf("Expires = %q, want %q", got, want)
	}

	// Key Vault is back: once the backoff has passed the next download gets the CRL with the revocation, cacheable.
	f.ca.signer.Fail(nil)
	f.clock.Advance(31 * time.Second)
	fresh := get()
	rl, err := x509.ParseRevocationList(fresh.Body.Bytes())
	if err != nil || len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL after the outage: %v %v", rl, err)
	}
	if got := fresh.Header().Get("Cache-Control"); got != "public, max-age=43200" {
		t.Errorf("Cache-Control of the new CRL = %q", got)
	}
}
