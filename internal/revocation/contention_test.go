package revocation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
)

// contenders is how many revocations write the shared generation document at once: a bulk revocation script
// fanned out over the function app's instances.
const contenders = 32

// TestGenerationBumpUnderContention: concurrent revocations of different certificates all bump the one revocation
// generation document with ETag-conditioned writes. Every revocation must succeed: a lost race is retried after a
// jittered pause rather than a fixed number of back-to-back attempts that leaves some callers starved (each such
// failure is a 503 to the admin, a CRL that lists the certificate while the record and OCSP still say good until the
// sweep, and, at the second bump, other instances' OCSP caches left answering good).
func TestGenerationBumpUnderContention(t *testing.T) {
	f := newFixture(t, fixtureOptions{tables: true})
	recs := f.issue(t, contenders)
	start := make(chan struct{})
	errs := make(chan error, contenders)
	var wg sync.WaitGroup
	for _, r := range recs {
		wg.Go(func() {
			<-start
			_, _, err := revocation.Revoke(context.Background(), f.backend, r.Serial, 4, "admin:bulk", "", time.Now())
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			t.Log(err)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d concurrent revocations failed", failed, contenders)
	}
	g, err := revocation.Status{Store: f.backend}.RevocationGeneration(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(2 * contenders); g != want {
		t.Errorf("revocation generation = %d, want %d (two bumps per revocation)", g, want)
	}
}
