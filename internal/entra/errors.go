package entra

import (
	"errors"
	"net/http"
	"strings"
)

// ErrUnavailable reports that a dependency needed to reach a decision (the
// tenant's discovery document or JWKS, Microsoft Graph) could not be reached or
// answered unusably. Callers map it to 503 with Retry-After: the request may be
// fine, we just cannot tell right now, and we never fail open.
var ErrUnavailable = errors.New("entra: identity dependency unavailable")

// Internal causes of a 401 for a token that is signed by the tenant and meant
// for us, but is not an access token a client obtained for the API. They are
// wrapped by the *AuthError Verify returns (errors.Is works on it), so logs
// and tests can tell the three refusals apart; the client sees only the
// AuthError's Description.
var (
	// ErrIDToken: the token carries a `nonce` claim. OpenID Connect ID tokens
	// carry one (the sign-in request's nonce); Entra access tokens never do.
	ErrIDToken = errors.New("entra: token is an ID token, not an access token")
	// ErrNoClientApp: the token does not name the client application it was
	// issued to (`azp` in v2 tokens, `appid` in v1 tokens, a GUID). Every
	// Entra access token does; an ID token does not.
	ErrNoClientApp = errors.New("entra: token does not name its client application")
	// ErrNoScope: a delegated (user) token without `scp`. Entra puts the
	// granted delegated scopes in every user access token; a user-shaped
	// token without them is an ID token or not from Entra's token endpoint.
	ErrNoScope = errors.New("entra: delegated token has no scopes")
)

// RFC 6750 §3.1 error codes used in WWW-Authenticate challenges.
const (
	// CodeInvalidRequest means the Authorization header itself is malformed
	// (duplicated, empty credentials).
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidToken means the token is malformed, expired, not ours, or
	// its signature does not verify.
	CodeInvalidToken = "invalid_token"
	// CodeInsufficientScope means the token is valid but the caller lacks the
	// required app role.
	CodeInsufficientScope = "insufficient_scope"
)

// AuthError is the only error type Verify and RequireRole return for a
// rejected caller. It separates what the client may see (Status, Code,
// Description — fixed, generic strings) from the internal cause (Unwrap), which
// belongs in logs only.
type AuthError struct {
	// Status is 401 (no or bad credentials) or 403 (valid token, not allowed).
	Status int
	// Code is an RFC 6750 error code, or empty when the request carried no
	// credentials for our scheme (RFC 6750 §3.1 says not to send a code then).
	Code string
	// Description is a short client-safe explanation. It never contains token
	// contents.
	Description string

	err error
}

// Error implements error. It includes the internal cause, so log it, but do
// not send it to the client — send Description.
func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("entra: ")
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Description)
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(e.err.Error())
	}
	return b.String()
}

// Unwrap exposes the internal cause (for example jwt.ErrTokenExpired) so logs
// and tests can tell rejections apart without parsing strings.
func (e *AuthError) Unwrap() error { return e.err }

// WWWAuthenticate renders the value of the WWW-Authenticate response header for
// this error, e.g. `Bearer error="invalid_token", error_description="token expired"`.
// Characters RFC 6750 forbids in the quoted strings are dropped.
func (e *AuthError) WWWAuthenticate() string {
	if e.Code == "" {
		return "Bearer"
	}
	var b strings.Builder
	b.WriteString(`Bearer error="`)
	b.WriteString(quotedSafe(e.Code))
	b.WriteByte('"')
	if e.Description != "" {
		b.WriteString(`, error_description="`)
		b.WriteString(quotedSafe(e.Description))
		b.WriteByte('"')
	}
	return b.String()
}

// quotedSafe keeps only the characters RFC 6750 §3 allows in error and
// error_description values (%x20-21 / %x23-5B / %x5D-7E).
func quotedSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

func unauthorized(code, desc string, cause error) *AuthError {
	return &AuthError{Status: http.StatusUnauthorized, Code: code, Description: desc, err: cause}
}

func forbidden(desc string, cause error) *AuthError {
	return &AuthError{Status: http.StatusForbidden, Code: CodeInsufficientScope, Description: desc, err: cause}
}
