package entra_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestAccount reads what Graph says of a user now, and Check compares it with the token.
func TestAccount(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	oid := entrafake.NewGUID()
	revoked := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	e.g.PutUser(entrafake.User{ID: oid, UPN: "alice@contoso.test", Enabled: true, SessionsValidFrom: revoked})

	a, err := e.d.Account(ctx, strings.ToUpper(oid))
	if err != nil {
		t.Fatal(err)
	}
	want := entra.Account{ObjectID: oid, Exists: true, Enabled: true, UPN: "alice@contoso.test", SessionsValidFrom: revoked}
	if a != want {
		t.Fatalf("Account = %+v, want %+v", a, want)
	}
	for _, tc := range []struct {
		name string
		iat  time.Time
		want error
	}{
		{"issued after the revocation", revoked.Add(time.Second), nil},
		{"issued at the revocation", revoked, nil},
		{"issued before the revocation", revoked.Add(-time.Second), entra.ErrSessionsRevoked},
		{"no iat", time.Time{}, entra.ErrSessionsRevoked},
	} {
		if err := a.Check(&entra.Caller{ObjectID: oid, IssuedAt: tc.iat}); !errors.Is(err, tc.want) {
			t.Errorf("%s: Check = %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := (entra.Account{Exists: true, Enabled: true}).Check(&entra.Caller{}); err != nil {
		t.Errorf("an account whose sessions were never revoked: Check = %v", err)
	}
	if err := (entra.Account{Exists: true}).Check(&entra.Caller{IssuedAt: revoked}); !errors.Is(err, entra.ErrAccountDisabled) {
		t.Errorf("disabled: Check = %v", err)
	}

	gone := entrafake.NewGUID()
	a, err = e.d.Account(ctx, gone)
	if err != nil || a.Exists {
		t.Fatalf("unknown user: Account = (%+v, %v), want Exists false", a, err)
	}
	if err := a.Check(&entra.Caller{IssuedAt: revoked}); !errors.Is(err, entra.ErrAccountGone) {
		t.Fatalf("unknown user: Check = %v", err)
	}

	guest := entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: guest, UPN: "bob_fabrikam.test#EXT#@contoso.test", Enabled: true, Guest: true})
	if a, err := e.d.Account(ctx, guest); err != nil || !a.Guest || !a.SessionsValidFrom.IsZero() {
		t.Fatalf("guest: Account = (%+v, %v)", a, err)
	}
	if _, err := e.d.Account(ctx, "not-a-guid"); !errors.Is(err, entra.ErrInvalidID) {
		t.Fatalf("Account(not a GUID) = %v, want ErrInvalidID", err)
	}
	for _, r := range e.g.Requests() {
		if r.Query != "$select=id,accountEnabled,userPrincipalName,userType,signInSessionsValidFromDateTime" {
			t.Fatalf("Graph call %+v does not select what Account reads", r)
		}
	}
}

// TestAccountCache: an enabled account is reused for PositiveTTL, any other answer for NegativeTTL; failures are
// not cached.
func TestAccountCache(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	oid := entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: oid, UPN: "alice@contoso.test", Enabled: true})
	read := func() entra.Account {
		t.Helper()
		a, err := e.d.Account(ctx, oid)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	read()
	e.g.UpdateUser(oid, func(u *entrafake.User) { u.Enabled = false })
	if !read().Enabled || len(e.g.Requests()) != 1 {
		t.Fatal("an enabled account was read again inside PositiveTTL")
	}
	e.clock.Advance(entra.DefaultPositiveTTL)
	if read().Enabled {
		t.Fatal("a disabled account was answered enabled after PositiveTTL")
	}
	e.g.UpdateUser(oid, func(u *entrafake.User) { u.Enabled = true })
	e.clock.Advance(entra.DefaultNegativeTTL)
	if !read().Enabled {
		t.Fatal("a re-enabled account was still disabled after NegativeTTL")
	}
	e.clock.Advance(entra.DefaultPositiveTTL)
	e.g.SetFault(entrafake.Fault{Status: http.StatusServiceUnavailable})
	if _, err := e.d.Account(ctx, oid); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("Graph down: Account = %v, want ErrUnavailable", err)
	}
	e.g.SetFault(entrafake.Fault{})
	if !read().Enabled {
		t.Fatal("the failure was cached")
	}
}

