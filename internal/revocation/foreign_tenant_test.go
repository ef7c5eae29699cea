package revocation_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// TestSyncForeignRequestsDoNotStarveOurs: requests routed to another CA that nobody answers (a CA of the tenant that
// is gone) fill every download Intune hands us, and the request for our certificate is queued behind them. Left
// unanswered for ever, they would come back in every download and ours would never be reached. They stay unanswered
// for ForeignGrace, giving a CA that shares the tenant its chance; then, offered again in a full download, they are
// answered CertificateNotFoundError, Intune stops offering them, and our request is reached and applied.
func TestSyncForeignRequestsDoNotStarveOurs(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ours := f.issue(t, 1)
	const batch = 3
	var foreign []string
	for i := range batch {
		foreign = append(foreign, f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: fmt.Sprintf("5C00000000000%03X", i),
			IssuerName: "CN=Gone CA", CAConfiguration: "CN=Gone CA (key 0011223344556677)"}))
	}
	rcOurs := f.queue(t, ours[0].Serial)
	s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = batch })

	start := f.clock.Now()
	for hour := 0; f.record(t, ours[0].Serial).Status != store.StatusRevoked; hour++ {
		if hour > 30 {
			t.Fatalf("our request was not reached in %d hourly runs: the foreign requests hold every download", hour)
		}
		run := f.run(t, s)
		for _, rc := range foreign {
			if u := f.uploadsFor(rc); len(u) != 0 && f.clock.Now().Sub(start) < revocation.ForeignGrace {
				t.Fatalf("a request routed to another CA was answered %v after it first came, before the grace: %+v",
					f.clock.Now().Sub(start), u)
			}
		}
		if run.Foreign != batch && run.Revoked == 0 {
			t.Errorf("run %d: %+v, want the %d foreign requests counted", hour, countsOf(run), batch)
		}
		f.fake.Advance(61 * time.Minute)
		f.clock.Advance(61 * time.Minute)
	}
	for _, rc := range foreign {
		u := f.uploadsFor(rc)
		if len(u) != 1 || u[0].Succeeded || u[0].ErrorCode != 4004 {
			t.Errorf("foreign request: uploads %+v, want one CertificateNotFoundError", u)
		}
		if st := f.fakeState(t, rc).State; st != intunefake.StateFailed {
			t.Errorf("foreign request is %s at Intune, want failed (not offered again)", st)
		}
		if st := f.workState(t, rc); st != store.WorkUploaded {
			t.Errorf("foreign request is %s in our store, want uploaded", st)
		}
	}
	if u := f.uploadsFor(rcOurs); len(u) != 1 || !u[0].Succeeded {
		t.Errorf("our request: uploads %+v, want one success", u)
	}
}

// TestSyncForeignRequestsInPartialDownloads: foreign requests that leave room in the download hold nothing of ours
// back, so they stay unanswered however long Intune keeps offering them: another CA of the tenant may still take them.
func TestSyncForeignRequestsInPartialDownloads(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rcs := []string{
		f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: "5C01", CAConfiguration: "CN=Other CA (key 0011223344556677)"}),
		f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: "5C02", IssuerName: "CN=Other CA"}),
	}
	s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = 3 })
	for range 2 * revocation.ForeignGrace / time.Hour {
		wantRun(t, f.run(t, s), counts{Downloaded: 2, Foreign: 2})
		f.fake.Advance(61 * time.Minute)
		f.clock.Advance(61 * time.Minute)
	}
	for _, rc := range rcs {
		if u := f.uploadsFor(rc); len(u) != 0 || f.workState(t, rc) != store.WorkForeign {
			t.Errorf("foreign request in partial downloads: uploads %+v, state %s; want none, foreign", u, f.workState(t, rc))
		}
	}
}

// TestSyncForeignRequestsFillingACappedDownload: the batch asks for 500, but Intune hands out 100 at a time (the
// upper bound it is said to recommend), all of them requests for another CA that nobody answers. A download of 100
// counts as full, so after ForeignGrace they are answered and do not hold ours back for good.
func TestSyncForeignRequestsFillingACappedDownload(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	page := make([]intunefake.RevocationRequest, 100)
	for i := range page {
		page[i] = intunefake.RevocationRequest{RequestContext: fmt.Sprintf("gone-%03d", i),
			SerialNumber: fmt.Sprintf("5C%014X", i), CAConfiguration: "CN=Gone CA (key 0011223344556677)"}
	}
	raw, err := json.Marshal(map[string]any{"value": page})
	if err != nil {
		t.Fatal(err)
	}
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Body: string(raw)}) // every download, until cleared
	s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = 500 })
	for hour := time.Duration(0); hour <= revocation.ForeignGrace/time.Hour; hour++ {
		f.run(t, s)
		f.clock.Advance(61 * time.Minute)
	}
	for _, it := range page {
		if u := f.uploadsFor(it.RequestContext); len(u) != 1 || u[0].ErrorCode != 4004 {
			t.Fatalf("request %s filling capped downloads for a day: uploads %+v, want one CertificateNotFoundError",
				it.RequestContext, u)
		}
	}
}
