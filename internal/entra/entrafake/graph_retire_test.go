package entrafake_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestGraphManagementState: a managed device's managementState is "managed" unless set, follows SetManagementState
// (an administrator retiring or wiping it, or cancelling that), keeps the primary user meanwhile, and is served
// only when selected.
func TestGraphManagementState(t *testing.T) {
	g := entrafake.NewGraph(t)
	id, user := entrafake.NewGUID(), entrafake.NewGUID()
	g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user})
	path := "/v1.0/deviceManagement/managedDevices/" + id
	for _, state := range []string{"", "retirePending", "wipeIssued", "retireCanceled"} {
		want := state
		if state == "" {
			want = "managed"
		} else {
			g.SetManagementState(id, state)
		}
		code, m := graphGET(t, g, g.Token, path+"?$select=id,userId,managementState")
		if code != http.StatusOK || m["managementState"] != want || m["userId"] != user {
			t.Fatalf("managed device after SetManagementState(%q) = %d %v, want managementState %q", state, code, m, want)
		}
	}
	if code, m := graphGET(t, g, g.Token, path+"?$select=id"); code != http.StatusOK || m["managementState"] != nil {
		t.Fatalf("managementState served without being selected: %d %v", code, m)
	}
}

// TestGraphManagedDeviceList: the managedDevices list answers the managed devices whose azureADDeviceId the $filter
// names (none: an empty list), pages, refuses a filter it does not model, and with IgnoreManagedDeviceFilter answers
// every managed device, as Intune does with a filter it does not support.
func TestGraphManagedDeviceList(t *testing.T) {
	g := entrafake.NewGraph(t)
	aad, other := entrafake.NewGUID(), entrafake.NewGUID()
	g.AddManagedDevice(entrafake.ManagedDevice{ID: entrafake.NewGUID(), AzureADDeviceID: aad, ManagementState: "retireIssued"})
	g.AddManagedDevice(entrafake.ManagedDevice{ID: entrafake.NewGUID(), AzureADDeviceID: other})
	list := func(filter string) (int, []any, map[string]any) {
		t.Helper()
		code, m := graphGET(t, g, g.Token, "/v1.0/deviceManagement/managedDevices?$filter="+filter+
			"&$select=id,azureADDeviceId,managementState")
		v, _ := m["value"].([]any)
		return code, v, m
	}
	code, v, m := list("azureADDeviceId%20eq%20%27" + aad + "%27")
	if code != http.StatusOK || len(v) != 1 || v[0].(map[string]any)["managementState"] != "retireIssued" {
		t.Fatalf("filtered list = %d %v", code, m)
	}
	if code, v, m := list("azureADDeviceId%20eq%20%27" + entrafake.NewGUID() + "%27"); code != http.StatusOK || len(v) != 0 {
		t.Fatalf("list for an unmanaged device = %d %v", code, m)
	}
	if code, _, m := list("deviceName%20eq%20%27x%27"); code != http.StatusBadRequest {
		t.Fatalf("unmodelled filter = %d %v", code, m)
	}
	g.SetPageSize(1)
	g.IgnoreManagedDeviceFilter(true)
	code, v, m = list("azureADDeviceId%20eq%20%27" + aad + "%27")
	if code != http.StatusOK || len(v) != 1 || m["@odata.nextLink"] == nil {
		t.Fatalf("first page with the filter ignored = %d %v", code, m)
	}
}

// TestGraphIntuneService: in a tenant without Intune every Intune route answers 400 BadRequest "Request not
// applicable to target tenant.", and to an identity without DeviceManagementManagedDevices.Read.All 403 naming it,
// whatever managed devices were added; the Entra routes are unaffected, and a bad token is still a 401.
func TestGraphIntuneService(t *testing.T) {
	g := entrafake.NewGraph(t)
	id, aad := entrafake.NewGUID(), entrafake.NewGUID()
	g.AddDevice(aad)
	g.AddManagedDevice(entrafake.ManagedDevice{ID: id, AzureADDeviceID: aad})
	paths := []string{"/v1.0/deviceManagement/managedDevices/" + id + "?$select=id",
		"/v1.0/deviceManagement/managedDevices?$filter=azureADDeviceId%20eq%20%27" + aad + "%27&$select=id"}
	for _, tc := range []struct {
		s      entrafake.IntuneService
		status int
		code   string
		msg    string
	}{
		{entrafake.IntuneUnlicensed, http.StatusBadRequest, "BadRequest", "Request not applicable to target tenant."},
		{entrafake.IntuneNotGranted, http.StatusForbidden, "Forbidden", "DeviceManagementManagedDevices.Read.All"},
		{entrafake.IntuneLicensed, http.StatusOK, "", ""},
	} {
		g.SetIntune(tc.s)
		for _, p := range paths {
			code, m := graphGET(t, g, g.Token, p)
			e, _ := m["error"].(map[string]any)
			msg, _ := e["message"].(string)
			if code != tc.status || errorCode(m) != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("Intune %v: GET %s = %d %v, want %d %s %q", tc.s, p, code, m, tc.status, tc.code, tc.msg)
			}
			if code, _ := graphGET(t, g, "wrong", p); code != http.StatusUnauthorized {
				t.Fatalf("Intune %v: GET %s with a bad token = %d, want 401", tc.s, p, code)
			}
		}
		if code, _ := graphGET(t, g, g.Token, "/v1.0/devices(deviceId='"+aad+"')?$select=id,accountEnabled"); code != http.StatusOK {
			t.Fatalf("Intune %v: Entra device read = %d, want 200", tc.s, code)
		}
	}
}
