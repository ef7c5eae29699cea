package issuance

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
)

// undecidedGate is a delivery gate that never gets Intune's verdict.
func undecidedGate(context.Context, *store.Record, *x509.Certificate) error {
	return fmt.Errorf("%w: intune: successNotification: HTTP 503", ErrUndecided)
}

// gatedRequest is a gated request for leafKey under the idempotency key tx, through deliver.
func (f *fixture) gatedRequest(t *testing.T, tx string, deliver func(context.Context, *store.Record, *x509.Certificate) error) *Request {
	t.Helper()
	r := f.request(t, nil, "backlog", tx)
	r.Gated, r.Deliver = true, deliver
	return r
}

// issuedRecords counts the records whose certificate was signed.
func issuedRecords(t *testing.T, st store.Store) int {
	t.Helper()
	page, _, err := st.Search(context.Background(), store.Query{Status: store.StatusIssued, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	return len(page)
}

// TestUndecidedBoundAcrossInstances: two instances (two Issuers) serving one store share the bound. A device whose
// notifications get no verdict and that retries under a new transaction ID each time, its requests spread over the
// instances, gets maxUndecided signatures in all, not maxUndecided per instance. Before, each instance counted in
// its own memory, so two instances signed twice the bound.
func TestUndecidedBoundAcrossInstances(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	a, b := newFixture(t, st), newFixture(t, st)
	for n := range 2 * maxUndecided {
		f := []*fixture{a, b}[n%2]
		_, err := f.iss.Issue(ctx, f.gatedRequest(t, fmt.Sprint("tx-instances-", n), undecidedGate))
		if !errors.Is(err, ErrUndecided) {
			t.Fatalf("attempt %d: %v, want undecided", n+1, err)
		}
		if wantRefused := n >= maxUndecided; errors.Is(err, ErrUndecidedBacklog) != wantRefused {
			t.Fatalf("attempt %d on instance %d: %v; refused %t, want %t", n+1, n%2, err, !wantRefused, wantRefused)
		}
	}
	if signs := a.signer.signs.Load() + b.signer.signs.Load(); signs != maxUndecided || issuedRecords(t, st) != maxUndecided {
		t.Fatalf("%d signatures and %d issued records over two instances, want %d", signs, issuedRecords(t, st), maxUndecided)
	}
}

// TestUndecidedBoundUnderConcurrency: requests for one key that arrive together, each under its own transaction ID,
// are counted before they are signed, so no more than maxUndecided of them are signed while their gates are
// undecided; the others are refused with ErrUndecidedBacklog, nothing signed. The gates of those signed are held
// until every request has either reached its gate or been answered, so all of them overlap. Before, the count was
// checked before the signature and added after the gate, so every one of them was signed.
func TestUndecidedBoundUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	const requests = 3 * maxUndecided
	var (
		mu      sync.Mutex
		settled int // requests at their gate or answered
		all     = make(chan struct{})
	)
	settle := func() {
		mu.Lock()
		defer mu.Unlock()
		if settled++; settled == requests {
			close(all)
		}
	}
	held := func(ctx context.Context, rec *store.Record, cert *x509.Certificate) error {
		settle()
		<-all
		return undecidedGate(ctx, rec, cert)
	}
	errs := make([]error, requests)
	var wg sync.WaitGroup
	for n := range requests {
		req := f.gatedRequest(t, fmt.Sprint("tx-concurrent-", n), held)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[n] = f.iss.Issue(ctx, req)
			if errors.Is(errs[n], ErrUndecidedBacklog) {
				settle() // answered without reaching a gate
			}
		}()
	}
	wg.Wait()
	refused := 0
	for n, err := range errs {
		switch {
		case errors.Is(err, ErrUndecidedBacklog):
			refused++
		case !errors.Is(err, ErrWithheld) || !errors.Is(err, ErrUndecided):
			t.Errorf("request %d: %v, want withheld undecided or refused", n, err)
		}
	}
	if signs := f.signer.signs.Load(); signs != maxUndecided || refused != requests-maxUndecided {
		t.Fatalf("%d concurrent requests: %d signed, %d refused; want %d signed", requests, signs, refused, maxUndecided)
	}
}