// TestAccountAnswerUnusable: a Graph answer that does not say what Account needs is ErrUnavailable, never an
// enabled account.
func TestAccountAnswerUnusable(t *testing.T) {
	oid := entrafake.NewGUID()
	// Each answer differs from a usable one (the first) in one point only, so that every check is needed.
	const id, upn, enabled, sessions = `"id":"`, `"userPrincipalName":"a@contoso.test"`, `"accountEnabled":true`,
		`"signInSessionsValidFromDateTime":null`
	account := func(body string) (entra.Account, error) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		d, err := entra.NewDirectory(entra.GraphConfig{
			Credential: &entrafake.Credential{Token: "t"}, BaseURL: srv.URL + "/", HTTPClient: srv.Client(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return d.Account(context.Background(), oid)
	}
	if a, err := account(`{` + id + oid + `",` + upn + `,` + enabled + `,` + sessions + `}`); err != nil || !a.Exists || !a.Enabled {
		t.Fatalf("a usable answer: Account = (%+v, %v)", a, err)
	}
	for _, body := range []string{
		`{` + id + oid + `",` + upn + `,` + sessions + `}`, // accountEnabled not selected
		`{` + id + oid + `",` + upn + `,"accountEnabled":null,` + sessions + `}`,
		`{` + id + oid + `",` + upn + `,"accountEnabled":"true",` + sessions + `}`,
		`{` + id + oid + `",` + enabled + `,` + sessions + `}`,                             // no userPrincipalName
		`{` + id + entrafake.NewGUID() + `",` + upn + `,` + enabled + `,` + sessions + `}`, // another user
		`{` + id + oid + `",` + upn + `,` + enabled + `}`,                                  // sessions time not selected
		`{` + id + oid + `",` + upn + `,` + enabled + `,"signInSessionsValidFromDateTime":"yesterday"}`,
		`not json`,
	} {
		t.Run(body, func(t *testing.T) {
			if a, err := account(body); !errors.Is(err, entra.ErrUnavailable) {
				t.Fatalf("Account = (%+v, %v), want ErrUnavailable", a, err)
			}
		})
	}
}

// TestServicePrincipal reads an application's service principal for its app-only tokens.
func TestServicePrincipal(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	app := entrafake.NewGUID()
	e.g.PutServicePrincipal(app, true)
	a, err := e.d.ServicePrincipal(ctx, strings.ToUpper(app))
	if err != nil || a != (entra.Account{ObjectID: app, Exists: true, Enabled: true}) {
		t.Fatalf("ServicePrincipal = (%+v, %v)", a, err)
	}
	if err := a.Check(&entra.Caller{ObjectID: app, IsApp: true}); err != nil {
		t.Fatalf("an enabled application: Check = %v", err)
	}
	off := entrafake.NewGUID()
	e.g.PutServicePrincipal(off, false)
	if a, err := e.d.ServicePrincipal(ctx, off); err != nil || !errors.Is(a.Check(&entra.Caller{IsApp: true}), entra.ErrAccountDisabled) {
		t.Fatalf("disabled: (%+v, %v)", a, err)
	}
	if a, err := e.d.ServicePrincipal(ctx, entrafake.NewGUID()); err != nil || !errors.Is(a.Check(&entra.Caller{IsApp: true}), entra.ErrAccountGone) {
		t.Fatalf("unknown: (%+v, %v)", a, err)
	}
	// A user and a service principal are separate questions, even for the same ID.
	e.g.PutUser(entrafake.User{ID: app, UPN: "x@contoso.test", Enabled: false})
	if a, err := e.d.Account(ctx, app); err != nil || a.Enabled {
		t.Fatalf("the user answer came from the service principal cache: (%+v, %v)", a, err)
	}
	for _, r := range e.g.Requests() {
		if strings.HasPrefix(r.Path, "/v1.0/servicePrincipals/") && r.Query != "$select=id,accountEnabled" {
			t.Fatalf("Graph call %+v", r)
		}
	}
	for _, body := range []string{`{"id":"` + app + `"}`, `{"id":"` + entrafake.NewGUID() + `","accountEnabled":true}`, `[]`} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}))
		d, err := entra.NewDirectory(entra.GraphConfig{Credential: &entrafake.Credential{Token: "t"}, BaseURL: srv.URL + "/", HTTPClient: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		if a, err := d.ServicePrincipal(ctx, app); !errors.Is(err, entra.ErrUnavailable) {
			t.Errorf("answer %s: ServicePrincipal = (%+v, %v), want ErrUnavailable", body, a, err)
		}
		srv.Close()
	}
}

