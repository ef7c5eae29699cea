package revocation_test

import (
	"context"
	"fmt"
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
// upload of more than one result, so that the syncer answers one by one; the first failUploads uploads do not get
// through (intune.ErrUnavailable).
type slowIntune struct {
	clock         *testca.Clock
	items         []intune.RevocationRequest
	refuseBatches bool
	failUploads   int64
	uploads       atomic.Int64 // upload calls
	mu            sync.Mutex
	answered      []string // request contexts of accepted results
}

func (s *slowIntune) DownloadRevocationRequests(context.Context, int) ([]intune.RevocationRequest, error) {
	s.clock.Advance(revocation.DefaultDownloadWorstCase)
	return s.items, nil
}

func (s *slowIntune) UploadRevocationResults(_ context.Context, results []intune.RevocationResult) error {
	n := s.uploads.Add(1)
	s.clock.Advance(revocation.DefaultUploadWorstCase)
	if n <= s.failUploads {
		return intune.ErrUnavailable
	}
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

// slowStore makes the first resume listing and the persist take the time a scenario needs, and every record
// lookup (the first step of applying or re-applying an item) getTook. It notes the serials looked up.
type slowStore struct {
	store.Store
	clock                   *testca.Clock
	resumeOnce, persistOnce sync.Once
	resumeTook, persistTook time.Duration
	getTook                 time.Duration
	mu                      sync.Mutex
	looked                  []string
}

func (s *slowStore) Get(ctx context.Context, serial string) (*store.Record, error) {
	s.clock.Advance(s.getTook)
	s.mu.Lock()
	s.looked = append(s.looked, serial)
	s.mu.Unlock()
	return s.Store.Get(ctx, serial)
}

func (s *slowStore) lookedUp() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.looked...)
}

func (s *slowStore) OpenRevocations(ctx context.Context, limit int) ([]*store.RevocationRequest, error) {
	s.resumeOnce.Do(func() { s.clock.Advance(s.resumeTook) })
	return s.Store.OpenRevocations(ctx, limit)
}

func (s *slowStore) EnqueueRevocation(ctx context.Context, r *store.RevocationRequest) error {
	s.persistOnce.Do(func() { s.clock.Advance(s.persistTook) })
	return s.Store.EnqueueRevocation(ctx, r)
}

func (s *slowStore) EnqueueRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	s.persistOnce.Do(func() { s.clock.Advance(s.persistTook) })
	return s.Store.EnqueueRevocations(ctx, rs)
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
// unanswered, and not re-applied either (Overrun has no room for that store work): Intune, holding no answer for
// it, offers it again, and our copy keeps its stored state.
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
	if got := st.lookedUp(); len(got) != 1 || got[0] != store.NormalizeSerial("02") {
		t.Errorf("serials looked up %q, want only rc-new's 02 (rc-again's re-apply would start past the budget)", got)
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

// When the budget is still open as the items Intune offered again are re-applied, but those re-applies take it
// past its end, their answers are not uploaded: the upload, up to DefaultUploadWorstCase, would start past the
// budget. Nothing stored changes, so the next run's resume step uploads the items (here open: applied, their
// first upload did not get through).
func TestSyncReanswerStopsWhenReappliesSpendBudget(t *testing.T) {
	ctx := context.Background()
	clock := testca.NewClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	mem := memstore.New()
	const n = 15
	var offered []intune.RevocationRequest
	for i := range n {
		rc, serial := fmt.Sprintf("rc-%02d", i), fmt.Sprintf("%02x", i+1)
		storeItem(t, mem, rc, serial, store.WorkApplied, clock.Now())
		offered = append(offered, intune.RevocationRequest{RequestContext: rc, SerialNumber: serial})
	}
	// The resume step's upload does not get through (62 s), the download takes its worst case (94 s): 144 s of
	// the budget are left when the re-applies start, and 15 lookups of 10 s each cross its end during the last.
	st := &slowStore{Store: mem, clock: clock, getTook: 10 * time.Second}
	in := &slowIntune{clock: clock, items: offered, failUploads: 1}
	s := newSlowSyncer(t, st, in, clock)
	run, err := s.Run(ctx, "timer")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline := run.Started.Add(s.Budget())
	if looked := st.lookedUp(); len(looked) != n {
		t.Fatalf("%d serials looked up (errors %q), want the %d re-applies: the budget must still be open when "+
			"they start", len(looked), run.Errors, n)
	}
	if !clock.Now().After(deadline) {
		t.Fatalf("the re-applies ended at %v, before the budget's end %v: the scenario needs them to cross it",
			clock.Now(), deadline)
	}
	if u := in.uploads.Load(); u != 1 {
		t.Errorf("%d uploads (answered %q), want only the resume step's, which did not get through: the re-answers' "+
			"upload would start past the budget", u, in.answeredTo())
	}
	if got := in.answeredTo(); len(got) != 0 {
		t.Errorf("answered %q, want nothing", got)
	}
	if took, limit := run.Finished.Sub(run.Started), s.Budget()+s.Overrun(); took > limit {
		t.Errorf("Run took %v of simulated time, past its budget and overrun (%v)", took, limit)
	}
	if !strings.Contains(strings.Join(run.Errors, "\n"), fmt.Sprintf("%d items offered again left unanswered", n)) {
		t.Errorf("errors = %q, want the note on the items left unanswered", run.Errors)
	}
	open, err := mem.OpenRevocations(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != n {
		t.Errorf("%d open items, want the %d left for the next run", len(open), n)
	}
	for _, it := range open {
		if it.State != store.WorkApplied || !it.Uploaded.IsZero() || it.Attempts != 1 {
			t.Errorf("%s is %s, uploaded %v, %d attempts; want applied, never uploaded, 1 attempt (the resume "+
				"step's), for the next run to upload", it.RequestContext, it.State, it.Uploaded, it.Attempts)
		}
	}
}