// TestUndecidedBoundStoreFailureFailsClosed: when the key's backlog cannot be read or written, a gated request is
// not signed: the store's error comes back (the doors answer it 503), with no record and no signature. Before, the
// bound lived in memory and a gated request never touched the store for it.
func TestUndecidedBoundStoreFailureFailsClosed(t *testing.T) {
	for _, method := range []string{storetest.MethodPutBacklog, storetest.MethodGetBacklog} {
		t.Run(method, func(t *testing.T) {
			ctx := context.Background()
			fs := storetest.NewFaultStore(memstore.New())
			f := newFixture(t, fs)
			f.signer.st = fs.Inner()
			if method == storetest.MethodGetBacklog {
				// A backlog to read: the key was signed for once (and delivered) under another transaction.
				if _, err := f.iss.Issue(ctx, f.gatedRequest(t, "tx-earlier", undecidedGate)); !errors.Is(err, ErrUndecided) {
					t.Fatal(err)
				}
			}
			signs, records := f.signer.signs.Load(), issuedRecords(t, fs.Inner())
			fs.FailMethod(method, store.ErrUnavailable)
			_, err := f.iss.Issue(ctx, f.gatedRequest(t, "tx-store-down", undecidedGate))
			if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrWithheld) {
				t.Fatalf("backlog %s failing: %v, want the store's ErrUnavailable", method, err)
			}
			if f.signer.signs.Load() != signs || issuedRecords(t, fs.Inner()) != records {
				t.Fatalf("backlog %s failing: %d signatures, %d records more; want none", method,
					f.signer.signs.Load()-signs, issuedRecords(t, fs.Inner())-records)
			}
			if _, err := fs.Inner().Lookup(ctx, "tx-store-down"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the refused request's idempotency key is bound: %v", err)
			}
		})
	}
}

// deliveredGate is a delivery gate Intune accepts.
func deliveredGate(_ context.Context, rec *store.Record, _ *x509.Certificate) error {
	rec.IntuneNotified = true
	return nil
}

// TestGatedIssuanceReservesBeforeTheSignature: a gated request's reservation is durable in its key's backlog before
// the signature (Reauthorize runs just before it and finds it, naming the pending record), and a fresh key's
// enrollment makes one backlog call, the create: the delivered certificate's reservation is left for the record to
// settle (counting) and the timer to prune, so the enrollment costs four store calls in all — the reservation, the
// pending record with its claim, the issued update, the delivery's bookkeeping — and reads nothing. Requests without
// a gate (static SCEP, /api/csr) never touch the backlog (TestFreshIssuanceTwoRoundTrips). Before, the delivered
// certificate's reservation was deleted before the answer: five calls.
func TestGatedIssuanceReservesBeforeTheSignature(t *testing.T) {
	ctx := context.Background()
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	f.signer.st = fs.Inner()
	req := f.gatedRequest(t, "tx-reserved", deliveredGate)
	key := store.KeyHash(leafKey.Public())
	var reserved string
	req.Reauthorize = func(ctx context.Context) error {
		b, err := fs.Inner().GetBacklog(ctx, key)
		if err != nil || len(b.Reservations) != 1 {
			return fmt.Errorf("backlog before the signature: %+v, %w", b, err)
		}
		reserved = b.Reservations[0].Serial
		if rec, err := fs.Inner().Get(ctx, reserved); err != nil || rec.Status != store.StatusPending {
			return fmt.Errorf("the reservation names %s: %+v, %w; want its pending record", reserved, rec, err)
		}
		return nil
	}
	res, err := f.iss.Issue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Serial != reserved {
		t.Fatalf("issued %s, reserved %s", res.Record.Serial, reserved)
	}
	want := []string{storetest.MethodPutBacklog, storetest.MethodInsertBound, storetest.MethodUpdate, storetest.MethodUpdate}
	if got := callsOf(fs, want); fs.TotalCalls() != len(want) || !slices.Equal(got, []int{1, 1, 2, 2}) {
		t.Fatalf("store calls: %d in all, %v of %v; want exactly one reservation, one pending record, two updates",
			fs.TotalCalls(), got, want)
	}
	if b, err := fs.Inner().GetBacklog(ctx, key); err != nil || len(b.Reservations) != 1 || b.Reservations[0].Serial != reserved {
		t.Fatalf("backlog after delivery: %+v, %v; want the delivered certificate's reservation, left for the timer", b, err)
	}
}

// callsOf is how many calls fs saw of each of methods.
func callsOf(fs *storetest.FaultStore, methods []string) []int {
	n := make([]int, len(methods))
	for i, m := range methods {
		n[i] = fs.Calls(m)
	}
	return n
}

