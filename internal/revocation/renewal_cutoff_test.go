package revocation_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// leafKeyHash is the Record.PublicKey of every certificate the fixture inserts (they share one key).
func (f *fixture) leafKeyHash(t *testing.T) string {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(f.leafKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

func (f *fixture) wantMark(t *testing.T, key, serial string) {
	t.Helper()
	mark, err := f.backend.Compromised(t.Context(), key)
	if err != nil || mark.Serial != serial {
		t.Fatalf("mark of %s = %+v, %v; want one naming %s", key, mark, err, serial)
	}
}

func (f *fixture) wantNoMark(t *testing.T, key string) {
	t.Helper()
	if mark, err := f.backend.Compromised(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("mark of %s = %+v, %v; want none", key, mark, err)
	}
}

// TestRevokeKeyCompromiseMarksKey: a keyCompromise revocation marks the certificate's key, before the revocation
// is published, so that no crash leaves the certificate revoked and its key unmarked; any other reason marks
// nothing. On Table Storage and memstore.
func TestRevokeKeyCompromiseMarksKey(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

		t.Run("other reasons mark nothing", func(t *testing.T) {
			f := newFixture(t, fixtureOptions{tables: tables})
			for _, reason := range []int{0, 3, 4, 5, 9} {
				rec := f.issue(t, 1)[0]
				if _, _, err := revocation.Revoke(t.Context(), f.backend, rec.Serial, reason, "admin:x", "", now); err != nil {
					t.Fatal(err)
				}
			}
			f.wantNoMark(t, f.leafKeyHash(t))
		})

		t.Run("record's key, else its certificate's", func(t *testing.T) {
			f := newFixture(t, fixtureOptions{tables: tables})
			withKey := f.issue(t, 1)[0]
			withKey.PublicKey = "00aa11bb"
			if err := f.backend.Update(t.Context(), withKey, store.StatusIssued); err != nil {
				t.Fatal(err)
			}
			if _, _, err := revocation.Revoke(t.Context(), f.backend, withKey.Serial, store.KeyCompromise, "admin:x", "", now); err != nil {
				t.Fatal(err)
			}
			f.wantMark(t, "00aa11bb", withKey.Serial)
			// A record without PublicKey (the RA certificates recorded at start-up): the certificate's key.
			f.wantNoMark(t, f.leafKeyHash(t))
			bare := f.issue(t, 1)[0]
			if _, _, err := revocation.Revoke(t.Context(), f.backend, bare.Serial, store.KeyCompromise, "admin:x", "", now); err != nil {
				t.Fatal(err)
			}
			f.wantMark(t, f.leafKeyHash(t), bare.Serial)
			// Another certificate for the same key revoked for keyCompromise keeps the first mark.
			sibling := f.issue(t, 1)[0]
			if _, _, err := revocation.Revoke(t.Context(), f.backend, sibling.Serial, store.KeyCompromise, "admin:x", "", now); err != nil {
				t.Fatal(err)
			}
			f.wantMark(t, f.leafKeyHash(t), bare.Serial)
		})

		t.Run("a failed mark publishes nothing", func(t *testing.T) {
			f := newFixture(t, fixtureOptions{tables: tables})
			rec := f.issue(t, 1)[0]
			f.faults.Inject(storetest.Fault{Method: storetest.MethodMarkCompromised, Nth: 1})
			if _, _, err := revocation.Revoke(t.Context(), f.faults, rec.Serial, store.KeyCompromise, "admin:x", "", now); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("Revoke with a failing mark = %v, want the store error", err)
			}
			if _, ok := indexed(t, f.backend)[rec.Serial]; ok {
				t.Error("the revocation is indexed (on the CRL) although its key mark failed")
			}
			if r := f.record(t, rec.Serial); r.Status != store.StatusIssued {
				t.Errorf("record is %s although the key mark failed", r.Status)
			}
			// The admin's retry goes through, mark first.
			if outcome, _, err := revocation.Revoke(t.Context(), f.faults, rec.Serial, store.KeyCompromise, "admin:x", "", now); err != nil || outcome != revocation.Revoked {
				t.Fatalf("retry = %v, %v", outcome, err)
			}
			f.wantMark(t, f.leafKeyHash(t), rec.Serial)
		})

		t.Run("interrupted after the mark", func(t *testing.T) {
			f := newFixture(t, fixtureOptions{tables: tables})
			rec := f.issue(t, 1)[0]
			revokeInterrupted(t, f, rec, store.KeyCompromise, now) // indexed, record not revoked
			f.wantMark(t, f.leafKeyHash(t), rec.Serial)
		})

		t.Run("index entry without a mark, completed by the sweep", func(t *testing.T) {
			// An index entry an older version wrote for keyCompromise and never finished: the sweep completes the
			// revocation through Revoke, which marks the key.
			f := newFixture(t, fixtureOptions{tables: tables})
			rec := f.issue(t, 1)[0]
			if _, err := f.backend.AddRevoked(t.Context(), store.Revoked{Serial: rec.Serial, RevokedAt: now, Reason: store.KeyCompromise,
				NotAfter: rec.NotAfter}); err != nil {
				t.Fatal(err)
			}
			done, err := revocation.CompleteInterrupted(t.Context(), f.backend, now.Add(-time.Hour), now.Add(time.Hour))
			if err != nil || len(done) != 1 {
				t.Fatalf("sweep = %v, %v", done, err)
			}
			f.wantMark(t, f.leafKeyHash(t), rec.Serial)
		})

		t.Run("revoked before marks existed, revoked again", func(t *testing.T) {
			f := newFixture(t, fixtureOptions{tables: tables})
			rec := f.issue(t, 1)[0]
			r := f.record(t, rec.Serial)
			r.Status, r.RevokedAt, r.RevocationReason = store.StatusRevoked, now, store.KeyCompromise
			if err := f.backend.Update(t.Context(), r, store.StatusIssued); err != nil {
				t.Fatal(err)
			}
			outcome, _, err := revocation.Revoke(t.Context(), f.backend, rec.Serial, 0, "admin:x", "", now)
			if err != nil || outcome != revocation.AlreadyRevoked {
				t.Fatalf("Revoke = %v, %v", outcome, err)
			}
			f.wantMark(t, f.leafKeyHash(t), rec.Serial)
		})
	})
}

