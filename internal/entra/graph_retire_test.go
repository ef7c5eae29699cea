package entra_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// retiringStates are the managementState values of a device an administrator has told Intune to retire, wipe or
// delete (Graph managementState enum).
var retiringStates = []string{"retireIssued", "retirePending", "retireFailed", "wipeIssued", "wipePending",
	"wipeFailed", "deletePending"}

// TestVerdictRetiringDevice: a managed device Intune is retiring, wiping or deleting is DeviceRetiring for its
// owners (primary user, or registered owner of its Entra device, asked by either question), although Graph still
// shows them as its owners; anyone else is told only DeviceNotOwned. The other states (managed, cancelled
// commands, unhealthy, discovered) leave it owned. Its Entra device's accountEnabled is not read once the state
// says no.
func TestVerdictRetiringDevice(t *testing.T) {
	ctx := context.Background()
	for _, state := range append(retiringStates, "managed", "retireCanceled", "wipeCanceled", "unhealthy", "discovered") {
		t.Run(state, func(t *testing.T) {
			e := newGraphEnv(t)
			primary, owner := entrafake.NewGUID(), entrafake.NewGUID()
			aad, id, lone := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
			e.g.AddDevice(aad, owner)
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: primary, AzureADDeviceID: aad, ManagementState: state})
			// An Intune-only device: no Entra device behind it.
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: lone, UserID: primary, ManagementState: state})
			want := entra.DeviceOwned
			for _, s := range retiringStates {
				if s == state {
					want = entra.DeviceRetiring
				}
			}
			for _, tc := range []struct{ name, user, device string }{
				{"primary user", primary, id}, {"registered owner", owner, id}, {"primary user, Intune only", primary, lone},
			} {
				for _, managed := range []bool{false, true} {
					n := len(e.g.Requests())
					ask := e.d.Verdict
					if managed {
						ask = e.d.VerdictManaged
					}
					if v, err := ask(ctx, tc.user, tc.device); v != want || err != nil {
						t.Fatalf("%s, managed question %v: verdict = (%v, %v), want %v", tc.name, managed, v, err, want)
					}
					if want == entra.DeviceRetiring {
						for _, r := range e.g.Requests()[n:] {
							if r.Query == "$select=id,accountEnabled" {
								t.Fatalf("%s: accountEnabled read for a retiring device", tc.name)
							}
						}
					}
				}
			}
			if v, err := e.d.VerdictManaged(ctx, entrafake.NewGUID(), id); v != entra.DeviceNotOwned || err != nil {
				t.Fatalf("stranger: verdict = (%v, %v), want not owned", v, err)
			}
		})
	}
}

// TestVerdictManagedDeviceWithoutState: an owner's managed device answered without managementState is
// ErrUnavailable, never owned; a stranger's is still simply not owned.
func TestVerdictManagedDeviceWithoutState(t *testing.T) {
	const user, id = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"` + id + `","userId":"` + user + `","azureADDeviceId":null}`))
	}))
	t.Cleanup(srv.Close)
	d, err := entra.NewDirectory(entra.GraphConfig{Credential: entrafake.NewGraph(t).Credential(), BaseURL: srv.URL + "/",
		Scope: entrafake.GraphScope, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d.VerdictManaged(context.Background(), user, id); v == entra.DeviceOwned || !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("verdict = (%v, %v), want ErrUnavailable", v, err)
	}
	if v, err := d.VerdictManaged(context.Background(), entrafake.NewGUID(), id); v != entra.DeviceNotOwned || err != nil {
		t.Fatalf("stranger: verdict = (%v, %v), want not owned", v, err)
	}
}

// TestVerdictRetiringEntraDevice: an owned, enabled Entra device named by its deviceId is DeviceRetiring when the
// Intune managed device behind it (azureADDeviceId) is being retired, wiped or deleted, read from the managed
// devices list after the owners and accountEnabled; an Entra device Intune does not manage, or manages normally,
// stays owned. Each list answer's azureADDeviceId is checked, so a Graph that ignores the $filter and lists every
// managed device neither lends another device's state nor hides this one's.
func TestVerdictRetiringEntraDevice(t *testing.T) {
	ctx := context.Background()
	for _, ignoreFilter := range []bool{false, true} {
		e := newGraphEnv(t)
		e.g.IgnoreManagedDeviceFilter(ignoreFilter)
		user := entrafake.NewGUID()
		retiring, managed, unmanaged := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
		for _, dev := range []string{retiring, managed, unmanaged} {
			e.g.AddDevice(dev, user)
		}
		e.g.AddManagedDevice(entrafake.ManagedDevice{ID: entrafake.NewGUID(), UserID: user, AzureADDeviceID: retiring,
			ManagementState: "wipePending"})
		e.g.AddManagedDevice(entrafake.ManagedDevice{ID: entrafake.NewGUID(), UserID: user, AzureADDeviceID: managed})
		for _, tc := range []struct {
			dev  string
			want entra.DeviceVerdict
		}{{retiring, entra.DeviceRetiring}, {managed, entra.DeviceOwned}, {unmanaged, entra.DeviceOwned}} {
			n := len(e.g.Requests())
			if v, err := e.d.Verdict(ctx, user, tc.dev); v != tc.want || err != nil {
				t.Fatalf("filter ignored %v: Verdict(%s) = (%v, %v), want %v", ignoreFilter, tc.dev, v, err, tc.want)
			}
			got := e.g.Requests()[n:]
			want := []graphCall{ownersCall(tc.dev), stateCall(tc.dev), behindCall(tc.dev)}
			for i := range want {
				if len(got) != len(want) || got[i].Path != want[i].path || got[i].Query != want[i].query {
					t.Fatalf("Graph calls = %+v, want %+v", got, want)
				}
			}
		}
		if v, err := e.d.Verdict(ctx, entrafake.NewGUID(), retiring); v != entra.DeviceNotOwned || err != nil {
			t.Fatalf("stranger: verdict = (%v, %v), want not owned", v, err)
		}
	}
}
