package entrafake

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
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

// Graph is a fake of the Microsoft Graph endpoints used for device ownership:
//
//	GET /v1.0/devices(deviceId='{deviceId}')/registeredOwners
//	GET /v1.0/devices/{objectId}/registeredOwners
//	GET /v1.0/devices?$filter=deviceId eq '{deviceId}'
//	GET /v1.0/deviceManagement/managedDevices/{id}
//
// It checks the bearer token issued by Credential, answers unknown objects
// with Graph's 404 error shape, journals every request and can inject faults.
type Graph struct {
	tb  testing.TB
	srv *httptest.Server
	// Token is the bearer token the fake accepts (what Credential returns).
	Token string

	mu        sync.Mutex
	devices   map[string]*graphDevice // by deviceId
	managed   map[string]ManagedDevice
	journal   []Request
	fault     Fault
	pageSize  int
	closing   chan struct{}
	closeOnce sync.Once
}

type graphDevice struct {
	objectID string
	deviceID string
	owners   []string
}

// ManagedDevice is the subset of an Intune managedDevice the fake serves.
type ManagedDevice struct {
	ID              string
	UserID          string
	AzureADDeviceID string
}

// Fault is injected into every Graph response until cleared.
type Fault struct {
	// Status, if non-zero, is returned with a Graph error body.
	Status int
	// Hang blocks the response until the client gives up (or the test ends),
	// modelling a timeout.
	Hang bool
}

// NewGraph starts a Graph fake; it is closed by the test's Cleanup.
func NewGraph(tb testing.TB) *Graph {
	tb.Helper()
	g := &Graph{
		tb:      tb,
		Token:   "graph-token-" + randomKID(),
		devices: make(map[string]*graphDevice),
		managed: make(map[string]ManagedDevice),
		closing: make(chan struct{}),
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

// AddDevice registers an Entra device with the given deviceId and registered
// owners and returns its directory object id.
func (g *Graph) AddDevice(deviceID string, owners ...string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := &graphDevice{objectID: NewGUID(), deviceID: strings.ToLower(deviceID), owners: owners}
	g.devices[d.deviceID] = d
	return d.objectID
}

// AddManagedDevice registers an Intune managed device.
func (g *Graph) AddManagedDevice(md ManagedDevice) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.managed[strings.ToLower(md.ID)] = md
}

// SetFault injects f into all following requests (zero Fault clears it).
func (g *Graph) SetFault(f Fault) {
	g.mu.Lock()
	g.fault = f
	g.mu.Unlock()
}

// SetPageSize makes registeredOwners return at most n owners per page, with
// an @odata.nextLink (0 = unlimited).
func (g *Graph) SetPageSize(n int) {
	g.mu.Lock()
	g.pageSize = n
	g.mu.Unlock()
}

// Requests returns a copy of the journal.
func (g *Graph) Requests() []Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Request(nil), g.journal...)
}

var (
	reAltKey  = regexp.MustCompile(`^/v1\.0/devices\(deviceId='([0-9a-fA-F-]{36})'\)/registeredOwners$`)
	reObjID   = regexp.MustCompile(`^/v1\.0/devices/([0-9a-fA-F-]{36})/registeredOwners$`)
	reManaged = regexp.MustCompile(`^/v1\.0/deviceManagement/managedDevices/([^/]+)$`)
	reFilter  = regexp.MustCompile(`^deviceId eq '([0-9a-fA-F-]{36})'$`)
)

func (g *Graph) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.journal = append(g.journal, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization")})
	fault := g.fault
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
	q := r.URL.Query()
	switch {
	case reAltKey.MatchString(r.URL.Path):
		id := strings.ToLower(reAltKey.FindStringSubmatch(r.URL.Path)[1])
		g.owners(w, r, g.deviceByDeviceID(id), pageSize)
	case reObjID.MatchString(r.URL.Path):
		id := strings.ToLower(reObjID.FindStringSubmatch(r.URL.Path)[1])
		g.owners(w, r, g.deviceByObjectID(id), pageSize)
	case r.URL.Path == "/v1.0/devices":
		m := reFilter.FindStringSubmatch(q.Get("$filter"))
		if m == nil {
			graphError(w, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause.")
			return
		}
		value := []map[string]any{}
		if d := g.deviceByDeviceID(strings.ToLower(m[1])); d != nil {
			value = append(value, map[string]any{"id": d.objectID, "deviceId": d.deviceID})
		}
		writeJSON(w, http.StatusOK, map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#devices", "value": value})
	case reManaged.MatchString(r.URL.Path):
		id := strings.ToLower(reManaged.FindStringSubmatch(r.URL.Path)[1])
		g.mu.Lock()
		md, ok := g.managed[id]
		g.mu.Unlock()
		if !ok {
			graphError(w, http.StatusNotFound, "ResourceNotFound", "Resource not found")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.context":  g.srv.URL + "/v1.0/$metadata#deviceManagement/managedDevices/$entity",
			"id":              md.ID,
			"userId":          md.UserID,
			"azureADDeviceId": md.AzureADDeviceID,
		})
	default:
		graphError(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment.")
	}
}

func (g *Graph) owners(w http.ResponseWriter, r *http.Request, d *graphDevice, pageSize int) {
	if d == nil {
		graphError(w, http.StatusNotFound, "Request_ResourceNotFound", "Resource does not exist or one of its queried reference-property objects are not present.")
		return
	}
	start := 0
	if tok := r.URL.Query().Get("$skiptoken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(d.owners) {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "bad skip token")
			return
		}
		start = n
	}
	end := len(d.owners)
	if pageSize > 0 && start+pageSize < end {
		end = start + pageSize
	}
	value := []map[string]any{}
	for _, o := range d.owners[start:end] {
		value = append(value, map[string]any{"@odata.type": "#microsoft.graph.user", "id": o})
	}
	body := map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#directoryObjects", "value": value}
	if end < len(d.owners) {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		qs := u.Query()
		qs.Set("$skiptoken", strconv.Itoa(end))
		u.RawQuery = qs.Encode()
		body["@odata.nextLink"] = u.String()
	}
	writeJSON(w, http.StatusOK, body)
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
