package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/azscep/azscep/internal/ctxtime"
	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/store"
)

// Intune is the revocation half of the Intune client.
type Intune interface {
	DownloadRevocationRequests(ctx context.Context, max int) ([]intune.RevocationRequest, error)
	UploadRevocationResults(ctx context.Context, results []intune.RevocationResult) error
}

// SyncConfig wires a Syncer.
type SyncConfig struct {
	Store  store.Store
	Intune Intune
	// CAConfiguration and IssuerName identify this CA in Intune's items (what successNotification reported:
	// intune.CAConfiguration of the CA certificate, and its subject DN).
	CAConfiguration string
	IssuerName      string
	Batch           int // downloads per run, 1–500 (default 100)
	// Budget is how long after its start a run may begin new work: new chunks, and a download only while the
	// download and its persist (DownloadWorstCase + PersistTimeout) still fit before it ends (default
	// DefaultBudget). A run ends at most Overrun after it.
	Budget time.Duration
	Chunk  int // items applied and uploaded per chunk (default 50)
	// OnRevoked is told about every serial revoked, so CRL and OCSP caches drop what they hold.
	OnRevoked func(serials []string)
	Logger    *slog.Logger
	Now       func() time.Time
	// LeaseTTL bounds how long a crashed run blocks the next one (default DefaultLeaseTTL).
	LeaseTTL time.Duration
	// PersistTimeout bounds persisting a download, which runs detached from the caller's context (default 2 min).
	// Failed writes are retried until it ends.
	PersistTimeout time.Duration
	// DownloadWorstCase is the longest one DownloadRevocationRequests call can take, its retries included
	// (default DefaultDownloadWorstCase, which matches an Intune client with default attempts and CallTimeout;
	// set it when the client is configured otherwise). It is part of the reserve a download needs inside Budget:
	// the host kills the function at its timeout, and items downloaded but not yet persisted are lost — Intune
	// offers nothing more for about an hour after a download, if it ever offers them again.
	DownloadWorstCase time.Duration
	// UploadWorstCase is the longest one UploadRevocationResults call can take, its retries included (default
	// DefaultUploadWorstCase). An upload started just before Budget ends runs this long past it.
	UploadWorstCase time.Duration
	// Sleep pauses between persist attempts and returns early with ctx's error (default: a timer). Tests make it
	// instant.
	Sleep func(ctx context.Context, d time.Duration) error
	// Stopping, when closed, says the process is stopping (SIGTERM: a scale-in, a deployment): a run that has not
	// downloaded yet leaves the download for the next run. The process exits after a bounded drain, and the platform
	// kills it after its grace period, so a download started now may be cut before its items are persisted, while
	// Intune offers nothing more for about an hour. What the run already holds it still finishes. nil: never.
	Stopping <-chan struct{}
}

// DefaultDownloadWorstCase is how long one DownloadRevocationRequests call of an Intune client with default
// settings can take: three attempts of at most intune.DefaultCallTimeout each (token, discovery and POST share
// it) and two pauses between them, each capped at 2 s (internal/intune/client.go, Client.call).
const DefaultDownloadWorstCase = 3*intune.DefaultCallTimeout + 2*2*time.Second

// DefaultUploadWorstCase is how long one UploadRevocationResults call of an Intune client with default settings
// can take: uploads are not idempotent, so two attempts of at most intune.DefaultCallTimeout and one pause of at
// most 2 s.
const DefaultUploadWorstCase = 2*intune.DefaultCallTimeout + 2*time.Second

// DefaultBudget leaves the hourly timer, inside the host's 10-minute functionTimeout, room for the run's Overrun
// and for the steps before and after the sync (RA maintenance, the sweeps), which the handler derives its own
// budget from.
const DefaultBudget = 5 * time.Minute

// SyncStoreReserve is what Overrun allows for store work after the budget: the applies of the chunk in progress, the
// re-answered items' marks, the run record and the lease release (10 s each at most).
const SyncStoreReserve = 40 * time.Second

// Pauses between attempts to persist downloaded items: short enough to ride out a throttling burst or a failover,
// doubling so a longer outage is not hammered, capped so that one still gets an attempt every few seconds until
// PersistTimeout ends.
const (
	persistBackoff    = 250 * time.Millisecond
	persistBackoffMax = 5 * time.Second
)

// Bounds on the error lines a run records. The run record keeps them in one Table Storage property (64 KiB,
// counted in UTF-16: 32K characters), so a run with a few hundred failing items could not be recorded at all.
// The first lines say what went wrong; every line left out or shortened is logged in full.
const (
	maxRunErrors     = 50       // lines kept, plus one saying how many more there were
	maxRunErrorRunes = 300      // characters kept of each line
	maxRunErrorsJSON = 24 << 10 // bytes of the kept lines JSON-encoded (escapes can grow a line sixfold)
)

// Syncer runs the Intune revocation cycle.
type Syncer struct {
	cfg SyncConfig

	// handOver counts the downloads in flight or persisting: the span in which Intune has handed requests over (or
	// is handing them over) and our store does not hold them yet. idle is closed when it is zero.
	mu       sync.Mutex
	handOver int
	idle     chan struct{}

	// detached holds the cancel functions of the runs Start began that have not ended; detachedIdle is closed when
	// there are none.
	detached     map[string]context.CancelFunc
	detachedIdle chan struct{}
}

// beginHandOver and endHandOver bracket a download and its persist.
func (s *Syncer) beginHandOver() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handOver == 0 {
		s.idle = make(chan struct{})
	}
	s.handOver++
}

func (s *Syncer) endHandOver() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handOver--; s.handOver == 0 {
		close(s.idle)
	}
}

