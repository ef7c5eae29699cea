package crl

import (
	"context"
	"math/big"
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

	// An unreadable generation keeps the current CRL (the store is needed to regenerate anyway) and is retried.
	gen.mu.Lock()
	gen.err = errStoreDown
	gen.mu.Unlock()
	f.clock.Advance(31 * time.Second)
	if again, err := f.pub.Current(ctx); err != nil || again.Number.Cmp(c.Number) != 0 {
		t.Errorf("with the generation unreadable: %v %v", again, err)
	}
}