// TestRecheckCaller: users are compared with their account, apps with their service principal; guests by Graph's
// userType unless allowed.
func TestRecheckCaller(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	user, app, guest := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: user, UPN: "a@contoso.test", Enabled: true})
	e.g.PutUser(entrafake.User{ID: guest, UPN: "g_x#EXT#@contoso.test", Enabled: true, Guest: true})
	e.g.PutServicePrincipal(app, false)
	if a, _, err := entra.RecheckCaller(ctx, e.d, &entra.Caller{ObjectID: user}, false); err != nil || a.UPN != "a@contoso.test" {
		t.Fatalf("user: (%+v, %v)", a, err)
	}
	if _, _, err := entra.RecheckCaller(ctx, e.d, &entra.Caller{ObjectID: app, IsApp: true}, false); !errors.Is(err, entra.ErrAccountDisabled) {
		t.Fatalf("disabled app: %v", err)
	}
	if _, _, err := entra.RecheckCaller(ctx, e.d, &entra.Caller{ObjectID: guest}, false); !errors.Is(err, entra.ErrGuestAccount) {
		t.Fatalf("guest: %v", err)
	}
	if _, _, err := entra.RecheckCaller(ctx, e.d, &entra.Caller{ObjectID: guest}, true); err != nil {
		t.Fatalf("guest allowed: %v", err)
	}
}

// TestRefused: a 401/403 from Graph is remembered per permission (for /api/health) until Graph allows a call needing
// the same permission; throttling and server errors change nothing.
func TestRefused(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	oid := entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: oid, UPN: "a@contoso.test", Enabled: true})
	if got := e.d.Refused(); len(got) != 0 {
		t.Fatalf("Refused before any call = %+v", got)
	}
	e.g.SetFault(entrafake.Fault{Status: http.StatusForbidden})
	start := e.clock.Now()
	_, _ = e.d.Account(ctx, oid)
	_, _ = e.d.ServicePrincipal(ctx, entrafake.NewGUID())
	e.clock.Advance(time.Minute)
	e.g.SetFault(entrafake.Fault{Status: http.StatusServiceUnavailable})
	_, _ = e.d.Account(ctx, oid)
	want := []entra.Refusal{{Permission: "Application.Read.All", Status: 403, Since: start},
		{Permission: "User.Read.All", Status: 403, Since: start}}
	if got := e.d.Refused(); !slices.Equal(got, want) {
		t.Fatalf("Refused = %+v, want %+v", got, want)
	}
	// A service principal read allowed does not clear the users' refusal (a deployment upgraded with
	// Application.Read.All from Intune but without User.Read.All).
	e.g.SetFault(entrafake.Fault{})
	app := entrafake.NewGUID()
	e.g.PutServicePrincipal(app, true)
	if _, err := e.d.ServicePrincipal(ctx, app); err != nil {
		t.Fatal(err)
	}
	if got := e.d.Refused(); !slices.Equal(got, want[1:]) {
		t.Fatalf("Refused after an allowed service principal read = %+v, want %+v", got, want[1:])
	}
	if _, err := e.d.Account(ctx, entrafake.NewGUID()); err != nil { // a 404 is an allowed call
		t.Fatal(err)
	}
	if got := e.d.Refused(); len(got) != 0 {
		t.Fatalf("Refused after allowed calls = %+v", got)
	}
}

// TestWrongTenant: a Graph token for another tenant than the API's is refused before Graph is asked (which would
// answer every account "not found"), and reported until a token for the right tenant comes.
func TestWrongTenant(t *testing.T) {
	jwt := func(tid string) string {
		enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		return enc(`{"alg":"RS256","typ":"JWT"}`) + "." + enc(`{"tid":"`+tid+`","oid":"x"}`) + ".sig"
	}
	api, home := entrafake.NewGUID(), entrafake.NewGUID()
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.TenantID = api })
	cred := &entrafake.Credential{Token: jwt(home), Scope: entrafake.GraphScope}
	d, err := entra.NewDirectory(entra.GraphConfig{Credential: cred, BaseURL: e.g.URL(), Scope: entrafake.GraphScope,
		HTTPClient: e.g.Client(), TenantID: api})
	if err != nil {
		t.Fatal(err)
	}
	oid := entrafake.NewGUID()
	if _, err := d.Account(context.Background(), oid); !errors.Is(err, entra.ErrUnavailable) || !errors.Is(err, entra.ErrWrongTenant) {
		t.Fatalf("Account with a token for another tenant = %v, want ErrUnavailable and ErrWrongTenant", err)
	}
	if d.WrongTenant() == nil || len(e.g.Requests()) != 0 {
		t.Fatalf("WrongTenant = %v, Graph calls %d: want reported, and Graph not asked", d.WrongTenant(), len(e.g.Requests()))
	}
	// The token for the API's tenant: Graph is asked (the fake refuses this token, but it was sent, and sent
	// again as a new token after the 401), and the report clears.
	cred.Token = jwt(strings.ToUpper(api))
	_, _ = d.Account(context.Background(), oid)
	if d.WrongTenant() != nil || len(e.g.Requests()) != 2 {
		t.Fatalf("after a token for the API's tenant: WrongTenant = %v, Graph calls %d", d.WrongTenant(), len(e.g.Requests()))
	}
}

