package crl

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCurrent_SignedCRLContent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Validity: 24 * time.Hour})
	t1 := time.Date(2026, 2, 1, 8, 30, 15, 0, time.UTC)
	t2 := time.Date(2026, 2, 2, 9, 0, 0, 0, time.FixedZone("CET", 3600))
	f.src.entries = []Entry{
		{Serial: big.NewInt(0x3000), RevokedAt: t2, Reason: 9}, // privilegeWithdrawn
		{Serial: big.NewInt(0x1000), RevokedAt: t1, Reason: 1}, // keyCompromise
		{Serial: big.NewInt(0x2000), RevokedAt: t1, Reason: 0}, // unspecified: no extension
		{Serial: big.NewInt(0x1000), RevokedAt: t2, Reason: 4}, // duplicate, later: dropped
	}

	c, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rl := mustParse(t, c, f.ca.cert)

	if rl.Number.Cmp(big.NewInt(1)) != 0 || c.Number.Cmp(rl.Number) != 0 {
		t.Errorf("number = %v (struct %v), want 1", rl.Number, c.Number)
	}
	now := f.clock.Now()
	// thisUpdate is back-dated like certificates, so a relying party whose clock is a little slow (OpenSSL allows
	// no skew there) does not find a fresh CRL "not yet valid".
	if want := now.Add(-ThisUpdateBackdate); !rl.ThisUpdate.Equal(want) || !c.ThisUpdate.Equal(want) || !c.Signed.Equal(now) {
		t.Errorf("ThisUpdate = %v / %v, signed %v; want %v, signed %v", rl.ThisUpdate, c.ThisUpdate, c.Signed, want, now)
	}
	if want := now.Add(24 * time.Hour); !rl.NextUpdate.Equal(want) || !c.NextUpdate.Equal(want) {
		t.Errorf("NextUpdate = %v / %v, want %v", rl.NextUpdate, c.NextUpdate, want)
	}
	if rl.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("signature algorithm = %v", rl.SignatureAlgorithm)
	}
	if string(rl.AuthorityKeyId) != string(f.ca.cert.SubjectKeyId) {
		t.Error("AKI does not match CA SKID")
	}
	want := []struct {
		serial int64
		at     time.Time
		reason int
	}{{0x1000, t1, 1}, {0x2000, t1, 0}, {0x3000, t2, 9}}
	if len(rl.RevokedCertificateEntries) != len(want) || c.Entries != len(want) {
		t.Fatalf("got %d entries (struct %d), want %d", len(rl.RevokedCertificateEntries), c.Entries, len(want))
	}
	for i, w := range want {
		e := rl.RevokedCertificateEntries[i]
		if e.SerialNumber.Int64() != w.serial || !e.RevocationTime.Equal(w.at) || e.ReasonCode != w.reason {
			t.Errorf("entry %d = {%x %v %d}, want {%x %v %d}", i, e.SerialNumber, e.RevocationTime, e.ReasonCode, w.serial, w.at, w.reason)
		}
		hasReasonExt := false
		for _, ext := range e.Extensions {
			if ext.Id.String() == "2.5.29.21" {
				hasReasonExt = true
			}
		}
		if hasReasonExt != (w.reason != 0) {
			t.Errorf("entry %d: reasonCode extension present = %v", i, hasReasonExt)
		}
	}

	block, rest := pem.Decode(c.PEM)
	if block == nil || block.Type != "X509 CRL" || len(rest) != 0 || string(block.Bytes) != string(c.DER) {
		t.Error("PEM does not wrap the DER as one X509 CRL block")
	}
	if !strings.HasPrefix(c.ETag, `"`) || !strings.HasSuffix(c.ETag, `"`) || len(c.ETag) < 10 {
		t.Errorf("ETag %q is not a quoted strong tag", c.ETag)
	}
	if got := f.ca.signer.Calls(); got != 1 {
		t.Errorf("Sign calls = %d, want 1", got)
	}
}

