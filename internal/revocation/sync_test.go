package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// Intune asks for N of our certificates: each is revoked for cessationOfOperation, the results go up in one
// upload with the exact wire form, the index (CRL source) lists them, and the run is recorded and logged once.
func TestSyncHappyPath(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 5)
		contexts := map[string]string{} // request context → serial
		for _, r := range recs {
			contexts[f.queue(t, r.Serial)] = r.Serial
		}
		s := f.syncer(t, nil)
		before := f.clock.Now()
		run := f.run(t, s)
		wantRun(t, run, counts{Downloaded: 5, Revoked: 5, Uploaded: 5})
		if len(run.Errors) != 0 {
			t.Errorf("run errors: %q", run.Errors)
		}

		for rc, serial := range contexts {
			f.wantRevokedByIntune(t, serial, rc, before, f.clock.Now())
			f.wantIndexed(t, serial, 5)
			if st := f.workState(t, rc); st != store.WorkUploaded {
				t.Errorf("work item for %s is %s, want uploaded", serial, st)
			}
			if st := f.fakeState(t, rc).State; st != intunefake.StateDone {
				t.Errorf("Intune's item for %s is %s, want done", serial, st)
			}
		}
		if n := f.fake.Count(intunefake.RouteDownload); n != 1 {
			t.Errorf("downloads = %d, want 1", n)
		}
		bodies := f.acceptedUploadBodies(t)
		if len(bodies) != 1 || len(bodies[0]) != 5 {
			t.Fatalf("upload bodies = %v, want one with 5 results", bodies)
		}
		for _, r := range bodies[0] {
			if _, ok := contexts[r.RequestContext]; !ok || !r.Succeeded || string(r.ErrorCode) != `"None"` || string(r.ErrorMessage) != "null" {
				t.Errorf("uploaded %+v (errorCode %s, errorMessage %s), want a known context, succeeded, \"None\", null",
					r, r.ErrorCode, r.ErrorMessage)
			}
		}
		if rej := f.fake.Rejections(); len(rej) != 0 {
			t.Errorf("the strict fake rejected requests: %+v", rej)
		}
		notified := f.notifiedSerials()
		slices.Sort(notified)
		var want []string
		for _, serial := range contexts {
			want = append(want, serial)
		}
		slices.Sort(want)
		if !slices.Equal(notified, want) {
			t.Errorf("OnRevoked got %v, want %v", notified, want)
		}
		open, err := f.backend.OpenRevocations(context.Background(), 0)
		if err != nil || len(open) != 0 {
			t.Errorf("open work items after the run: %d (%v), want none", len(open), err)
		}

		runs, err := f.backend.Runs(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 || runs[0].ID != run.ID || countsOf(runs[0]) != countsOf(run) || runs[0].Trigger != "timer" ||
			runs[0].Finished.Before(runs[0].Started) {
			t.Errorf("recorded runs = %+v, want the one run %+v", runs, run)
		}
		if n := len(f.logs.Records("revocation sync")); n != 1 {
			t.Errorf("%d 'revocation sync' log lines, want 1:\n%s", n, f.logs)
		}
		for _, rc := range slices.Collect(maps.Keys(contexts)) {
			if strings.Contains(f.logs.String(), rc) {
				t.Errorf("the log holds a full request context")
			}
		}
	})
}

// The function dies right after the download (its context is cancelled before anything is applied): every item
// is durable as downloaded, and the next run — still inside Intune's cool-down, so its download returns
// nothing — revokes and uploads them all from the store.
func TestSyncCrashAfterDownload(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 3)
		var rcs []string
		for _, r := range recs {
			rcs = append(rcs, f.queue(t, r.Serial))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var persisted atomic.Bool
		f.faults.OnCall(func(method string) {
			switch method {
			case storetest.MethodEnqueueRevocations, storetest.MethodEnqueueRevocation:
				persisted.Store(true)
			case storetest.MethodGet: // the first record read: the download is persisted, in one batch
				if persisted.Load() {
					cancel() // the host killed the function after the download was persisted
				}
			}
		})
		s := f.syncer(t, nil)
		run, err := s.Run(ctx, "timer")
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		f.faults.Clear()
		if run.Downloaded != 3 || run.Uploaded != 0 || len(run.Errors) == 0 {
			t.Errorf("crashed run = %+v, want 3 downloaded, nothing uploaded, errors recorded", run)
		}
		if n := f.fake.Count(intunefake.RouteUpload); n != 0 {
			t.Errorf("uploads during the crashed run = %d", n)
		}
		for i, rc := range rcs {
			if st := f.workState(t, rc); st != store.WorkDownloaded {
				t.Errorf("work item %d is %s after the crash, want downloaded", i, st)
			}
			if r := f.record(t, recs[i].Serial); r.Status != store.StatusIssued {
				t.Errorf("record %d is %s after the crash, want issued", i, r.Status)
			}
		}
		open, err := f.backend.OpenRevocations(context.Background(), 0)
		if err != nil || len(open) != 3 {
			t.Fatalf("open items after the crash: %d (%v), want 3", len(open), err)
		}
		runs, _ := f.backend.Runs(context.Background(), 0)
		if len(runs) != 1 {
			t.Errorf("the crashed run left %d run records, want 1", len(runs))
		}

		// Next run, inside the cool-down.
		before := f.clock.Now()
		run2 := f.run(t, s)
		wantRun(t, run2, counts{Resumed: 3, Revoked: 3, Uploaded: 3})
		for i, rc := range rcs {
			f.wantRevokedByIntune(t, recs[i].Serial, rc, before, f.clock.Now())
			if st := f.workState(t, rc); st != store.WorkUploaded {
				t.Errorf("work item %d is %s, want uploaded", i, st)
			}
			it := f.fakeState(t, rc)
			if it.State != intunefake.StateDone || it.Deliveries != 1 {
				t.Errorf("Intune's item %d: %s after %d deliveries, want done after 1", i, it.State, it.Deliveries)
			}
			if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded || u[0].ErrorCode != 0 {
				t.Errorf("uploads for item %d = %+v, want one success", i, u)
			}
		}
		if n := f.fake.Count(intunefake.RouteDownload); n != 2 {
			t.Errorf("downloads = %d, want one per run", n)
		}
		runs, _ = f.backend.Runs(context.Background(), 0)
		if len(runs) != 2 {
			t.Errorf("%d run records, want 2", len(runs))
		}
	})
}

