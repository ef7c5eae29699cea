package csrapi_test

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
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

// TestSelfServiceDeviceCheckFailureLogged: a device certificate answered 503 because Graph could not answer for the
// device is logged with the caller and the Graph call and status that failed, which the 503 itself does not tell
// the operator: here Intune refusing an identity without DeviceManagementManagedDevices.Read.All.
func TestSelfServiceDeviceCheckFailureLogged(t *testing.T) {
	var logs testca.LogBuffer
	e := newEnv(t, func(c *csrapi.Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	e.graph.SetIntune(entrafake.IntuneNotGranted)
	alice := newUser("alice")
	dev := entrafake.NewGUID()
	e.graph.AddDevice(dev, alice.oid)
	r := e.post(e.userToken(alice, selfService), csrDER(t, ecKey(t, "devcheck-log"), testca.CSROptions{Subject: cn(dev)}))
	wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
	recs := logs.Records("csr device check failed")
	if len(recs) != 1 {
		t.Fatalf("%d \"csr device check failed\" lines, want 1; logs:\n%s", len(recs), logs.String())
	}
	msg, _ := recs[0]["err"].(string)
	if recs[0]["level"] != "WARN" || recs[0]["caller"] != "oid:"+alice.oid ||
		!strings.Contains(msg, "/v1.0/deviceManagement/managedDevices") || !strings.Contains(msg, "status 403") {
		t.Fatalf("log line = %v, want WARN with the caller and the refused Graph call", recs[0])
	}
}
