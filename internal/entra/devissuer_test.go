package entra_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
)

// startDevIssuer mounts a DevIssuer at /api/dev/ on a loopback test server,
// the way the handler does in local mode.
func startDevIssuer(t *testing.T, dir string) (*entra.DevIssuer, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	dev, err := entra.NewDevIssuer(entra.DevIssuerConfig{Dir: dir, BaseURL: srv.URL + "/api/dev"})
	if err != nil {
		t.Fatalf("NewDevIssuer: %v", err)
	}
	mux.Handle("/api/dev/", dev.Handler())
	return dev, srv
}

func TestDevIssuerRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".local", "dev-issuer")
	dev, _ := startDevIssuer(t, dir)
	v, err := entra.NewVerifier(dev.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	tok, err := dev.Mint(entra.DevTokenRequest{UPN: "alice@contoso.example", Roles: []string{entra.RoleCSRSelfService}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(ctx, []string{"Bearer " + tok})
	if err != nil {
		t.Fatalf("dev user token rejected: %v", err)
	}
	if c.UPN != "alice@contoso.example" || c.IsApp || !c.HasRole(entra.RoleCSRSelfService) || c.TokenVersion != entra.TokenV2 || c.TenantID != dev.TenantID() {
		t.Fatalf("caller = %+v", c)
	}
	// The same UPN keeps the same object ID.
	tok2, _ := dev.Mint(entra.DevTokenRequest{UPN: "ALICE@contoso.example"})
	c2, err := v.Verify(ctx, []string{"Bearer " + tok2})
	if err != nil || c2.ObjectID != c.ObjectID {
		t.Fatalf("oid not stable across mints: %v / %v (%v)", c.ObjectID, c2, err)
	}

	app, err := dev.Mint(entra.DevTokenRequest{App: true, Roles: []string{entra.RoleCSRRequestDb}, Version: entra.TokenV1})
	if err != nil {
		t.Fatal(err)
	}
	c, err = v.Verify(ctx, []string{"Bearer " + app})
	if err != nil {
		t.Fatalf("dev app v1 token rejected: %v", err)
	}
	if !c.IsApp || c.TokenVersion != entra.TokenV1 || c.AppID != entra.DevClientAppID || !c.HasRole(entra.RoleCSRRequestDb) {
		t.Fatalf("app caller = %+v", c)
	}

	fi, err := os.Stat(filepath.Join(dir, "signing-key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
}

func TestDevIssuerTokenEndpoint(t *testing.T) {
	dev, srv := startDevIssuer(t, t.TempDir())
	v, err := entra.NewVerifier(dev.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	body := `{"upn":"bob@contoso.example","roles":["CSR.Request.Db"],"lifetime_seconds":600}`
	resp, err := http.Post(srv.URL+"/api/dev/token", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST token: %d %v", resp.StatusCode, err)
	}
	if out.TokenType != "Bearer" || out.ExpiresIn != 600 {
		t.Fatalf("response = %+v", out)
	}
	c, err := v.Verify(context.Background(), []string{"Bearer " + out.AccessToken})
	if err != nil || c.UPN != "bob@contoso.example" || !c.HasRole(entra.RoleCSRRequestDb) {
		t.Fatalf("token from endpoint: %+v, %v", c, err)
	}
	if left := time.Until(c.ExpiresAt); left > 10*time.Minute || left < 9*time.Minute {
		t.Fatalf("lifetime not honoured: token expires in %v, want ~10m", left)
	}

	// `curl -d '{…}'` (the README's command) labels the JSON body as a form: it must still get a token, while a
	// real form body goes to the authorization-code grant.
	resp, err = http.Post(srv.URL+"/api/dev/token", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.AccessToken == "" {
		t.Fatalf("POST token labelled as a form: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	resp, err = http.Post(srv.URL+"/api/dev/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=password"))
	if err != nil {
		t.Fatal(err)
	}
	var oe struct {
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&oe); err != nil || resp.StatusCode != 400 || oe.Error != "unsupported_grant_type" {
		t.Fatalf("form with another grant: %d %+v %v", resp.StatusCode, oe, err)
	}
	resp.Body.Close()

	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/api/dev/token", "", http.StatusMethodNotAllowed},
		{"POST", "/api/dev/token", "not json", http.StatusBadRequest},
		{"POST", "/api/dev/token", `{"upn":"x","admin":true}`, http.StatusBadRequest},
		{"POST", "/api/dev/token", `{"oid":"not-a-guid"}`, http.StatusBadRequest},
		{"POST", "/api/dev/token", `{"lifetime_seconds":999999}`, http.StatusBadRequest},
		{"POST", "/api/dev/token", `{"version":"3.0"}`, http.StatusBadRequest},
		{"POST", "/api/dev/token", `{"lifetime_seconds":-5}`, http.StatusBadRequest},
		{"POST", "/api/dev/" + dev.TenantID() + "/discovery/v2.0/keys", "", http.StatusMethodNotAllowed},
		{"GET", "/api/dev/" + dev.TenantID() + "/discovery/v2.0/keys", "", http.StatusOK},
		{"GET", "/api/dev/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration", "", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, bytes.NewReader([]byte(tc.body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s %q: status %d, want %d", tc.method, tc.path, tc.body, resp.StatusCode, tc.status)
		}
	}
}

func TestDevIssuerKeyPersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	_, srv1 := startDevIssuer(t, dir)
	first := fetchJWKS(t, srv1.URL)
	// A restarted process (new issuer, new port) loads the same key.
	_, srv2 := startDevIssuer(t, dir)
	if second := fetchJWKS(t, srv2.URL); second != first {
		t.Fatalf("key changed across restart:\n%s\n%s", first, second)
	}
	// A different directory means a different key.
	_, srv3 := startDevIssuer(t, t.TempDir())
	if other := fetchJWKS(t, srv3.URL); other == first {
		t.Fatal("two key directories produced the same key")
	}
	// A corrupt key file is an error, not a silent new key.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "signing-key.pem"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := entra.NewDevIssuer(entra.DevIssuerConfig{Dir: bad, BaseURL: "http://127.0.0.1:7071/api/dev"}); err == nil {
		t.Fatal("corrupt key file accepted")
	}
}

func fetchJWKS(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/dev/" + entra.DevTenantID + "/discovery/v2.0/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("JWKS: %d %v", resp.StatusCode, err)
	}
	return buf.String()
}

func TestDevIssuerIsLoopbackOnly(t *testing.T) {
	for _, base := range []string{"http://10.0.0.5:7071/api/dev", "https://azscep.azurewebsites.net/api/dev", "ftp://127.0.0.1/x", ""} {
		if _, err := entra.NewDevIssuer(entra.DevIssuerConfig{Dir: t.TempDir(), BaseURL: base}); err == nil {
			t.Errorf("BaseURL %q accepted", base)
		}
	}
	dev, err := entra.NewDevIssuer(entra.DevIssuerConfig{Dir: t.TempDir(), BaseURL: "http://localhost:7071/api/dev/"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/dev/token", strings.NewReader(`{}`))
	req.RemoteAddr = "203.0.113.7:50000"
	rec := httptest.NewRecorder()
	dev.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "eyJ") {
		t.Fatalf("remote peer got %d %q, want 403 and no token", rec.Code, rec.Body.String())
	}
	req.RemoteAddr = "[::1]:50000"
	rec = httptest.NewRecorder()
	dev.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("loopback peer got %d", rec.Code)
	}
}