// The record is revoked but persisting the item's result fails: nothing is uploaded for it, the item stays
// open, and the next run reports success without revoking again.
func TestSyncResultNotPersisted(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	rc := f.queue(t, rec.Serial)
	f.faults.FailMethod(storetest.MethodUpdateRevocation, nil)
	s := f.syncer(t, nil)
	before := f.clock.Now()
	run := f.run(t, s)
	wantRun(t, run, counts{Downloaded: 1, Revoked: 1})
	if len(run.Errors) == 0 {
		t.Error("the failed persist is not in the run's errors")
	}
	if n := f.fake.Count(intunefake.RouteUpload); n != 0 {
		t.Errorf("%d uploads although the result was not persisted", n)
	}
	f.wantRevokedByIntune(t, rec.Serial, rc, before, f.clock.Now())
	revokedAt := f.record(t, rec.Serial).RevokedAt

	f.faults.Clear()
	f.clock.Advance(time.Hour)
	run2 := f.run(t, s)
	wantRun(t, run2, counts{Resumed: 1, Uploaded: 1})
	if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
		t.Errorf("uploads = %+v, want one success", u)
	}
	if r := f.record(t, rec.Serial); !r.RevokedAt.Equal(revokedAt) {
		t.Errorf("revocation time moved from %v to %v on the second run", revokedAt, r.RevokedAt)
	}
	if n := len(f.notifiedSerials()); n != 1 {
		t.Errorf("OnRevoked called for %d serials, want 1", n)
	}
}

// An upload that fails (500, a timeout, or an answer of false) leaves the items applied; the next run uploads
// them from the store without downloading them again.
func TestSyncUploadFailureRetriedNextRun(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault intunefake.Fault
	}{
		{"500", intunefake.Fault{Status: 500, Body: `{"error":{"code":"InternalError","message":"boom"}}`}},
		{"timeout", intunefake.Fault{Delay: 3 * time.Second}},
		{"not accepted", intunefake.Fault{Body: `{"value":false}`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{callTimeout: time.Second})
			recs := f.issue(t, 2)
			rcs := []string{f.queue(t, recs[0].Serial), f.queue(t, recs[1].Serial)}
			f.fake.InjectFault(intunefake.RouteUpload, tt.fault)
			s := f.syncer(t, nil)
			run := f.run(t, s)
			wantRun(t, run, counts{Downloaded: 2, Revoked: 2})
			if len(run.Errors) == 0 {
				t.Error("the failed upload is not in the run's errors")
			}
			if n := f.fake.Count(intunefake.RouteUpload); n == 0 {
				t.Fatal("no upload was attempted")
			}
			if u := f.fake.UploadedResults(); len(u) != 0 {
				t.Fatalf("the fake recorded results despite the fault: %+v", u)
			}
			for _, rc := range rcs {
				it, _ := f.st.item(rc)
				if it.State != store.WorkApplied || !it.Succeeded || it.Attempts < 1 {
					t.Errorf("work item after the failed upload: %+v, want applied, succeeded, attempts ≥ 1", it)
				}
			}

			f.fake.ClearFaults()
			run2 := f.run(t, s)
			wantRun(t, run2, counts{Resumed: 2, Uploaded: 2})
			for _, rc := range rcs {
				if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
					t.Errorf("uploads = %+v, want one success", u)
				}
				it := f.fakeState(t, rc)
				if it.State != intunefake.StateDone || it.Deliveries != 1 {
					t.Errorf("Intune's item: %s after %d deliveries, want done after 1", it.State, it.Deliveries)
				}
				if st := f.workState(t, rc); st != store.WorkUploaded {
					t.Errorf("work item is %s, want uploaded", st)
				}
			}
			if n := f.fake.Count(intunefake.RouteDownload); n != 2 {
				t.Errorf("downloads = %d, want one per run", n)
			}
		})
	}
}

// Intune offers a request again after we answered it: it is answered again with success, and nothing about the
// revocation changes (same time, same index entry, no cache invalidation, no revoked count).
func TestSyncSameRequestDeliveredTwice(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	rc := f.queue(t, rec.Serial)
	s := f.syncer(t, nil)
	f.run(t, s)
	first := f.record(t, rec.Serial)

	f.fake.Advance(61 * time.Minute)
	f.clock.Advance(61 * time.Minute)
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Times: 1, Body: fmt.Sprintf(
		`{"value":[{"requestContext":%q,"serialNumber":%q,"issuerName":%q,"caConfiguration":%q}]}`,
		rc, rec.Serial, f.caConfig, f.caConfig)})
	run := f.run(t, s)
	wantRun(t, run, counts{Downloaded: 1, Uploaded: 1})
	u := f.uploadsFor(rc)
	if len(u) != 2 || !u[0].Succeeded || !u[1].Succeeded || u[1].ErrorCode != 0 {
		t.Errorf("uploads = %+v, want two successes", u)
	}
	again := f.record(t, rec.Serial)
	if again.ETag != first.ETag || !again.RevokedAt.Equal(first.RevokedAt) || again.RevocationRef != rc {
		t.Errorf("record changed on the second delivery: %+v → %+v", first, again)
	}
	list, _ := f.backend.ListRevoked(context.Background())
	if len(list) != 1 || !list[0].RevokedAt.Equal(first.RevokedAt) {
		t.Errorf("index = %+v, want the one first entry", list)
	}
	if n := len(f.notifiedSerials()); n != 1 {
		t.Errorf("OnRevoked called for %d serials, want 1", n)
	}
}

