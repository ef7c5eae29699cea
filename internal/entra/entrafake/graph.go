package entrafake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// GraphScope is the scope the Graph fake's credential insists on.
const GraphScope = "https://graph.microsoft.com/.default"

// Graph is a fake of the Microsoft Graph endpoints used for accounts and
// device ownership:
//
//	GET /v1.0/users/{id}
//	GET /v1.0/users/delta[?$select=…] and its @odata.nextLink / @odata.deltaLink
//	GET /v1.0/devices/delta[?$select=…] and its @odata.nextLink / @odata.deltaLink
//	GET /v1.0/servicePrincipals/{id}
//	GET /v1.0/servicePrincipals(appId='{appId}')
//	GET /v1.0/servicePrincipals/{id}/appRoleAssignments[?$filter=resourceId eq {id}]
//	GET /v1.0/users/{id}/appRoleAssignments[?$filter=resourceId eq {id}]
//	GET /v1.0/devices(deviceId='{deviceId}')/registeredOwners
//	GET /v1.0/devices/{objectId}/registeredOwners
//	GET /v1.0/devices(deviceId='{deviceId}')
//	GET /v1.0/devices/{objectId}
//	GET /v1.0/devices?$filter=deviceId eq '{deviceId}'
//	GET /v1.0/deviceManagement/managedDevices/{id}
//	GET /v1.0/deviceManagement/managedDevices?$filter=azureADDeviceId eq '{deviceId}'
//
// It checks the bearer token issued by Credential, answers unknown objects
// with Graph's 404 error shape, journals every request and can inject faults.
// SetIntune makes the Intune routes answer as in a tenant without Intune, or
// to an identity without their permission.
// It models only a few properties of each type (a user's id, displayName,
// userPrincipalName, accountEnabled, userType and
// signInSessionsValidFromDateTime; a service principal's id, appId and
// accountEnabled; a device's id, deviceId and
// accountEnabled; a registered owner's id; a managed device's id, userId,
// azureADDeviceId and managementState): a $select naming any other property, and any query option
// a route does not model ($expand, $top…), is a 400, and a $select is honoured
// (only the selected properties come back), so a client that forgets to
// select a property it reads does not get it. Without $select a user has only
// Graph's default properties among these (id, displayName,
// userPrincipalName), as in Graph.
type Graph struct {
	tb  testing.TB
	srv *httptest.Server
	// Token is the bearer token the fake accepts (what Credential returns).
	Token string

	mu        sync.Mutex
	users     map[string]User         // by id
	delta     deltaJournal            // what the users delta query answers (delta.go)
	devDelta  deltaJournal            // what the devices delta query answers, by object ID
	apps      map[string]bool         // service principals by id: accountEnabled
	api       *resourceApp            // the API whose app roles are assigned (SetAPI)
	assigned  map[string][]string     // the API's role values assigned to a principal (user, group, service principal), by its id
	removed   map[string][]string     // assignments RemoveAppRole took away, which minting does not restore
	members   map[string][]string     // a group's direct members, by the group's id
	foreign   map[string]int          // how many roles of other applications a principal is assigned, by its id
	noFilter  bool                    // $filter on appRoleAssignments answered 400 (RefuseAssignmentFilter)
	ignoreMDF bool                    // $filter on the managedDevices list ignored (IgnoreManagedDeviceFilter)
	intune    IntuneService           // what deviceManagement answers (SetIntune)
	devices   map[string]*graphDevice // by deviceId
	managed   map[string]ManagedDevice
	journal   []Request
	fault     Fault
	faultSkip int // requests left to serve before fault applies
	pageSize  int
	closing   chan struct{}
	closeOnce sync.Once
	// inFlight and maxInFlight count the requests being served, now and at most (MaxInFlight); held makes the
	// first object lookups wait until that many are in flight at once (HoldLookups), released opens them.
	inFlight, maxInFlight int
	held                  int
	released              chan struct{}
}

type graphDevice struct {
	objectID       string
	deviceID       string
	accountEnabled bool
	owners         []string
}

// User is the subset of a Graph user the fake serves.
type User struct {
	ID      string
	UPN     string
	Enabled bool
	// Guest makes userType "Guest" (else "Member").
	Guest bool
	// SessionsValidFrom is signInSessionsValidFromDateTime; Entra sets it
	// when the user is created and moves it when sessions are revoked.
	SessionsValidFrom time.Time
}

// ManagedDevice is the subset of an Intune managedDevice the fake serves.
type ManagedDevice struct {
	ID              string
	UserID          string
	AzureADDeviceID string
	// ManagementState is the managementState enum value ("managed", "retirePending", "wipeIssued"…); empty
	// serves "managed", as Graph always answers one.
	ManagementState string
}

// Fault is injected into every Graph response until cleared.
type Fault struct {
	// Status, if non-zero, is returned with a Graph error body.
	Status int
	// Hang blocks the response until the client gives up (or the test ends),
	// modelling a timeout.
	Hang bool
	// After is how many requests, counted from SetFault, are served normally
	// before the fault applies: After 1 fails every request but the first.
	After int
	// Times, if non-zero, is how many requests the fault applies to before it
	// clears itself, as a throttled or briefly unavailable Graph recovers.
	Times int
	// RetryAfter, if set, is sent as the faulty answers' Retry-After header
	// (Graph sends one with every 429).
	RetryAfter string
	// Path, if set, limits the fault to requests for that exact path; After
	// and Times count only those. Requests the service sends at once reach
	// the fake in any order, so only a path says which of them fails.
	Path string
}

