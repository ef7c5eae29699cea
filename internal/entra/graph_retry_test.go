package entra_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestGraphThrottlingRetriedOnce: Graph's throttling guidance is to wait Retry-After and try again. A 429, 503 or
// 504 whose wait fits gets one more attempt after that wait, so that a caller is not refused for a throttle that
// has already passed; a wait too long for the caller, a deadline too close, or a second refusal answers
// ErrUnavailable (a 503 with Retry-After for the caller) without holding it. A 401 is tried again at once with a
// new token.
func TestGraphThrottlingRetriedOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fault    entrafake.Fault
		deadline time.Duration // 0: none
		wantOK   bool
		calls    int
		minWait  time.Duration
	}{
		{"429 once, Retry-After 1", entrafake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 1},
			0, true, 2, time.Second},
		{"503 once, no Retry-After", entrafake.Fault{Status: http.StatusServiceUnavailable, Times: 1},
			0, true, 2, 400 * time.Millisecond},
		{"504 once", entrafake.Fault{Status: http.StatusGatewayTimeout, Times: 1}, 0, true, 2, 0},
		{"401 once: a new token", entrafake.Fault{Status: http.StatusUnauthorized, Times: 1}, 0, true, 2, 0},
		{"429 twice", entrafake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 2},
			0, false, 2, time.Second},
		{"429 asking too long a wait", entrafake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "30", Times: 1},
			0, false, 1, 0},
		{"429 asking a wait over an hour", entrafake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "7200",
			Times: 1}, 0, false, 1, 0},
		{"503 asking a wait over an hour, as a date", entrafake.Fault{Status: http.StatusServiceUnavailable,
			RetryAfter: time.Now().Add(3 * time.Hour).UTC().Format(http.TimeFormat), Times: 1}, 0, false, 1, 0},
		{"429 too close to the caller's deadline", entrafake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1",
			Times: 1}, 1500 * time.Millisecond, false, 1, 0},
		{"500 is not retried", entrafake.Fault{Status: http.StatusInternalServerError, Times: 1}, 0, false, 1, 0},
		{"403 is not retried", entrafake.Fault{Status: http.StatusForbidden, Times: 1}, 0, false, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGraphEnv(t)
			oid := entrafake.NewGUID()
			e.g.PutUser(entrafake.User{ID: oid, UPN: "alice@contoso.test", Enabled: true,
				SessionsValidFrom: time.Now().Add(-time.Hour)})
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			tokens := e.cred.Calls()
			e.g.SetFault(tc.fault)
			start := time.Now()
			acct, err := e.d.Account(ctx, oid)
			took := time.Since(start)
			if tc.wantOK {
				if err != nil || !acct.Enabled {
					t.Fatalf("Account = (%+v, %v), want the enabled account after the retry", acct, err)
				}
			} else if !errors.Is(err, entra.ErrUnavailable) {
				t.Fatalf("Account = %v, want ErrUnavailable", err)
			}
			if n := len(e.g.Requests()); n != tc.calls {
				t.Fatalf("Graph calls = %d, want %d", n, tc.calls)
			}
			if took < tc.minWait {
				t.Fatalf("answered after %v: the retry did not wait the %v asked", took, tc.minWait)
			}
			if tc.calls == 1 && took > time.Second {
				t.Fatalf("a refusal that is not retried held the caller %v", took)
			}
			if tc.fault.Status == http.StatusUnauthorized && e.cred.Calls()-tokens != 2 {
				t.Fatalf("token requests = %d, want 2: the first, and a new one after the 401", e.cred.Calls()-tokens)
			}
		})
	}
}