// 250 queued requests with a batch of 100 and Intune's cool-down: each run inside the cool-down gets nothing,
// each run after it drains one batch, chunked into uploads of Chunk results; nothing is answered twice.
func TestSyncDrainsOverRuns(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 250)
	bySerial := map[string]string{}
	for _, r := range recs {
		bySerial[f.queue(t, r.Serial)] = r.Serial
	}
	s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = 100; c.Chunk = 40 })

	run := f.run(t, s)
	wantRun(t, run, counts{Downloaded: 100, Revoked: 100, Uploaded: 100})
	if n := f.fake.Count(intunefake.RouteUpload); n != 3 {
		t.Errorf("uploads for 100 items in chunks of 40 = %d, want 3", n)
	}
	run = f.run(t, s) // inside the cool-down
	wantRun(t, run, counts{})
	for _, want := range []int{100, 50, 0} {
		f.fake.Advance(61 * time.Minute)
		f.clock.Advance(61 * time.Minute)
		run = f.run(t, s)
		wantRun(t, run, counts{Downloaded: want, Revoked: want, Uploaded: want})
	}
	seen := map[string]int{}
	for _, u := range f.fake.UploadedResults() {
		seen[u.RequestContext]++
		if !u.Succeeded {
			t.Errorf("failure uploaded: %+v", u)
		}
	}
	if len(seen) != 250 {
		t.Errorf("%d distinct requests answered, want 250", len(seen))
	}
	for rc, n := range seen {
		if n != 1 {
			t.Errorf("request %.12s… answered %d times", rc, n)
		}
	}
	for rc, serial := range bySerial {
		if r := f.record(t, serial); r.Status != store.StatusRevoked || r.RevocationRef != rc {
			t.Errorf("record %s: %s ref %.12s…", serial, r.Status, r.RevocationRef)
		}
	}
	runs, _ := f.backend.Runs(context.Background(), 0)
	if len(runs) != 5 || len(f.logs.Records("revocation sync")) != 5 {
		t.Errorf("%d run records and %d log lines, want 5 each", len(runs), len(f.logs.Records("revocation sync")))
	}
}

// The answer for each kind of request: unknown serial → CertificateNotFoundError; already revoked by an admin →
// success without touching the admin's revocation; serial spelled in lower case with leading zeros → matched;
// pending with a planned certificate → revoked; pending without one → not found.
func TestSyncOutcomes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	issued := f.issue(t, 2)
	adminRevoked, spelled := issued[0], issued[1]
	if _, _, err := revocation.Revoke(context.Background(), f.backend, adminRevoked.Serial, 1, "admin:alice", "", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	adminRec := f.record(t, adminRevoked.Serial)
	pendingPlanned := f.insert(t, store.StatusPending, true, "pending-planned")
	pendingBare := f.insert(t, store.StatusPending, false, "pending-bare")

	rcUnknown := f.queue(t, "0123456789ABCDEF")
	rcGarbage := f.queue(t, "not-a-serial")
	rcAdmin := f.queue(t, adminRevoked.Serial)
	rcSpelled := f.queue(t, "00"+strings.ToLower(spelled.Serial))
	rcPlanned := f.queue(t, pendingPlanned.Serial)
	rcBare := f.queue(t, pendingBare.Serial)

	s := f.syncer(t, nil)
	before := f.clock.Now()
	run := f.run(t, s)
	wantRun(t, run, counts{Downloaded: 6, Revoked: 1, NotFound: 4, Uploaded: 6})

	for _, tt := range []struct {
		name string
		rc   string
		ok   bool
		code int
	}{
		{"unknown serial", rcUnknown, false, 4004},
		{"not a serial", rcGarbage, false, 4004},
		{"pending without a planned certificate", rcBare, false, 4004},
		// Never reported to Intune by successNotification: not Intune's to revoke (an admin may).
		{"pending with a planned certificate", rcPlanned, false, 4004},
		{"already revoked by an admin", rcAdmin, true, 0},
		{"serial in another spelling", rcSpelled, true, 0},
	} {
		u := f.uploadsFor(tt.rc)
		if len(u) != 1 || u[0].Succeeded != tt.ok || u[0].ErrorCode != tt.code {
			t.Errorf("%s: uploaded %+v, want succeeded=%t code %d", tt.name, u, tt.ok, tt.code)
			continue
		}
		if !tt.ok && (u[0].ErrorCodeRaw != `"CertificateNotFoundError"` || u[0].ErrorMessage == nil || *u[0].ErrorMessage == "") {
			t.Errorf("%s: errorCode %s message %v, want the member name and a message", tt.name, u[0].ErrorCodeRaw, u[0].ErrorMessage)
		}
		if tt.ok && (u[0].ErrorCodeRaw != `"None"` || u[0].ErrorMessage != nil) {
			t.Errorf("%s: errorCode %s message %v, want \"None\" and null", tt.name, u[0].ErrorCodeRaw, u[0].ErrorMessage)
		}
		wantFake := intunefake.StateDone
		if !tt.ok {
			wantFake = intunefake.StateFailed
		}
		if st := f.fakeState(t, tt.rc).State; st != wantFake {
			t.Errorf("%s: Intune's item is %s, want %s", tt.name, st, wantFake)
		}
		if st := f.workState(t, tt.rc); st != store.WorkUploaded {
			t.Errorf("%s: work item is %s, want uploaded", tt.name, st)
		}
	}
	if got := f.record(t, adminRevoked.Serial); got.ETag != adminRec.ETag || got.RevokedBy != "admin:alice" || got.RevocationReason != 1 {
		t.Errorf("the admin's revocation was changed: %+v", got)
	}
	f.wantRevokedByIntune(t, spelled.Serial, rcSpelled, before, f.clock.Now())
	for _, r := range []*store.Record{pendingBare, pendingPlanned} {
		if got := f.record(t, r.Serial); got.Status != store.StatusPending {
			t.Errorf("pending record %s became %s", r.Serial, got.Status)
		}
	}
}