// TestAppRoles: an application's roles are the API's enabled app roles assigned to it now, by value; assignments
// to other resources do not count, even with an ID one of ours has; all pages are read; an API without a service
// principal here is unavailable, never "no roles".
func TestAppRoles(t *testing.T) {
	api := entrafake.NewGUID()
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = api })
	ctx := context.Background()
	now := e.clock.Now()
	e.g.SetAPI(api, "CSR.Request.Db", "Certificates.Manage")
	e.g.SetPageSize(1) // the foreign assignment and each of ours on a page of its own
	app := entrafake.NewGUID()
	e.g.PutServicePrincipal(app, true)
	e.g.AssignAppRole(app, "Certificates.Manage")
	e.g.AssignAppRole(app, "CSR.Request.Db")
	if roles, err := e.d.AppRoles(ctx, strings.ToUpper(app), nil, now); err != nil || !slices.Equal(roles, []string{"CSR.Request.Db", "Certificates.Manage"}) {
		t.Fatalf("AppRoles = %v, %v", roles, err)
	}
	none := entrafake.NewGUID()
	e.g.PutServicePrincipal(none, true) // holds only the fake's assignment to another resource
	if roles, err := e.d.AppRoles(ctx, none, nil, now); err != nil || roles == nil || len(roles) != 0 {
		t.Fatalf("an application without our roles: AppRoles = %#v, %v", roles, err)
	}
	if roles, err := e.d.AppRoles(ctx, entrafake.NewGUID(), nil, now); err != nil || roles == nil || len(roles) != 0 {
		t.Fatalf("an application that is gone: AppRoles = %#v, %v", roles, err)
	}
	// RecheckCaller: the role the request uses must still be assigned.
	caller := &entra.Caller{ObjectID: app, IsApp: true, Roles: []string{"CSR.Request.Db"}, IssuedAt: now}
	if _, _, err := entra.RecheckCaller(ctx, e.d, caller, false, "CSR.Request.Db"); err != nil {
		t.Fatalf("RecheckCaller with the role assigned: %v", err)
	}
	caller = &entra.Caller{ObjectID: none, IsApp: true, Roles: []string{"CSR.Request.Db"}, IssuedAt: now}
	if _, _, err := entra.RecheckCaller(ctx, e.d, caller, false, "CSR.Request.Db"); !errors.Is(err, entra.ErrRoleRemoved) {
		t.Fatalf("RecheckCaller without the role: %v, want ErrRoleRemoved", err)
	}

	// A role assigned after the answer was cached: a token issued since is read again at once, not refused for
	// the cache's lifetime.
	e.g.AssignAppRole(none, "CSR.Request.Db")
	e.clock.Advance(time.Second)
	caller.IssuedAt = e.clock.Now()
	if _, _, err := entra.RecheckCaller(ctx, e.d, caller, false, "CSR.Request.Db"); err != nil {
		t.Fatalf("a role assigned after the cached answer: %v", err)
	}
	// A role the API disabled grants nothing; the API's roles are cached for PositiveTTL.
	e.g.SetAppRoleEnabled("CSR.Request.Db", false)
	e.clock.Advance(entra.DefaultPositiveTTL)
	if roles, err := e.d.AppRoles(ctx, app, nil, now); err != nil || !slices.Equal(roles, []string{"Certificates.Manage"}) {
		t.Fatalf("with CSR.Request.Db disabled: AppRoles = %v, %v", roles, err)
	}

	other := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = entrafake.NewGUID() }) // no such API here
	other.g.PutServicePrincipal(app, true)
	if _, err := other.d.AppRoles(ctx, app, nil, now); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("an API without a service principal: AppRoles = %v, want ErrUnavailable", err)
	}
	unset := newGraphEnv(t)
	if roles, err := unset.d.AppRoles(ctx, app, nil, now); roles != nil || err != nil || len(unset.g.Requests()) != 0 {
		t.Fatalf("without APIAppID: AppRoles = %v, %v (Graph calls %d): want not re-read", roles, err, len(unset.g.Requests()))
	}
}

