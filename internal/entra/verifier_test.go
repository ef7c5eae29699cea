package entra_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

func TestVerifyAcceptsV1AndV2WithBothAudienceForms(t *testing.T) {
	e := newEnv(t)
	user := entrafake.NewGUID()
	roles := []string{entra.RoleCSRSelfService}
	for _, tc := range []struct {
		name    string
		version []entrafake.MintOption
		want    string
	}{
		{"v1", []entrafake.MintOption{entrafake.V1()}, entra.TokenV1},
		{"v2", []entrafake.MintOption{entrafake.V2()}, entra.TokenV2},
	} {
		for _, aud := range []string{e.fake.ClientID, e.fake.AppIDURI} {
			t.Run(tc.name+"/user/"+aud, func(t *testing.T) {
				opts := append(slices.Clone(tc.version), entrafake.WithAudience(aud))
				c := e.mustVerify(t, e.fake.MintUser(user, "alice@contoso.example", roles, opts...))
				// v2 tokens carry upn only as a configured optional claim (TestVerifyUPNIsTheUPNClaimOnly).
				wantUPN := "alice@contoso.example"
				if tc.want == entra.TokenV2 {
					wantUPN = ""
				}
				if c.ObjectID != user || c.UPN != wantUPN || c.Username != "alice@contoso.example" || c.Guest ||
					c.IsApp || c.TokenVersion != tc.want ||
					c.TenantID != e.fake.TenantID || c.AppID != e.fake.ClientAppID || c.Name != "Test User alice@contoso.example" {
					t.Fatalf("caller = %+v", c)
				}
				if !c.HasRole(entra.RoleCSRSelfService) || c.HasRole(entra.RoleCSRRequestDb) {
					t.Fatalf("roles = %v", c.Roles)
				}
				if !slices.Equal(c.Scopes, []string{"access_as_user"}) {
					t.Fatalf("scopes = %v", c.Scopes)
				}
				if want := e.clock.Now().Add(time.Hour); !c.ExpiresAt.Equal(want) {
					t.Fatalf("ExpiresAt = %v, want %v", c.ExpiresAt, want)
				}
				if want := e.clock.Now().Add(-5 * time.Minute); !c.IssuedAt.Equal(want) {
					t.Fatalf("IssuedAt = %v, want %v", c.IssuedAt, want)
				}
			})
			t.Run(tc.name+"/app/"+aud, func(t *testing.T) {
				opts := append(slices.Clone(tc.version), entrafake.WithAudience(aud))
				c := e.mustVerify(t, e.fake.MintApp([]string{entra.RoleCSRRequestDb}, opts...))
				if !c.IsApp || c.ObjectID != e.fake.AppObjectID || c.UPN != "" || c.AppID != e.fake.ClientAppID || c.TokenVersion != tc.want {
					t.Fatalf("caller = %+v", c)
				}
				if !c.HasRole(entra.RoleCSRRequestDb) {
					t.Fatalf("roles = %v", c.Roles)
				}
			})
		}
	}
}

// TestVerifyUPNIsTheUPNClaimOnly: preferred_username and unique_name are mutable and only ever displayed; the
// UPN a certificate may be bound to comes from the upn claim alone.
func TestVerifyUPNIsTheUPNClaimOnly(t *testing.T) {
	e := newEnv(t)
	oid := entrafake.NewGUID()
	// v1 with only unique_name.
	c := e.mustVerify(t, e.fake.MintUser(oid, "bob@contoso.example", nil, entrafake.V1(), entrafake.WithoutClaim("upn")))
	if c.UPN != "" || c.Username != "bob@contoso.example" {
		t.Fatalf("UPN %q Username %q, want no UPN from unique_name", c.UPN, c.Username)
	}
	// v2 with only preferred_username (the registration lacks the upn optional claim).
	c = e.mustVerify(t, e.fake.MintUser(oid, "display@contoso.example", nil))
	if c.UPN != "" || c.Username != "display@contoso.example" {
		t.Fatalf("UPN %q Username %q, want no UPN from preferred_username", c.UPN, c.Username)
	}
	// upn is used, and wins over preferred_username for display too.
	c = e.mustVerify(t, e.fake.MintUser(oid, "display@contoso.example", nil, entrafake.WithClaim("upn", "real@contoso.example")))
	if c.UPN != "real@contoso.example" || c.Username != "real@contoso.example" {
		t.Fatalf("UPN %q Username %q, want the upn claim", c.UPN, c.Username)
	}
	// With the optional claim configured, v2 user tokens carry upn.
	e.fake.OptionalClaims = []string{"upn", "acct"}
	c = e.mustVerify(t, e.fake.MintUser(oid, "carol@contoso.example", nil))
	if c.UPN != "carol@contoso.example" || c.Guest {
		t.Fatalf("UPN %q guest %v", c.UPN, c.Guest)
	}
}

