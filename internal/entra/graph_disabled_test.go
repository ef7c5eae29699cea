package entra_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

func (e *graphEnv) verdict(t *testing.T, user, device string) entra.DeviceVerdict {
	t.Helper()
	return mustVerdict(t, "Verdict", e.d.Verdict, user, device)
}

// mustVerdict asks one of Directory's device questions and fails the test on an error.
func mustVerdict(t *testing.T, name string, ask func(context.Context, string, string) (entra.DeviceVerdict, error), user, device string) entra.DeviceVerdict {
	t.Helper()
	v, err := ask(context.Background(), user, device)
	if err != nil {
		t.Fatalf("%s(%s, %s): %v", name, user, device, err)
	}
	return v
}

// TestOwnsDeviceDisabledEntraDevice: an administrator disabled the Entra device (accountEnabled=false, e.g. reported
// lost). Graph still lists its registered owner, but the owner no longer owns it for a certificate. Only an owner
// costs the extra state call and learns "disabled"; a stranger's answer is the same single call as before.
func TestOwnsDeviceDisabledEntraDevice(t *testing.T) {
	e := newGraphEnv(t)
	user, stranger := entrafake.NewGUID(), entrafake.NewGUID()
	dev := entrafake.NewGUID()
	e.g.AddDevice(dev, user)
	e.g.SetAccountEnabled(dev, false)

	if e.owns(t, user, dev) {
		t.Fatal("registered owner of a disabled device allowed")
	}
	e.wantCalls(t, ownersCall(dev), stateCall(dev))
	if v := e.verdict(t, user, dev); v != entra.DeviceDisabled { // cached
		t.Fatalf("owner's verdict = %v, want %v", v, entra.DeviceDisabled)
	}
	if v := e.verdict(t, stranger, dev); v != entra.DeviceNotOwned {
		t.Fatalf("stranger's verdict = %v, want %v", v, entra.DeviceNotOwned)
	}
	e.wantCalls(t, ownersCall(dev), stateCall(dev), ownersCall(dev))

	// "Disabled" is a negative answer: re-enabled, the device is usable again after NegativeTTL.
	e.g.SetAccountEnabled(dev, true)
	if e.owns(t, user, dev) {
		t.Fatal("disabled answer not cached")
	}
	e.clock.Advance(entra.DefaultNegativeTTL)
	if !e.owns(t, user, dev) {
		t.Fatal("re-enabled device not owned")
	}
}

// TestOwnsDeviceIntuneDisabledEntraDevice: an Intune managed device grants ownership through its primary user or the
// registered owners of its Entra device (azureADDeviceId); either way a disabled Entra device behind it refuses.
func TestOwnsDeviceIntuneDisabledEntraDevice(t *testing.T) {
	for _, tc := range []struct {
		name     string
		primary  bool // the caller is the Intune primary user, not a registered owner of the Entra device
		entra    string
		want     entra.DeviceVerdict
		extraGET func(aad string) []graphCall
	}{
		{"primary user, Entra device enabled", true, "enabled", entra.DeviceOwned,
			func(aad string) []graphCall { return []graphCall{stateCall(aad)} }},
		{"primary user, Entra device disabled", true, "disabled", entra.DeviceDisabled,
			func(aad string) []graphCall { return []graphCall{stateCall(aad)} }},
		{"primary user, Entra device gone", true, "missing", entra.DeviceOwned,
			func(aad string) []graphCall { return []graphCall{stateCall(aad)} }},
		{"registered owner, Entra device enabled", false, "enabled", entra.DeviceOwned,
			func(aad string) []graphCall { return []graphCall{ownersCall(aad), stateCall(aad)} }},
		{"registered owner, Entra device disabled", false, "disabled", entra.DeviceDisabled,
			func(aad string) []graphCall { return []graphCall{ownersCall(aad), stateCall(aad)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGraphEnv(t)
			user, other := entrafake.NewGUID(), entrafake.NewGUID()
			aad, intune := entrafake.NewGUID(), entrafake.NewGUID()
			primary, owner := other, user
			if tc.primary {
				primary, owner = user, other
			}
			if tc.entra != "missing" {
				e.g.AddDevice(aad, owner)
				e.g.SetAccountEnabled(aad, tc.entra == "enabled")
			}
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: intune, UserID: primary, AzureADDeviceID: strings.ToUpper(aad)})
			if v := e.verdict(t, user, intune); v != tc.want {
				t.Fatalf("verdict = %v, want %v", v, tc.want)
			}
			ok := e.owns(t, user, intune) // cached
			if ok != (tc.want == entra.DeviceOwned) {
				t.Fatalf("OwnsDevice = %v for verdict %v", ok, tc.want)
			}
			e.wantCalls(t, append([]graphCall{ownersCall(intune), managedCall(intune)}, tc.extraGET(aad)...)...)
		})
	}

	// A stranger to a managed device costs no state call, whatever the Entra device's state.
	e := newGraphEnv(t)
	aad, intune := entrafake.NewGUID(), entrafake.NewGUID()
	e.g.AddDevice(aad, entrafake.NewGUID())
	e.g.SetAccountEnabled(aad, false)
	e.g.AddManagedDevice(entrafake.ManagedDevice{ID: intune, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
	if v := e.verdict(t, entrafake.NewGUID(), intune); v != entra.DeviceNotOwned {
		t.Fatalf("stranger's verdict = %v", v)
	}
	e.wantCalls(t, ownersCall(intune), managedCall(intune), ownersCall(aad))
}

// TestOwnsDeviceStateFailuresAreUnavailable: when the accountEnabled read fails, the answer is ErrUnavailable (503
// at the edge), never "owned", and it is not cached.
func TestOwnsDeviceStateFailuresAreUnavailable(t *testing.T) {
	type setup struct {
		device string
		after  int // Graph calls that succeed before the state call
	}
	paths := []struct {
		name string
		add  func(e *graphEnv, user string) setup
	}{
		{"Entra device", func(e *graphEnv, user string) setup {
			dev := entrafake.NewGUID()
			e.g.AddDevice(dev, user)
			return setup{dev, 1}
		}},
		{"Intune primary user", func(e *graphEnv, user string) setup {
			aad, intune := entrafake.NewGUID(), entrafake.NewGUID()
			e.g.AddDevice(aad)
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: intune, UserID: user, AzureADDeviceID: aad})
			return setup{intune, 2}
		}},
		{"Intune registered owner", func(e *graphEnv, user string) setup {
			aad, intune := entrafake.NewGUID(), entrafake.NewGUID()
			e.g.AddDevice(aad, user)
			e.g.AddManagedDevice(entrafake.ManagedDevice{ID: intune, UserID: entrafake.NewGUID(), AzureADDeviceID: aad})
			return setup{intune, 3}
		}},
	}
	for _, p := range paths {
		for _, f := range graphFaults {
			t.Run(fmt.Sprintf("%s/status %d hang %v", p.name, f.Status, f.Hang), func(t *testing.T) {
				e := newFaultyGraphEnv(t)
				user := entrafake.NewGUID()
				s := p.add(e, user)
				f.After = s.after
				e.g.SetFault(f)
				v, err := e.d.Verdict(context.Background(), user, s.device)
				if v != entra.DeviceNotOwned || !errors.Is(err, entra.ErrUnavailable) {
					t.Fatalf("Verdict = (%v, %v), want (not owned, ErrUnavailable)", v, err)
				}
				reqs := e.g.Requests()
				if last := reqs[len(reqs)-1]; len(reqs) != s.after+entra.GraphAttempts(f.Status) || last.Query != "$select=id,accountEnabled" {
					t.Fatalf("the failing call was not the state call: %+v", reqs)
				}
				e.g.SetFault(entrafake.Fault{})
				if !e.owns(t, user, s.device) {
					t.Fatal("after recovery: owner not recognised (failure cached?)")
				}
			})
		}
	}
}