// HandedOver returns once no download is in flight or persisting, or with ctx's error when ctx ends first. A
// stopping process waits for it after its drain: a download caught in flight by SIGTERM is then not cut between
// Intune handing the requests over (it offers nothing more for about an hour, if it offers them again) and our
// store holding them. It returns at once when no download is running.
func (s *Syncer) HandedOver(ctx context.Context) error {
	s.mu.Lock()
	if s.handOver == 0 {
		s.mu.Unlock()
		return nil
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrRunning means another run holds the lease; this run did nothing.
var ErrRunning = errors.New("revocation: another sync run is in progress")

// NewSyncer validates cfg and applies defaults.
func NewSyncer(cfg SyncConfig) (*Syncer, error) {
	if cfg.Store == nil || cfg.Intune == nil {
		return nil, errors.New("revocation: store and Intune client are required")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = intune.DefaultMaxRevocationRequests
	}
	if cfg.Batch > intune.MaxRevocationRequests {
		return nil, fmt.Errorf("revocation: batch %d is above Intune's limit of 500", cfg.Batch)
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 50
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.PersistTimeout <= 0 {
		cfg.PersistTimeout = 2 * time.Minute
	}
	if cfg.DownloadWorstCase <= 0 {
		cfg.DownloadWorstCase = DefaultDownloadWorstCase
	}
	if cfg.UploadWorstCase <= 0 {
		cfg.UploadWorstCase = DefaultUploadWorstCase
	}
	if cfg.Budget < cfg.DownloadWorstCase+cfg.PersistTimeout {
		return nil, fmt.Errorf("revocation: budget %v leaves no room for a download (%v) and its persist (%v)",
			cfg.Budget, cfg.DownloadWorstCase, cfg.PersistTimeout)
	}
	if cfg.Sleep == nil {
		cfg.Sleep = ctxtime.Sleep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Syncer{cfg: cfg}, nil
}

// Overrun is how long past its Budget a run may end: an upload started just before the budget ends, and the store
// work that follows it. A caller with a hard deadline (the host's functionTimeout) gives Run Budget + Overrun; a
// download, with its persist, always ends within Budget, so that deadline never cuts one.
func (s *Syncer) Overrun() time.Duration { return s.cfg.UploadWorstCase + SyncStoreReserve }

// Budget is the time after its start in which a run begins new work (SyncConfig.Budget).
func (s *Syncer) Budget() time.Duration { return s.cfg.Budget }

// Limit is the longest a run takes from its start: Budget and Overrun, and the writing of its record after them. A
// run whose record is still unfinished past it was cut off (its process stopped) and will not finish.
func (s *Syncer) Limit() time.Duration { return s.cfg.Budget + s.Overrun() + runRecordTimeout }

// DefaultLeaseTTL is SyncConfig.LeaseTTL's default: no run outlives it.
const DefaultLeaseTTL = 15 * time.Minute

// runRecordTimeout bounds each write of a run's record (at its start and at its end).
const runRecordTimeout = 10 * time.Second

// Run performs one cycle: resume earlier work, download once, persist, apply, upload. It records the run when it
// starts and again when it ends. When the run could not start (ErrRunning, or the lease or the start record could
// not be written), nothing was done and the returned run is not recorded.
func (s *Syncer) Run(ctx context.Context, trigger string) (store.SyncRun, error) {
	run, release, err := s.begin(ctx, trigger)
	if err != nil {
		return run, err
	}
	return s.finish(ctx, run, release)
}

// Start begins a run as Run does, and answers once the run holds the lease and its start is recorded: the rest
// of the run goes on in the background, detached from ctx (an admin's request, which the Functions host cuts
// after 230 s) and bounded by Budget and Overrun, as the timer bounds its run. Its outcome is in its record
// (store.RevocationQueue.RunByID). The errors are Run's for a run that could not start. done is closed when the
// run has ended and its outcome is recorded.
func (s *Syncer) Start(ctx context.Context, trigger string) (run store.SyncRun, done <-chan struct{}, err error) {
	run, release, err := s.begin(ctx, trigger)
	if err != nil {
		return run, nil, err
	}
	ended := make(chan struct{})
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Budget+s.Overrun())
	s.mu.Lock()
	if len(s.detached) == 0 {
		s.detached, s.detachedIdle = map[string]context.CancelFunc{}, make(chan struct{})
	}
	s.detached[run.ID] = cancel
	s.mu.Unlock()
	go func() {
		defer close(ended)
		defer func() {
			cancel()
			s.mu.Lock()
			defer s.mu.Unlock()
			if delete(s.detached, run.ID); len(s.detached) == 0 {
				close(s.detachedIdle)
			}
		}()
		_, _ = s.finish(rctx, run, release) // finish records and logs the outcome
	}()
	return run, ended, nil
}

// stopRecordWait bounds how long StopDetached waits, once it has cancelled the runs, for them to record their end
// and give the lease back (runRecordTimeout each).
const stopRecordWait = 2*runRecordTimeout + 5*time.Second

// StopDetached ends the runs Start began, for a stopping process: it waits for them until ctx ends (the drain that
// requests in flight get), then cancels those still going and waits at most stopRecordWait more while they record
// themselves as failed and give the lease back. Cut by the process's exit instead, a run would stay recorded as
// running until Limit has passed, and its lease would refuse the next run for LeaseTTL. A download being handed
// over is not cut (it is detached from the run's context); HandedOver waits for it. It returns ctx's error when it
// had to cancel a run, nil when none was left.
func (s *Syncer) StopDetached(ctx context.Context) error {
	s.mu.Lock()
	if len(s.detached) == 0 {
		s.mu.Unlock()
		return nil
	}
	idle := s.detachedIdle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for _, cancel := range s.detached {
		cancel()
	}
	s.mu.Unlock()
	t := time.NewTimer(stopRecordWait)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
	return ctx.Err()
}

// begin takes the lease and records the run as started, so that every instance can tell it is running. A start
// record that cannot be written gives the lease back: the run has not started.
func (s *Syncer) begin(ctx context.Context, trigger string) (store.SyncRun, func(), error) {
	started := s.cfg.Now()
	run := store.SyncRun{ID: store.NewRunID(started), Started: started, Trigger: trigger}
	release, err := s.lease(ctx, run.ID)
	if err != nil {
		// Not a run: nothing was read from Intune or changed. The run holding the lease records itself.
		s.cfg.Logger.Info("revocation sync not started", "trigger", trigger, "err", err)
		return run, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, runRecordTimeout)
	defer cancel()
	if err := s.cfg.Store.RecordRun(rctx, run); err != nil {
		release()
		s.cfg.Logger.Warn("revocation sync not started: its start could not be recorded", "trigger", trigger, "err", err)
		return run, nil, fmt.Errorf("recording the start of revocation sync run %s: %w", run.ID, err)
	}
	return run, release, nil
}

// finish runs the cycle of a run begin started, prunes old run records, records its outcome over the start record
// and releases the lease.
func (s *Syncer) finish(ctx context.Context, run store.SyncRun, release func()) (store.SyncRun, error) {
	defer release()
	err := s.cycle(ctx, &run)
	if err != nil {
		run.Errors = append(run.Errors, err.Error())
		run.Error = cut(err.Error(), maxRunErrorRunes)
	}
	s.prune(ctx, &run)
	run.Finished = s.cfg.Now()
	run.Errors = s.capErrors(run.ID, run.Errors)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), runRecordTimeout)
	defer cancel()
	if rerr := s.cfg.Store.FinishRun(rctx, run); rerr != nil {
		s.cfg.Logger.Warn("recording revocation sync run failed", "run", run.ID, "err", rerr)
	}
	s.cfg.Logger.Info("revocation sync", "run", run.ID, "trigger", run.Trigger, "resumed", run.Resumed,
		"downloaded", run.Downloaded, "foreign", run.Foreign, "revoked", run.Revoked, "not_found", run.NotFound,
		"failed", run.Failed, "uploaded", run.Uploaded, "errors", len(run.Errors),
		"duration_ms", run.Finished.Sub(run.Started).Milliseconds())
	return run, err
}

// RunRetention is how long the record of a sync run is kept: as long as the run's log line, by the default
// retention of the deployment's Log Analytics workspace (90 days). Runs record themselves every hour, and the
// records would otherwise grow without end (some 9,000 a year).
const RunRetention = 90 * 24 * time.Hour

// Each run deletes at most pruneBatch expired run records, under pruneTimeout: a run adds one record, so a backlog
// (a deployment from before runs were pruned: some 9,000 a year) is cleared within days, and no run's work waits
// on more than one short step.
const (
	pruneBatch   = 100
	pruneTimeout = 10 * time.Second
)

// prune deletes the records of runs that started more than RunRetention before this one: long past any run's
// Limit, so none of them can still be going. It is no part of the cycle: it runs only while it fits inside the
// budget, so that Overrun is not spent on it, and a failure is noted on the run and left to the next one.
func (s *Syncer) prune(ctx context.Context, run *store.SyncRun) {
	if ctx.Err() != nil || s.cfg.Now().Add(pruneTimeout).After(run.Started.Add(s.cfg.Budget)) {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, pruneTimeout)
	defer cancel()
	n, err := s.cfg.Store.PruneRuns(pctx, run.Started.Add(-RunRetention), pruneBatch)
	if n > 0 {
		s.cfg.Logger.Info("revocation sync run records pruned", "run", run.ID, "pruned", n)
	}
	if err != nil {
		s.cfg.Logger.Warn("pruning revocation sync run records failed", "run", run.ID, "pruned", n, "err", err)
		run.Errors = append(run.Errors, fmt.Sprintf("pruning run records older than %d days: %v",
			RunRetention/(24*time.Hour), err))
	}
}

func (s *Syncer) cycle(ctx context.Context, run *store.SyncRun) error {
	deadline := run.Started.Add(s.cfg.Budget)
	// 1. Resume: items downloaded or applied by earlier runs are finished before anything new is fetched.
	open, err := s.cfg.Store.OpenRevocations(ctx, openLimit)
	if err != nil {
		return fmt.Errorf("listing open revocation requests: %w", err)
	}
	run.Resumed = len(open)
	if err := s.process(ctx, run, open, deadline); err != nil {
		return err
	}

	// 2. Download once: after a download Intune offers nothing more for a while (reliability.md §5.2). So start it
	// only while the download at its slowest and the persist after it still fit in the budget: the host kills the
	// function at its timeout, and items downloaded but not yet stored would be lost. Left for the next run, the
	// items wait in Intune's queue. The same when the process is stopping (Stopping).
	select {
	case <-s.cfg.Stopping:
		msg := "download left for the next run: the service is stopping"
		s.cfg.Logger.Warn("revocation sync: "+msg, "run", run.ID)
		run.Errors = append(run.Errors, msg)
		return nil
	default:
	}
	if left, need := deadline.Sub(s.cfg.Now()), s.cfg.DownloadWorstCase+s.cfg.PersistTimeout; left < need {
		msg := fmt.Sprintf("download left for the next run: %v of the time budget left, a download and its persist may need %v",
			max(left, 0).Round(time.Second), need)
		s.cfg.Logger.Warn("revocation sync: "+msg, "run", run.ID)
		run.Errors = append(run.Errors, msg)
		return nil
	}
	s.beginHandOver()
	// The download is detached from the caller too, bounded by its worst case (which the check above fits before
	// the deadline): a caller that goes away while Intune's answer is on its way (an admin closing the console)
	// would drop requests Intune has already handed over.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DownloadWorstCase)
	items, err := s.cfg.Intune.DownloadRevocationRequests(dctx, s.cfg.Batch)
	dcancel()
	if err != nil {
		s.endHandOver()
		return fmt.Errorf("downloading revocation requests: %w", err)
	}
	run.Downloaded = len(items)

	// 3. Persist every item before acting on any. The download is the only copy we can count on. Whether an
	// item is ours is decided when it is applied (it may need a record lookup), so every item starts downloaded.
	// Persisting runs under its own deadline, detached from the caller: once Intune has handed the items over it
	// will not offer them again for a while, so an admin client that disconnects or the host's deadline right
	// after the download must not make us drop them.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PersistTimeout)
	defer cancel()
	work, again := s.persist(pctx, run, items)
	s.endHandOver()
	if err := s.process(ctx, run, work, deadline); err != nil {
		return err
	}
	// Full: as many items as asked for, or as the 100 Intune is said to recommend (intune-protocol.md §7.6), in case
	// it caps a larger batch there.
	full := len(items) >= min(s.cfg.Batch, intune.DefaultMaxRevocationRequests)
	return s.answerAgain(ctx, run, again, full, deadline)
}

// ForeignGrace is how long a request routed to another CA stays unanswered while Intune keeps offering it to us in
// full downloads. The download has no paging, and Intune offers what it handed out and got no answer for again, so
// requests nobody answers (those of a CA that is gone, or of one whose records are lost) that fill a whole download
// would hold ours back for good. So once one comes back this long after we first held it, in a full download (the
// batch, or 100 items: Intune may cap the batch there), it is answered CertificateNotFoundError, a permanent failure
// Intune does not offer again. A CA that shares the tenant and polls it, hourly as integrators do, has had a day to
// take its requests; a download with room to spare holds nothing of ours back, and then foreign requests stay
// unanswered however long they come back.
const ForeignGrace = 24 * time.Hour

// persist stores every downloaded item as downloaded and returns the new ones (work) and those we already held
// (again), in download order. Items are written MaxRevocationBatch to a call (one Table Storage transaction
// instead of a round trip each), and those of a call that fails one by one. A write that fails with anything but
// ErrExists is tried again, in rounds over all items not yet stored with a growing pause between rounds, until ctx
// (PersistTimeout) ends: rounds rather than one item at a time, so an item the store keeps refusing does not use up
// the time the others need.
//
// ErrExists on a later attempt can also mean that an earlier attempt was written although its answer was lost;
// either way the item is durable, and the again path plus the next run's resume step finish it.
//
// An item still not stored is not acted on, and Intune may not offer it again (whether and when it re-offers
// unacknowledged items is undocumented): it is logged at Error level with what an operator needs to revoke by
// hand, and counted as failed.
//
// A requestContext is one request: a page naming it again (Intune never should) yields only its first copy. A
// later copy would come back as ErrExists and be acted on as offered again, although what it names was never
// persisted and the context would be answered twice in one run; one naming another serial or CA is reported.
func (s *Syncer) persist(ctx context.Context, run *store.SyncRun, items []intune.RevocationRequest) (work, again []*store.RevocationRequest) {
	type pending struct {
		w        *store.RevocationRequest
		stored   bool
		known    bool // ErrExists: we already held it
		attempts int
		err      error
	}
	all := make([]*pending, 0, len(items))
	left := make([]*pending, 0, len(items))
	seen := make(map[string]intune.RevocationRequest, len(items))
	for _, it := range items {
		if prev, dup := seen[it.RequestContext]; dup {
			if prev != it {
				s.cfg.Logger.Warn("intune revocation download names a request twice with different contents; "+
					"only the first is kept", "run", run.ID, "request", short(it.RequestContext),
					"serial", cut(prev.SerialNumber, 64), "ignored_serial", cut(it.SerialNumber, 64))
				run.Errors = append(run.Errors, fmt.Sprintf("request %s named twice in one download, the second time "+
					"for serial %s: ignored", short(it.RequestContext), cut(it.SerialNumber, 64)))
			}
			continue
		}
		seen[it.RequestContext] = it
		p := &pending{w: &store.RevocationRequest{RequestContext: it.RequestContext,
			SerialNumber: it.SerialNumber, IssuerName: it.IssuerName, CAConfiguration: it.CAConfiguration,
			State: store.WorkDownloaded, Downloaded: s.cfg.Now()}}
		all = append(all, p)
		left = append(left, p)
	}
	for pause := persistBackoff; ; pause = min(2*pause, persistBackoffMax) {
		var next []*pending
		for start := 0; start < len(left); start += store.MaxRevocationBatch {
			batch := left[start:min(start+store.MaxRevocationBatch, len(left))]
			ws := make([]*store.RevocationRequest, len(batch))
			for i, p := range batch {
				p.attempts++
				ws[i] = p.w
			}
			if len(batch) > 1 && s.cfg.Store.EnqueueRevocations(ctx, ws) == nil {
				for _, p := range batch {
					p.stored, p.err = true, nil
				}
				continue
			}
			// Refused (one item we already hold makes the whole transaction fail), or its outcome unknown: one by
			// one, so that the others are not held back. An item the batch did write although its answer was lost
			// comes back ErrExists, as after a lost single write: known, and finished by the again path.
			for _, p := range batch {
				p.err = s.cfg.Store.EnqueueRevocation(ctx, p.w)
				switch {
				case p.err == nil:
					p.stored = true
				case errors.Is(p.err, store.ErrExists):
					p.known = true
				default:
					next = append(next, p)
				}
			}
		}
		left = next
		if len(left) == 0 || s.cfg.Sleep(ctx, pause) != nil {
			break
		}
	}
	for _, p := range all {
		switch {
		case p.stored:
			work = append(work, p.w)
		case p.known:
			// Delivered before. If it is still open the resume step of this or the next run handles it; if it
			// was uploaded, Intune did not take our answer: answer again (revocation is idempotent).
			again = append(again, p.w)
		default:
			run.Failed++
			s.cfg.Logger.Error("intune revocation request lost: downloaded but not persisted, nothing done for it; "+
				"revoke the certificate by hand if it is ours", "run", run.ID, "serial", cut(p.w.SerialNumber, 64),
				"ca_configuration", cut(p.w.CAConfiguration, 200), "request", short(p.w.RequestContext),
				"attempts", p.attempts, "err", p.err)
			run.Errors = append(run.Errors, fmt.Sprintf("not persisted after %d attempts, nothing done for it "+
				"(revoke by hand if ours): serial %s, request %s: %v", p.attempts, cut(p.w.SerialNumber, 64),
				short(p.w.RequestContext), p.err))
		}
	}
	return work, again
}

// errNotIntuneIssued means a revocation request names a certificate this CA holds but that Intune never received
// from us: it was issued through /api/csr, a static endpoint, or an Intune endpoint whose successNotification
// failed, or Intune routed the request to another CA configuration. Intune gets the same answer as for an unknown
// serial (CertificateNotFoundError); only an admin may revoke such a certificate.
var errNotIntuneIssued = fmt.Errorf("%w: not issued through Intune", store.ErrNotFound)

// revoke applies one Intune request: only to a certificate issued through an Intune endpoint and reported to
// Intune by successNotification, and only when the request is routed to the CA configuration that certificate
// was reported with (or to this CA's current one).
func (s *Syncer) revoke(ctx context.Context, it *store.RevocationRequest, chain *bumpChain) (Outcome, error) {
	serial := store.NormalizeSerial(it.SerialNumber)
	if serial == "" {
		return 0, fmt.Errorf("%w: %q is not a serial number", store.ErrNotFound, it.SerialNumber)
	}
	rec, err := s.cfg.Store.Get(ctx, serial)
	if err != nil {
		return 0, err
	}
	if why := s.intuneMayNotRevoke(rec, it); why != "" {
		s.cfg.Logger.Warn("intune revocation refused: certificate not issued through Intune", "serial", rec.Serial,
			"why", why, "source", rec.Source, "endpoint", rec.Endpoint, "status", string(rec.Status),
			"ca_configuration", it.CAConfiguration, "request", short(it.RequestContext))
		return 0, errNotIntuneIssued
	}
	outcome, rec, err := revokeRead(ctx, s.cfg.Store, rec, chain, IntuneReason, "intune", it.RequestContext, s.cfg.Now())
	if NewlyRevoked(outcome, rec) && s.cfg.OnRevoked != nil {
		s.cfg.OnRevoked([]string{rec.Serial}) // also when only the generation bump failed: the revocation is durable
	}
	return outcome, err
}

// intuneMayNotRevoke says why Intune may not revoke rec through it, or "" when it may.
func (s *Syncer) intuneMayNotRevoke(rec *store.Record, it *store.RevocationRequest) string {
	switch {
	case rec.Source != store.SourceSCEP:
		return "not issued over SCEP"
	case !rec.IntuneNotified:
		return "never reported to Intune by successNotification"
	case it.CAConfiguration != "" && !strings.EqualFold(it.CAConfiguration, rec.CAConfiguration) &&
		!strings.EqualFold(it.CAConfiguration, s.cfg.CAConfiguration):
		return "routed to another CA configuration"
	case it.CAConfiguration == "" && it.IssuerName != "" && !strings.EqualFold(it.IssuerName, rec.CAConfiguration) &&
		!strings.EqualFold(it.IssuerName, rec.Issuer) && !s.routedHere(it):
		return "routed to another issuer"
	}
	return ""
}

// routedHere reports whether an item's routing information names this CA. Items routed elsewhere are still ours
// when they name an Intune-reported record with the caConfiguration that record was reported with (the
// caConfiguration we report may have changed since, for example after a CA rollover); otherwise they are
// foreign: kept but never acknowledged, since another CA in the tenant may be polling the same queue.
func (s *Syncer) routedHere(it *store.RevocationRequest) bool {
	if it.CAConfiguration != "" {
		return strings.EqualFold(it.CAConfiguration, s.cfg.CAConfiguration)
	}
	if it.IssuerName != "" {
		return strings.EqualFold(it.IssuerName, s.cfg.IssuerName) || strings.EqualFold(it.IssuerName, s.cfg.CAConfiguration)
	}
	return true // no routing information: our records decide (unknown serial → CertificateNotFoundError)
}

// process applies and uploads items chunk by chunk, persisting after each step.
func (s *Syncer) process(ctx context.Context, run *store.SyncRun, items []*store.RevocationRequest, deadline time.Time) error {
	chain := &bumpChain{} // the items are revoked one after another
	for start := 0; start < len(items); start += s.cfg.Chunk {
		if s.cfg.Now().After(deadline) {
			run.Errors = append(run.Errors, fmt.Sprintf("time budget spent; %d items left for the next run", len(items)-start))
			return nil
		}
		if err := ctx.Err(); err != nil {
			// The caller is gone: what is left stays open (downloaded or applied) for the next run.
			return fmt.Errorf("stopped with %d items left for the next run: %w", len(items)-start, err)
		}
		chunk := items[start:min(start+s.cfg.Chunk, len(items))]
		var decided []*store.RevocationRequest
		for _, it := range chunk {
			if it.State == store.WorkDownloaded {
				if err := s.apply(ctx, run, it, chain); err != nil {
					run.Errors = append(run.Errors, err.Error())
					continue
				}
				decided = append(decided, it)
			}
		}
		// The chunk's results are persisted together, after their revocations: a crash before leaves the items
		// downloaded, and the next run applies them again (revocation is idempotent) before anything is uploaded.
		for _, f := range s.persistItems(ctx, decided) {
			f.item.State = store.WorkDownloaded
			run.Errors = append(run.Errors, fmt.Sprintf("persisting the result for %s: %v", short(f.item.RequestContext), f.err))
		}
		var applied []*store.RevocationRequest
		for _, it := range chunk {
			switch it.State {
			case store.WorkApplied:
				applied = append(applied, it)
			case store.WorkForeign: // set by apply above: the items given are downloaded or applied
				run.Foreign++
			}
		}
		if err := s.upload(ctx, run, applied, deadline); err != nil {
			// Leave them applied: the next run uploads them without waiting for Intune to offer them again.
			run.Errors = append(run.Errors, err.Error())
		}
	}
	return nil
}

// apply revokes the record an item names and sets on it the result to report (state applied), which the caller
// persists. An item routed to another CA whose serial is not ours is set foreign and never answered. An error leaves
// the item as it was (downloaded), for the next run.
func (s *Syncer) apply(ctx context.Context, run *store.SyncRun, it *store.RevocationRequest, chain *bumpChain) error {
	outcome, err := s.revoke(ctx, it, chain)
	if err != nil && ctx.Err() != nil {
		// Cancelled, not a store fault: leave the item downloaded for the next run rather than report anything.
		return fmt.Errorf("applying %s: %w", short(it.RequestContext), err)
	}
	switch {
	case (errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNotRevocable)) && !s.routedHere(it):
		it.State = store.WorkForeign
		return nil
	case err == nil:
		it.Succeeded, it.ErrorCode, it.ErrorMessage = true, intune.RevocationNone.String(), ""
		if outcome == Revoked {
			run.Revoked++
		}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, ErrNotRevocable):
		run.NotFound++
		it.Succeeded, it.ErrorCode = false, intune.RevocationCertificateNotFoundError.String()
		it.ErrorMessage = "certificate not found at this CA"
	case !s.routedHere(it):
		// Store trouble, for an item routed to another CA: whether the serial is ours is unknown, and an answer
		// about another CA's certificate must not reach Intune. It stays downloaded; the next run reads it again.
		run.Failed++
		return fmt.Errorf("reading the record for %s (routed to another CA), left for the next run: %w",
			short(it.RequestContext), err)
	default:
		// Store trouble: report a retryable code so Intune offers it again, and keep the item open so the next
		// run tries again itself (whether Intune re-offers retryable items is undocumented).
		run.Failed++
		it.Succeeded, it.ErrorCode = false, intune.RevocationRetryableServiceException.String()
		it.ErrorMessage = "the CA could not record the revocation; retry later"
	}
	it.State = store.WorkApplied
	it.Applied = s.cfg.Now()
	return nil
}