// TestAppRolesCachedLackingRole: a cached list (of other roles, so kept for the positive TTL) that lacks the claimed
// role answers for a token issued before it was read, until the negative TTL has passed since; then it is read
// again.
func TestAppRolesCachedLackingRole(t *testing.T) {
	api := entrafake.NewGUID()
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = api })
	ctx := context.Background()
	e.g.SetAPI(api, "CSR.Request.Db", "Certificates.Manage")
	app := entrafake.NewGUID()
	e.g.PutServicePrincipal(app, true)
	e.g.AssignAppRole(app, "Certificates.Manage")
	issued := e.clock.Now().Add(-time.Minute) // a token issued before the first read
	claimed := []string{"CSR.Request.Db"}
	if roles, err := e.d.AppRoles(ctx, app, claimed, issued); err != nil || !slices.Equal(roles, []string{"Certificates.Manage"}) {
		t.Fatalf("AppRoles = %v, %v", roles, err)
	}
	e.g.AssignAppRole(app, "CSR.Request.Db")
	reads := len(e.g.Requests())
	e.clock.Advance(entra.DefaultNegativeTTL - time.Second)
	if roles, err := e.d.AppRoles(ctx, app, claimed, issued); err != nil || len(roles) != 1 || len(e.g.Requests()) != reads {
		t.Fatalf("inside the negative TTL: AppRoles = %v, %v, Graph calls %d → %d; want the cached answer", roles, err, reads, len(e.g.Requests()))
	}
	e.clock.Advance(time.Second)
	if roles, err := e.d.AppRoles(ctx, app, claimed, issued); err != nil || !slices.Equal(roles, []string{"CSR.Request.Db", "Certificates.Manage"}) {
		t.Fatalf("after the negative TTL: AppRoles = %v, %v; want a new read", roles, err)
	}
}

// TestAppRolesAnswerUnusable: a later page of assignments that is gone is unavailable, not a shorter list; an app
// role that does not say it is enabled grants nothing.
func TestAppRolesAnswerUnusable(t *testing.T) {
	api, apiSP, roleID, app := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	for name, c := range map[string]struct {
		isEnabled string // the appRoles entry's isEnabled member, "" for none
		page2     int    // status of the assignments' second page
		want      error
		roles     []string
	}{
		"second page gone":   {`,"isEnabled":true`, http.StatusNotFound, entra.ErrUnavailable, nil},
		"no isEnabled":       {"", http.StatusOK, nil, []string{}},
		"enabled, two pages": {`,"isEnabled":true`, http.StatusOK, nil, []string{"CSR.Request.Db"}},
	} {
		t.Run(name, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				switch {
				case strings.Contains(r.URL.Path, "(appId="):
					fmt.Fprintf(w, `{"id":%q,"appRoles":[{"id":%q,"value":"CSR.Request.Db"%s}]}`, apiSP, roleID, c.isEnabled)
				case r.URL.Query().Get("$skiptoken") == "":
					fmt.Fprintf(w, `{"value":[],"@odata.nextLink":%q}`, srv.URL+r.URL.Path+"?$skiptoken=1")
				case c.page2 != http.StatusOK:
					w.WriteHeader(c.page2)
					fmt.Fprint(w, `{"error":{"code":"Request_ResourceNotFound","message":"gone"}}`)
				default:
					fmt.Fprintf(w, `{"value":[{"resourceId":%q,"appRoleId":%q}]}`, apiSP, roleID)
				}
			}))
			t.Cleanup(srv.Close)
			d, err := entra.NewDirectory(entra.GraphConfig{Credential: &entrafake.Credential{Token: "t"}, BaseURL: srv.URL + "/",
				HTTPClient: srv.Client(), APIAppID: api})
			if err != nil {
				t.Fatal(err)
			}
			roles, err := d.AppRoles(context.Background(), app, nil, time.Now())
			if !errors.Is(err, c.want) || (c.want == nil && !slices.Equal(roles, c.roles)) {
				t.Fatalf("AppRoles = %#v, %v; want %#v, %v", roles, err, c.roles, c.want)
			}
		})
	}
	if _, err := entra.NewDirectory(entra.GraphConfig{Credential: &entrafake.Credential{Token: "t"}, APIAppID: "x')/../users('"}); err == nil {
		t.Fatal("NewDirectory accepted an APIAppID that is not a GUID")
	}
}