// Requests routed to another CA whose serial is not ours are kept as foreign and never answered, even when
// Intune offers them again. A request routed to another CA for a serial that is ours is foreign too, unless that
// is the caConfiguration the certificate was reported with (the CA was renamed since, e.g. after a rollover).
func TestSyncForeignItems(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ours := f.issue(t, 3)
	// ours[0] was reported to Intune under the CA's previous caConfiguration.
	old := f.record(t, ours[0].Serial)
	old.CAConfiguration = "CN=Our old CA name"
	if err := f.backend.Update(context.Background(), old, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	rcOtherCA := f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: "0ABCDEF012345678", IssuerName: "CN=Other CA", CAConfiguration: "CN=Other CA"})
	rcOtherIssuer := f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: "0ABCDEF012345679", IssuerName: "CN=Other CA"})
	rcOursElsewhere := f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: ours[2].Serial, IssuerName: "CN=Other CA", CAConfiguration: "CN=Other CA"})
	rcNoRouting := f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: "0ABCDEF01234567A"})
	rcRolledOver := f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: ours[0].Serial, CAConfiguration: "CN=Our old CA name"})
	rcByIssuer := f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: ours[1].Serial, IssuerName: f.caConfig})

	s := f.syncer(t, nil)
	run := f.run(t, s)
	wantRun(t, run, counts{Downloaded: 6, Foreign: 3, Revoked: 2, NotFound: 1, Uploaded: 3})
	if r := f.record(t, ours[2].Serial); r.Status != store.StatusIssued {
		t.Errorf("a request routed to another CA revoked our certificate: %s", r.Status)
	}
	for _, rc := range []string{rcOtherCA, rcOtherIssuer, rcOursElsewhere} {
		if st := f.workState(t, rc); st != store.WorkForeign {
			t.Errorf("foreign item is %s, want foreign", st)
		}
		if u := f.uploadsFor(rc); len(u) != 0 {
			t.Errorf("foreign item answered: %+v", u)
		}
	}
	if u := f.uploadsFor(rcNoRouting); len(u) != 1 || u[0].ErrorCode != 4004 {
		t.Errorf("unrouted unknown serial: uploaded %+v, want CertificateNotFoundError", u)
	}
	for i, rc := range []string{rcRolledOver, rcByIssuer} {
		if r := f.record(t, ours[i].Serial); r.Status != store.StatusRevoked || r.RevocationRef != rc {
			t.Errorf("our certificate %d: %s", i, r.Status)
		}
		if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
			t.Errorf("our certificate %d: uploaded %+v", i, u)
		}
	}

	// Unacknowledged, the foreign items come back after the cool-down; they stay unanswered, and are counted again:
	// they take places in every download.
	f.fake.Advance(61 * time.Minute)
	f.clock.Advance(61 * time.Minute)
	run = f.run(t, s)
	wantRun(t, run, counts{Downloaded: 3, Foreign: 3})
	for _, rc := range []string{rcOtherCA, rcOtherIssuer, rcOursElsewhere} {
		if it := f.fakeState(t, rc); it.Deliveries != 2 || len(f.uploadsFor(rc)) != 0 {
			t.Errorf("foreign item delivered %d times, answered %d times; want 2 and 0", it.Deliveries, len(f.uploadsFor(rc)))
		}
	}
}

// TestSyncGenerationBumpFails: the index, the first generation bump and the record are written, then the final
// bump, which tells the other instances' OCSP caches, fails. The revocation is durable, so this instance's caches are told at once; the item is
// answered "retry later", and the next run completes the bump without telling the caches twice.
func TestSyncGenerationBumpFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 1)
	rc := f.queue(t, recs[0].Serial)
	// 1: the sync lease; 2: the bump after the index entry; 3: the bump after the record
	f.faults.Inject(storetest.Fault{Method: storetest.MethodPutMeta, Nth: 3})
	s := f.syncer(t, nil)
	wantRun(t, f.run(t, s), counts{Downloaded: 1, Failed: 1, Uploaded: 1})
	if r := f.record(t, recs[0].Serial); r.Status != store.StatusRevoked {
		t.Fatalf("record is %s, want revoked (only the bump failed)", r.Status)
	}
	if got := f.notifiedSerials(); !slices.Equal(got, []string{recs[0].Serial}) {
		t.Errorf("OnRevoked got %v after a durable revocation whose bump failed, want the serial", got)
	}
	if u := f.uploadsFor(rc); len(u) != 1 || u[0].Succeeded {
		t.Errorf("uploads = %+v, want one retry-later answer", u)
	}
	f.run(t, s)
	if n := len(f.notifiedSerials()); n != 1 {
		t.Errorf("OnRevoked called for %d serials, want 1", n)
	}
	if raw, _, err := f.backend.GetMeta(context.Background(), "revocation-generation"); err != nil || !strings.Contains(string(raw), recs[0].Serial) {
		t.Errorf("the next run did not bump the revocation generation: %s %v", raw, err)
	}
}

// Store trouble while revoking: Intune is told RetryableServiceException, the item stays open locally, and the
// next run finishes the revocation and reports success; Intune's re-offer is answered with success too.
func TestSyncStoreTroubleWhileApplying(t *testing.T) {
	for _, method := range []string{storetest.MethodUpdate, storetest.MethodAddRevoked, storetest.MethodGet} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			recs := f.issue(t, 2)
			rcs := []string{f.queue(t, recs[0].Serial), f.queue(t, recs[1].Serial)}
			f.faults.FailMethod(method, nil)
			s := f.syncer(t, nil)
			run := f.run(t, s)
			wantRun(t, run, counts{Downloaded: 2, Failed: 2, Uploaded: 2})
			for i, rc := range rcs {
				u := f.uploadsFor(rc)
				if len(u) != 1 || u[0].Succeeded || u[0].ErrorCode != 4100 {
					t.Errorf("uploaded %+v, want RetryableServiceException", u)
				}
				if st := f.workState(t, rc); st != store.WorkDownloaded {
					t.Errorf("work item is %s after a retryable answer, want downloaded (open)", st)
				}
				if r := f.record(t, recs[i].Serial); r.Status != store.StatusIssued {
					t.Errorf("record is %s after the failed revocation", r.Status)
				}
			}
			open, _ := f.backend.OpenRevocations(context.Background(), 0)
			if len(open) != 2 {
				t.Errorf("%d open items, want 2", len(open))
			}

			f.faults.Clear()
			before := f.clock.Now()
			run2 := f.run(t, s) // inside the cool-down: only our own resume finishes them
			wantRun(t, run2, counts{Resumed: 2, Revoked: 2, Uploaded: 2})
			for i, rc := range rcs {
				f.wantRevokedByIntune(t, recs[i].Serial, rc, before, f.clock.Now())
				f.wantIndexed(t, recs[i].Serial, 5)
				u := f.uploadsFor(rc)
				if len(u) != 2 || !u[1].Succeeded {
					t.Errorf("uploads = %+v, want retryable then success", u)
				}
				if st := f.fakeState(t, rc).State; st != intunefake.StateDone {
					t.Errorf("Intune's item is %s, want done", st)
				}
				if st := f.workState(t, rc); st != store.WorkUploaded {
					t.Errorf("work item is %s, want uploaded", st)
				}
			}
		})
	}
}