// TestVerifyGuest: a guest is recognised by idp (always emitted by Entra for users authenticated elsewhere), by
// the optional acct claim, or by an #EXT# UPN; members and apps are not guests.
func TestVerifyGuest(t *testing.T) {
	e := newEnv(t)
	home := entrafake.NewGUID()
	oid := entrafake.NewGUID()
	for _, tc := range []struct {
		name   string
		claims []string
		opts   []entrafake.MintOption
		guest  bool
	}{
		{"member-v2", nil, nil, false},
		{"member-v1", nil, []entrafake.MintOption{entrafake.V1()}, false},
		{"member-acct-0", []string{"upn", "acct"}, nil, false},
		{"member-idp-is-own-v1-issuer", nil, []entrafake.MintOption{entrafake.WithClaim("idp", entrafake.V1Issuer(e.fake.TenantID))}, false},
		{"guest-v2-idp", nil, []entrafake.MintOption{entrafake.Guest(home)}, true},
		{"guest-v1-idp", nil, []entrafake.MintOption{entrafake.V1(), entrafake.Guest(home)}, true},
		{"guest-acct-and-idp", []string{"upn", "acct"}, []entrafake.MintOption{entrafake.Guest(home)}, true},
		{"guest-acct-only", nil, []entrafake.MintOption{entrafake.WithClaim("acct", 1)}, true},
		{"guest-acct-string", nil, []entrafake.MintOption{entrafake.WithClaim("acct", "1")}, true},
		{"guest-acct-unknown-value", nil, []entrafake.MintOption{entrafake.WithClaim("acct", 7)}, true},
		// Neither a number nor a string: unreadable, so a guest (fail closed).
		{"guest-acct-string-unknown-value", nil, []entrafake.MintOption{entrafake.WithClaim("acct", "2")}, true},
		{"guest-acct-bool", nil, []entrafake.MintOption{entrafake.WithClaim("acct", true)}, true},
		{"guest-acct-list", nil, []entrafake.MintOption{entrafake.WithClaim("acct", []int{0})}, true},
		{"guest-msa", nil, []entrafake.MintOption{entrafake.WithClaim("idp", "live.com")}, true},
		{"guest-ext-upn", nil, []entrafake.MintOption{entrafake.WithClaim("upn", "alice_fabrikam.com#EXT#@contoso.example")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.fake.OptionalClaims = tc.claims
			c := e.mustVerify(t, e.fake.MintUser(oid, "alice@contoso.example", nil, tc.opts...))
			if c.Guest != tc.guest {
				t.Fatalf("Guest = %v, want %v (caller %+v)", c.Guest, tc.guest, c)
			}
		})
	}
	e.fake.OptionalClaims = nil
	if c := e.mustVerify(t, e.fake.MintApp(nil, entrafake.WithClaim("idp", "https://sts.windows.net/"+home+"/"))); c.Guest {
		t.Fatal("an app token is never a guest")
	}
}

// TestVerifyAppVersusUser: idtyp decides when present; without it (the optional claim is not configured, or a v1
// token) an app-only token is one with no scp whose oid is its sub. Three shapes this table used to accept as users
// are refused now and tested in TestVerifyRefusesNonAccessTokens: "user without scp but oid!=sub" (no idtyp, no
// scp, a pairwise sub — exactly an ID token's shape, which Entra never issues as an access token: every delegated
// access token carries scp), "app without idtyp but oid!=sub" (the same shape) and "idtyp user wins over oid==sub"
// (a user token without scp).
func TestVerifyAppVersusUser(t *testing.T) {
	e := newEnv(t)
	oid := entrafake.NewGUID()
	for _, tc := range []struct {
		name  string
		tok   string
		isApp bool
	}{
		{"app with idtyp", e.fake.MintApp(nil), true},
		{"v1 app with idtyp", e.fake.MintApp(nil, entrafake.V1()), true},
		{"app without idtyp: no scp and oid==sub", e.fake.MintApp(nil, entrafake.WithIDTyp("")), true},
		{"v1 app without idtyp: no scp and oid==sub", e.fake.MintApp(nil, entrafake.V1(), entrafake.WithIDTyp("")), true},
		{"user without idtyp", e.fake.MintUser(oid, "u@contoso.example", nil), false},
		{"v1 user without idtyp", e.fake.MintUser(oid, "u@contoso.example", nil, entrafake.V1()), false},
		{"user with idtyp user", e.fake.MintUser(oid, "u@contoso.example", nil, entrafake.WithIDTyp("user")), false},
		{"idtyp app wins over scp", e.fake.MintUser(oid, "u@contoso.example", nil, entrafake.WithIDTyp("app")), true},
		{"idtyp user with scp wins over oid==sub", e.fake.MintApp(nil, entrafake.WithIDTyp("user"), entrafake.WithScopes("access_as_user")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.mustVerify(t, tc.tok)
			if c.IsApp != tc.isApp {
				t.Fatalf("IsApp = %v, want %v", c.IsApp, tc.isApp)
			}
			if c.AppID != e.fake.ClientAppID {
				t.Fatalf("AppID = %q, want %q", c.AppID, e.fake.ClientAppID)
			}
			if !c.IsApp && len(c.Scopes) == 0 {
				t.Fatal("user caller without scopes")
			}
		})
	}
}