func TestCurrent_EmptyCRL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	c, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rl := mustParse(t, c, f.ca.cert)
	if len(rl.RevokedCertificateEntries) != 0 {
		t.Errorf("entries = %d, want 0", len(rl.RevokedCertificateEntries))
	}
	if got := rl.NextUpdate.Sub(rl.ThisUpdate); got != DefaultValidity+ThisUpdateBackdate {
		t.Errorf("nextUpdate − thisUpdate = %v, want the default %v and the back-dating", got, DefaultValidity)
	}
}

func TestCurrent_CachedUntilHalfLife(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Validity: 24 * time.Hour})
	first, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(12*time.Hour - time.Second)
	for range 5 {
		c, err := f.pub.Current(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if c != first {
			t.Fatal("CRL regenerated before half its validity")
		}
	}
	if got := f.ca.signer.Calls(); got != 1 {
		t.Fatalf("Sign calls = %d, want 1 while cached", got)
	}
	if got := f.src.calls.Load(); got != 1 {
		t.Fatalf("source reads = %d, want 1 while cached", got)
	}

	f.clock.Advance(time.Second)
	second, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("not regenerated at half-life: number %v after %v", second.Number, first.Number)
	}
	if !second.Signed.Equal(f.clock.Now()) {
		t.Errorf("new CRL signed %v, want %v", second.Signed, f.clock.Now())
	}
	if got := f.ca.signer.Calls(); got != 2 {
		t.Errorf("Sign calls = %d, want 2", got)
	}
}

func TestInvalidate_RegeneratesWithNewRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	first, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.src.add(Entry{Serial: big.NewInt(77), RevokedAt: f.clock.Now(), Reason: 1})
	// Without Invalidate the cached CRL is still served.
	if c, _ := f.pub.Current(t.Context()); c != first {
		t.Fatal("CRL regenerated without Invalidate")
	}
	f.pub.Invalidate()
	second, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if second.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("number %v not above %v", second.Number, first.Number)
	}
	rl := mustParse(t, second, f.ca.cert)
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Int64() != 77 {
		t.Fatalf("new CRL does not list the revocation: %+v", rl.RevokedCertificateEntries)
	}
	if third, _ := f.pub.Current(t.Context()); third != second {
		t.Error("CRL regenerated again without a new Invalidate")
	}
}

func TestNumbers_StrictlyIncreaseAcrossPublishersSharingCounter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	other := f.newPublisher(t, Options{})
	var last *big.Int
	for i := range 6 {
		p := f.pub
		if i%2 == 1 {
			p = other
		}
		p.Invalidate()
		c, err := p.Current(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		rl := mustParse(t, c, f.ca.cert)
		if last != nil && rl.Number.Cmp(last) <= 0 {
			t.Fatalf("generation %d: number %v not above %v", i, rl.Number, last)
		}
		last = rl.Number
	}
}

// slowIndex is a Source whose every read takes delay, as a paged listing of a large index does.
type slowIndex struct {
	delay time.Duration
	calls atomic.Int64
}

