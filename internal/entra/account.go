package entra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Why Account.Check refuses a token. The token itself verified: Graph says the account behind it has changed since
// it was issued, so it no longer speaks for anyone entitled to a certificate.
var (
	// ErrAccountGone: Graph has no user or service principal with the token's oid (deleted).
	ErrAccountGone = errors.New("entra: the account no longer exists")
	// ErrAccountDisabled: an administrator has blocked the account's sign-in (accountEnabled false), for a user or
	// an application's service principal.
	ErrAccountDisabled = errors.New("entra: the account is disabled")
	// ErrSessionsRevoked: the token was issued before the account's signInSessionsValidFromDateTime, which
	// Entra moves forward when an administrator revokes the user's sessions (and on a password reset).
	ErrSessionsRevoked = errors.New("entra: the account's sessions were revoked after the token was issued")
	// ErrGuestAccount: Graph says the account is a guest (userType Guest) where guests are not admitted.
	ErrGuestAccount = errors.New("entra: the account is a guest")
)

// AccountReader reads the account behind a token (a *Directory in production).
type AccountReader interface {
	Account(ctx context.Context, userObjectID string) (Account, error)
	ServicePrincipal(ctx context.Context, objectID string) (Account, error)
	AppRoles(ctx context.Context, objectID string, claimed []string, issuedAt time.Time) ([]string, error)
	UserAppRoles(ctx context.Context, userObjectID string, claimed []string, issuedAt time.Time) ([]string, error)
}

// Account is what Graph says of a user, or of an application's service principal, now.
type Account struct {
	// ObjectID is the user's (service principal's) object ID (lower case).
	ObjectID string
	// Exists is false when Graph has no such object; the other fields are then zero.
	Exists bool
	// Enabled is accountEnabled: false once an administrator blocks sign-in (disables the user, or the
	// enterprise application).
	Enabled bool
	// UPN is the current userPrincipalName, which an administrator may have changed since the token was issued
	// (users only).
	UPN string
	// Guest is true for userType Guest.
	Guest bool
	// SessionsValidFrom is signInSessionsValidFromDateTime: tokens issued before it were revoked.
	SessionsValidFrom time.Time
}

// Check reports whether a verified token still speaks for the account: it exists, is enabled, and its
// sessions were not revoked after the token was issued. A token without iat is taken as issued before any
// revocation. Entra back-dates iat (and nbf) by five minutes, so a token obtained in the first five minutes after
// a revocation, a password change or the account's creation is refused too: the user gets a new one a little
// later. Erring that way keeps a token issued just before a revocation from passing.
func (a Account) Check(c *Caller) error {
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
	if a, ok := d.accounts.get("user/" + id); ok {
		return a, nil
	}
	var u struct {
		ID                string          `json:"id"`
		AccountEnabled    *bool           `json:"accountEnabled"`
		UPN               string          `json:"userPrincipalName"`
		UserType          string          `json:"userType"`
		SessionsValidFrom json.RawMessage `json:"signInSessionsValidFromDateTime"`
	}
	asked := d.cfg.Clock()
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
		case u.SessionsValidFrom == nil:
			// Absent, not null: the $select was not honoured, and no revocation time must not mean "none".
			return Account{}, fmt.Errorf("%w: Graph user answer has no signInSessionsValidFromDateTime", ErrUnavailable)
		}
		a.Exists, a.Enabled, a.UPN = true, *u.AccountEnabled, u.UPN
		a.Guest = strings.EqualFold(u.UserType, "Guest")
		var since *time.Time // null: the sessions were never revoked
		if err := json.Unmarshal(u.SessionsValidFrom, &since); err != nil {
			return Account{}, fmt.Errorf("%w: Graph signInSessionsValidFromDateTime: %w", ErrUnavailable, err)
		}
		if since != nil {
			a.SessionsValidFrom = *since
		}
	}
	// Counted from when Graph was asked, and never over an answer asked for later: a slow read must not keep an
	// older "enabled" in place of a newer "disabled".
	d.accounts.put("user/"+id, a, asked, d.ttl(a.Exists && a.Enabled))
	return a, nil
}