// Intune re-offers an item we answered "retry later" while the store still refuses the revocation, for our own
// retry and for the re-offered copy alike: the re-offered copy is not answered at all (Intune offers it again, and
// our open copy is retried by the next run). Answering it with success would have Intune close a request whose
// certificate is not revoked.
func TestSyncReofferedItemDuringStoreTroubleIsNotAnswered(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	rc := f.queue(t, rec.Serial)
	f.faults.FailMethod(storetest.MethodUpdate, nil)
	s := f.syncer(t, nil)
	f.run(t, s)

	f.fake.Advance(61 * time.Minute)
	f.clock.Advance(61 * time.Minute)
	run := f.run(t, s) // the store still refuses the record's write
	f.faults.Clear()
	if run.Downloaded != 1 || run.Revoked != 0 {
		t.Fatalf("run 2 = %+v, want the item downloaded again and nothing revoked", countsOf(run))
	}
	for _, u := range f.uploadsFor(rc) {
		if u.Succeeded {
			t.Fatalf("uploads = %+v: a success was answered while the record stayed %s", f.uploadsFor(rc),
				f.record(t, rec.Serial).Status)
		}
	}
	if st := f.fakeState(t, rc).State; st == intunefake.StateDone {
		t.Errorf("Intune's item is %s while the certificate is not revoked", st)
	}
	if st := f.workState(t, rc); st != store.WorkDownloaded {
		t.Errorf("work item is %s, want downloaded (open) for the next run", st)
	}
}

// Intune re-offers an item we answered "retry later" while our own retry of it fails once more: the re-offered
// copy is revoked and answered with success (and the caches told), and that accepted answer closes our still-open
// copy: the next run neither revokes nor uploads it again.
func TestSyncRetryableReofferedByIntune(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	rc := f.queue(t, rec.Serial)
	f.faults.FailMethod(storetest.MethodUpdate, nil)
	s := f.syncer(t, nil)
	f.run(t, s)
	f.faults.Clear()
	if st := f.fakeState(t, rc).State; st != intunefake.StateQueued {
		t.Fatalf("Intune's item is %s after a retryable answer, want queued", st)
	}

	f.fake.Advance(61 * time.Minute)
	f.clock.Advance(61 * time.Minute)
	f.faults.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1}) // our resume fails once more
	run := f.run(t, s)
	f.faults.Clear()
	wantRun(t, run, counts{Resumed: 1, Downloaded: 1, Failed: 1, Revoked: 1, Uploaded: 2})
	u := f.uploadsFor(rc)
	if len(u) != 3 || u[0].ErrorCode != 4100 || u[1].ErrorCode != 4100 || !u[2].Succeeded {
		t.Errorf("uploads = %+v, want retryable, retryable, success", u)
	}
	if st := f.fakeState(t, rc).State; st != intunefake.StateDone {
		t.Errorf("Intune's item is %s, want done", st)
	}
	if r := f.record(t, rec.Serial); r.Status != store.StatusRevoked || r.RevocationRef != rc {
		t.Errorf("record %s ref %.12q", r.Status, r.RevocationRef)
	}
	if n := len(f.notifiedSerials()); n != 1 {
		t.Errorf("OnRevoked called for %d serials, want 1", n)
	}

	// The accepted re-answer marked the item uploaded: the next run has nothing to upload for it.
	if st := f.workState(t, rc); st != store.WorkUploaded {
		t.Errorf("work item is %s, want uploaded", st)
	}
	run = f.run(t, s)
	wantRun(t, run, counts{})
	if u := f.uploadsFor(rc); len(u) != 3 {
		t.Errorf("uploads = %d, want still 3", len(u))
	}
	if n := len(f.notifiedSerials()); n != 1 {
		t.Errorf("OnRevoked called for %d serials, want 1", n)
	}
}

// A run that cannot download returns the error and still leaves a record with the error and one log line.
func TestSyncDownloadFailureRecorded(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Status: 503})
	s := f.syncer(t, nil)
	run, err := s.Run(context.Background(), "admin")
	if err == nil {
		t.Fatal("Run succeeded although every download failed")
	}
	runs, rerr := f.backend.Runs(context.Background(), 0)
	if rerr != nil || len(runs) != 1 || len(runs[0].Errors) == 0 || runs[0].ID != run.ID || runs[0].Trigger != "admin" {
		t.Errorf("recorded runs = %+v (%v), want one with the download error", runs, rerr)
	}
	if n := len(f.logs.Records("revocation sync")); n != 1 {
		t.Errorf("%d log lines, want 1", n)
	}
}

