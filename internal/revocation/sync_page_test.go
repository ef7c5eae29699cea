package revocation_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
)

// downloadPage makes the fake's next download answer exactly items, as a hostile or broken Intune could.
func (f *fixture) downloadPage(t *testing.T, items ...intunefake.RevocationRequest) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"value": items})
	if err != nil {
		t.Fatal(err)
	}
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Times: 1, Body: string(raw)})
}

// TestSyncDuplicateRequestContextInOnePage: a page naming one requestContext twice. Only what was persisted is acted
// on: the first copy is stored, revoked and answered once; a second copy naming another serial is not a request we
// hold (its serial was never persisted), so that certificate stays issued, and the context is not answered twice.
func TestSyncDuplicateRequestContextInOnePage(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 2)
		first, second := recs[0], recs[1]
		const rc = "duplicate-context"
		route := func(serial string) intunefake.RevocationRequest {
			return intunefake.RevocationRequest{RequestContext: rc, SerialNumber: serial,
				IssuerName: f.ca.Cert.Subject.String(), CAConfiguration: f.caConfig}
		}
		f.downloadPage(t, route(first.Serial), route(first.Serial), route(second.Serial))
		run, _ := f.syncer(t, nil).Run(context.Background(), "timer")
		if run.Downloaded != 3 || run.Revoked != 1 || run.Uploaded != 1 {
			t.Errorf("run = %+v (errors %q), want 3 downloaded, 1 revoked, 1 uploaded", countsOf(run), run.Errors)
		}
		if r := f.record(t, first.Serial); r.Status != store.StatusRevoked || r.RevocationRef != rc {
			t.Errorf("the persisted request's certificate: %s ref %q, want revoked by it", r.Status, r.RevocationRef)
		}
		if r := f.record(t, second.Serial); r.Status != store.StatusIssued {
			t.Errorf("a certificate named only by an unpersisted duplicate was %s by %q", r.Status, r.RevokedBy)
		}
		if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
			t.Errorf("uploads for the context = %+v, want one success", u)
		}
		if it, ok := f.st.item(rc); !ok || it.SerialNumber != first.Serial || it.State != store.WorkUploaded {
			t.Errorf("stored item = %+v (%t), want the first copy, uploaded", it, ok)
		}
	})
}
