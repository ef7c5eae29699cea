package entra_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestDeviceOwnerFollowsOwnership: DeviceOwner answers by issuance's rule, as Graph has it now. A user who was the
// registered owner of an Entra device is "not owner" once its owners are someone else, and the primary user of a
// managed device once Intune names another one (unless they are a registered owner of the Entra device behind it),
// for the CN question (Entra device first) and the IntuneDeviceId one (managed device only). A device Graph does not
// have is "unknown", never "not owner", and so is a managed device in a tenant without Intune; a refusal or an
// outage is an error. Answers are neither cached (a question after a change of owner hears it) nor spent from the
// user's budget of device lookups.
func TestDeviceOwnerFollowsOwnership(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	alice, bob := entrafake.NewGUID(), entrafake.NewGUID()
	laptop := entrafake.NewGUID()
	e.g.AddDevice(laptop, alice)
	phone, phoneAAD := entrafake.NewGUID(), entrafake.NewGUID()
	e.g.AddDevice(phoneAAD, bob)
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: phone, UserID: alice, AzureADDeviceID: phoneAAD})
	kiosk := entrafake.NewGUID() // a managed device without an Entra device
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: kiosk, UserID: alice})

	ask := func(user, device string, managed bool, want entra.Ownership) {
		t.Helper()
		got, err := e.d.DeviceOwner(ctx, user, device, managed)
		if err != nil || got != want {
			t.Fatalf("DeviceOwner(%s, %s, managed=%t) = %v, %v; want %v", user, device, managed, got, err, want)
		}
	}
	ask(alice, laptop, false, entra.OwnershipOwner)
	ask(alice, phone, true, entra.OwnershipOwner)
	ask(alice, phone, false, entra.OwnershipOwner) // a CN naming the managed device: Intune's answer
	ask(alice, kiosk, true, entra.OwnershipOwner)
	ask(bob, phone, true, entra.OwnershipOwner) // a registered owner of the Entra device behind it

	e.g.SetOwners(laptop, bob)
	e.g.SetPrimaryUser(phone, bob)
	e.g.SetPrimaryUser(kiosk, "")
	ask(alice, laptop, false, entra.OwnershipNotOwner)
	ask(bob, laptop, false, entra.OwnershipOwner)
	ask(alice, phone, true, entra.OwnershipNotOwner)
	ask(alice, phone, false, entra.OwnershipNotOwner)
	ask(alice, kiosk, true, entra.OwnershipNotOwner)
	// The managed question never reads an Entra device by that ID.
	ask(bob, laptop, true, entra.OwnershipUnknown)
	// Not budgeted as a caller's questions are: the sweep asks about many certificates of one user.
	for range entra.DefaultDeviceLookupBurst + 1 {
		ask(bob, phone, true, entra.OwnershipOwner)
	}

	e.g.DeleteDevice(laptop)
	ask(alice, laptop, false, entra.OwnershipUnknown)
	e.g.DeleteDevice(phoneAAD)
	ask(alice, phone, true, entra.OwnershipUnknown)

	for _, status := range []int{http.StatusForbidden, http.StatusTooManyRequests, http.StatusInternalServerError} {
		e.g.SetFault(entrafake.Fault{Status: status, RetryAfter: "0"})
		if got, err := e.d.DeviceOwner(ctx, alice, phone, true); !errors.Is(err, entra.ErrUnavailable) ||
			got != entra.OwnershipUnknown {
			t.Fatalf("DeviceOwner with Graph answering %d = %v, %v; want unknown and ErrUnavailable", status, got, err)
		}
	}
	e.g.SetFault(entrafake.Fault{})
	e.g.SetIntune(entrafake.IntuneUnlicensed)
	ask(alice, kiosk, true, entra.OwnershipUnknown)
	e.g.SetIntune(entrafake.IntuneNotGranted)
	if got, err := e.d.DeviceOwner(ctx, alice, kiosk, true); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("DeviceOwner with Intune refusing = %v, %v; want ErrUnavailable", got, err)
	}
	if _, err := e.d.DeviceOwner(ctx, "someone", kiosk, true); !errors.Is(err, entra.ErrInvalidID) {
		t.Fatalf("DeviceOwner(not a GUID) error = %v, want ErrInvalidID", err)
	}
}
