package main

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
	"github.com/azscep/azscep/internal/timer"
)

// TestTimerRevocationSync drives the hourly function the way the Functions host does: a certificate enrolled
// through Intune is queued for revocation at the fake, the host POSTs the timer envelope to /revocation-sync, and
// the answer is 200 JSON with Logs; the record is revoked, the result uploaded, and OCSP says revoked.
func TestTimerRevocationSync(t *testing.T) {
	s := startIntune(t, intuneSetup{})
	subject := pkix.Name{CommonName: "retired-device"}
	a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{Subject: subject.String()})
	cert, rec := s.issued(t, a)
	ctxRef, err := s.fake.RevokeIssued(rec.Serial)
	if err != nil {
		t.Fatal(err)
	}

	// Earlier runs' records: one past the retention, which the timer's run prunes, and one within it.
	var earlier []store.SyncRun
	for _, age := range []time.Duration{revocation.RunRetention + time.Hour, 24 * time.Hour} {
		at := time.Now().Add(-age)
		run := store.SyncRun{ID: store.NewRunID(at), Started: at, Finished: at.Add(time.Second), Trigger: "timer"}
		if err := s.store.RecordRun(context.Background(), run); err != nil {
			t.Fatal(err)
		}
		earlier = append(earlier, run)
	}

	envelope := `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"0001-01-01T00:00:00","Next":"2026-11-22T02:00:00","LastUpdated":"0001-01-01T00:00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"revocation-sync"}}}`
	resp, err := http.Post(s.base+"/revocation-sync", "application/json", bytes.NewBufferString(envelope))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Outputs     map[string]any
		Logs        []string
		ReturnValue any
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("timer answer %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Logs) == 0 {
		t.Fatalf("timer body: %v %+v", err, out)
	}
	if !strings.Contains(out.Logs[0], "downloaded=1") || !strings.Contains(out.Logs[0], "revoked=1") ||
		!strings.Contains(out.Logs[0], "uploaded=1") {
		t.Fatalf("run summary %q", out.Logs[0])
	}

	got, err := s.store.Get(context.Background(), rec.Serial)
	if err != nil || got.Status != store.StatusRevoked || got.RevokedBy != "intune" ||
		got.RevocationReason != revocation.IntuneReason || got.RevocationRef != ctxRef {
		t.Fatalf("record after the sync: %+v %v", got, err)
	}
	uploads := s.fake.UploadedResults()
	if len(uploads) != 1 {
		t.Fatalf("uploads = %+v", uploads)
	}
	runs, err := s.store.Runs(context.Background(), 5)
	if err != nil || len(runs) != 2 || runs[0].Trigger != "timer" || runs[0].Revoked != 1 || runs[1].ID != earlier[1].ID {
		t.Fatalf("runs = %+v %v; want the timer's and the one within the retention", runs, err)
	}
	// OCSP reflects the revocation at once (the sync tells the responder's cache).
	reqDER, err := xocsp.CreateRequest(cert, s.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	oresp, err := http.Post(s.base+"/api/ocsp", "application/ocsp-request", bytes.NewReader(reqDER))
	if err != nil {
		t.Fatal(err)
	}
	defer oresp.Body.Close()
	body, _ := io.ReadAll(oresp.Body)
	parsed, err := xocsp.ParseResponseForCert(body, cert, s.ca)
	if err != nil || parsed.Status != xocsp.Revoked || parsed.RevocationReason != revocation.IntuneReason {
		t.Fatalf("OCSP after the sync: %+v %v", parsed, err)
	}
}

// storeGate holds the first call of one store method: entered is closed when it arrives, and it goes on once
// release is closed.
type storeGate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newStoreGate() *storeGate {
	return &storeGate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *storeGate) hold() { g.once.Do(func() { close(g.entered); <-g.release }) }

// gatedResume holds the revocation sync's resume step (its first store read under the lease) until released.
type gatedResume struct {
	store.Store
	*storeGate
}

func (g *gatedResume) OpenRevocations(ctx context.Context, limit int) ([]*store.RevocationRequest, error) {
	g.hold()
	return g.Store.OpenRevocations(ctx, limit)
}