// TestVerifyRefusesNonAccessTokens: a token signed by the tenant, for our audience, from our issuer, with an oid
// and roles, is still refused unless it is an access token. The console signs in as the API's own app
// registration, so the ID token Entra gives it has aud = the API's client ID, the tenant's issuer, oid, a pairwise
// sub and the user's app roles — and a nonce, no azp/appid, no scp, no idtyp. Each of the three access-token
// properties is checked on its own, with its own reason: no nonce (ErrIDToken), the client named by the claim of
// the token's version (ErrNoClientApp), and scp in a delegated token (ErrNoScope).
func TestVerifyRefusesNonAccessTokens(t *testing.T) {
	e := newEnv(t)
	oid := entrafake.NewGUID()
	upn := "u@contoso.example"
	roles := []string{entra.RoleCSRRequestDb, entra.RoleCertificatesManage}
	const (
		descIDToken = "ID tokens are not accepted; send an access token"
		descNoApp   = "token does not name its client application"
		descNoScope = "delegated token has no scopes"
	)
	withoutNonce := entrafake.WithoutClaim("nonce")
	for _, tc := range []struct {
		name  string
		tok   string
		cause error
	}{
		// ID tokens as Entra issues them.
		{"v2 ID token", e.fake.MintIDToken(oid, upn, roles), entra.ErrIDToken},
		{"v1 ID token", e.fake.MintIDToken(oid, upn, roles, entrafake.V1()), entra.ErrIDToken},
		{"v2 ID token for the App ID URI", e.fake.MintIDToken(oid, upn, roles, entrafake.WithAudience(e.fake.AppIDURI)), entra.ErrIDToken},
		{"v2 ID token with idtyp user", e.fake.MintIDToken(oid, upn, roles, entrafake.WithIDTyp("user")), entra.ErrIDToken},
		// The security review's shape: a user access token with the access-only claims removed and a nonce added.
		{"review: user token reshaped as an ID token", e.fake.MintUser(oid, upn, roles,
			entrafake.WithClaim("nonce", "n-0S6_WzA2Mj"),
			entrafake.WithoutClaim("scp"), entrafake.WithoutClaim("azp"), entrafake.WithoutClaim("azpacr"),
			entrafake.WithoutClaim("upn"), entrafake.WithoutClaim("acct"), entrafake.WithIDTyp("")), entra.ErrIDToken},
		// A nonce alone refuses, whatever its value and whatever else the token carries.
		{"user access token with a nonce", e.fake.MintUser(oid, upn, roles, entrafake.WithClaim("nonce", "n-access-nonce")), entra.ErrIDToken},
		{"app access token with a nonce", e.fake.MintApp(roles, entrafake.WithClaim("nonce", "n-access-nonce")), entra.ErrIDToken},
		{"v1 access token with a nonce", e.fake.MintUser(oid, upn, roles, entrafake.V1(), entrafake.WithClaim("nonce", "n-access-nonce")), entra.ErrIDToken},
		{"empty nonce", e.fake.MintUser(oid, upn, roles, entrafake.WithClaim("nonce", "")), entra.ErrIDToken},
		{"null nonce", e.fake.MintUser(oid, upn, roles, entrafake.WithClaim("nonce", nil)), entra.ErrIDToken},
		{"numeric nonce", e.fake.MintApp(roles, entrafake.WithClaim("nonce", 7)), entra.ErrIDToken},
		// Without the nonce (an authorization-code sign-in need not send one) the ID token still names no client.
		{"v2 ID token without nonce", e.fake.MintIDToken(oid, upn, roles, withoutNonce), entra.ErrNoClientApp},
		{"v1 ID token without nonce", e.fake.MintIDToken(oid, upn, roles, entrafake.V1(), withoutNonce), entra.ErrNoClientApp},
		// The client must be named by the claim of the token's own version, as a GUID.
		{"v2 user without azp", e.fake.MintUser(oid, upn, roles, entrafake.WithoutClaim("azp")), entra.ErrNoClientApp},
		{"v2 app without azp", e.fake.MintApp(roles, entrafake.WithoutClaim("azp")), entra.ErrNoClientApp},
		{"v1 user without appid", e.fake.MintUser(oid, upn, roles, entrafake.V1(), entrafake.WithoutClaim("appid")), entra.ErrNoClientApp},
		{"v1 app without appid", e.fake.MintApp(roles, entrafake.V1(), entrafake.WithoutClaim("appid")), entra.ErrNoClientApp},
		{"v2 token naming its client with appid", e.fake.MintUser(oid, upn, roles, entrafake.WithoutClaim("azp"),
			entrafake.WithClaim("appid", e.fake.ClientAppID)), entra.ErrNoClientApp},
		{"v1 token naming its client with azp", e.fake.MintApp(roles, entrafake.V1(), entrafake.WithoutClaim("appid"),
			entrafake.WithClaim("azp", e.fake.ClientAppID)), entra.ErrNoClientApp},
		{"empty azp", e.fake.MintUser(oid, upn, roles, entrafake.WithClaim("azp", "")), entra.ErrNoClientApp},
		{"azp not a GUID", e.fake.MintApp(roles, entrafake.WithClaim("azp", "my-client")), entra.ErrNoClientApp},
		{"v1 appid not a GUID", e.fake.MintApp(roles, entrafake.V1(), entrafake.WithClaim("appid", "{"+e.fake.ClientAppID+"}")), entra.ErrNoClientApp},
		// Without nonce and with a client named, the ID token is still a user token without scp.
		{"ID token without nonce, naming a client", e.fake.MintIDToken(oid, upn, roles, withoutNonce,
			entrafake.WithClaim("azp", e.fake.ClientAppID)), entra.ErrNoScope},
		// Formerly accepted by TestVerifyAppVersusUser: no idtyp, no scp, oid != sub is the ID-token shape.
		{"user without scp but oid!=sub", e.fake.MintUser(oid, upn, roles, entrafake.WithoutClaim("scp")), entra.ErrNoScope},
		{"v1 user without scp but oid!=sub", e.fake.MintUser(oid, upn, roles, entrafake.V1(), entrafake.WithoutClaim("scp")), entra.ErrNoScope},
		{"app without idtyp but oid!=sub", e.fake.MintApp(roles, entrafake.WithIDTyp(""),
			entrafake.WithClaim("sub", "pairwise-sub")), entra.ErrNoScope},
		// idtyp user is a user; a user needs scp.
		{"idtyp user without scp", e.fake.MintUser(oid, upn, roles, entrafake.WithIDTyp("user"), entrafake.WithoutClaim("scp")), entra.ErrNoScope},
		{"idtyp user without scp, oid==sub", e.fake.MintApp(roles, entrafake.WithIDTyp("user")), entra.ErrNoScope},
		{"blank scp", e.fake.MintUser(oid, upn, roles, entrafake.WithScopes("  ")), entra.ErrNoScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.verify(tc.tok)
			if c != nil {
				t.Fatalf("accepted as %+v", c)
			}
			ae := mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
			for _, other := range []error{entra.ErrIDToken, entra.ErrNoClientApp, entra.ErrNoScope} {
				if is := errors.Is(err, other); is != (other == tc.cause) {
					t.Fatalf("error %v: errors.Is(%v) = %v, want only %v", err, other, is, tc.cause)
				}
			}
			want := map[error]string{entra.ErrIDToken: descIDToken, entra.ErrNoClientApp: descNoApp, entra.ErrNoScope: descNoScope}[tc.cause]
			if ae.Description != want {
				t.Fatalf("Description = %q, want %q", ae.Description, want)
			}
			if www := ae.WWWAuthenticate(); www != `Bearer error="invalid_token", error_description="`+want+`"` {
				t.Fatalf("WWW-Authenticate = %q", www)
			}
			// Neither the token nor any of its claim values end up in the error (which is logged).
			parts := strings.Split(tc.tok, ".")
			for _, leak := range []string{parts[1], parts[2], "n-0S6_WzA2Mj", "n-access-nonce", oid, upn, "my-client"} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("error %q contains %q", err, leak)
				}
			}
		})
	}
}

