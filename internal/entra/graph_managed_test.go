package entra_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

func (e *graphEnv) verdictManaged(t *testing.T, user, id string) entra.DeviceVerdict {
	t.Helper()
	return mustVerdict(t, "VerdictManaged", e.d.VerdictManaged, user, id)
}

// TestVerdictManagedIgnoresEntraDeviceID: VerdictManaged is about the Intune managed device with that ID only. An
// Entra device whose deviceId is that ID — with no managed device of that ID, or where the ID is someone else's
// managed device — is never asked about, whoever owns it, while Verdict (Entra device first) still answers "owned"
// for it. The two questions have separate cache entries.
func TestVerdictManagedIgnoresEntraDeviceID(t *testing.T) {
	e := newGraphEnv(t)
	user, other := entrafake.NewGUID(), entrafake.NewGUID()
	lone := entrafake.NewGUID()
	e.g.AddDevice(lone, user)
	squat, otherAAD := entrafake.NewGUID(), entrafake.NewGUID()
	e.g.AddDevice(squat, user)
	e.g.AddDevice(otherAAD, other)
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: squat, UserID: other, AzureADDeviceID: otherAAD})

	if v := e.verdictManaged(t, user, lone); v != entra.DeviceNotOwned {
		t.Fatalf("VerdictManaged(Entra-only ID) = %v, want %v", v, entra.DeviceNotOwned)
	}
	e.wantCalls(t, managedCall(lone))
	if v := e.verdictManaged(t, user, squat); v != entra.DeviceNotOwned {
		t.Fatalf("VerdictManaged(someone else's managed device) = %v, want %v", v, entra.DeviceNotOwned)
	}
	e.wantCalls(t, managedCall(lone), managedCall(squat), ownersCall(otherAAD))

	// The CN question is unchanged: Entra device first, and a cache entry of its own.
	if !e.owns(t, user, lone) || !e.owns(t, user, squat) {
		t.Fatal("Verdict no longer answers for an owned Entra device ID")
	}
	e.wantCalls(t, managedCall(lone), managedCall(squat), ownersCall(otherAAD),
		ownersCall(lone), stateCall(lone), behindCall(lone), ownersCall(squat), stateCall(squat), behindCall(squat))
	// Both answers are now cached, and neither is taken for the other.
	for _, id := range []string{lone, squat} {
		if ok, err := e.d.OwnsManagedDevice(context.Background(), user, id); ok || err != nil {
			t.Fatalf("OwnsManagedDevice(%s) = (%v, %v) after Verdict said owned", id, ok, err)
		}
		if !e.owns(t, user, id) {
			t.Fatalf("OwnsDevice(%s) changed", id)
		}
	}
	if n := len(e.g.Requests()); n != 9 {
		t.Fatalf("cached answers made Graph calls: %+v", e.g.Requests()[9:])
	}
	// The other way round: a cached "owned" for the managed question does not answer the Entra-first one.
	e2 := newGraphEnv(t)
	id, aad := entrafake.NewGUID(), entrafake.NewGUID()
	e2.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user, AzureADDeviceID: aad})
	e2.g.AddDevice(aad)
	e2.g.AddDevice(id, other) // an Entra device with the managed device's ID, owned by someone else
	if v := e2.verdictManaged(t, user, id); v != entra.DeviceOwned {
		t.Fatalf("VerdictManaged = %v, want owned", v)
	}
	if e2.owns(t, user, id) {
		t.Fatal("Verdict answered from VerdictManaged's cache entry")
	}
	e2.wantCalls(t, managedCall(id), stateCall(aad), ownersCall(id))
}