// TestUserAppRoles: a user's roles are the API's roles assigned to the user or to a group the user is a direct
// member of, asked as the advanced query that lists all of them; RecheckCaller refuses a user token whose role
// was taken away (directly or by leaving the group) once the cached answer has expired, keeps the roles Graph still
// confirms, and never lets a user through when Graph cannot answer.
func TestUserAppRoles(t *testing.T) {
	api := entrafake.NewGUID()
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = api })
	ctx := context.Background()
	e.g.SetAPI(api, "Certificates.Manage", "Certificates.Read")
	e.g.SetPageSize(1)
	user, group := entrafake.NewGUID(), entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: user, UPN: "admin@contoso.test", Enabled: true})
	e.g.AssignAppRole(user, "Certificates.Manage")
	e.g.AssignAppRole(group, "Certificates.Read")
	e.g.AddGroupMember(group, user)
	now := e.clock.Now()
	if roles, err := e.d.UserAppRoles(ctx, strings.ToUpper(user), nil, now); err != nil || !slices.Equal(roles, []string{"Certificates.Manage", "Certificates.Read"}) {
		t.Fatalf("UserAppRoles = %v, %v", roles, err)
	}
	for _, r := range e.g.Requests() {
		if strings.HasSuffix(r.Path, "/users/"+user+"/appRoleAssignments") && r.ConsistencyLevel != "eventual" {
			t.Fatalf("%s?%s sent without ConsistencyLevel: eventual", r.Path, r.Query)
		}
	}
	// Only the token's roles that Graph confirms count.
	caller := &entra.Caller{ObjectID: user, Roles: []string{"Certificates.Manage", "Certificates.Read"}, IssuedAt: now}
	if _, held, err := entra.RecheckCaller(ctx, e.d, caller, false, "Certificates.Manage", "Certificates.Read"); err != nil || !slices.Equal(held, []string{"Certificates.Manage", "Certificates.Read"}) {
		t.Fatalf("RecheckCaller = %v, %v", held, err)
	}
	e.g.RemoveAppRole(user, "Certificates.Manage")
	e.clock.Advance(entra.DefaultPositiveTTL)
	if _, held, err := entra.RecheckCaller(ctx, e.d, caller, false, "Certificates.Manage", "Certificates.Read"); err != nil || !slices.Equal(held, []string{"Certificates.Read"}) {
		t.Fatalf("after Manage was removed: RecheckCaller = %v, %v; want only Read", held, err)
	}
	e.g.RemoveGroupMember(group, user)
	e.clock.Advance(entra.DefaultPositiveTTL)
	if _, _, err := entra.RecheckCaller(ctx, e.d, caller, false, "Certificates.Manage", "Certificates.Read"); !errors.Is(err, entra.ErrRoleRemoved) {
		t.Fatalf("after leaving the group: RecheckCaller = %v, want ErrRoleRemoved", err)
	}
	// With no role asked (a door acting on none), the account alone is re-read.
	if _, held, err := entra.RecheckCaller(ctx, e.d, caller, false); err != nil || held != nil {
		t.Fatalf("no role asked: RecheckCaller = %v, %v", held, err)
	}
	e.clock.Advance(entra.DefaultPositiveTTL)
	e.g.SetFault(entrafake.Fault{Status: http.StatusInternalServerError})
	if _, _, err := entra.RecheckCaller(ctx, e.d, caller, false, "Certificates.Read"); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("Graph down: RecheckCaller = %v, want ErrUnavailable", err)
	}
	e.g.SetFault(entrafake.Fault{})
	// A nested group's assignment does not reach the user (nor does Entra put it into the token).
	outer := entrafake.NewGUID()
	e.g.AssignAppRole(outer, "Certificates.Manage")
	e.g.AddGroupMember(outer, group)
	if roles, err := e.d.UserAppRoles(ctx, user, []string{"Certificates.Manage"}, e.clock.Now()); err != nil || len(roles) != 0 {
		t.Fatalf("through a nested group: UserAppRoles = %v, %v; want none", roles, err)
	}
}

// TestRolesAmongManyAssignments: a user or application assigned the roles of many other applications (a user in
// many groups, an application granted many APIs) still has its roles read: Graph is asked for the assignments to
// the API only, one page, where the whole list runs past the pages a read may take.
func TestRolesAmongManyAssignments(t *testing.T) {
	api := entrafake.NewGUID()
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = api })
	ctx := context.Background()
	e.g.SetAPI(api, "CSR.Request.Db", "Certificates.Read")
	e.g.SetPageSize(100) // Graph's default page of appRoleAssignments
	user, group, app := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: user, UPN: "many@contoso.test", Enabled: true})
	e.g.AssignForeignRoles(user, 400)
	e.g.AssignForeignRoles(group, 400)
	e.g.AssignAppRole(group, "Certificates.Read")
	e.g.AddGroupMember(group, user)
	e.g.PutServicePrincipal(app, true)
	e.g.AssignForeignRoles(app, 900)
	e.g.AssignAppRole(app, "CSR.Request.Db")
	now := e.clock.Now()
	if roles, err := e.d.UserAppRoles(ctx, user, nil, now); err != nil || !slices.Equal(roles, []string{"Certificates.Read"}) {
		t.Fatalf("UserAppRoles = %v, %v", roles, err)
	}
	if roles, err := e.d.AppRoles(ctx, app, nil, now); err != nil || !slices.Equal(roles, []string{"CSR.Request.Db"}) {
		t.Fatalf("AppRoles = %v, %v", roles, err)
	}
	for _, r := range e.g.Requests() {
		if strings.HasSuffix(r.Path, "/appRoleAssignments") && !strings.Contains(r.Query, "$filter=resourceId") {
			t.Errorf("%s?%s: the whole list asked for", r.Path, r.Query)
		}
	}
}