// TestVerifyAppIDIsTheVersionsClaim: Caller.AppID comes from azp in a v2 token and appid in a v1 token, never from
// the other version's claim, even when a token carries both.
func TestVerifyAppIDIsTheVersionsClaim(t *testing.T) {
	e := newEnv(t)
	other := entrafake.NewGUID()
	c := e.mustVerify(t, e.fake.MintApp(nil, entrafake.WithClaim("appid", other)))
	if c.AppID != e.fake.ClientAppID {
		t.Fatalf("v2 AppID = %q, want azp %q", c.AppID, e.fake.ClientAppID)
	}
	c = e.mustVerify(t, e.fake.MintApp(nil, entrafake.V1(), entrafake.WithClaim("azp", other)))
	if c.AppID != e.fake.ClientAppID {
		t.Fatalf("v1 AppID = %q, want appid %q", c.AppID, e.fake.ClientAppID)
	}
}

func TestVerifyHeaderErrors(t *testing.T) {
	e := newEnv(t)
	valid := e.fake.MintUser(entrafake.NewGUID(), "u@contoso.example", nil)
	big := strings.Repeat("a", entra.DefaultMaxTokenBytes-10) + "." + "bbbbbbbbbb" + "." + "c"
	for _, tc := range []struct {
		name   string
		values []string
		code   string
		www    string
	}{
		{"no header", nil, "", "Bearer"},
		{"empty header", []string{""}, "", "Bearer"},
		{"two headers", []string{"Bearer " + valid, "Bearer " + valid}, entra.CodeInvalidRequest, `Bearer error="invalid_request", error_description="multiple Authorization headers"`},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, "", "Bearer"},
		{"token without scheme", []string{valid}, "", "Bearer"},
		{"bearer without token", []string{"Bearer"}, entra.CodeInvalidRequest, ""},
		{"bearer with blank token", []string{"Bearer    "}, entra.CodeInvalidRequest, ""},
		{"two segments", []string{"Bearer aaa.bbb"}, entra.CodeInvalidToken, `Bearer error="invalid_token", error_description="malformed token"`},
		{"four segments", []string{"Bearer a.b.c.d"}, entra.CodeInvalidToken, ""},
		{"non-base64url characters", []string{"Bearer a+b.c/d.e="}, entra.CodeInvalidToken, ""},
		{"two tokens in one header", []string{"Bearer " + valid + ", Bearer " + valid}, entra.CodeInvalidToken, ""},
		{"header not base64", []string{"Bearer !!!.e30.sig"}, entra.CodeInvalidToken, ""},
		{"header not JSON", []string{"Bearer bm90anNvbg.e30.c2ln"}, entra.CodeInvalidToken, ""},
		{"claims not JSON", []string{"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.bm90anNvbg.c2ln"}, entra.CodeInvalidToken, ""},
		{"oversized raw", []string{"Bearer " + big + strings.Repeat("x", 20)}, entra.CodeInvalidToken, `Bearer error="invalid_token", error_description="token too large"`},
		{"oversized signed", []string{"Bearer " + e.fake.MintUser(entrafake.NewGUID(), "u@contoso.example", nil, entrafake.Oversized(entra.DefaultMaxTokenBytes))}, entra.CodeInvalidToken, ""},
		{"roles of wrong type", []string{"Bearer " + e.fake.MintUser(entrafake.NewGUID(), "u@contoso.example", nil, entrafake.WithClaim("roles", "CSR.Request.Db"))}, entra.CodeInvalidToken, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.fake.Requests())
			c, err := e.v.Verify(context.Background(), tc.values)
			if c != nil {
				t.Fatalf("caller = %+v, want nil", c)
			}
			ae := mustAuthError(t, err, http.StatusUnauthorized, tc.code)
			if tc.www != "" && ae.WWWAuthenticate() != tc.www {
				t.Fatalf("WWW-Authenticate = %q, want %q", ae.WWWAuthenticate(), tc.www)
			}
			if tc.name != "roles of wrong type" && len(e.fake.Requests()) != before {
				t.Fatalf("header-level rejection fetched metadata: %v", e.fake.Requests()[before:])
			}
		})
	}
}

