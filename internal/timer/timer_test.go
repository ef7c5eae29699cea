package timer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/httpx"
)

func TestParseInvocation(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		pastDue bool
		last    time.Time
		status  bool
	}{
		{"monitored", `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-11-22T00:00:00.0012345+00:00","Next":"2026-11-22T01:00:00+00:00","LastUpdated":"2026-11-22T00:00:00.5+00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"revocation-sync"}}}`,
			false, time.Date(2026, 11, 22, 0, 0, 0, 1234500, time.UTC), true},
		{"first run, no offset", `{"Data":{"timer":{"ScheduleStatus":{"Last":"0001-01-01T00:00:00","Next":"2026-11-22T01:00:00","LastUpdated":"0001-01-01T00:00:00"},"IsPastDue":true}}}`,
			true, time.Time{}, true},
		{"unmonitored: null ScheduleStatus", `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`,
			false, time.Time{}, false},
		{"binding as a JSON string", `{"Data":{"timer":"{\"ScheduleStatus\":null,\"IsPastDue\":true}"}}`, true, time.Time{}, false},
		{"manual run without TimerInfo", `{"Data":{}}`, false, time.Time{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ParseInvocation([]byte(tc.body), "timer")
			if err != nil {
				t.Fatal(err)
			}
			if info.IsPastDue != tc.pastDue || (info.ScheduleStatus != nil) != tc.status {
				t.Fatalf("info = %+v", info)
			}
			if tc.status && !info.ScheduleStatus.Last.Equal(tc.last) {
				t.Fatalf("Last = %v, want %v", info.ScheduleStatus.Last, tc.last)
			}
		})
	}
	for _, bad := range []string{`not json`, `{"Data":{"timer":{"ScheduleStatus":{"Last":"yesterday"}}}}`} {
		if _, err := ParseInvocation([]byte(bad), "timer"); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestHandlerAnswersJSONAlways: the host needs 200, application/json and a body with Logs — for a good run, a
// failed run and an unreadable envelope alike (an empty body would hang the invocation).
func TestHandlerAnswersJSONAlways(t *testing.T) {
	runs := 0
	var gotInfo Info
	h := Handler("timer", slog.New(slog.DiscardHandler), func(ctx context.Context, info Info) ([]string, error) {
		runs++
		gotInfo = info
		if runs == 2 {
			return []string{"partial"}, errors.New("intune unavailable")
		}
		return []string{"revoked 3"}, nil
	})
	for i, body := range []string{
		`{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{}}`,
		`{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}}}`,
		`garbage`,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/revocation-sync", strings.NewReader(body)))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("call %d: %d %q", i, rec.Code, rec.Header().Get("Content-Type"))
		}
		var resp struct {
			Outputs     map[string]any
			Logs        []string
			ReturnValue any
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.Outputs == nil || len(resp.Logs) == 0 {
			t.Fatalf("call %d: body %q", i, rec.Body.String())
		}
		switch i {
		case 0:
			if !gotInfo.IsPastDue || resp.Logs[0] != "revoked 3" {
				t.Fatalf("call 0: info %+v logs %v", gotInfo, resp.Logs)
			}
		case 1:
			if !strings.Contains(strings.Join(resp.Logs, "|"), "error: intune unavailable") {
				t.Fatalf("call 1: the error is not in Logs: %v", resp.Logs)
			}
		case 2:
			if !strings.Contains(resp.Logs[0], "unreadable") {
				t.Fatalf("call 2: %v", resp.Logs)
			}
		}
	}
	if runs != 3 {
		t.Fatalf("runs = %d, want 3 (an unreadable envelope still runs the cycle)", runs)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/revocation-sync", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET = %d", rec.Code)
	}
}

// A run longer than the server's write timeout for ordinary requests still answers the host: the revocation sync
// may run for minutes, and an answer cut at the write timeout is a failed invocation without its Logs. Scaled
// down: a 100 ms write timeout, a 400 ms run, behind the same edge middleware as the service.
func TestLongRunOutlastsTheWriteTimeout(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	h := httpx.Edge(log, Handler("timer", log, func(ctx context.Context, info Info) ([]string, error) {
		time.Sleep(400 * time.Millisecond)
		return []string{"revoked 3"}, nil
	}))
	srv := httptest.NewUnstartedServer(h)
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/revocation-sync", "application/json",
		strings.NewReader(`{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}`))
	if err != nil {
		t.Fatalf("the host got no answer from a run longer than the write timeout: %v", err)
	}
	defer resp.Body.Close()
	var out Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Logs) != 1 || out.Logs[0] != "revoked 3" {
		t.Errorf("answer %d %+v, %v", resp.StatusCode, out, err)
	}
}
