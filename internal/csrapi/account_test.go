package csrapi_test

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// accountAndRoleReads is how many Graph reads a user's first request makes before any device question: the
// account, the API's app roles and the user's app role assignments.
const accountAndRoleReads = 3

// apiFilter is the $filter on the API's service principal (a GUID the fake makes), which the want lists spell {API}.
var apiFilter = regexp.MustCompile(`(\$filter=resourceId%20eq%20)[0-9a-f-]{36}`)

// accountReads counts the Graph reads of one user's account.
func (e *env) accountReads(oid string) int {
	n := 0
	for _, r := range e.graph.Requests() {
		if r.Path == "/v1.0/users/"+oid {
			n++
		}
	}
	return n
}

// TestAccountRead: a token is only as good as the account behind it now. Each user caller's account is read from
// Graph (the properties Graph returns only when selected), and a token issued before an administrator disabled or
// deleted the account or revoked its sessions gets nothing, whatever the role; an app-only token, likewise, once its
// service principal is disabled or deleted.
func TestAccountRead(t *testing.T) {
	userCSR := func(u user) []byte {
		return csrDER(t, ecKey(t, "account"), testca.CSROptions{UPNs: []string{u.upn}})
	}
	dbCSR := csrDER(t, ecKey(t, "account-db"), testca.CSROptions{Subject: cn("svc-account")})

	t.Run("enabled account, read once while cached", func(t *testing.T) {
		e := newEnv(t)
		alice := newUser("alice")
		tok := e.userToken(alice, selfService)
		e.wantCert(e.post(tok, userCSR(alice)))
		e.wantCert(e.post(tok, userCSR(alice)))
		// The user, the API's own roles and the user's assignments (directly or through a group, which only the
		// advanced query with $count answers), each read once while cached.
		var got []string
		for _, r := range e.graph.Requests() {
			got = append(got, apiFilter.ReplaceAllString(r.Path+"?"+r.Query+" "+r.ConsistencyLevel, "${1}{API}"))
		}
		want := []string{"/v1.0/users/" + alice.oid + "?$select=id,accountEnabled,userPrincipalName,userType,signInSessionsValidFromDateTime ",
			"/v1.0/servicePrincipals(appId='" + e.tenant.ClientID + "')?$select=id,appRoles ",
			"/v1.0/users/" + alice.oid + "/appRoleAssignments?$select=resourceId,appRoleId&$count=true&$filter=resourceId%20eq%20{API} eventual"}
		// The account and the roles are read at once, in no set order; the API's roles precede the assignments.
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) || len(want) != accountAndRoleReads {
			t.Fatalf("Graph calls for the user = %q, want %q", got, want)
		}
		// An app-only token is compared with the application's service principal and the API roles assigned to
		// it now (the API's own roles are already known).
		e.wantCert(e.post(e.appToken(), dbCSR))
		e.wantCert(e.post(e.appToken(), dbCSR))
		got = nil
		for _, r := range e.graph.Requests()[len(want):] {
			got = append(got, apiFilter.ReplaceAllString(r.Path+"?"+r.Query, "${1}{API}"))
		}
		want = []string{"/v1.0/servicePrincipals/" + e.tenant.AppObjectID + "?$select=id,accountEnabled",
			"/v1.0/servicePrincipals/" + e.tenant.AppObjectID + "/appRoleAssignments?$select=resourceId,appRoleId&$filter=resourceId%20eq%20{API}"}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("Graph calls for the app = %q, want %q", got, want)
		}
	})

	t.Run("an application whose role was removed", func(t *testing.T) {
		e := newEnv(t)
		tok := e.appToken() // carries CSR.Request.Db
		e.graph.RemoveAppRole(e.tenant.AppObjectID, entra.RoleCSRRequestDb)
		wantProblem(t, e.post(tok, dbCSR), http.StatusForbidden, csrapi.CodeRoleRemoved)
		if n := e.records(""); n != 0 {
			t.Fatalf("records = %d, want 0", n)
		}
		// Assigned again: once the cached answer ("no roles", kept for the negative TTL) expires, it works.
		e.graph.AssignAppRole(e.tenant.AppObjectID, entra.RoleCSRRequestDb)
		wantProblem(t, e.post(tok, dbCSR), http.StatusForbidden, csrapi.CodeRoleRemoved)
		e.clock.Advance(entra.DefaultNegativeTTL)
		e.wantCert(e.post(tok, dbCSR))
		// A role of another API, or another of ours, does not stand in for it.
		e.graph.RemoveAppRole(e.tenant.AppObjectID, entra.RoleCSRRequestDb)
		e.graph.AssignAppRole(e.tenant.AppObjectID, entra.RoleCertificatesManage)
		e.clock.Advance(entra.DefaultPositiveTTL)
		wantProblem(t, e.post(tok, dbCSR), http.StatusForbidden, csrapi.CodeRoleRemoved)
	})

	t.Run("an application that kept only the self-service role", func(t *testing.T) {
		// The request acts on CSR.Request.Db (the token carries it): that role is re-read, not any of the token's.
		e := newEnv(t)
		tok := e.tenant.MintApp([]string{entra.RoleCSRRequestDb, entra.RoleCSRSelfService})
		e.graph.RemoveAppRole(e.tenant.AppObjectID, entra.RoleCSRRequestDb)
		e.graph.AssignAppRole(e.tenant.AppObjectID, entra.RoleCSRSelfService)
		wantProblem(t, e.post(tok, dbCSR), http.StatusForbidden, csrapi.CodeRoleRemoved)
		if n := e.records(""); n != 0 {
			t.Fatalf("records = %d, want 0", n)
		}
	})

	t.Run("an application an administrator disabled or deleted", func(t *testing.T) {
		e := newEnv(t)
		tok := e.appToken() // issued while the application was enabled
		e.graph.PutServicePrincipal(e.tenant.AppObjectID, false)
		wantProblem(t, e.post(tok, dbCSR), http.StatusForbidden, csrapi.CodeAccountDisabled)
		e.clock.Advance(entra.DefaultNegativeTTL)
		e.graph.DeleteServicePrincipal(e.tenant.AppObjectID)
		wantProblem(t, e.post(tok, dbCSR), http.StatusForbidden, csrapi.CodeAccountDisabled)
		e.clock.Advance(entra.DefaultNegativeTTL)
		e.graph.PutServicePrincipal(e.tenant.AppObjectID, true)
		e.graph.SetFault(entrafake.Fault{Status: http.StatusForbidden}) // Application.Read.All not granted
		wantProblem(t, e.post(tok, dbCSR), http.StatusServiceUnavailable, csrapi.CodeUnavailable)
		if n := e.records(""); n != 0 {
			t.Fatalf("records = %d, want 0", n)
		}
		e.graph.SetFault(entrafake.Fault{})
		e.wantCert(e.post(tok, dbCSR))
	})

	for _, tc := range []struct {
		name   string
		change func(e *env, u user)
		status int
		code   string
	}{
		{"disabled", func(e *env, u user) { e.graph.UpdateUser(u.oid, func(a *entrafake.User) { a.Enabled = false }) },
			http.StatusForbidden, csrapi.CodeAccountDisabled},
		{"deleted", func(e *env, u user) { e.graph.DeleteUser(u.oid) }, http.StatusForbidden, csrapi.CodeAccountDisabled},
		{"sessions revoked", func(e *env, u user) {
			e.graph.UpdateUser(u.oid, func(a *entrafake.User) { a.SessionsValidFrom = e.clock.Now().Add(time.Second) })
		}, http.StatusUnauthorized, csrapi.CodeSessionsRevoked},
		{"turned guest", func(e *env, u user) { e.graph.UpdateUser(u.oid, func(a *entrafake.User) { a.Guest = true }) },
			http.StatusForbidden, csrapi.CodeGuest},
	} {
		for _, role := range []struct {
			name  string
			roles []string
		}{{"self-service", selfService}, {"CSR.Request.Db", requestDb}} {
			t.Run(tc.name+"/"+role.name, func(t *testing.T) {
				e := newEnv(t)
				alice := newUser("alice")
				der := userCSR(alice)
				if role.name != "self-service" {
					der = dbCSR
				}
				tok := e.userToken(alice, role.roles) // issued while the account was fine
				tc.change(e, alice)
				r := e.post(tok, der)
				wantProblem(t, r, tc.status, tc.code)
				if tc.status == http.StatusUnauthorized && !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Fatalf("WWW-Authenticate = %q, want invalid_token", r.Header.Get("WWW-Authenticate"))
				}
				if n := e.records(""); n != 0 {
					t.Fatalf("records = %d, want 0", n)
				}
				if tc.name == "sessions revoked" {
					// Entra back-dates iat by five minutes: a token obtained a minute after the revocation is
					// refused too, one obtained five minutes after it is not.
					e.clock.Advance(time.Minute)
					wantProblem(t, e.post(e.userToken(alice, role.roles), der), tc.status, tc.code)
					e.clock.Advance(4*time.Minute + time.Second)
					e.wantCert(e.post(e.userToken(alice, role.roles), der))
				}
			})
		}
	}

	t.Run("a disabled account answer is cached for the negative TTL only", func(t *testing.T) {
		e := newEnv(t)
		alice := newUser("alice")
		tok := e.userToken(alice, selfService)
		e.graph.UpdateUser(alice.oid, func(a *entrafake.User) { a.Enabled = false })
		wantProblem(t, e.post(tok, userCSR(alice)), http.StatusForbidden, csrapi.CodeAccountDisabled)
		e.graph.UpdateUser(alice.oid, func(a *entrafake.User) { a.Enabled = true })
		wantProblem(t, e.post(tok, userCSR(alice)), http.StatusForbidden, csrapi.CodeAccountDisabled)
		e.clock.Advance(entra.DefaultNegativeTTL)
		e.wantCert(e.post(tok, userCSR(alice)))
		if n := e.accountReads(alice.oid); n != 2 {
			t.Fatalf("account reads = %d, want 2", n)
		}
	})

	t.Run("an administrator's change reaches issuance within the positive TTL", func(t *testing.T) {
		e := newEnv(t)
		alice := newUser("alice")
		tok := e.userToken(alice, selfService)
		e.wantCert(e.post(tok, userCSR(alice)))
		e.graph.UpdateUser(alice.oid, func(a *entrafake.User) { a.Enabled = false })
		e.clock.Advance(entra.DefaultPositiveTTL)
		wantProblem(t, e.post(tok, userCSR(alice)), http.StatusForbidden, csrapi.CodeAccountDisabled)
	})

	t.Run("renamed: the old UPN binds nothing, the device still can", func(t *testing.T) {
		e := newEnv(t)
		alice := newUser("alice")
		dev := entrafake.NewGUID()
		e.graph.AddDevice(dev, alice.oid)
		managed := entrafake.NewGUID()
		e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: managed, UserID: alice.oid})
		tok := e.userToken(alice, selfService)
		// An administrator gives alice's UPN to someone else and alice a new one; her token still says the old one.
		e.graph.UpdateUser(alice.oid, func(a *entrafake.User) { a.UPN = "alice.new@contoso.test" })
		for name, o := range map[string]testca.CSROptions{
			"UPN SAN":                     {UPNs: []string{alice.upn}},
			"CN":                          {Subject: cn(alice.upn)},
			"CN beside an owned device":   {Subject: cn(alice.upn), URIs: []*url.URL{deviceURI(managed)}},
			"UPN SAN beside a device CN":  {Subject: cn(dev), UPNs: []string{alice.upn}},
			"CN upper-cased beside a URI": {Subject: cn(strings.ToUpper(alice.upn)), URIs: []*url.URL{deviceURI(managed)}},
		} {
			wantProblem(t, e.post(tok, csrDER(t, ecKey(t, "renamed-"+name), o)), http.StatusForbidden, csrapi.CodeNotSelf)
		}
		if n := e.records(""); n != 0 {
			t.Fatalf("records = %d, want 0", n)
		}
		// A device certificate binds her object ID, which did not change.
		e.wantCert(e.post(tok, csrDER(t, ecKey(t, "renamed-device"), testca.CSROptions{Subject: cn(dev)})))
		e.wantCert(e.post(tok, csrDER(t, ecKey(t, "renamed-managed"), testca.CSROptions{URIs: []*url.URL{deviceURI(managed)}})))
	})

	t.Run("a retry inside the retry window is re-read too", func(t *testing.T) {
		e := newEnv(t)
		alice := newUser("alice")
		tok := e.userToken(alice, selfService)
		der := userCSR(alice)
		e.wantCert(e.post(tok, der))
		e.graph.UpdateUser(alice.oid, func(a *entrafake.User) { a.Enabled = false })
		e.clock.Advance(entra.DefaultPositiveTTL)
		wantProblem(t, e.post(tok, der), http.StatusForbidden, csrapi.CodeAccountDisabled)
	})

	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusForbidden} {
		t.Run("Graph answers "+http.StatusText(status), func(t *testing.T) {
			e := newEnv(t)
			alice := newUser("alice")
			tok := e.userToken(alice, selfService)
			e.graph.SetFault(entrafake.Fault{Status: status})
			r := e.post(tok, userCSR(alice))
			wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
			wantRetryAfter(t, r, 1)
			if n := e.records(""); n != 0 {
				t.Fatalf("records = %d while Graph is down, want 0", n)
			}
			// The failure is not cached.
			e.graph.SetFault(entrafake.Fault{})
			e.wantCert(e.post(tok, userCSR(alice)))
		})
	}

	t.Run("a bad CSR costs no Graph call", func(t *testing.T) {
		e := newEnv(t)
		alice := newUser("alice")
		r := e.post(e.userToken(alice, selfService), []byte("not a CSR"))
		if r.StatusCode != http.StatusBadRequest {
			t.Fatalf("status = %d, want 400", r.StatusCode)
		}
		if n := len(e.graph.Requests()); n != 0 {
			t.Fatalf("Graph calls = %d for a malformed CSR", n)
		}
	})
}

