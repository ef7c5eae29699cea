package csrapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// The Graph GETs the ownership client makes, as "path?query".
func gOwners(dev string) string {
	return "/v1.0/devices(deviceId='" + dev + "')/registeredOwners?$select=id"
}
func gState(dev string) string {
	return "/v1.0/devices(deviceId='" + dev + "')?$select=id,accountEnabled"
}
func gBehind(dev string) string {
	return "/v1.0/deviceManagement/managedDevices?$filter=azureADDeviceId%20eq%20%27" + dev +
		"%27&$select=id,azureADDeviceId,managementState"
}
func gManaged(id string) string {
	return "/v1.0/deviceManagement/managedDevices/" + id + "?$select=id,userId,azureADDeviceId,managementState"
}

// graphCallsSince returns the device questions' Graph GETs after the first n requests, as "path?query". The
// account and role reads that precede them (the user, the user's app role assignments and the API's roles, each once
// while it is cached) are left out: TestAccountRead and TestUserRoleRemoved cover them.
func (e *env) graphCallsSince(n int) []string {
	var out []string
	for _, r := range e.graph.Requests()[n:] {
		if !strings.HasPrefix(r.Path, "/v1.0/users/") && !strings.HasPrefix(r.Path, "/v1.0/servicePrincipals(appId=") {
			out = append(out, r.Path+"?"+r.Query)
		}
	}
	return out
}

// wantGraphCalls asserts the exact Graph GETs after the first n.
func (e *env) wantGraphCalls(t *testing.T, n int, want ...string) {
	t.Helper()
	got := e.graphCallsSince(n)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Graph calls = %q, want %q", got, want)
	}
}

