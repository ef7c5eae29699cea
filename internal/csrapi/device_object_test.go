package csrapi_test

import (
	"net/url"
	"testing"

	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// TestSelfServiceRecordsDeviceObject: a self-service device certificate's record keeps the directory object ID of
// the Entra device Graph read for it — the device itself (CN), or the Entra device behind an Intune managed device
// (IntuneDeviceId://, primary user or registered owner) — since a deleted device's delta entry names only that ID.
// An Intune managed device without an Entra device, and a user certificate, record none.
func TestSelfServiceRecordsDeviceObject(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	entraDev := entrafake.NewGUID()
	entraObj := e.graph.AddDevice(entraDev, alice.oid)
	primary, primaryAAD := entrafake.NewGUID(), entrafake.NewGUID()
	primaryObj := e.graph.AddDevice(primaryAAD)
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: primary, UserID: alice.oid, AzureADDeviceID: primaryAAD})
	owned, ownedAAD := entrafake.NewGUID(), entrafake.NewGUID()
	ownedObj := e.graph.AddDevice(ownedAAD, alice.oid)
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: owned, UserID: entrafake.NewGUID(), AzureADDeviceID: ownedAAD})
	intuneOnly := entrafake.NewGUID()
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: intuneOnly, UserID: alice.oid})
	tok := e.userToken(alice, selfService)

	for _, tc := range []struct {
		name   string
		csr    testca.CSROptions
		object string
	}{
		{"CN = Entra device", testca.CSROptions{Subject: cn(entraDev)}, entraObj},
		{"URI = managed device, primary user", testca.CSROptions{URIs: []*url.URL{deviceURI(primary)}}, primaryObj},
		{"URI = managed device, owner of its Entra device", testca.CSROptions{URIs: []*url.URL{deviceURI(owned)}}, ownedObj},
		{"URI = Intune-only managed device", testca.CSROptions{URIs: []*url.URL{deviceURI(intuneOnly)}}, ""},
		{"user certificate", testca.CSROptions{Subject: cn(alice.upn)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.record(e.wantCert(e.post(tok, csrDER(t, ecKey(t, "obj-"+tc.name), tc.csr))))
			if rec.DeviceObjectID != tc.object {
				t.Fatalf("record device object ID = %q, want %q", rec.DeviceObjectID, tc.object)
			}
		})
	}
}
