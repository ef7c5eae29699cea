package crl

import (
	"context"
	"math/big"
	"testing"
	"time"
)

// TestFirstGenerationReadAfterAFailureInvalidates: an instance whose very first read of the revocation generation
// fails (one store blip) still builds and serves a CRL. A revocation on another instance then bumps the generation.
// The next successful read has no baseline to compare with, so it must invalidate the CRL built before it: taken
// as the baseline instead, it kept the revocation off this instance's CRL until its half-life (12 h by default),
// while OCSP on the same instance (which clears its cache on its first successful read) answered revoked.
func TestFirstGenerationReadAfterAFailureInvalidates(t *testing.T) {
	gen := &memGeneration{gen: 7, err: errStoreDown} // the first read fails
	f := newFixture(t, Options{Generation: gen, GenerationInterval: 30 * time.Second})
	ctx := context.Background()
	first, err := f.pub.Current(ctx)
	if err != nil || first.Entries != 0 {
		t.Fatalf("first CRL: %v %v", first, err)
	}
	gen.mu.Lock()
	gen.err = nil // the store is fine again
	gen.mu.Unlock()

	// Another instance revokes: index entry, then the generation bump.
	f.src.add(Entry{Serial: big.NewInt(0x5C01), RevokedAt: f.clock.Now(), Reason: 1})
	gen.mu.Lock()
	gen.gen++
	gen.mu.Unlock()

	for _, step := range []time.Duration{31 * time.Second, 5 * time.Minute, time.Hour, 6 * time.Hour} {
		f.clock.Advance(step)
		c, err := f.pub.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Entries != 1 {
			t.Errorf("%v later: CRL #%v still has %d entries (generation reads: %d); the revocation made elsewhere is missing",
				f.clock.Now().Sub(first.ThisUpdate), c.Number, c.Entries, gen.reads.Load())
		}
	}
}
