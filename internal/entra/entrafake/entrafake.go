// Package entrafake is a strict, in-process stand-in for Microsoft Entra ID
// and the slice of Microsoft Graph that azscep uses, for tests only.
//
// [Server] publishes the v1 and v2 OIDC discovery documents and the JWKS of a
// tenant on an httptest server (loopback, no network), supports key rotation
// at runtime, records every request, and mints v1- and v2-shaped access tokens
// — valid ones and every kind of bad one the verifier must reject, including
// the OpenID Connect ID tokens the same tenant issues for the same audience
// ([Server.MintIDToken]). [Graph]
// fakes devices (enabled or disabled), their registered owners and Intune
// managed devices, with a journal and fault injection.
package entrafake

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// V1Issuer is the v1 issuer Entra puts in tokens (and in the v1 discovery
// document) for a tenant; it lives on sts.windows.net, not on the authority.
func V1Issuer(tenantID string) string { return "https://sts.windows.net/" + tenantID + "/" }

// Request is one journal entry.
type Request struct {
	Method string
	Path   string
	Query  string
	// Auth is the Authorization header as received (Graph fake only).
	Auth string
	// ConsistencyLevel is the ConsistencyLevel header as received (Graph fake only).
	ConsistencyLevel string
}

// Server is a fake Entra tenant. Create it with New; it is closed by the
// test's Cleanup.
type Server struct {
	// TenantID, ClientID (the API app's client ID, v2 audience), AppIDURI
	// (v1 audience) and ClientAppID (azp/appid of minted tokens) are fixed at
	// construction and safe to read.
	TenantID    string
	ClientID    string
	AppIDURI    string
	ClientAppID string
	// AppObjectID is the oid (and sub) of the client app's service principal
	// in app-only tokens.
	AppObjectID string
	// OptionalClaims are the access-token optional claims the API
	// registration requests (WithOptionalClaims): "upn" adds upn to v2 user
	// tokens, "acct" adds the account status (0 member, 1 guest).
	OptionalClaims []string

	tb  testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	keys    []*signingKey
	active  *signingKey
	journal []Request
	fault   int
	clock   func() time.Time
	graph   *Graph
}

type signingKey struct {
	kid       string
	priv      *rsa.PrivateKey
	published bool
}

// Option configures New.
type Option func(*Server)

// WithTenant fixes the tenant ID instead of a random one.
func WithTenant(tid string) Option { return func(s *Server) { s.TenantID = tid } }

// WithClientID fixes the API client ID (and App ID URI api://<id>).
func WithClientID(id string) Option {
	return func(s *Server) { s.ClientID, s.AppIDURI = id, "api://"+id }
}

// WithOptionalClaims models the API registration's optionalClaims.accessToken
// list (create-api-app.sh requests idtyp, upn and acct): "upn" puts upn into v2
// user tokens (v1 carry it anyway), "acct" puts acct into user tokens.
func WithOptionalClaims(names ...string) Option {
	return func(s *Server) { s.OptionalClaims = append(s.OptionalClaims, names...) }
}

func (s *Server) optional(name string) bool {
	for _, n := range s.OptionalClaims {
		if n == name {
			return true
		}
	}
	return false
}

// WithGraph makes g the tenant's directory, with the API's application (its
// client ID, and the app roles create-api-app.sh defines): a user token minted
// for a user g does not have adds that user (enabled, a member unless the
// token is a guest's, created a day before the token) and assigns it the API
// roles the token carries, and an app-only token its service principal
// (enabled) and the API roles it carries, as a token is
// only ever issued to an existing account for roles it holds. Accounts already
// in g are left as they are, and roles Graph.RemoveAppRole took away are not
// given back, so a test can disable, rename or revoke one and mint again.
func WithGraph(g *Graph) Option { return func(s *Server) { s.graph = g } }

// WithClock makes minted tokens' iat/nbf/exp relative to clock.
func WithClock(clock func() time.Time) Option { return func(s *Server) { s.clock = clock } }

