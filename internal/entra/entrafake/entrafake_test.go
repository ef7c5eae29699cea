package entrafake_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/azscep/azscep/internal/entra/entrafake"
)

func claimsOf(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Header, claims
}

func TestTokenShapes(t *testing.T) {
	s := entrafake.New(t)
	oid := entrafake.NewGUID()

	h, c := claimsOf(t, s.MintUser(oid, "u@contoso.example", []string{"R"}, entrafake.V1()))
	if c["ver"] != "1.0" || c["iss"] != entrafake.V1Issuer(s.TenantID) || c["aud"] != s.AppIDURI ||
		c["appid"] != s.ClientAppID || c["upn"] != "u@contoso.example" || c["unique_name"] != "u@contoso.example" ||
		c["azp"] != nil || c["preferred_username"] != nil || c["oid"] != oid || c["sub"] == oid || c["tid"] != s.TenantID {
		t.Fatalf("v1 user claims = %v", c)
	}
	if h["alg"] != "RS256" || h["kid"] != s.ActiveKID() || h["x5t"] != s.ActiveKID() {
		t.Fatalf("v1 header = %v", h)
	}

	// Real access tokens name their client (azp in v2, appid in v1) and a delegated one carries scp; none has a nonce.
	if c["scp"] != "access_as_user" || c["nonce"] != nil {
		t.Fatalf("v1 user claims = %v", c)
	}
	_, c = claimsOf(t, s.MintUser(oid, "u@contoso.example", nil))
	if c["ver"] != "2.0" || c["azp"] != s.ClientAppID || c["scp"] != "access_as_user" || c["appid"] != nil || c["nonce"] != nil {
		t.Fatalf("v2 user claims = %v", c)
	}
	_, c = claimsOf(t, s.MintApp(nil, entrafake.V1()))
	if c["appid"] != s.ClientAppID || c["azp"] != nil || c["scp"] != nil || c["nonce"] != nil {
		t.Fatalf("v1 app claims = %v", c)
	}

	_, c = claimsOf(t, s.MintApp([]string{"R"}))
	if c["ver"] != "2.0" || c["iss"] != s.V2Issuer() || c["aud"] != s.ClientID || c["azp"] != s.ClientAppID ||
		c["idtyp"] != "app" || c["oid"] != s.AppObjectID || c["sub"] != s.AppObjectID || c["scp"] != nil || c["appid"] != nil {
		t.Fatalf("v2 app claims = %v", c)
	}

	h, _ = claimsOf(t, s.MintApp(nil, entrafake.AlgNone()))
	if h["alg"] != "none" {
		t.Fatalf("alg none header = %v", h)
	}
	_, c = claimsOf(t, s.MintApp(nil, entrafake.NoExpiry()))
	if _, ok := c["exp"]; ok {
		t.Fatal("NoExpiry kept exp")
	}
	if tok := s.MintApp(nil, entrafake.Oversized(20000)); len(tok) < 20000 {
		t.Fatalf("Oversized token is %d bytes", len(tok))
	}
}

// TestIDTokenShape: MintIDToken is an OpenID Connect ID token as Entra issues one to the console (which signs in as
// the API's app registration): addressed to the client ID, with a nonce, and none of the claims only access tokens
// carry — even with the access-token optional claims configured.
func TestIDTokenShape(t *testing.T) {
	s := entrafake.New(t, entrafake.WithOptionalClaims("upn", "acct"))
	oid := entrafake.NewGUID()
	for _, tc := range []struct {
		name string
		opts []entrafake.MintOption
		ver  string
		iss  string
	}{
		{"v2", nil, "2.0", s.V2Issuer()},
		{"v1", []entrafake.MintOption{entrafake.V1()}, "1.0", entrafake.V1Issuer(s.TenantID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := claimsOf(t, s.MintIDToken(oid, "u@contoso.example", []string{"R"}, tc.opts...))
			if c["ver"] != tc.ver || c["iss"] != tc.iss || c["aud"] != s.ClientID || c["tid"] != s.TenantID ||
				c["oid"] != oid || c["sub"] == oid || c["sub"] == nil || c["nonce"] == nil || c["exp"] == nil {
				t.Fatalf("ID token claims = %v", c)
			}
			if r, _ := c["roles"].([]any); len(r) != 1 || r[0] != "R" {
				t.Fatalf("roles = %v", c["roles"])
			}
			for _, access := range []string{"azp", "azpacr", "appid", "appidacr", "scp", "idtyp", "acct"} {
				if v, ok := c[access]; ok {
					t.Fatalf("ID token carries the access-token claim %s = %v", access, v)
				}
			}
			if tc.ver == "2.0" && (c["upn"] != nil || c["preferred_username"] != "u@contoso.example") {
				t.Fatalf("v2 ID token name claims = %v", c)
			}
		})
	}
}

func TestDiscoveryAndRotation(t *testing.T) {
	s := entrafake.New(t)
	get := func(path string) (int, map[string]any) {
		resp, err := s.Client().Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, d := get("/" + s.TenantID + "/v2.0/.well-known/openid-configuration"); code != 200 || d["issuer"] != s.V2Issuer() {
		t.Fatalf("v2 discovery = %d %v", code, d)
	}
	if code, d := get("/" + s.TenantID + "/.well-known/openid-configuration"); code != 200 || d["issuer"] != entrafake.V1Issuer(s.TenantID) {
		t.Fatalf("v1 discovery = %d %v", code, d)
	}
	if code, _ := get("/" + entrafake.NewGUID() + "/v2.0/.well-known/openid-configuration"); code != http.StatusBadRequest {
		t.Fatalf("unknown tenant = %d", code)
	}
	kids := func() []string {
		_, j := get("/" + s.TenantID + "/discovery/v2.0/keys")
		var out []string
		for _, k := range j["keys"].([]any) {
			out = append(out, k.(map[string]any)["kid"].(string))
		}
		return out
	}
	first := s.ActiveKID()
	second := s.AddKey()
	if k := kids(); len(k) != 2 {
		t.Fatalf("kids after AddKey = %v", k)
	}
	s.RemoveKey(first)
	if k := kids(); len(k) != 1 || k[0] != second {
		t.Fatalf("kids after RemoveKey = %v", k)
	}
	s.SetFault(http.StatusServiceUnavailable)
	if code, _ := get("/" + s.TenantID + "/discovery/v2.0/keys"); code != http.StatusServiceUnavailable {
		t.Fatalf("fault not injected: %d", code)
	}
	if s.JWKSFetches() != 3 || s.DiscoveryFetches() != 3 {
		t.Fatalf("journal = %+v", s.Requests())
	}
}
