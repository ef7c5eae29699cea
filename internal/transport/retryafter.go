package transport

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfter reads the delay an answer asks for before the next attempt: the millisecond headers Azure services
// send (retry-after-ms, x-ms-retry-after-ms), then the standard Retry-After as delay-seconds or an HTTP-date
// (RFC 9110 §10.2.3), taken relative to now. It returns 0 when there is none, or when what is there is unreadable,
// in the past, or over an hour: a caller then keeps its own backoff rather than sleep on a broken header.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	for _, name := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if v := strings.TrimSpace(h.Get(name)); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 && ms < int64(time.Hour/time.Millisecond) {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 || secs > int64(time.Hour/time.Second) {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 && d <= time.Hour {
			return d.Round(time.Second)
		}
	}
	return 0
}