// TestNewNeedsAnAccountReader: forgetting the account reader fails closed; trusting tokens' accounts must be asked
// for (NoDirectory, the development issuer).
func TestNewNeedsAnAccountReader(t *testing.T) {
	var c csrapi.Config
	newEnv(t, func(cfg *csrapi.Config) { c = *cfg })
	c.Accounts = nil
	if _, err := csrapi.New(c); err == nil {
		t.Fatal("New accepted a config without an account reader")
	}
	c.NoDirectory = true
	if _, err := csrapi.New(c); err != nil {
		t.Fatalf("New refused NoDirectory: %v", err)
	}
}

// TestUserRoleRemoved: a user's token keeps its roles claim for the hour it lives, but the request acts on the role
// as Graph assigns it now (directly or through a group): an administrator who takes CSR.Request.Db or CSR.SelfService
// from a user, or the user out of the group holding it, stops the user's certificates within the cache's positive
// TTL (403 role_removed, nothing recorded or signed), and a Graph that cannot say is 503, never a certificate.
func TestUserRoleRemoved(t *testing.T) {
	dbCSR := csrDER(t, ecKey(t, "user-role-db"), testca.CSROptions{Subject: cn("svc-user-role")})
	selfCSR := func(u user) []byte {
		return csrDER(t, ecKey(t, "user-role-self"), testca.CSROptions{UPNs: []string{u.upn}})
	}
	refused := func(t *testing.T, e *env, tok string, der []byte, status int, code string) {
		t.Helper()
		before := e.records("")
		wantProblem(t, e.post(tok, der), status, code)
		if n := e.records(""); n != before {
			t.Fatalf("records = %d after a refusal, want %d", n, before)
		}
	}

	for _, tc := range []struct {
		name  string
		roles []string
		der   func(u user) []byte
	}{
		{"CSR.Request.Db", requestDb, func(user) []byte { return dbCSR }},
		{"CSR.SelfService", selfService, selfCSR},
	} {
		t.Run("assigned directly, "+tc.name, func(t *testing.T) {
			e := newEnv(t)
			alice := newUser("alice")
			tok := e.userToken(alice, tc.roles)
			e.wantCert(e.post(tok, tc.der(alice)))
			e.graph.RemoveAppRole(alice.oid, tc.roles[0])
			// The positive answer is kept for the positive TTL, then read again.
			e.wantCert(e.post(tok, tc.der(alice)))
			e.clock.Advance(entra.DefaultPositiveTTL)
			refused(t, e, tok, tc.der(alice), http.StatusForbidden, csrapi.CodeRoleRemoved)
			// A token obtained later still says the role (as Entra's would not, but an old one does): refused too.
			refused(t, e, e.userToken(alice, tc.roles), tc.der(alice), http.StatusForbidden, csrapi.CodeRoleRemoved)
			// Assigned again: served once the negative answer expires.
			e.graph.AssignAppRole(alice.oid, tc.roles[0])
			e.clock.Advance(entra.DefaultNegativeTTL)
			e.wantCert(e.post(tok, tc.der(alice)))
		})
	}

	t.Run("through a group", func(t *testing.T) {
		e := newEnv(t)
		bob := newUser("bob")
		group := entrafake.NewGUID()
		e.graph.RemoveAppRole(bob.oid, entra.RoleCSRRequestDb) // not directly: only through the group
		e.graph.AssignAppRole(group, entra.RoleCSRRequestDb)
		e.graph.AddGroupMember(group, bob.oid)
		tok := e.userToken(bob, requestDb)
		e.wantCert(e.post(tok, dbCSR))
		e.graph.RemoveGroupMember(group, bob.oid)
		e.clock.Advance(entra.DefaultPositiveTTL)
		refused(t, e, tok, dbCSR, http.StatusForbidden, csrapi.CodeRoleRemoved)
	})

	t.Run("the request's role, not another the token carries", func(t *testing.T) {
		// The token carries both roles; the CSR.Request.Db request is decided on CSR.Request.Db alone.
		e := newEnv(t)
		carol := newUser("carol")
		e.graph.RemoveAppRole(carol.oid, entra.RoleCSRRequestDb)
		refused(t, e, e.userToken(carol, []string{entra.RoleCSRRequestDb, entra.RoleCSRSelfService}), dbCSR,
			http.StatusForbidden, csrapi.CodeRoleRemoved)
	})

	t.Run("Graph cannot list the assignments", func(t *testing.T) {
		for _, status := range []int{http.StatusForbidden /* Directory.Read.All not granted */, http.StatusServiceUnavailable} {
			t.Run(strconv.Itoa(status), func(t *testing.T) {
				e := newEnv(t)
				dave := newUser("dave")
				tok := e.userToken(dave, requestDb)
				// The account and the API's roles are read; the user's assignments are not.
				e.graph.SetFault(entrafake.Fault{Status: status, Path: "/v1.0/users/" + dave.oid + "/appRoleAssignments"})
				refused(t, e, tok, dbCSR, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
				e.graph.SetFault(entrafake.Fault{})
				e.wantCert(e.post(tok, dbCSR))
			})
		}
	})
}
