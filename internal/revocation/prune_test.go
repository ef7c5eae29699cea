package revocation_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// recordRuns records n runs started at start and before it, one minute apart, finished when finished says.
func recordRuns(t *testing.T, st store.Store, start time.Time, n int, finished bool) []string {
	t.Helper()
	var ids []string
	for i := range n {
		at := start.Add(-time.Duration(i) * time.Minute)
		run := store.SyncRun{ID: store.NewRunID(at), Started: at, Trigger: "timer"}
		if finished {
			run.Finished = at.Add(time.Second)
		}
		if err := st.RecordRun(context.Background(), run); err != nil {
			t.Fatalf("recording run %d: %v", i, err)
		}
		ids = append(ids, run.ID)
	}
	return ids
}

// Run records are kept for RunRetention and then deleted by the runs that follow, a bounded number per run, so
// that the runs partition (one record an hour, and the status route's older-ID queries over it) stops growing.
// Runs younger than that stay, and so does a run that never recorded its end while it is young; one that old is
// no longer going, and goes too.
func TestSyncPrunesOldRuns(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		now := f.clock.Now()
		expired := now.Add(-revocation.RunRetention - time.Minute)
		old := recordRuns(t, f.backend, expired, 104, true)
		old = append(old, recordRuns(t, f.backend, expired.Add(-time.Hour), 1, false)...) // interrupted, long ago
		young := recordRuns(t, f.backend, now.Add(-revocation.RunRetention+3*time.Hour), 2, true)
		// Started since, elsewhere, and still going.
		young = append(young, recordRuns(t, f.backend, now.Add(30*time.Minute), 1, false)...)
		s := f.syncer(t, nil)

		first := f.run(t, s)
		runs, err := f.backend.Runs(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		// One run deletes 100; its own record and the young ones stay.
		if want := 1 + len(young) + len(old) - 100; len(runs) != want || runs[1].ID != first.ID {
			t.Fatalf("after one run %d records are kept, want %d, the run's second (after the one started since)",
				len(runs), want)
		}
		f.clock.Advance(time.Hour) // the next tick
		second := f.run(t, s)
		runs, err = f.backend.Runs(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, r := range runs {
			kept = append(kept, r.ID)
		}
		want := []string{second.ID, young[2], first.ID, young[0], young[1]}
		if strings.Join(kept, " ") != strings.Join(want, " ") {
			t.Errorf("after two runs the records kept are\n%v\nwant\n%v", kept, want)
		}
		if len(second.Errors) != 0 || second.Error != "" {
			t.Errorf("second run errors: %q, %q", second.Errors, second.Error)
		}
		if !strings.Contains(f.logs.String(), `"pruned":100`) {
			t.Errorf("the prune is not logged:\n%s", f.logs.String())
		}
	})
}

// A prune that fails is no failure of the run: the revocations were applied and uploaded. It is noted among the
// run's errors, and the next run prunes.
func TestSyncPruneFailureIsNoted(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	serial := f.issue(t, 1)[0].Serial
	rc := f.queue(t, serial)
	old := recordRuns(t, f.backend, f.clock.Now().Add(-revocation.RunRetention-time.Hour), 1, true)
	f.faults.Inject(storetest.Fault{Method: storetest.MethodPruneRuns, Nth: 1})
	s := f.syncer(t, nil)
	run := f.run(t, s)
	f.wantRevokedByIntune(t, serial, rc, run.Started, f.clock.Now())
	if run.Error != "" || len(run.Errors) != 1 || !strings.Contains(run.Errors[0], "pruning run records older than 90 days") {
		t.Errorf("run with a failed prune: error %q, errors %q", run.Error, run.Errors)
	}
	if _, err := f.backend.RunByID(context.Background(), old[0]); err != nil {
		t.Fatalf("the old run is gone after a failed prune: %v", err)
	}
	f.run(t, s)
	if r, err := f.backend.RunByID(context.Background(), old[0]); err == nil {
		t.Errorf("the next run did not prune %+v", r)
	}
}

// A run that has spent its budget prunes nothing: Overrun, the time a run may take past its budget, allows for an
// upload and the run's own records, and a deadline set from it would otherwise cut them.
func TestSyncPrunesOnlyWithinBudget(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	old := recordRuns(t, f.backend, f.clock.Now().Add(-revocation.RunRetention-time.Hour), 1, true)
	s := f.syncer(t, nil)
	f.faults.OnCall(func(method string) {
		if method == storetest.MethodOpenRevocations {
			f.clock.Advance(s.Budget() - 5*time.Second) // less than the prune's own bound is left
		}
	})
	f.run(t, s)
	if n := f.faults.Calls(storetest.MethodPruneRuns); n != 0 {
		t.Errorf("a run past its budget pruned (%d calls)", n)
	}
	if _, err := f.backend.RunByID(context.Background(), old[0]); err != nil {
		t.Errorf("the old run is gone: %v", err)
	}
	f.faults.OnCall(nil)
	f.run(t, s)
	if _, err := f.backend.RunByID(context.Background(), old[0]); err == nil {
		t.Errorf("the next run, within its budget, did not prune")
	}
}