// chain inserts issued records a → b → c (each renewed from the one before) without forward links, as after
// renewals whose link writes all failed, or renewals from before links were written.
func (f *fixture) chain(t *testing.T, n int) []*store.Record {
	t.Helper()
	recs := f.issue(t, n)
	for i := 1; i < n; i++ {
		recs[i].RenewedFrom = recs[i-1].Serial
		if err := f.backend.Update(t.Context(), recs[i], store.StatusIssued); err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

// TestRevokeLinksRenewalAncestors: revoking a renewed certificate points every ancestor's forward link along the
// branch that leads to it, so the renewal check walking forward from any of them reaches the revoked certificate.
func TestRevokeLinksRenewalAncestors(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

		t.Run("lost links repaired", func(t *testing.T) {
			f := newFixture(t, fixtureOptions{tables: tables})
			recs := f.chain(t, 3)
			if _, _, err := revocation.Revoke(t.Context(), f.backend, recs[2].Serial, 5, "intune", "ctx", now); err != nil {
				t.Fatal(err)
			}
			if a, b := f.record(t, recs[0].Serial), f.record(t, recs[1].Serial); a.RenewedTo != recs[1].Serial || b.RenewedTo != recs[2].Serial {
				t.Errorf("links a→%q b→%q, want a→%s b→%s", a.RenewedTo, b.RenewedTo, recs[1].Serial, recs[2].Serial)
			}
			if a := f.record(t, recs[0].Serial); a.Status != store.StatusIssued {
				t.Errorf("an ancestor moved to %s; it is only linked, not revoked", a.Status)
			}
		})

		t.Run("another branch repointed", func(t *testing.T) {
			// a renewed twice: into b (revoked now) and, later, into d (its link is what a holds).
			f := newFixture(t, fixtureOptions{tables: tables})
			recs := f.chain(t, 2)
			d := f.issue(t, 1)[0]
			d.RenewedFrom = recs[0].Serial
			if err := f.backend.Update(t.Context(), d, store.StatusIssued); err != nil {
				t.Fatal(err)
			}
			a := f.record(t, recs[0].Serial)
			a.RenewedTo = d.Serial
			if err := f.backend.Update(t.Context(), a, store.StatusIssued); err != nil {
				t.Fatal(err)
			}
			if _, _, err := revocation.Revoke(t.Context(), f.backend, recs[1].Serial, 0, "admin:x", "", now); err != nil {
				t.Fatal(err)
			}
			if got := f.record(t, recs[0].Serial).RenewedTo; got != recs[1].Serial {
				t.Errorf("a→%q, want the revoked branch %s", got, recs[1].Serial)
			}
		})

		t.Run("a failed link does not hold the revocation back", func(t *testing.T) {
			// The links repair what each renewal wrote; a store error there must not keep an admin's revocation
			// off the CRL. It is published, the error comes back with the outcome, and the retry links.
			f := newFixture(t, fixtureOptions{tables: tables})
			recs := f.chain(t, 2)
			f.faults.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 2}) // 1: the record; 2: the ancestor's link
			outcome, rec, err := revocation.Revoke(t.Context(), f.faults, recs[1].Serial, 0, "admin:x", "", now)
			if !errors.Is(err, store.ErrUnavailable) || outcome != revocation.Revoked || rec == nil || rec.Status != store.StatusRevoked {
				t.Fatalf("Revoke with a failing link = %v, %v, %v; want Revoked, the revoked record and the store error", outcome, rec, err)
			}
			if _, ok := indexed(t, f.backend)[recs[1].Serial]; !ok {
				t.Error("the revocation is not indexed: a failing link held it back")
			}
			if outcome, _, err := revocation.Revoke(t.Context(), f.faults, recs[1].Serial, 0, "admin:x", "", now); err != nil || outcome != revocation.AlreadyRevoked {
				t.Fatalf("retry = %v, %v", outcome, err)
			}
			if got := f.record(t, recs[0].Serial).RenewedTo; got != recs[1].Serial {
				t.Errorf("a→%q after the retry, want %s", got, recs[1].Serial)
			}
		})

		t.Run("bounded", func(t *testing.T) {
			f := newFixture(t, fixtureOptions{tables: tables})
			recs := f.chain(t, store.MaxRenewalWalk+2)
			last := recs[len(recs)-1]
			if _, _, err := revocation.Revoke(t.Context(), f.backend, last.Serial, 0, "admin:x", "", now); err != nil {
				t.Fatal(err)
			}
			for i, r := range recs[:len(recs)-1] {
				got := f.record(t, r.Serial).RenewedTo
				// The MaxRenewalWalk nearest ancestors are linked; the one beyond is not read (its forward walk
				// would run out of bound before reaching the revoked certificate, which refuses too).
				if want := recs[i+1].Serial; i >= 1 && got != want || i == 0 && got != "" {
					t.Errorf("ancestor %d links to %q", i, got)
				}
			}
		})
	})
}