// NewGraph starts a Graph fake; it is closed by the test's Cleanup.
func NewGraph(tb testing.TB) *Graph {
	tb.Helper()
	g := &Graph{
		tb:       tb,
		Token:    "graph-token-" + randomKID(),
		users:    make(map[string]User),
		apps:     make(map[string]bool),
		assigned: make(map[string][]string),
		removed:  make(map[string][]string),
		members:  make(map[string][]string),
		foreign:  make(map[string]int),
		devices:  make(map[string]*graphDevice),
		managed:  make(map[string]ManagedDevice),
		closing:  make(chan struct{}),
	}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	tb.Cleanup(func() {
		g.closeOnce.Do(func() { close(g.closing) })
		g.srv.Close()
	})
	return g
}

// URL is the Graph base URL (with trailing slash) for entra.GraphConfig.BaseURL.
func (g *Graph) URL() string { return g.srv.URL + "/" }

// Client is an HTTP client for the fake.
func (g *Graph) Client() *http.Client { return g.srv.Client() }

// PutUser adds or replaces a user.
func (g *Graph) PutUser(u User) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u.ID = strings.ToLower(u.ID)
	g.users[u.ID] = u
	g.delta.changed(u.ID)
}

// HasUser reports whether the user exists.
func (g *Graph) HasUser(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.users[strings.ToLower(id)]
	return ok
}

// UpdateUser changes an existing user as an administrator does (disable,
// rename, revoke sessions). An unknown id fails the test.
func (g *Graph) UpdateUser(id string, change func(*User)) {
	g.tb.Helper()
	g.mu.Lock()
	u, ok := g.users[strings.ToLower(id)]
	if ok {
		change(&u)
		g.users[u.ID] = u
		g.delta.changed(u.ID)
	}
	g.mu.Unlock()
	if !ok {
		g.tb.Fatalf("entrafake: UpdateUser: no user %s", id)
	}
}

// DeleteUser removes a user for good (deleted, or purged from deleted items): the users delta reports it
// @removed with reason "deleted".
func (g *Graph) DeleteUser(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removeUserLocked(strings.ToLower(id), "deleted")
}

// SoftDeleteUser deletes a user as an administrator does in the Entra admin center: the user is gone from every
// route and can be restored from deleted items for 30 days; the users delta reports it @removed with reason
// "changed".
func (g *Graph) SoftDeleteUser(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removeUserLocked(strings.ToLower(id), "changed")
}

func (g *Graph) removeUserLocked(id, reason string) {
	if _, ok := g.users[id]; !ok {
		return
	}
	delete(g.users, id)
	g.delta.removed(id, reason)
}

// PutServicePrincipal adds or replaces an application's service principal (the oid of its app-only tokens),
// enabled or, as an administrator disables a compromised enterprise application, not.
func (g *Graph) PutServicePrincipal(id string, enabled bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.apps[strings.ToLower(id)] = enabled
}

// HasServicePrincipal reports whether the service principal exists.
func (g *Graph) HasServicePrincipal(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.apps[strings.ToLower(id)]
	return ok
}

// resourceApp is an API application: its service principal and app roles.
type resourceApp struct {
	appID, spID string
	roleIDs     map[string]string // by value
	disabled    []string          // role values an administrator disabled (isEnabled false)
}

// SetAPI registers the API application appID, with a service principal and the given app roles (random IDs).
func (g *Graph) SetAPI(appID string, roles ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	api := &resourceApp{appID: strings.ToLower(appID), spID: NewGUID(), roleIDs: map[string]string{}}
	for _, r := range roles {
		api.roleIDs[r] = NewGUID()
	}
	g.api = api
	g.apps[api.spID] = true
}

// SetAppRoleEnabled enables or disables one of the API's app roles (isEnabled), as an administrator does before
// deleting a role.
func (g *Graph) SetAppRoleEnabled(role string, enabled bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.api.disabled = slices.DeleteFunc(g.api.disabled, func(r string) bool { return r == role })
	if !enabled {
		g.api.disabled = append(g.api.disabled, role)
	}
}

// AssignAppRole assigns the API's app role to the principal spID (a service principal, a user or a group), as an
// administrator (or consent) does.
func (g *Graph) AssignAppRole(spID, role string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := strings.ToLower(spID)
	if !slices.Contains(g.assigned[id], role) {
		g.assigned[id] = append(g.assigned[id], role)
	}
	g.removed[id] = slices.DeleteFunc(g.removed[id], func(r string) bool { return r == role })
}

// RemoveAppRole takes the API's app role away from the principal spID (service principal, user or group); tokens
// minted later for it do not bring it back (their roles claim still says it, as a token minted before the removal
// would).
func (g *Graph) RemoveAppRole(spID, role string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := strings.ToLower(spID)
	g.assigned[id] = slices.DeleteFunc(g.assigned[id], func(r string) bool { return r == role })
	g.removed[id] = append(g.removed[id], role)
}

// AddGroupMember makes the user userID a direct member of the group groupID (created by its first member).
func (g *Graph) AddGroupMember(groupID, userID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gid, uid := strings.ToLower(groupID), strings.ToLower(userID)
	if !slices.Contains(g.members[gid], uid) {
		g.members[gid] = append(g.members[gid], uid)
	}
}

// RemoveGroupMember takes the user userID out of the group groupID.
func (g *Graph) RemoveGroupMember(groupID, userID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gid, uid := strings.ToLower(groupID), strings.ToLower(userID)
	g.members[gid] = slices.DeleteFunc(g.members[gid], func(m string) bool { return m == uid })
}