func TestVerifyAcceptsCaseInsensitiveSchemeAndExtraSpaces(t *testing.T) {
	e := newEnv(t)
	tok := e.fake.MintApp(nil)
	for _, h := range []string{"bearer " + tok, "BEARER  " + tok, "Bearer " + tok + " "} {
		c, err := e.v.Verify(context.Background(), []string{h})
		mustCaller(t, c, err)
	}
}

func TestVerifyRejectsAlgorithmConfusion(t *testing.T) {
	e := newEnv(t)
	oid := entrafake.NewGUID()
	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"alg none", e.fake.MintUser(oid, "u@contoso.example", []string{entra.RoleCSRRequestDb}, entrafake.AlgNone())},
		{"HS256 keyed with RSA public key", e.fake.MintUser(oid, "u@contoso.example", []string{entra.RoleCSRRequestDb}, entrafake.HS256WithPublicKey())},
		{"RS256 header on HS256 signature", swapAlg(t, e.fake.MintApp(nil, entrafake.HS256WithPublicKey()), "RS256")},
		// Signed by the tenant's own key, but not in RS256: only the algorithm Entra signs access tokens with is
		// accepted, so no other verifier (PSS, another hash) is ever reached with an attacker-chosen header.
		{"RS512 with the tenant key", e.fake.MintApp(nil, entrafake.WithRSAAlg("RS512"))},
		{"PS256 with the tenant key", e.fake.MintUser(oid, "u@contoso.example", []string{entra.RoleCSRRequestDb}, entrafake.WithRSAAlg("PS256"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.verify(tc.tok)
			mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
			if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				t.Fatalf("want signature/algorithm rejection, got %v", err)
			}
		})
	}
}

// swapAlg rewrites the alg header without re-signing.
func swapAlg(t *testing.T, tok, alg string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	p := jwt.NewParser()
	hdr, err := p.DecodeSegment(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	h := strings.Replace(string(hdr), `"alg":"HS256"`, `"alg":"`+alg+`"`, 1)
	if h == string(hdr) {
		t.Fatalf("header %s has no HS256 alg", hdr)
	}
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(h))
	return strings.Join(parts, ".")
}

func TestVerifyRejectsBadSignature(t *testing.T) {
	e := newEnv(t)
	tok := e.fake.MintApp([]string{entra.RoleCSRRequestDb})
	parts := strings.Split(tok, ".")
	// Re-sign-free claim tampering: swap in claims of another token.
	other := strings.Split(e.fake.MintApp([]string{entra.RoleCertificatesManage}), ".")
	forged := parts[0] + "." + other[1] + "." + parts[2]
	_, err := e.verify(forged)
	mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("want signature error, got %v", err)
	}
}