// Two overlapping runs: the second gets ErrRunning without touching Intune; the first finishes alone, and each
// request is answered once.
func TestSyncOverlappingRuns(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 3)
	for _, r := range recs {
		f.queue(t, r.Serial)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.faults.OnCall(func(method string) {
		if method == storetest.MethodEnqueueRevocations || method == storetest.MethodEnqueueRevocation {
			once.Do(func() { close(entered); <-release })
		}
	})
	s1, s2 := f.syncer(t, nil), f.syncer(t, nil)
	done := make(chan error, 1)
	var first store.SyncRun
	go func() {
		var err error
		first, err = s1.Run(context.Background(), "timer")
		done <- err
	}()
	<-entered
	_, err := s2.Run(context.Background(), "admin")
	if !errors.Is(err, revocation.ErrRunning) {
		t.Errorf("overlapping run: %v, want ErrRunning", err)
	}
	if n := f.fake.Count(intunefake.RouteDownload); n != 1 {
		t.Errorf("downloads = %d while the second run was refused, want 1", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	wantRun(t, first, counts{Downloaded: 3, Revoked: 3, Uploaded: 3})
	if n := len(f.fake.UploadedResults()); n != 3 {
		t.Errorf("%d results uploaded, want 3", n)
	}
	runs, _ := f.backend.Runs(context.Background(), 0)
	if len(runs) != 1 {
		t.Errorf("%d run records, want only the run that ran", len(runs))
	}
	// The lease is free again.
	f.run(t, s2)
}

// Many runs started at once (timer plus manual runs on several instances): the lease lets them through one at a
// time, so no request is answered twice and every revocation happens once.
func TestSyncConcurrentRunsNoDoubleUpload(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 10)
		for _, r := range recs {
			f.queue(t, r.Serial)
		}
		var wg sync.WaitGroup
		var ran, refused atomic.Int32
		for range 6 {
			s := f.syncer(t, nil)
			wg.Go(func() {
				_, err := s.Run(context.Background(), "admin")
				switch {
				case err == nil:
					ran.Add(1)
				case errors.Is(err, revocation.ErrRunning):
					refused.Add(1)
				default:
					t.Errorf("Run: %v", err)
				}
			})
		}
		wg.Wait()
		if ran.Load() == 0 || ran.Load()+refused.Load() != 6 {
			t.Errorf("%d runs ran and %d were refused", ran.Load(), refused.Load())
		}
		seen := map[string]int{}
		for _, u := range f.fake.UploadedResults() {
			seen[u.RequestContext]++
		}
		if len(seen) != 10 {
			t.Errorf("%d requests answered, want 10", len(seen))
		}
		for _, n := range seen {
			if n != 1 {
				t.Errorf("a request was answered %d times", n)
			}
		}
		if n := len(f.notifiedSerials()); n != 10 {
			t.Errorf("OnRevoked got %d serials, want 10", n)
		}
		runs, _ := f.backend.Runs(context.Background(), 0)
		if len(runs) != int(ran.Load()) {
			t.Errorf("%d run records for %d runs", len(runs), ran.Load())
		}
	})
}

// A run that died holding the lease blocks the next run only until the lease expires.
func TestSyncExpiredLeaseTakenOver(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		rec := f.issue(t, 1)[0]
		rc := f.queue(t, rec.Serial)
		s := f.syncer(t, func(c *revocation.SyncConfig) { c.LeaseTTL = 15 * time.Minute })
		// The first run's lease release (its fourth PutMeta: lease, the revocation generation after the index
		// entry and after the record, release) is lost, as when the host kills the function.
		f.faults.Inject(storetest.Fault{Method: storetest.MethodPutMeta, Nth: 4})
		f.run(t, s)
		f.faults.Clear()

		f.clock.Advance(14 * time.Minute)
		if _, err := s.Run(context.Background(), "timer"); !errors.Is(err, revocation.ErrRunning) {
			t.Fatalf("run inside the dead run's lease: %v, want ErrRunning", err)
		}
		f.clock.Advance(2 * time.Minute)
		f.fake.Advance(2 * time.Hour)
		f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Times: 1, Body: fmt.Sprintf(
			`{"value":[{"requestContext":%q,"serialNumber":%q,"caConfiguration":%q}]}`, rc, rec.Serial, f.caConfig)})
		run := f.run(t, s)
		wantRun(t, run, counts{Downloaded: 1, Uploaded: 1})
		if runs, _ := f.backend.Runs(context.Background(), 0); len(runs) != 2 {
			t.Errorf("%d run records, want 2", len(runs))
		}
		// The taking run released its lease normally.
		f.run(t, s)
	})
}

// A run that has spent its time budget leaves the rest for the next run instead of downloading more.
func TestSyncTimeBudget(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 4)
	var rcs []string
	for _, r := range recs {
		rcs = append(rcs, f.queue(t, r.Serial))
	}
	s := f.syncer(t, func(c *revocation.SyncConfig) {
		c.Chunk, c.Budget = 2, time.Minute
		c.DownloadWorstCase, c.PersistTimeout = 10*time.Second, 10*time.Second // a download fits in the minute
	})
	// Every record read costs the run a minute of its budget: the first chunk is finished, the second is left.
	f.faults.OnCall(func(method string) {
		if method == storetest.MethodGet {
			f.clock.Advance(40 * time.Second)
		}
	})
	run := f.run(t, s)
	f.faults.Clear()
	wantRun(t, run, counts{Downloaded: 4, Revoked: 2, Uploaded: 2})
	if len(run.Errors) != 1 || !strings.Contains(run.Errors[0], "2 items left") {
		t.Errorf("errors = %q, want the budget note", run.Errors)
	}
	open, _ := f.backend.OpenRevocations(context.Background(), 0)
	if len(open) != 2 {
		t.Fatalf("%d open items, want 2", len(open))
	}
	run = f.run(t, s)
	if run.Resumed != 2 || run.Revoked != 2 || run.Uploaded != 2 {
		t.Errorf("next run = %+v, want the 2 left-over items finished", run)
	}
	for _, rc := range rcs {
		if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
			t.Errorf("uploads = %+v", u)
		}
	}
}

func TestNewSyncerValidates(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for name, cfg := range map[string]revocation.SyncConfig{
		"no store":    {Intune: f.client},
		"no intune":   {Store: f.st},
		"batch > 500": {Store: f.st, Intune: f.client, Batch: 501},
		// 3 min cannot hold a download at its slowest (94 s) and its persist (2 min): it would never download.
		"budget without room for a download": {Store: f.st, Intune: f.client, Budget: 3 * time.Minute},
	} {
		if _, err := revocation.NewSyncer(cfg); err == nil {
			t.Errorf("%s: NewSyncer accepted %+v", name, cfg)
		}
	}
	// Batch 500 is Intune's limit and is sent as is.
	f.queue(t, "0A")
	s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = 500 })
	f.run(t, s)
	reqs := f.fake.Requests(intunefake.RouteDownload)
	if len(reqs) != 1 || !strings.Contains(string(reqs[0].Body), `"maxRequests":500`) {
		t.Errorf("download bodies = %v, want maxRequests 500", reqs)
	}
}

// pauses is a SyncConfig.Sleep that waits a millisecond instead of what it was asked (or returns ctx's error) and
// remembers what it was asked to wait; then, if set, runs at the nth pause (1-based).
type pauses struct {
	mu    sync.Mutex
	waits []time.Duration
	n     int
	then  func()
}

func (p *pauses) sleep(ctx context.Context, d time.Duration) error {
	p.mu.Lock()
	p.waits = append(p.waits, d)
	fire := p.then != nil && len(p.waits) == p.n
	p.mu.Unlock()
	if fire {
		p.then()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Millisecond): // real time passes, so a short PersistTimeout ends
		return nil
	}
}

