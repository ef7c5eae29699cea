package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A web page open in the developer's browser reaches the local service at 127.0.0.1 with a loopback Host, so
// LoopbackHostOnly lets it through: the timer route must refuse what a browser can send across origins without a
// preflight (form posts, text/plain and no-cors fetches, beacons), or any page could run the hourly timer (RA
// renewal, an Intune revocation cycle, a CRL signature) at will. The host's own invocation still runs.
func TestTimerRouteRefusesBrowserRequestsAttack(t *testing.T) {
	svc := startLocal(t)
	envelope := `{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`
	post := func(ctype string, hdr map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, svc.base+"/revocation-sync", strings.NewReader(envelope))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	ran := func(body string) bool { return strings.Contains(body, `"Logs"`) || strings.Contains(body, "CRL #") }

	cross := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
	for _, tc := range []struct {
		name  string
		ctype string
		hdr   map[string]string
		want  int
	}{
		{"form post from another site", "application/x-www-form-urlencoded", cross, http.StatusForbidden},
		{"no-cors fetch from another site", "text/plain;charset=UTF-8", cross, http.StatusForbidden},
		{"multipart form post", "multipart/form-data; boundary=x", map[string]string{"Origin": "null"}, http.StatusForbidden},
		// A browser that marks nothing still cannot send JSON across origins without a preflight.
		{"text/plain without browser marks", "text/plain", nil, http.StatusUnsupportedMediaType},
		{"no content type", "", nil, http.StatusUnsupportedMediaType},
		// A preflighted JSON call reaches us only if a page could make one: it is marked, and refused.
		{"JSON with an Origin", "application/json", map[string]string{"Origin": "http://127.0.0.1"}, http.StatusForbidden},
		{"JSON marked cross-site", "application/json", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
	} {
		status, body := post(tc.ctype, tc.hdr)
		if status != tc.want || ran(body) {
			t.Errorf("%s: %d %s, want %d and no run", tc.name, status, body, tc.want)
		}
	}

	// The Functions host: a plain HTTP client posting its JSON envelope.
	status, body := post("application/json; charset=utf-8", map[string]string{"X-Azure-Functions-InvocationId": "1"})
	if status != http.StatusOK || !ran(body) {
		t.Fatalf("host invocation: %d %s", status, body)
	}
}
