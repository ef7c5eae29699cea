package transport

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"none", http.Header{}, 0},
		{"nil", nil, 0},
		{"seconds", http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{"seconds-space", http.Header{"Retry-After": {" 2 "}}, 2 * time.Second},
		{"zero", http.Header{"Retry-After": {"0"}}, 0},
		{"negative", http.Header{"Retry-After": {"-3"}}, 0},
		{"absurd", http.Header{"Retry-After": {"999999999"}}, 0},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"http-date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"http-date-past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{"http-date-far", http.Header{"Retry-After": {now.Add(2 * time.Hour).Format(http.TimeFormat)}}, 0},
		{"ms", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"9"}}, 1500 * time.Millisecond},
		{"x-ms", http.Header{"X-Ms-Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
		{"ms-invalid-falls-back", http.Header{"Retry-After-Ms": {"x"}, "Retry-After": {"4"}}, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetryAfter(tc.header, now); got != tc.want {
				t.Fatalf("RetryAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAsksRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		want   bool
	}{
		{"none", http.Header{}, false},
		{"nil", nil, false},
		{"seconds", http.Header{"Retry-After": {"7"}}, true},
		{"unreadable", http.Header{"Retry-After": {"soon"}}, true},
		{"over an hour", http.Header{"Retry-After": {"7200"}}, true},
		{"ms", http.Header{"Retry-After-Ms": {"1500"}}, true},
		{"x-ms", http.Header{"X-Ms-Retry-After-Ms": {"250"}}, true},
		{"other", http.Header{"Retry": {"1"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AsksRetryAfter(tc.header); got != tc.want {
				t.Fatalf("AsksRetryAfter = %t, want %t", got, tc.want)
			}
		})
	}
}
