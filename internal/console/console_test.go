package console

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMSALBundlePinned: the checked-in bundle is exactly the pinned npm release (`make console-msal` reproduces
// it), and the Makefile pins the same version.
func TestMSALBundlePinned(t *testing.T) {
	data, err := assets.ReadFile("assets/vendor/msal-browser.min.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != MSALSHA256 {
		t.Errorf("msal-browser.min.js SHA-256 %s, want %s (re-run make console-msal and update MSALSHA256)", got, MSALSHA256)
	}
	if !strings.HasPrefix(string(data), "/*! @azure/msal-browser v"+MSALVersion+" ") {
		t.Errorf("bundle header %q does not name v%s", string(data[:60]), MSALVersion)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^MSAL_VERSION\s*:=\s*(\S+)`).FindSubmatch(mk)
	if m == nil || string(m[1]) != MSALVersion {
		t.Errorf("Makefile MSAL_VERSION = %q, want %s", m, MSALVersion)
	}
	if _, err := assets.ReadFile("assets/vendor/msal-browser.LICENSE.txt"); err != nil {
		t.Error("the MSAL license must ship with the bundle")
	}
}

// TestNoInlineCode: the page has no inline script, style attribute or event handler attribute, which the CSP
// would block anyway; this catches them before a browser does.
func TestNoInlineCode(t *testing.T) {
	html, _ := assets.ReadFile("assets/index.html")
	for _, bad := range []*regexp.Regexp{regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), regexp.MustCompile(`(?i)\sstyle=`),
		regexp.MustCompile(`(?i)\son[a-z]+=`), regexp.MustCompile(`<style`), regexp.MustCompile(`(?i)https?://`)} {
		if bad.Match(html) {
			t.Errorf("index.html matches %s", bad)
		}
	}
	js, _ := assets.ReadFile("assets/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage.setItem"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

// TestLinksWithAnArgumentNameACertificate: the router takes an argument only for the certificate view; a link such
// as "#/certificates/<serial>" would silently open the search page instead of the certificate it names.
func TestLinksWithAnArgumentNameACertificate(t *testing.T) {
	js, _ := assets.ReadFile("assets/app.js")
	links := regexp.MustCompile(`"#/([a-z]+)/`).FindAllSubmatch(js, -1)
	if len(links) == 0 {
		t.Fatal("no links to a certificate found in app.js")
	}
	for _, m := range links {
		if string(m[1]) != "certificate" {
			t.Errorf("app.js links to %s with an argument; only #/certificate/<serial> takes one", m[0])
		}
	}
}

func serve(t *testing.T, h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	h, err := New(Config{Mode: ModeEntra, ClientID: "11111111-2222-3333-4444-555555555555",
		Scope:     "api://11111111-2222-3333-4444-555555555555/access_as_user",
		Authority: "https://login.microsoftonline.com/66666666-7777-8888-9999-000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	rec := serve(t, h, "GET", "/api/console/")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(rec.Body.String(), "app.js") {
		t.Fatalf("index: %d %s", rec.Code, rec.Header())
	}
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self';", "style-src 'self';", "frame-ancestors 'none'",
		"connect-src 'self' https://login.microsoftonline.com;", "frame-src 'none';", "object-src 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
		if rec.Header().Get(k) != v {
			t.Errorf("%s = %q, want %q", k, rec.Header().Get(k), v)
		}
	}
	etag := rec.Header().Get("ETag")
	if rec := serve(t, h, "GET", "/api/console/", "If-None-Match", etag); rec.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", rec.Code)
	}
	for path, ctype := range map[string]string{"/api/console/app.js": "text/javascript", "/api/console/app.css": "text/css",
		"/api/console/vendor/msal-browser.min.js": "text/javascript", "/api/console/icon.svg": "image/svg+xml"} {
		if rec := serve(t, h, "GET", path); rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	rec = serve(t, h, "GET", "/api/console/config.json")
	var cfg map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &cfg); err != nil || cfg["mode"] != "entra" || cfg["clientId"] == "" || cfg["msalVersion"] != MSALVersion {
		t.Errorf("config.json %s (%v)", rec.Body, err)
	}
	for _, path := range []string{"/api/console/nope.js", "/api/console/../certificates", "/api/console/assets/app.js"} {
		if rec := serve(t, h, "GET", path); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, rec.Code)
		}
	}
	if rec := serve(t, h, "POST", "/api/console/"); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	if rec := serve(t, h, "HEAD", "/api/console/app.js"); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d body bytes", rec.Code, rec.Body.Len())
	}
}

func TestConfigModes(t *testing.T) {
	dev, err := New(Config{Mode: ModeDev, ClientID: "c", Scope: "s", AuthorizeURL: "/api/dev/authorize", TokenURL: "/api/dev/token"})
	if err != nil {
		t.Fatal(err)
	}
	if csp := dev.CSP(); !strings.Contains(csp, "connect-src 'self';") || !strings.Contains(csp, "frame-src 'none'") {
		t.Errorf("dev CSP %q must allow this origin only", csp)
	}
	for _, bad := range []Config{
		{Mode: "other"},
		{Mode: ModeEntra, ClientID: "c", Scope: "s", Authority: "http://login.example/t"},
		{Mode: ModeEntra, Scope: "s", Authority: "https://login.example/t"},
		{Mode: ModeDev, ClientID: "c", AuthorizeURL: "https://elsewhere.example/authorize", TokenURL: "/t"},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
	if _, err := New(Config{Mode: ModeDisabled}); err != nil {
		t.Errorf("disabled mode: %v", err)
	}
}