// TestTimerSyncStoppingStartsNoDownload: the worker gets SIGTERM (scale-in, a deployment) while the hourly sync is
// still resuming earlier work. serve drains for a bounded time and the process then exits, so a download started
// now may be cut before its items are persisted — and Intune offers nothing more for about an hour, if it offers
// them again. The run must finish what it holds and leave the download for the next run, which Intune's queue
// keeps for it.
func TestTimerSyncStoppingStartsNoDownload(t *testing.T) {
	gate := &gatedResume{storeGate: newStoreGate()}
	s := startIntune(t, intuneSetup{wrap: func(st store.Store) store.Store { gate.Store = st; return gate }})
	subject := pkix.Name{CommonName: "retired-during-scale-in"}
	a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{Subject: subject.String()})
	_, rec := s.issued(t, a)
	ctxRef, err := s.fake.RevokeIssued(rec.Serial)
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		code int
		logs []string
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Post(s.base+"/revocation-sync", "application/json",
			strings.NewReader(`{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var out struct{ Logs []string }
		err = json.NewDecoder(resp.Body).Decode(&out)
		answered <- answer{code: resp.StatusCode, logs: out.Logs, err: err}
	}()
	select {
	case <-gate.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the sync never reached its resume step")
	}
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }() // SIGTERM: serve stops listening and drains
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(s.base + "/")
		if err != nil {
			break // no longer listening: the shutdown has begun
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("serve kept listening after the stop")
		}
	}
	close(gate.release)
	got := <-answered
	<-stopped
	if got.err != nil || got.code != http.StatusOK {
		t.Fatalf("timer answer %d %v: the drain must let the run answer", got.code, got.err)
	}
	t.Logf("timer logs:\n%s", strings.Join(got.logs, "\n"))
	if n := s.fake.Count(intunefake.RouteDownload); n != 0 {
		t.Fatalf("the run downloaded %d times after the stop signal, want 0 (the download is left for the next run)", n)
	}
	if joined := strings.Join(got.logs, "\n"); !strings.Contains(joined, "downloaded=0") ||
		!strings.Contains(joined, "stopping") {
		t.Fatalf("the run does not say it left the download for the next run:\n%s", joined)
	}
	// Nothing was taken from Intune: the request is still queued there for the next run.
	if item, ok := s.fake.Revocation(ctxRef); !ok || item.State != intunefake.StateQueued {
		t.Fatalf("Intune's item after the stopped run: %+v %v, want still queued", item, ok)
	}
}

// gatedPersist holds the first write of a downloaded revocation request (the sync's persist) until released.
type gatedPersist struct {
	store.Store
	*storeGate
}

func (g *gatedPersist) EnqueueRevocation(ctx context.Context, r *store.RevocationRequest) error {
	g.hold()
	return g.Store.EnqueueRevocation(ctx, r)
}

func (g *gatedPersist) EnqueueRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	g.hold()
	return g.Store.EnqueueRevocations(ctx, rs)
}

// TestStopWaitsForHandedOverRequests: SIGTERM comes while the hourly sync persists what Intune just handed over.
// The drain ends (here after 100 ms), but the process must not exit before the requests are stored: Intune offers
// nothing more for about an hour after a download, if it offers them again, so exiting would lose them. Once the
// persist completes, serve returns, and the request is in the store for the next run.
func TestStopWaitsForHandedOverRequests(t *testing.T) {
	gate := &gatedPersist{storeGate: newStoreGate()}
	s := startIntune(t, intuneSetup{wrap: func(st store.Store) store.Store { gate.Store = st; return gate },
		drain: 100 * time.Millisecond})
	subject := pkix.Name{CommonName: "retired-during-a-download"}
	a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{Subject: subject.String()})
	_, rec := s.issued(t, a)
	ctxRef, err := s.fake.RevokeIssued(rec.Serial)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		resp, err := http.Post(s.base+"/revocation-sync", "application/json",
			strings.NewReader(`{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-gate.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the sync never persisted a download")
	}
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("serve returned while a download's requests were not stored yet")
	case <-time.After(time.Second): // ten times the drain
	}
	close(gate.release)
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return once the requests were stored")
	}
	open, err := s.store.OpenRevocations(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	held := false
	for _, r := range open {
		held = held || r.RequestContext == ctxRef
	}
	// Or the run, which goes on in this test process, applied it already: only a stored request is applied.
	if got, err := s.store.Get(context.Background(), rec.Serial); !held && (err != nil || got.Status != store.StatusRevoked) {
		t.Fatalf("the request Intune handed over is neither stored nor applied after the stop (record %v, %v)", got, err)
	}
}