// New starts a fake tenant with one published signing key.
func New(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{
		TenantID:    NewGUID(),
		ClientAppID: NewGUID(),
		AppObjectID: NewGUID(),
		tb:          tb,
		clock:       time.Now,
	}
	WithClientID(NewGUID())(s)
	for _, o := range opts {
		o(s)
	}
	s.active = s.newKey(true)
	if s.graph != nil {
		// The API's registration, as create-api-app.sh makes it.
		s.graph.SetAPI(s.ClientID, "CSR.Request.Db", "CSR.SelfService", "Certificates.Manage", "Certificates.Read")
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	return s
}

// URL is the server root, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL }

// Authority is the value for entra.Config.AuthorityHost.
func (s *Server) Authority() string { return s.srv.URL + "/" }

// V2Issuer is the v2 issuer for this tenant on this server.
func (s *Server) V2Issuer() string { return s.srv.URL + "/" + s.TenantID + "/v2.0" }

// Client is an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddKey generates and publishes a new signing key and returns its kid. It
// does not become the minting key; call UseKey for that.
func (s *Server) AddKey() string {
	return s.newKey(true).kid
}

// AddUnpublishedKey generates a key that is not in the JWKS (yet); Publish
// adds it later. Tokens signed with it model Entra rotating before our cache
// has seen the new key.
func (s *Server) AddUnpublishedKey() string {
	return s.newKey(false).kid
}

// Publish adds an existing key to the JWKS.
func (s *Server) Publish(kid string) { s.setPublished(kid, true) }

// RemoveKey withdraws a key from the JWKS; it can still be used to mint (with
// SignedWith) to test that withdrawn keys stop verifying.
func (s *Server) RemoveKey(kid string) { s.setPublished(kid, false) }

// UseKey makes kid the default minting key.
func (s *Server) UseKey(kid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = s.findLocked(kid)
}

// ActiveKID is the kid new tokens are signed with by default.
func (s *Server) ActiveKID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active.kid
}

// SetFault makes every discovery and JWKS response fail with status (0
// restores normal service).
func (s *Server) SetFault(status int) {
	s.mu.Lock()
	s.fault = status
	s.mu.Unlock()
}

// Requests returns a copy of the journal.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.journal...)
}

// JWKSFetches counts requests for either JWKS path.
func (s *Server) JWKSFetches() int { return s.count("/keys") }

// DiscoveryFetches counts requests for either discovery document.
func (s *Server) DiscoveryFetches() int { return s.count("/openid-configuration") }

func (s *Server) count(suffix string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}

func (s *Server) setPublished(kid string, pub bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.findLocked(kid).published = pub
}

func (s *Server) findLocked(kid string) *signingKey {
	for _, k := range s.keys {
		if k.kid == kid {
			return k
		}
	}
	s.tb.Fatalf("entrafake: unknown kid %q", kid)
	return nil
}

func (s *Server) newKey(published bool) *signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := &signingKey{kid: randomKID(), priv: poolKey(len(s.keys)), published: published}
	s.keys = append(s.keys, k)
	return k
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.journal = append(s.journal, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery})
	fault := s.fault
	s.mu.Unlock()

	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
		return
	}
	tp := "/" + s.TenantID
	var body any
	switch r.URL.Path {
	case tp + "/v2.0/.well-known/openid-configuration":
		body = s.discovery(s.V2Issuer(), s.srv.URL+tp+"/discovery/v2.0/keys", "/oauth2/v2.0")
	case tp + "/.well-known/openid-configuration":
		body = s.discovery(V1Issuer(s.TenantID), s.srv.URL+tp+"/discovery/keys", "/oauth2")
	case tp + "/discovery/v2.0/keys", tp + "/discovery/keys":
		body = s.jwks()
	default:
		// Entra answers unknown tenants with 400 AADSTS90002.
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found.",
		})
		return
	}
	if fault != 0 {
		writeJSON(w, fault, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) discovery(issuer, jwksURI, oauthPath string) map[string]any {
	return map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              jwksURI,
		"token_endpoint":                        s.srv.URL + "/" + s.TenantID + oauthPath + "/token",
		"authorization_endpoint":                s.srv.URL + "/" + s.TenantID + oauthPath + "/authorize",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "token id_token"},
		"subject_types_supported":               []string{"pairwise"},
		"tenant_region_scope":                   "EU",
	}
}

func (s *Server) jwks() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := []map[string]any{}
	for _, k := range s.keys {
		if !k.published {
			continue
		}
		keys = append(keys, map[string]any{
			"kty": "RSA", "use": "sig", "kid": k.kid, "x5t": k.kid,
			"n":      base64.RawURLEncoding.EncodeToString(k.priv.N.Bytes()),
			"e":      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.priv.E)).Bytes()),
			"issuer": s.V2Issuer(),
		})
	}
	return map[string]any{"keys": keys}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// --- minting -------------------------------------------------------------

// MintOption adjusts a token before it is signed.
type MintOption func(*mint)

