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

// TestSelfServiceRetiringDevice: a device an administrator has told Intune to retire, wipe or delete
// (managementState retireIssued, retirePending, retireFailed, wipeIssued, wipePending, wipeFailed, deletePending)
// gets no self-service certificate, although Intune still names the caller its primary user (or the caller is still
// a registered owner of its Entra device, which stays enabled): 403 device_retiring, named by an IntuneDeviceId://
// URI, by the managed-device ID in the CN, or by the ID of the Entra device behind it in the CN. Someone else asking is told only device_not_owned. Nothing is signed
// or recorded; once the command is cancelled (and the short negative cache has expired) the same requests succeed.
func TestSelfServiceRetiringDevice(t *testing.T) {
	e := newEnv(t)
	alice, bob := newUser("alice"), newUser("bob")
	primaryID, _, ownerID, ownerAAD := e.managedDevices(alice.oid)
	intuneOnly := entrafake.NewGUID()
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: intuneOnly, UserID: alice.oid})
	devices := []string{primaryID, ownerID, intuneOnly}
	tok := e.userToken(alice, selfService)

	type o = testca.CSROptions
	cases := []struct {
		name, device string
		csr          o
	}{
		{"SAN URI, primary user", primaryID, o{URIs: []*url.URL{deviceURI(primaryID)}}},
		{"CN, primary user", primaryID, o{Subject: cn(primaryID)}},
		{"SAN URI and CN, registered owner of its Entra device", ownerID, o{Subject: cn(ownerID), URIs: []*url.URL{deviceURI(ownerID)}}},
		{"CN, primary user, Intune only", intuneOnly, o{Subject: cn(intuneOnly)}},
		{"CN = its Entra device ID, registered owner", ownerAAD, o{Subject: cn(ownerAAD)}},
	}
	ders := make([][]byte, len(cases))
	for i, tc := range cases {
		ders[i] = csrDER(t, ecKey(t, "retiring-"+tc.name), tc.csr)
	}
	bobDER := csrDER(t, ecKey(t, "retiring-bob"), o{URIs: []*url.URL{deviceURI(primaryID)}})

	for _, state := range []string{"retireIssued", "retirePending", "retireFailed", "wipeIssued", "wipePending",
		"wipeFailed", "deletePending"} {
		for _, d := range devices {
			e.graph.SetManagementState(d, state)
		}
		e.clock.Advance(entra.DefaultNegativeTTL) // past the answers for the previous state
		tok = e.userToken(alice, selfService)
		for i, tc := range cases {
			t.Run(state+"/"+tc.name, func(t *testing.T) {
				p := wantProblem(t, e.post(tok, ders[i]), http.StatusForbidden, csrapi.CodeDeviceRetiring)
				if p.Detail == "" {
					t.Fatal("problem has no detail")
				}
			})
		}
		t.Run(state+"/someone else", func(t *testing.T) {
			wantProblem(t, e.post(e.userToken(bob, selfService), bobDER), http.StatusForbidden, csrapi.CodeNotOwner)
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d for retiring devices, want 0", n)
	}

	for _, d := range devices {
		e.graph.SetManagementState(d, "retireCanceled")
	}
	e.clock.Advance(entra.DefaultNegativeTTL)
	tok = e.userToken(alice, selfService)
	for i, tc := range cases {
		t.Run("retireCanceled/"+tc.name, func(t *testing.T) {
			if rec := e.record(e.wantCert(e.post(tok, ders[i]))); rec.DeviceID != tc.device {
				t.Fatalf("record device ID = %q, want %q", rec.DeviceID, tc.device)
			}
		})
	}
}
