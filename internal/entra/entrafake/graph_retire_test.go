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