// TestVerdictManagedOwners: the Intune primary user and the registered owners of the managed device's Entra device
// own it; anyone else, and an unknown ID, do not. The exact Graph GETs: one managedDevices GET, the Entra device's
// registered owners unless the user is the primary user, and its accountEnabled only for an owner.
func TestVerdictManagedOwners(t *testing.T) {
	user := entrafake.NewGUID()
	for _, tc := range []struct {
		name  string
		setup func(e *graphEnv, id string) []graphCall
		want  entra.DeviceVerdict
	}{
		{"primary user", func(e *graphEnv, id string) []graphCall {
			aad := entrafake.NewGUID()
			e.g.AddDevice(aad)
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user, AzureADDeviceID: aad})
			return []graphCall{managedCall(id), stateCall(aad)}
		}, entra.DeviceOwned},
		{"primary user, nil azureADDeviceId", func(e *graphEnv, id string) []graphCall {
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user, AzureADDeviceID: "00000000-0000-0000-0000-000000000000"})
			return []graphCall{managedCall(id)}
		}, entra.DeviceOwned},
		{"primary user, Entra device gone", func(e *graphEnv, id string) []graphCall {
			aad := entrafake.NewGUID()
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user, AzureADDeviceID: aad})
			return []graphCall{managedCall(id), stateCall(aad)}
		}, entra.DeviceOwned},
		{"registered owner of the Entra device", func(e *graphEnv, id string) []graphCall {
			aad := entrafake.NewGUID()
			e.g.AddDevice(aad, entrafake.NewGUID(), user)
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
			return []graphCall{managedCall(id), ownersCall(aad), stateCall(aad)}
		}, entra.DeviceOwned},
		// Not skipped as in Verdict, where the Entra device with that deviceId is already known to be absent.
		{"registered owner, azureADDeviceId = the managed device ID", func(e *graphEnv, id string) []graphCall {
			e.g.AddDevice(id, user)
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: id})
			return []graphCall{managedCall(id), ownersCall(id), stateCall(id)}
		}, entra.DeviceOwned},
		{"stranger", func(e *graphEnv, id string) []graphCall {
			aad := entrafake.NewGUID()
			e.g.AddDevice(aad, entrafake.NewGUID())
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
			return []graphCall{managedCall(id), ownersCall(aad)}
		}, entra.DeviceNotOwned},
		{"stranger, Entra device gone", func(e *graphEnv, id string) []graphCall {
			aad := entrafake.NewGUID()
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
			return []graphCall{managedCall(id), ownersCall(aad)}
		}, entra.DeviceNotOwned},
		{"stranger, no Entra device", func(e *graphEnv, id string) []graphCall {
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID()})
			return []graphCall{managedCall(id)}
		}, entra.DeviceNotOwned},
		{"unknown managed device", func(e *graphEnv, id string) []graphCall {
			return []graphCall{managedCall(id)}
		}, entra.DeviceNotOwned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGraphEnv(t)
			id := entrafake.NewGUID()
			calls := tc.setup(e, id)
			if v := e.verdictManaged(t, user, id); v != tc.want {
				t.Fatalf("VerdictManaged = %v, want %v", v, tc.want)
			}
			ok, err := e.d.OwnsManagedDevice(context.Background(), user, id) // cached
			if err != nil || ok != (tc.want == entra.DeviceOwned) {
				t.Fatalf("OwnsManagedDevice = (%v, %v) for verdict %v", ok, err, tc.want)
			}
			e.wantCalls(t, calls...)
		})
	}
}

// TestVerdictManagedDisabled: the Entra device behind the managed device is disabled: DeviceDisabled for its
// primary user and for a registered owner alike (not owned), NotOwned for anyone else; "disabled" is a negative
// answer, so once re-enabled the device is owned again after NegativeTTL.
func TestVerdictManagedDisabled(t *testing.T) {
	for _, primary := range []bool{true, false} {
		t.Run(fmt.Sprintf("primary user %v", primary), func(t *testing.T) {
			e := newGraphEnv(t)
			user, other := entrafake.NewGUID(), entrafake.NewGUID()
			id, aad := entrafake.NewGUID(), entrafake.NewGUID()
			if primary {
				e.g.AddDevice(aad, other)
				e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user, AzureADDeviceID: aad})
			} else {
				e.g.AddDevice(aad, user)
				e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: other, AzureADDeviceID: aad})
			}
			e.g.SetAccountEnabled(aad, false)
			if v := e.verdictManaged(t, user, id); v != entra.DeviceDisabled {
				t.Fatalf("owner's verdict = %v, want %v", v, entra.DeviceDisabled)
			}
			if ok, err := e.d.OwnsManagedDevice(context.Background(), user, id); ok || err != nil {
				t.Fatalf("OwnsManagedDevice = (%v, %v) for a disabled device", ok, err)
			}
			if v := e.verdictManaged(t, entrafake.NewGUID(), id); v != entra.DeviceNotOwned {
				t.Fatalf("stranger's verdict = %v", v)
			}
			e.g.SetAccountEnabled(aad, true)
			if v := e.verdictManaged(t, user, id); v != entra.DeviceDisabled {
				t.Fatalf("disabled answer not cached: %v", v)
			}
			e.clock.Advance(entra.DefaultNegativeTTL)
			if v := e.verdictManaged(t, user, id); v != entra.DeviceOwned {
				t.Fatalf("re-enabled: %v", v)
			}
		})
	}
}

