package entra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token versions as reported in Caller.TokenVersion (the `ver` claim).
const (
	TokenV1 = "1.0"
	TokenV2 = "2.0"
)

// Verifier validates Entra ID access tokens for one API app registration in
// one tenant. It is safe for concurrent use; build one per process and share
// it, so the key cache and its rate limit are shared too.
type Verifier struct {
	cfg  Config
	keys *keyCache
}

// NewVerifier checks cfg and returns a Verifier. It does no network I/O; keys
// are fetched on first use (or by Prefetch), so the process can start while
// the identity provider is briefly unreachable.
func NewVerifier(cfg Config) (*Verifier, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: c}
	v.keys = newKeyCache(&v.cfg)
	return v, nil
}

// Prefetch loads the discovery documents and keys now. Use it at startup or in
// a readiness probe; failure wraps ErrUnavailable.
func (v *Verifier) Prefetch(ctx context.Context) error {
	return v.keys.prefetch(ctx)
}

// Caller is the authenticated principal behind a verified token.
type Caller struct {
	// ObjectID is the immutable object ID (`oid`) of the user or service
	// principal. Use it as the requester identity in records.
	ObjectID string
	// TenantID is the `tid` claim (always the configured tenant).
	TenantID string
	// UPN is the `upn` claim, the only name claim a certificate may be bound
	// to: `preferred_username` and `unique_name` are documented by Microsoft
	// as mutable (a user can change them) and are never used for that. v1
	// tokens carry `upn` for members; v2 tokens only when the API registration
	// lists it as an optional access-token claim (create-api-app.sh does).
	// Empty for apps, and for users whose token lacks the claim.
	UPN string
	// Username is for display and logs only: `upn`, else
	// `preferred_username`, else `unique_name`.
	Username string
	// Guest is true for a user from outside the tenant (B2B guest, personal
	// Microsoft account): the optional `acct` claim is 1, or `idp` names an
	// identity provider other than this tenant's issuer (Entra sets `idp` only
	// when the user was authenticated elsewhere), or the UPN is an #EXT# one.
	Guest bool
	// IdentityProvider is the `idp` claim when it differs from the issuer.
	IdentityProvider string
	// AppID is the client application that obtained the token (`azp` in v2,
	// `appid` in v1): always present, a GUID.
	AppID string
	// Name is the display name (`name`), if any.
	Name string
	// Roles are the app roles granted to the caller (`roles`).
	Roles []string
	// Scopes are the delegated scopes (`scp`); a user (delegated) caller
	// always has at least one.
	Scopes []string
	// IsApp is true for app-only (client-credentials) tokens: `idtyp` == "app"
	// when that optional claim is configured, else no `scp` and oid == sub.
	// A token that is not app-only is a delegated (user) token and must carry
	// `scp`.
	IsApp bool
	// TokenVersion is TokenV1 or TokenV2, from the issuer that signed it.
	TokenVersion string
	// ExpiresAt is the token's `exp`; callers caching per-token decisions must
	// not keep them longer.
	ExpiresAt time.Time
	// IssuedAt is the token's `iat` (zero if absent), compared with the
	// account's session revocation time (Account.Check).
	IssuedAt time.Time
}

