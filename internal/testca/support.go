package testca

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// LogBuffer collects what a slog handler writes, so a test can assert on log output while the code under test
// logs from other goroutines (HTTP handlers, background refreshes). A bare bytes.Buffer would race there. The
// zero value is ready to use; a LogBuffer must not be copied after first use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it never fails, as slog handlers expect of an in-memory sink.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Records decodes the lines a slog.JSONHandler wrote and returns, in order, those whose "msg" is exactly msg:
// tests assert on a record's attributes (an audit line's actor, a run's counts) rather than on substrings that
// another record could also contain. Lines that are not JSON objects are skipped.
func (b *LogBuffer) Records(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// Clock is a settable clock, so a test can move past expiry, retry windows, lease times and cache lifetimes
// without sleeping. It satisfies interface{ Now() time.Time }, and its method value c.Now is the func() time.Time
// that other packages take as a clock. It is safe for concurrent use: the code under test reads it from its own
// goroutines while the test advances it. The zero value reads as the zero time; NewClock starts it elsewhere.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now is the clock's current time; it moves only through Advance and Set.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (backward for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// CountingSigner wraps a crypto.Signer, standing in for a remote (Key Vault) key whose every use costs a round
// trip: tests count Sign calls to prove that caches and idempotency keep the CA key out of the hot path, and
// make it fail to prove that an unavailable key degrades as designed. Build it as &CountingSigner{Signer: key}.
// It is safe for concurrent use.
type CountingSigner struct {
	crypto.Signer
	calls atomic.Int64
	err   atomic.Pointer[error]
}

// Sign counts the call, then fails with the error given to Fail, if any, or signs with the wrapped key.
func (s *CountingSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.calls.Add(1)
	if err := s.err.Load(); err != nil {
		return nil, *err
	}
	return s.Signer.Sign(rand, digest, opts)
}

// Calls is how many times Sign has been called, failed calls included.
func (s *CountingSigner) Calls() int64 {
	return s.calls.Load()
}

// Fail makes every later Sign return err without touching the key; Fail(nil) makes Sign work again.
func (s *CountingSigner) Fail(err error) {
	if err == nil {
		s.err.Store(nil)
		return
	}
	s.err.Store(&err)
}

// Do sends req with c and returns the response with its body read and closed, failing the test on a transport
// error: tests assert on status, headers and body together, and an unread body would keep the connection busy.
func Do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Searcher is the part of store.Store that AllRecords pages through, so a test can pass the store behind any
// fault-injecting wrapper.
type Searcher interface {
	Search(ctx context.Context, q store.Query) (page []*store.Record, next string, err error)
}

// AllRecords follows q's continuation tokens to the end and returns every record matching q, so invariant checks
// see the whole store however it pages; q.Limit is the page size. It fails the test on a store error.
func AllRecords(t testing.TB, s Searcher, q store.Query) []*store.Record {
	t.Helper()
	var all []*store.Record
	for {
		page, next, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		q.Continuation = next
	}
}

// InstantSleep stands in for a sleep(ctx, d) that a retry loop waits on, without waiting: it adds d to the time
// slept under ctx and returns at once, and once the time slept under a ctx reaches what was left of its deadline it
// answers context.DeadlineExceeded, as the real wait would have. So a test runs through a backoff of the whole
// deadline in no time, and sees how often and how long the code under test waited. The zero value is ready to use.
type InstantSleep struct {
	mu    sync.Mutex
	slept map[context.Context]time.Duration
	calls int
	total time.Duration
}

// Sleep has the signature of ctxtime.Sleep, to be passed where a retry loop takes its wait (issuance.Config.Sleep):
// it records d and returns at once, or DeadlineExceeded as described above.
func (s *InstantSleep) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slept == nil {
		s.slept = map[context.Context]time.Duration{}
	}
	s.calls++
	s.total += d
	s.slept[ctx] += d
	if deadline, ok := ctx.Deadline(); ok && s.slept[ctx] >= time.Until(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Calls is how many times Sleep was called.
func (s *InstantSleep) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Total is the time Sleep was asked to wait, in all.
func (s *InstantSleep) Total() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}
