package csrapi_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// TestSelfServiceTenantWithoutIntune: in a tenant without Intune (Graph answers every Intune request 400 "Request
// not applicable to target tenant."), a user still gets a certificate for an Entra device they own, named by its
// deviceId in the CN; an ID no Entra device has, in the CN or in an IntuneDeviceId:// URI, is 403
// device_not_owned, not 503. Where the tenant has Intune but the identity lacks DeviceManagementManagedDevices.Read.All
// (Intune answers 403), the owned device is 503 with Retry-After: that is a permission to grant, not "no Intune".
func TestSelfServiceTenantWithoutIntune(t *testing.T) {
	e := newEnv(t)
	e.graph.SetIntune(entrafake.IntuneUnlicensed)
	alice := newUser("alice")
	dev, unknown := entrafake.NewGUID(), entrafake.NewGUID()
	e.graph.AddDevice(dev, alice.oid)
	tok := e.userToken(alice, selfService)

	if rec := e.record(e.wantCert(e.post(tok, csrDER(t, ecKey(t, "nointune-dev"), testca.CSROptions{Subject: cn(dev)})))); rec.DeviceID != dev {
		t.Fatalf("record device ID = %q, want %q", rec.DeviceID, dev)
	}
	for name, o := range map[string]testca.CSROptions{
		"CN":      {Subject: cn(unknown)},
		"SAN URI": {URIs: []*url.URL{deviceURI(unknown)}},
	} {
		t.Run("unknown device, "+name, func(t *testing.T) {
			wantProblem(t, e.post(tok, csrDER(t, ecKey(t, "nointune-"+name), o)), http.StatusForbidden, csrapi.CodeNotOwner)
		})
	}

	e.graph.SetIntune(entrafake.IntuneNotGranted)
	dev2 := entrafake.NewGUID()
	e.graph.AddDevice(dev2, alice.oid)
	r := e.post(tok, csrDER(t, ecKey(t, "nointune-dev2"), testca.CSROptions{Subject: cn(dev2)}))
	wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
	wantRetryAfter(t, r, 1)
	if n := e.records(""); n != 1 {
		t.Fatalf("records = %d, want 1 (the owned device in the tenant without Intune)", n)
	}
}