type mint struct {
	version    int
	now        time.Time
	claims     jwt.MapClaims // principal claims, then WithClaim
	late       []func(now time.Time, c jwt.MapClaims)
	drop       []string
	kid        string
	unknownKID bool
	headerKID  *string
	alg        string // RS256 (default), none, HS256, or another RSA algorithm (WithRSAAlg)
	padTo      int
	tenant     string
	aud        string
	upn        string
	guestOf    string // home tenant of a B2B guest
	idToken    bool   // an OpenID Connect ID token, not an access token
	oid        string // a user's object ID, for the tenant's directory
	app        bool   // an app-only token: its oid is a service principal in the tenant's directory
}

// V1 mints a v1.0-shaped token (iss sts.windows.net, aud App ID URI, appid,
// upn/unique_name).
func V1() MintOption { return func(m *mint) { m.version = 1 } }

// V2 mints a v2.0-shaped token (the default: iss .../v2.0, aud client ID, azp,
// preferred_username).
func V2() MintOption { return func(m *mint) { m.version = 2 } }

// At mints relative to now instead of the server clock.
func At(now time.Time) MintOption { return func(m *mint) { m.now = now } }

// WithAudience replaces aud.
func WithAudience(aud string) MintOption { return func(m *mint) { m.aud = aud } }

// FromTenant mints a token issued by and for another tenant (tid and iss),
// signed with the same keys — exactly what Entra's shared signing keys allow.
func FromTenant(tid string) MintOption { return func(m *mint) { m.tenant = tid } }

// WithClaim sets or replaces any claim (after the defaults).
func WithClaim(name string, value any) MintOption {
	return func(m *mint) { m.claims[name] = value }
}

// WithoutClaim removes a claim (after WithClaim).
func WithoutClaim(name string) MintOption {
	return func(m *mint) { m.drop = append(m.drop, name) }
}

// Expired mints a token that expired an hour ago.
func Expired() MintOption {
	return func(m *mint) {
		m.late = append(m.late, func(now time.Time, c jwt.MapClaims) {
			c["exp"] = now.Add(-time.Hour).Unix()
			c["nbf"] = now.Add(-2 * time.Hour).Unix()
			c["iat"] = now.Add(-2 * time.Hour).Unix()
		})
	}
}

// ExpiresAt sets exp.
func ExpiresAt(t time.Time) MintOption { return func(m *mint) { m.claims["exp"] = t.Unix() } }

// NotBefore sets nbf.
func NotBefore(t time.Time) MintOption { return func(m *mint) { m.claims["nbf"] = t.Unix() } }

// FutureNotBefore mints a token that becomes valid in ten minutes.
func FutureNotBefore() MintOption {
	return func(m *mint) {
		m.late = append(m.late, func(now time.Time, c jwt.MapClaims) {
			c["nbf"] = now.Add(10 * time.Minute).Unix()
		})
	}
}

// NoExpiry drops exp.
func NoExpiry() MintOption { return WithoutClaim("exp") }

// UnknownKID signs with a fresh key that is not and never will be published.
func UnknownKID() MintOption {
	return func(m *mint) { m.unknownKID = true }
}

// SignedWith signs with an existing key of the server (published or not).
func SignedWith(kid string) MintOption { return func(m *mint) { m.kid = kid } }

// WithHeaderKID keeps the signing key but writes kid into the header (e.g. "" to omit).
func WithHeaderKID(kid string) MintOption {
	return func(m *mint) { m.headerKID = &kid }
}

// AlgNone mints an unsigned token with alg "none".
func AlgNone() MintOption { return func(m *mint) { m.alg = "none" } }

// HS256WithPublicKey signs with HMAC-SHA256 keyed by the PEM encoding of the
// active RSA public key: the classic algorithm-confusion attack.
func HS256WithPublicKey() MintOption { return func(m *mint) { m.alg = "HS256" } }

// WithRSAAlg signs with the tenant's own active key under another RSA algorithm (RS384, RS512, PS256, …): a
// genuine signature in an algorithm Entra does not use for access tokens.
func WithRSAAlg(alg string) MintOption { return func(m *mint) { m.alg = alg } }

// Oversized pads the token (with a junk claim) to at least n bytes.
func Oversized(n int) MintOption { return func(m *mint) { m.padTo = n } }

// WithIDTyp sets the optional idtyp claim ("app", "user"); "" removes it.
func WithIDTyp(v string) MintOption {
	return func(m *mint) {
		if v == "" {
			m.drop = append(m.drop, "idtyp")
		} else {
			m.claims["idtyp"] = v
		}
	}
}

