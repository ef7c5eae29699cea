package entra_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestVerdictTenantWithoutIntune: in a tenant without Intune, where Graph answers every managedDevices GET 400
// "Request not applicable to target tenant.", an owned Entra device named by its deviceId is owned (no managed
// device can be behind it), and a disabled one still disabled; an ID no Entra device has, asked by either question,
// is not owned (there is no managed device of that ID either), as are other users' devices. None of these is
// ErrUnavailable, and none makes /api/health report a refused permission.
func TestVerdictTenantWithoutIntune(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	e.g.SetIntune(entrafake.IntuneUnlicensed)
	user, other := entrafake.NewGUID(), entrafake.NewGUID()
	owned, disabled, unknown := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	e.g.AddDevice(owned, user)
	e.g.AddDevice(disabled, user)
	e.g.SetAccountEnabled(disabled, false)

	for _, tc := range []struct {
		name, user, device string
		managed            bool
		want               entra.DeviceVerdict
		calls              []graphCall
	}{
		{"owned Entra device", user, owned, false, entra.DeviceOwned,
			[]graphCall{ownersCall(owned), stateCall(owned), behindCall(owned)}},
		{"disabled Entra device", user, disabled, false, entra.DeviceDisabled,
			[]graphCall{ownersCall(disabled), stateCall(disabled)}},
		{"someone else's Entra device", other, owned, false, entra.DeviceNotOwned, []graphCall{ownersCall(owned)}},
		{"unknown ID", user, unknown, false, entra.DeviceNotOwned, []graphCall{ownersCall(unknown), managedCall(unknown)}},
		{"unknown ID, managed question", user, unknown, true, entra.DeviceNotOwned, []graphCall{managedCall(unknown)}},
		{"Entra device ID, managed question", user, owned, true, entra.DeviceNotOwned, []graphCall{managedCall(owned)}},
	} {
		n := len(e.g.Requests())
		ask := e.d.Verdict
		if tc.managed {
			ask = e.d.VerdictManaged
		}
		if v, err := ask(ctx, tc.user, tc.device); v != tc.want || err != nil {
			t.Fatalf("%s: verdict = (%v, %v), want %v", tc.name, v, err, tc.want)
		}
		got := e.g.Requests()[n:]
		ok := len(got) == len(tc.calls)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i].Path == tc.calls[i].path && got[i].Query == tc.calls[i].query
		}
		if !ok {
			t.Fatalf("%s: Graph calls = %+v, want %+v", tc.name, got, tc.calls)
		}
	}
	if r := e.d.Refused(); len(r) != 0 {
		t.Fatalf("Refused = %+v in a tenant without Intune, want none", r)
	}

	// A refusal remembered from before (Intune refused the identity) ends once the tenant answers that it has no
	// Intune: nothing that needs the permission fails any more.
	e.g.SetIntune(entrafake.IntuneNotGranted)
	dev := entrafake.NewGUID()
	e.g.AddDevice(dev, user)
	if _, err := e.d.Verdict(ctx, user, dev); !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("Verdict with Intune refusing = %v, want ErrUnavailable", err)
	}
	if r := e.d.Refused(); len(r) != 1 || r[0].Permission != "DeviceManagementManagedDevices.Read.All" {
		t.Fatalf("Refused = %+v, want DeviceManagementManagedDevices.Read.All", r)
	}
	e.g.SetIntune(entrafake.IntuneUnlicensed)
	if v, err := e.d.Verdict(ctx, user, dev); v != entra.DeviceOwned || err != nil {
		t.Fatalf("Verdict = (%v, %v), want owned", v, err)
	}
	if r := e.d.Refused(); len(r) != 0 {
		t.Fatalf("Refused = %+v after the tenant answered it has no Intune, want none", r)
	}
}