// upload sends the results of applied items. A chunk started within the budget uploads once (Overrun allows for
// it); answering one by one starts no upload past deadline, since each may take UploadWorstCase: the items left
// keep their stored state (applied) for the next run's resume step.
func (s *Syncer) upload(ctx context.Context, run *store.SyncRun, items []*store.RevocationRequest, deadline time.Time) error {
	if len(items) == 0 {
		return nil
	}
	results := make([]intune.RevocationResult, len(items))
	for i, it := range items {
		results[i] = result(it)
	}
	if err := s.cfg.Intune.UploadRevocationResults(ctx, results); err != nil {
		if len(items) > 1 && refused(err) {
			// Intune refused the batch, not the call: one result may be the cause. Answer one by one so that
			// one item Intune no longer takes does not hold the others back.
			var errs []error
			for i, it := range items {
				if s.cfg.Now().After(deadline) {
					errs = append(errs, fmt.Errorf("time budget spent; answering one by one, %d results left for the next run",
						len(items)-i))
					break
				}
				errs = append(errs, s.upload(ctx, run, []*store.RevocationRequest{it}, deadline))
			}
			return errors.Join(errs...)
		}
		for _, it := range items {
			it.Attempts++
			if len(items) == 1 && refused(err) && it.Attempts >= maxRefusedUploads {
				// Intune keeps refusing this one answer: stop offering it; it stays on record with its result.
				it.State = store.WorkUploaded
				s.cfg.Logger.Error("intune keeps refusing a revocation result; given up", "request", short(it.RequestContext),
					"serial", cut(it.SerialNumber, 64), "attempts", it.Attempts, "err", err)
			}
			_ = s.cfg.Store.UpdateRevocation(ctx, it) // best effort: the count is informational
		}
		return fmt.Errorf("uploading %d results: %w", len(items), err)
	}
	run.Uploaded += len(items)
	s.markUploaded(ctx, run, items...)
	return nil
}