// AssignForeignRoles assigns the principal id (user, group or service principal) n app roles of other applications,
// which its appRoleAssignments list before the API's: a user in many groups, or an application granted many APIs.
func (g *Graph) AssignForeignRoles(id string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.foreign[strings.ToLower(id)] = n
}

// RefuseAssignmentFilter makes every $filter on an appRoleAssignments list a 400 Request_UnsupportedQuery, as a
// Graph that did not support the filter would answer.
func (g *Graph) RefuseAssignmentFilter(refuse bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noFilter = refuse
}

// ensureAppRoles assigns the roles a minted token (app-only or user) carries, unless RemoveAppRole took them away.
func (g *Graph) ensureAppRoles(spID string, roles []string) {
	g.mu.Lock()
	id := strings.ToLower(spID)
	var add []string
	for _, r := range roles {
		if !slices.Contains(g.assigned[id], r) && !slices.Contains(g.removed[id], r) {
			add = append(add, r)
		}
	}
	g.mu.Unlock()
	for _, r := range add {
		g.AssignAppRole(spID, r)
	}
}

// DeleteServicePrincipal removes a service principal.
func (g *Graph) DeleteServicePrincipal(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.apps, strings.ToLower(id))
}

// AddDevice registers an enabled Entra device with the given deviceId and
// registered owners and returns its directory object id.
func (g *Graph) AddDevice(deviceID string, owners ...string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := &graphDevice{objectID: NewGUID(), deviceID: strings.ToLower(deviceID), accountEnabled: true, owners: owners}
	g.devices[d.deviceID] = d
	g.devDelta.changed(d.objectID)
	return d.objectID
}

// DeleteDevice deletes the Entra device with the given deviceId, as an administrator (or the stale-device cleanup)
// does: it is gone from every route, and the devices delta reports its object ID @removed with reason "deleted". An
// unknown deviceId fails the test.
func (g *Graph) DeleteDevice(deviceID string) {
	g.tb.Helper()
	g.mu.Lock()
	d := g.devices[strings.ToLower(deviceID)]
	if d != nil {
		delete(g.devices, d.deviceID)
		g.devDelta.removed(d.objectID, "deleted")
	}
	g.mu.Unlock()
	if d == nil {
		g.tb.Fatalf("entrafake: DeleteDevice: no device %s", deviceID)
	}
}

// SetAccountEnabled enables or disables the Entra device with the given
// deviceId, as an administrator does in the Entra admin center (a lost device
// is disabled). Like Graph, the fake keeps a disabled device's registered
// owners. An unknown deviceId fails the test.
func (g *Graph) SetAccountEnabled(deviceID string, enabled bool) {
	g.tb.Helper()
	g.mu.Lock()
	d := g.devices[strings.ToLower(deviceID)]
	if d != nil {
		d.accountEnabled = enabled
		g.devDelta.changed(d.objectID)
	}
	g.mu.Unlock()
	if d == nil {
		g.tb.Fatalf("entrafake: SetAccountEnabled: no device %s", deviceID)
	}
}

// SetOwners replaces the registered owners of the Entra device with the given deviceId, as an administrator does
// when a device changes hands (or Windows re-registers it for its next user). Like Graph, it is no change the devices
// delta reports. An unknown deviceId fails the test.
func (g *Graph) SetOwners(deviceID string, owners ...string) {
	g.tb.Helper()
	g.mu.Lock()
	d := g.devices[strings.ToLower(deviceID)]
	if d != nil {
		d.owners = owners
	}
	g.mu.Unlock()
	if d == nil {
		g.tb.Fatalf("entrafake: SetOwners: no device %s", deviceID)
	}
}

// SetPrimaryUser makes userID the Intune primary user of the managed device id ("" for none, as a shared device
// has), as an administrator does in the Intune admin center. An unknown id fails the test.
func (g *Graph) SetPrimaryUser(id, userID string) {
	g.tb.Helper()
	g.changeManaged("SetPrimaryUser", id, func(md *ManagedDevice) { md.UserID = userID })
}

// changeManaged applies change to the managed device id under the fake's lock; an unknown id fails the test, named
// after the setter (what) that asked.
func (g *Graph) changeManaged(what, id string, change func(*ManagedDevice)) {
	g.tb.Helper()
	g.mu.Lock()
	md, ok := g.managed[strings.ToLower(id)]
	if ok {
		change(&md)
		g.managed[strings.ToLower(id)] = md
	}
	g.mu.Unlock()
	if !ok {
		g.tb.Fatalf("entrafake: %s: no managed device %s", what, id)
	}
}

// AddManagedDevice registers an Intune managed device.
func (g *Graph) AddManagedDevice(md ManagedDevice) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if md.ManagementState == "" {
		md.ManagementState = "managed"
	}
	g.managed[strings.ToLower(md.ID)] = md
}

// SetManagementState sets a managed device's managementState, as Intune does when an administrator retires, wipes
// or deletes it ("retireIssued", then "retirePending"…) or cancels that ("retireCanceled"). Like Graph, the fake
// keeps the device's primary user meanwhile. An unknown id fails the test.
func (g *Graph) SetManagementState(id, state string) {
	g.tb.Helper()
	g.changeManaged("SetManagementState", id, func(md *ManagedDevice) { md.ManagementState = state })
}

// IgnoreManagedDeviceFilter makes the managedDevices list answer every managed device whatever its $filter says, as
// Intune's list does for a filter it does not support (it does not refuse it): a client must check what it gets.
func (g *Graph) IgnoreManagedDeviceFilter(ignore bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ignoreMDF = ignore
}

