// Package timer speaks the Functions host's invocation protocol for timer triggers (azure-functions.md §1.5):
// the host POSTs a JSON envelope to /<function name> and waits for a JSON answer. The answer is always 200 with
// Content-Type application/json and a body — an empty body would leave the invocation hanging until
// functionTimeout.
package timer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/httpx"
)

// FunctionTimeout is host.json's functionTimeout: how long the host waits for an invocation's answer. A timer
// invocation may run that long, longer than the server's write timeout for ordinary requests, so its handler
// extends its own write deadline to it.
const FunctionTimeout = 10 * time.Minute

// Info is the TimerInfo the host sends. ScheduleStatus is nil when the schedule is not monitored.
type Info struct {
	IsPastDue      bool
	ScheduleStatus *ScheduleStatus
}

// ScheduleStatus is the monitor's view of the schedule; Last is the zero time before the first run.
type ScheduleStatus struct {
	Last, Next, LastUpdated time.Time
}

// Timestamp parses the host's timestamps: with or without an offset, with or without fractional seconds
// ("0001-01-01T00:00:00" before the first run).
type Timestamp time.Time

// UnmarshalJSON accepts RFC 3339 and offset-less forms; null stays the zero time.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05"} {
		if v, err := time.Parse(layout, s); err == nil {
			*t = Timestamp(v)
			return nil
		}
	}
	return fmt.Errorf("timer: unparsable timestamp %q", s)
}

type envelope struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata json.RawMessage            `json:"Metadata"`
}

type wireInfo struct {
	IsPastDue      bool `json:"IsPastDue"`
	ScheduleStatus *struct {
		Last        Timestamp `json:"Last"`
		Next        Timestamp `json:"Next"`
		LastUpdated Timestamp `json:"LastUpdated"`
	} `json:"ScheduleStatus"`
}

// ParseInvocation reads the envelope and the TimerInfo of binding name.
func ParseInvocation(body []byte, binding string) (Info, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Info{}, fmt.Errorf("timer: invocation body is not JSON: %w", err)
	}
	var info Info
	raw, ok := env.Data[binding]
	if !ok || string(raw) == "null" {
		return info, nil // a manual run through the admin endpoint carries no TimerInfo
	}
	// The host may serialise the binding as a JSON string holding JSON.
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return info, fmt.Errorf("timer: %s is malformed: %w", binding, err)
		}
		raw = json.RawMessage(s)
		if strings.TrimSpace(s) == "" {
			return info, nil
		}
	}
	var w wireInfo
	if err := json.Unmarshal(raw, &w); err != nil {
		return info, fmt.Errorf("timer: %s is malformed: %w", binding, err)
	}
	info.IsPastDue = w.IsPastDue
	if w.ScheduleStatus != nil {
		info.ScheduleStatus = &ScheduleStatus{Last: time.Time(w.ScheduleStatus.Last),
			Next: time.Time(w.ScheduleStatus.Next), LastUpdated: time.Time(w.ScheduleStatus.LastUpdated)}
	}
	return info, nil
}

// Response is the invocation result the host reads.
type Response struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// Handler answers the host's POST /<function> for a timer function. run's log lines go into the answer's Logs
// (correlated with the invocation in Application Insights). A failed run still answers 200 with the error in
// Logs: a non-2xx would make the host count a failure and retry policies would re-run a cycle that already
// persisted its progress; the next scheduled run resumes it.
func Handler(binding string, log *slog.Logger, run func(ctx context.Context, info Info) ([]string, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			httpx.MethodNotAllowed(w, r, http.MethodPost)
			return
		}
		// Without this the run completes but the host gets no answer (the server closes the connection at its write
		// timeout) and records a failed invocation without its Logs.
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(FunctionTimeout + time.Minute)); err != nil {
			log.Warn("timer invocation: cannot extend the write deadline", "err", err)
		}
		resp := Response{Outputs: map[string]any{}, Logs: []string{}}
		body, err := httpx.ReadBody(w, r, httpx.MaxBody)
		var info Info
		if err == nil {
			info, err = ParseInvocation(body, binding)
		}
		if err != nil {
			log.Warn("timer invocation body unreadable; running anyway", "err", err)
			resp.Logs = append(resp.Logs, "invocation body unreadable: "+err.Error())
		}
		lines, err := run(r.Context(), info)
		resp.Logs = append(resp.Logs, lines...)
		if err != nil {
			resp.Logs = append(resp.Logs, "error: "+err.Error())
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(resp)
	})
}
