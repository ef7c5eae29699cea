package entra

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identifiers the local dev issuer uses unless configured otherwise. They are
// valid GUIDs so the Verifier's checks run unchanged, and obviously fake.
const (
	DevTenantID = "00000000-0000-4000-8000-00000000d3e5"
	DevClientID = "00000000-0000-4000-8000-0000000a2c5e"
	// DevClientAppID is the azp/appid of tokens the dev issuer mints: the
	// "client application" a developer pretends to be.
	DevClientAppID = "00000000-0000-4000-8000-0000000c11e7"

	devKeyFile         = "signing-key.pem"
	devDefaultUPN      = "developer@azscep.local"
	devDefaultLifetime = time.Hour
	devMaxLifetime     = 24 * time.Hour
	devMaxRequestBytes = 64 << 10
)

// DevIssuerConfig configures a DevIssuer.
type DevIssuerConfig struct {
	// Dir holds the issuer's RSA key (created 0700/0600 on first use), e.g.
	// ".local/dev-issuer".
	Dir string
	// BaseURL is where Handler is mounted, as clients reach it, e.g.
	// "http://127.0.0.1:7071/api/dev". Only loopback hosts are accepted.
	BaseURL string
	// TenantID and ClientID default to DevTenantID and DevClientID.
	TenantID string
	ClientID string
	// Clock is time.Now unless a test needs to move time.
	Clock func() time.Time
}

// DevIssuer is a minimal local token issuer for `make run`: it publishes OIDC
// discovery documents and a JWKS shaped like Entra's, and mints v1/v2 access
// tokens on request, so the real Verifier code path runs locally. It is for
// loopback development only — the caller must never mount it in Azure mode,
// and its handler refuses non-loopback clients as a second line of defence.
type DevIssuer struct {
	cfg    DevIssuerConfig
	prefix string // URL path of BaseURL, no trailing slash
	key    *rsa.PrivateKey
	kid    string
	jwks   []byte
	auth   devAuthorizer // outstanding authorization codes (devauthorize.go)
}

// NewDevIssuer loads the signing key from cfg.Dir, creating it if absent.
func NewDevIssuer(cfg DevIssuerConfig) (*DevIssuer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("entra: DevIssuerConfig.Dir is required")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("entra: dev issuer BaseURL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("entra: dev issuer BaseURL %q must name a loopback host", cfg.BaseURL)
	}
	if cfg.TenantID == "" {
		cfg.TenantID = DevTenantID
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DevClientID
	}
	if !isGUID(cfg.TenantID) || !isGUID(cfg.ClientID) {
		return nil, errors.New("entra: dev issuer TenantID and ClientID must be GUIDs")
	}
	cfg.TenantID, cfg.ClientID = normGUID(cfg.TenantID), normGUID(cfg.ClientID)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	key, err := loadOrCreateDevKey(cfg.Dir)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("entra: encoding dev issuer public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	d := &DevIssuer{cfg: cfg, prefix: strings.TrimRight(u.Path, "/"), key: key,
		kid: base64.RawURLEncoding.EncodeToString(sum[:12])}
	d.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": d.kid,
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	if err != nil {
		return nil, fmt.Errorf("entra: encoding dev JWKS: %w", err)
	}
	return d, nil
}

// loadOrCreateDevKey reads Dir/signing-key.pem or creates it. The file is
// created exclusively, so two processes starting at once cannot interleave
// writes; the loser reads the winner's key.
func loadOrCreateDevKey(dir string) (*rsa.PrivateKey, error) {
	path := filepath.Join(dir, devKeyFile)
	if key, err := readDevKey(path); err == nil {
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("entra: creating dev issuer directory: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("entra: generating dev issuer key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("entra: encoding dev issuer key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readDevKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("entra: creating dev issuer key file: %w", err)
	}
	werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("entra: writing dev issuer key file: %w", werr)
	}
	return key, nil
}

func readDevKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("entra: reading dev issuer key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("entra: %s is not a PEM PKCS#8 private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("entra: parsing dev issuer key %s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok || rk.N.BitLen() < 2048 {
		return nil, fmt.Errorf("entra: %s is not an RSA key of at least 2048 bits", path)
	}
	return rk, nil
}

