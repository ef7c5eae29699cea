// Package ratelimit is admission control for unauthenticated work: a token bucket per client address and one for
// the whole instance, checked before a request may spend a Key Vault or Intune call (reliability.md §4.2). The
// buckets live in memory, so the limits are per instance.
package ratelimit

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bucket is one token bucket: Burst requests at once, refilled at Burst per Per.
type Bucket struct {
	Burst int
	Per   time.Duration
}

func (b Bucket) limit() rate.Limit { return rate.Limit(float64(b.Burst) / b.Per.Seconds()) }

// maxClients bounds the per-client table. Idle clients (whose bucket has refilled, so forgetting them changes
// nothing) are swept when it is full; if it is still full, new clients are refused as if the instance were busy.
const maxClients = 50_000

// Limiter admits requests.
type Limiter struct {
	client Bucket
	now    func() time.Time

	mu      sync.Mutex
	global  *rate.Limiter
	clients map[string]*rate.Limiter
}

// New returns a Limiter; now nil means time.Now.
func New(perClient, global Bucket, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{client: perClient, now: now, global: rate.NewLimiter(global.limit(), global.Burst),
		clients: map[string]*rate.Limiter{}}
}

// Decision is the answer for one request.
type Decision struct {
	OK bool
	// Global is true when the instance (not this client) is over its limit: the caller answers 503, not 429.
	Global bool
	// RetryAfter is how long until a token is available.
	RetryAfter time.Duration
}

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1: the Retry-After header value.
func (d Decision) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(d.RetryAfter.Seconds())))
}

// Allow takes one token from client's bucket and one from the global bucket, or neither.
func (l *Limiter) Allow(client string) Decision {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[client]
	if c == nil {
		if len(l.clients) >= maxClients {
			l.sweep(now)
		}
		if len(l.clients) >= maxClients {
			return Decision{Global: true, RetryAfter: l.client.Per}
		}
		c = rate.NewLimiter(l.client.limit(), l.client.Burst)
		l.clients[client] = c
	}
	r := c.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request does not consume the token it was refused for
		return Decision{RetryAfter: d}
	}
	g := l.global.ReserveN(now, 1)
	if d := g.DelayFrom(now); d > 0 {
		g.CancelAt(now)
		r.CancelAt(now)
		return Decision{Global: true, RetryAfter: d}
	}
	return Decision{OK: true}
}

// sweep forgets clients whose bucket is full again: a fresh bucket is identical.
func (l *Limiter) sweep(now time.Time) {
	for k, c := range l.clients {
		if c.TokensAt(now) >= float64(l.client.Burst) {
			delete(l.clients, k)
		}
	}
}

// ClientKey identifies the client of r for the per-client bucket. The Functions host forwards the original
// request's headers (enableForwardingHttpRequest), and the platform's front end appends the address it saw to
// X-Forwarded-For, so the last entry is the one no client can forge; entries before it are whatever the client
// sent. Without the header (local runs) it is RemoteAddr. IPv6 clients are grouped by /64, the smallest
// allocation a site gets, so one host cannot spread itself over 2^64 buckets.
func ClientKey(r *http.Request) string {
	if vals := r.Header.Values("X-Forwarded-For"); len(vals) > 0 {
		all := strings.Split(vals[len(vals)-1], ",")
		if ip, ok := parseAddr(strings.TrimSpace(all[len(all)-1])); ok {
			return key(ip)
		}
	}
	if ip, ok := parseAddr(r.RemoteAddr); ok {
		return key(ip)
	}
	return r.RemoteAddr
}

// parseAddr reads "ip", "ip:port", "[ipv6]:port" or "[ipv6]".
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	return ip, err == nil
}

func key(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// Strikes bounds failed tries per key — wrong guesses of a shared secret by one client at one endpoint, say — with
// a token bucket per key from which every try takes a token that only a try that did not fail gets back. A key
// whose bucket is empty is refused until it refills. The token is taken before the try is judged, so concurrent
// tries cannot overrun the bucket between a check and a count.
type Strikes struct {
	bucket Bucket
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

// overflowKey is the bucket every key shares while the table is full of keys still refilling: many sources then
// hold one another back instead of going uncounted.
const overflowKey = "\x00overflow"

// NewStrikes returns Strikes allowing each key b.Burst failures, refilled at b.Burst per b.Per; now nil means
// time.Now.
func NewStrikes(b Bucket, now func() time.Time) *Strikes {
	if now == nil {
		now = time.Now
	}
	return &Strikes{bucket: b, now: now, keys: map[string]*rate.Limiter{}}
}

// Take takes a token for one try by key. ok is false when key has none left: the try must be refused without
// being judged. Otherwise call forgive once the try turned out not to be a failure; a failure keeps the token.
func (s *Strikes) Take(key string) (forgive func(), ok bool) {
	now := s.now()
	s.mu.Lock()
	l := s.keys[key]
	if l == nil {
		if len(s.keys) >= maxClients {
			s.sweep(now)
		}
		if len(s.keys) >= maxClients {
			key = overflowKey
		}
		if l = s.keys[key]; l == nil {
			l = rate.NewLimiter(s.bucket.limit(), s.bucket.Burst)
			s.keys[key] = l
		}
	}
	s.mu.Unlock()
	r := l.ReserveN(now, 1)
	if r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return nil, false
	}
	// At the time of the take: x/time/rate gives back nothing for a reservation cancelled after its time to act.
	return func() { r.CancelAt(now) }, true
}

// sweep forgets keys whose bucket is full again.
func (s *Strikes) sweep(now time.Time) {
	for k, l := range s.keys {
		if l.TokensAt(now) >= float64(s.bucket.Burst) {
			delete(s.keys, k)
		}
	}
}
