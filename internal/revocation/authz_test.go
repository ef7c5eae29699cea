package revocation_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// TestSyncRevokesOnlyIntuneIssued: Intune's revocation queue acts only on certificates this CA issued through an
// Intune endpoint and reported to Intune by successNotification. A serial of a /api/csr certificate, of a static
// endpoint's certificate, or of an Intune enrollment whose success notification failed (withheld) gets the
// documented not-found answer (CertificateNotFoundError, 4004), a log line, and the record is left alone.
func TestSyncRevokesOnlyIntuneIssued(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		ctx := context.Background()
		intuneRec := f.issue(t, 1)[0]
		reshape := func(cn string, mutate func(r *store.Record)) *store.Record {
			r := f.insert(t, store.StatusIssued, true, cn)
			mutate(r)
			if err := f.backend.Update(ctx, r, store.StatusIssued); err != nil {
				t.Fatal(err)
			}
			return r
		}
		apiRec := reshape("api-client", func(r *store.Record) {
			r.Source, r.Endpoint, r.Requester, r.IntuneNotified, r.IntuneSerial, r.CAConfiguration = store.SourceAPI, "api", "app:1234", false, "", ""
		})
		staticRec := reshape("router-1", func(r *store.Record) {
			r.Endpoint, r.Requester, r.IntuneNotified, r.IntuneSerial, r.CAConfiguration = "static", "scep:static", false, "", ""
		})
		withheldRec := reshape("withheld-device", func(r *store.Record) {
			r.IntuneNotified, r.Withheld = false, true
		})

		rcIntune := f.queue(t, intuneRec.Serial)
		refused := map[string]*store.Record{
			f.queue(t, apiRec.Serial):      apiRec,
			f.queue(t, staticRec.Serial):   staticRec,
			f.queue(t, withheldRec.Serial): withheldRec,
		}
		run := f.run(t, f.syncer(t, nil))
		wantRun(t, run, counts{Downloaded: 4, Revoked: 1, NotFound: 3, Uploaded: 4})

		if r := f.record(t, intuneRec.Serial); r.Status != store.StatusRevoked || r.RevokedBy != "intune" {
			t.Errorf("the Intune certificate: %s by %q, want revoked by intune", r.Status, r.RevokedBy)
		}
		if u := f.uploadsFor(rcIntune); len(u) != 1 || !u[0].Succeeded {
			t.Errorf("the Intune certificate: uploaded %+v, want success", u)
		}
		refusals := f.logs.Records("intune revocation refused: certificate not issued through Intune")
		for rc, rec := range refused {
			got := f.record(t, rec.Serial)
			if got.Status != store.StatusIssued || got.ETag != rec.ETag {
				t.Errorf("%s (%s): record changed to %s", rec.Subject, rec.Endpoint, got.Status)
			}
			u := f.uploadsFor(rc)
			if len(u) != 1 || u[0].Succeeded || u[0].ErrorCode != int(intune.RevocationCertificateNotFoundError) ||
				u[0].ErrorCodeRaw != `"CertificateNotFoundError"` {
				t.Errorf("%s (%s): uploaded %+v, want CertificateNotFoundError", rec.Subject, rec.Endpoint, u)
			}
			if st := f.fakeState(t, rc).State; st != intunefake.StateFailed {
				t.Errorf("%s: Intune's item is %s, want failed", rec.Subject, st)
			}
			logged := false
			for _, l := range refusals {
				if l["serial"] == rec.Serial && l["why"] != "" {
					logged = true
				}
			}
			if !logged {
				t.Errorf("%s: no refusal log line for %s in %v", rec.Subject, rec.Serial, refusals)
			}
		}
		if list, err := f.backend.ListRevoked(ctx); err != nil || len(list) != 1 || list[0].Serial != intuneRec.Serial {
			t.Errorf("revocation index = %+v (%v), want only the Intune certificate", list, err)
		}
		// An admin can still revoke them.
		if o, _, err := revocation.Revoke(ctx, f.backend, apiRec.Serial, 1, "admin:alice", "", f.clock.Now()); err != nil || o != revocation.Revoked {
			t.Errorf("admin revocation of the /api/csr certificate: %v %v", o, err)
		}
	})
}