// HasRole reports whether the caller was granted the app role. Role names are
// compared exactly, as Entra emits them.
func (c *Caller) HasRole(role string) bool {
	if c == nil {
		return false
	}
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// entraClaims are the access-token claims we read. Unknown claims are ignored;
// a claim of the wrong JSON type makes the token malformed.
type entraClaims struct {
	jwt.RegisteredClaims
	TenantID          string   `json:"tid"`
	ObjectID          string   `json:"oid"`
	Version           string   `json:"ver"`
	AZP               string   `json:"azp"`
	AppID             string   `json:"appid"`
	UPN               string   `json:"upn"`
	PreferredUsername string   `json:"preferred_username"`
	UniqueName        string   `json:"unique_name"`
	Name              string   `json:"name"`
	Roles             []string `json:"roles"`
	Scp               string   `json:"scp"`
	IDTyp             string   `json:"idtyp"`
	IDP               string   `json:"idp"`
	// Acct is the optional account-status claim: 0 member, 1 guest. Read
	// loosely (number or string) so that its encoding cannot hide a guest.
	Acct any `json:"acct"`
	// Nonce is only read for its presence: ID tokens carry it, access tokens
	// never do. Raw, so that any JSON value (even null or "") counts.
	Nonce json.RawMessage `json:"nonce"`
}

// Verify authenticates a request from the values of its Authorization header
// (r.Header.Values("Authorization")). It returns the caller, an *AuthError
// (401) for anything wrong with the credentials, or an error wrapping
// ErrUnavailable when the tenant's keys cannot be fetched.
//
// Checks, in order: exactly one header; `Bearer` scheme; size cap; JWT shape;
// alg RS256 only; kid known (one rate-limited refresh otherwise); signature;
// exp required, nbf honoured, both with leeway; aud one of the configured;
// iss exactly the tenant's v1 or v2 issuer, consistent with `ver`; tid equal
// to the tenant; oid present; then that it is an access token and not an
// OpenID Connect ID token for the same audience (the console signs in as the
// API's own app registration, so its ID token has our client ID as `aud`):
// no `nonce`; the client application named (`azp` in v2, `appid` in v1); and
// a delegated (user) token carries `scp`.
func (v *Verifier) Verify(ctx context.Context, authorizationHeaderValues []string) (*Caller, error) {
	raw, aerr := bearerToken(authorizationHeaderValues, v.cfg.MaxTokenBytes)
	if aerr != nil {
		return nil, aerr
	}

	var (
		claims entraClaims
		snap   *keySnapshot
	)
	keyfunc := func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token header has no kid")
		}
		key, s, err := v.keys.lookup(ctx, kid)
		if err != nil {
			return nil, err
		}
		snap = s
		return key, nil
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithAudience(v.cfg.Audiences...),
		jwt.WithTimeFunc(v.cfg.Clock),
		jwt.WithStrictDecoding(),
	)
	if _, err := parser.ParseWithClaims(raw, &claims, keyfunc); err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, fmt.Errorf("verifying bearer token: %w", err)
		}
		return nil, unauthorized(CodeInvalidToken, describeJWTError(err), err)
	}
	if snap == nil { // unreachable: a verified token went through keyfunc
		return nil, unauthorized(CodeInvalidToken, "token cannot be verified", errors.New("no key snapshot"))
	}

	var version string
	switch claims.Issuer {
	case snap.v2Issuer:
		version = TokenV2
	case snap.v1Issuer:
		version = TokenV1
	default:
		return nil, unauthorized(CodeInvalidToken, "token issuer not accepted",
			fmt.Errorf("issuer %q is neither %q nor %q", claims.Issuer, snap.v1Issuer, snap.v2Issuer))
	}
	if claims.Version != "" && claims.Version != version {
		return nil, unauthorized(CodeInvalidToken, "token version does not match issuer",
			fmt.Errorf("ver %q with issuer %q", claims.Version, claims.Issuer))
	}
	if normGUID(claims.TenantID) != v.cfg.TenantID {
		return nil, unauthorized(CodeInvalidToken, "token is for another tenant",
			fmt.Errorf("tid %q, want %q", claims.TenantID, v.cfg.TenantID))
	}
	if !isGUID(claims.ObjectID) {
		return nil, unauthorized(CodeInvalidToken, "token has no object ID",
			errors.New("oid claim missing or not a GUID"))
	}
	// ID tokens carry the nonce of the sign-in request; access tokens never do.
	if claims.Nonce != nil {
		return nil, unauthorized(CodeInvalidToken, "ID tokens are not accepted; send an access token",
			fmt.Errorf("%w: nonce claim present", ErrIDToken))
	}
	// An access token names the client it was issued to: azp in v2 tokens,
	// appid in v1 tokens. Only the claim of the token's own version counts.
	appID, appClaim := claims.AZP, "azp"
	if version == TokenV1 {
		appID, appClaim = claims.AppID, "appid"
	}
	if !isGUID(appID) {
		return nil, unauthorized(CodeInvalidToken, "token does not name its client application",
			fmt.Errorf("%w: v%s token without a GUID %s claim", ErrNoClientApp, version, appClaim))
	}

	c := &Caller{
		ObjectID:     normGUID(claims.ObjectID),
		TenantID:     v.cfg.TenantID,
		UPN:          claims.UPN,
		Username:     firstNonEmpty(claims.UPN, claims.PreferredUsername, claims.UniqueName),
		AppID:        appID,
		Name:         claims.Name,
		Roles:        claims.Roles,
		Scopes:       strings.Fields(claims.Scp),
		TokenVersion: version,
	}
	if claims.ExpiresAt != nil {
		c.ExpiresAt = claims.ExpiresAt.Time
	}
	if claims.IssuedAt != nil {
		c.IssuedAt = claims.IssuedAt.Time
	}
	switch claims.IDTyp {
	case "app":
		c.IsApp = true
	case "user":
		c.IsApp = false
	default:
		c.IsApp = claims.Scp == "" && claims.ObjectID == claims.Subject
	}
	// Entra puts the granted delegated scopes in every user access token. A
	// user-shaped token without them is what an ID token looks like.
	if !c.IsApp && len(c.Scopes) == 0 {
		return nil, unauthorized(CodeInvalidToken, "delegated token has no scopes",
			fmt.Errorf("%w: no scp claim in a user token", ErrNoScope))
	}
	if claims.IDP != "" && claims.IDP != snap.v1Issuer && claims.IDP != snap.v2Issuer {
		c.IdentityProvider = claims.IDP
	}
	if !c.IsApp {
		c.Guest = c.IdentityProvider != "" || isGuestAcct(claims.Acct) ||
			strings.Contains(strings.ToUpper(claims.UPN), "#EXT#")
	}
	return c, nil
}