func (p *pauses) got() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.waits)
}

// A downloaded item whose first write to the store fails is written again rather than dropped: after the run (and
// a second one, inside Intune's cool-down) every item is persisted and its record revoked. The download is the
// only copy. A longer outage is ridden out with pauses of 250 ms doubling up to 5 s.
func TestSyncPersistRetried(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fault  func(f *fixture, p *pauses)
		pauses []time.Duration
	}{
		// The batch fails, and so does the first of the one-by-one writes after it.
		{"one failed write", func(f *fixture, p *pauses) {
			f.faults.Inject(storetest.Fault{Method: storetest.MethodEnqueueRevocations, Nth: 1})
			f.faults.Inject(storetest.Fault{Method: storetest.MethodEnqueueRevocation, Nth: 1})
		}, []time.Duration{250 * time.Millisecond}},
		{"outage over seven pauses", func(f *fixture, p *pauses) {
			f.faults.FailMethod(storetest.MethodEnqueueRevocations, nil)
			f.faults.FailMethod(storetest.MethodEnqueueRevocation, nil)
			p.n, p.then = 7, f.faults.Clear
		}, []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
			4 * time.Second, 5 * time.Second, 5 * time.Second}},
		// A one-by-one write is committed but its answer lost: the retry finds the item stored (ErrExists), and it
		// is finished like an item delivered twice.
		{"write committed, answer lost", func(f *fixture, p *pauses) {
			f.faults.Inject(storetest.Fault{Method: storetest.MethodEnqueueRevocations, Nth: 1})
			f.faults.Inject(storetest.Fault{Method: storetest.MethodEnqueueRevocation, Nth: 1, Commit: true})
		}, []time.Duration{250 * time.Millisecond}},
		// The batch is committed but its answer lost: the one-by-one writes that follow at once find every item
		// stored, and each is finished like an item delivered twice, none lost, none answered twice.
		{"batch committed, answer lost", func(f *fixture, p *pauses) {
			f.faults.Inject(storetest.Fault{Method: storetest.MethodEnqueueRevocations, Nth: 1, Commit: true})
		}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			recs := f.issue(t, 3)
			var rcs []string
			for _, r := range recs {
				rcs = append(rcs, f.queue(t, r.Serial))
			}
			p := &pauses{}
			tt.fault(f, p)
			s := f.syncer(t, func(c *revocation.SyncConfig) { c.Sleep = p.sleep })
			before := f.clock.Now()
			run := f.run(t, s)
			f.faults.Clear()
			if run.Downloaded != 3 || run.Revoked != 3 || run.Failed != 0 || len(run.Errors) != 0 {
				t.Errorf("run = %+v, want 3 downloaded and revoked, no failures or errors", run)
			}
			if got := p.got(); !slices.Equal(got, tt.pauses) {
				t.Errorf("pauses between attempts = %v, want %v", got, tt.pauses)
			}
			f.run(t, s) // inside the cool-down: only what we stored can be finished
			for i, rc := range rcs {
				if _, ok := f.st.item(rc); !ok {
					t.Errorf("item %d was never persisted", i)
				}
				f.wantRevokedByIntune(t, recs[i].Serial, rc, before, f.clock.Now())
				if st := f.fakeState(t, rc).State; st != intunefake.StateDone {
					t.Errorf("Intune's item %d is %s, want done", i, st)
				}
			}
			open, err := f.backend.OpenRevocations(context.Background(), 0)
			if err != nil || len(open) != 0 {
				t.Errorf("%d open items after two runs (%v), want none", len(open), err)
			}
			if rej := f.fake.Rejections(); len(rej) != 0 {
				t.Errorf("the strict fake rejected requests: %+v", rej)
			}
		})
	}
}

// A store outage that outlasts PersistTimeout: nothing is done for the items (no revocation, no upload), and each
// is counted as failed, in the run's errors and logged at Error level with its serial, so that an operator can
// revoke by hand; no request context is logged in full.
func TestSyncPersistOutlastsTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 2)
	rcs := []string{f.queue(t, recs[0].Serial), f.queue(t, recs[1].Serial)}
	f.faults.FailMethod(storetest.MethodEnqueueRevocations, nil)
	f.faults.FailMethod(storetest.MethodEnqueueRevocation, nil)
	p := &pauses{}
	s := f.syncer(t, func(c *revocation.SyncConfig) { c.Sleep = p.sleep; c.PersistTimeout = 100 * time.Millisecond })
	run := f.run(t, s)
	f.faults.Clear()
	wantRun(t, run, counts{Downloaded: 2, Failed: 2})
	if n := f.faults.Calls(storetest.MethodEnqueueRevocation); n < 4 {
		t.Errorf("%d writes for 2 items, want them retried", n)
	}
	if n := f.fake.Count(intunefake.RouteUpload); n != 0 {
		t.Errorf("%d uploads for items that were never stored", n)
	}
	lost := f.logs.Records("intune revocation request lost: downloaded but not persisted, nothing done for it; " +
		"revoke the certificate by hand if it is ours")
	if len(lost) != 2 {
		t.Fatalf("%d 'request lost' log lines, want 2:\n%s", len(lost), f.logs)
	}
	for i, r := range recs {
		if got := f.record(t, r.Serial).Status; got != store.StatusIssued {
			t.Errorf("record %d is %s, want issued: nothing may act on an item that was not stored", i, got)
		}
		if _, ok := f.st.item(rcs[i]); ok {
			t.Errorf("item %d is stored", i)
		}
		if lost[i]["level"] != "ERROR" || lost[i]["serial"] != r.Serial || lost[i]["request"] != rcs[i][:12]+"…" {
			t.Errorf("log line %v, want level ERROR, serial %s and the shortened request context", lost[i], r.Serial)
		}
		if !slices.ContainsFunc(run.Errors, func(e string) bool {
			return strings.Contains(e, "not persisted") && strings.Contains(e, r.Serial)
		}) {
			t.Errorf("run errors %q do not name serial %s", run.Errors, r.Serial)
		}
		if strings.Contains(f.logs.String(), rcs[i]) {
			t.Error("the log holds a full request context")
		}
	}
}