// TestTimerReportsDisabledIntune: with Intune disabled by a setting problem, the hourly timer processes none of
// Intune's revocation requests, which wait in Intune's queue; its invocation must say so, with the setting, so that
// the operator sees in the timer's own logs why Intune revocations are not applied.
func TestTimerReportsDisabledIntune(t *testing.T) {
	d := &deps{
		cfg: &config.Config{Faults: map[string]*config.Error{
			config.FeatureIntune: {Setting: "AZSCEP_INTUNE_TENANT_ID", Problem: "missing"},
		}},
		log:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
		store: memstore.New(),
	}
	srv := httptest.NewServer(timer.Handler("timer", d.log, d.runSync))
	defer srv.Close()
	logs := postTimer(t, http.DefaultClient, srv.URL)
	found := false
	for _, l := range strings.Split(logs, "\n") {
		found = found || strings.HasPrefix(l, "error: Intune is disabled") && strings.Contains(l, "AZSCEP_INTUNE_TENANT_ID")
	}
	if !found {
		t.Fatalf("timer logs %q do not say that Intune is disabled and why", logs)
	}
}

// heldResume is a store whose OpenRevocations (a sync run's first step) waits until the test opens the gate or the
// run's context ends.
type heldResume struct {
	store.Store
	entered, gate chan struct{}
	once          sync.Once
}

func (h *heldResume) OpenRevocations(ctx context.Context, limit int) ([]*store.RevocationRequest, error) {
	h.once.Do(func() { close(h.entered) })
	select {
	case <-h.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.Store.OpenRevocations(ctx, limit)
}

// TestStopEndsDetachedSyncRun: SIGTERM comes while a manual sync run, detached from the request that started it,
// is in progress. A run in a request gets the drain; this one is no request, and used to be cut by the process's
// exit with its record unfinished (the status said "running" for minutes, then "interrupted") and the lease held
// for 15 minutes, refusing the next run. Now the stop gives it the drain too, and when the drain ends first the run
// is ended: it records itself as failed, with the reason, and gives the lease back before serve returns.
func TestStopEndsDetachedSyncRun(t *testing.T) {
	held := &heldResume{entered: make(chan struct{}), gate: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-held.gate:
		default:
			close(held.gate)
		}
	})
	s := startIntune(t, intuneSetup{wrap: func(st store.Store) store.Store { held.Store = st; return held },
		env: []string{"AZSCEP_DEV_ISSUER=true"}, drain: 100 * time.Millisecond})
	req, _ := http.NewRequest(http.MethodPost, s.base+"/api/certificates/revocation-sync", nil)
	req.Header.Set("Authorization", "Bearer "+devToken(t, s.base, "Certificates.Manage"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var started struct{ ID, State string }
	err = json.NewDecoder(resp.Body).Decode(&started)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || err != nil || started.State != "running" {
		t.Fatalf("POST revocation-sync: %d %+v %v", resp.StatusCode, started, err)
	}
	<-held.entered // the run is in progress, its request long answered

	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(60 * time.Second): // a failure guard only
		t.Fatal("serve did not return")
	}
	run, err := s.store.RunByID(context.Background(), started.ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Finished.IsZero() || run.Error == "" {
		t.Errorf("the run cut by the stop is recorded as %+v, want finished with the reason it stopped short", run)
	}
	lease, _, err := s.store.GetMeta(context.Background(), "revocation-sync-lease")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Holder string }
	if json.Unmarshal(lease, &doc) != nil || doc.Holder != "" {
		t.Errorf("after the stop the sync lease is %s, want it given back", lease)
	}
}