// Guest mints a user token for a B2B guest whose home tenant is homeTenant:
// Entra then sets idp to the home tenant's v1 issuer, acct to 1 (when that
// optional claim is configured), and omits upn in v1 tokens unless the UPN is
// given with WithClaim (include_externally_authenticated_upn).
func Guest(homeTenant string) MintOption { return func(m *mint) { m.guestOf = homeTenant } }

// WithScopes sets scp (space-separated delegated scopes).
func WithScopes(scp string) MintOption { return WithClaim("scp", scp) }

// MintApp mints an app-only (client credentials) token for the server's
// client app with the given app roles. Defaults: v2, idtyp "app", oid == sub
// == AppObjectID, valid from 5 minutes ago for an hour.
func (s *Server) MintApp(roles []string, opts ...MintOption) string {
	s.tb.Helper()
	return s.mint(func(m *mint) {
		m.claims["oid"] = s.AppObjectID
		m.claims["sub"] = s.AppObjectID
		m.claims["idtyp"] = "app"
		m.app = true
		if roles != nil {
			m.claims["roles"] = roles
		}
	}, opts)
}

// MintUser mints a delegated user token (scp "access_as_user") with the given
// app roles. v2 carries preferred_username, v1 upn and unique_name; sub is a
// pairwise ID distinct from oid. idtyp is absent unless WithIDTyp is used.
func (s *Server) MintUser(oid, upn string, roles []string, opts ...MintOption) string {
	s.tb.Helper()
	return s.mint(func(m *mint) {
		m.claims["oid"] = oid
		m.claims["sub"] = pairwiseSub(oid, s.ClientID)
		m.claims["scp"] = "access_as_user"
		m.claims["name"] = "Test User " + upn
		m.upn = upn
		m.oid = oid
		if roles != nil {
			m.claims["roles"] = roles
		}
	}, opts)
}

// MintIDToken mints an OpenID Connect ID token, as Entra returns it to an app
// that signs a user in — here the admin console, which signs in as the API's
// own app registration, so aud is the API's client ID (in v1 too: ID tokens
// are addressed to the client ID, never to an App ID URI). It carries what an
// access token for that user carries — issuer, tid, oid, a pairwise sub,
// name, preferred_username (v2) or upn and unique_name (v1), the app roles
// assigned to the user — plus the sign-in request's nonce, and none of azp or
// appid, scp or idtyp, which only access tokens carry (nor the optional
// access-token claims upn and acct in v2). The verifier must refuse it.
func (s *Server) MintIDToken(oid, upn string, roles []string, opts ...MintOption) string {
	s.tb.Helper()
	return s.mint(func(m *mint) {
		m.idToken = true
		m.claims["oid"] = oid
		m.claims["sub"] = pairwiseSub(oid, s.ClientID)
		m.claims["name"] = "Test User " + upn
		m.claims["nonce"] = "n-" + randomKID()
		m.upn = upn
		if roles != nil {
			m.claims["roles"] = roles
		}
	}, opts)
}

