package ratelimit

import (
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/testca"
)

func TestPerClientAndGlobalBuckets(t *testing.T) {
	clock := testca.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := New(Bucket{Burst: 2, Per: time.Minute}, Bucket{Burst: 3, Per: time.Minute}, clock.Now)

	for i := range 2 {
		if d := l.Allow("a"); !d.OK {
			t.Fatalf("request %d of client a refused: %+v", i, d)
		}
	}
	d := l.Allow("a")
	if d.OK || d.Global || d.RetryAfter <= 0 || d.RetryAfter > 30*time.Second || d.RetryAfterSeconds() != 30 {
		t.Fatalf("third request of a: %+v, want a per-client refusal with Retry-After 30 s", d)
	}
	// b has its own bucket, but the global one has one token left.
	if d := l.Allow("b"); !d.OK {
		t.Fatalf("client b refused: %+v", d)
	}
	d = l.Allow("b")
	if d.OK || !d.Global || d.RetryAfterSeconds() != 20 {
		t.Fatalf("request over the global bucket: %+v, want a global refusal with Retry-After 20 s", d)
	}
	// A refusal consumes nothing: after 20 s the global bucket has one token again and b still has its second.
	clock.Advance(20 * time.Second)
	if d := l.Allow("b"); !d.OK {
		t.Fatalf("after the global refill: %+v", d)
	}
}

func TestSweepForgetsOnlyIdleClients(t *testing.T) {
	clock := testca.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := New(Bucket{Burst: 1, Per: time.Minute}, Bucket{Burst: 1_000_000, Per: time.Second}, clock.Now)
	l.Allow("busy")
	l.Allow("idle")
	clock.Advance(30 * time.Second)
	l.Allow("busy2")
	clock.Advance(40 * time.Second) // idle and busy refilled (70 s); busy2 has not (40 s)
	l.sweep(clock.Now())
	if _, ok := l.clients["busy2"]; !ok || len(l.clients) != 1 {
		t.Fatalf("after the sweep: %d clients, want only busy2", len(l.clients))
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no header", "192.0.2.7:51234", nil, "192.0.2.7"},
		{"front end appends ip:port", "127.0.0.1:5000", []string{"198.51.100.4:60123"}, "198.51.100.4"},
		{"forged entries before the last are ignored", "127.0.0.1:5000", []string{"10.0.0.1, 203.0.113.9, 198.51.100.4:1"}, "198.51.100.4"},
		{"repeated header: the last one wins", "127.0.0.1:5000", []string{"203.0.113.9", "198.51.100.4"}, "198.51.100.4"},
		{"IPv6 grouped by /64", "127.0.0.1:5000", []string{"[2001:db8:1:2:3:4:5:6]:443"}, "2001:db8:1:2::/64"},
		{"bare IPv6", "127.0.0.1:5000", []string{"2001:db8:1:2::9"}, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6", "127.0.0.1:5000", []string{"::ffff:198.51.100.4"}, "198.51.100.4"},
		{"garbage falls back to RemoteAddr", "192.0.2.7:51234", []string{"not-an-ip"}, "192.0.2.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientKey(r); got != tc.want {
				t.Fatalf("ClientKey = %q, want %q", got, tc.want)
			}
		})
	}
}

// BenchmarkAllow is the limiter's cost per PKIOperation (two bucket reservations under one lock).
func BenchmarkAllow(b *testing.B) {
	l := New(Bucket{Burst: 1 << 30, Per: time.Second}, Bucket{Burst: 1 << 30, Per: time.Second}, nil)
	keys := []string{"198.51.100.1", "198.51.100.2", "2001:db8:1:2::/64", "203.0.113.9"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Allow(keys[i%len(keys)])
	}
}
