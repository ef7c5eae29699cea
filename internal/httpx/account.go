package httpx

import (
	"errors"
	"net/http"

	"github.com/azscep/azscep/internal/entra"
)

// Problem codes for a caller whose account no longer stands behind the token, the same at every door.
const (
	// CodeAccountDisabled: the account was disabled or deleted after the token was issued.
	CodeAccountDisabled = "account_disabled"
	// CodeSessionsRevoked: the account's sessions were revoked after the token was issued (401: get a new token).
	CodeSessionsRevoked = "sessions_revoked"
	// CodeGuest: a guest (B2B, external) account where the deployment does not admit guests.
	CodeGuest = "guest_not_allowed"
	// CodeRoleRemoved: the token carries an app role an administrator has since taken from the user or application.
	CodeRoleRemoved = "role_removed"
)

// AccountProblem is the answer to an error of entra.RecheckCaller: 403 account_disabled, 401 sessions_revoked with
// an invalid_token challenge (clients get a new token), 403 role_removed, 403 guest_not_allowed, and 503 when Graph
// cannot tell. Any other error is nil: not this function's to answer.
func AccountProblem(err error) *Problem {
	switch {
	case errors.Is(err, entra.ErrSessionsRevoked):
		ae := &entra.AuthError{Status: http.StatusUnauthorized, Code: entra.CodeInvalidToken,
			Description: "your sessions were revoked after this token was issued; get a new token"}
		return &Problem{Status: ae.Status, Code: CodeSessionsRevoked, Detail: ae.Description,
			Header: http.Header{"WWW-Authenticate": {ae.WWWAuthenticate()}}}
	case errors.Is(err, entra.ErrAccountDisabled), errors.Is(err, entra.ErrAccountGone):
		return &Problem{Status: http.StatusForbidden, Code: CodeAccountDisabled,
			Detail: "the account (user or application) is disabled or no longer exists"}
	case errors.Is(err, entra.ErrRoleRemoved):
		return &Problem{Status: http.StatusForbidden, Code: CodeRoleRemoved,
			Detail: "the account (user or application) no longer holds the app role its token carries"}
	case errors.Is(err, entra.ErrGuestAccount):
		return &Problem{Status: http.StatusForbidden, Code: CodeGuest, Detail: "guest accounts are not admitted"}
	case errors.Is(err, entra.ErrUnavailable):
		return &Problem{Status: http.StatusServiceUnavailable, Code: "unavailable",
			Detail: "your account cannot be checked right now", RetryAfter: DefaultRetryAfter}
	}
	return nil
}
