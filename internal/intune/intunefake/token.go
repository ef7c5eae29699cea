package intunefake

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

const (
	graphScope          = "https://graph.microsoft.com/.default"
	intuneScope         = "https://api.manage.microsoft.com//.default"
	intuneScopeSingle   = "https://api.manage.microsoft.com/.default"
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// tokenInfo is what the fake knows about a token it minted.
type tokenInfo struct {
	clientID string
	audience string
	roles    []string
	exp      time.Time
}

// InvalidateTokens forgets every minted token, so the next Graph/Intune
// call with a cached token is answered 401.
func (s *Server) InvalidateTokens() {
	s.mu.Lock()
	s.tokens = map[string]tokenInfo{}
	s.mu.Unlock()
}

// SetRoles replaces the roles granted in tokens minted from now on.
func (s *Server) SetRoles(roles ...string) {
	s.mu.Lock()
	s.opts.Roles = append([]string{}, roles...)
	s.mu.Unlock()
}

// handleToken implements POST /{tenant}/oauth2/v2.0/token (client credentials).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, e *Entry) {
	fail := func(status int, code, desc string) {
		s.writeJSON(w, e, status, map[string]any{
			"error":             code,
			"error_description": desc,
			"error_codes":       []int{0},
			"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
			"trace_id":          newUUID(),
			"correlation_id":    newUUID(),
		})
		s.finish(e, status, code+": "+desc, false)
	}
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.")
		return
	}
	tenant := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/oauth2/v2.0/token")
	if tenant != s.opts.TenantID {
		fail(http.StatusBadRequest, "invalid_request", fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", tenant))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		fail(http.StatusBadRequest, "invalid_request", "AADSTS900144: form-encoded body required")
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed form body")
		return
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		fail(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("AADSTS70003: grant_type %q not supported", gt))
		return
	}
	clientID := f.Get("client_id")
	if clientID != s.opts.ClientID {
		fail(http.StatusBadRequest, "unauthorized_client",
			fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", clientID))
		return
	}
	switch {
	case f.Get("client_secret") != "":
		if !hmac.Equal([]byte(f.Get("client_secret")), []byte(s.opts.ClientSecret)) {
			fail(http.StatusUnauthorized, "invalid_client",
				"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
			return
		}
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != clientAssertionType {
			fail(http.StatusBadRequest, "invalid_request", "AADSTS50027: client_assertion_type is not jwt-bearer")
			return
		}
		tokenURL := "https://" + r.Host + r.URL.Path
		if err := s.verifyAssertion(f.Get("client_assertion"), tokenURL); err != nil {
			fail(http.StatusUnauthorized, "invalid_client", "AADSTS700027: Client assertion failed signature validation: "+err.Error())
			return
		}
	default:
		fail(http.StatusUnauthorized, "invalid_client",
			"AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	audience, err := s.audienceFor(f.Get("scope"))
	if err != nil {
		fail(http.StatusBadRequest, "invalid_scope", "AADSTS70011: "+err.Error())
		return
	}
	s.mu.Lock()
	roles := append([]string{}, s.opts.Roles...)
	lifetime := s.opts.TokenLifetime
	s.mu.Unlock()
	info := tokenInfo{clientID: clientID, audience: audience, roles: roles, exp: time.Now().Add(lifetime)}
	token, err := s.mintToken(info)
	if err != nil {
		fail(http.StatusInternalServerError, "server_error", "AADSTS50000: minting token")
		return
	}
	s.mu.Lock()
	s.tokens[token] = info
	s.mu.Unlock()
	secs := int(lifetime / time.Second)
	s.writeJSON(w, e, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   token,
	})
}

// audienceFor maps the requested scope to the token audience. MSAL may add
// the OIDC scopes openid/profile/offline_access; exactly one resource
// scope must remain.
func (s *Server) audienceFor(scope string) (string, error) {
	var resource []string
	for _, sc := range strings.Fields(scope) {
		switch sc {
		case "openid", "profile", "offline_access":
		default:
			resource = append(resource, sc)
		}
	}
	if len(resource) != 1 {
		return "", fmt.Errorf("exactly one resource scope is required, got %q", scope)
	}
	s.mu.Lock()
	ownGraphScope := s.base + "/.default"
	s.mu.Unlock()
	switch resource[0] {
	case graphScope, ownGraphScope:
		// A client pointed at the fake as its Graph base derives the Graph
		// scope from that base, as it would for a national cloud.
		return GraphAudience, nil
	case intuneScope:
		return IntuneAudience, nil
	case intuneScopeSingle:
		if s.opts.AcceptSingleSlashScope {
			return IntuneAudience, nil
		}
	}
	return "", fmt.Errorf("the provided value for the input parameter 'scope' is not valid: %q", resource[0])
}

func (s *Server) mintToken(info tokenInfo) (string, error) {
	if !s.opts.JWTTokens {
		b, err := randomBytes(32)
		if err != nil {
			return "", err
		}
		return "fake." + base64.RawURLEncoding.EncodeToString(b), nil
	}
	jti, err := randomBytes(16)
	if err != nil {
		return "", err
	}
	header := b64json(map[string]any{"typ": "JWT", "alg": "HS256"})
	payload := b64json(map[string]any{
		"aud":   info.audience,
		"iss":   "https://sts.windows.net/" + s.opts.TenantID + "/",
		"tid":   s.opts.TenantID,
		"appid": info.clientID,
		"roles": info.roles,
		"iat":   time.Now().Unix(),
		"exp":   info.exp.Unix(),
		"jti":   hex.EncodeToString(jti),
	})
	mac := hmac.New(sha256.New, s.hmacKey)
	mac.Write([]byte(header + "." + payload))
	return header + "." + payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// verifyAssertion checks a private_key_jwt client assertion: RS256/PS256
// signature by Options.ClientCertificate's key, iss = sub = client_id,
// aud = the token URL, unexpired.
func (s *Server) verifyAssertion(assertion, tokenURL string) error {
	cert := s.opts.ClientCertificate
	if cert == nil {
		return fmt.Errorf("no certificate registered for the client")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("only RSA client certificates are supported")
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a compact JWS")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud any    `json:"aud"`
		Exp int64  `json:"exp"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("signature encoding: %w", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch hdr.Alg {
	case "RS256":
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	case "PS256":
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	default:
		return fmt.Errorf("unsupported alg %q", hdr.Alg)
	}
	if err != nil {
		return fmt.Errorf("bad signature")
	}
	if claims.Iss != s.opts.ClientID || claims.Sub != s.opts.ClientID {
		return fmt.Errorf("iss/sub must be the client id")
	}
	var auds []string
	switch a := claims.Aud.(type) {
	case string:
		auds = []string{a}
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok {
				auds = append(auds, s)
			}
		}
	}
	if !slices.Contains(auds, tokenURL) {
		return fmt.Errorf("aud %v is not the token endpoint %s", claims.Aud, tokenURL)
	}
	if time.Unix(claims.Exp, 0).Before(time.Now()) {
		return fmt.Errorf("assertion expired")
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// checkBearer validates the Authorization header for audience and role.
// It returns an HTTP status and reason when the request must be refused.
func (s *Server) checkBearer(r *http.Request, audience, role string) (int, string, string) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or not a Bearer token."
	}
	s.mu.Lock()
	info, known := s.tokens[token]
	s.mu.Unlock()
	switch {
	case !known:
		return http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is not valid."
	case time.Now().After(info.exp):
		return http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
	case info.audience != audience:
		return http.StatusUnauthorized, "InvalidAuthenticationToken",
			fmt.Sprintf("Invalid audience %q, expected %q.", info.audience, audience)
	case !slices.Contains(info.roles, role):
		// Graph answers 403; Intune's status is a knob (401 or 403).
		status := http.StatusForbidden
		if audience == IntuneAudience {
			status = s.opts.MissingRoleStatus
		}
		return status, "Authorization_RequestDenied", "Insufficient privileges to complete the operation (missing role " + role + ")."
	}
	return 0, "", ""
}

// handleOpenIDConfig serves GET /{tenant}/v2.0/.well-known/openid-configuration.
func (s *Server) handleOpenIDConfig(w http.ResponseWriter, r *http.Request, e *Entry) {
	if r.Method != http.MethodGet {
		s.reject(w, e, http.StatusMethodNotAllowed, "invalid_request", "GET only")
		return
	}
	tenant := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/v2.0/.well-known/openid-configuration")
	if tenant != s.opts.TenantID && tenant != "{tenant}" {
		s.reject(w, e, http.StatusBadRequest, "invalid_tenant", fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", tenant))
		return
	}
	base := "https://" + r.Host + "/" + s.opts.TenantID
	s.writeJSON(w, e, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"tenant_region_scope":                   "EU",
	})
}

// handleInstanceDiscovery serves GET /common/discovery/instance for clients
// that do not disable instance discovery (pointing them back at the fake).
func (s *Server) handleInstanceDiscovery(w http.ResponseWriter, r *http.Request, e *Entry) {
	host := r.Host
	s.writeJSON(w, e, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + host + "/" + s.opts.TenantID + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": host,
			"preferred_cache":   host,
			"aliases":           []string{host},
		}},
	})
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	return b, nil
}

// newUUID returns a random version-4 UUID in canonical lower-case form.
func newUUID() string {
	b, err := randomBytes(16)
	if err != nil {
		return "00000000-0000-4000-8000-000000000000"
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