// TestVerdictIntuneRefusedOrFailing: anything else Intune answers stays ErrUnavailable, never owned: the identity
// without DeviceManagementManagedDevices.Read.All (403, which Refused names for /api/health), another 400 (a filter or
// request Graph cannot serve), the "not applicable" answer on an Entra path, throttling and server errors.
func TestVerdictIntuneRefusedOrFailing(t *testing.T) {
	ctx := context.Background()
	const list = "/v1.0/deviceManagement/managedDevices"
	for _, tc := range []struct {
		name  string
		setup func(g *entrafake.Graph, dev string)
		perm  string // the permission Refused names afterwards
	}{
		{"permission not granted", func(g *entrafake.Graph, _ string) { g.SetIntune(entrafake.IntuneNotGranted) },
			"DeviceManagementManagedDevices.Read.All"},
		{"another 400", func(g *entrafake.Graph, _ string) {
			g.SetFault(entrafake.Fault{Status: http.StatusBadRequest, Path: list})
		}, ""},
		{"server error", func(g *entrafake.Graph, _ string) {
			g.SetFault(entrafake.Fault{Status: http.StatusInternalServerError, Path: list})
		}, ""},
		{"throttled", func(g *entrafake.Graph, _ string) {
			g.SetFault(entrafake.Fault{Status: http.StatusTooManyRequests, Path: list, RetryAfter: "60"})
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGraphEnv(t)
			user, dev := entrafake.NewGUID(), entrafake.NewGUID()
			e.g.AddDevice(dev, user)
			tc.setup(e.g, dev)
			if v, err := e.d.Verdict(ctx, user, dev); v != entra.DeviceNotOwned || !errors.Is(err, entra.ErrUnavailable) {
				t.Fatalf("Verdict = (%v, %v), want ErrUnavailable", v, err)
			}
			var perms []string
			for _, r := range e.d.Refused() {
				perms = append(perms, r.Permission)
			}
			if want := []string{tc.perm}; tc.perm == "" && len(perms) != 0 || tc.perm != "" && !slices.Equal(perms, want) {
				t.Fatalf("Refused permissions = %v, want %q", perms, tc.perm)
			}
		})
	}
}

// TestNotApplicableOnlyAsIs: only Graph's exact "not applicable to target tenant" answer to an Intune request reads
// as "no Intune". The same message on an Entra path (a device's registered owners), or another BadRequest from
// Intune, stays ErrUnavailable.
func TestNotApplicableOnlyAsIs(t *testing.T) {
	const user, dev = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	const notApplicable = `{"error":{"code":"BadRequest","message":"Request not applicable to target tenant."}}`
	for _, tc := range []struct {
		name           string
		owners, intune string // the answers to the owners GET and the managedDevices GETs ("" owned device)
	}{
		{"on the owners read", notApplicable, ""},
		{"another BadRequest from Intune", "", `{"error":{"code":"BadRequest","message":"Invalid filter clause"}}`},
		{"another code from Intune", "", `{"error":{"code":"Request_BadRequest","message":"Request not applicable to target tenant."}}`},
		{"no error body", "", `not json`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				switch {
				case strings.HasSuffix(r.URL.Path, "/registeredOwners") && tc.owners != "":
					w.WriteHeader(http.StatusBadRequest)
					_, _ = w.Write([]byte(tc.owners))
				case strings.HasSuffix(r.URL.Path, "/registeredOwners"):
					_, _ = w.Write([]byte(`{"value":[{"id":"` + user + `"}]}`))
				case strings.HasPrefix(r.URL.Path, "/v1.0/devices("):
					_, _ = w.Write([]byte(`{"id":"` + dev + `","accountEnabled":true}`))
				default:
					w.WriteHeader(http.StatusBadRequest)
					_, _ = w.Write([]byte(tc.intune))
				}
			}))
			t.Cleanup(srv.Close)
			d, err := entra.NewDirectory(entra.GraphConfig{Credential: entrafake.NewGraph(t).Credential(),
				BaseURL: srv.URL + "/", Scope: entrafake.GraphScope, HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			if v, err := d.Verdict(context.Background(), user, dev); v != entra.DeviceNotOwned || !errors.Is(err, entra.ErrUnavailable) {
				t.Fatalf("Verdict = (%v, %v), want ErrUnavailable", v, err)
			}
		})
	}
}