// TestSelfServiceIntuneURIIsManagedDeviceOnly: relying parties read IntuneDeviceId://<id> as an Intune managed-device
// ID, so a certificate carrying it is decided on the managed device with that ID alone. Owning an Entra device whose
// deviceId happens to be that ID — one with no managed device of that ID, or where the ID is someone else's managed
// device — grants nothing: 403 device_not_owned after one managedDevices GET (plus the registered owners of the
// managed device's Entra device), never a registeredOwners lookup of the ID itself. The same ID in the CN alone is
// still an Entra device ID first (today's rule), and is accepted.
func TestSelfServiceIntuneURIIsManagedDeviceOnly(t *testing.T) {
	e := newEnv(t)
	alice, mallory := newUser("alice"), newUser("mallory")
	// An Entra device alice owns whose deviceId is no managed device (e.g. created with a chosen deviceId).
	lone := entrafake.NewGUID()
	e.graph.AddDevice(lone, alice.oid)
	// An Entra device alice owns whose deviceId is mallory's managed device ID.
	squat := entrafake.NewGUID()
	e.graph.AddDevice(squat, alice.oid)
	malloryAAD := entrafake.NewGUID()
	e.graph.AddDevice(malloryAAD, mallory.oid)
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: squat, UserID: mallory.oid, AzureADDeviceID: malloryAAD})
	tok := e.userToken(alice, selfService)

	type o = testca.CSROptions
	uri := func(id string) []*url.URL { return []*url.URL{deviceURI(id)} }
	for _, tc := range []struct {
		name  string
		csr   o
		calls []string
	}{
		{"URI = an owned Entra device ID that is no managed device", o{URIs: uri(lone)}, []string{gManaged(lone)}},
		{"URI and CN = that Entra device ID", o{Subject: cn(lone), URIs: uri(lone)}, nil}, // cached "not owned"
		{"URI = that Entra device ID, CN = the caller's UPN", o{Subject: cn(alice.upn), URIs: uri(lone)}, nil},
		{"URI = an owned Entra device ID that is someone else's managed device", o{URIs: uri(squat)},
			[]string{gManaged(squat), gOwners(malloryAAD)}},
		{"URI and CN = that ID", o{Subject: cn(squat), URIs: uri(squat)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(e.graph.Requests())
			wantProblem(t, e.post(tok, csrDER(t, ecKey(t, "managed-only-"+tc.name), tc.csr)),
				http.StatusForbidden, csrapi.CodeNotOwner)
			e.wantGraphCalls(t, n, tc.calls...)
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d, want 0", n)
	}

	// A CN-only device certificate keeps today's rule: the Entra device first (its own cache entry).
	for _, dev := range []string{lone, squat} {
		t.Run("CN alone = "+dev, func(t *testing.T) {
			n := len(e.graph.Requests())
			rec := e.record(e.wantCert(e.post(tok, csrDER(t, ecKey(t, "managed-only-cn-"+dev), o{Subject: cn(dev)}))))
			if rec.DeviceID != dev {
				t.Fatalf("record device ID = %q, want %q", rec.DeviceID, dev)
			}
			e.wantGraphCalls(t, n, gOwners(dev), gState(dev), gBehind(dev))
		})
	}
}

// TestSelfServiceIntuneURIOwnedManagedDevice: a managed device the caller owns — as its Intune primary user, or as a
// registered owner of its Entra device (azureADDeviceId) — gets its IntuneDeviceId certificate, with one Graph GET
// fewer than before (no registeredOwners lookup of the managed-device ID as an Entra deviceId).
func TestSelfServiceIntuneURIOwnedManagedDevice(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	tok := e.userToken(alice, selfService)
	type o = testca.CSROptions
	uri := func(id string) []*url.URL { return []*url.URL{deviceURI(id)} }

	for _, tc := range []struct {
		name  string
		setup func(id string) (calls []string)
		cn    bool // the CN names the device too
	}{
		{"primary user, Entra device enabled", func(id string) []string {
			aad := entrafake.NewGUID()
			e.graph.AddDevice(aad) // no registered owner
			e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: alice.oid, AzureADDeviceID: aad})
			return []string{gManaged(id), gState(aad)}
		}, false},
		{"primary user, CN and URI", func(id string) []string {
			aad := entrafake.NewGUID()
			e.graph.AddDevice(aad)
			e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: alice.oid, AzureADDeviceID: aad})
			return []string{gManaged(id), gState(aad)}
		}, true},
		{"primary user, Entra device gone", func(id string) []string {
			aad := entrafake.NewGUID()
			e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: alice.oid, AzureADDeviceID: aad})
			return []string{gManaged(id), gState(aad)}
		}, false},
		{"primary user, no Entra device", func(id string) []string {
			e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: alice.oid,
				AzureADDeviceID: "00000000-0000-0000-0000-000000000000"})
			return []string{gManaged(id)}
		}, false},
		{"registered owner of the Entra device", func(id string) []string {
			aad := entrafake.NewGUID()
			e.graph.AddDevice(aad, alice.oid)
			e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
			return []string{gManaged(id), gOwners(aad), gState(aad)}
		}, false},
		{"registered owner, Entra device ID = managed device ID", func(id string) []string {
			e.graph.AddDevice(id, alice.oid)
			e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: id})
			return []string{gManaged(id), gOwners(id), gState(id)}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := entrafake.NewGUID()
			calls := tc.setup(id)
			csr := o{URIs: uri(id)}
			if tc.cn {
				csr.Subject = cn(id)
			}
			n := len(e.graph.Requests())
			cert := e.wantCert(e.post(tok, csrDER(t, ecKey(t, "managed-owned-"+tc.name), csr)))
			if rec := e.record(cert); rec.DeviceID != id {
				t.Fatalf("record device ID = %q, want %q", rec.DeviceID, id)
			}
			// crypto/x509 parses the URI with net/url, which lower-cases the scheme.
			if len(cert.URIs) != 1 || !strings.EqualFold(cert.URIs[0].String(), "IntuneDeviceId://"+id) {
				t.Fatalf("certificate URIs = %v", cert.URIs)
			}
			e.wantGraphCalls(t, n, calls...)
		})
	}
}