// TestRolesWhenGraphRefusesTheFilter: should Graph refuse $filter on a list of assignments (400), the roles are
// read from the whole list, and the filter is not asked again.
func TestRolesWhenGraphRefusesTheFilter(t *testing.T) {
	api := entrafake.NewGUID()
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = api })
	ctx := context.Background()
	e.g.SetAPI(api, "CSR.Request.Db")
	e.g.RefuseAssignmentFilter(true)
	a, b := entrafake.NewGUID(), entrafake.NewGUID()
	for _, app := range []string{a, b} {
		e.g.PutServicePrincipal(app, true)
		e.g.AssignAppRole(app, "CSR.Request.Db")
	}
	for _, app := range []string{a, b} {
		if roles, err := e.d.AppRoles(ctx, app, nil, e.clock.Now()); err != nil || !slices.Equal(roles, []string{"CSR.Request.Db"}) {
			t.Fatalf("AppRoles(%s) = %v, %v", app, roles, err)
		}
	}
	filtered := 0
	for _, r := range e.g.Requests() {
		if strings.Contains(r.Query, "$filter") {
			filtered++
		}
	}
	if filtered != 1 {
		t.Fatalf("%d requests asked for the filter Graph refused; want 1", filtered)
	}
	// A refusal of the whole list too is no answer, and the filter stays in use.
	f := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = api })
	f.g.SetAPI(api, "CSR.Request.Db")
	f.g.PutServicePrincipal(a, true)
	f.g.SetFault(entrafake.Fault{Status: http.StatusBadRequest, Path: "/v1.0/servicePrincipals/" + a + "/appRoleAssignments"})
	if _, err := f.d.AppRoles(ctx, a, nil, f.clock.Now()); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("Graph refusing both reads: AppRoles = %v, want ErrUnavailable", err)
	}
	f.g.SetFault(entrafake.Fault{})
	f.g.AssignAppRole(a, "CSR.Request.Db")
	f.clock.Advance(entra.DefaultPositiveTTL)
	if roles, err := f.d.AppRoles(ctx, a, nil, f.clock.Now()); err != nil || len(roles) != 1 {
		t.Fatalf("AppRoles = %v, %v", roles, err)
	}
	if last := f.g.Requests()[len(f.g.Requests())-1]; !strings.Contains(last.Query, "$filter") {
		t.Fatalf("after a 400 for both reads the filter was dropped: %s?%s", last.Path, last.Query)
	}
}

// TestRefusedUserAppRoles: a refused read of a user's app role assignments is reported as Directory.Read.All missing,
// the permission it needs, while the user's account, read with User.Read.All, is allowed.
func TestRefusedUserAppRoles(t *testing.T) {
	api := entrafake.NewGUID()
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.APIAppID = api })
	ctx := context.Background()
	e.g.SetAPI(api, "Certificates.Manage")
	user := entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: user, UPN: "a@contoso.test", Enabled: true})
	e.g.AssignAppRole(user, "Certificates.Manage")
	caller := &entra.Caller{ObjectID: user, Roles: []string{"Certificates.Manage"}, IssuedAt: e.clock.Now()}
	// The account and the API's service principal are read; the assignments are refused.
	e.g.SetFault(entrafake.Fault{Status: http.StatusForbidden, Path: "/v1.0/users/" + user + "/appRoleAssignments"})
	if _, _, err := entra.RecheckCaller(ctx, e.d, caller, false, "Certificates.Manage"); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("RecheckCaller = %v, want ErrUnavailable", err)
	}
	if got := e.d.Refused(); len(got) != 1 || got[0].Permission != "Directory.Read.All" || got[0].Status != http.StatusForbidden {
		t.Fatalf("Refused = %+v, want Directory.Read.All only", got)
	}
}

// meetingReader answers the account only once the roles are being read, and the roles only once the account is:
// a RecheckCaller that reads one after the other never gets either answer.
type meetingReader struct {
	accountAsked, rolesAsked chan struct{}
	account                  entra.Account
	roles                    []string
	rolesErr                 error
}

func (m *meetingReader) meet(ctx context.Context, mine, other chan struct{}) error {
	close(mine)
	select {
	case <-other:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: asked one after the other", entra.ErrUnavailable)
	}
}

func (m *meetingReader) Account(ctx context.Context, _ string) (entra.Account, error) {
	if err := m.meet(ctx, m.accountAsked, m.rolesAsked); err != nil {
		return entra.Account{}, err
	}
	return m.account, nil
}

func (m *meetingReader) ServicePrincipal(ctx context.Context, id string) (entra.Account, error) {
	return m.Account(ctx, id)
}