// isGuestAcct reads the optional `acct` claim: 1 (or "1") is a guest; a value
// that is neither 0 nor 1 counts as a guest too (fail closed).
func isGuestAcct(v any) bool {
	switch a := v.(type) {
	case nil:
		return false
	case float64:
		return a != 0
	case string:
		return a != "0"
	}
	return true
}

// bearerToken extracts the token from the Authorization header values, or
// returns the 401 the client should get.
func bearerToken(values []string, maxBytes int) (string, *AuthError) {
	switch len(values) {
	case 0:
		// RFC 6750 §3.1: no error code when no credentials were sent.
		return "", &AuthError{Status: http.StatusUnauthorized, Description: "bearer token required"}
	case 1:
	default:
		return "", unauthorized(CodeInvalidRequest, "multiple Authorization headers", nil)
	}
	v := strings.Trim(values[0], " \t")
	scheme, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if v == "" {
			return "", &AuthError{Status: http.StatusUnauthorized, Description: "bearer token required"}
		}
		return "", &AuthError{Status: http.StatusUnauthorized, Description: "bearer token required",
			err: errors.New("authorization scheme is not Bearer")}
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" {
		return "", unauthorized(CodeInvalidRequest, "empty bearer token", nil)
	}
	if len(tok) > maxBytes {
		return "", unauthorized(CodeInvalidToken, "token too large",
			fmt.Errorf("token is %d bytes, limit %d", len(tok), maxBytes))
	}
	dots := 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '.':
			dots++
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", unauthorized(CodeInvalidToken, "malformed token",
				errors.New("token contains characters outside base64url"))
		}
	}
	if dots != 2 {
		return "", unauthorized(CodeInvalidToken, "malformed token",
			fmt.Errorf("token has %d segments, want 3", dots+1))
	}
	return tok, nil
}

// describeJWTError maps a golang-jwt error to a fixed, client-safe description.
func describeJWTError(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, errUnknownKID):
		return "token signing key not recognised"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "token signature or algorithm not accepted"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token lacks a required claim"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not yet valid"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "token audience not accepted"
	default:
		return "token cannot be verified"
	}
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