func TestVerifyClaimChecks(t *testing.T) {
	e := newEnv(t)
	oid := entrafake.NewGUID()
	other := entrafake.NewGUID()
	upn := "u@contoso.example"
	for _, tc := range []struct {
		name  string
		tok   string
		cause error
	}{
		{"token from another tenant", e.fake.MintUser(oid, upn, nil, entrafake.FromTenant(other)), nil},
		{"v1 token from another tenant", e.fake.MintApp(nil, entrafake.V1(), entrafake.FromTenant(other)), nil},
		{"our issuer but other tid", e.fake.MintUser(oid, upn, nil, entrafake.WithClaim("tid", other)), nil},
		{"missing tid", e.fake.MintUser(oid, upn, nil, entrafake.WithoutClaim("tid")), nil},
		{"public-cloud v2 issuer (not this authority)", e.fake.MintApp(nil, entrafake.WithClaim("iss", "https://login.microsoftonline.com/"+e.fake.TenantID+"/v2.0")), nil},
		{"v1 issuer without trailing slash", e.fake.MintApp(nil, entrafake.V1(), entrafake.WithClaim("iss", "https://sts.windows.net/"+e.fake.TenantID)), nil},
		{"issuer with different case", e.fake.MintApp(nil, entrafake.V1(), entrafake.WithClaim("iss", "https://STS.windows.net/"+e.fake.TenantID+"/")), nil},
		{"missing issuer", e.fake.MintApp(nil, entrafake.WithoutClaim("iss")), nil},
		{"ver contradicts issuer", e.fake.MintApp(nil, entrafake.WithClaim("ver", "1.0")), nil},
		{"graph audience", e.fake.MintApp(nil, entrafake.WithAudience("https://graph.microsoft.com")), jwt.ErrTokenInvalidAudience},
		{"other app's audience", e.fake.MintApp(nil, entrafake.WithAudience(entrafake.NewGUID())), jwt.ErrTokenInvalidAudience},
		{"missing audience", e.fake.MintApp(nil, entrafake.WithoutClaim("aud")), jwt.ErrTokenRequiredClaimMissing},
		{"expired", e.fake.MintUser(oid, upn, nil, entrafake.Expired()), jwt.ErrTokenExpired},
		{"nbf in future", e.fake.MintUser(oid, upn, nil, entrafake.FutureNotBefore()), jwt.ErrTokenNotValidYet},
		{"missing exp", e.fake.MintUser(oid, upn, nil, entrafake.NoExpiry()), jwt.ErrTokenRequiredClaimMissing},
		{"missing oid", e.fake.MintUser(oid, upn, nil, entrafake.WithoutClaim("oid")), nil},
		{"oid not a GUID", e.fake.MintUser("not-a-guid", upn, nil), nil},
		{"no kid", e.fake.MintApp(nil, entrafake.WithHeaderKID("")), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.verify(tc.tok)
			if c != nil {
				t.Fatalf("accepted: %+v", c)
			}
			mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Fatalf("error %v does not wrap %v", err, tc.cause)
			}
		})
	}
}

func TestVerifyLeewayEdges(t *testing.T) {
	e := newEnv(t, func(c *entra.Config) { c.Leeway = 90 * time.Second })
	t0 := e.clock.Now()
	exp := e.fake.MintApp(nil, entrafake.ExpiresAt(t0))
	nbf := e.fake.MintApp(nil, entrafake.NotBefore(t0.Add(90*time.Second)))

	e.clock.Set(t0.Add(89 * time.Second))
	e.mustVerify(t, exp)
	e.clock.Set(t0.Add(90 * time.Second))
	_, err := e.verify(exp)
	mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	if !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("want expired, got %v", err)
	}

	e.clock.Set(t0) // nbf - leeway == now: valid
	e.mustVerify(t, nbf)
	e.clock.Set(t0.Add(-time.Second))
	_, err = e.verify(nbf)
	if !errors.Is(err, jwt.ErrTokenNotValidYet) {
		t.Fatalf("want not-yet-valid, got %v", err)
	}
}

func TestVerifyUnknownKIDRefreshesOnceThenRateLimits(t *testing.T) {
	e := newEnv(t)
	e.mustVerify(t, e.fake.MintApp(nil))
	if n := e.fake.JWKSFetches(); n != 1 {
		t.Fatalf("JWKS fetches after first token = %d, want 1", n)
	}
	e.mustVerify(t, e.fake.MintApp(nil))
	if n := e.fake.JWKSFetches(); n != 1 {
		t.Fatalf("known kid refetched JWKS: %d fetches", n)
	}

	_, err := e.verify(e.fake.MintApp(nil, entrafake.UnknownKID()))
	ae := mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	if ae.Description != "token signing key not recognised" {
		t.Fatalf("description = %q", ae.Description)
	}
	if n := e.fake.JWKSFetches(); n != 2 {
		t.Fatalf("unknown kid: JWKS fetches = %d, want exactly one refresh (2)", n)
	}

	// Within the interval: further unknown kids get 401 without a fetch.
	for range 5 {
		_, err = e.verify(e.fake.MintApp(nil, entrafake.UnknownKID()))
		mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	}
	e.clock.Advance(entra.DefaultRefreshInterval - time.Second)
	_, err = e.verify(e.fake.MintApp(nil, entrafake.UnknownKID()))
	mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	if n := e.fake.JWKSFetches(); n != 2 {
		t.Fatalf("rate limit broken: JWKS fetches = %d, want 2", n)
	}

	// After the interval, one more refresh is allowed.
	e.clock.Advance(time.Second)
	_, err = e.verify(e.fake.MintApp(nil, entrafake.UnknownKID()))
	mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	if n := e.fake.JWKSFetches(); n != 3 {
		t.Fatalf("after interval: JWKS fetches = %d, want 3", n)
	}
}

