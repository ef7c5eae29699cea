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
