package entra

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/httpx"
)

// Why Account.Admit refuses a user's token. The token itself verified: Graph says the account behind it has
// changed since it was issued, so it no longer speaks for anyone entitled to a certificate.
var (
	// ErrAccountGone: Graph has no user with the token's oid (deleted).
	ErrAccountGone = errors.New("entra: the account no longer exists")
	// ErrAccountDisabled: an administrator has blocked the account's sign-in (accountEnabled false).
	ErrAccountDisabled = errors.New("entra: the account is disabled")
	// ErrSessionsRevoked: the token was issued before the account's signInSessionsValidFromDateTime, which
	// Entra moves forward when an administrator revokes the user's sessions (and on a password reset).
	ErrSessionsRevoked = errors.New("entra: the account's sessions were revoked after the token was issued")
)

// Account is what Graph says of a user now.
type Account struct {
	// ObjectID is the user's object ID (lower case).
	ObjectID string
	// Exists is false when Graph has no such user; the other fields are then zero.
	Exists bool
	// Enabled is accountEnabled: false once an administrator blocks sign-in.
	Enabled bool
	// UPN is the current userPrincipalName, which an administrator may have changed since the token was issued.
	UPN string
	// Guest is true for userType Guest.
	Guest bool
	// SessionsValidFrom is signInSessionsValidFromDateTime: tokens issued before it were revoked.
	SessionsValidFrom time.Time
}

// Admit reports whether a user's verified token still speaks for the account: it exists, is enabled, and its
// sessions were not revoked after the token was issued. A token without iat is taken as issued before any
// revocation. Entra back-dates iat by five minutes, so a token obtained in the first minutes after a revocation
// can still be refused: the user signs in again a little later.
func (a Account) Admit(c *Caller) error {
	switch {
	case !a.Exists:
		return ErrAccountGone
	case !a.Enabled:
		return ErrAccountDisabled
	case !a.SessionsValidFrom.IsZero() && c.IssuedAt.Before(a.SessionsValidFrom):
		return ErrSessionsRevoked
	}
	return nil
}

// userSelect is every user property Account reads. accountEnabled, userType and signInSessionsValidFromDateTime
// are not among Graph's default properties: they come back only when selected.
const userSelect = "id,accountEnabled,userPrincipalName,userType,signInSessionsValidFromDateTime"

// Account reads the user with the given object ID: GET /v1.0/users/{id}?$select=… (application permission
// User.Read.All). A user Graph does not have (404) is Account{Exists: false}. Any Graph failure, or an answer
// without accountEnabled or userPrincipalName, or for another ID, is an error wrapping ErrUnavailable: never
// guess "enabled". Answers are cached per user, an enabled account for PositiveTTL and any other for
// NegativeTTL, so an administrator's change reaches issuance within PositiveTTL rather than the token's lifetime.
func (d *Directory) Account(ctx context.Context, userObjectID string) (Account, error) {
	if !isGUID(userObjectID) {
		return Account{}, fmt.Errorf("%w: user object ID", ErrInvalidID)
	}
	id := normGUID(userObjectID)
	if a, ok := d.accounts.get(id); ok {
		return a, nil
	}
	var u struct {
		ID                string  `json:"id"`
		AccountEnabled    *bool   `json:"accountEnabled"`
		UPN               string  `json:"userPrincipalName"`
		UserType          string  `json:"userType"`
		SessionsValidFrom *string `json:"signInSessionsValidFromDateTime"`
	}
	found, err := d.getJSON(ctx, d.graphURL("v1.0/users/"+id+"?$select="+userSelect), &u)
	if err != nil {
		return Account{}, err
	}
	a := Account{ObjectID: id}
	if found {
		switch {
		case normGUID(u.ID) != id:
			return Account{}, fmt.Errorf("%w: Graph answered user %q for %s", ErrUnavailable, u.ID, id)
		case u.AccountEnabled == nil:
			return Account{}, fmt.Errorf("%w: Graph user answer has no accountEnabled", ErrUnavailable)
		case u.UPN == "":
			return Account{}, fmt.Errorf("%w: Graph user answer has no userPrincipalName", ErrUnavailable)
		}
		a.Exists, a.Enabled, a.UPN = true, *u.AccountEnabled, u.UPN
		a.Guest = strings.EqualFold(u.UserType, "Guest")
		if u.SessionsValidFrom != nil && *u.SessionsValidFrom != "" {
			t, err := time.Parse(time.RFC3339Nano, *u.SessionsValidFrom)
			if err != nil {
				return Account{}, fmt.Errorf("%w: Graph signInSessionsValidFromDateTime: %w", ErrUnavailable, err)
			}
			a.SessionsValidFrom = t
		}
	}
	d.accounts.put(id, a, d.ttl(a.Exists && a.Enabled))
	return a, nil
}

// AccountReader reads a user's account (a *Directory in production).
type AccountReader interface {
	Account(ctx context.Context, userObjectID string) (Account, error)
}

// Problem codes for a user whose account no longer stands behind the token, the same at every door.
const (
	// CodeAccountDisabled: the account was disabled or deleted after the token was issued.
	CodeAccountDisabled = "account_disabled"
	// CodeSessionsRevoked: the account's sessions were revoked after the token was issued (401: sign in again).
	CodeSessionsRevoked = "sessions_revoked"
	// CodeGuest: a guest (B2B, external) account where the deployment does not admit guests.
	CodeGuest = "guest_not_allowed"
)

// RecheckUser re-reads a user caller's account and answers a token the account no longer stands behind: 403
// account_disabled, 401 sessions_revoked (with an invalid_token challenge, so clients sign in again), 403
// guest_not_allowed for an account Graph now calls a guest unless allowGuests, 503 when Graph cannot tell (err is
// then the cause, for the log). Apps are not re-read, their role was assigned to the application itself; nor is
// anyone when r is nil (the local development issuer has no directory). The account is returned when it was read.
func RecheckUser(ctx context.Context, r AccountReader, c *Caller, allowGuests bool) (*Account, *httpx.Problem, error) {
	if c.IsApp || r == nil {
		return nil, nil, nil
	}
	a, err := r.Account(ctx, c.ObjectID)
	if err != nil {
		return nil, &httpx.Problem{Status: http.StatusServiceUnavailable, Code: "unavailable",
			Detail: "your account cannot be checked right now", RetryAfter: 30 * time.Second}, err
	}
	switch err := a.Admit(c); {
	case errors.Is(err, ErrSessionsRevoked):
		ae := &AuthError{Status: http.StatusUnauthorized, Code: CodeInvalidToken,
			Description: "your sessions were revoked after this token was issued; sign in again"}
		return nil, &httpx.Problem{Status: ae.Status, Code: CodeSessionsRevoked, Detail: ae.Description,
			Header: http.Header{"WWW-Authenticate": {ae.WWWAuthenticate()}}}, nil
	case err != nil:
		return nil, &httpx.Problem{Status: http.StatusForbidden, Code: CodeAccountDisabled,
			Detail: "your account is disabled or no longer exists"}, nil
	case a.Guest && !allowGuests:
		return nil, &httpx.Problem{Status: http.StatusForbidden, Code: CodeGuest,
			Detail: "guest accounts are not admitted"}, nil
	}
	return &a, nil, nil
}