func TestVerifyKeyRotation(t *testing.T) {
	e := newEnv(t)
	old := e.fake.ActiveKID()
	e.mustVerify(t, e.fake.MintApp(nil))

	// Entra publishes a new key, withdraws the old one and starts signing with
	// the new one before our cache has seen it.
	next := e.fake.AddKey()
	e.fake.RemoveKey(old)
	e.fake.UseKey(next)
	c := e.mustVerify(t, e.fake.MintApp([]string{entra.RoleCSRRequestDb}))
	if !c.HasRole(entra.RoleCSRRequestDb) {
		t.Fatal("token signed with the rotated key lost its roles")
	}
	if n := e.fake.JWKSFetches(); n != 2 {
		t.Fatalf("JWKS fetches = %d, want 2", n)
	}
	// The withdrawn key no longer verifies: the refresh replaced the set.
	_, err := e.verify(e.fake.MintApp(nil, entrafake.SignedWith(old)))
	mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
}

func TestVerifyConcurrentCallersShareOneFetch(t *testing.T) {
	e := newEnv(t)
	const n = 16
	toks := make([]string, n)
	for i := range toks {
		toks[i] = e.fake.MintApp(nil)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.verify(toks[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if f := e.fake.JWKSFetches(); f != 1 {
		t.Fatalf("cold start with %d concurrent callers: %d JWKS fetches, want 1", n, f)
	}

	// A burst of unknown kids after the load also costs one fetch in total.
	unknown := make([]string, n)
	for i := range unknown {
		unknown[i] = e.fake.MintApp(nil, entrafake.UnknownKID())
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.verify(unknown[i])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	}
	if f := e.fake.JWKSFetches(); f != 2 {
		t.Fatalf("unknown-kid burst: %d JWKS fetches in total, want 2", f)
	}
}

func TestVerifyUnavailableJWKS(t *testing.T) {
	e := newEnv(t)
	tok := e.fake.MintApp(nil)
	e.fake.SetFault(http.StatusInternalServerError)

	c, err := e.verify(tok)
	if c != nil || !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("Verify with Entra down = (%v, %v), want ErrUnavailable", c, err)
	}
	var ae *entra.AuthError
	if errors.As(err, &ae) {
		t.Fatalf("outage must not look like a bad token: %v", err)
	}
	// Malformed input is still a 401 without asking Entra.
	_, err = e.verify("not.a.jwt!")
	mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)

	// Entra recovers; within the failure backoff we do not hammer it.
	e.fake.SetFault(0)
	fetches := len(e.fake.Requests())
	if _, err = e.verify(tok); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("within backoff: %v, want ErrUnavailable", err)
	}
	if len(e.fake.Requests()) != fetches {
		t.Fatal("retried within the failure backoff")
	}
	e.clock.Advance(10 * time.Second)
	e.mustVerify(t, tok)
}

func TestVerifyStaleKeysSurviveOutageAndExpire(t *testing.T) {
	e := newEnv(t)
	e.mustVerify(t, e.fake.MintApp(nil))

	// A day later Entra is down: the cached keys keep working.
	e.clock.Advance(entra.DefaultKeyMaxAge)
	e.fake.SetFault(http.StatusServiceUnavailable)
	before := len(e.fake.Requests())
	e.mustVerify(t, e.fake.MintApp(nil))
	if len(e.fake.Requests()) == before {
		t.Fatal("stale key set: no refresh attempted")
	}
	// Within the failure backoff the stale keys are used without new attempts.
	before = len(e.fake.Requests())
	e.clock.Advance(5 * time.Second)
	e.mustVerify(t, e.fake.MintApp(nil))
	if len(e.fake.Requests()) != before {
		t.Fatal("refresh retried within the failure backoff")
	}

	// Entra is back and has withdrawn the old key: after the backoff the next
	// request refreshes and the old key stops verifying.
	e.fake.SetFault(0)
	old := e.fake.ActiveKID()
	e.fake.UseKey(e.fake.AddKey())
	e.fake.RemoveKey(old)
	e.clock.Advance(10 * time.Second)
	_, err := e.verify(e.fake.MintApp(nil, entrafake.SignedWith(old)))
	mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	e.mustVerify(t, e.fake.MintApp(nil))
}

func TestVerifyRejectsDiscoveryForWrongIssuer(t *testing.T) {
	fake := entrafake.New(t)
	// A proxy that serves the fake's documents under another authority: the
	// v2 issuer no longer matches the authority we were configured with.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := fake.Client().Get(fake.URL() + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 1<<16)
		n, _ := resp.Body.Read(buf)
		_, _ = w.Write(buf[:n])
	}))
	t.Cleanup(proxy.Close)
	v, err := entra.NewVerifier(entra.Config{TenantID: fake.TenantID, Audiences: []string{fake.ClientID}, AuthorityHost: proxy.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), []string{"Bearer " + fake.MintApp(nil)})
	if !errors.Is(err, entra.ErrUnavailable) || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("mismatched discovery issuer: %v, want ErrUnavailable about the issuer", err)
	}
	if err := v.Prefetch(context.Background()); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("Prefetch = %v", err)
	}
}

