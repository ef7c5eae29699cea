package revocation_test

import (
	"context"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// againFixture leaves one request applied but not uploaded (Intune refused its first answer) and lets Intune's
// lease on it run out, so that the next run resumes it and then downloads it again.
func againFixture(t *testing.T, tables bool) (f *fixture, s *revocation.Syncer, rc string) {
	t.Helper()
	f = newFixture(t, fixtureOptions{tables: tables})
	rec := f.issue(t, 1)[0]
	rc = f.queue(t, rec.Serial)
	s = f.syncer(t, nil)
	f.fake.InjectFault(intunefake.RouteUpload, intunefake.Fault{Times: 1, Body: `{"value":false}`})
	if run, _ := s.Run(context.Background(), "timer"); countsOf(run) != (counts{Downloaded: 1, Revoked: 1}) {
		t.Fatalf("run 1 = %+v (errors %q), want the answer refused", countsOf(run), run.Errors)
	}
	if st := f.workState(t, rc); st != store.WorkApplied {
		t.Fatalf("work item is %s after a refused upload, want applied", st)
	}
	f.fake.Advance(61 * time.Minute)
	f.clock.Advance(61 * time.Minute)
	return f, s, rc
}

// A request Intune offers again although we hold it is answered again; once Intune accepts that answer the stored
// item is uploaded, as after an ordinary upload, and the next run does not upload it once more.
func TestSyncAcceptedReanswerMarksUploaded(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f, s, rc := againFixture(t, tables)
		// Run 2: the resume step's upload is refused again; the download offers the item again and its
		// re-answer is accepted.
		f.fake.InjectFault(intunefake.RouteUpload, intunefake.Fault{Times: 1, Body: `{"value":false}`})
		run, _ := s.Run(context.Background(), "timer")
		wantRun(t, run, counts{Resumed: 1, Downloaded: 1, Uploaded: 1})
		if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
			t.Fatalf("uploads accepted = %+v, want the re-answer, a success", u)
		}
		it, _ := f.st.item(rc)
		if it.State != store.WorkUploaded || !it.Succeeded || it.Uploaded.IsZero() || it.Attempts != 3 {
			t.Errorf("work item after an accepted re-answer: %s succeeded %v uploaded %v attempts %d; "+
				"want uploaded, succeeded, stamped, 3 attempts", it.State, it.Succeeded, it.Uploaded, it.Attempts)
		}
		if open, err := f.backend.OpenRevocations(context.Background(), 0); err != nil || len(open) != 0 {
			t.Errorf("open items = %d, %v; want none", len(open), err)
		}

		// Run 3: nothing is left to answer.
		f.fake.Advance(61 * time.Minute)
		f.clock.Advance(61 * time.Minute)
		calls := f.fake.Count(intunefake.RouteUpload)
		run = f.run(t, s)
		wantRun(t, run, counts{})
		if n := f.fake.Count(intunefake.RouteUpload) - calls; n != 0 {
			t.Errorf("run 3 made %d upload calls, want none: the re-answered item was uploaded once more", n)
		}
	})
}

// A re-answer Intune refuses, or that does not get through, changes nothing stored: the item stays applied
// with its attempts, and the next run uploads it.
func TestSyncRefusedReanswerLeavesItemOpen(t *testing.T) {
	refusal := intunefake.Fault{Times: 1, Body: `{"value":false}`}
	for _, tt := range []struct {
		name   string
		faults []intunefake.Fault // the resume step's upload, then the re-answer's
	}{
		{"refused", []intunefake.Fault{refusal, refusal}},
		{"500", []intunefake.Fault{refusal, {Times: 3, Status: 500, Body: `{}`}}}, // all three attempts fail
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, s, rc := againFixture(t, false)
			for _, fault := range tt.faults {
				f.fake.InjectFault(intunefake.RouteUpload, fault)
			}
			run, err := s.Run(context.Background(), "timer")
			if err == nil {
				t.Error("a re-answer Intune did not accept is not the run's error")
			}
			wantRun(t, run, counts{Resumed: 1, Downloaded: 1})
			it, _ := f.st.item(rc)
			if it.State != store.WorkApplied || it.Attempts != 2 || !it.Uploaded.IsZero() {
				t.Errorf("work item after the re-answer failed: %s attempts %d uploaded %v; want applied, 2 attempts "+
					"(the two refusals of the resume step), never uploaded", it.State, it.Attempts, it.Uploaded)
			}
			if u := f.uploadsFor(rc); len(u) != 0 {
				t.Fatalf("uploads accepted = %+v, want none", u)
			}

			f.fake.ClearFaults()
			run = f.run(t, s)
			wantRun(t, run, counts{Resumed: 1, Uploaded: 1})
			if st := f.workState(t, rc); st != store.WorkUploaded {
				t.Errorf("work item is %s after the next run, want uploaded", st)
			}
			if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
				t.Errorf("uploads accepted = %+v, want one success", u)
			}
		})
	}
}