// The download is started only while it (at its slowest: the Intune client's three attempts) and the persist
// after it still fit in the time budget; otherwise it is left for the next run, which gets the items. With the
// defaults (94 s download, 2 min persist) the latest start is 3 min 34 s before the budget ends.
func TestSyncDownloadReserve(t *testing.T) {
	latest := revocation.DefaultBudget - revocation.DefaultDownloadWorstCase - 2*time.Minute
	for _, tt := range []struct {
		name     string
		resume   time.Duration // how long the resume step takes
		download bool
	}{
		{"resume ends early", latest - 6*time.Second, true},
		{"resume ends late", latest + 4*time.Second, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			rec := f.issue(t, 1)[0]
			rc := f.queue(t, rec.Serial)
			f.faults.OnCall(func(method string) {
				if method == storetest.MethodOpenRevocations {
					f.clock.Advance(tt.resume)
				}
			})
			s := f.syncer(t, nil)
			run := f.run(t, s)
			f.faults.Clear()
			if !tt.download {
				wantRun(t, run, counts{})
				if n := f.fake.Count(intunefake.RouteDownload); n != 0 {
					t.Errorf("%d downloads with too little of the budget left, want none", n)
				}
				if len(run.Errors) != 1 || !strings.Contains(run.Errors[0], "download left for the next run") {
					t.Errorf("errors = %q, want the skipped download noted", run.Errors)
				}
				if st := f.fakeState(t, rc).State; st != intunefake.StateQueued {
					t.Errorf("Intune's item is %s, want still queued", st)
				}
				run = f.run(t, s) // a run with the whole budget
			}
			wantRun(t, run, counts{Downloaded: 1, Revoked: 1, Uploaded: 1})
			if len(run.Errors) != 0 {
				t.Errorf("errors = %q", run.Errors)
			}
			if n := f.fake.Count(intunefake.RouteDownload); n != 1 {
				t.Errorf("downloads = %d, want 1", n)
			}
		})
	}
}

// A run with 500 failing items is still recorded: its errors keep at most 50 lines, each at most 300 characters,
// plus one that says how many more there were, and every line left out is logged. Long lines full of characters
// that JSON escapes (and that count twice in UTF-16) are also kept under Table Storage's 64 KiB property limit.
func TestSyncRunErrorsCapped(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"short lines", nil},
		{"long lines", fmt.Errorf("%w: %s", store.ErrUnavailable, strings.Repeat("é<𝄞", 400))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backends(t, func(t *testing.T, tables bool) {
				f := newFixture(t, fixtureOptions{tables: tables})
				var rcs []string
				for i := range 500 {
					rcs = append(rcs, f.queue(t, fmt.Sprintf("7%015X", i))) // unknown serials
				}
				// Every result fails to persist, in the chunk's batch and then one by one.
				f.faults.FailMethod(storetest.MethodUpdateRevocations, tt.err)
				f.faults.FailMethod(storetest.MethodUpdateRevocation, tt.err)
				s := f.syncer(t, func(c *revocation.SyncConfig) { c.Batch = 500 })
				run := f.run(t, s)
				f.faults.Clear()
				if run.Downloaded != 500 {
					t.Fatalf("run = %+v, want 500 downloaded", countsOf(run))
				}
				runs, err := f.backend.Runs(context.Background(), 0)
				if err != nil || len(runs) != 1 {
					t.Fatalf("recorded runs = %d (%v), want the one run (logs:\n%.2000s)", len(runs), err, f.logs)
				}
				errs := runs[0].Errors
				if !slices.Equal(errs, run.Errors) {
					t.Errorf("recorded errors differ from the returned ones")
				}
				if len(errs) < 2 || len(errs) > 51 {
					t.Fatalf("%d error lines recorded, want 2 to 51", len(errs))
				}
				kept := len(errs) - 1
				if want := fmt.Sprintf("… and %d more errors (see the logs)", 500-kept); errs[kept] != want {
					t.Errorf("last error line %q, want %q", errs[kept], want)
				}
				for _, e := range errs {
					if n := utf8.RuneCountInString(e); n > 300 {
						t.Errorf("an error line of %d characters is recorded", n)
					}
				}
				// Every request is named either in a kept line or in a log line.
				var logged strings.Builder
				for _, r := range f.logs.Records("revocation sync error left out of the run record") {
					if r["level"] != "WARN" {
						t.Errorf("left-out line logged at %v, want WARN", r["level"])
					}
					fmt.Fprintln(&logged, r["error"])
				}
				all := strings.Join(errs, "\n") + logged.String()
				for _, rc := range rcs {
					if !strings.Contains(all, rc[:12]) {
						t.Fatalf("request %.12s… is neither in the run's errors nor in the log", rc)
					}
				}
				if tt.err != nil {
					if n := len(f.logs.Records("revocation sync error shortened in the run record")); n != kept {
						t.Errorf("%d shortened lines logged, want %d", n, kept)
					}
				}
			})
		})
	}
}

// Two runs that read the lease free at the same moment (two instances' timers, or the timer and an admin's run)
// cannot both take it: the lease write is conditioned on the version read, so the run whose write comes second
// finds it taken by the other and does nothing — no download, which would take items from Intune a second time.
func TestSyncLeaseTakenBetweenReadAndWrite(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	f.queue(t, rec.Serial)
	var once sync.Once
	f.faults.OnCall(func(method string) {
		if method != storetest.MethodPutMeta {
			return
		}
		once.Do(func() {
			// Another instance takes the lease after this run read it and before this run writes it.
			_, etag, err := f.backend.GetMeta(context.Background(), "revocation-sync-lease")
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Error(err)
				return
			}
			doc, _ := json.Marshal(map[string]any{"holder": "other-instance", "expires": f.clock.Now().Add(time.Hour)})
			if _, err := f.backend.PutMeta(context.Background(), "revocation-sync-lease", doc, etag); err != nil {
				t.Error(err)
			}
		})
	})
	_, err := f.syncer(t, nil).Run(context.Background(), "admin")
	if !errors.Is(err, revocation.ErrRunning) {
		t.Errorf("run whose lease write lost the race: %v, want ErrRunning", err)
	}
	if n := f.fake.Count(intunefake.RouteDownload); n != 0 {
		t.Errorf("downloads = %d by a run without the lease, want 0", n)
	}
}