func (s *Server) mint(principal func(*mint), opts []MintOption) string {
	s.tb.Helper()
	s.mu.Lock()
	active := s.active
	s.mu.Unlock()
	m := &mint{version: 2, now: s.clock(), claims: jwt.MapClaims{}, alg: "RS256", tenant: s.TenantID}
	principal(m)
	for _, o := range opts {
		o(m)
	}
	if s.graph != nil && m.oid != "" && !m.idToken && !s.graph.HasUser(m.oid) {
		s.graph.PutUser(User{ID: m.oid, UPN: m.upn, Enabled: true, SessionsValidFrom: m.now.Add(-24 * time.Hour),
			Guest: m.guestOf != "" || strings.Contains(strings.ToUpper(m.upn), "#EXT#")})
	}
	if s.graph != nil && m.oid != "" && !m.idToken {
		// As for applications: a user's token carries the roles assigned to the user.
		roles, _ := m.claims["roles"].([]string)
		s.graph.ensureAppRoles(m.oid, roles)
	}
	if oid, _ := m.claims["oid"].(string); s.graph != nil && m.app && oid != "" {
		if !s.graph.HasServicePrincipal(oid) {
			s.graph.PutServicePrincipal(oid, true)
		}
		roles, _ := m.claims["roles"].([]string)
		s.graph.ensureAppRoles(oid, roles)
	}
	c := jwt.MapClaims{
		// Entra back-dates iat and nbf by five minutes (300 s of clock skew), as its documented sample tokens
		// show (iat == nbf, exp - iat = 65 minutes).
		"iat": m.now.Add(-5 * time.Minute).Unix(),
		"nbf": m.now.Add(-5 * time.Minute).Unix(),
		"exp": m.now.Add(time.Hour).Unix(),
		"tid": m.tenant,
		"rh":  "0.fake-refresh-hint.",
		"uti": randomKID(),
	}
	if m.version == 1 {
		c["ver"] = "1.0"
		c["iss"] = V1Issuer(m.tenant)
		c["aud"] = s.AppIDURI
		c["appid"] = s.ClientAppID
		c["appidacr"] = "1"
		if m.idToken {
			c["aud"] = s.ClientID
			delete(c, "appid")
			delete(c, "appidacr")
		}
		if m.upn != "" {
			c["upn"], c["unique_name"] = m.upn, m.upn
			if m.guestOf != "" {
				delete(c, "upn")
			}
		}
	} else {
		c["ver"] = "2.0"
		c["iss"] = s.srv.URL + "/" + m.tenant + "/v2.0"
		c["aud"] = s.ClientID
		c["azp"] = s.ClientAppID
		c["azpacr"] = "1"
		if m.idToken {
			delete(c, "azp")
			delete(c, "azpacr")
			c["aio"] = "fake-aio"
		}
		if m.upn != "" {
			c["preferred_username"] = m.upn
			if s.optional("upn") && m.guestOf == "" && !m.idToken {
				c["upn"] = m.upn
			}
		}
	}
	if m.upn != "" && s.optional("acct") && !m.idToken {
		c["acct"] = 0
		if m.guestOf != "" {
			c["acct"] = 1
		}
	}
	if m.guestOf != "" {
		c["idp"] = V1Issuer(m.guestOf)
	}
	if m.aud != "" {
		c["aud"] = m.aud
	}
	for _, f := range m.late {
		f(m.now, c)
	}
	for k, v := range m.claims {
		c[k] = v
	}
	for _, k := range m.drop {
		delete(c, k)
	}
	if m.padTo > 0 {
		c["xms_pad"] = strings.Repeat("A", m.padTo)
	}

	var k *signingKey
	switch {
	case m.unknownKID:
		k = s.newKey(false)
	case m.kid != "":
		s.mu.Lock()
		k = s.findLocked(m.kid)
		s.mu.Unlock()
	default:
		k = active
	}
	key, kid := k.priv, k.kid
	if m.headerKID != nil {
		kid = *m.headerKID
	}

	var (
		tok *jwt.Token
		sk  any
	)
	switch m.alg {
	case "none":
		tok, sk = jwt.NewWithClaims(jwt.SigningMethodNone, c), jwt.UnsafeAllowNoneSignatureType
	case "HS256":
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			s.tb.Fatalf("entrafake: encoding public key: %v", err)
		}
		tok, sk = jwt.NewWithClaims(jwt.SigningMethodHS256, c), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	case "", "RS256":
		tok, sk = jwt.NewWithClaims(jwt.SigningMethodRS256, c), key
	default:
		method := jwt.GetSigningMethod(m.alg)
		if method == nil {
			s.tb.Fatalf("entrafake: unknown signing algorithm %q", m.alg)
		}
		tok, sk = jwt.NewWithClaims(method, c), key
	}
	if kid != "" {
		tok.Header["kid"] = kid
		if m.version == 1 {
			tok.Header["x5t"] = kid
		}
	}
	out, err := tok.SignedString(sk)
	if err != nil {
		s.tb.Fatalf("entrafake: signing token: %v", err)
	}
	return out
}

// pairwiseSub imitates Entra's per-application pairwise subject.
func pairwiseSub(oid, app string) string {
	mac := hmac.New(sha256.New, []byte(app))
	mac.Write([]byte(oid))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))[:43]
}

// --- helpers -------------------------------------------------------------

// NewGUID returns a random lower-case v4 GUID.
func NewGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("entrafake: crypto/rand: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func randomKID() string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("entrafake: crypto/rand: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// RSA keys are slow to generate under -race, so all servers in a test
// process draw from one pool: a server's n-th key is pool[n]. Keys are
// distinct within a server, which is all that matters (kids are random per
// key per server).
var (
	poolMu   sync.Mutex
	poolKeys []*rsa.PrivateKey
)

func poolKey(i int) *rsa.PrivateKey {
	poolMu.Lock()
	defer poolMu.Unlock()
	for len(poolKeys) <= i {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Sprintf("entrafake: generating RSA key: %v", err))
		}
		poolKeys = append(poolKeys, k)
	}
	return poolKeys[i]
}
