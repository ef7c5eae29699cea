package csrapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// TestIDTokenRefused: the ID token Entra gives the console (which signs in as the API's own app registration, so
// the token's aud is the API's client ID, and it carries oid and the user's app roles) is not an access token and
// gets 401 invalid_token with the reason — in v1 and v2 form, with or without the nonce — and nothing is issued or
// recorded. The same user with an access token is served, so the refusal is about the token, not the caller.
func TestIDTokenRefused(t *testing.T) {
	e := newEnv(t)
	bob := newUser("bob")
	der := csrDER(t, ecKey(t, "idtoken"), testca.CSROptions{Subject: cn("kiosk-id"),
		DNSNames: []string{"kiosk.contoso.test"}})
	for _, tc := range []struct {
		name   string
		tok    string
		reason string
	}{
		{"v2 ID token", e.tenant.MintIDToken(bob.oid, bob.upn, requestDb),
			"ID tokens are not accepted; send an access token"},
		{"v1 ID token", e.tenant.MintIDToken(bob.oid, bob.upn, requestDb, entrafake.V1()),
			"ID tokens are not accepted; send an access token"},
		// The security review's TestReviewIDTokenIsNotAnAccessToken shape: a user access token with nonce added and
		// scp, azp, azpacr, upn, acct and idtyp removed.
		{"review: access token reshaped as an ID token", e.userToken(bob, requestDb,
			entrafake.WithClaim("nonce", "n-0S6_WzA2Mj"),
			entrafake.WithoutClaim("scp"), entrafake.WithoutClaim("azp"), entrafake.WithoutClaim("azpacr"),
			entrafake.WithoutClaim("upn"), entrafake.WithoutClaim("acct"), entrafake.WithIDTyp("")),
			"ID tokens are not accepted; send an access token"},
		{"v2 ID token without nonce", e.tenant.MintIDToken(bob.oid, bob.upn, requestDb, entrafake.WithoutClaim("nonce")),
			"token does not name its client application"},
		{"delegated access token without scp", e.userToken(bob, requestDb, entrafake.WithoutClaim("scp")),
			"delegated token has no scopes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(tc.tok, der)
			p := wantProblem(t, r, http.StatusUnauthorized, entra.CodeInvalidToken)
			if p.Detail != tc.reason {
				t.Fatalf("detail = %q, want %q", p.Detail, tc.reason)
			}
			want := `Bearer error="invalid_token", error_description="` + tc.reason + `"`
			if got := r.Header.Get("WWW-Authenticate"); got != want {
				t.Fatalf("WWW-Authenticate = %q, want %q", got, want)
			}
			if strings.Contains(string(r.body), "eyJ") {
				t.Fatal("problem body echoes token material")
			}
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d after refused ID tokens, want 0", n)
	}
	e.wantCert(e.post(e.userToken(bob, requestDb), der))
}
