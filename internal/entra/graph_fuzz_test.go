package entra

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hostOnly is a transport that sends only to host and fails the test otherwise: Graph's token never leaves it.
type hostOnly struct {
	host string
	t    *testing.T
}

func (h hostOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != h.host {
		h.t.Errorf("Graph request sent to %s (%s)", r.URL.Host, r.URL)
		return nil, errors.New("host refused")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// FuzzGraphVerdict answers the Graph questions of an ownership check (registeredOwners, the managed device or the
// managed devices behind an Entra device, the Entra device's accountEnabled) with arbitrary bodies and statuses 200, 403 or 404, and asks both Verdict and
// VerdictManaged. Whatever Graph says: a refusal is ErrUnavailable; no request (a nextLink included) goes to
// another host; and DeviceOwned needs evidence: the user's object ID in an owners list or as the managed device's
// userId, a device answer that says accountEnabled true (or no Entra device at all), and a managed device answer, if
// one decided, that carries a managementState.
func FuzzGraphVerdict(f *testing.F) {
	const user, device = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	f.Add(uint8(0), `{"value":[{"id":"11111111-2222-3333-4444-555555555555"}]}`, `{}`, `{"id":"x","accountEnabled":true}`)
	f.Add(uint8(0), `{"value":[{"id":"11111111-2222-3333-4444-555555555555"}]}`, `{}`, `{"id":"x","accountEnabled":false}`)
	f.Add(uint8(0), `{"value":[{"id":"11111111-2222-3333-4444-555555555555"}]}`, `{}`, `{"id":"x"}`)
	f.Add(uint8(1), `{}`, `{"id":"m","userId":"11111111-2222-3333-4444-555555555555","azureADDeviceId":"ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee","managementState":"managed"}`, `{"accountEnabled":true}`)
	f.Add(uint8(1|4), `{}`, `{"id":"m","userId":"11111111-2222-3333-4444-555555555555","managementState":"managed"}`, `{}`)
	f.Add(uint8(1|4), `{}`, `{"id":"m","userId":"11111111-2222-3333-4444-555555555555","managementState":"wipePending"}`, `{}`)
	f.Add(uint8(1|4), `{}`, `{"id":"m","userId":"11111111-2222-3333-4444-555555555555"}`, `{}`)
	f.Add(uint8(0), `{"value":[],"@odata.nextLink":"https://evil.example/v1.0/x"}`, `{}`, `{}`)
	f.Add(uint8(0), `{"value":[],"@odata.nextLink":"/v1.0/devices"}`, `{}`, `{}`)
	f.Add(uint8(2), `{"value":[{"id":"11111111-2222-3333-4444-555555555555"}]}`, `{}`, `{"accountEnabled":"true"}`)
	f.Add(uint8(0), `{"value":[{"id":"11111111-2222-3333-4444-555555555555"}]}`,
		`{"value":[{"azureADDeviceId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","managementState":"retirePending"}]}`, `{"accountEnabled":true}`)
	f.Add(uint8(0), `{"value":[{"id":"11111111-2222-3333-4444-555555555555"}]}`,
		`{"value":[{"azureADDeviceId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}]}`, `{"accountEnabled":true}`)
	f.Add(uint8(0), `{"value":[{"id":"11111111-2222-3333-4444-555555555555"}]}`,
		`{"value":[],"@odata.nextLink":"https://evil.example/v1.0/deviceManagement/managedDevices"}`, `{"accountEnabled":true}`)
	f.Fuzz(func(t *testing.T, statuses uint8, owners, managed, dev string) {
		status := func(shift uint) int {
			return []int{http.StatusOK, http.StatusNotFound, http.StatusForbidden, http.StatusOK}[(statuses>>shift)&3]
		}
		var deviceAsked, managedAsked atomic.Bool
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, code := dev, status(4)
			switch {
			case strings.Contains(r.URL.Path, "/registeredOwners"):
				body, code = owners, status(0)
			case strings.Contains(r.URL.Path, "/managedDevices/"):
				body, code = managed, status(2)
				managedAsked.Store(true)
			case strings.HasSuffix(r.URL.Path, "/managedDevices"):
				body, code = managed, status(2)
			default:
				deviceAsked.Store(true)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}))
		defer srv.Close()
		u, _ := url.Parse(srv.URL)
		for _, managedQ := range []bool{false, true} {
			deviceAsked.Store(false)
			managedAsked.Store(false)
			d, err := NewDirectory(GraphConfig{Credential: nopCred{}, BaseURL: srv.URL + "/", Scope: "s",
				HTTPClient: &http.Client{Transport: hostOnly{u.Host, t}, Timeout: 5 * time.Second}})
			if err != nil {
				t.Fatal(err)
			}
			var v DeviceVerdict
			if managedQ {
				v, err = d.VerdictManaged(t.Context(), user, device)
			} else {
				v, err = d.Verdict(t.Context(), user, device)
			}
			if err != nil {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("refusal %v is not ErrUnavailable", err)
				}
				if v == DeviceOwned {
					t.Fatal("DeviceOwned with an error")
				}
				continue
			}
			if v != DeviceOwned {
				continue
			}
			evidence := status(0) == http.StatusOK && strings.Contains(strings.ToLower(owners), user) ||
				status(2) == http.StatusOK && strings.Contains(strings.ToLower(managed), user)
			// A device is asked about unless it is a primary user's managed device naming no Entra device.
			enabled := deviceAsked.Load() && (status(4) == http.StatusNotFound || status(4) == http.StatusOK && strings.Contains(dev, "true")) ||
				!deviceAsked.Load() && status(2) == http.StatusOK && strings.Contains(strings.ToLower(managed), user)
			// A managed device that was found decides ownership, and then only with its managementState.
			stated := !managedAsked.Load() || status(2) != http.StatusOK || strings.Contains(managed, "managementState")
			if !evidence || !enabled || !stated {
				t.Fatalf("managed=%v: DeviceOwned from owners %d %q, managed %d %q, device %d %q", managedQ,
					status(0), owners, status(2), managed, status(4), dev)
			}
		}
	})
}