// ServicePrincipal reads an application's service principal, the oid of an app-only token: GET
// /v1.0/servicePrincipals/{id}?$select=id,accountEnabled (application permission Application.Read.All). One that
// Graph does not have (404) is Account{Exists: false}; failures and answers without accountEnabled are
// ErrUnavailable; answers are cached as Account's are. Disabling the enterprise application is how an administrator
// stops an application whose credential leaked: its tokens then stop here within PositiveTTL.
func (d *Directory) ServicePrincipal(ctx context.Context, objectID string) (Account, error) {
	if !isGUID(objectID) {
		return Account{}, fmt.Errorf("%w: service principal object ID", ErrInvalidID)
	}
	id := normGUID(objectID)
	if a, ok := d.accounts.get("app/" + id); ok {
		return a, nil
	}
	var sp struct {
		ID             string `json:"id"`
		AccountEnabled *bool  `json:"accountEnabled"`
	}
	asked := d.cfg.Clock()
	found, err := d.getJSON(ctx, d.graphURL("v1.0/servicePrincipals/"+id+"?$select=id,accountEnabled"), &sp)
	if err != nil {
		return Account{}, err
	}
	a := Account{ObjectID: id}
	if found {
		switch {
		case normGUID(sp.ID) != id:
			return Account{}, fmt.Errorf("%w: Graph answered service principal %q for %s", ErrUnavailable, sp.ID, id)
		case sp.AccountEnabled == nil:
			return Account{}, fmt.Errorf("%w: Graph service principal answer has no accountEnabled", ErrUnavailable)
		}
		a.Exists, a.Enabled = true, *sp.AccountEnabled
	}
	d.accounts.put("app/"+id, a, asked, d.ttl(a.Exists && a.Enabled))
	return a, nil
}