// markUploaded persists that Intune accepted the results stored on items: each is uploaded, or downloaded again
// when its result told Intune to try again later. A write that fails leaves the item as it was stored, and Intune has
// the result: at worst the next run uploads it again, which is harmless.
func (s *Syncer) markUploaded(ctx context.Context, run *store.SyncRun, items ...*store.RevocationRequest) {
	for _, it := range items {
		it.State = store.WorkUploaded
		if r := result(it); !r.Succeeded && r.ErrorCode.Retryable() {
			// Intune was told "try again later"; we do not rely on it offering the item again: the next run
			// applies it once more (revocation is idempotent) and uploads the final answer.
			it.State = store.WorkDownloaded
		}
		it.Uploaded = s.cfg.Now()
		it.Attempts++
	}
	for _, err := range s.persistItems(ctx, items) {
		run.Errors = append(run.Errors, fmt.Sprintf("marking %s uploaded: %v", short(err.item.RequestContext), err.err))
	}
}

// itemError is an item persistItems could not write, and why.
type itemError struct {
	item *store.RevocationRequest
	err  error
}

// persistItems writes items as they are now, MaxRevocationBatch to a call (one Table Storage transaction instead of
// a round trip each, which is most of a 500-item sync's time), and writes those of a call that failed one by one,
// so that one item that cannot be written (moved by another instance, say) does not hold the others back. It
// returns the items it could not write, with their errors.
func (s *Syncer) persistItems(ctx context.Context, items []*store.RevocationRequest) []itemError {
	var failed []itemError
	for start := 0; start < len(items); start += store.MaxRevocationBatch {
		batch := items[start:min(start+store.MaxRevocationBatch, len(items))]
		if len(batch) > 1 && s.cfg.Store.UpdateRevocations(ctx, batch) == nil {
			continue
		}
		for _, it := range batch {
			err := s.cfg.Store.UpdateRevocation(ctx, it)
			if errors.Is(err, store.ErrConflict) && s.alreadyWritten(ctx, it) {
				err = nil
			}
			if err != nil {
				failed = append(failed, itemError{it, err})
			}
		}
	}
	return failed
}

