package revocation_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/testca"
)

// slowIntune answers at the slowest the default Intune client can: a download takes DefaultDownloadWorstCase, an
// upload DefaultUploadWorstCase. It moves the test clock instead of sleeping. With refuseBatches it declines every
// upload of more than one result, so that the syncer answers one by one.
type slowIntune struct {
	clock         *testca.Clock
	items         []intune.RevocationRequest
	refuseBatches bool
	uploads       atomic.Int64 // upload calls
	mu            sync.Mutex
	answered      []string // request contexts of accepted results
}

func (s *slowIntune) DownloadRevocationRequests(context.Context, int) ([]intune.RevocationRequest, error) {
	s.clock.Advance(revocation.DefaultDownloadWorstCase)
	return s.items, nil
}

func (s *slowIntune) UploadRevocationResults(_ context.Context, results []intune.RevocationResult) error {
	s.uploads.Add(1)
	s.clock.Advance(revocation.DefaultUploadWorstCase)
	if s.refuseBatches && len(results) > 1 {
		return intune.ErrUploadNotAccepted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range results {
		s.answered = append(s.answered, r.RequestContext)
	}
	return nil
}

func (s *slowIntune) answeredTo() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.answered...)
}

// slowStore makes the first resume listing and the persist take the time a scenario needs.
type slowStore struct {
	store.Store
	clock                   *testca.Clock
	resumeOnce, persistOnce sync.Once
	resumeTook, persistTook time.Duration
}

func (s *slowStore) OpenRevocations(ctx context.Context, limit int) ([]*store.RevocationRequest, error) {
	s.resumeOnce.Do(func() { s.clock.Advance(s.resumeTook) })
	return s.Store.OpenRevocations(ctx, limit)
}

func (s *slowStore) EnqueueRevocation(ctx context.Context, r *store.RevocationRequest) error {
	s.persistOnce.Do(func() { s.clock.Advance(s.persistTook) })
	return s.Store.EnqueueRevocation(ctx, r)
}

// storeItem puts a work item in state at into st, as an earlier run left it.
func storeItem(t *testing.T, st store.Store, rc, serial string, at store.WorkState, now time.Time) {
	t.Helper()
	it := &store.RevocationRequest{RequestContext: rc, SerialNumber: serial, State: store.WorkDownloaded, Downloaded: now}
	if err := st.EnqueueRevocation(t.Context(), it); err != nil {
		t.Fatal(err)
	}
	if at == store.WorkDownloaded {
		return
	}
	it.State, it.Applied = at, now
	it.Succeeded, it.ErrorCode = false, intune.RevocationCertificateNotFoundError.String()
	if err := st.UpdateRevocation(t.Context(), it); err != nil {
		t.Fatal(err)
	}
}

// newSlowSyncer builds a Syncer with the default budget and worst cases over st and in.
func newSlowSyncer(t *testing.T, st store.Store, in revocation.Intune, clock *testca.Clock) *revocation.Syncer {
	t.Helper()
	s, err := revocation.NewSyncer(revocation.SyncConfig{Store: st, Intune: in, CAConfiguration: "CN=CA",
		IssuerName: "CN=CA", Now: clock.Now, Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A run ends within Budget + Overrun, the time the hourly timer gives it inside functionTimeout, even when every
// step is at its slowest: a download started with just enough time left, a persist using its 2 minutes, and the
// last chunk's upload. The item Intune offered again, which would need one more upload past the budget, is left
// unanswered: Intune, holding no answer for it, offers it again, and our copy keeps its stored state.
func TestSyncRunEndsWithinBudgetAndOverrun(t *testing.T) {
	ctx := context.Background()
	clock := testca.NewClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	mem := memstore.New()
	storeItem(t, mem, "rc-again", "01", store.WorkUploaded, clock.Now())
	st := &slowStore{Store: mem, clock: clock,
		// Exactly enough left for a download at its slowest and its persist.
		resumeTook:  revocation.DefaultBudget - revocation.DefaultDownloadWorstCase - 2*time.Minute,
		persistTook: 2*time.Minute - time.Second}
	in := &slowIntune{clock: clock, items: []intune.RevocationRequest{
		{RequestContext: "rc-new", SerialNumber: "02"},
		{RequestContext: "rc-again", SerialNumber: "01"},
	}}
	s := newSlowSyncer(t, st, in, clock)
	run, err := s.Run(ctx, "timer")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took, limit := run.Finished.Sub(run.Started), s.Budget()+s.Overrun(); took > limit {
		t.Fatalf("Run took %v of simulated time (errors %q), past its budget and overrun (%v)", took, run.Errors, limit)
	}
	if got := in.answeredTo(); len(got) != 1 || got[0] != "rc-new" {
		t.Errorf("answered %q, want only rc-new (rc-again's upload would start past the budget)", got)
	}
	if !strings.Contains(strings.Join(run.Errors, "\n"), "1 items offered again left unanswered") {
		t.Errorf("errors = %q, want the note on the item left unanswered", run.Errors)
	}
}

// When Intune refuses a chunk's upload near the end of the budget, the one-by-one answers that follow start only
// before the budget ends: each may take DefaultUploadWorstCase, and a chunk of 50 would otherwise run the
// invocation far past functionTimeout. The items stay applied and the next run uploads them.
func TestSyncOneByOneUploadsStopAtBudget(t *testing.T) {
	ctx := context.Background()
	clock := testca.NewClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	mem := memstore.New()
	for _, rc := range []string{"rc-1", "rc-2", "rc-3"} {
		storeItem(t, mem, rc, "0"+rc[3:], store.WorkApplied, clock.Now())
	}
	st := &slowStore{Store: mem, clock: clock, resumeTook: revocation.DefaultBudget - 30*time.Second}
	in := &slowIntune{clock: clock, refuseBatches: true}
	s := newSlowSyncer(t, st, in, clock)
	run, err := s.Run(ctx, "timer")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took, limit := run.Finished.Sub(run.Started), s.Budget()+s.Overrun(); took > limit {
		t.Fatalf("Run took %v of simulated time (errors %q, %d uploads), past its budget and overrun (%v)", took,
			run.Errors, in.uploads.Load(), limit)
	}
	if n := in.uploads.Load(); n != 1 {
		t.Errorf("%d uploads, want only the refused chunk", n)
	}
	open, err := mem.OpenRevocations(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range open {
		if it.State != store.WorkApplied {
			t.Errorf("%s is %s, want applied for the next run to upload", it.RequestContext, it.State)
		}
	}
	if len(open) != 3 {
		t.Errorf("%d open items, want the 3 left for the next run", len(open))
	}
	if !strings.Contains(strings.Join(run.Errors, "\n"), "3 results left for the next run") {
		t.Errorf("errors = %q, want the note on the results left", run.Errors)
	}
}