// IntuneService is what the fake's Intune routes (/v1.0/deviceManagement/…) answer.
type IntuneService int

const (
	// IntuneLicensed: the tenant has Intune and the identity DeviceManagementManagedDevices.Read.All; the managed
	// devices are served (the default).
	IntuneLicensed IntuneService = iota
	// IntuneUnlicensed: the tenant has no Intune licence (a tenant using only Entra ID). Graph's Intune API
	// "requires an active Intune license for the tenant" and answers every deviceManagement request 400 BadRequest
	// "Request not applicable to target tenant.", the same answer Graph gives other features a tenant is not
	// licensed for.
	IntuneUnlicensed
	// IntuneNotGranted: the tenant has Intune, but the identity was not granted DeviceManagementManagedDevices.Read.All:
	// Intune answers 403 with its own error, a JSON document in the message naming the scopes it wants.
	IntuneNotGranted
)

// SetIntune sets what the Intune routes answer.
func (g *Graph) SetIntune(s IntuneService) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.intune = s
}

// SetFault injects f into all following requests, or into those after the
// first f.After (zero Fault clears it).
func (g *Graph) SetFault(f Fault) {
	g.mu.Lock()
	g.fault = f
	g.faultSkip = f.After
	g.mu.Unlock()
}

// SetPageSize makes registeredOwners return at most n owners per page, with
// an @odata.nextLink (0 = unlimited).
func (g *Graph) SetPageSize(n int) {
	g.mu.Lock()
	g.pageSize = n
	g.mu.Unlock()
}

// MaxInFlight is the most requests the fake has served at once.
func (g *Graph) MaxInFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maxInFlight
}

// HoldLookups makes the next lookups of one user or device (GET /v1.0/users/{id}, /v1.0/devices/{id}) wait until n
// of them are waiting at once, then lets them all go on, and the later ones through: a client that asks one at a
// time never gets an answer (its request ends with its context), one that asks n at a time goes on.
func (g *Graph) HoldLookups(n int) {
	g.mu.Lock()
	g.held, g.released = n, make(chan struct{})
	g.mu.Unlock()
}

// hold waits, for a lookup r while HoldLookups is in force, until enough wait with it; false when r ended first.
func (g *Graph) hold(r *http.Request) bool {
	if (!reUser.MatchString(r.URL.Path) && !reDevObj.MatchString(r.URL.Path)) || strings.HasSuffix(r.URL.Path, "/delta") {
		return true
	}
	g.mu.Lock()
	if g.held == 0 {
		g.mu.Unlock()
		return true
	}
	release := g.released
	if g.held--; g.held == 0 {
		close(release)
	}
	g.mu.Unlock()
	select {
	case <-release:
		return true
	case <-r.Context().Done():
		return false
	}
}

// Requests returns a copy of the journal.
func (g *Graph) Requests() []Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Request(nil), g.journal...)
}

// The properties the fake models, per type; $select may name only these.
var (
	userProps    = []string{"id", "displayName", "userPrincipalName", "accountEnabled", "userType", "signInSessionsValidFromDateTime"}
	userDefaults = []string{"id", "displayName", "userPrincipalName"}
	appProps     = []string{"id", "appId", "accountEnabled"}
	apiProps     = []string{"id", "appId", "accountEnabled", "appRoles"}
	assignProps  = []string{"id", "principalId", "principalType", "resourceId", "appRoleId"}
	deviceProps  = []string{"id", "deviceId", "accountEnabled"}
	ownerProps   = []string{"id"}
	managedProps = []string{"id", "userId", "azureADDeviceId", "managementState"}
)

var (
	reAltKey  = regexp.MustCompile(`^/v1\.0/devices\(deviceId='([0-9a-fA-F-]{36})'\)/registeredOwners$`)
	reObjID   = regexp.MustCompile(`^/v1\.0/devices/([0-9a-fA-F-]{36})/registeredOwners$`)
	reDevAlt  = regexp.MustCompile(`^/v1\.0/devices\(deviceId='([0-9a-fA-F-]{36})'\)$`)
	reDevObj  = regexp.MustCompile(`^/v1\.0/devices/([0-9a-fA-F-]{36})$`)
	reUser    = regexp.MustCompile(`^/v1\.0/users/([^/]+)$`)
	reSP      = regexp.MustCompile(`^/v1\.0/servicePrincipals/([^/]+)$`)
	reSPAppID = regexp.MustCompile(`^/v1\.0/servicePrincipals\(appId='([^']+)'\)$`)
	reSPRoles = regexp.MustCompile(`^/v1\.0/servicePrincipals/([^/]+)/appRoleAssignments$`)
	reUsRoles = regexp.MustCompile(`^/v1\.0/users/([^/]+)/appRoleAssignments$`)
	reManaged = regexp.MustCompile(`^/v1\.0/deviceManagement/managedDevices/([^/]+)$`)
	reFilter  = regexp.MustCompile(`^deviceId eq '([0-9a-fA-F-]{36})'$`)
	reMDFilt  = regexp.MustCompile(`^azureADDeviceId eq '([0-9a-fA-F-]{36})'$`)
	// A Guid property is compared with an unquoted literal in OData v4.
	reResFilt = regexp.MustCompile(`^resourceId eq ([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$`)
)