// alreadyWritten reports whether the stored copy of it already holds what it says now, and then takes the stored
// ETag: the batch before the one-by-one writes committed although its answer was lost, which moved every item's
// ETag, so each single write fails on the ETag without anything being wrong.
func (s *Syncer) alreadyWritten(ctx context.Context, it *store.RevocationRequest) bool {
	got, err := s.cfg.Store.Revocation(ctx, it.RequestContext)
	if err != nil || got.State != it.State || got.Succeeded != it.Succeeded || got.ErrorCode != it.ErrorCode ||
		got.ErrorMessage != it.ErrorMessage || got.Attempts != it.Attempts {
		return false
	}
	it.ETag = got.ETag
	return true
}

// answerAgain re-answers items Intune offered again although we already hold them (it did not take our answer, or
// we have not given one yet). Revocation is idempotent, so the answer is recomputed rather than read back, from the
// copy persisted when the request first came: an offer contradicting it is neither acted on nor answered.
// Foreign items stay unanswered, unless the download was full (they may be crowding ours out) and they first came
// ForeignGrace ago or more: then they are answered CertificateNotFoundError. Items we cannot decide now are left to
// Intune's next offer and to our own resume step. Once Intune accepts the answers, the stored items still open (and
// the foreign ones answered) take them and are marked uploaded, so the next run's resume step does not upload them
// once more; if Intune does not accept them, nothing stored changes.
//
// It is extra work after the chunks, so it starts, and uploads, only before deadline: items it leaves keep their
// stored state, and Intune, which has no answer from us for them, offers them again.
func (s *Syncer) answerAgain(ctx context.Context, run *store.SyncRun, items []*store.RevocationRequest, full bool,
	deadline time.Time) error {
	if len(items) > 0 && s.cfg.Now().After(deadline) {
		run.Errors = append(run.Errors, fmt.Sprintf("time budget spent; %d items offered again left unanswered", len(items)))
		return nil
	}
	var answered, reopen []*store.RevocationRequest // reopen: those of answered still open (or foreign) in our store
	chain := &bumpChain{}                           // the items are revoked again one after another
	for _, offered := range items {
		// Only what was persisted is acted on: the copy stored when the request first came, which an offer naming
		// another serial or CA contradicts (Intune never should). Answered, such an offer would tell Intune that
		// what it names now is revoked, so it is left unanswered.
		it, err := s.cfg.Store.Revocation(ctx, offered.RequestContext)
		if err != nil {
			run.Failed++
			run.Errors = append(run.Errors, fmt.Sprintf("reading the stored copy of %s, offered again: %v",
				short(offered.RequestContext), err))
			continue
		}
		if !sameTarget(it, offered) {
			run.Failed++
			s.cfg.Logger.Error("intune offered a revocation request again naming another certificate than when it "+
				"first came; not acted on, not answered", "run", run.ID, "request", short(it.RequestContext),
				"serial", cut(it.SerialNumber, 64), "offered_serial", cut(offered.SerialNumber, 64),
				"ca_configuration", cut(it.CAConfiguration, 200), "offered_ca_configuration", cut(offered.CAConfiguration, 200))
			run.Errors = append(run.Errors, fmt.Sprintf("request %s offered again for serial %s, CA %q: contradicts the "+
				"persisted request (serial %s, CA %q); not acted on", short(it.RequestContext), cut(offered.SerialNumber, 64),
				cut(offered.CAConfiguration, 200), cut(it.SerialNumber, 64), cut(it.CAConfiguration, 200)))
			continue
		}
		// mark: our copy changes state once Intune takes the answer (an open item, or a foreign one answered now).
		mark := it.State == store.WorkDownloaded || it.State == store.WorkApplied
		outcome, err := s.revoke(ctx, it, chain)
		switch {
		case (errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNotRevocable)) && !s.routedHere(it):
			// Counted on every offer: a foreign item Intune keeps offering takes a place in every download, which
			// the run's foreign count is how an operator sees.
			run.Foreign++
			if held := s.cfg.Now().Sub(it.Downloaded); !full || held < ForeignGrace {
				continue
			}
			s.cfg.Logger.Warn("intune keeps offering a revocation request routed to another CA in full downloads; "+
				"answered certificate not found so that the requests behind it are reached", "run", run.ID,
				"request", short(it.RequestContext), "serial", cut(it.SerialNumber, 64),
				"ca_configuration", cut(it.CAConfiguration, 200), "issuer", cut(it.IssuerName, 200),
				"first_downloaded", it.Downloaded)
			it.Succeeded, it.ErrorCode = false, intune.RevocationCertificateNotFoundError.String()
			it.ErrorMessage = "certificate not issued by this CA"
			mark = true
		case err == nil:
			if outcome == Revoked {
				run.Revoked++
			}
			it.Succeeded, it.ErrorCode, it.ErrorMessage = true, intune.RevocationNone.String(), ""
		case errors.Is(err, store.ErrNotFound), errors.Is(err, ErrNotRevocable):
			run.NotFound++
			it.Succeeded, it.ErrorCode = false, intune.RevocationCertificateNotFoundError.String()
			it.ErrorMessage = "certificate not found at this CA"
		default:
			run.Failed++
			run.Errors = append(run.Errors, fmt.Sprintf("re-applying %s: %v", short(it.RequestContext), err))
			continue
		}
		it.Applied = s.cfg.Now()
		answered = append(answered, it)
		if mark {
			reopen = append(reopen, it)
		}
	}
	if len(answered) == 0 {
		return nil
	}
	if s.cfg.Now().After(deadline) {
		run.Errors = append(run.Errors, fmt.Sprintf("time budget spent; %d items offered again left unanswered", len(answered)))
		return nil
	}
	results := make([]intune.RevocationResult, len(answered))
	for i, it := range answered {
		results[i] = result(it)
	}
	// The stored copies read above (with their ETags) carry the answers; once Intune accepts one, it is marked if it
	// is in reopen (the others were uploaded already). One whose write fails is at worst uploaded once more by the next
	// run, which is harmless.
	marks := make(map[*store.RevocationRequest]bool, len(reopen))
	for _, it := range reopen {
		marks[it] = true
	}
	err := s.cfg.Intune.UploadRevocationResults(ctx, results)
	if err == nil {
		run.Uploaded += len(results)
		s.markUploaded(ctx, run, reopen...)
		return nil
	}
	if len(results) == 1 || !refused(err) {
		return fmt.Errorf("re-uploading %d results: %w", len(results), err)
	}
	// Intune refused the batch, not the call: one result may be the cause. Answer one by one, as upload does, so that
	// one answer Intune does not take does not hold the others back on every offer.
	var errs []error
	for i, it := range answered {
		if s.cfg.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("time budget spent; re-answering one by one, %d results left unanswered",
				len(answered)-i))
			break
		}
		if err := s.cfg.Intune.UploadRevocationResults(ctx, results[i:i+1]); err != nil {
			errs = append(errs, fmt.Errorf("re-uploading the result for %s: %w", short(it.RequestContext), err))
			continue
		}
		run.Uploaded++
		if marks[it] {
			s.markUploaded(ctx, run, it)
		}
	}
	return errors.Join(errs...)
}

