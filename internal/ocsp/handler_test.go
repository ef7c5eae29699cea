package ocsp

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

func post(t *testing.T, h http.Handler, body []byte, ctype string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/ocsp", bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func get(t *testing.T, h http.Handler, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	// Set the URL by hand: httptest.NewRequest would reject some of the encodings proxies produce.
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	req.URL, req.RequestURI = u, target
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler_POST(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(0xbeef)
	f.src.set(serial, Status{Known: true})
	h := Handler(f.r)

	rec := post(t, h, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil), "application/ocsp-request")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ContentTypeResponse {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if r := mustParse(t, rec.Body.Bytes(), f.ca.cert); r.Status != xocsp.Good || r.SerialNumber.Cmp(serial) != 0 {
		t.Fatalf("status %d serial %x", r.Status, r.SerialNumber)
	}
	if rec.Header().Get("ETag") != "" || strings.Contains(rec.Header().Get("Cache-Control"), "max-age") {
		t.Error("POST response carries HTTP caching headers")
	}

	// In-band OCSP errors keep HTTP 200.
	rec = post(t, h, []byte("junk"), "application/ocsp-request")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), xocsp.MalformedRequestErrorResponse) {
		t.Errorf("malformed: status %d body %x", rec.Code, rec.Body.Bytes())
	}
}

func TestHandler_POSTRejections(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	h := Handler(f.r)
	good := makeRequest(t, f.ca.cert, big.NewInt(1), crypto.SHA1, nil)

	if rec := post(t, h, good, "application/json"); rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("wrong content type: %d", rec.Code)
	}
	if rec := post(t, h, good, ""); rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("no content type: %d", rec.Code)
	}
	if rec := post(t, h, make([]byte, MaxRequestSize+1), ContentTypeRequest); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", rec.Code)
	}
	if rec := post(t, h, good, "application/ocsp-request; charset=binary"); rec.Code != http.StatusOK {
		t.Errorf("content type with parameters: %d", rec.Code)
	}
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, "/api/ocsp", bytes.NewReader(good)))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("%s: %d Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

func TestHandler_GETEncodings(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	h := Handler(f.r)
	// Find a serial whose request base64 contains '+' and '/', so every tolerance is exercised.
	var der []byte
	var serial *big.Int
	for i := int64(1); ; i++ {
		serial = big.NewInt(i * 7919)
		der = makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
		if s := base64.StdEncoding.EncodeToString(der); strings.Contains(s, "+") && strings.Contains(s, "/") {
			break
		}
	}
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: f.clock.Now().Add(-time.Hour), Reason: 1})
	std := base64.StdEncoding.EncodeToString(der)
	targets := map[string]string{
		"RFC 5019 url-escaped":    "/api/ocsp/" + url.QueryEscape(std),
		"raw base64 in path":      "/api/ocsp/" + std,
		"plus turned into space":  "/api/ocsp/" + strings.ReplaceAll(url.PathEscape(std), "+", "%20"),
		"escaped twice":           "/api/ocsp/" + url.PathEscape(url.QueryEscape(std)),
		"url-safe, no padding":    "/api/ocsp/" + base64.RawURLEncoding.EncodeToString(der),
		"behind http.StripPrefix": "/" + url.QueryEscape(std),
	}
	for name, target := range targets {
		rec := get(t, h, target, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("%s (%s): HTTP %d", name, target, rec.Code)
			continue
		}
		r, err := xocsp.ParseResponse(rec.Body.Bytes(), f.ca.cert)
		if err != nil || r.Status != xocsp.Revoked || r.SerialNumber.Cmp(serial) != 0 {
			t.Errorf("%s: %v status %v", name, err, r)
		}
	}
	if got := f.src.calls.Load(); got != 1 {
		t.Errorf("lookups = %d, want 1 (all GETs after the first hit the cache)", got)
	}

	for _, target := range []string{"/api/ocsp", "/api/ocsp/", "/api/ocsp/!!!notbase64", "/api/ocsp/%2525zz"} {
		rec := get(t, h, target, nil)
		if rec.Code != http.StatusBadRequest || !bytes.Equal(rec.Body.Bytes(), xocsp.MalformedRequestErrorResponse) {
			t.Errorf("%s: HTTP %d body %x", target, rec.Code, rec.Body.Bytes())
		}
	}
	if rec := get(t, h, "/api/ocsp/"+strings.Repeat("A", maxGETPathLen), nil); rec.Code != http.StatusRequestURITooLong {
		t.Errorf("huge GET: %d", rec.Code)
	}
}