// TestSelfServiceIntuneURIDisabledDevice: the managed device's Entra device is disabled (accountEnabled=false):
// its IntuneDeviceId certificate is refused to its primary user and to the Entra device's registered owner alike,
// and granted again once the device is enabled and the negative answer has expired.
func TestSelfServiceIntuneURIDisabledDevice(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	primaryID, primaryAAD, ownerID, ownerAAD := e.managedDevices(alice.oid)
	e.graph.SetAccountEnabled(primaryAAD, false)
	e.graph.SetAccountEnabled(ownerAAD, false)
	tok := e.userToken(alice, selfService)

	cases := []struct {
		name, id string
		calls    []string
	}{
		{"primary user", primaryID, []string{gManaged(primaryID), gState(primaryAAD)}},
		{"registered owner", ownerID, []string{gManaged(ownerID), gOwners(ownerAAD), gState(ownerAAD)}},
	}
	ders := map[string][]byte{}
	for _, tc := range cases {
		ders[tc.id] = csrDER(t, ecKey(t, "managed-disabled-"+tc.name), testca.CSROptions{URIs: []*url.URL{deviceURI(tc.id)}})
		t.Run(tc.name, func(t *testing.T) {
			n := len(e.graph.Requests())
			wantProblem(t, e.post(tok, ders[tc.id]), http.StatusForbidden, csrapi.CodeNotOwner)
			e.wantGraphCalls(t, n, tc.calls...)
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d for disabled devices, want 0", n)
	}
	e.graph.SetAccountEnabled(primaryAAD, true)
	e.graph.SetAccountEnabled(ownerAAD, true)
	e.clock.Advance(entra.DefaultNegativeTTL)
	tok = e.userToken(alice, selfService)
	for _, tc := range cases {
		t.Run(tc.name+", enabled again", func(t *testing.T) {
			if rec := e.record(e.wantCert(e.post(tok, ders[tc.id]))); rec.DeviceID != tc.id {
				t.Fatalf("record device ID = %q, want %q", rec.DeviceID, tc.id)
			}
		})
	}
}

// TestSelfServiceIntuneURIGraphDown: when Graph cannot answer the managed-device question — the managedDevices GET
// itself, or the Entra device's owners or accountEnabled behind it — the caller gets 503 with Retry-After, nothing is
// signed, and the failure is not cached.
func TestSelfServiceIntuneURIGraphDown(t *testing.T) {
	steps := []struct {
		name    string
		primary bool
		after   int // Graph calls that succeed before the failing one
		failing func(id, aad string) string
	}{
		{"managedDevices", true, 0, func(id, _ string) string { return gManaged(id) }},
		{"primary user, accountEnabled", true, 1, func(_, aad string) string { return gState(aad) }},
		{"registered owner, registeredOwners", false, 1, func(_, aad string) string { return gOwners(aad) }},
		{"registered owner, accountEnabled", false, 2, func(_, aad string) string { return gState(aad) }},
	}
	for _, s := range steps {
		for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError,
			http.StatusTooManyRequests, http.StatusUnauthorized, http.StatusForbidden} {
			t.Run(fmt.Sprintf("%s/%d", s.name, status), func(t *testing.T) {
				e := newEnv(t)
				alice := newUser("alice")
				id, aad := entrafake.NewGUID(), entrafake.NewGUID()
				if s.primary {
					e.graph.AddDevice(aad)
					e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: alice.oid, AzureADDeviceID: aad})
				} else {
					e.graph.AddDevice(aad, alice.oid)
					e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
				}
				tok := e.userToken(alice, selfService)
				der := csrDER(t, ecKey(t, "managed-down"), testca.CSROptions{URIs: []*url.URL{deviceURI(id)}})

				// The account and role reads (the user, the API's roles, the user's assignments) come first and
				// succeed.
				e.graph.SetFault(entrafake.Fault{Status: status, After: accountAndRoleReads + s.after})
				r := e.post(tok, der)
				wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
				wantRetryAfter(t, r, 1)
				calls := e.graphCallsSince(0)
				tries := entra.GraphAttempts(status)
				if len(calls) != s.after+tries || calls[len(calls)-1] != s.failing(id, aad) ||
					calls[s.after] != s.failing(id, aad) {
					t.Fatalf("Graph calls = %q, want %d successful ones then %s, sent %d times", calls, s.after,
						s.failing(id, aad), tries)
				}
				if n := e.records(""); n != 0 {
					t.Fatalf("records = %d while Graph is down, want 0", n)
				}
				e.graph.SetFault(entrafake.Fault{})
				if rec := e.record(e.wantCert(e.post(tok, der))); rec.DeviceID != id {
					t.Fatalf("device ID = %q, want %q", rec.DeviceID, id)
				}
			})
		}
	}
}
