package entra_test

import (
	"context"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestAnswerNamesTheEntraDeviceObject: Answer and AnswerManaged give, with the verdict, the directory object ID of
// the Entra device whose accountEnabled they read — the ID a deleted device's delta entry carries — from the Graph
// calls Verdict makes anyway: an owned Entra device (CN), the Entra device behind an owned managed device
// (IntuneDeviceId://, primary user or registered owner), and none for an Intune-only managed device. A cached
// answer keeps it.
func TestAnswerNamesTheEntraDeviceObject(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	user := entrafake.NewGUID()
	laptop := entrafake.NewGUID()
	laptopObj := e.g.AddDevice(strings.ToUpper(laptop), user)
	phone, phoneAAD := entrafake.NewGUID(), entrafake.NewGUID()
	phoneObj := e.g.AddDevice(phoneAAD)
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: phone, UserID: user, AzureADDeviceID: phoneAAD})
	kiosk, kioskAAD := entrafake.NewGUID(), entrafake.NewGUID()
	kioskObj := e.g.AddDevice(kioskAAD, user)
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: kiosk, UserID: entrafake.NewGUID(), AzureADDeviceID: kioskAAD})
	lone := entrafake.NewGUID()
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: lone, UserID: user})

	for _, c := range []struct {
		name, device string
		managed      bool
		want         string
	}{
		{"Entra device", laptop, false, laptopObj},
		{"managed device, primary user", phone, true, phoneObj},
		{"managed device by CN, primary user", phone, false, phoneObj},
		{"managed device, owner of its Entra device", kiosk, true, kioskObj},
		{"Intune-only managed device", lone, true, ""},
	} {
		ask := e.d.Answer
		if c.managed {
			ask = e.d.AnswerManaged
		}
		for _, round := range []string{"asked", "cached"} {
			a, err := ask(ctx, user, c.device)
			if err != nil || a.Verdict != entra.DeviceOwned || a.ObjectID != strings.ToLower(c.want) {
				t.Errorf("%s (%s) = %+v, %v; want owned, object %q", c.name, round, a, err, c.want)
			}
		}
	}
	// The object ID costs no call: each question took the calls Verdict takes, and each cached answer none.
	e.wantCalls(t, ownersCall(laptop), stateCall(laptop), behindCall(laptop),
		managedCall(phone), stateCall(phoneAAD),
		ownersCall(phone), managedCall(phone), stateCall(phoneAAD),
		managedCall(kiosk), ownersCall(kioskAAD), stateCall(kioskAAD),
		managedCall(lone))
}