func (x *slowIndex) RevokedEntries(ctx context.Context) ([]Entry, error) {
	x.calls.Add(1)
	select {
	case <-time.After(x.delay):
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestConcurrentGenerationsAllPublish: instances that regenerate at once (after a revocation every instance does)
// supersede one another while they read the index; each must still publish, its pause before starting over long
// enough that the instance which superseded it reaches its check first, instead of superseding it back.
func TestConcurrentGenerationsAllPublish(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	idx := &slowIndex{delay: 100 * time.Millisecond}
	const instances = 4
	errs := make(chan error, instances)
	for range instances {
		p, err := NewPublisher(f.ca.cert, f.ca.signer, idx, f.counter, Options{Clock: f.clock,
			GenerateTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := p.Current(t.Context())
			errs <- err
		}()
	}
	for range instances {
		if err := <-errs; err != nil {
			t.Errorf("an instance did not publish: %v", err)
		}
	}
	if n := idx.calls.Load(); n > 4*instances {
		t.Errorf("%d index reads for %d CRLs: the instances kept superseding one another", n, instances)
	}
}

// TestRetryPauseOutlastsARead: a superseded instance pauses at least as long as its last attempt took, however
// long that was, so that the instance which superseded it (at most one read from its check) gets there first.
func TestRetryPauseOutlastsARead(t *testing.T) {
	for _, took := range []time.Duration{0, time.Millisecond, 100 * time.Millisecond, 3 * time.Second, 30 * time.Second} {
		floor := max(took, minRetryPause)
		for range 200 {
			if p := retryPause(took); p < floor || p >= 2*floor {
				t.Fatalf("retryPause(%v) = %v, want within [%v, %v)", took, p, floor, 2*floor)
			}
		}
	}
}

// sharedIndex is one revocation index read by several publishers (function instances).
type sharedIndex struct {
	mu      sync.Mutex
	entries []Entry
}

func (x *sharedIndex) add(e Entry) {
	x.mu.Lock()
	x.entries = append(x.entries, e)
	x.mu.Unlock()
}

// indexView is one instance's Source over a sharedIndex. With a gate, each read first signals started and then
// waits for the gate before it looks at the index, as a paged listing of a large index is still running well after
// the CRL number was taken; unlike memSource, a held read sees what was added while it was held.
type indexView struct {
	idx     *sharedIndex
	gate    chan struct{} // nil: no wait
	started chan struct{}
	calls   atomic.Int64
}

func (v *indexView) RevokedEntries(ctx context.Context) ([]Entry, error) {
	v.calls.Add(1)
	if v.gate != nil {
		select {
		case v.started <- struct{}{}:
		default:
		}
		select {
		case <-v.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	v.idx.mu.Lock()
	defer v.idx.mu.Unlock()
	return slices.Clone(v.idx.entries), nil
}

// Two instances share the CRL counter and the revocation index. A takes number 1 and is still reading the index
// when B takes 2, reads and publishes; then a certificate is revoked and A's read sees it. Relying parties take a
// higher number to supersede a lower one (RFC 5280 §5.2.3), so A must not publish number 1 listing a revocation
// that CRL 2 lacks: it finds the counter moved on, signs nothing and starts over with number 3.
func TestHigherCRLNumberListsEveryEarlierRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	idx := &sharedIndex{}
	viewA := &indexView{idx: idx, gate: make(chan struct{}), started: make(chan struct{}, 1)}
	viewB := &indexView{idx: idx}
	pubA, err := NewPublisher(f.ca.cert, f.ca.signer, viewA, f.counter, Options{Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	pubB, err := NewPublisher(f.ca.cert, f.ca.signer, viewB, f.counter, Options{Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		c   *CRL
		err error
	}
	resA := make(chan result, 1)
	go func() {
		c, err := pubA.Current(context.Background())
		resA <- result{c, err}
	}()
	await(t, viewA.started) // A holds number 1 and is reading the index

	crlB, err := pubB.Current(t.Context()) // B takes number 2 and publishes
	if err != nil {
		t.Fatal(err)
	}
	revoked := Entry{Serial: big.NewInt(0xBAD), RevokedAt: f.clock.Now(), Reason: 1}
	idx.add(revoked)
	close(viewA.gate)
	a := <-resA
	if a.err != nil {
		t.Fatal(a.err)
	}

	lists := func(c *CRL) bool {
		for _, e := range mustParse(t, c, f.ca.cert).RevokedCertificateEntries {
			if e.SerialNumber.Cmp(revoked.Serial) == 0 {
				return true
			}
		}
		return false
	}
	lo, hi := a.c, crlB
	if lo.Number.Cmp(hi.Number) > 0 {
		lo, hi = hi, lo
	}
	if lists(lo) && !lists(hi) {
		t.Fatalf("CRL %v lists revoked serial %x but the later CRL %v (published by another instance) does not",
			lo.Number, revoked.Serial, hi.Number)
	}
	if a.c.Number.Cmp(big.NewInt(3)) != 0 || !lists(a.c) {
		t.Errorf("instance A published CRL %v (lists the revocation: %v), want a fresh attempt as number 3 listing it",
			a.c.Number, lists(a.c))
	}
	if got := viewA.calls.Load(); got != 2 {
		t.Errorf("instance A read the index %d times, want 2 (the superseded attempt and the retry)", got)
	}
	if got := f.ca.signer.Calls(); got != 2 {
		t.Errorf("Sign calls = %d, want 2 (B's CRL and A's retry; nothing for the superseded attempt)", got)
	}
}

// skewedCounter reports a current number skew away from the last one it handed out: +1 as if another instance
// always took a number while this one read the index, -1 as a counter that went backwards.
type skewedCounter struct {
	MemoryCounter
	skew int64
}

func (c *skewedCounter) CurrentCRLNumber(ctx context.Context) (*big.Int, error) {
	n, err := c.MemoryCounter.CurrentCRLNumber(ctx)
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(c.skew)), nil
}

// A generation that is superseded on every attempt keeps starting over until GenerateTimeout and then fails
// without a signature; a counter that reports less than it just handed out is an error, not a CRL.
func TestGenerate_SignsOnlyUnsupersededNumbers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		skew int64
		want error
	}{
		{"fail/always superseded", +1, context.DeadlineExceeded},
		{"fail/counter went backwards", -1, ErrInvalidNumber},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Options{})
			ctr := &skewedCounter{skew: tt.skew}
			p, err := NewPublisher(f.ca.cert, f.ca.signer, f.src, ctr, Options{
				Clock: f.clock, GenerateTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Current(t.Context()); !errors.Is(err, tt.want) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got := f.ca.signer.Calls(); got != 0 {
				t.Errorf("Sign calls = %d, want 0", got)
			}
			if tt.skew > 0 && f.src.calls.Load() < 2 {
				t.Errorf("index read %d times: a superseded generation did not start over", f.src.calls.Load())
			}
		})
	}
}

func TestCurrent_ConcurrentCallersShareOneGeneration(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	f.src.gate = make(chan struct{})
	f.src.started = make(chan struct{}, 10)

	const n = 32
	results := make(chan *CRL, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c, err := f.pub.Current(t.Context())
			results <- c
			errs <- err
		})
	}
	await(t, f.src.started) // one generation is in flight
	close(f.src.gate)
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var first *CRL
	for c := range results {
		if first == nil {
			first = c
		}
		if c != first {
			t.Fatal("callers received different CRLs")
		}
	}
	if got := f.ca.signer.Calls(); got != 1 {
		t.Errorf("Sign calls = %d, want exactly 1", got)
	}
	if got := f.src.calls.Load(); got != 1 {
		t.Errorf("source reads = %d, want 1", got)
	}
}

func TestInvalidate_DuringGenerationIsHonoured(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	f.src.gate = make(chan struct{})
	f.src.started = make(chan struct{}, 10)

	early := make(chan *CRL, 1)
	go func() {
		c, err := f.pub.Current(context.Background())
		if err != nil {
			t.Error(err)
		}
		early <- c
	}()
	await(t, f.src.started) // generation 1 read started, before the revocation

	f.src.add(Entry{Serial: big.NewInt(5), RevokedAt: f.clock.Now(), Reason: 1})
	f.pub.Invalidate()
	late := make(chan *CRL, 1)
	go func() {
		c, err := f.pub.Current(context.Background())
		if err != nil {
			t.Error(err)
		}
		late <- c
	}()
	// Wait until the late caller has joined generation 1, then release it: its snapshot predates the
	// revocation, so the late caller must not be handed its result.
	deadline := time.Now().Add(10 * time.Second)
	for f.pub.waiters.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("late caller never joined the running generation")
		}
		time.Sleep(time.Millisecond)
	}
	f.src.gate <- struct{}{}
	await(t, f.src.started) // generation 2 started for the late caller
	close(f.src.gate)

	<-early
	c := <-late
	rl := mustParse(t, c, f.ca.cert)
	if len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("caller arriving after Invalidate got a CRL without the revocation (number %v)", rl.Number)
	}
	if cur, _ := f.pub.Current(t.Context()); cur != c {
		t.Error("newest CRL is not the cached one")
	}
}

