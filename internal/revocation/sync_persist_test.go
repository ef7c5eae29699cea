package revocation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// wantDone fails t unless Intune holds every request of rcs as answered (none left to offer again), and the strict
// fake rejected nothing (no request answered twice, none unknown).
func wantDone(t *testing.T, f *fixture, rcs []string) {
	t.Helper()
	for _, rc := range rcs {
		if st := f.fakeState(t, rc).State; st != intunefake.StateDone {
			t.Fatalf("Intune's item %s is %s, want done", rc, st)
		}
	}
	if rej := f.fake.Rejections(); len(rej) != 0 {
		t.Errorf("the strict fake rejected requests: %+v", rej)
	}
}

// TestSyncPersistsDownloadInBatches: a download is persisted MaxRevocationBatch requests to a store call (one
// Table Storage transaction) instead of one round trip per request, still before anything acts on it. Every request
// then ends revoked, answered and uploaded.
func TestSyncPersistsDownloadInBatches(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 250
		rcs := issueAndQueue(t, f, n)
		calls := countCalls(f.faults)
		s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = n })
		run := f.run(t, s)
		wantRun(t, run, counts{Downloaded: n, Revoked: n, Uploaded: n})
		if got := calls.get(storetest.MethodEnqueueRevocations); got != 3 {
			t.Errorf("%d EnqueueRevocations calls for %d requests, want 3 (100, 100 and 50)", got, n)
		}
		if got := calls.get(storetest.MethodEnqueueRevocation); got != 0 {
			t.Errorf("%d EnqueueRevocation calls, want none: the download is persisted in batches", got)
		}
		wantUploaded(t, f, rcs)
		wantDone(t, f, rcs)
	})
}

// TestSyncPersistBatchRefusedFallsBackToOneByOne: Intune offers again a request we already hold (it did not take
// our answer), amid new ones. The store refuses the batch that names it (a transaction is all or none), so that
// batch's requests are persisted one by one: the new ones are stored and acted on as new, the one held before is
// answered again from its stored copy, and none is lost or answered twice.
func TestSyncPersistBatchRefusedFallsBackToOneByOne(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 30
		recs := f.issue(t, n)
		rcs := queueAll(t, f, recs)
		held := &store.RevocationRequest{RequestContext: rcs[7], SerialNumber: recs[7].Serial,
			IssuerName: f.ca.Cert.Subject.String(), CAConfiguration: f.caConfig, Downloaded: f.clock.Now().Add(-2 * time.Hour)}
		if err := f.st.EnqueueRevocation(t.Context(), held); err != nil {
			t.Fatal(err)
		}
		held.State, held.Succeeded, held.ErrorCode = store.WorkUploaded, true, "None"
		if err := f.st.UpdateRevocation(t.Context(), held); err != nil {
			t.Fatal(err)
		}
		calls := countCalls(f.faults)
		run := f.run(t, f.syncer(t, nil))
		wantRun(t, run, counts{Downloaded: n, Revoked: n, Uploaded: n})
		if len(run.Errors) != 0 {
			t.Errorf("run errors %q, want none", run.Errors)
		}
		if b, one := calls.get(storetest.MethodEnqueueRevocations), calls.get(storetest.MethodEnqueueRevocation); b != 1 || one != n {
			t.Errorf("%d batch and %d one-by-one persists, want 1 refused batch, then %d one by one", b, one, n)
		}
		wantUploaded(t, f, rcs)
		wantDone(t, f, rcs)
		for i, rc := range rcs {
			if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
				t.Errorf("request %d: uploads %+v, want one success", i, u)
			}
		}
	})
}

// TestSyncCrashBetweenPersistBatches: the process dies while it persists a download, after the first batch was
// stored and before the second is (the run hangs there for good, as a killed process does). The next run, inside
// Intune's cool-down, finishes the stored batch from our store alone; the requests never stored were not acted on,
// and once the cool-down is over Intune offers them again and a run finishes them. Nothing is lost, nothing is held
// or answered twice.
func TestSyncCrashBetweenPersistBatches(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		const n = 250
		recs := f.issue(t, n)
		rcs := queueAll(t, f, recs)
		var mu sync.Mutex
		calls := map[string]int{}
		killed, release := make(chan struct{}), make(chan struct{})
		f.faults.OnCall(func(method string) {
			mu.Lock()
			calls[method]++
			// Past the first MaxRevocationBatch requests: the second batch, or the 101st write of one request.
			kill := method == storetest.MethodEnqueueRevocations && calls[method] == 2 ||
				method == storetest.MethodEnqueueRevocation && calls[method] == store.MaxRevocationBatch+1
			mu.Unlock()
			if kill {
				close(killed)
				<-release
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		dead := make(chan struct{})
		go func() {
			defer close(dead)
			_, _ = f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = n }).Run(ctx, "timer")
		}()
		t.Cleanup(func() {
			// The hung run resumes after the test, its context gone: nothing it does then is looked at.
			cancel()
			close(release)
			<-dead
		})
		<-killed
		f.faults.OnCall(nil)

		for i, r := range recs {
			if got := f.record(t, r.Serial).Status; got != store.StatusIssued {
				t.Fatalf("record %d is %s while its download is being persisted, want issued", i, got)
			}
		}
		if n := f.fake.Count(intunefake.RouteUpload); n != 0 {
			t.Fatalf("%d uploads before the download was persisted", n)
		}
		open, err := f.backend.OpenRevocations(context.Background(), 0)
		if err != nil || len(open) != store.MaxRevocationBatch {
			t.Fatalf("%d requests stored by the killed run (%v), want its first batch of %d", len(open), err,
				store.MaxRevocationBatch)
		}

		f.clock.Advance(revocation.DefaultLeaseTTL + time.Minute) // the killed run's lease expires
		s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = n })
		wantRun(t, f.run(t, s), counts{Resumed: store.MaxRevocationBatch, Revoked: store.MaxRevocationBatch,
			Uploaded: store.MaxRevocationBatch})
		wantUploaded(t, f, rcs[:store.MaxRevocationBatch])
		wantDone(t, f, rcs[:store.MaxRevocationBatch])

		f.fake.Advance(2 * time.Hour) // Intune offers the requests it handed out and got no answer for again
		f.clock.Advance(2 * time.Hour)
		wantRun(t, f.run(t, s), counts{Downloaded: n - store.MaxRevocationBatch, Revoked: n - store.MaxRevocationBatch,
			Uploaded: n - store.MaxRevocationBatch})
		wantUploaded(t, f, rcs)
		wantDone(t, f, rcs)
		if open, err := f.backend.OpenRevocations(context.Background(), 0); err != nil || len(open) != 0 {
			t.Errorf("%d open requests after the runs (%v), want none", len(open), err)
		}
		for i, r := range recs {
			if got := f.record(t, r.Serial).Status; got != store.StatusRevoked {
				t.Errorf("record %d is %s, want revoked", i, got)
			}
		}
	})
}
