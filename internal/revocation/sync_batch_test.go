package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// issueAndQueue issues n certificates and has Intune offer a revocation request for each; it returns the requests.
func issueAndQueue(t *testing.T, f *fixture, n int) []string {
	t.Helper()
	return queueAll(t, f, f.issue(t, n))
}

// queueAll queues at Intune a revocation request for each of recs and returns their request contexts, in order.
func queueAll(t *testing.T, f *fixture, recs []*store.Record) []string {
	t.Helper()
	var rcs []string
	for _, r := range recs {
		rcs = append(rcs, f.queue(t, r.Serial))
	}
	return rcs
}

// wantUploaded fails t unless every request of rcs is stored as uploaded.
func wantUploaded(t *testing.T, f *fixture, rcs []string) {
	t.Helper()
	for _, rc := range rcs {
		if st := f.workState(t, rc); st != store.WorkUploaded {
			t.Fatalf("item %s: %s, want uploaded", rc, st)
		}
	}
}

func (c *methodCounter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// TestSyncPersistsResultsInBatches: a chunk's results (applied, then uploaded) are written in one store call per
// MaxRevocationBatch items — one Table Storage transaction — rather than one round trip per item, and each
// revocation costs one record read and two generation writes with no read between them: the store's round trips
// are most of a 500-item sync's time. Every item still ends uploaded with its result.
func TestSyncPersistsResultsInBatches(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 120
		rcs := issueAndQueue(t, f, n)
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
		// Each revocation reads its record once (the sync's own read serves the revocation's first attempt), and
		// bumps the revocation generation twice from the document the previous bump wrote: one read of it in the
		// whole run, the first bump's.
		if got := calls.get(storetest.MethodGet); got != n {
			t.Errorf("%d record reads for %d revocations, want one each", got, n)
		}
		if reads, writes := calls.get(storetest.MethodGetMeta), calls.get(storetest.MethodPutMeta); reads > 2 || writes != 2*n+2 {
			t.Errorf("%d meta reads and %d meta writes for %d revocations, want at most 2 reads (the generation's "+
				"first, the lease's) and two bumps each besides the lease's taking and giving back", reads, writes, n)
		}
		wantUploaded(t, f, rcs)
	})
}

// TestSyncBatchRefusedFallsBackToOneByOne: when a chunk's batch cannot be written (the store refuses the
// transaction, say because another instance moved one item), its items are written one by one, so the others are
// not held back: the run revokes, persists and uploads them all.
func TestSyncBatchRefusedFallsBackToOneByOne(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 30
		rcs := issueAndQueue(t, f, n)
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
		wantUploaded(t, f, rcs)
	})
}

// TestSyncGenerationChainMeetsAnotherInstance: the sync bumps the revocation generation from the document its
// previous bump wrote; when another instance bumps it in between (an admin's revocation there), the sync's write
// fails on the ETag, and the bump is done again from a fresh read, so that neither instance's revocation is lost
// from the generation other instances' OCSP caches follow.
func TestSyncGenerationChainMeetsAnotherInstance(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 6
		recs := f.issue(t, n)
		for _, r := range recs {
			f.queue(t, r.Serial)
		}
		var puts atomic.Int32
		var other error
		f.faults.OnCall(func(method string) {
			// Before every third generation write of the sync, another instance bumps the generation.
			if method == storetest.MethodPutMeta && puts.Add(1)%3 == 0 {
				other = errors.Join(other, revocation.BumpGeneration(context.Background(), f.backend,
					fmt.Sprintf("0AB%03d", puts.Load())))
			}
		})
		run := f.run(t, f.syncer(t, nil))
		f.faults.OnCall(nil)
		if other != nil {
			t.Fatalf("the other instance's bumps: %v", other)
		}
		wantRun(t, run, counts{Downloaded: n, Revoked: n, Uploaded: n})
		raw, _, err := f.backend.GetMeta(context.Background(), "revocation-generation")
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			N      uint64 `json:"n"`
			Recent []struct {
				Serial string `json:"serial"`
			} `json:"recent"`
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatal(err)
		}
		// Every bump counted: two per sync revocation, one per bump of the other instance.
		if want := uint64(2*n) + uint64(puts.Load()/3); g.N < uint64(2*n)+1 || g.N != want {
			t.Errorf("generation %d, want %d (2 × %d revocations and the other instance's bumps)", g.N, want, n)
		}
		named := map[string]bool{}
		for _, e := range g.Recent {
			named[e.Serial] = true
		}
		for _, r := range recs {
			if !named[r.Serial] {
				t.Errorf("generation history lacks %s, revoked by the sync", r.Serial)
			}
		}
	})
}

// TestSyncBatchAnswerLostIsNoError: a chunk's transaction commits but its answer is lost, so the one-by-one writes
// after it fail on the ETags it moved. What they would write is already stored, so the run takes the stored ETags
// and reports no error, and every item is uploaded and marked so once.
func TestSyncBatchAnswerLostIsNoError(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 30
		rcs := issueAndQueue(t, f, n)
		f.faults.Inject(storetest.Fault{Method: storetest.MethodUpdateRevocations, Commit: true})
		run := f.run(t, f.syncer(t, nil))
		wantRun(t, run, counts{Downloaded: n, Revoked: n, Uploaded: n})
		if len(run.Errors) != 0 {
			t.Errorf("run errors %q, want none: every batch was written, only its answer was lost", run.Errors)
		}
		for _, rc := range rcs { // read from the store itself: the batches' callers saw them fail
			it, err := f.faults.Revocation(context.Background(), rc)
			if err != nil || it.State != store.WorkUploaded || !it.Succeeded {
				t.Fatalf("item %.12s…: %+v, %v; want uploaded and succeeded", rc, it, err)
			}
		}
	})
}
