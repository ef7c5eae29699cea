package csrapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestAuthRejections walks reliability.md §4.3's token table: every bad credential is a problem+json answer with
// a stable code and, for 401/403, a WWW-Authenticate challenge — and no certificate is issued for any of them.
func TestAuthRejections(t *testing.T) {
	e := newEnv(t)
	der := csrDER(t, ecKey(t, "auth"), testca.CSROptions{Subject: cn("auth-device")})

	// Warm the key cache with one good request, so the unknown-kid case can count exactly one refresh.
	e.wantCert(e.post(e.appToken(), der))
	issued := e.records("")

	alice := newUser("alice")
	otherTenant := entrafake.NewGUID()
	cases := []struct {
		name   string
		auth   []string
		status int
		code   string // problem code
		// challenge is the WWW-Authenticate value, or a prefix of it when it ends in "*".
		challenge string
	}{
		{name: "no header", auth: nil, status: 401, code: csrapi.CodeUnauthorized, challenge: "Bearer"},
		{name: "two headers", auth: []string{"Bearer " + e.appToken(), "Bearer " + e.appToken()}, status: 401,
			code: entra.CodeInvalidRequest, challenge: `Bearer error="invalid_request"*`},
		{name: "not Bearer", auth: []string{"Basic YWxpY2U6c2VjcmV0"}, status: 401, code: csrapi.CodeUnauthorized,
			challenge: "Bearer"},
		{name: "empty bearer", auth: []string{"Bearer "}, status: 401, code: entra.CodeInvalidRequest,
			challenge: `Bearer error="invalid_request"*`},
		{name: "malformed JWT: two segments", auth: bearer("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "malformed JWT: not base64url", auth: bearer("a*b.c.d"), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "malformed JWT: not JSON", auth: bearer("bm90IGpzb24.bm90IGpzb24.c2ln"), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "oversized token", auth: bearer(e.appToken(entrafake.Oversized(entra.DefaultMaxTokenBytes + 1))),
			status: 401, code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token", error_description="token too large"`},
		{name: "alg none", auth: bearer(e.appToken(entrafake.AlgNone())), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "HS256 keyed with the public key", auth: bearer(e.appToken(entrafake.HS256WithPublicKey())),
			status: 401, code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "bad signature", auth: bearer(tamperSignature(e.appToken())), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "wrong tenant", auth: bearer(e.appToken(entrafake.FromTenant(otherTenant))), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "wrong issuer", auth: bearer(e.appToken(entrafake.WithClaim("iss",
			"https://login.evil.test/"+e.tenant.TenantID+"/v2.0"))), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "wrong audience: Graph token", auth: bearer(e.appToken(entrafake.WithAudience("https://graph.microsoft.com"))),
			status: 401, code: entra.CodeInvalidToken,
			challenge: `Bearer error="invalid_token", error_description="token audience not accepted"`},
		{name: "wrong audience: another app", auth: bearer(e.appToken(entrafake.WithAudience(entrafake.NewGUID()))),
			status: 401, code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "expired", auth: bearer(e.appToken(entrafake.Expired())), status: 401, code: entra.CodeInvalidToken,
			challenge: `Bearer error="invalid_token", error_description="token expired"`},
		{name: "nbf in the future", auth: bearer(e.appToken(entrafake.FutureNotBefore())), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token", error_description="token not yet valid"`},
		{name: "missing exp", auth: bearer(e.appToken(entrafake.NoExpiry())), status: 401,
			code: entra.CodeInvalidToken, challenge: `Bearer error="invalid_token"*`},
		{name: "missing role: app", auth: bearer(e.tenant.MintApp(nil)), status: 403,
			code: entra.CodeInsufficientScope, challenge: `Bearer error="insufficient_scope"*`},
		{name: "missing role: user", auth: bearer(e.userToken(alice, []string{"Some.Other.Role"})), status: 403,
			code: entra.CodeInsufficientScope, challenge: `Bearer error="insufficient_scope"*`},
		{name: "admin role is not an enrolment role", auth: bearer(e.userToken(alice, []string{entra.RoleCertificatesManage})),
			status: 403, code: entra.CodeInsufficientScope, challenge: `Bearer error="insufficient_scope"*`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(request{body: der, contentType: "application/pkcs10", auth: tc.auth})
			wantProblem(t, r, tc.status, tc.code)
			got := r.Header.Values("WWW-Authenticate")
			if len(got) != 1 {
				t.Fatalf("WWW-Authenticate = %q, want exactly one challenge", got)
			}
			if prefix, ok := strings.CutSuffix(tc.challenge, "*"); ok {
				if !strings.HasPrefix(got[0], prefix) {
					t.Fatalf("WWW-Authenticate = %q, want prefix %q", got[0], prefix)
				}
			} else if got[0] != tc.challenge {
				t.Fatalf("WWW-Authenticate = %q, want %q", got[0], tc.challenge)
			}
			if strings.Contains(string(r.body), "eyJ") {
				t.Fatal("problem body echoes token material")
			}
		})
	}

	t.Run("unknown kid refreshes the JWKS exactly once", func(t *testing.T) {
		before := e.tenant.JWKSFetches()
		r := e.post(e.appToken(entrafake.UnknownKID()), der)
		wantProblem(t, r, 401, entra.CodeInvalidToken)
		want := `Bearer error="invalid_token", error_description="token signing key not recognised"`
		if got := r.Header.Get("WWW-Authenticate"); got != want {
			t.Fatalf("WWW-Authenticate = %q", got)
		}
		if n := e.tenant.JWKSFetches() - before; n != 1 {
			t.Fatalf("JWKS fetches for an unknown kid = %d, want exactly 1", n)
		}
		// A burst of junk kids right after is refused from the cache: the refresh is rate-limited.
		for range 3 {
			wantProblem(t, e.post(e.appToken(entrafake.UnknownKID()), der), 401, entra.CodeInvalidToken)
		}
		if n := e.tenant.JWKSFetches() - before; n != 1 {
			t.Fatalf("JWKS fetches after more unknown kids = %d, want still 1", n)
		}
	})

	if n := e.records(""); n != issued {
		t.Fatalf("records = %d after rejected requests, want %d: a refused caller reached issuance", n, issued)
	}
}

// TestAuthLeewayEdges checks exp/nbf are honoured with the verifier's small leeway, not more.
func TestAuthLeewayEdges(t *testing.T) {
	e := newEnv(t)
	der := csrDER(t, ecKey(t, "leeway"), testca.CSROptions{Subject: cn("leeway-device")})
	now := e.clock.Now()

	// Expired 30 s ago: inside the one-minute leeway.
	e.wantCert(e.post(e.appToken(entrafake.ExpiresAt(now.Add(-30*time.Second)), entrafake.NotBefore(now.Add(-time.Hour))), der))
	// Expired three minutes ago: beyond any allowed leeway (≤ 2 min).
	r := e.post(e.appToken(entrafake.ExpiresAt(now.Add(-3*time.Minute)), entrafake.NotBefore(now.Add(-time.Hour))), der)
	wantProblem(t, r, 401, entra.CodeInvalidToken)
	// Not valid for another three minutes.
	r = e.post(e.appToken(entrafake.NotBefore(now.Add(3*time.Minute))), der)
	wantProblem(t, r, 401, entra.CodeInvalidToken)
}

// TestAuthKeysUnavailable: when the tenant's keys cannot be fetched the answer is 503 with Retry-After, never a
// 401 (the token may be fine) and never a certificate.
func TestAuthKeysUnavailable(t *testing.T) {
	e := newEnv(t)
	e.tenant.SetFault(http.StatusServiceUnavailable)
	der := csrDER(t, ecKey(t, "idp-down"), testca.CSROptions{Subject: cn("idp-down")})
	r := e.post(e.appToken(), der)
	wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
	wantRetryAfter(t, r, 1)
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d while the identity provider is down, want 0", n)
	}

	e.tenant.SetFault(0)
	e.clock.Advance(entra.DefaultRefreshInterval) // past any failure back-off
	e.wantCert(e.post(e.appToken(), der))
}

// TestMethodNotAllowed: only POST is served, with Allow.
func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		r := e.do(request{method: m, auth: bearer(e.appToken())})
		wantProblem(t, r, http.StatusMethodNotAllowed, csrapi.CodeMethod)
		if got := r.Header.Get("Allow"); got != http.MethodPost {
			t.Fatalf("%s: Allow = %q, want POST", m, got)
		}
	}
	if n := e.records(store.StatusIssued); n != 0 {
		t.Fatalf("records = %d, want 0", n)
	}
}

// tamperSignature flips one character in the middle of a JWT's signature segment (the last character may only
// carry padding bits, which lenient base64url decoders ignore).
func tamperSignature(tok string) string {
	i := strings.LastIndexByte(tok, '.') + (len(tok)-strings.LastIndexByte(tok, '.'))/2
	b := []byte(tok)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