func (g *Graph) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.inFlight++
	g.maxInFlight = max(g.maxInFlight, g.inFlight)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	if !g.hold(r) {
		return
	}
	g.mu.Lock()
	g.journal = append(g.journal, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"),
		ConsistencyLevel: r.Header.Get("ConsistencyLevel")})
	fault := g.fault
	if fault.Path != "" && fault.Path != r.URL.Path {
		fault = Fault{}
	} else if g.faultSkip > 0 {
		g.faultSkip--
		fault = Fault{}
	} else if g.fault.Times > 0 {
		if g.fault.Times--; g.fault.Times == 0 {
			g.fault = Fault{}
		}
	}
	pageSize := g.pageSize
	g.mu.Unlock()

	if fault.Hang {
		select {
		case <-r.Context().Done():
		case <-g.closing:
		}
		return
	}
	if fault.Status != 0 {
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		graphError(w, fault.Status, "serviceNotAvailable", "injected fault")
		return
	}
	if r.Method != http.MethodGet {
		graphError(w, http.StatusMethodNotAllowed, "Request_BadRequest", "method not allowed")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+g.Token {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or invalid.")
		return
	}
	g.mu.Lock()
	intune := g.intune
	g.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/v1.0/deviceManagement/") {
		switch intune {
		case IntuneUnlicensed:
			graphError(w, http.StatusBadRequest, "BadRequest", "Request not applicable to target tenant.")
			return
		case IntuneNotGranted:
			graphError(w, http.StatusForbidden, "Forbidden", `{"_version": 3, "Message": "Application is not `+
				`authorized to perform this operation. Application must have one of the following scopes: `+
				`DeviceManagementManagedDevices.Read.All, DeviceManagementManagedDevices.ReadWrite.All - Operation ID `+
				`(for customer support): 00000000-0000-0000-0000-000000000000 - Activity ID: `+NewGUID()+`", `+
				`"CustomApiErrorPhrase": "", "RetryAfter": null, "ErrorSourceService": "", "HttpHeaders": "{}"}`)
			return
		}
	}
	q := r.URL.Query()
	switch {
	case reAltKey.MatchString(r.URL.Path):
		id := strings.ToLower(reAltKey.FindStringSubmatch(r.URL.Path)[1])
		g.owners(w, r, g.deviceByDeviceID(id), pageSize)
	case reObjID.MatchString(r.URL.Path):
		id := strings.ToLower(reObjID.FindStringSubmatch(r.URL.Path)[1])
		g.owners(w, r, g.deviceByObjectID(id), pageSize)
	case reDevAlt.MatchString(r.URL.Path):
		g.device(w, r, g.deviceByDeviceID(strings.ToLower(reDevAlt.FindStringSubmatch(r.URL.Path)[1])))
	case reDevObj.MatchString(r.URL.Path):
		g.device(w, r, g.deviceByObjectID(strings.ToLower(reDevObj.FindStringSubmatch(r.URL.Path)[1])))
	case r.URL.Path == "/v1.0/devices":
		m := reFilter.FindStringSubmatch(q.Get("$filter"))
		if m == nil {
			graphError(w, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause.")
			return
		}
		value := []map[string]any{}
		if d := g.deviceByDeviceID(strings.ToLower(m[1])); d != nil {
			value = append(value, g.deviceJSON(d))
		}
		writeJSON(w, http.StatusOK, map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#devices", "value": value})
	case reUsRoles.MatchString(r.URL.Path):
		g.userAppRoleAssignments(w, r, strings.ToLower(reUsRoles.FindStringSubmatch(r.URL.Path)[1]))
	case r.URL.Path == "/v1.0/users/delta":
		g.usersDelta(w, r, pageSize)
	case r.URL.Path == "/v1.0/devices/delta":
		g.devicesDelta(w, r, pageSize)
	case reUser.MatchString(r.URL.Path):
		g.user(w, r, strings.ToLower(reUser.FindStringSubmatch(r.URL.Path)[1]))
	case reSPAppID.MatchString(r.URL.Path):
		g.apiApp(w, r, strings.ToLower(reSPAppID.FindStringSubmatch(r.URL.Path)[1]))
	case reSPRoles.MatchString(r.URL.Path):
		g.appRoleAssignments(w, r, strings.ToLower(reSPRoles.FindStringSubmatch(r.URL.Path)[1]))
	case reSP.MatchString(r.URL.Path):
		g.servicePrincipal(w, r, strings.ToLower(reSP.FindStringSubmatch(r.URL.Path)[1]))
	case r.URL.Path == "/v1.0/deviceManagement/managedDevices":
		g.managedList(w, r, pageSize)
	case reManaged.MatchString(r.URL.Path):
		id := strings.ToLower(reManaged.FindStringSubmatch(r.URL.Path)[1])
		sel, ok := selected(w, r, "managedDevice", managedProps)
		if !ok {
			return
		}
		g.mu.Lock()
		md, ok := g.managed[id]
		g.mu.Unlock()
		if !ok {
			graphError(w, http.StatusNotFound, "ResourceNotFound", "Resource not found")
			return
		}
		g.entity(w, "deviceManagement/managedDevices", sel,
			project(map[string]any{"id": md.ID, "userId": md.UserID, "azureADDeviceId": md.AzureADDeviceID,
				"managementState": md.ManagementState}, sel))
	default:
		graphError(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment.")
	}
}

// managedList answers the managedDevices list: the managed devices whose azureADDeviceId a $filter names (the one
// filter the fake models; any other is a 400, unless IgnoreManagedDeviceFilter), in a stable order, paged by
// pageSize with @odata.nextLink.
func (g *Graph) managedList(w http.ResponseWriter, r *http.Request, pageSize int) {
	sel, ok := selected(w, r, "managedDevice", managedProps, "$filter", "$skiptoken")
	if !ok {
		return
	}
	g.mu.Lock()
	ignore := g.ignoreMDF
	all := slices.SortedFunc(maps.Values(g.managed), func(a, b ManagedDevice) int { return strings.Compare(a.ID, b.ID) })
	g.mu.Unlock()
	if q := r.URL.Query(); q.Has("$filter") && !ignore {
		m := reMDFilt.FindStringSubmatch(q.Get("$filter"))
		if m == nil {
			graphError(w, http.StatusBadRequest, "BadRequest", "entrafake: managedDevices $filter not modelled.")
			return
		}
		all = slices.DeleteFunc(all, func(md ManagedDevice) bool { return !strings.EqualFold(md.AzureADDeviceID, m[1]) })
	}
	start, end, ok := pageOf(w, r, len(all), pageSize)
	if !ok {
		return
	}
	value := []map[string]any{}
	for _, md := range all[start:end] {
		value = append(value, project(map[string]any{"id": md.ID, "userId": md.UserID, "azureADDeviceId": md.AzureADDeviceID,
			"managementState": md.ManagementState}, sel))
	}
	body := map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#deviceManagement/managedDevices" + selContext(sel), "value": value}
	if end < len(all) {
		body["@odata.nextLink"] = nextPage(r, end)
	}
	writeJSON(w, http.StatusOK, body)
}

func (g *Graph) owners(w http.ResponseWriter, r *http.Request, d *graphDevice, pageSize int) {
	sel, ok := selected(w, r, "directoryObject", ownerProps, "$skiptoken")
	if !ok {
		return
	}
	if d == nil {
		objectNotFound(w, "")
		return
	}
	start, end, ok := pageOf(w, r, len(d.owners), pageSize)
	if !ok {
		return
	}
	value := []map[string]any{}
	for _, o := range d.owners[start:end] {
		item := project(map[string]any{"id": o}, sel)
		item["@odata.type"] = "#microsoft.graph.user"
		value = append(value, item)
	}
	body := map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#directoryObjects", "value": value}
	if end < len(d.owners) {
		body["@odata.nextLink"] = nextPage(r, end)
	}
	writeJSON(w, http.StatusOK, body)
}

// pageOf reads a paged GET's $skiptoken (an offset into n items) and returns the page [start, end) of at most
// pageSize items (0: all), or answers 400 and returns false.
func pageOf(w http.ResponseWriter, r *http.Request, n, pageSize int) (start, end int, ok bool) {
	if tok := r.URL.Query().Get("$skiptoken"); tok != "" {
		v, err := strconv.Atoi(tok)
		if err != nil || v < 0 || v > n {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "bad skip token")
			return 0, 0, false
		}
		start = v
	}
	end = n
	if pageSize > 0 && start+pageSize < end {
		end = start + pageSize
	}
	return start, end, true
}

// nextPage is the @odata.nextLink of the page that starts at offset end.
func nextPage(r *http.Request, end int) string {
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	qs := u.Query()
	qs.Set("$skiptoken", strconv.Itoa(end))
	u.RawQuery = qs.Encode()
	return u.String()
}

// apiApp answers GET /servicePrincipals(appId='…') for the API application.
func (g *Graph) apiApp(w http.ResponseWriter, r *http.Request, appID string) {
	sel, ok := selected(w, r, "servicePrincipal", apiProps)
	if !ok {
		return
	}
	g.mu.Lock()
	var api *resourceApp
	if g.api != nil {
		api = &resourceApp{appID: g.api.appID, spID: g.api.spID, roleIDs: maps.Clone(g.api.roleIDs),
			disabled: slices.Clone(g.api.disabled)}
	}
	g.mu.Unlock()
	if api == nil || api.appID != appID {
		graphError(w, http.StatusNotFound, "Request_ResourceNotFound", "Resource 'servicePrincipal' with appId '"+appID+"' does not exist.")
		return
	}
	roles := []map[string]any{}
	for v, id := range api.roleIDs {
		roles = append(roles, map[string]any{"id": id, "value": v, "isEnabled": !slices.Contains(api.disabled, v),
			"allowedMemberTypes": []string{"Application", "User"}})
	}
	g.entity(w, "servicePrincipals", sel,
		project(map[string]any{"id": api.spID, "appId": api.appID, "accountEnabled": true, "appRoles": roles}, sel))
}

// servicePrincipal answers GET of one service principal by id.
func (g *Graph) servicePrincipal(w http.ResponseWriter, r *http.Request, id string) {
	sel, ok := selected(w, r, "servicePrincipal", appProps)
	if !ok {
		return
	}
	g.mu.Lock()
	enabled, found := g.apps[id]
	g.mu.Unlock()
	if !found {
		objectNotFound(w, id)
		return
	}
	g.entity(w, "servicePrincipals", sel,
		project(map[string]any{"id": id, "appId": "00000000-0000-0000-0000-" + id[len(id)-12:], "accountEnabled": enabled}, sel))
}

// appRoleAssignments answers GET /servicePrincipals/{id}/appRoleAssignments: the API's roles assigned to it, after
// its assignments to other resources (foreignAssignments). assignmentList filters and pages it.
func (g *Graph) appRoleAssignments(w http.ResponseWriter, r *http.Request, spID string) {
	sel, ok := selected(w, r, "appRoleAssignment", assignProps, "$skiptoken", "$filter")
	if !ok {
		return
	}
	g.mu.Lock()
	_, found := g.apps[spID]
	api, assigned, foreign, pageSize := g.api, slices.Clone(g.assigned[spID]), g.foreign[spID], g.pageSize
	g.mu.Unlock()
	if !found {
		objectNotFound(w, spID)
		return
	}
	all := foreignAssignments(api, spID, "ServicePrincipal", foreign)
	for _, role := range assigned {
		if api == nil || api.roleIDs[role] == "" {
			continue
		}
		all = append(all, map[string]any{"id": role, "principalId": spID, "principalType": "ServicePrincipal",
			"resourceId": api.spID, "appRoleId": api.roleIDs[role]})
	}
	g.assignmentList(w, r, all, sel, pageSize, "servicePrincipals('"+spID+"')", false)
}

// foreignAssignments are a principal's assignments to other applications: one that carries the ID of one of the
// API's roles (role IDs are unique only per resource), which a client must skip, and n more.
func foreignAssignments(api *resourceApp, principal, principalType string, n int) []map[string]any {
	foreignRole := NewGUID()
	if api != nil {
		for _, id := range api.roleIDs {
			foreignRole = id
			break
		}
	}
	out := []map[string]any{{"id": "foreign", "principalId": principal, "principalType": principalType,
		"resourceId": NewGUID(), "appRoleId": foreignRole}}
	for i := range n {
		out = append(out, map[string]any{"id": "foreign" + strconv.Itoa(i), "principalId": principal,
			"principalType": principalType, "resourceId": NewGUID(), "appRoleId": NewGUID()})
	}
	return out
}

// assignmentList answers an appRoleAssignments list: all, kept to the resource a $filter names (resourceId eq
// <guid>, the one filter the fake models; any other is a 400, as is every filter after RefuseAssignmentFilter),
// paged by pageSize with @odata.nextLink, counted with @odata.count when count.
func (g *Graph) assignmentList(w http.ResponseWriter, r *http.Request, all []map[string]any, sel []string, pageSize int, set string, count bool) {
	if q := r.URL.Query(); q.Has("$filter") {
		g.mu.Lock()
		refuse := g.noFilter
		g.mu.Unlock()
		m := reResFilt.FindStringSubmatch(q.Get("$filter"))
		if refuse || m == nil {
			graphError(w, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause.")
			return
		}
		all = slices.DeleteFunc(all, func(a map[string]any) bool { return !strings.EqualFold(a["resourceId"].(string), m[1]) })
	}
	start, end, ok := pageOf(w, r, len(all), pageSize)
	if !ok {
		return
	}
	value := []map[string]any{}
	for _, a := range all[start:end] {
		value = append(value, project(a, sel))
	}
	body := map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#" + set + "/appRoleAssignments", "value": value}
	if count {
		body["@odata.count"] = len(all)
	}
	if end < len(all) {
		body["@odata.nextLink"] = nextPage(r, end)
	}
	writeJSON(w, http.StatusOK, body)
}

// userAppRoleAssignments answers GET /users/{id}/appRoleAssignments: the API's roles assigned to the user and to
// the groups the user is a direct member of (not to groups those groups are members of: Entra does not carry
// group-based assignments through nested groups), after one assignment to another resource that carries the ID of
// one of the API's roles, which a client must skip. Graph documents that only an advanced query ($count=true with
// ConsistencyLevel: eventual) is sure to list all of a user's assignments through groups; the fake lists those only
// then, and refuses $count without ConsistencyLevel: eventual, as Graph refuses an advanced query without it.
// assignmentList filters and pages it.
func (g *Graph) userAppRoleAssignments(w http.ResponseWriter, r *http.Request, userID string) {
	sel, ok := selected(w, r, "appRoleAssignment", assignProps, "$skiptoken", "$count", "$filter")
	if !ok {
		return
	}
	q := r.URL.Query()
	advanced := false
	if q.Has("$count") {
		if c := q.Get("$count"); c != "true" && c != "false" {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "Invalid value for $count: '"+c+"'.")
			return
		}
		if r.Header.Get("ConsistencyLevel") != "eventual" {
			graphError(w, http.StatusBadRequest, "Request_BadRequest",
				"Count is not currently supported without the ConsistencyLevel header set to eventual.")
			return
		}
		advanced = q.Get("$count") == "true"
	}
	g.mu.Lock()
	_, found := g.users[userID]
	api, pageSize := g.api, g.pageSize
	type grant struct{ principal, principalType, role string }
	var grants []grant
	for _, role := range g.assigned[userID] {
		grants = append(grants, grant{userID, "User", role})
	}
	all := foreignAssignments(api, userID, "User", g.foreign[userID])
	if advanced {
		groups := slices.Sorted(maps.Keys(g.members))
		for _, gid := range groups {
			if slices.Contains(g.members[gid], userID) {
				for _, role := range g.assigned[gid] {
					grants = append(grants, grant{gid, "Group", role})
				}
				all = append(all, foreignAssignments(api, gid, "Group", g.foreign[gid])[1:]...)
			}
		}
	}
	g.mu.Unlock()
	if !found {
		objectNotFound(w, userID)
		return
	}
	for i, a := range grants {
		if api == nil || api.roleIDs[a.role] == "" {
			continue
		}
		all = append(all, map[string]any{"id": "a" + strconv.Itoa(i), "principalId": a.principal, "principalType": a.principalType,
			"resourceId": api.spID, "appRoleId": api.roleIDs[a.role]})
	}
	g.assignmentList(w, r, all, sel, pageSize, "users('"+userID+"')", advanced)
}

// user answers GET of one user by id.
func (g *Graph) user(w http.ResponseWriter, r *http.Request, id string) {
	sel, ok := selected(w, r, "user", userProps)
	if !ok {
		return
	}
	g.mu.Lock()
	u, found := g.users[id]
	g.mu.Unlock()
	if !found {
		objectNotFound(w, id)
		return
	}
	props := sel
	if props == nil {
		props = userDefaults
	}
	g.entity(w, "users", sel, project(g.userJSON(u), props))
}

// userJSON is every property the fake models of u.
func (g *Graph) userJSON(u User) map[string]any {
	userType := "Member"
	if u.Guest {
		userType = "Guest"
	}
	var validFrom any // null if never set
	if !u.SessionsValidFrom.IsZero() {
		validFrom = u.SessionsValidFrom.UTC().Format(time.RFC3339)
	}
	return map[string]any{"id": u.ID, "displayName": "Test User " + u.UPN,
		"userPrincipalName": u.UPN, "accountEnabled": u.Enabled, "userType": userType,
		"signInSessionsValidFromDateTime": validFrom}
}

// device answers GET of one device by either key.
func (g *Graph) device(w http.ResponseWriter, r *http.Request, d *graphDevice) {
	sel, ok := selected(w, r, "device", deviceProps)
	if !ok {
		return
	}
	if d == nil {
		objectNotFound(w, "")
		return
	}
	g.entity(w, "devices", sel, project(g.deviceJSON(d), sel))
}

// entity answers 200 with one object of the entity set, its properties already projected, and the @odata.context
// Graph gives it: the set, and the $select if there was one.
func (g *Graph) entity(w http.ResponseWriter, set string, sel []string, body map[string]any) {
	body["@odata.context"] = g.srv.URL + "/v1.0/$metadata#" + set + selContext(sel) + "/$entity"
	writeJSON(w, http.StatusOK, body)
}

// objectNotFound is Graph's 404 for a directory object, naming its id when the request did.
func objectNotFound(w http.ResponseWriter, id string) {
	what := "Resource"
	if id != "" {
		what = "Resource '" + id + "'"
	}
	graphError(w, http.StatusNotFound, "Request_ResourceNotFound", what+" does not exist or one of its queried reference-property objects are not present.")
}

func (g *Graph) deviceJSON(d *graphDevice) map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	return map[string]any{"id": d.objectID, "deviceId": d.deviceID, "accountEnabled": d.accountEnabled}
}

