package revocation_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// Start answers once the run holds the lease and its start is recorded, before the run does any work; the run
// goes on detached from the caller's context (an admin's request, cancelled as soon as it is answered) and records
// its outcome over the start record. A second start meanwhile is ErrRunning and records nothing.
func TestSyncStartDetached(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 3)
		for _, r := range recs {
			f.queue(t, r.Serial)
		}
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		f.faults.OnCall(func(method string) {
			if method == storetest.MethodOpenRevocations {
				once.Do(func() { close(entered); <-release })
			}
		})
		t.Cleanup(func() {
			select {
			case <-release:
			default:
				close(release)
			}
		})
		s := f.syncer(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		type answer struct {
			run  store.SyncRun
			done <-chan struct{}
			err  error
		}
		answered := make(chan answer, 1)
		go func() {
			run, done, err := s.Start(ctx, "admin")
			answered <- answer{run, done, err}
		}()
		<-entered // the run's first step, held
		var a answer
		select {
		case a = <-answered:
		case <-time.After(10 * time.Second): // a failure guard only: Start answers before the run's first step ends
			t.Fatal("Start did not answer while the run was in progress")
		}
		if a.err != nil {
			t.Fatalf("Start: %v", a.err)
		}
		cancel() // the request that started the run is over
		if r, err := f.backend.RunByID(context.Background(), a.run.ID); err != nil || !r.Finished.IsZero() || r.Trigger != "admin" {
			t.Errorf("record of the started run = %+v, %v; want it recorded, unfinished", r, err)
		}
		if _, _, err := f.syncer(t, nil).Start(context.Background(), "admin"); !errors.Is(err, revocation.ErrRunning) {
			t.Errorf("second start = %v, want ErrRunning", err)
		}
		close(release)
		<-a.done
		r, err := f.backend.RunByID(context.Background(), a.run.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantRun(t, r, counts{Downloaded: 3, Revoked: 3, Uploaded: 3})
		if r.Finished.IsZero() || len(r.Errors) != 0 || r.Error != "" {
			t.Errorf("finished run = %+v, want finished without errors", r)
		}
		if runs, _ := f.backend.Runs(context.Background(), 0); len(runs) != 1 {
			t.Errorf("%d run records, want the one run", len(runs))
		}
		// The lease is free again.
		f.run(t, s)
	})
}

// A start that cannot be recorded is no start: the lease is given back, Intune is not asked, and nothing is
// recorded. A run whose cycle fails records why (Error) beside its error lines.
func TestSyncStartNotRecorded(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.queue(t, f.issue(t, 1)[0].Serial)
	s := f.syncer(t, nil)
	f.faults.FailMethod(storetest.MethodRecordRun, store.ErrUnavailable)
	if _, _, err := s.Start(context.Background(), "admin"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Start with the run record failing = %v, want ErrUnavailable", err)
	}
	if _, err := s.Run(context.Background(), "timer"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Run with the run record failing = %v, want ErrUnavailable", err)
	}
	f.faults.Clear()
	if n := f.fake.Count(intunefake.RouteDownload); n != 0 {
		t.Errorf("%d downloads by runs that never started", n)
	}
	if runs, _ := f.backend.Runs(context.Background(), 0); len(runs) != 0 {
		t.Errorf("runs recorded: %+v", runs)
	}
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Status: 503})
	_, done, err := s.Start(context.Background(), "admin")
	if err != nil {
		t.Fatalf("Start once the store answers: %v (the lease was left taken?)", err)
	}
	<-done
	runs, _ := f.backend.Runs(context.Background(), 0)
	if len(runs) != 1 || runs[0].Finished.IsZero() || runs[0].Error == "" || runs[0].Errors[len(runs[0].Errors)-1] != runs[0].Error {
		t.Errorf("failed run recorded as %+v, want finished with its error", runs)
	}
}

// A run's ID holds its start (store.NewRunID), so that the status route reads its record with one point read; the
// record is where the ID says, on both stores, while the run goes on and once it has ended.
func TestSyncRunIDHoldsItsStart(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		f.queue(t, f.issue(t, 1)[0].Serial)
		s := f.syncer(t, nil)
		run, done, err := s.Start(context.Background(), "admin")
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		at, ok := store.RunIDStart(run.ID)
		if !ok || !at.Equal(run.Started.UTC().Truncate(100*time.Nanosecond)) {
			t.Errorf("run %s started at %v: RunIDStart = %v, %v", run.ID, run.Started, at, ok)
		}
		<-done
		r, err := f.backend.RunByID(context.Background(), run.ID)
		if err != nil || r.Finished.IsZero() || r.Revoked != 1 || !r.Started.Equal(at) {
			t.Errorf("RunByID(%s) once ended = %+v, %v", run.ID, r, err)
		}
	})
}
