package tables_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/tables"
)

// pruneTransport counts the requests that delete backlogs — entity-group transactions ($batch) and single deletes —
// and runs before, once, ahead of the first transaction.
type pruneTransport struct {
	batches, deletes atomic.Int32
	mu               sync.Mutex
	before           func()
}

func (p *pruneTransport) Do(req *http.Request) (*http.Response, error) {
	switch {
	case req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/$batch"):
		p.batches.Add(1)
		p.mu.Lock()
		before := p.before
		p.before = nil
		p.mu.Unlock()
		if before != nil {
			before()
		}
	case req.Method == http.MethodDelete:
		p.deletes.Add(1)
	}
	return http.DefaultTransport.RoundTrip(req)
}

// backlogKey is a valid backlog key, distinct per n.
func backlogKey(n int) string { return fmt.Sprintf("%064x", 0xb000+n) }

// putBacklogs writes n backlogs from key first on, each with one reservation at at, eight at a time.
func putBacklogs(t *testing.T, s store.Store, first, n int, at time.Time) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b := &store.Backlog{PublicKey: backlogKey(i), Reservations: []store.Reservation{{Serial: fmt.Sprintf("%X", 0x100+i), At: at}}}
				if err := s.PutBacklog(t.Context(), b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := first; i < first+n; i++ {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestPruneBacklogsInTransactions: expired backlogs are deleted a hundred to an entity-group transaction, with no
// delete of its own for any of them, over as many listings as the limit takes (a page each), and those of the last
// hour stay. Before, each took a delete of its own: the hourly timer needed one round trip per key enrolled through
// Intune in the hour before.
func TestPruneBacklogsInTransactions(t *testing.T) {
	t.Parallel()
	pt := &pruneTransport{}
	s := newStore(t, tables.WithTransport(pt))
	now := time.Now()
	const expired, recent, limit = 1050, 5, 1020
	putBacklogs(t, s, 0, expired, now.Add(-2*time.Hour))
	putBacklogs(t, s, expired, recent, now.Add(-time.Minute))
	n, err := s.PruneBacklogs(t.Context(), now.Add(-time.Hour), limit)
	if err != nil || n != limit {
		t.Fatalf("PruneBacklogs = %d, %v; want %d", n, err, limit)
	}
	// A page of 1,000 in ten transactions, then the 20 the limit leaves in one.
	if b, d := pt.batches.Load(), pt.deletes.Load(); b != 11 || d != 0 {
		t.Fatalf("%d transactions and %d single deletes for %d backlogs; want 11 and none", b, d, limit)
	}
	n, err = s.PruneBacklogs(t.Context(), now.Add(-time.Hour), 10_000)
	if err != nil || n != expired-limit {
		t.Fatalf("PruneBacklogs of the rest = %d, %v; want %d", n, err, expired-limit)
	}
	for i := range expired + recent {
		_, err := s.GetBacklog(t.Context(), backlogKey(i))
		if gone := i < expired; gone != errors.Is(err, store.ErrNotFound) || !gone && err != nil {
			t.Fatalf("backlog %d after the prune: %v; want pruned %t", i, err, gone)
		}
	}
}

// TestPruneBacklogsRace: a backlog written (a new reservation of its key) or deleted between the prune's listing and
// its transaction makes the transaction fail as a whole; the prune then deletes its backlogs one by one, each still
// at the ETag it was listed with, so the one written since stays with its new reservation and every other expired
// one goes.
func TestPruneBacklogsRace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		moved func(t *testing.T, other store.Store, key string)
		kept  bool
	}{
		{"written", func(t *testing.T, other store.Store, key string) {
			b, err := other.GetBacklog(t.Context(), key)
			if err != nil {
				t.Error(err)
				return
			}
			b.Reservations = append(b.Reservations, store.Reservation{Serial: "FRESH", At: time.Now()})
			if err := other.PutBacklog(t.Context(), b); err != nil {
				t.Error(err)
			}
		}, true},
		{"deleted", func(t *testing.T, other store.Store, key string) {
			b, err := other.GetBacklog(t.Context(), key)
			if err == nil {
				err = other.DeleteBacklog(t.Context(), key, b.ETag)
			}
			if err != nil {
				t.Error(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn := azuritetest.ConnectionString(t)
			other, err := tables.NewFromConnectionString(conn, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := other.EnsureTables(t.Context()); err != nil {
				t.Fatal(err)
			}
			pt := &pruneTransport{}
			s, err := tables.NewFromConnectionString(conn, "", tables.WithTransport(pt))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			const expired, moved = 150, 42 // moved is in the first transaction
			putBacklogs(t, s, 0, expired, now.Add(-2*time.Hour))
			pt.mu.Lock()
			pt.before = func() { tc.moved(t, other, backlogKey(moved)) }
			pt.mu.Unlock()
			n, err := s.PruneBacklogs(t.Context(), now.Add(-time.Hour), 1000)
			if err != nil || n != expired-1 {
				t.Fatalf("PruneBacklogs = %d, %v; want %d", n, err, expired-1)
			}
			if b, d := pt.batches.Load(), pt.deletes.Load(); b != 2 || d != 100 {
				t.Fatalf("%d transactions, %d single deletes; want 2 (the failed one, the next) and 100 (the failed one's, one by one)", b, d)
			}
			for i := range expired {
				b, err := s.GetBacklog(t.Context(), backlogKey(i))
				if i == moved && tc.kept {
					if err != nil || len(b.Reservations) != 2 || b.Reservations[1].Serial != "FRESH" {
						t.Fatalf("the backlog written since: %+v, %v; want it kept with its new reservation", b, err)
					}
					continue
				}
				if !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("expired backlog %d after the prune: %v; want pruned", i, err)
				}
			}
		})
	}
}
