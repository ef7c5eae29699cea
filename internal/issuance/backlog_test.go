package issuance

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
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

// TestGatedIssuanceReservesBeforeTheSignature: a gated request's reservation is durable in its key's backlog before
// the signature (Reauthorize runs just before it and finds it, naming the pending record), and a delivered
// certificate's reservation is released, so a fresh key leaves nothing behind: one backlog write before, one
// delete after, and no read. Requests without a gate (static SCEP, /api/csr) never touch the backlog
// (TestFreshIssuanceTwoRoundTrips). Before, nothing was written before the signature.
func TestGatedIssuanceReservesBeforeTheSignature(t *testing.T) {
	ctx := context.Background()
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	f.signer.st = fs.Inner()
	req := f.gatedRequest(t, "tx-reserved", func(_ context.Context, rec *store.Record, _ *x509.Certificate) error {
		rec.IntuneNotified = true
		return nil
	})
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
	if _, err := fs.Inner().GetBacklog(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("backlog after delivery: %v, want none", err)
	}
	if fs.Calls(storetest.MethodPutBacklog) != 1 || fs.Calls(storetest.MethodDeleteBacklog) != 1 || fs.Calls(storetest.MethodGetBacklog) != 0 {
		t.Fatalf("backlog calls: %d writes, %d deletes, %d reads; want 1, 1, 0", fs.Calls(storetest.MethodPutBacklog),
			fs.Calls(storetest.MethodDeleteBacklog), fs.Calls(storetest.MethodGetBacklog))
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