// TestOwnsDeviceStateAnswerUnusable: a 200 device answer without a boolean accountEnabled is not "enabled"; nor is
// one without a GUID id, the object ID the certificate's record keeps so that the device's deletion revokes it.
func TestOwnsDeviceStateAnswerUnusable(t *testing.T) {
	user, dev := entrafake.NewGUID(), entrafake.NewGUID()
	for _, body := range []string{
		`{"accountEnabled":true}`,
		`{"id":"device-1","accountEnabled":true}`,
		`{"id":7,"accountEnabled":true}`,
		`{"id":"` + entrafake.NewGUID() + `"}`,
		`{"id":"` + entrafake.NewGUID() + `","accountEnabled":null}`,
		`{"id":"` + entrafake.NewGUID() + `","accountEnabled":"true"}`,
		`{"id":"` + entrafake.NewGUID() + `","accountEnabled":1}`,
		`not json`,
	} {
		t.Run(body, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if strings.HasSuffix(r.URL.Path, "/registeredOwners") {
					fmt.Fprintf(w, `{"value":[{"@odata.type":"#microsoft.graph.user","id":%q}]}`, user)
					return
				}
				fmt.Fprint(w, body)
			}))
			t.Cleanup(srv.Close)
			d, err := entra.NewDirectory(entra.GraphConfig{
				Credential: &entrafake.Credential{Token: "t"}, BaseURL: srv.URL + "/", HTTPClient: srv.Client(),
			})
			if err != nil {
				t.Fatal(err)
			}
			ok, err := d.OwnsDevice(context.Background(), user, dev)
			if ok || !errors.Is(err, entra.ErrUnavailable) {
				t.Fatalf("OwnsDevice = (%v, %v), want (false, ErrUnavailable)", ok, err)
			}
		})
	}
}

// TestOwnsDeviceDeletedBetweenReads: the user is among the registered owners, but the device is gone (404) when
// its accountEnabled is read next: an owner of a device that no longer exists owns nothing.
func TestOwnsDeviceDeletedBetweenReads(t *testing.T) {
	user, dev := entrafake.NewGUID(), entrafake.NewGUID()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/registeredOwners") {
			fmt.Fprintf(w, `{"value":[{"@odata.type":"#microsoft.graph.user","id":%q}]}`, user)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":"Request_ResourceNotFound","message":"gone"}}`)
	}))
	t.Cleanup(srv.Close)
	d, err := entra.NewDirectory(entra.GraphConfig{
		Credential: &entrafake.Credential{Token: "t"}, BaseURL: srv.URL + "/", HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.OwnsDevice(context.Background(), user, dev); ok || err != nil {
		t.Fatalf("OwnsDevice = (%v, %v), want (false, nil)", ok, err)
	}
}

// graphFaults are the ways a Graph call fails that must answer ErrUnavailable, never "owned".
var graphFaults = []entrafake.Fault{
	{Status: http.StatusInternalServerError},
	{Status: http.StatusTooManyRequests},
	{Status: http.StatusForbidden},
	{Status: http.StatusUnauthorized},
	{Hang: true},
}

// newFaultyGraphEnv is a graph environment whose client gives up on a hanging call quickly.
func newFaultyGraphEnv(t *testing.T) *graphEnv {
	return newGraphEnv(t, func(c *entra.GraphConfig) { c.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond} })
}
