package entra_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
)

// TestDevAuthorizationCodePKCE walks the browser flow: the sign-in form, the redirect back with a code, the code
// redeemed with the PKCE verifier for a token the real Verifier accepts with the roles ticked on the form.
func TestDevAuthorizationCodePKCE(t *testing.T) {
	dev, srv := startDevIssuer(t, filepath.Join(t.TempDir(), "dev"))
	v, err := entra.NewVerifier(dev.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := "verifier-with-enough-entropy-0123456789-abcdefghij"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	redirect := srv.URL + "/api/console/"
	params := url.Values{"response_type": {"code"}, "client_id": {entra.DevClientAppID}, "redirect_uri": {redirect},
		"state": {"st-1"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"api://x/access_as_user"}}

	resp, err := client.Get(srv.URL + "/api/dev/authorize?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `name="upn"`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("sign-in form: %d %s", resp.StatusCode, page)
	}
	if strings.Contains(string(page), "<script") {
		t.Error("the sign-in page must work without script")
	}

	form := url.Values{}
	for k, vs := range params {
		form[k] = vs
	}
	form.Set("upn", "carol@azscep.local")
	form["role"] = []string{entra.RoleCertificatesManage, "Made.Up"}
	resp, err = client.PostForm(srv.URL+"/api/dev/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("state") != "st-1" || loc.Query().Get("code") == "" ||
		!strings.HasPrefix(loc.String(), redirect) {
		t.Fatalf("authorize POST: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	code := loc.Query().Get("code")

	redeem := func(code, verifier, redirect string) (int, map[string]any) {
		resp, err := http.PostForm(srv.URL+"/api/dev/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirect}, "client_id": {entra.DevClientAppID}, "code_verifier": {verifier}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if status, out := redeem(code, "wrong-verifier", redirect); status != 400 || out["error"] != "invalid_grant" {
		t.Errorf("wrong verifier: %d %v", status, out)
	}
	// The failed redemption burnt the code: codes are single use.
	if status, _ := redeem(code, verifier, redirect); status != 400 {
		t.Errorf("a code redeemed twice: %d", status)
	}

	resp, _ = client.PostForm(srv.URL+"/api/dev/authorize", form)
	resp.Body.Close()
	loc, _ = url.Parse(resp.Header.Get("Location"))
	status, out := redeem(loc.Query().Get("code"), verifier, redirect)
	tok, _ := out["access_token"].(string)
	if status != 200 || tok == "" {
		t.Fatalf("redeem: %d %v", status, out)
	}
	c, err := v.Verify(context.Background(), []string{"Bearer " + tok})
	if err != nil {
		t.Fatalf("token from the code flow rejected: %v", err)
	}
	if c.UPN != "carol@azscep.local" || !c.HasRole(entra.RoleCertificatesManage) || c.HasRole("Made.Up") || c.IsApp {
		t.Errorf("caller = %+v", c)
	}
}

func TestDevAuthorizeRefusesBadRequests(t *testing.T) {
	_, srv := startDevIssuer(t, filepath.Join(t.TempDir(), "dev"))
	good := url.Values{"response_type": {"code"}, "client_id": {"c"}, "redirect_uri": {srv.URL + "/api/console/"},
		"code_challenge": {strings.Repeat("A", 43)}, "code_challenge_method": {"S256"}}
	for name, mutate := range map[string]func(url.Values){
		"foreign redirect":   func(v url.Values) { v.Set("redirect_uri", "https://evil.example/api/console/") },
		"other port":         func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:1/api/console/") },
		"plain challenge":    func(v url.Values) { v.Set("code_challenge_method", "plain") },
		"no challenge":       func(v url.Values) { v.Del("code_challenge") },
		"implicit flow":      func(v url.Values) { v.Set("response_type", "token") },
		"no client":          func(v url.Values) { v.Del("client_id") },
		"fragment redirect":  func(v url.Values) { v.Set("redirect_uri", srv.URL+"/api/console/#x") },
		"malformed redirect": func(v url.Values) { v.Set("redirect_uri", "::") },
	} {
		v := url.Values{}
		for k, vs := range good {
			v[k] = append([]string(nil), vs...)
		}
		mutate(v)
		resp, err := http.Get(srv.URL + "/api/dev/authorize?" + v.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400 (and no redirect)", name, resp.StatusCode)
		}
	}
	// A form without a UPN gets no code.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(srv.URL+"/api/dev/authorize", good)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no upn: %d", resp.StatusCode)
	}
	// A form another site's page posts gets no code, whatever it holds; the issuer's own page (same origin) does.
	withUPN := url.Values{"upn": {"mallory@azscep.local"}}
	for k, vs := range good {
		withUPN[k] = vs
	}
	for _, h := range []map[string]string{
		{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		{"Origin": "null"},
		{"Sec-Fetch-Site": "same-site"},
		{"Origin": "http://localhost:1"},
		{"Origin": srv.URL, "Sec-Fetch-Site": "same-origin"},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/dev/authorize", strings.NewReader(withUPN.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusForbidden
		if h["Origin"] == srv.URL {
			want = http.StatusSeeOther
		}
		if resp.StatusCode != want {
			t.Errorf("authorize POST with %v: %d, want %d", h, resp.StatusCode, want)
		}
	}
	// The token endpoint refuses other grants in a form body.
	resp, err = http.PostForm(srv.URL+"/api/dev/token", url.Values{"grant_type": {"password"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("password grant: %d", resp.StatusCode)
	}
}