// TestSettledReservationsStopCounting: reservations left behind by requests whose records settled — delivered,
// refused for good by Intune, abandoned because the signature failed — do not count against the bound, however many
// of them the key's backlog holds within the hour, and none of those requests deletes one: a key signed for and
// delivered again and again keeps being signed for, and maxUndecided undecided ones among them still close it.
// Before, each of these requests deleted its reservation before it answered.
func TestSettledReservationsStopCounting(t *testing.T) {
	ctx := context.Background()
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	f.signer.st = fs.Inner()
	refusedGate := func(context.Context, *store.Record, *x509.Certificate) error {
		return errors.New("intune: successNotification: the device is not compliant")
	}
	for n := range 2 * maxUndecided {
		if _, err := f.iss.Issue(ctx, f.gatedRequest(t, fmt.Sprint("tx-delivered-", n), deliveredGate)); err != nil {
			t.Fatalf("delivery %d: %v", n+1, err)
		}
		if _, err := f.iss.Issue(ctx, f.gatedRequest(t, fmt.Sprint("tx-refused-", n), refusedGate)); !errors.Is(err, ErrWithheld) ||
			errors.Is(err, ErrUndecided) {
			t.Fatalf("refusal %d: %v, want withheld for good", n+1, err)
		}
		f.signer.fail = errors.New("key vault says no")
		if _, err := f.iss.Issue(ctx, f.gatedRequest(t, fmt.Sprint("tx-abandoned-", n), deliveredGate)); !errors.Is(err, ErrSigner) {
			t.Fatalf("failed signature %d: %v, want ErrSigner", n+1, err)
		}
		f.signer.fail = nil
	}
	if n := fs.Calls(storetest.MethodDeleteBacklog); n != 0 {
		t.Fatalf("%d backlog deletes on the enrollment path, want none", n)
	}
	b, err := fs.Inner().GetBacklog(ctx, store.KeyHash(leafKey.Public()))
	if err != nil || len(b.Reservations) == 0 {
		t.Fatalf("the key's backlog: %+v, %v; want the settled reservations left in it", b, err)
	}
	for n := range maxUndecided {
		if _, err := f.iss.Issue(ctx, f.gatedRequest(t, fmt.Sprint("tx-undecided-", n), undecidedGate)); errors.Is(err, ErrUndecidedBacklog) {
			t.Fatalf("undecided %d after %d settled requests: %v; the settled ones count", n+1, 6*maxUndecided, err)
		}
	}
	signs := f.signer.signs.Load()
	if _, err := f.iss.Issue(ctx, f.gatedRequest(t, "tx-undecided-over", undecidedGate)); !errors.Is(err, ErrUndecidedBacklog) ||
		f.signer.signs.Load() != signs {
		t.Fatalf("past the bound: %v; want ErrUndecidedBacklog and no signature", err)
	}
}

// TestUnrecordedRequestsReleaseTheirReservations: a request that records nothing under its serial — a replay of
// the key's delivered certificate, answered from the store — takes its reservation out again before it answers, as
// its record would never settle it: a device that repeats its request many times within the hour keeps getting its
// certificate, and the backlog holds only the delivered one's reservation.
func TestUnrecordedRequestsReleaseTheirReservations(t *testing.T) {
	ctx := context.Background()
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	f.signer.st = fs.Inner()
	first, err := f.iss.Issue(ctx, f.gatedRequest(t, "tx-repeated", deliveredGate))
	if err != nil {
		t.Fatal(err)
	}
	for n := range 3 * maxUndecided {
		res, err := f.iss.Issue(ctx, f.gatedRequest(t, "tx-repeated", deliveredGate))
		if err != nil || res.Record.Serial != first.Record.Serial {
			t.Fatalf("replay %d: %v; want the delivered certificate %s", n+1, err, first.Record.Serial)
		}
	}
	if f.signer.signs.Load() != 1 {
		t.Fatalf("%d signatures, want 1", f.signer.signs.Load())
	}
	b, err := fs.Inner().GetBacklog(ctx, store.KeyHash(leafKey.Public()))
	if err != nil || len(b.Reservations) != 1 || b.Reservations[0].Serial != first.Record.Serial {
		t.Fatalf("the key's backlog after the replays: %+v, %v; want the delivered certificate's reservation alone", b, err)
	}
}

// TestUndecidedBoundExpiresAndIsPruned: a reservation counts for undecidedWindow: after it the key is signed for
// again, and PruneBacklogs deletes the backlogs whose reservations all expired.
func TestUndecidedBoundExpiresAndIsPruned(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	now := time.Now()
	f.iss.now = func() time.Time { return now }
	for n := range maxUndecided {
		if _, err := f.iss.Issue(ctx, f.gatedRequest(t, fmt.Sprint("tx-expiry-", n), undecidedGate)); errors.Is(err, ErrUndecidedBacklog) {
			t.Fatalf("attempt %d: %v", n+1, err)
		}
	}
	if _, err := f.iss.Issue(ctx, f.gatedRequest(t, "tx-expiry-over", undecidedGate)); !errors.Is(err, ErrUndecidedBacklog) {
		t.Fatalf("past the bound: %v, want ErrUndecidedBacklog", err)
	}
	if n, err := f.iss.PruneBacklogs(ctx, 10); n != 0 || err != nil {
		t.Fatalf("PruneBacklogs within the window = %d, %v; want nothing pruned", n, err)
	}
	now = now.Add(undecidedWindow + time.Second)
	if n, err := f.iss.PruneBacklogs(ctx, 10); n != 1 || err != nil {
		t.Fatalf("PruneBacklogs after the window = %d, %v; want the key's backlog", n, err)
	}
	signs := f.signer.signs.Load()
	if _, err := f.iss.Issue(ctx, f.gatedRequest(t, "tx-expiry-later", undecidedGate)); errors.Is(err, ErrUndecidedBacklog) ||
		f.signer.signs.Load() != signs+1 {
		t.Fatalf("an hour later: %v; want signed", err)
	}
}