// TestVerifyRejectsV1DiscoveryForAnotherTenant: the v1 discovery document (whose issuer lives on another host than
// the authority) must name this tenant's v1 issuer; one naming another tenant's is refused like a wrong v2 issuer,
// so the verifier never trusts an issuer its configuration did not choose.
func TestVerifyRejectsV1DiscoveryForAnotherTenant(t *testing.T) {
	fake := entrafake.New(t)
	other := entrafake.NewGUID()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := fake.Client().Get(fake.URL() + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		body = bytes.ReplaceAll(body, []byte(entrafake.V1Issuer(fake.TenantID)), []byte(entrafake.V1Issuer(other)))
		// The v2 documents still point at the fake: only the v1 issuer changes.
		body = bytes.ReplaceAll(body, []byte(fake.URL()), []byte("http://"+r.Host))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(proxy.Close)
	v, err := entra.NewVerifier(entra.Config{TenantID: fake.TenantID, Audiences: []string{fake.ClientID},
		AuthorityHost: proxy.URL, HTTPClient: proxy.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Prefetch(context.Background()); !errors.Is(err, entra.ErrUnavailable) || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("Prefetch = %v, want ErrUnavailable about the v1 issuer", err)
	}
}

func TestPrefetch(t *testing.T) {
	e := newEnv(t)
	if err := e.v.Prefetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.fake.JWKSFetches() != 1 || e.fake.DiscoveryFetches() != 2 {
		t.Fatalf("requests = %v", e.fake.Requests())
	}
	e.mustVerify(t, e.fake.MintApp(nil))
	if e.fake.JWKSFetches() != 1 {
		t.Fatal("Verify refetched after Prefetch")
	}
}

func TestNewVerifierValidatesConfig(t *testing.T) {
	tid := entrafake.NewGUID()
	for _, tc := range []struct {
		name string
		cfg  entra.Config
	}{
		{"tenant domain name", entra.Config{TenantID: "contoso.onmicrosoft.com", Audiences: []string{"x"}}},
		{"no audience", entra.Config{TenantID: tid, Audiences: []string{" "}}},
		{"plain http authority", entra.Config{TenantID: tid, Audiences: []string{"x"}, AuthorityHost: "http://login.example.com/"}},
		{"leeway too large", entra.Config{TenantID: tid, Audiences: []string{"x"}, Leeway: 3 * time.Minute}},
		{"negative leeway", entra.Config{TenantID: tid, Audiences: []string{"x"}, Leeway: -time.Second}},
		{"authority with query", entra.Config{TenantID: tid, Audiences: []string{"x"}, AuthorityHost: "https://login.example.com/?x=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := entra.NewVerifier(tc.cfg); err == nil {
				t.Fatal("accepted invalid config")
			}
		})
	}
	if _, err := entra.NewVerifier(entra.Config{TenantID: tid, Audiences: []string{"api://x"}}); err != nil {
		t.Fatalf("minimal config rejected: %v", err)
	}
}

func TestVerifyCustomTokenCap(t *testing.T) {
	e := newEnv(t, func(c *entra.Config) { c.MaxTokenBytes = 512 })
	_, err := e.verify(e.fake.MintApp(nil))
	ae := mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	if ae.Description != "token too large" {
		t.Fatalf("description = %q", ae.Description)
	}
}

// TestVerifyFailedUnknownKIDRefreshDoesNotBlockTheInterval: a refresh for an unknown kid that fails (Entra briefly
// down) has not looked for the key, so once Entra is back only the short failure backoff holds back the next one;
// a token signed with a newly published key verifies then, not a whole RefreshInterval later.
func TestVerifyFailedUnknownKIDRefreshDoesNotBlockTheInterval(t *testing.T) {
	e := newEnv(t)
	e.mustVerify(t, e.fake.MintApp(nil))

	next := e.fake.AddKey()
	e.fake.UseKey(next)
	tok := e.fake.MintApp(nil)
	e.fake.SetFault(http.StatusServiceUnavailable)
	if _, err := e.verify(tok); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("new kid with Entra down: %v, want ErrUnavailable", err)
	}
	e.fake.SetFault(0)
	e.clock.Advance(10 * time.Second)
	c := e.mustVerify(t, tok)
	if c == nil {
		t.Fatal("no caller")
	}
	if n := e.fake.JWKSFetches(); n != 2 {
		t.Fatalf("JWKS fetches = %d, want 2 (the load, then the refresh after the failed one)", n)
	}
	// The successful refresh does count: junk kids are limited to one fetch per interval again.
	for range 3 {
		_, err := e.verify(e.fake.MintApp(nil, entrafake.UnknownKID()))
		mustAuthError(t, err, http.StatusUnauthorized, entra.CodeInvalidToken)
	}
	if n := e.fake.JWKSFetches(); n != 2 {
		t.Fatalf("junk kids after a successful refresh: JWKS fetches = %d, want 2", n)
	}
}
