package crl

import (
	"context"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memGeneration is a GenerationSource that counts its reads.
type memGeneration struct {
	mu    sync.Mutex
	gen   uint64
	err   error
	reads atomic.Int64
}

func (g *memGeneration) RevocationGeneration(context.Context) (uint64, error) {
	g.reads.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen, g.err
}

// TestGenerationFollowsRevocationsElsewhere: a revocation made by another instance (the index grows and the
// generation is bumped; this publisher's Invalidate is never called) is in the CRL served here within the
// generation interval, long before the CRL's own refresh point; the generation is read at most once per interval.
func TestGenerationFollowsRevocationsElsewhere(t *testing.T) {
	gen := &memGeneration{}
	f := newFixture(t, Options{Generation: gen, GenerationInterval: 30 * time.Second})
	ctx := context.Background()
	first, err := f.pub.Current(ctx)
	if err != nil || first.Entries != 0 {
		t.Fatalf("first CRL: %v %v", first, err)
	}
	for range 50 {
		if _, err := f.pub.Current(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := gen.reads.Load(); n != 1 {
		t.Fatalf("generation reads inside one interval = %d, want 1", n)
	}

	f.src.add(Entry{Serial: big.NewInt(0x5C01), RevokedAt: f.clock.Now(), Reason: 1})
	gen.mu.Lock()
	gen.gen++
	gen.mu.Unlock()
	f.clock.Advance(29 * time.Second)
	if c, _ := f.pub.Current(ctx); c.Number.Cmp(first.Number) != 0 {
		t.Fatal("the CRL was regenerated before the interval")
	}
	f.clock.Advance(2 * time.Second)
	c, err := f.pub.Current(ctx)
	if err != nil || c.Entries != 1 || c.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("CRL one interval after a revocation elsewhere: %+v %v, want a new CRL with 1 entry", c, err)
	}
	// Unchanged generation: no regeneration.
	f.clock.Advance(31 * time.Second)
	if again, _ := f.pub.Current(ctx); again.Number.Cmp(c.Number) != 0 {
		t.Error("an unchanged generation regenerated the CRL")
	}
	if n := gen.reads.Load(); n != 3 {
		t.Errorf("generation reads = %d, want 3", n)
	}

	// An unreadable generation keeps the current CRL (the store is needed to regenerate anyway) and is retried
	// one interval later, not on every call.
	gen.mu.Lock()
	gen.err = errStoreDown
	gen.mu.Unlock()
	f.clock.Advance(31 * time.Second)
	for range 5 {
		if again, err := f.pub.Current(ctx); err != nil || again.Number.Cmp(c.Number) != 0 {
			t.Errorf("with the generation unreadable: %v %v", again, err)
		}
	}
	if n := gen.reads.Load(); n != 4 {
		t.Errorf("generation reads after a failed one = %d, want 4 (no retry inside the interval)", n)
	}
	f.clock.Advance(31 * time.Second)
	if _, err := f.pub.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if n := gen.reads.Load(); n != 5 {
		t.Errorf("generation reads one interval after a failed one = %d, want 5", n)
	}
}

// hangingGeneration is a GenerationSource whose reads, once hang is set, block until their context ends, as a
// Table Storage read does during a brownout.
type hangingGeneration struct {
	mu    sync.Mutex
	hang  bool
	reads atomic.Int64
}

func (g *hangingGeneration) setHang(hang bool) {
	g.mu.Lock()
	g.hang = hang
	g.mu.Unlock()
}

func (g *hangingGeneration) RevocationGeneration(ctx context.Context) (uint64, error) {
	g.reads.Add(1)
	g.mu.Lock()
	hang := g.hang
	g.mu.Unlock()
	if !hang {
		return 0, nil
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// While the store hangs, downloads of a valid cached CRL are served within the callers' own deadlines: concurrent
// callers share one generation read (bounded by GenerateTimeout) instead of queueing for one read each, a caller
// stops waiting for it when its context ends, a caller whose context has already ended starts no read, and the
// failed read is logged once and not repeated before the next interval.
func TestGenerationReadHangServesCachedCRL(t *testing.T) {
	t.Parallel()
	const (
		readTimeout = 500 * time.Millisecond // GenerateTimeout, which bounds the shared read
		callerWait  = 50 * time.Millisecond  // each download's own deadline
		callers     = 8
		failedMsg   = "reading the revocation generation failed"
	)
	gen := &hangingGeneration{}
	f := newFixture(t, Options{Generation: gen, GenerateTimeout: readTimeout})
	first, err := f.pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gen.setHang(true)
	f.clock.Advance(DefaultGenerationInterval + time.Second) // the next call reads the generation again

	burst := func(wait time.Duration) (slowest time.Duration) {
		t.Helper()
		lat := make([]time.Duration, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), wait)
				defer cancel()
				start := time.Now()
				c, err := f.pub.Current(ctx)
				lat[i] = time.Since(start)
				if err != nil || c != first {
					t.Errorf("caller %d got %v, %v; want the cached CRL %v", i, c, err, first.Number)
				}
			})
		}
		wg.Wait()
		return slices.Max(lat)
	}

	if slowest := burst(callerWait); slowest >= readTimeout {
		t.Errorf("slowest of %d concurrent downloads of a valid cached CRL took %v with its own deadline at %v "+
			"(read timeout %v): callers wait for generation reads beyond their deadline", callers, slowest,
			callerWait, readTimeout)
	}
	if n := gen.reads.Load() - 1; n != 1 {
		t.Errorf("generation reads started by %d concurrent callers = %d, want 1 shared read", callers, n)
	}

	// The shared read gives up at readTimeout; it is logged once, not once per caller.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.logs.String(), failedMsg) {
		if time.Now().After(deadline) {
			t.Fatal("the failed generation read was never logged")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Within the interval after the failure nobody reads again, so a later burst is served at once.
	if slowest := burst(time.Minute); slowest >= readTimeout {
		t.Errorf("downloads right after a failed generation read took up to %v", slowest)
	}
	if n := gen.reads.Load() - 1; n != 1 {
		t.Errorf("generation reads after the failed one = %d, want still 1 (no retry inside the interval)", n)
	}

	// A caller that has already given up starts no read, and still gets the cached CRL.
	f.clock.Advance(DefaultGenerationInterval + time.Second)
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if c, err := f.pub.Current(gone); err != nil || c != first {
		t.Errorf("caller with an ended context got %v, %v; want the cached CRL", c, err)
	}
	if n := gen.reads.Load() - 1; n != 1 {
		t.Errorf("generation reads = %d after a caller whose context had ended, want still 1", n)
	}
	if n := strings.Count(f.logs.String(), failedMsg); n != 1 {
		t.Errorf("failed generation read logged %d times, want once", n)
	}

	// Once the store answers again the next due call reads it; the generation is unchanged, so is the CRL.
	gen.setHang(false)
	if c, err := f.pub.Current(t.Context()); err != nil || c != first {
		t.Errorf("after recovery: %v, %v; want the cached CRL", c, err)
	}
	if n := gen.reads.Load() - 1; n != 2 {
		t.Errorf("generation reads after recovery = %d, want 2", n)
	}
}
