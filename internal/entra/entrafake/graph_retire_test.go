package entrafake_test

import (
	"net/http"
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
