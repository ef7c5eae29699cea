package transport

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryAfterMsHeaders are the millisecond variants of Retry-After that Azure services send, read before it.
var retryAfterMsHeaders = []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"}

// RetryAfter reads the delay an answer asks for before the next attempt: the millisecond headers Azure services
// send (retry-after-ms, x-ms-retry-after-ms), then the standard Retry-After as delay-seconds or an HTTP-date
// (RFC 9110 §10.2.3), taken relative to now. It returns 0 when there is none, or when what is there is unreadable,
// in the past, or over an hour: a caller then keeps its own backoff rather than sleep on a broken header.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	for _, name := range retryAfterMsHeaders {
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

// AsksRetryAfter reports whether h carries any of the headers RetryAfter reads, readable or not: a caller whose
// RetryAfter is 0 tells from it an answer that asked for no wait from one that asked for a wait RetryAfter refuses.
func AsksRetryAfter(h http.Header) bool {
	for _, name := range retryAfterMsHeaders {
		if h.Get(name) != "" {
			return true
		}
	}
	return h.Get("Retry-After") != ""
}