func (m *meetingReader) UserAppRoles(ctx context.Context, _ string, _ []string, _ time.Time) ([]string, error) {
	if err := m.meet(ctx, m.rolesAsked, m.accountAsked); err != nil {
		return nil, err
	}
	return m.roles, m.rolesErr
}

func (m *meetingReader) AppRoles(ctx context.Context, id string, claimed []string, at time.Time) ([]string, error) {
	return m.UserAppRoles(ctx, id, claimed, at)
}

// TestRecheckReadsAccountAndRolesAtOnce: a new caller's account and roles are two Graph round trips, asked together
// rather than in turn; whichever way the two answers fall, an account that fails its check is what the caller is
// told, then a roles read that failed, then a role no longer held.
func TestRecheckReadsAccountAndRolesAtOnce(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	user := &entra.Caller{ObjectID: "7b4683f7-14fd-4e24-98a9-1f23390d1293", Roles: []string{"CSR.Request.Db"}, IssuedAt: now}
	app := &entra.Caller{ObjectID: "173f00f6-f5e4-4cfb-b1e5-a905810650c6", IsApp: true, Roles: []string{"CSR.Request.Db"}, IssuedAt: now}
	enabled := entra.Account{Exists: true, Enabled: true, UPN: "a@contoso.test"}
	for _, tc := range []struct {
		name     string
		caller   *entra.Caller
		account  entra.Account
		roles    []string
		rolesErr error
		want     error
	}{
		{"user, both fine", user, enabled, []string{"CSR.Request.Db"}, nil, nil},
		{"app, both fine", app, enabled, []string{"CSR.Request.Db"}, nil, nil},
		{"disabled account beside a roles failure", user, entra.Account{Exists: true}, nil, entra.ErrUnavailable, entra.ErrAccountDisabled},
		{"roles unreadable", user, enabled, nil, entra.ErrUnavailable, entra.ErrUnavailable},
		{"role removed", app, enabled, []string{}, nil, entra.ErrRoleRemoved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &meetingReader{accountAsked: make(chan struct{}), rolesAsked: make(chan struct{}),
				account: tc.account, roles: tc.roles, rolesErr: tc.rolesErr}
			m.account.ObjectID = tc.caller.ObjectID
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, held, err := entra.RecheckCaller(ctx, m, tc.caller, false, "CSR.Request.Db")
			if !errors.Is(err, tc.want) || (tc.want == nil && !slices.Equal(held, []string{"CSR.Request.Db"})) {
				t.Fatalf("RecheckCaller = %v, %v; want %v", held, err, tc.want)
			}
		})
	}
}

// slowRolesReader answers the account at once and the roles only when their context ends, noting why it ended.
type slowRolesReader struct {
	account  entra.Account
	rolesEnd chan error
}

func (s *slowRolesReader) Account(context.Context, string) (entra.Account, error) {
	return s.account, nil
}
func (s *slowRolesReader) ServicePrincipal(ctx context.Context, id string) (entra.Account, error) {
	return s.Account(ctx, id)
}
func (s *slowRolesReader) UserAppRoles(ctx context.Context, _ string, _ []string, _ time.Time) ([]string, error) {
	<-ctx.Done()
	s.rolesEnd <- ctx.Err()
	return nil, ctx.Err()
}
func (s *slowRolesReader) AppRoles(ctx context.Context, id string, claimed []string, at time.Time) ([]string, error) {
	return s.UserAppRoles(ctx, id, claimed, at)
}

// TestRecheckAnswersAFailedAccountAtOnce: when the account fails its check, the caller is answered without waiting
// for the roles read beside it (Graph may be slow, or retrying it): that read is cancelled, not waited out.
func TestRecheckAnswersAFailedAccountAtOnce(t *testing.T) {
	const oid = "7b4683f7-14fd-4e24-98a9-1f23390d1293"
	r := &slowRolesReader{account: entra.Account{ObjectID: oid, Exists: true, Enabled: false}, rolesEnd: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	caller := &entra.Caller{ObjectID: oid, Roles: []string{"CSR.Request.Db"}, IssuedAt: time.Now()}
	if _, _, err := entra.RecheckCaller(ctx, r, caller, false, "CSR.Request.Db"); !errors.Is(err, entra.ErrAccountDisabled) {
		t.Fatalf("RecheckCaller = %v, want ErrAccountDisabled", err)
	}
	if ctx.Err() != nil {
		t.Fatal("RecheckCaller waited for the roles read until the request's own deadline")
	}
	if err := <-r.rolesEnd; !errors.Is(err, context.Canceled) {
		t.Fatalf("the roles read ended with %v, want it cancelled", err)
	}
}