// TestTimerSyncNotStartedSaysSo: a sync that could not start (its start record refused by the store) is reported as
// not started, with the reason, in the invocation's Logs, not as a run of zero counts under an ID no record has.
func TestTimerSyncNotStartedSaysSo(t *testing.T) {
	var fs *storetest.FaultStore
	s := startIntune(t, intuneSetup{wrap: func(st store.Store) store.Store {
		fs = storetest.NewFaultStore(st)
		return fs
	}})
	fs.FailMethod("RecordRun", store.ErrUnavailable)
	logs := postTimer(t, http.DefaultClient, s.base)
	if !strings.Contains(logs, "revocation sync not started: ") || !strings.Contains(logs, "unavailable") {
		t.Errorf("the invocation's Logs do not say the sync did not start, and why:\n%s", logs)
	}
	if strings.Contains(logs, "resumed=") {
		t.Errorf("the invocation's Logs report counts of a run that never started:\n%s", logs)
	}
}

// TestTimerPrunesExpiredKeyBacklogs: the hourly timer deletes the per-key backlogs (issuance's bound on certificates
// awaiting Intune's verdict) whose reservations all expired, in the Table Storage store, and keeps a backlog with a
// reservation of the last hour, so the partition holds only the keys of the last hour. Before, nothing deleted them.
func TestTimerPrunesExpiredKeyBacklogs(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ctx := t.Context()
	now := in.clock.Now()
	expired := &store.Backlog{PublicKey: strings.Repeat("a", 64), Reservations: []store.Reservation{
		{Serial: "1A", At: now.Add(-3 * time.Hour)}, {Serial: "1B", At: now.Add(-61 * time.Minute)}}}
	recent := &store.Backlog{PublicKey: strings.Repeat("b", 64), Reservations: []store.Reservation{
		{Serial: "2A", At: now.Add(-2 * time.Hour)}, {Serial: "2B", At: now.Add(-10 * time.Minute)}}}
	for _, b := range []*store.Backlog{expired, recent} {
		if err := in.d.store.PutBacklog(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	logs := in.timer(t)
	if !strings.Contains(logs, "pruned 1 expired key backlogs") {
		t.Errorf("timer logs do not report the pruning:\n%s", logs)
	}
	if _, err := in.d.store.GetBacklog(ctx, expired.PublicKey); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired backlog after the timer: %v, want pruned", err)
	}
	if b, err := in.d.store.GetBacklog(ctx, recent.PublicKey); err != nil || len(b.Reservations) != 2 {
		t.Errorf("backlog with a reservation of the last hour after the timer: %+v, %v; want kept", b, err)
	}
}

// TestTimerPrunesAnHourOfIntuneKeys: the enrollment path leaves one backlog per key enrolled through Intune, so one
// timer run deletes all of an hour's worth of them — here 1,200, more than a page of the listing — rather than a
// few hundred, leaving none for the runs after it to fall behind on. Before, a run deleted 500 at most.
func TestTimerPrunesAnHourOfIntuneKeys(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ctx := t.Context()
	at := in.clock.Now().Add(-90 * time.Minute)
	const keys = 1200
	var wg sync.WaitGroup
	errs := make(chan error, keys)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += 8 {
				b := &store.Backlog{PublicKey: fmt.Sprintf("%064x", 0xa000+i), Reservations: []store.Reservation{{Serial: fmt.Sprintf("%X", 0x100+i), At: at}}}
				if err := in.d.store.PutBacklog(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	logs := in.timer(t)
	if want := fmt.Sprintf("pruned %d expired key backlogs", keys); !strings.Contains(logs, want) {
		t.Errorf("timer logs do not say %q:\n%s", want, logs)
	}
	if n, err := in.d.store.PruneBacklogs(ctx, in.clock.Now().Add(-time.Hour), 10*keys); n != 0 || err != nil {
		t.Errorf("after the timer, %d expired backlogs were left (%v); want none", n, err)
	}
}