// sameTarget reports whether two copies of a request lead the sync to the same decision: the same serial, in any
// spelling, routed the same way (the caConfiguration, or the issuer name when there is none, see routedHere).
func sameTarget(a, b *store.RevocationRequest) bool {
	if store.NormalizeSerial(a.SerialNumber) != store.NormalizeSerial(b.SerialNumber) ||
		!strings.EqualFold(a.CAConfiguration, b.CAConfiguration) {
		return false
	}
	return a.CAConfiguration != "" || strings.EqualFold(a.IssuerName, b.IssuerName)
}

// openLimit is how many open items one listing returns: ten full downloads.
const openLimit = 10 * intune.MaxRevocationRequests

// maxRefusedUploads is how many definitive refusals of one result (4xx, "value": false) end its uploads.
const maxRefusedUploads = 5

// refused reports an upload Intune answered and declined, as opposed to one that did not get through.
func refused(err error) bool {
	var he *intune.HTTPError
	return errors.Is(err, intune.ErrUploadNotAccepted) ||
		errors.As(err, &he) && !errors.Is(err, intune.ErrUnavailable) && !errors.Is(err, intune.ErrAuth)
}

func result(it *store.RevocationRequest) intune.RevocationResult {
	r := intune.RevocationResult{RequestContext: it.RequestContext, Succeeded: it.Succeeded}
	if it.Succeeded {
		r.ErrorCode = intune.RevocationNone
		return r
	}
	code, ok := intune.ParseRevocationErrorCode(it.ErrorCode)
	if !ok || code == intune.RevocationNone {
		code = intune.RevocationRetryableServiceException
	}
	r.ErrorCode = code
	r.ErrorMessage = it.ErrorMessage
	return r
}

