package revocation_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// methodCounter counts the store calls a FaultStore sees, by method.
type methodCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func countCalls(f *storetest.FaultStore) *methodCounter {
	c := &methodCounter{n: map[string]int{}}
	f.OnCall(func(method string) {
		c.mu.Lock()
		c.n[method]++
		c.mu.Unlock()
	})
	return c
}

func (c *methodCounter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// TestSyncPersistsResultsInBatches: a chunk's results (applied, then uploaded) are written in one store call per
// MaxRevocationBatch items — one Table Storage transaction — rather than one round trip per item, which was most
// of a 500-item sync's time; and every item still ends uploaded with its result.
func TestSyncPersistsResultsInBatches(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 120
		var rcs []string
		for _, r := range f.issue(t, n) {
			rcs = append(rcs, f.queue(t, r.Serial))
		}
		calls := countCalls(f.faults)
		s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = n })
		run := f.run(t, s)
		wantRun(t, run, counts{Downloaded: n, Revoked: n, Uploaded: n})
		// Three chunks of 50, 50 and 20: each writes its results once applied and once uploaded.
		if got := calls.get(storetest.MethodUpdateRevocations); got != 6 {
			t.Errorf("%d UpdateRevocations calls, want 6 (two per chunk)", got)
		}
		if got := calls.get(storetest.MethodUpdateRevocation); got != 0 {
			t.Errorf("%d UpdateRevocation calls, want none: every chunk's results written together", got)
		}
		for _, rc := range rcs {
			if st := f.workState(t, rc); st != store.WorkUploaded {
				t.Fatalf("item %s: %s, want uploaded", rc, st)
			}
		}
	})
}

// TestSyncBatchRefusedFallsBackToOneByOne: when a chunk's batch cannot be written (the store refuses the
// transaction, say because another instance moved one item), its items are written one by one, so the others are
// not held back: the run revokes, persists and uploads them all.
func TestSyncBatchRefusedFallsBackToOneByOne(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 30
		var rcs []string
		for _, r := range f.issue(t, n) {
			rcs = append(rcs, f.queue(t, r.Serial))
		}
		f.faults.FailMethod(storetest.MethodUpdateRevocations, fmt.Errorf("%w: injected", store.ErrConflict))
		calls := countCalls(f.faults)
		run := f.run(t, f.syncer(t, nil))
		wantRun(t, run, counts{Downloaded: n, Revoked: n, Uploaded: n})
		if len(run.Errors) != 0 {
			t.Errorf("run errors %q, want none: the one-by-one writes succeeded", run.Errors)
		}
		if got := calls.get(storetest.MethodUpdateRevocation); got != 2*n {
			t.Errorf("%d UpdateRevocation calls, want %d (applied and uploaded, one by one)", got, 2*n)
		}
		for _, rc := range rcs {
			if st := f.workState(t, rc); st != store.WorkUploaded {
				t.Fatalf("item %s: %s, want uploaded", rc, st)
			}
		}
	})
}