func TestCurrent_ServesCachedCRLWhenRegenerationFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Validity: 24 * time.Hour, RetryBackoff: time.Minute})
	first, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.ca.signer.Fail(errSignerDown)
	f.clock.Advance(13 * time.Hour) // past half-life

	c, err := f.pub.Current(t.Context())
	if err != nil || c != first {
		t.Fatalf("Current = %v, %v; want the cached CRL and no error", c, err)
	}
	if !strings.Contains(f.logs.String(), "serving cached CRL") || !strings.Contains(f.logs.String(), errSignerDown.Error()) {
		t.Errorf("failure not logged: %q", f.logs.String())
	}
	// Within the backoff no new attempt is made.
	signs := f.ca.signer.Calls()
	if c, err := f.pub.Current(t.Context()); err != nil || c != first {
		t.Fatal("cached CRL not served during backoff")
	}
	if f.ca.signer.Calls() != signs {
		t.Error("regeneration retried inside the backoff")
	}
	// After the backoff a retry happens and succeeds.
	f.ca.signer.Fail(nil)
	f.clock.Advance(time.Minute)
	c, err = f.pub.Current(t.Context())
	if err != nil || c == first {
		t.Fatalf("no regeneration after backoff: %v", err)
	}
}

// TestCurrent_SlowRegeneration: a regeneration that hangs (a store in a brownout). For the half-life refresh a
// download waits StaleWait at most and gets the cached CRL, which the regeneration replaces once done. After
// Invalidate (a revocation) the cached CRL lacks the revocation, so the download waits for the new one instead.
func TestCurrent_SlowRegeneration(t *testing.T) {
	t.Parallel()
	for _, revoked := range []bool{false, true} {
		t.Run(fmt.Sprintf("revoked=%t", revoked), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Options{Validity: 24 * time.Hour, StaleWait: 50 * time.Millisecond})
			first, err := f.pub.Current(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			f.src.gate = make(chan struct{})
			f.src.started = make(chan struct{}, 1)
			if revoked {
				f.pub.Invalidate()
			} else {
				f.clock.Advance(13 * time.Hour) // past half-life: regenerate
			}
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			c, err := f.pub.Current(ctx)
			switch {
			case revoked && (err == nil || c == first):
				t.Fatalf("Current gave the cached CRL (error %v); want to wait for the one listing the revocation", err)
			case !revoked && (err != nil || c != first):
				t.Fatalf("Current = %v; want the cached CRL after StaleWait", err)
			}
			await(t, f.src.started)
			close(f.src.gate)
			deadline := time.Now().Add(10 * time.Second)
			for {
				c, err := f.pub.Current(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if c.Number.Cmp(first.Number) > 0 {
					break // the regeneration finished and replaced the cached CRL
				}
				if time.Now().After(deadline) {
					t.Fatal("the regeneration never replaced the cached CRL")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n := f.src.calls.Load(); n != 2 {
				t.Errorf("index reads %d, want 2 (the first CRL and one regeneration)", n)
			}
		})
	}
}

func TestCurrent_UnavailableAfterNextUpdate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Validity: time.Hour, RetryBackoff: time.Second})
	if _, err := f.pub.Current(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.src.setErr(errStoreDown)
	f.clock.Advance(time.Hour)
	c, err := f.pub.Current(t.Context())
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errStoreDown) || c != nil {
		t.Fatalf("Current = %v, %v; want ErrUnavailable wrapping the store error", c, err)
	}
	if !strings.Contains(f.logs.String(), "no valid CRL") {
		t.Errorf("failure not logged: %q", f.logs.String())
	}
}

func TestCurrent_NoCRLYetAndSourceDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	f.src.setErr(errStoreDown)
	if _, err := f.pub.Current(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if got := f.ca.signer.Calls(); got != 0 {
		t.Errorf("Sign called %d times for a failed read", got)
	}
	// Invalidate lifts the backoff so a revocation is published as soon as the store is back.
	f.src.setErr(nil)
	f.pub.Invalidate()
	if _, err := f.pub.Current(t.Context()); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestCurrent_CallerCancellationDoesNotAbortSharedGeneration(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	f.src.gate = make(chan struct{})
	f.src.started = make(chan struct{}, 1)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := f.pub.Current(ctx)
		errc <- err
	}()
	await(t, f.src.started)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller err = %v", err)
	}
	close(f.src.gate)
	c, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c.Number.Int64() != 1 || f.src.calls.Load() != 1 {
		t.Errorf("generation started by the cancelled caller was not reused (number %v, reads %d)", c.Number, f.src.calls.Load())
	}
}

func TestGenerate_InvalidEntries(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		entry Entry
	}{
		{"fail/nil serial", Entry{RevokedAt: now}},
		{"fail/zero serial", Entry{Serial: big.NewInt(0), RevokedAt: now}},
		{"fail/negative serial", Entry{Serial: big.NewInt(-5), RevokedAt: now}},
		{"fail/zero time", Entry{Serial: big.NewInt(5)}},
		{"fail/reason 7 unused", Entry{Serial: big.NewInt(5), RevokedAt: now, Reason: 7}},
		{"fail/reason 8 removeFromCRL", Entry{Serial: big.NewInt(5), RevokedAt: now, Reason: 8}},
		{"fail/reason 11", Entry{Serial: big.NewInt(5), RevokedAt: now, Reason: 11}},
		{"fail/reason -1", Entry{Serial: big.NewInt(5), RevokedAt: now, Reason: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Options{})
			f.src.entries = []Entry{{Serial: big.NewInt(1), RevokedAt: now}, tt.entry}
			_, err := f.pub.Current(t.Context())
			if !errors.Is(err, ErrInvalidEntry) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrInvalidEntry", err)
			}
			if f.ca.signer.Calls() != 0 {
				t.Error("signed a CRL from invalid entries")
			}
		})
	}
}

