package revocation_test

import (
	"encoding/json"
	"testing"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
)

// TestSyncUnreadableItemDoesNotCostTheDownload: Intune hands over a download in which one item cannot be read (its
// serialNumber is a number, another element is not an object at all). Intune has handed every item over and offers
// none again for a while, and the unreadable one would be in every later download too: refusing the whole answer
// would lose the readable items now and for good. Only the unreadable ones are dropped, and our request in the same
// download is applied and answered.
func TestSyncUnreadableItemDoesNotCostTheDownload(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ours := f.issue(t, 1)
	good, err := json.Marshal(intunefake.RevocationRequest{RequestContext: "ours-1", SerialNumber: ours[0].Serial,
		IssuerName: f.ca.Cert.Subject.String(), CAConfiguration: f.caConfig})
	if err != nil {
		t.Fatal(err)
	}
	page := `{"value":[{"requestContext":"poisoned-1","serialNumber":1234,"caConfiguration":"CN=Other CA"},"junk",` +
		string(good) + `]}`
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Times: 1, Body: page})

	run, err := f.syncer(t, nil).Run(t.Context(), "timer")
	if err != nil {
		t.Fatalf("Run: %v (errors %q)", err, run.Errors)
	}
	wantRun(t, run, counts{Downloaded: 1, Revoked: 1, Uploaded: 1})
	if r := f.record(t, ours[0].Serial); r.Status != store.StatusRevoked || r.RevocationRef != "ours-1" {
		t.Errorf("our certificate is %s (ref %q), want revoked by the readable request", r.Status, r.RevocationRef)
	}
	if u := f.uploadsFor("ours-1"); len(u) != 1 || !u[0].Succeeded {
		t.Errorf("our request: uploads %+v, want one success", u)
	}
	if u := f.uploadsFor("poisoned-1"); len(u) != 0 {
		t.Errorf("the unreadable item was answered: %+v", u)
	}
}