// lease makes overlapping runs (timer plus a manual run) exclusive: a lease document with an expiry, taken with an
// ETag-conditioned write. A crashed run's lease expires after LeaseTTL.
func (s *Syncer) lease(ctx context.Context, id string) (func(), error) {
	type leaseDoc struct {
		Holder  string    `json:"holder"`
		Expires time.Time `json:"expires"`
	}
	const name = "revocation-sync-lease"
	raw, etag, err := s.cfg.Store.GetMeta(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("reading sync lease: %w", err)
	}
	if err == nil {
		var cur leaseDoc
		if json.Unmarshal(raw, &cur) == nil && cur.Holder != "" && s.cfg.Now().Before(cur.Expires) {
			return nil, ErrRunning
		}
	}
	doc, _ := json.Marshal(leaseDoc{Holder: id, Expires: s.cfg.Now().Add(s.cfg.LeaseTTL)})
	newTag, err := s.cfg.Store.PutMeta(ctx, name, doc, etag)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
		return nil, ErrRunning
	}
	if err != nil {
		return nil, fmt.Errorf("taking sync lease: %w", err)
	}
	return func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		free, _ := json.Marshal(leaseDoc{})
		_, _ = s.cfg.Store.PutMeta(rctx, name, free, newTag)
	}, nil
}

// capErrors bounds a run's error lines so that the run can be recorded (see maxRunErrors): the first lines,
// each shortened, and one line saying how many more there were. Every line dropped or shortened is logged in
// full at Warn level, so nothing is lost to an operator.
func (s *Syncer) capErrors(runID string, lines []string) []string {
	kept := make([]string, 0, min(len(lines), maxRunErrors+1))
	size := 0
	for i, line := range lines {
		c := cut(line, maxRunErrorRunes)
		enc, _ := json.Marshal(c)
		if len(kept) == maxRunErrors || size+len(enc)+1 > maxRunErrorsJSON {
			for _, l := range lines[i:] {
				s.cfg.Logger.Warn("revocation sync error left out of the run record", "run", runID, "error", l)
			}
			return append(kept, fmt.Sprintf("… and %d more errors (see the logs)", len(lines)-i))
		}
		if c != line {
			s.cfg.Logger.Warn("revocation sync error shortened in the run record", "run", runID, "error", line)
		}
		kept = append(kept, c)
		size += len(enc) + 1
	}
	return kept
}

// short keeps opaque request contexts out of logs in full.
func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// cut shortens s to at most n characters, marking the cut with "…".
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
