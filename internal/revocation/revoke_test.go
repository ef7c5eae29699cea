package revocation_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

func indexed(t *testing.T, st store.Store) map[string]store.Revoked {
	t.Helper()
	list, err := st.ListRevoked(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Revoked{}
	for _, e := range list {
		out[e.Serial] = e
	}
	return out
}

func TestRevoke(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	now := time.Date(2026, 5, 1, 10, 20, 30, 456789, time.UTC)
	at := now.Truncate(time.Second)

	t.Run("issued", func(t *testing.T) {
		rec := f.issue(t, 1)[0]
		outcome, got, err := revocation.Revoke(t.Context(), f.backend, rec.Serial, 1, "admin:alice", "ticket 42", now)
		if err != nil || outcome != revocation.Revoked {
			t.Fatalf("Revoke = %v, %v; want Revoked", outcome, err)
		}
		stored := f.record(t, rec.Serial)
		if stored.Status != store.StatusRevoked || !stored.RevokedAt.Equal(at) || stored.RevocationReason != 1 ||
			stored.RevokedBy != "admin:alice" || stored.RevocationRef != "ticket 42" || got.ETag != stored.ETag {
			t.Errorf("stored %+v", stored)
		}
		if string(stored.CertDER) != string(rec.CertDER) {
			t.Error("the certificate DER changed")
		}
		if e, ok := indexed(t, f.backend)[rec.Serial]; !ok || !e.RevokedAt.Equal(at) || e.Reason != 1 {
			t.Errorf("index entry %+v (present %t)", e, ok)
		}

		// Again, with another reason and actor: nothing changes.
		outcome, got, err = revocation.Revoke(t.Context(), f.backend, rec.Serial, 4, "intune", "ctx", now.Add(time.Hour))
		if err != nil || outcome != revocation.AlreadyRevoked {
			t.Fatalf("second Revoke = %v, %v; want AlreadyRevoked", outcome, err)
		}
		again := f.record(t, rec.Serial)
		if again.ETag != stored.ETag || again.RevocationReason != 1 || again.RevokedBy != "admin:alice" || got.RevokedBy != "admin:alice" {
			t.Errorf("already revoked record changed: %+v", again)
		}
	})

	for _, st := range []store.Status{store.StatusPending, store.StatusAbandoned} {
		t.Run(string(st)+" with a planned certificate", func(t *testing.T) {
			rec := f.insert(t, store.StatusPending, true, "planned")
			if st == store.StatusAbandoned {
				rec.Status = store.StatusAbandoned
				if err := f.backend.Update(t.Context(), rec, store.StatusPending); err != nil {
					t.Fatal(err)
				}
			}
			outcome, _, err := revocation.Revoke(t.Context(), f.backend, rec.Serial, 0, "admin:bob", "", now)
			if err != nil || outcome != revocation.Revoked {
				t.Fatalf("Revoke = %v, %v", outcome, err)
			}
			if r := f.record(t, rec.Serial); r.Status != store.StatusRevoked {
				t.Errorf("status %s", r.Status)
			}
			if _, ok := indexed(t, f.backend)[rec.Serial]; !ok {
				t.Error("not indexed")
			}
		})
	}

	t.Run("pending without a planned certificate", func(t *testing.T) {
		rec := f.insert(t, store.StatusPending, false, "bare")
		_, _, err := revocation.Revoke(t.Context(), f.backend, rec.Serial, 0, "admin:bob", "", now)
		if !errors.Is(err, revocation.ErrNotRevocable) {
			t.Fatalf("Revoke = %v, want ErrNotRevocable", err)
		}
		if r := f.record(t, rec.Serial); r.Status != store.StatusPending {
			t.Errorf("status %s", r.Status)
		}
		if _, ok := indexed(t, f.backend)[rec.Serial]; ok {
			t.Error("a certificate that was never signed is in the revocation index")
		}
	})

	t.Run("unknown and malformed serials", func(t *testing.T) {
		for _, serial := range []string{"0DEADBEEF0", "", "zz", "00", strings.Repeat("A", 41)} {
			if _, _, err := revocation.Revoke(t.Context(), f.backend, serial, 0, "admin:bob", "", now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Revoke(%q) = %v, want ErrNotFound", serial, err)
			}
		}
	})

	t.Run("serial spellings", func(t *testing.T) {
		for _, spell := range []func(string) string{
			strings.ToLower,
			func(s string) string { return "000" + s },
			func(s string) string { return "0x" + strings.ToLower(s) },
			func(s string) string {
				var b strings.Builder
				for i := 0; i < len(s); i += 2 {
					if i > 0 {
						b.WriteByte(':')
					}
					b.WriteString(s[i:min(i+2, len(s))])
				}
				return b.String()
			},
		} {
			rec := f.issue(t, 1)[0]
			spelled := spell(rec.Serial)
			outcome, got, err := revocation.Revoke(t.Context(), f.backend, spelled, 5, "intune", "", now)
			if err != nil || outcome != revocation.Revoked || got.Serial != rec.Serial {
				t.Errorf("Revoke(%q) = %v, %v", spelled, outcome, err)
			}
			if _, ok := indexed(t, f.backend)[rec.Serial]; !ok {
				t.Errorf("Revoke(%q) did not index the canonical serial", spelled)
			}
		}
	})
}

// Concurrent revocations of one serial: exactly one Revoked, the rest AlreadyRevoked, no errors, one index entry.
func TestRevokeConcurrent(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[revocation.Outcome]int{}
	for i := range 16 {
		wg.Go(func() {
			serial := rec.Serial
			if i%2 == 1 {
				serial = strings.ToLower(serial)
			}
			o, _, err := revocation.Revoke(context.Background(), f.backend, serial, 4, "admin:x", "", time.Now())
			if err != nil {
				t.Errorf("Revoke: %v", err)
				return
			}
			mu.Lock()
			outcomes[o]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if outcomes[revocation.Revoked] != 1 || outcomes[revocation.AlreadyRevoked] != 15 {
		t.Errorf("outcomes = %v, want 1 Revoked and 15 AlreadyRevoked", outcomes)
	}
	if n := len(indexed(t, f.backend)); n != 1 {
		t.Errorf("%d index entries", n)
	}
}

// The index is written before the record: when the record update fails the CRL already lists the certificate,
// and a retry completes the record. When the index write fails, nothing changes.
func TestRevokeIndexBeforeRecord(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	now := time.Now()

	rec := f.issue(t, 1)[0]
	f.faults.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1})
	if _, _, err := revocation.Revoke(t.Context(), f.faults, rec.Serial, 1, "admin:x", "", now); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Revoke with a failing update = %v, want the store error", err)
	}
	if _, ok := indexed(t, f.backend)[rec.Serial]; !ok {
		t.Fatal("the index lacks the revocation whose record update failed")
	}
	entries, _ := revocation.Status{Store: f.backend}.RevokedEntries(t.Context())
	if len(entries) != 1 {
		t.Errorf("CRL source lists %d entries, want 1", len(entries))
	}
	if r := f.record(t, rec.Serial); r.Status != store.StatusIssued {
		t.Fatalf("record is %s", r.Status)
	}
	outcome, _, err := revocation.Revoke(t.Context(), f.faults, rec.Serial, 1, "admin:x", "", now)
	if err != nil || outcome != revocation.Revoked {
		t.Fatalf("retry = %v, %v", outcome, err)
	}
	if r := f.record(t, rec.Serial); r.Status != store.StatusRevoked {
		t.Errorf("record is %s after the retry", r.Status)
	}

	rec2 := f.issue(t, 1)[0]
	f.faults.Inject(storetest.Fault{Method: storetest.MethodAddRevoked, Nth: 1})
	if _, _, err := revocation.Revoke(t.Context(), f.faults, rec2.Serial, 1, "admin:x", "", now); err == nil {
		t.Fatal("Revoke succeeded although the index write failed")
	}
	if _, ok := indexed(t, f.backend)[rec2.Serial]; ok {
		t.Error("the index has an entry although its write failed")
	}
	if r := f.record(t, rec2.Serial); r.Status != store.StatusIssued {
		t.Errorf("record moved to %s although the index write failed", r.Status)
	}

	// A record revoked without its index entry (written before the index existed, or by a crashed older
	// version) gets the entry on the next Revoke of that serial.
	rec3 := f.issue(t, 1)[0]
	r3 := f.record(t, rec3.Serial)
	r3.Status, r3.RevokedAt, r3.RevocationReason, r3.RevokedBy = store.StatusRevoked, now.UTC().Truncate(time.Second), 3, "admin:y"
	if err := f.backend.Update(t.Context(), r3, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	outcome, _, err = revocation.Revoke(t.Context(), f.backend, rec3.Serial, 1, "admin:x", "", now)
	if err != nil || outcome != revocation.AlreadyRevoked {
		t.Fatalf("Revoke of an unindexed revoked record = %v, %v", outcome, err)
	}
	if e, ok := indexed(t, f.backend)[rec3.Serial]; !ok || e.Reason != 3 {
		t.Errorf("index entry %+v (present %t), want the record's reason 3", e, ok)
	}
}

// A concurrent writer that changes the record between read and update (ETag conflict) is retried.
func TestRevokeRetriesConflict(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	var once sync.Once
	f.faults.OnCall(func(method string) {
		if method != storetest.MethodUpdate {
			return
		}
		once.Do(func() {
			// Another instance marks the record notified in between.
			r := f.record(t, rec.Serial)
			r.Note = "touched"
			if err := f.backend.Update(context.Background(), r, store.StatusIssued); err != nil {
				t.Error(err)
			}
		})
	})
	outcome, _, err := revocation.Revoke(t.Context(), f.faults, rec.Serial, 1, "admin:x", "", time.Now())
	f.faults.Clear()
	if err != nil || outcome != revocation.Revoked {
		t.Fatalf("Revoke = %v, %v", outcome, err)
	}
	if n := f.faults.Calls(storetest.MethodUpdate); n != 2 {
		t.Errorf("%d updates, want 2 (one conflict, one success)", n)
	}
	if r := f.record(t, rec.Serial); r.Status != store.StatusRevoked || r.Note != "touched" {
		t.Errorf("record %+v", r)
	}
}

func TestReasonCode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"unspecified", 0, true},
		{"0", 0, true},
		{"keyCompromise", 1, true},
		{"KEYCOMPROMISE", 1, true},
		{" 1 ", 1, true},
		{"affiliationChanged", 3, true},
		{"superseded", 4, true},
		{"4", 4, true},
		{"cessationOfOperation", 5, true},
		{"5", 5, true},
		{"privilegeWithdrawn", 9, true},
		{"9", 9, true},
		{"cACompromise", 0, false},
		{"2", 0, false},
		{"certificateHold", 0, false},
		{"6", 0, false},
		{"aACompromise", 0, false},
		{"10", 0, false},
		{"7", 0, false},
		{"8", 0, false},
		{"removeFromCRL", 0, false},
		{"05", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"compromised", 0, false},
	} {
		got, err := revocation.ReasonCode(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ReasonCode(%q) = %d, %v; want %d, ok=%t", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if revocation.ReasonName(5) != "cessationOfOperation" || revocation.ReasonName(7) != "" {
		t.Error("ReasonName")
	}
}

