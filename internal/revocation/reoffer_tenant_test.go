package revocation_test

import (
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
)

// TestSyncRefusedReanswerDoesNotHoldOthersBack: Intune offers two requests again that we already answered, and then
// refuses the upload of our answers because it no longer takes one of them (an expired request: an upload naming it
// is a 400). The re-answers are sent one by one, as the answers to new requests are, so the other one reaches
// Intune instead of being refused with it on every offer.
func TestSyncRefusedReanswerDoesNotHoldOthersBack(t *testing.T) {
	f := newFixture(t, fixtureOptions{rejectUnknown: true})
	recs := f.issue(t, 2)
	rc := f.queue(t, recs[0].Serial)
	s := f.syncer(t, nil)
	wantRun(t, f.run(t, s), counts{Downloaded: 1, Revoked: 1, Uploaded: 1})

	// A request we answered long ago, which Intune has since forgotten.
	forgotten := &store.RevocationRequest{RequestContext: "forgotten-context", SerialNumber: recs[1].Serial,
		IssuerName: f.ca.Cert.Subject.String(), CAConfiguration: f.caConfig, Downloaded: f.clock.Now().Add(-48 * time.Hour)}
	if err := f.st.EnqueueRevocation(t.Context(), forgotten); err != nil {
		t.Fatal(err)
	}
	forgotten.State, forgotten.Succeeded, forgotten.ErrorCode = store.WorkUploaded, true, "None"
	if err := f.st.UpdateRevocation(t.Context(), forgotten); err != nil {
		t.Fatal(err)
	}

	f.fake.Advance(61 * time.Minute)
	f.clock.Advance(61 * time.Minute)
	route := func(rc, serial string) intunefake.RevocationRequest {
		return intunefake.RevocationRequest{RequestContext: rc, SerialNumber: serial, IssuerName: f.ca.Cert.Subject.String(),
			CAConfiguration: f.caConfig}
	}
	f.downloadPage(t, route("forgotten-context", recs[1].Serial), route(rc, recs[0].Serial))
	run, _ := s.Run(t.Context(), "timer")
	if u := f.uploadsFor(rc); len(u) != 2 || !u[1].Succeeded {
		t.Errorf("the request offered again: uploads %+v, want its answer accepted a second time (run %+v, errors %q)",
			u, countsOf(run), run.Errors)
	}
	if run.Uploaded != 1 || len(run.Errors) == 0 {
		t.Errorf("run = %+v, errors %q; want 1 uploaded and the refused answer reported", countsOf(run), run.Errors)
	}
}
