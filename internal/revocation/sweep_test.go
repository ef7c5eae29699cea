package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// boundedStore ends the sweep's context after a number of record reads: the hourly timer's 1-minute bound on the
// sweep, counted in reads instead of time.
type boundedStore struct {
	store.Store
	left   atomic.Int64
	cancel context.CancelFunc
}

func (b *boundedStore) Get(ctx context.Context, serial string) (*store.Record, error) {
	if b.left.Add(-1) < 0 {
		b.cancel()
	}
	return b.Store.Get(ctx, serial)
}

// sweepBounded runs one sweep at now that may read reads records.
func sweepBounded(t *testing.T, st store.Store, reads int64, now time.Time) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := &boundedStore{Store: st, cancel: cancel}
	b.left.Store(reads)
	_, _ = revocation.CompleteInterrupted(ctx, b, now.Add(-revocation.InterruptedWindow), now)
}

// sweepCursor reads where the next sweep begins ("" before the first).
func sweepCursor(t *testing.T, st store.Store) string {
	t.Helper()
	raw, _, err := st.GetMeta(t.Context(), "revocation-sweep-cursor")
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("reading the sweep cursor: %v", err)
	}
	var c struct{ After string }
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.After
}

// Successive sweeps each bounded to fewer reads than the window holds go on where the last one stopped: an
// interrupted revocation after more complete ones (in serial order) than one sweep can read is still completed,
// by the second sweep. Started from the beginning every hour, every sweep would stop before it until it left the
// 7-day window, with the CRL listing it and OCSP answering good.
func TestInterruptedSweepGoesOnAcrossRuns(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
		recs := f.issue(t, 41)
		sort.Slice(recs, func(i, j int) bool { return recs[i].Serial < recs[j].Serial })
		for _, r := range recs[:40] {
			if _, _, err := revocation.Revoke(t.Context(), f.backend, r.Serial, 5, "intune", "", at); err != nil {
				t.Fatal(err)
			}
		}
		last := recs[40] // after every complete revocation
		revokeInterrupted(t, f, last, 1, at)

		now := at.Add(time.Hour)
		sweepBounded(t, f.backend, 30, now)
		if got := f.record(t, last.Serial).Status; got == store.StatusRevoked {
			t.Fatal("the first sweep read past its bound")
		}
		afterFirst := sweepCursor(t, f.backend)
		sweepBounded(t, f.backend, 30, now.Add(time.Hour))
		if got := f.record(t, last.Serial).Status; got != store.StatusRevoked {
			t.Fatalf("after two sweeps of 30 reads over 41 entries the interrupted revocation of %s is %s, want "+
				"revoked", last.Serial, got)
		}
		if afterFirst != recs[29].Serial {
			t.Errorf("cursor after the first sweep = %s, want the 30th serial %s", afterFirst, recs[29].Serial)
		}
		// The second sweep went round the index, past the start, and the third goes on from there.
		if got := sweepCursor(t, f.backend); got >= recs[29].Serial {
			t.Errorf("cursor after the second sweep = %s, want one before the 30th serial %s", got, recs[29].Serial)
		}
	})
}

// racingStore runs another whole sweep just before this sweep saves its cursor, as a second instance's timer
// would if it overlapped.
type racingStore struct {
	store.Store
	other func()
	once  atomic.Bool
}

func (r *racingStore) PutMeta(ctx context.Context, name string, value []byte, etag string) (string, error) {
	if name == "revocation-sweep-cursor" && r.once.CompareAndSwap(false, true) {
		r.other()
	}
	return r.Store.PutMeta(ctx, name, value, etag)
}

// Of two overlapping sweeps that started from the same cursor, the one that saves first keeps its position: the
// other's write is conditioned on the cursor it read, so it can never move the cursor back over entries checked
// since, nor from a position it did not start at. Either way it reports no error: the progress is there.
func TestInterruptedSweepCursorKeptByOverlappingSweep(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	recs := f.issue(t, 10)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Serial < recs[j].Serial })
	for _, r := range recs {
		if _, _, err := revocation.Revoke(t.Context(), f.backend, r.Serial, 5, "intune", "", at); err != nil {
			t.Fatal(err)
		}
	}
	now := at.Add(time.Hour)
	sweepBounded(t, f.backend, 3, now) // cursor at the 3rd serial

	slow := &racingStore{Store: f.backend, other: func() { sweepBounded(t, f.backend, 6, now) }}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := &boundedStore{Store: slow, cancel: cancel}
	b.left.Store(2)
	if _, err := revocation.CompleteInterrupted(ctx, b, now.Add(-revocation.InterruptedWindow), now); err == nil {
		t.Error("a sweep cut short reports no error")
	}
	if got := sweepCursor(t, f.backend); got != recs[8].Serial {
		t.Errorf("cursor = %s, want %s where the sweep that saved first stopped (3 + 6 reads)", got, recs[8].Serial)
	}
}

// failingGet fails every read of one record, as a record the store keeps refusing would.
type failingGet struct {
	store.Store
	serial string
}

func (f *failingGet) Get(ctx context.Context, serial string) (*store.Record, error) {
	if serial == f.serial {
		return nil, store.ErrUnavailable
	}
	return f.Store.Get(ctx, serial)
}

// An interrupted revocation whose completion keeps failing does not hold back the ones after it in the index: the
// sweep reports the failure and goes on, so the later one is completed by the same sweep. Stopping at the failure
// would leave the cursor before it, and every later sweep would stop there again until both left the window, with
// OCSP answering good for the later one meanwhile.
func TestInterruptedSweepGoesPastAFailingEntry(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	recs := f.issue(t, 2)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Serial < recs[j].Serial })
	for _, r := range recs {
		revokeInterrupted(t, f, r, 1, at)
	}
	st := &failingGet{Store: f.backend, serial: recs[0].Serial}
	now := at.Add(time.Hour)
	done, err := revocation.CompleteInterrupted(t.Context(), st, now.Add(-revocation.InterruptedWindow), now)
	if err == nil {
		t.Error("a sweep that could not complete an entry reports no error")
	}
	if got := f.record(t, recs[1].Serial).Status; got != store.StatusRevoked || len(done) != 1 {
		t.Fatalf("the entry after the failing one is %s (%d completed), want revoked by the same sweep", got, len(done))
	}
	if got := f.record(t, recs[0].Serial).Status; got == store.StatusRevoked {
		t.Fatal("the failing entry was completed")
	}
}