// cancelAfterDownload is the Intune client whose caller goes away the moment the download has returned: an admin
// client that disconnects, or the host's deadline.
type cancelAfterDownload struct {
	revocation.Intune
	cancel context.CancelFunc
}

func (c cancelAfterDownload) DownloadRevocationRequests(ctx context.Context, max int) ([]intune.RevocationRequest, error) {
	items, err := c.Intune.DownloadRevocationRequests(ctx, max)
	c.cancel()
	return items, err
}

// TestSyncCancelledAfterDownload: the caller's context is cancelled right after the download. The downloaded
// items are persisted anyway (a detached context with its own deadline), nothing is applied or uploaded, and the
// next run — inside Intune's cool-down, so its own download returns nothing — resumes and finishes every item.
func TestSyncCancelledAfterDownload(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 3)
		var rcs []string
		for _, r := range recs {
			rcs = append(rcs, f.queue(t, r.Serial))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := f.syncer(t, func(c *revocation.SyncConfig) { c.Intune = cancelAfterDownload{Intune: f.client, cancel: cancel} })
		run, err := s.Run(ctx, "admin")
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("cancelled run: err = %v, want the cancellation", err)
		}
		if run.Downloaded != 3 || run.Revoked != 0 || run.Uploaded != 0 {
			t.Errorf("cancelled run = %+v, want 3 downloaded, nothing revoked or uploaded", run)
		}
		open, err := f.backend.OpenRevocations(context.Background(), 0)
		if err != nil || len(open) != 3 {
			t.Fatalf("open items after the cancelled run: %d (%v), want 3", len(open), err)
		}
		for i, rc := range rcs {
			if st := f.workState(t, rc); st != store.WorkDownloaded {
				t.Errorf("item %d is %s, want downloaded", i, st)
			}
		}

		before := f.clock.Now()
		run2 := f.run(t, f.syncer(t, nil))
		wantRun(t, run2, counts{Resumed: 3, Revoked: 3, Uploaded: 3})
		for i, rc := range rcs {
			f.wantRevokedByIntune(t, recs[i].Serial, rc, before, f.clock.Now())
			if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
				t.Errorf("item %d uploaded %+v, want one success", i, u)
			}
		}
		if n := f.fake.Count(intunefake.RouteDownload); n != 2 {
			t.Errorf("downloads = %d, want one per run", n)
		}
	})
}

// heldDownload blocks the download until released, after saying it started.
type heldDownload struct {
	revocation.Intune
	started, release chan struct{}
}

func (h heldDownload) DownloadRevocationRequests(ctx context.Context, max int) ([]intune.RevocationRequest, error) {
	close(h.started)
	<-h.release
	return h.Intune.DownloadRevocationRequests(ctx, max)
}

// TestHandedOverWaitsForTheDownloadsPersist: HandedOver answers at once while no download runs, waits while one is
// in flight (Intune is handing requests over), and returns once they are stored.
func TestHandedOverWaitsForTheDownloadsPersist(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rc := f.queue(t, f.issue(t, 1)[0].Serial)
	h := heldDownload{started: make(chan struct{}), release: make(chan struct{})}
	s := f.syncer(t, func(c *revocation.SyncConfig) { h.Intune = f.client; c.Intune = h })
	if err := s.HandedOver(t.Context()); err != nil {
		t.Fatalf("HandedOver with no run: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Run(context.Background(), "timer"); done <- err }()
	<-h.started
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.HandedOver(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("HandedOver during the download = %v, want it to wait", err)
	}
	close(h.release)
	if err := s.HandedOver(t.Context()); err != nil {
		t.Fatalf("HandedOver after the download: %v", err)
	}
	if st := f.workState(t, rc); st == "" {
		t.Fatal("HandedOver returned before the downloaded request was stored")
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
