package ocsp

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// FuzzHandler drives the HTTP handler with arbitrary methods, paths, content types, bodies and If-None-Match
// values. Besides not panicking it checks: every answer has one of the documented HTTP statuses for its method;
// every OCSP body parses (a response or an OCSP error status); a GET that decodes answers what the same DER
// answers by POST (same OCSP status and serial); a 400 on GET is malformedRequest; a 304 comes only with an
// If-None-Match; a cacheable GET carries a non-negative max-age; and one call allocates a bounded amount.
func FuzzHandler(f *testing.F) {
	fx := newFixture(f, Options{})
	fx.src.set(big.NewInt(1), Status{Known: true})
	fx.src.set(big.NewInt(2), Status{Known: true, Revoked: true, RevokedAt: fx.clock.Now().Add(-time.Hour), Reason: 1})
	h := Handler(fx.r)

	good := makeRequest(f, fx.ca.cert, big.NewInt(1), crypto.SHA1, nil)
	revoked := makeRequest(f, fx.ca.cert, big.NewInt(2), crypto.SHA256, nil)
	nonce := makeRequest(f, fx.ca.cert, big.NewInt(1), crypto.SHA1, nonceExt(f, []byte("0123456789abcdef")))
	for _, der := range [][]byte{good, revoked, nonce} {
		std := base64.StdEncoding.EncodeToString(der)
		f.Add(uint8(0), "/api/ocsp/"+url.QueryEscape(std), "", []byte(nil), "")
		f.Add(uint8(0), "/api/ocsp/"+base64.RawURLEncoding.EncodeToString(der), "", []byte(nil), "*")
		f.Add(uint8(1), "/"+url.PathEscape(url.QueryEscape(std)), "", []byte(nil), `W/"x", "y"`)
		f.Add(uint8(2), "/api/ocsp", ContentTypeRequest, der, "")
	}
	f.Add(uint8(2), "/api/ocsp", "application/ocsp-request; charset=binary", []byte("junk"), "")
	f.Add(uint8(2), "/api/ocsp", "text/plain", good, "")
	f.Add(uint8(0), "/api/ocsp/%2525zz", "", []byte(nil), "")
	f.Add(uint8(3), "/api/ocsp", "", []byte(nil), "")

	f.Fuzz(func(t *testing.T, m uint8, target, ctype string, body []byte, inm string) {
		if !strings.HasPrefix(target, "/") || len(target) > maxGETPathLen+16 {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		method := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut}[m%4]
		serve := func(method string, body []byte, ctype, inm string) *httptest.ResponseRecorder {
			req := httptest.NewRequest(method, "/", bytes.NewReader(body))
			req.URL, req.RequestURI = u, target
			if ctype != "" {
				req.Header.Set("Content-Type", ctype)
			}
			if inm != "" {
				req.Header.Set("If-None-Match", inm)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec
		}

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rec := serve(method, body, ctype, inm)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20+4*uint64(len(target)+len(body)) {
			t.Errorf("%s %q (%d-byte body): one call allocated %d KiB", method, target, len(body), alloc>>10)
		}

		allowed := map[string][]int{
			http.MethodGet:  {http.StatusOK, http.StatusNotModified, http.StatusBadRequest, http.StatusRequestURITooLong},
			http.MethodHead: {http.StatusOK, http.StatusNotModified, http.StatusBadRequest, http.StatusRequestURITooLong},
			http.MethodPost: {http.StatusOK, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge},
			http.MethodPut:  {http.StatusMethodNotAllowed},
		}[method]
		ok := false
		for _, s := range allowed {
			ok = ok || rec.Code == s
		}
		if !ok {
			t.Fatalf("%s %q: HTTP %d, want one of %v", method, target, rec.Code, allowed)
		}
		if rec.Code == http.StatusNotModified && inm == "" {
			t.Fatalf("304 without If-None-Match")
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			return
		}
		if ct := rec.Header().Get("Content-Type"); ct != ContentTypeResponse {
			t.Fatalf("HTTP %d with Content-Type %q", rec.Code, ct)
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
			t.Fatalf("Content-Length %q for %d bytes", cl, rec.Body.Len())
		}
		if rec.Code == http.StatusBadRequest {
			if !bytes.Equal(rec.Body.Bytes(), xocsp.MalformedRequestErrorResponse) {
				t.Fatalf("400 with body %x", rec.Body.Bytes())
			}
			if _, err := decodeGETPath(u.EscapedPath()); err == nil {
				t.Fatalf("400 for a path that decodes")
			}
			return
		}
		got := outcome(t, rec.Body.Bytes(), fx)
		if method == http.MethodPost {
			return
		}
		der, err := decodeGETPath(u.EscapedPath())
		if err != nil {
			t.Fatalf("GET answered 200 for a path that does not decode: %v", err)
		}
		if want := outcome(t, serve(http.MethodPost, der, ContentTypeRequest, "").Body.Bytes(), fx); got != want {
			t.Fatalf("GET %q answered %q, POST of its DER %q", target, got, want)
		}
		if cc := rec.Header().Get("Cache-Control"); strings.Contains(cc, "max-age=") {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.Split(strings.SplitAfter(cc, "max-age=")[1], ",")[0], ","))
			if err != nil || n < 0 {
				t.Fatalf("Cache-Control %q", cc)
			}
			if _, err := http.ParseTime(rec.Header().Get("Expires")); err != nil {
				t.Fatalf("Expires %q: %v", rec.Header().Get("Expires"), err)
			}
		}
	})
}

// outcome summarises an OCSP response body: its error status, or its certificate status and serial.
func outcome(t *testing.T, der []byte, fx *fixture) string {
	t.Helper()
	r, err := xocsp.ParseResponse(der, fx.ca.cert)
	var re xocsp.ResponseError
	switch {
	case err == nil:
		return "status " + strconv.Itoa(r.Status) + " serial " + r.SerialNumber.String()
	case errors.As(err, &re):
		return "error " + re.Error()
	}
	t.Fatalf("unparseable OCSP response %x: %v", der, err)
	return ""
}