// revokeInterrupted revokes rec with its record write failing, as when the admin's request ends between the
// index entry and the record: the CRL then lists the certificate while its record still says issued.
func revokeInterrupted(t *testing.T, f *fixture, rec *store.Record, reason int, now time.Time) {
	t.Helper()
	f.faults.Inject(storetest.Fault{Method: storetest.MethodUpdate, Err: context.Canceled})
	defer f.faults.Clear()
	if _, _, err := revocation.Revoke(t.Context(), f.faults, rec.Serial, reason, "admin:alice", "ticket", now); err == nil {
		t.Fatal("Revoke succeeded through a failing record write")
	}
	if e, ok := indexed(t, f.backend)[rec.Serial]; !ok || f.record(t, rec.Serial).Status != store.StatusIssued {
		t.Fatalf("not the interrupted state: indexed %v (%+v), record %s", ok, e, f.record(t, rec.Serial).Status)
	}
}

// A revocation interrupted between its index entry and its record is completed with the time and reason the CRL
// already publishes, by the next Revoke (the admin's retry, with another reason and later) and by the sweep.
func TestInterruptedRevocationCompletesWithTheIndexedEntry(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	first := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

	t.Run("retry", func(t *testing.T) {
		rec := f.issue(t, 1)[0]
		revokeInterrupted(t, f, rec, 1, first)
		outcome, got, err := revocation.Revoke(t.Context(), f.backend, rec.Serial, 4, "admin:bob", "retry", first.Add(time.Hour))
		if err != nil || !revocation.NewlyRevoked(outcome, got) {
			t.Fatalf("retry = %v, %+v, %v", outcome, got, err)
		}
		stored := f.record(t, rec.Serial)
		if !stored.RevokedAt.Equal(first) || stored.RevocationReason != 1 {
			t.Errorf("record revoked at %v reason %d; the CRL says %v reason 1", stored.RevokedAt, stored.RevocationReason, first)
		}
	})

	t.Run("sweep", func(t *testing.T) {
		recs := f.issue(t, 4)
		sweptAt := first.Add(2 * time.Hour)
		revokeInterrupted(t, f, recs[0], 1, first)
		revokeInterrupted(t, f, recs[1], 3, first.Add(-revocation.InterruptedWindow-time.Hour)) // outside the window
		// Between its two writes right now, not interrupted: the sweep must not take it over (it would record
		// itself instead of who revoked it and why).
		revokeInterrupted(t, f, recs[3], 1, sweptAt.Add(-time.Minute))
		if _, _, err := revocation.Revoke(t.Context(), f.backend, recs[2].Serial, 4, "admin:alice", "", first); err != nil {
			t.Fatal(err) // a complete revocation: nothing to do
		}
		before, _, err := f.backend.GetMeta(t.Context(), "revocation-generation")
		if err != nil {
			t.Fatal(err)
		}
		done, err := revocation.CompleteInterrupted(t.Context(), f.backend, first.Add(-time.Hour), sweptAt)
		if err != nil {
			t.Fatal(err)
		}
		if len(done) != 1 || done[0].Serial != recs[0].Serial {
			t.Fatalf("completed %v, want only %s", done, recs[0].Serial)
		}
		stored := f.record(t, recs[0].Serial)
		if stored.Status != store.StatusRevoked || !stored.RevokedAt.Equal(first) || stored.RevocationReason != 1 || stored.RevokedBy != "sweep" {
			t.Errorf("completed record %s at %v reason %d by %q", stored.Status, stored.RevokedAt, stored.RevocationReason, stored.RevokedBy)
		}
		if f.record(t, recs[1].Serial).Status != store.StatusIssued {
			t.Error("an entry outside the window was read and completed")
		}
		if f.record(t, recs[3].Serial).Status != store.StatusIssued {
			t.Error("a revocation inside the grace period, possibly still in progress, was taken over")
		}
		if after, _, _ := f.backend.GetMeta(t.Context(), "revocation-generation"); string(after) == string(before) {
			t.Error("the generation was not bumped: other instances' OCSP caches keep answering good")
		}
		if again, err := revocation.CompleteInterrupted(t.Context(), f.backend, first.Add(-time.Hour), sweptAt.Add(time.Minute)); err != nil || len(again) != 0 {
			t.Errorf("second sweep = %v, %v; want nothing left", again, err)
		}
	})
}