// RecheckCaller re-reads the account behind a verified token and the app roles the request acts on, and returns why
// the token no longer speaks for it: an error wrapping ErrAccountGone, ErrAccountDisabled or ErrSessionsRevoked
// (Account.Check), ErrGuestAccount for a user Graph now calls a guest unless allowGuests, ErrRoleRemoved when none
// of roles that the token carries is still assigned (an administrator took it away after the token was issued, and
// the token must not keep it until it expires), or ErrUnavailable when Graph cannot tell. A user token is compared
// with the user (Account) and the roles assigned to the user or a group of the user (UserAppRoles), an app-only
// token with the application's service principal (ServicePrincipal) and its assigned roles (AppRoles). roles are
// those the door accepts for the request; with none, no role is read. It returns the account and
// which of roles the token carries and Graph confirms (all those the token carries when the reader does not re-read
// roles).
func RecheckCaller(ctx context.Context, r AccountReader, c *Caller, allowGuests bool, roles ...string) (*Account, []string, error) {
	if len(roles) == 0 {
		a, err := recheckAccount(ctx, r, c, allowGuests)
		return a, nil, err
	}
	var claimed []string
	for _, role := range roles {
		if c.HasRole(role) {
			claimed = append(claimed, role)
		}
	}
	// The roles are read beside the account, not after it: each is a Graph round trip on a new caller's first
	// request. An account that fails its check wins over whatever the roles say, as when they were read in turn.
	type assigned struct {
		held []string
		err  error
	}
	readAssigned := r.UserAppRoles
	if c.IsApp {
		readAssigned = r.AppRoles
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rolesRead := make(chan assigned, 1)
	go func() {
		held, err := readAssigned(rctx, c.ObjectID, claimed, c.IssuedAt)
		rolesRead <- assigned{held, err}
	}()
	a, err := recheckAccount(ctx, r, c, allowGuests)
	if err != nil {
		cancel() // the answer is the account's: a slow or retried roles read must not hold it up
	}
	roleRead := <-rolesRead // not left running past the request, whatever the account says
	switch {
	case err != nil:
		return nil, nil, err
	case roleRead.err != nil:
		return nil, nil, roleRead.err
	case roleRead.held == nil: // not re-read
		return a, claimed, nil
	}
	confirmed := slices.DeleteFunc(slices.Clone(claimed), func(role string) bool { return !slices.Contains(roleRead.held, role) })
	if len(confirmed) == 0 {
		return nil, nil, ErrRoleRemoved
	}
	return a, confirmed, nil
}

// recheckAccount is RecheckCaller's account half: the account read, checked against the token and allowGuests.
func recheckAccount(ctx context.Context, r AccountReader, c *Caller, allowGuests bool) (*Account, error) {
	read := r.Account
	if c.IsApp {
		read = r.ServicePrincipal
	}
	a, err := read(ctx, c.ObjectID)
	if err != nil {
		return nil, err
	}
	if err := a.Check(c); err != nil {
		return nil, err
	}
	if a.Guest && !allowGuests {
		return nil, ErrGuestAccount
	}
	return &a, nil
}

// ErrRoleRemoved: the user or application no longer holds the app role its token carries; an administrator removed
// the assignment after the token was issued.
var ErrRoleRemoved = errors.New("entra: the app role was removed from the account")

// AppRoles lists the values of the API's app roles assigned to an application now (the service principal objectID,
// an app-only token's oid): GET /v1.0/servicePrincipals/{id}/appRoleAssignments?$select=resourceId,appRoleId,
// keeping the assignments whose resource is the API's service principal, whose roles come from
// GET /v1.0/servicePrincipals(appId='{APIAppID}')?$select=id,appRoles (both Application.Read.All). nil, nil when
// GraphConfig.APIAppID is empty (not re-read). Failures, and an API without a service principal here, are
// ErrUnavailable. Disabled app roles do not count. Answers are cached, an application holding roles for PositiveTTL
// and one holding none for NegativeTTL. A cached answer lacking one of the roles claimed (the token's, that the
// door accepts) is read again when it was asked before the token was issued or more than NegativeTTL ago: a role
// assigned since, which Graph may also show late, is not refused for long, and a removed one costs a read per
// NegativeTTL. The list is never nil when re-read.
func (d *Directory) AppRoles(ctx context.Context, objectID string, claimed []string, issuedAt time.Time) ([]string, error) {
	if !isGUID(objectID) && d.cfg.APIAppID != "" {
		return nil, fmt.Errorf("%w: service principal object ID", ErrInvalidID)
	}
	id := normGUID(objectID)
	return d.assignedRoles(ctx, "app/"+id, "v1.0/servicePrincipals/"+id+"/appRoleAssignments?$select=resourceId,appRoleId",
		nil, claimed, issuedAt)
}

// UserAppRoles is AppRoles for a user (a delegated token's oid): GET /v1.0/users/{id}/appRoleAssignments, which
// lists the assignments to the user and to the groups the user is a direct member of, which is what Entra puts into
// the user's tokens (group-based assignment does not reach members of nested groups). It is sent as an advanced
// query ($count=true, ConsistencyLevel: eventual), without which Graph may leave out some of a user's assignments
// through groups. The application permission it needs is Directory.Read.All. Caching is AppRoles'.
func (d *Directory) UserAppRoles(ctx context.Context, userObjectID string, claimed []string, issuedAt time.Time) ([]string, error) {
	if !isGUID(userObjectID) && d.cfg.APIAppID != "" {
		return nil, fmt.Errorf("%w: user object ID", ErrInvalidID)
	}
	id := normGUID(userObjectID)
	return d.assignedRoles(ctx, "user/"+id, "v1.0/users/"+id+"/appRoleAssignments?$select=resourceId,appRoleId&$count=true",
		http.Header{"ConsistencyLevel": {"eventual"}}, claimed, issuedAt)
}

// assignedRoles reads (or takes from the cache under key) the API's roles assigned to a principal, listed at path.
func (d *Directory) assignedRoles(ctx context.Context, key, path string, hdr http.Header, claimed []string, issuedAt time.Time) ([]string, error) {
	if d.cfg.APIAppID == "" {
		return nil, nil
	}
	if r, asked, ok := d.roles.getAsked(key); ok {
		lacks := slices.ContainsFunc(claimed, func(c string) bool { return !slices.Contains(r, c) })
		if !lacks || (!asked.Before(issuedAt) && d.cfg.Clock().Sub(asked) < d.cfg.NegativeTTL) {
			return r, nil
		}
	}
	api, err := d.apiRoles(ctx)
	if err != nil {
		return nil, err
	}
	asked := d.cfg.Clock()
	// Only the assignments to the API: one page however many other applications the principal is assigned to,
	// where the whole list may run past maxGraphPages (a 503 for a principal assigned 500 other roles). resourceId
	// supports $filter (eq only), says Graph's appRoleAssignment reference; should Graph still refuse it (400), the
	// list is read whole, as before the filter, from then on.
	filtered := !d.unfiltered.Load()
	list := path
	if filtered {
		list += "&$filter=" + url.PathEscape("resourceId eq "+api[""])
	}
	roles, err := d.listAssigned(ctx, list, hdr, api)
	var status graphStatus
	if filtered && errors.As(err, &status) && status == http.StatusBadRequest {
		if roles, err = d.listAssigned(ctx, path, hdr, api); err == nil {
			d.unfiltered.Store(true)
		}
	}
	if err != nil {
		return nil, err
	}
	d.roles.put(key, roles, asked, d.ttl(len(roles) > 0))
	return roles, nil
}

// listAssigned reads the appRoleAssignments list at path, page by page, and returns the values of the API's roles
// in it, sorted; never nil. api is apiRoles' map.
func (d *Directory) listAssigned(ctx context.Context, path string, hdr http.Header, api map[string]string) ([]string, error) {
	roles := []string{} // not nil: nil means "not re-read"
	// Not found: the principal is gone, and holds nothing.
	_, err := listPages(ctx, d, "appRoleAssignments", d.graphURL(path), hdr, func(items []struct {
		ResourceID string `json:"resourceId"`
		AppRoleID  string `json:"appRoleId"`
	}) bool {
		for _, a := range items {
			if normGUID(a.ResourceID) != api[""] {
				continue
			}
			if v, ok := api[normGUID(a.AppRoleID)]; ok && !slices.Contains(roles, v) {
				roles = append(roles, v)
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(roles)
	return roles, nil
}

// apiRoles maps the API's app role IDs to their values, and "" to its service principal's object ID.
func (d *Directory) apiRoles(ctx context.Context) (map[string]string, error) {
	if m, ok := d.api.get(""); ok {
		return m, nil
	}
	var sp struct {
		ID       string `json:"id"`
		AppRoles []struct {
			ID        string `json:"id"`
			Value     string `json:"value"`
			IsEnabled *bool  `json:"isEnabled"`
		} `json:"appRoles"`
	}
	asked := d.cfg.Clock()
	found, err := d.getJSON(ctx, d.graphURL("v1.0/servicePrincipals(appId='"+d.cfg.APIAppID+"')?$select=id,appRoles"), &sp)
	switch {
	case err != nil:
		return nil, err
	case !found || !isGUID(sp.ID):
		return nil, fmt.Errorf("%w: the API (application %s) has no service principal in this tenant", ErrUnavailable, d.cfg.APIAppID)
	}
	m := map[string]string{"": normGUID(sp.ID)}
	for _, r := range sp.AppRoles {
		// A role an administrator disabled (before deleting it, or to stop it at once) grants nothing.
		if isGUID(r.ID) && r.Value != "" && r.IsEnabled != nil && *r.IsEnabled {
			m[normGUID(r.ID)] = r.Value
		}
	}
	d.api.put("", m, asked, d.cfg.PositiveTTL)
	return m, nil
}
