package entra_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

type graphEnv struct {
	g     *entrafake.Graph
	cred  *entrafake.Credential
	clock *testca.Clock
	d     *entra.Directory
}

func newGraphEnv(t *testing.T, mutate ...func(*entra.GraphConfig)) *graphEnv {
	t.Helper()
	g := entrafake.NewGraph(t)
	cred := g.Credential()
	clock := newFakeClock()
	cfg := entra.GraphConfig{
		Credential: cred,
		BaseURL:    g.URL(),
		Scope:      entrafake.GraphScope,
		HTTPClient: g.Client(),
		Clock:      clock.Now,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	d, err := entra.NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &graphEnv{g: g, cred: cred, clock: clock, d: d}
}

func (e *graphEnv) owns(t *testing.T, user, device string) bool {
	t.Helper()
	ok, err := e.d.OwnsDevice(context.Background(), user, device)
	if err != nil {
		t.Fatalf("OwnsDevice(%s, %s): %v", user, device, err)
	}
	return ok
}

func TestOwnsDeviceEntraDeviceID(t *testing.T) {
	e := newGraphEnv(t)
	user, other := entrafake.NewGUID(), entrafake.NewGUID()
	dev := entrafake.NewGUID()
	e.g.AddDevice(dev, user)

	if !e.owns(t, user, strings.ToUpper(dev)) {
		t.Fatal("registered owner not recognised")
	}
	e.wantCalls(t, ownersCall(dev), stateCall(dev), behindCall(dev))
	if e.owns(t, other, dev) {
		t.Fatal("non-owner allowed")
	}
}

// graphCall is the path and query of one expected Graph GET.
type graphCall struct{ path, query string }

func ownersCall(dev string) graphCall {
	return graphCall{"/v1.0/devices(deviceId='" + dev + "')/registeredOwners", "$select=id"}
}

func stateCall(dev string) graphCall {
	return graphCall{"/v1.0/devices(deviceId='" + dev + "')", "$select=id,accountEnabled"}
}

// behindCall is the managedDevices list read for the Intune managed device behind an owned Entra device.
func behindCall(dev string) graphCall {
	return graphCall{"/v1.0/deviceManagement/managedDevices",
		"$filter=azureADDeviceId%20eq%20%27" + dev + "%27&$select=id,azureADDeviceId,managementState"}
}

func managedCall(id string) graphCall {
	return graphCall{"/v1.0/deviceManagement/managedDevices/" + id, "$select=id,userId,azureADDeviceId,managementState"}
}

// wantCalls asserts the exact Graph GETs made so far, each with the credential's token.
func (e *graphEnv) wantCalls(t *testing.T, want ...graphCall) {
	t.Helper()
	got := e.g.Requests()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Method == http.MethodGet && got[i].Path == want[i].path && got[i].Query == want[i].query &&
			got[i].Auth == "Bearer "+e.g.Token
	}
	if !ok {
		t.Fatalf("Graph calls = %+v, want %+v", got, want)
	}
}

func TestOwnsDeviceIntuneDeviceID(t *testing.T) {
	e := newGraphEnv(t)
	user, other := entrafake.NewGUID(), entrafake.NewGUID()
	intune := entrafake.NewGUID()
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: intune, UserID: user, AzureADDeviceID: "00000000-0000-0000-0000-000000000000"})

	if !e.owns(t, user, intune) {
		t.Fatal("Intune primary user not recognised")
	}
	// Entra lookup (404), then managedDevices; no Entra device behind it, so no state to read.
	e.wantCalls(t, ownersCall(intune), managedCall(intune))
	if e.owns(t, other, intune) {
		t.Fatal("non-primary user allowed for a device without Entra registration")
	}
}

func TestOwnsDeviceIntuneViaAzureADDevice(t *testing.T) {
	e := newGraphEnv(t)
	user, primary := entrafake.NewGUID(), entrafake.NewGUID()
	aad, intune := entrafake.NewGUID(), entrafake.NewGUID()
	e.g.AddDevice(aad, user)
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: intune, UserID: primary, AzureADDeviceID: aad})
	if !e.owns(t, user, intune) {
		t.Fatal("registered owner of the Intune device's Entra device not recognised")
	}
	if !e.owns(t, primary, intune) {
		t.Fatal("primary user not recognised")
	}
	if e.owns(t, entrafake.NewGUID(), intune) {
		t.Fatal("stranger allowed")
	}
}

func TestOwnsDeviceUnknownDevice(t *testing.T) {
	e := newGraphEnv(t)
	if e.owns(t, entrafake.NewGUID(), entrafake.NewGUID()) {
		t.Fatal("unknown device owned")
	}
}

func TestOwnsDevicePaging(t *testing.T) {
	e := newGraphEnv(t)
	user := entrafake.NewGUID()
	dev := entrafake.NewGUID()
	e.g.AddDevice(dev, entrafake.NewGUID(), entrafake.NewGUID(), user)
	e.g.SetPageSize(1)
	if !e.owns(t, user, dev) {
		t.Fatal("owner on the third page not found")
	}
	if n := len(e.g.Requests()); n != 5 {
		t.Fatalf("Graph calls = %d, want 3 pages, the device's state and its managed device", n)
	}
}

func TestOwnsDeviceGraphFailuresAreUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*graphEnv)
	}{
		{"500", func(e *graphEnv) { e.g.SetFault(entrafake.Fault{Status: http.StatusInternalServerError}) }},
		{"429", func(e *graphEnv) { e.g.SetFault(entrafake.Fault{Status: http.StatusTooManyRequests}) }},
		{"403 missing permission", func(e *graphEnv) { e.g.SetFault(entrafake.Fault{Status: http.StatusForbidden}) }},
		{"timeout", func(e *graphEnv) { e.g.SetFault(entrafake.Fault{Hang: true}) }},
		{"credential fails", func(e *graphEnv) { e.cred.SetError(errors.New("IMDS unreachable")) }},
		{"wrong token", func(e *graphEnv) { e.cred.Token = "stolen" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGraphEnv(t, func(c *entra.GraphConfig) {
				c.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			})
			user, dev := entrafake.NewGUID(), entrafake.NewGUID()
			e.g.AddDevice(dev, user)
			tc.setup(e)
			ok, err := e.d.OwnsDevice(context.Background(), user, dev)
			if ok || !errors.Is(err, entra.ErrUnavailable) {
				t.Fatalf("OwnsDevice = (%v, %v), want (false, ErrUnavailable)", ok, err)
			}
			// Failures are not cached: once Graph recovers the answer is right.
			e.g.SetFault(entrafake.Fault{})
			e.cred.SetError(nil)
			e.cred.Token = e.g.Token
			if !e.owns(t, user, dev) {
				t.Fatal("after recovery: owner not recognised")
			}
		})
	}
}

func TestOwnsDeviceCache(t *testing.T) {
	e := newGraphEnv(t)
	user, stranger := entrafake.NewGUID(), entrafake.NewGUID()
	dev := entrafake.NewGUID()
	e.g.AddDevice(dev, user)

	if !e.owns(t, user, dev) || e.owns(t, stranger, dev) {
		t.Fatal("wrong answers")
	}
	calls := len(e.g.Requests()) // owners + state for user, owners for stranger
	// Cache hits: no Graph calls, even with Graph down.
	e.g.SetFault(entrafake.Fault{Status: http.StatusInternalServerError})
	if !e.owns(t, user, dev) || e.owns(t, stranger, dev) {
		t.Fatal("cached answers changed")
	}
	if len(e.g.Requests()) != calls {
		t.Fatalf("cache hit made Graph calls: %+v", e.g.Requests()[calls:])
	}
	e.g.SetFault(entrafake.Fault{})

	// Negative answers expire after a minute, positive ones after five.
	e.clock.Advance(entra.DefaultNegativeTTL)
	e.owns(t, stranger, dev)
	e.owns(t, user, dev)
	if got := len(e.g.Requests()); got != calls+1 {
		t.Fatalf("after 1 min: %d new Graph calls, want 1 (negative entry only)", got-calls)
	}
	e.clock.Advance(entra.DefaultPositiveTTL)
	e.owns(t, user, dev)
	if got := len(e.g.Requests()); got != calls+4 {
		t.Fatalf("after 5 min: %d new Graph calls, want 4 (negative entry, then owners, state and managed device)", got-calls)
	}
	if e.cred.Calls() != 1 {
		t.Fatalf("credential called %d times; the Graph token must be reused", e.cred.Calls())
	}
}

func TestOwnsDeviceValidatesIDs(t *testing.T) {
	e := newGraphEnv(t)
	good := entrafake.NewGUID()
	for _, tc := range []struct{ user, dev string }{
		{good, "x') or true or ('"},
		{good, "../../users"},
		{good, "{" + good + "}"},
		{good, ""},
		{"me", good},
		{good + "0", good},
	} {
		ok, err := e.d.OwnsDevice(context.Background(), tc.user, tc.dev)
		if ok || !errors.Is(err, entra.ErrInvalidID) {
			t.Fatalf("OwnsDevice(%q, %q) = (%v, %v), want ErrInvalidID", tc.user, tc.dev, ok, err)
		}
	}
	if n := len(e.g.Requests()); n != 0 {
		t.Fatalf("invalid IDs reached Graph: %+v", e.g.Requests())
	}
}

func TestNewDirectoryValidatesConfig(t *testing.T) {
	g := entrafake.NewGraph(t)
	if _, err := entra.NewDirectory(entra.GraphConfig{}); err == nil {
		t.Fatal("missing credential accepted")
	}
	if _, err := entra.NewDirectory(entra.GraphConfig{Credential: g.Credential(), BaseURL: "http://graph.example.com/"}); err == nil {
		t.Fatal("plain-http Graph URL accepted")
	}
	if _, err := entra.NewDirectory(entra.GraphConfig{Credential: g.Credential()}); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
}