// Authority is the AuthorityHost a Verifier uses to trust this issuer.
func (d *DevIssuer) Authority() string { return d.cfg.BaseURL + "/" }

// TenantID is the tenant the issuer mints tokens for.
func (d *DevIssuer) TenantID() string { return d.cfg.TenantID }

// ClientID is the API client ID (v2 audience); the v1 audience is api://ClientID.
func (d *DevIssuer) ClientID() string { return d.cfg.ClientID }

// VerifierConfig returns a Config that trusts exactly this issuer.
func (d *DevIssuer) VerifierConfig() Config {
	return Config{
		TenantID:      d.cfg.TenantID,
		Audiences:     []string{d.cfg.ClientID, "api://" + d.cfg.ClientID},
		AuthorityHost: d.Authority(),
		Clock:         d.cfg.Clock,
	}
}

func (d *DevIssuer) v1Issuer() string { return d.cfg.BaseURL + "/" + d.cfg.TenantID + "/" }
func (d *DevIssuer) v2Issuer() string { return d.cfg.BaseURL + "/" + d.cfg.TenantID + "/v2.0" }

// DevTokenRequest describes a token to mint. The zero value is a v2 user
// token for developer@azscep.local with no roles, valid for one hour.
type DevTokenRequest struct {
	// App mints an app-only (client credentials) token; UPN is then ignored.
	App bool `json:"app"`
	// ObjectID defaults to a stable GUID derived from the UPN (or "app").
	ObjectID string   `json:"oid"`
	UPN      string   `json:"upn"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	// Version is "1.0" or "2.0" (default).
	Version string `json:"version"`
	// Lifetime defaults to one hour, at most 24 hours.
	Lifetime time.Duration `json:"-"`
	// LifetimeSeconds is Lifetime for JSON callers of POST .../token.
	LifetimeSeconds int `json:"lifetime_seconds"`
}

// lifetime resolves Lifetime, LifetimeSeconds and the default.
func (r DevTokenRequest) lifetime() time.Duration {
	switch {
	case r.Lifetime != 0:
		return r.Lifetime
	case r.LifetimeSeconds != 0:
		return time.Duration(r.LifetimeSeconds) * time.Second
	default:
		return devDefaultLifetime
	}
}

// Mint signs an access token shaped like Entra's for req.
func (d *DevIssuer) Mint(req DevTokenRequest) (string, error) {
	req.Lifetime = req.lifetime()
	if req.Lifetime <= 0 || req.Lifetime > devMaxLifetime {
		return "", fmt.Errorf("entra: dev token lifetime must be positive and at most %v", devMaxLifetime)
	}
	if req.Version == "" {
		req.Version = TokenV2
	}
	if req.Version != TokenV1 && req.Version != TokenV2 {
		return "", fmt.Errorf("entra: dev token version %q is not 1.0 or 2.0", req.Version)
	}
	if !req.App && req.UPN == "" {
		req.UPN = devDefaultUPN
	}
	if req.ObjectID == "" {
		seed := "app"
		if !req.App {
			seed = "user:" + strings.ToLower(req.UPN)
		}
		req.ObjectID = stableGUID(seed)
	}
	if !isGUID(req.ObjectID) {
		return "", fmt.Errorf("%w: dev token oid", ErrInvalidID)
	}
	for _, r := range req.Roles {
		if r == "" || len(r) > 120 {
			return "", errors.New("entra: dev token role names must be 1..120 characters")
		}
	}
	now := d.cfg.Clock()
	c := jwt.MapClaims{
		"tid": d.cfg.TenantID,
		"oid": normGUID(req.ObjectID),
		"iat": now.Unix(),
		"nbf": now.Add(-5 * time.Minute).Unix(),
		"exp": now.Add(req.Lifetime).Unix(),
		"ver": req.Version,
	}
	if len(req.Roles) > 0 {
		c["roles"] = req.Roles
	}
	if req.Name != "" {
		c["name"] = req.Name
	}
	if req.Version == TokenV2 {
		c["iss"], c["aud"], c["azp"] = d.v2Issuer(), d.cfg.ClientID, DevClientAppID
	} else {
		c["iss"], c["aud"], c["appid"] = d.v1Issuer(), "api://"+d.cfg.ClientID, DevClientAppID
	}
	if req.App {
		c["sub"], c["idtyp"] = normGUID(req.ObjectID), "app"
	} else {
		c["sub"] = stableGUID("sub:" + normGUID(req.ObjectID))
		c["scp"] = "access_as_user"
		c["idtyp"] = "user"
		if req.Version == TokenV2 {
			// upn is an optional claim in v2 tokens; the registration create-api-app.sh makes asks for it.
			c["preferred_username"], c["upn"] = req.UPN, req.UPN
		} else {
			c["upn"], c["unique_name"] = req.UPN, req.UPN
		}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = d.kid
	s, err := t.SignedString(d.key)
	if err != nil {
		return "", fmt.Errorf("entra: signing dev token: %w", err)
	}
	return s, nil
}

// stableGUID derives a GUID from seed so the same dev user keeps the same oid
// across runs (records and ownership checks stay consistent).
func stableGUID(seed string) string {
	s := sha256.Sum256([]byte("azscep-dev-issuer:" + seed))
	s[6] = s[6]&0x0f | 0x80 // version 8 (custom)
	s[8] = s[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// Handler serves, under the BaseURL path:
//
//	GET  {tenant}/v2.0/.well-known/openid-configuration
//	GET  {tenant}/.well-known/openid-configuration
//	GET  {tenant}/discovery/v2.0/keys  (and {tenant}/discovery/keys)
//	POST token   JSON DevTokenRequest → {"access_token", "token_type", "expires_in"}
//	GET,POST authorize, POST token (form): the authorization-code + PKCE flow of devauthorize.go
//
// Mount it at the BaseURL path with a trailing slash, e.g.
// mux.Handle("/api/dev/", dev.Handler()). Requests from non-loopback peers get
// 403.
func (d *DevIssuer) Handler() http.Handler {
	return http.HandlerFunc(d.serve)
}

func (d *DevIssuer) serve(w http.ResponseWriter, r *http.Request) {
	if !loopbackPeer(r.RemoteAddr) {
		http.Error(w, "dev issuer is local only", http.StatusForbidden)
		return
	}
	rel, ok := strings.CutPrefix(r.URL.Path, d.prefix+"/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	tp := d.cfg.TenantID + "/"
	switch rel {
	case "token":
		if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			// `curl -d '{…}'` labels a JSON body as a form: only a body that is not a JSON object takes the
			// authorization-code path, so the README's one-line token command keeps working.
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, devMaxRequestBytes))
			if err != nil {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
				d.serveCodeToken(w, r)
				return
			}
		}
		d.serveToken(w, r)
		return
	case "authorize":
		d.serveAuthorize(w, r)
		return
	case tp + "v2.0/.well-known/openid-configuration":
		d.serveJSON(w, r, d.discovery(d.v2Issuer(), d.cfg.BaseURL+"/"+tp+"discovery/v2.0/keys"))
	case tp + ".well-known/openid-configuration":
		d.serveJSON(w, r, d.discovery(d.v1Issuer(), d.cfg.BaseURL+"/"+tp+"discovery/keys"))
	case tp + "discovery/v2.0/keys", tp + "discovery/keys":
		d.serveJSON(w, r, d.jwks)
	default:
		http.NotFound(w, r)
	}
}

func (d *DevIssuer) discovery(issuer, jwksURI string) []byte {
	b, _ := json.Marshal(map[string]any{ // cannot fail: strings only
		"issuer":                                issuer,
		"jwks_uri":                              jwksURI,
		"token_endpoint":                        d.cfg.BaseURL + "/token",
		"authorization_endpoint":                d.cfg.BaseURL + "/authorize",
		"code_challenge_methods_supported":      []string{"S256"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "token"},
		"subject_types_supported":               []string{"pairwise"},
	})
	return b
}

func (d *DevIssuer) serveJSON(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

func (d *DevIssuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var req DevTokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, devMaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "body must be a JSON token request", http.StatusBadRequest)
		return
	}
	tok, err := d.Mint(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(req.lifetime() / time.Second),
	})
}

func loopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
