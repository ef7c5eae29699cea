package csrapi_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// TestSelfServiceDisabledDevice: a device an administrator disabled in Entra (accountEnabled=false, e.g. reported
// lost) gets no self-service certificate although Graph still lists the caller as its registered owner — named by
// Entra device ID, or by an Intune device ID (in the CN or an IntuneDeviceId:// URI) whose Entra device is disabled,
// whether the caller is the Intune primary user or a registered owner of that Entra device. Nothing is signed or
// recorded; once the device is enabled again (and the short negative cache has expired) the same request succeeds.
func TestSelfServiceDisabledDevice(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	entraDev := entrafake.NewGUID()
	e.graph.AddDevice(entraDev, alice.oid)
	primaryIntune, primaryAAD, ownerIntune, ownerAAD := e.managedDevices(alice.oid)
	for _, d := range []string{entraDev, primaryAAD, ownerAAD} {
		e.graph.SetAccountEnabled(d, false)
	}
	tok := e.userToken(alice, selfService)

	cases := []struct {
		name   string
		csr    testca.CSROptions
		device string
	}{
		{"CN = disabled Entra device ID", testca.CSROptions{Subject: cn(entraDev)}, entraDev},
		{"SAN URI = Intune device, primary user, Entra device disabled",
			testca.CSROptions{URIs: []*url.URL{deviceURI(primaryIntune)}}, primaryIntune},
		{"CN = Intune device, primary user, Entra device disabled", testca.CSROptions{Subject: cn(primaryIntune)}, primaryIntune},
		{"SAN URI = Intune device, registered owner, Entra device disabled",
			testca.CSROptions{Subject: cn(ownerIntune), URIs: []*url.URL{deviceURI(ownerIntune)}}, ownerIntune},
	}
	ders := make([][]byte, len(cases))
	for i, tc := range cases {
		ders[i] = csrDER(t, ecKey(t, "disabled-"+tc.name), tc.csr)
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, e.post(tok, ders[i]), http.StatusForbidden, csrapi.CodeNotOwner)
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d for disabled devices, want 0", n)
	}

	for _, d := range []string{entraDev, primaryAAD, ownerAAD} {
		e.graph.SetAccountEnabled(d, true)
	}
	e.clock.Advance(entra.DefaultNegativeTTL)
	tok = e.userToken(alice, selfService)
	for i, tc := range cases {
		t.Run(tc.name+", enabled again", func(t *testing.T) {
			if rec := e.record(e.wantCert(e.post(tok, ders[i]))); rec.DeviceID != tc.device {
				t.Fatalf("record device ID = %q, want %q", rec.DeviceID, tc.device)
			}
		})
	}
}

// TestSelfServiceDeviceStateUnavailable: when Graph answers the owners but not the device's accountEnabled, the
// caller gets 503 with Retry-After, never a certificate.
func TestSelfServiceDeviceStateUnavailable(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	dev := entrafake.NewGUID()
	e.graph.AddDevice(dev, alice.oid)
	tok := e.userToken(alice, selfService)
	der := csrDER(t, ecKey(t, "state-down"), testca.CSROptions{Subject: cn(dev)})

	// The account and role reads and registeredOwners succeed; the device's accountEnabled read fails, and fails
	// again when it is retried.
	e.graph.SetFault(entrafake.Fault{Status: http.StatusServiceUnavailable, After: accountAndRoleReads + 1})
	r := e.post(tok, der)
	wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
	wantRetryAfter(t, r, 1)
	e.wantGraphCalls(t, 0, gOwners(dev), gState(dev), gState(dev))
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d while Graph is down, want 0", n)
	}
	e.graph.SetFault(entrafake.Fault{})
	if rec := e.record(e.wantCert(e.post(tok, der))); rec.DeviceID != dev {
		t.Fatalf("device ID = %q, want %q", rec.DeviceID, dev)
	}
}

// managedDevices adds two Intune managed devices for user: one whose primary user they are, and one whose Entra
// device they are a registered owner of. It returns each managed device's ID and the Entra device behind it.
func (e *env) managedDevices(user string) (primaryID, primaryAAD, ownerID, ownerAAD string) {
	primaryAAD, primaryID = entrafake.NewGUID(), entrafake.NewGUID()
	e.graph.AddDevice(primaryAAD)
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: primaryID, UserID: user, AzureADDeviceID: primaryAAD})
	ownerAAD, ownerID = entrafake.NewGUID(), entrafake.NewGUID()
	e.graph.AddDevice(ownerAAD, user)
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: ownerID, UserID: entrafake.NewGUID(), AzureADDeviceID: ownerAAD})
	return primaryID, primaryAAD, ownerID, ownerAAD
}