func TestHandler_GETCachingHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{ResponseValidity: time.Hour, CacheMargin: 10 * time.Minute})
	serial := big.NewInt(31337)
	f.src.set(serial, Status{Known: true})
	h := Handler(f.r)
	target := "/api/ocsp/" + url.QueryEscape(base64.StdEncoding.EncodeToString(makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)))
	produced := f.clock.Now()

	rec := get(t, h, target, nil)
	hd := rec.Header()
	want := map[string]string{
		"Content-Type":  ContentTypeResponse,
		"Cache-Control": "max-age=3000, public, no-transform, must-revalidate",
		"Last-Modified": produced.Add(-DefaultBackdate).Format(http.TimeFormat), // thisUpdate, RFC 5019 §6.2
		"Expires":       produced.Add(50 * time.Minute).Format(http.TimeFormat),
	}
	for k, v := range want {
		if hd.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, hd.Get(k), v)
		}
	}
	etag := hd.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
		t.Fatalf("ETag %q", etag)
	}

	// Twenty minutes later the same cached response has a shorter max-age and the same validators.
	f.clock.Advance(20 * time.Minute)
	rec = get(t, h, target, nil)
	if rec.Header().Get("Cache-Control") != "max-age=1800, public, no-transform, must-revalidate" || rec.Header().Get("ETag") != etag {
		t.Errorf("later: Cache-Control %q ETag %q", rec.Header().Get("Cache-Control"), rec.Header().Get("ETag"))
	}
	rec = get(t, h, target, map[string]string{"If-None-Match": `"other", ` + etag})
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d with %d bytes", rec.Code, rec.Body.Len())
	}
	rec = get(t, h, target, map[string]string{"If-None-Match": `"other"`})
	if rec.Code != http.StatusOK {
		t.Errorf("non-matching If-None-Match: %d", rec.Code)
	}

	// A GET carrying a nonce is unique to its requester: no shared caching.
	nonceReq := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nonceExt(t, []byte("0123456789abcdef")))
	rec = get(t, h, "/api/ocsp/"+url.QueryEscape(base64.StdEncoding.EncodeToString(nonceReq)), nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("ETag") != "" {
		t.Errorf("nonce GET: %d Cache-Control %q ETag %q", rec.Code, rec.Header().Get("Cache-Control"), rec.Header().Get("ETag"))
	}

	// An OCSP error response on GET must not be cached either.
	rec = get(t, h, "/api/ocsp/"+url.QueryEscape(base64.StdEncoding.EncodeToString(makeRequest(t, newTestCA(t, nil, "x").cert, serial, crypto.SHA1, nil))), nil)
	if !bytes.Equal(rec.Body.Bytes(), xocsp.UnauthorizedErrorResponse) || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("unauthorized GET: body %x Cache-Control %q", rec.Body.Bytes(), rec.Header().Get("Cache-Control"))
	}
}

func TestHandler_HEAD(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	f.src.set(big.NewInt(4), Status{Known: true})
	srv := httptest.NewServer(Handler(f.r))
	defer srv.Close()
	target := srv.URL + "/api/ocsp/" + url.QueryEscape(base64.StdEncoding.EncodeToString(makeRequest(t, f.ca.cert, big.NewInt(4), crypto.SHA1, nil)))
	resp, err := http.Head(target)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("ETag") == "" {
		t.Errorf("HEAD: %d, %d bytes, ETag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}
}

// TestOpenSSLInterop runs the openssl ocsp client against the handler over loopback.
func TestOpenSSLInterop(t *testing.T) {
	t.Parallel()
	opensslPath, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is required for the interoperability test: ", err)
	}
	f := newFixture(t, Options{Clock: systemClockForInterop{}})
	goodLeaf := f.ca.issue(t, big.NewInt(0x10001))
	revokedLeaf := f.ca.issue(t, big.NewInt(0x10002))
	f.src.set(goodLeaf.SerialNumber, Status{Known: true})
	f.src.set(revokedLeaf.SerialNumber, Status{Known: true, Revoked: true, RevokedAt: time.Now().Add(-time.Hour), Reason: xocsp.KeyCompromise})

	srv := httptest.NewServer(Handler(f.r))
	defer srv.Close()

	write := pemWriter(t)
	caPath := write("ca.pem", f.ca.cert.Raw)
	goodPath, revokedPath := write("good.pem", goodLeaf.Raw), write("revoked.pem", revokedLeaf.Raw)
	tests := []struct {
		name  string
		leaf  string
		extra []string
		want  []string
	}{
		// openssl sends a nonce by default and warns ("WARNING: no nonce in response") unless the response
		// echoes it in responseExtensions.
		{"good with nonce", goodPath, nil, []string{"Response verify OK", "good.pem: good", "OCSP Nonce"}},
		{"good without nonce", goodPath, []string{"-no_nonce"}, []string{"Response verify OK", "good.pem: good"}},
		{"revoked", revokedPath, nil, []string{"Response verify OK", "revoked.pem: revoked", "Reason: keyCompromise"}},
	}
	for _, tt := range tests {
		args := append([]string{"ocsp", "-issuer", caPath, "-cert", tt.leaf, "-url", srv.URL + "/api/ocsp",
			"-CAfile", caPath, "-resp_text"}, tt.extra...)
		out, err := exec.CommandContext(t.Context(), opensslPath, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: openssl ocsp: %v\n%s", tt.name, err, out)
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", tt.name, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, out)
			}
		}
		if strings.Contains(string(out), "WARNING") || strings.Contains(string(out), "error") {
			t.Errorf("%s: openssl complained:\n%s", tt.name, out)
		}
	}
	if f.ca.signer.Calls() != 1 {
		t.Errorf("CA signer calls = %d, want 1", f.ca.signer.Calls())
	}
}

// systemClockForInterop is the wall clock: openssl checks response times against it.
type systemClockForInterop struct{}

func (systemClockForInterop) Now() time.Time { return time.Now() }

// pemWriter returns a function that writes a certificate as PEM into a new temporary directory and returns the
// file's path, for the openssl command line.
func pemWriter(t *testing.T) func(name string, der []byte) string {
	dir := t.TempDir()
	return func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
