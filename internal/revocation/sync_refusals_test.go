package revocation_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// TestKeyCompromiseAfterAnIntuneRevocationMarksTheKey: a stolen device is retired in Intune, whose queue revokes its
// certificate (cessationOfOperation); the security team then revokes the same certificate for keyCompromise. The
// published reason stays (it cannot change once written), but the key is marked, so a sibling certificate for the
// same key cannot renew onto a fresh one.
func TestKeyCompromiseAfterAnIntuneRevocationMarksTheKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 2) // same key (f.leafKey): recs[1] is the sibling enrollment
	f.queue(t, recs[0].Serial)
	f.run(t, f.syncer(t, nil))
	if r := f.record(t, recs[0].Serial); r.Status != store.StatusRevoked || r.RevocationReason != 5 {
		t.Fatalf("Intune revocation not applied: %s %d", r.Status, r.RevocationReason)
	}

	// What POST /api/certificates/{serial}/revoke {"reason":"keyCompromise"} calls.
	ctx := context.Background()
	out, rec, err := revocation.Revoke(ctx, f.backend, recs[0].Serial, store.KeyCompromise, "admin:sec", "device stolen", f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("admin answer: alreadyRevoked=%v reason=%d", out == revocation.AlreadyRevoked, rec.RevocationReason)
	_, err = f.backend.Compromised(ctx, store.KeyHash(f.leafKey.Public()))
	if errors.Is(err, store.ErrNotFound) {
		t.Errorf("admin revoked %s for keyCompromise after Intune's revocation: key NOT marked compromised; sibling %s (same key) still renews",
			recs[0].Serial, recs[1].Serial)
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestRefusedUploadResultDoesNotHoldOthersBack: one result Intune no longer accepts (its requestContext is unknown,
// e.g. expired) made Intune refuse the whole chunk it was uploaded with, every run: the others stayed open and were
// uploaded again hourly, and nothing gave up on it. A refused chunk is now answered item by item, and a result
// refused maxRefusedUploads times is given up (logged at Error).
func TestRefusedUploadResultDoesNotHoldOthersBack(t *testing.T) {
	f := newFixture(t, fixtureOptions{rejectUnknown: true})
	recs := f.issue(t, 3)
	var rcs []string
	for _, r := range recs {
		rcs = append(rcs, f.queue(t, r.Serial))
	}
	// An item Intune has forgotten, left applied (e.g. a result whose upload failed before Intune expired the
	// request), older than the others.
	ctx := context.Background()
	poison := &store.RevocationRequest{RequestContext: "expired-context", SerialNumber: "0ABC", State: store.WorkDownloaded,
		Downloaded: f.clock.Now().Add(-2 * time.Hour)}
	if err := f.st.EnqueueRevocation(ctx, poison); err != nil {
		t.Fatal(err)
	}
	poison.State, poison.Succeeded, poison.ErrorCode = store.WorkApplied, false, "CertificateNotFoundError"
	if err := f.st.UpdateRevocation(ctx, poison); err != nil {
		t.Fatal(err)
	}
	// First run: the fresh items' upload fails transiently, so they are open next to the poisoned one.
	f.fake.InjectFault(intunefake.RouteUpload, intunefake.Fault{Times: 100, Status: 503, Body: `{}`})
	s := f.syncer(t, nil)
	run, _ := s.Run(ctx, "timer")
	t.Logf("run 1: %+v errors %q", countsOf(run), run.Errors)
	f.fake.ClearFaults()
	for i := 2; i <= 6; i++ {
		f.fake.Advance(61 * time.Minute)
		f.clock.Advance(61 * time.Minute)
		run, _ = s.Run(ctx, "timer")
		t.Logf("run %d: %+v errors %q", i, countsOf(run), run.Errors)
	}
	open, _ := f.backend.OpenRevocations(ctx, 0)
	for _, it := range open {
		t.Logf("still open after 6 runs: %.16s state %s attempts %d", it.RequestContext, it.State, it.Attempts)
	}
	for _, rc := range rcs {
		if st := f.workState(t, rc); st != store.WorkUploaded {
			t.Errorf("item %.12s… is %s after 6 runs, want uploaded", rc, st)
		}
	}
	if it, _ := f.st.item("expired-context"); it.State != store.WorkUploaded {
		t.Errorf("the rejected item was uploaded %d times and is still open (%s): no give-up", it.Attempts, it.State)
	}
}