// TestVerdictManagedGraphFailures: a failure at any step (managedDevices, the Entra device's owners, its
// accountEnabled, the token) is ErrUnavailable, never owned, and not cached.
func TestVerdictManagedGraphFailures(t *testing.T) {
	steps := []struct {
		name    string
		primary bool
		after   int
	}{
		{"managedDevices", true, 0},
		{"primary user, accountEnabled", true, 1},
		{"registered owner, registeredOwners", false, 1},
		{"registered owner, accountEnabled", false, 2},
	}
	for _, s := range steps {
		for _, f := range graphFaults {
			t.Run(fmt.Sprintf("%s/status %d hang %v", s.name, f.Status, f.Hang), func(t *testing.T) {
				e := newFaultyGraphEnv(t)
				user, id, aad := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
				if s.primary {
					e.g.AddDevice(aad)
					e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user, AzureADDeviceID: aad})
				} else {
					e.g.AddDevice(aad, user)
					e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
				}
				f.After = s.after
				e.g.SetFault(f)
				v, err := e.d.VerdictManaged(context.Background(), user, id)
				if v != entra.DeviceNotOwned || !errors.Is(err, entra.ErrUnavailable) {
					t.Fatalf("VerdictManaged = (%v, %v), want (not owned, ErrUnavailable)", v, err)
				}
				if n := len(e.g.Requests()); n != s.after+entra.GraphAttempts(f.Status) {
					t.Fatalf("Graph calls = %+v, want %d then the failing one", e.g.Requests(), s.after)
				}
				e.g.SetFault(entrafake.Fault{})
				if v := e.verdictManaged(t, user, id); v != entra.DeviceOwned {
					t.Fatalf("after recovery: %v (failure cached?)", v)
				}
			})
		}
	}
	t.Run("credential fails", func(t *testing.T) {
		e := newGraphEnv(t)
		user, id := entrafake.NewGUID(), entrafake.NewGUID()
		e.g.AddManagedDevice(entrafake.ManagedDevice{ID: id, UserID: user})
		e.cred.SetError(errors.New("IMDS unreachable"))
		if ok, err := e.d.OwnsManagedDevice(context.Background(), user, id); ok || !errors.Is(err, entra.ErrUnavailable) {
			t.Fatalf("OwnsManagedDevice = (%v, %v), want (false, ErrUnavailable)", ok, err)
		}
		e.cred.SetError(nil)
		if v := e.verdictManaged(t, user, id); v != entra.DeviceOwned {
			t.Fatalf("after recovery: %v", v)
		}
	})
}

// TestVerdictManagedValidatesIDs: IDs that are not GUIDs never reach Graph.
func TestVerdictManagedValidatesIDs(t *testing.T) {
	e := newGraphEnv(t)
	good := entrafake.NewGUID()
	for _, tc := range []struct{ user, id string }{
		{good, "x?$select=id"},
		{good, "../../users"},
		{good, ""},
		{"me", good},
	} {
		ok, err := e.d.OwnsManagedDevice(context.Background(), tc.user, tc.id)
		if ok || !errors.Is(err, entra.ErrInvalidID) {
			t.Fatalf("OwnsManagedDevice(%q, %q) = (%v, %v), want ErrInvalidID", tc.user, tc.id, ok, err)
		}
	}
	if n := len(e.g.Requests()); n != 0 {
		t.Fatalf("invalid IDs reached Graph: %+v", e.g.Requests())
	}
}