// selected checks a GET's query: only $select and the given options, each at
// most once, and a $select naming only props (the properties the fake models
// for typ). It returns the selected properties (nil: no $select, all of them),
// or answers 400 and returns false.
func selected(w http.ResponseWriter, r *http.Request, typ string, props []string, options ...string) ([]string, bool) {
	q := r.URL.Query()
	for k, v := range q {
		if len(v) != 1 {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Query option '%s' was specified more than once, but it must be specified at most once.", k))
			return nil, false
		}
		if k != "$select" && !slices.Contains(options, k) {
			graphError(w, http.StatusBadRequest, "Request_UnsupportedQuery", fmt.Sprintf("entrafake: query option '%s' is not modelled on this route.", k))
			return nil, false
		}
	}
	if !q.Has("$select") {
		return nil, true
	}
	sel := strings.Split(q.Get("$select"), ",")
	for _, p := range sel {
		if !slices.Contains(props, p) {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Could not find a property named '%s' on type 'microsoft.graph.%s'.", p, typ))
			return nil, false
		}
	}
	return sel, true
}

// project keeps the selected properties of an entity (all of them for nil).
func project(all map[string]any, sel []string) map[string]any {
	if sel == nil {
		return all
	}
	out := make(map[string]any, len(sel))
	for _, p := range sel {
		out[p] = all[p]
	}
	return out
}