type fixedCounter struct{ n *big.Int }

func (c fixedCounter) NextCRLNumber(context.Context) (*big.Int, error)    { return c.n, nil }
func (c fixedCounter) CurrentCRLNumber(context.Context) (*big.Int, error) { return c.n, nil }

func TestGenerate_InvalidCRLNumber(t *testing.T) {
	t.Parallel()
	tooLong := new(big.Int).Lsh(big.NewInt(1), 160)
	for _, n := range []*big.Int{nil, big.NewInt(-1), tooLong} {
		f := newFixture(t, Options{})
		p, err := NewPublisher(f.ca.cert, f.ca.signer, f.src, fixedCounter{n}, Options{Clock: f.clock})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Current(t.Context()); !errors.Is(err, ErrInvalidNumber) {
			t.Errorf("number %v: err = %v, want ErrInvalidNumber", n, err)
		}
	}
}

func TestMemoryCounter(t *testing.T) {
	t.Parallel()
	var c MemoryCounter
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int64]bool{}
	for range 50 {
		wg.Go(func() {
			n, err := c.NextCRLNumber(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[n.Int64()] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	for i := int64(1); i <= 50; i++ {
		if !seen[i] {
			t.Fatalf("number %d never returned (duplicates handed out)", i)
		}
	}
	if n, err := c.CurrentCRLNumber(t.Context()); err != nil || n.Int64() != 50 {
		t.Errorf("CurrentCRLNumber = %v, %v; want 50", n, err)
	}
	if n, err := c.NextCRLNumber(t.Context()); err != nil || n.Int64() != 51 {
		t.Errorf("NextCRLNumber after CurrentCRLNumber = %v, %v; want 51 (reading must not allocate)", n, err)
	}
	var zero MemoryCounter
	if n, err := zero.CurrentCRLNumber(t.Context()); err != nil || n.Sign() != 0 {
		t.Errorf("CurrentCRLNumber before the first number = %v, %v; want 0", n, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.NextCRLNumber(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v", err)
	}
	if _, err := c.CurrentCRLNumber(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: CurrentCRLNumber err = %v", err)
	}
}

func TestNewPublisher_Validation(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, nil)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noCRLSign := *ca.cert
	noCRLSign.KeyUsage = x509.KeyUsageCertSign
	noSKID := *ca.cert
	noSKID.SubjectKeyId = nil
	src, ctr := &memSource{}, &MemoryCounter{}

	tests := []struct {
		name   string
		cert   *x509.Certificate
		signer crypto.Signer
		opts   Options
		want   error
	}{
		{"fail/key mismatch", ca.cert, otherKey, Options{}, ErrKeyMismatch},
		{"fail/no cRLSign", &noCRLSign, ca.key, Options{}, ErrInvalidIssuer},
		{"fail/no SKID", &noSKID, ca.key, Options{}, ErrInvalidIssuer},
		{"fail/nil cert", nil, ca.key, Options{}, ErrInvalidIssuer},
		{"fail/validity too short", ca.cert, ca.key, Options{Validity: time.Minute}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPublisher(tt.cert, tt.signer, src, ctr, tt.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewPublisher(ca.cert, ca.key, src, ctr, Options{}); err != nil {
		t.Fatalf("ok/valid: %v", err)
	}
}

func TestSignatureAlgorithmFollowsKey(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		key  crypto.Signer
		want x509.SignatureAlgorithm
	}{
		{"rsa", rsaKey, x509.SHA256WithRSA},
		{"p256", p256, x509.ECDSAWithSHA256},
		{"p384", p384, x509.ECDSAWithSHA384},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := newTestCA(t, tt.key)
			p, err := NewPublisher(ca.cert, ca.signer, &memSource{}, &MemoryCounter{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := p.Current(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			rl := mustParse(t, c, ca.cert)
			if rl.SignatureAlgorithm != tt.want {
				t.Errorf("algorithm = %v, want %v", rl.SignatureAlgorithm, tt.want)
			}
			if got := ca.signer.Calls(); got != 1 {
				t.Errorf("Sign calls = %d, want 1", got)
			}
		})
	}
	// A key the CA does not sign with (custody.SignatureAlgorithmFor: P-521, Ed25519) gets no publisher, as it
	// gets no issuer: a CRL must never be signed in a way the certificates it lists were not.
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	for _, key := range []crypto.Signer{p521, edKey} {
		ca := newTestCA(t, key)
		if _, err := NewPublisher(ca.cert, ca.signer, &memSource{}, &MemoryCounter{}, Options{}); !errors.Is(err, ErrInvalidIssuer) {
			t.Errorf("NewPublisher with a %T CA key: %v, want ErrInvalidIssuer", key, err)
		}
	}
}

// TestExpiredEntriesStayOnOneCRLAfterExpiry: RFC 5280 §3.3 lets a revoked certificate's entry leave the CRL once it
// has expired, but only after it appeared on a CRL issued beyond its validity period. An entry is kept while a CRL
// signed now could be the first one after the expiry (notAfter + the CRL's validity), and dropped after that.
func TestExpiredEntriesStayOnOneCRLAfterExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	now := f.clock.Now().Truncate(time.Second)
	revoked := now.Add(-30 * 24 * time.Hour)
	for serial, notAfter := range map[int64]time.Time{
		1: {},                                      // notAfter unknown (indexed before the index kept it): kept
		2: now.Add(time.Hour),                      // valid: kept
		3: now.Add(-time.Minute),                   // expired a minute ago: kept
		4: now.Add(-DefaultValidity + time.Second), // the last second a CRL signed now may be the first after expiry
		5: now.Add(-DefaultValidity),               // a CRL signed since expiry has listed it: dropped
		6: now.Add(-400 * 24 * time.Hour),          // long expired: dropped
	} {
		f.src.add(Entry{Serial: big.NewInt(serial), RevokedAt: revoked, Reason: 1, NotAfter: notAfter})
	}
	c, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range mustParse(t, c, f.ca.cert).RevokedCertificateEntries {
		got = append(got, e.SerialNumber.Int64())
	}
	if want := []int64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("CRL lists serials %v, want %v", got, want)
	}
	if c.Entries != 4 {
		t.Errorf("CRL.Entries = %d, want 4", c.Entries)
	}
}

// resetCounter is a shared counter whose document was set back (restored from an older backup, say): it hands out
// whatever number it holds now.
type resetCounter struct{ n atomic.Int64 }

func (c *resetCounter) NextCRLNumber(context.Context) (*big.Int, error) {
	return big.NewInt(c.n.Load()), nil
}
func (c *resetCounter) CurrentCRLNumber(context.Context) (*big.Int, error) {
	return big.NewInt(c.n.Load()), nil
}

// TestNumberNeverGoesBackAfterCounterReset: a CRL signed with a lower number than the one already served does not
// replace it (RFC 5280 §5.2.3: relying parties take the higher number as the newer CRL, so serving a lower one
// after a higher one would have them keep the higher one, or reject the lower).
func TestNumberNeverGoesBackAfterCounterReset(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	ctr := &resetCounter{}
	ctr.n.Store(10)
	p, err := NewPublisher(f.ca.cert, f.ca.signer, f.src, ctr, Options{Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.Current(t.Context())
	if err != nil || first.Number.Int64() != 10 {
		t.Fatalf("first CRL = %v, %v; want number 10", first, err)
	}
	ctr.n.Store(3)
	p.Invalidate()
	got, err := p.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.Number.Cmp(first.Number) < 0 {
		t.Fatalf("served CRL number %v after %v: the number went back", got.Number, first.Number)
	}
}

// TestCurrent_SlowRegenerationNeverServesAnExpiredCRL: a caller that started waiting for a slow regeneration while
// the cached CRL was still valid does not get that CRL after StaleWait if it has reached its nextUpdate meanwhile:
// relying parties reject an expired CRL (OpenSSL: "CRL has expired"), so it must not be served as the current one.
// The caller keeps waiting for the regeneration instead.
func TestCurrent_SlowRegenerationNeverServesAnExpiredCRL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Validity: 24 * time.Hour, StaleWait: 200 * time.Millisecond})
	first, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.src.gate = make(chan struct{})
	f.src.started = make(chan struct{}, 1)
	f.clock.Advance(first.NextUpdate.Sub(f.clock.Now()) - time.Second) // one second of validity left

	type result struct {
		c   *CRL
		err error
	}
	got := make(chan result, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	go func() {
		c, err := f.pub.Current(ctx)
		got <- result{c, err}
	}()
	await(t, f.src.started)
	deadline := time.Now().Add(10 * time.Second)
	for f.pub.waiters.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("caller never waited for the regeneration")
		}
		time.Sleep(time.Millisecond)
	}
	f.clock.Advance(2 * time.Second) // the cached CRL expires while the caller waits

	r := <-got
	if r.c != nil && !f.clock.Now().Before(r.c.NextUpdate) {
		t.Fatalf("Current served CRL %v past its nextUpdate %v (now %v)", r.c.Number, r.c.NextUpdate, f.clock.Now())
	}
	close(f.src.gate)
	c, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c.Number.Cmp(first.Number) <= 0 || !f.clock.Now().Before(c.NextUpdate) {
		t.Errorf("after the regeneration Current = CRL %v until %v, want a newer one valid now", c.Number, c.NextUpdate)
	}
}