// selContext is the @odata.context suffix for a $select, e.g. "(id,accountEnabled)".
func selContext(sel []string) string {
	if sel == nil {
		return ""
	}
	return "(" + strings.Join(sel, ",") + ")"
}

func (g *Graph) deviceByDeviceID(id string) *graphDevice {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.devices[id]
}

func (g *Graph) deviceByObjectID(id string) *graphDevice {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.devices {
		if d.objectID == id {
			return d
		}
	}
	return nil
}

func graphError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"innerError": map[string]string{"date": time.Now().UTC().Format(time.RFC3339), "request-id": NewGUID()},
	}})
}

// Credential is a fake azcore.TokenCredential.
type Credential struct {
	// Token is returned by GetToken.
	Token string
	// Scope, if set, must be the only requested scope.
	Scope string
	// Lifetime of issued tokens (default one hour).
	Lifetime time.Duration

	mu    sync.Mutex
	calls int
	err   error
}

// Credential returns a credential issuing the token this fake accepts.
func (g *Graph) Credential() *Credential {
	return &Credential{Token: g.Token, Scope: GraphScope}
}

// GetToken implements azcore.TokenCredential.
func (c *Credential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	if c.Scope != "" && (len(opts.Scopes) != 1 || opts.Scopes[0] != c.Scope) {
		return azcore.AccessToken{}, errors.New("entrafake: unexpected token scopes " + strings.Join(opts.Scopes, " "))
	}
	life := c.Lifetime
	if life == 0 {
		life = time.Hour
	}
	return azcore.AccessToken{Token: c.Token, ExpiresOn: time.Now().Add(life)}, nil
}

// SetError makes GetToken fail (nil clears).
func (c *Credential) SetError(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Calls counts GetToken calls.
func (c *Credential) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

var _ azcore.TokenCredential = (*Credential)(nil)
