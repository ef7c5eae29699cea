package revocation_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
)

// TestRevokeSiblings: a key reported compromised with one certificate is compromised for every certificate of
// that key. The sweep revokes the others for keyCompromise, naming the certificate the key was reported with, and
// leaves alone other keys, certificates already revoked (their published reason stands), records with nothing
// signed, and keys reported before the window. It is idempotent: a second sweep revokes nothing more.
func TestRevokeSiblings(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	now := time.Now().UTC().Truncate(time.Second)
	stolen, other, old := fmt.Sprintf("%064x", 1), fmt.Sprintf("%064x", 2), fmt.Sprintf("%064x", 3)
	record := func(key string, status store.Status) *store.Record {
		t.Helper()
		r := storetest.FullRecord(storetest.NewSerial())
		r.PublicKey = key
		if err := st.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		if status == store.StatusPending {
			return r
		}
		if status == store.StatusAbandoned {
			r.PlannedDER = nil
		}
		r.Status = store.StatusIssued
		if status == store.StatusAbandoned {
			r.Status = store.StatusAbandoned
		}
		if err := st.Update(ctx, r, store.StatusPending); err != nil {
			t.Fatal(err)
		}
		return r
	}
	reported := record(stolen, store.StatusIssued)
	siblings := []*store.Record{record(stolen, store.StatusIssued), record(stolen, store.StatusIssued),
		record(stolen, store.StatusPending)} // pending: its signature's outcome unknown, so it may be out there
	retired := record(stolen, store.StatusIssued)
	unsigned := record(stolen, store.StatusAbandoned)
	unrelated := record(other, store.StatusIssued)
	before := record(old, store.StatusIssued)

	// Intune retired one (cessationOfOperation) before the key was reported.
	if _, _, err := revocation.Revoke(ctx, st, retired.Serial, revocation.IntuneReason, "intune", "ctx", now); err != nil {
		t.Fatal(err)
	}
	// A key reported long ago, before the window: its certificates were swept then.
	if _, _, err := st.MarkCompromised(ctx, store.CompromisedKey{PublicKey: old, Serial: "0B", MarkedAt: now.Add(-30 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := revocation.Revoke(ctx, st, reported.Serial, store.KeyCompromise, "admin:sec", "stolen laptop", now); err != nil {
		t.Fatal(err)
	}

	done, err := revocation.RevokeSiblings(ctx, st, now.Add(-revocation.SiblingWindow), now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range done {
		got = append(got, r.Serial)
	}
	var want []string
	for _, r := range siblings {
		want = append(want, r.Serial)
	}
	if !sameSerials(got, want) {
		t.Fatalf("swept %v, want the siblings %v", got, want)
	}
	for _, r := range siblings {
		rec, err := st.Get(ctx, r.Serial)
		if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != store.KeyCompromise ||
			rec.RevokedBy != revocation.SiblingsBy || !strings.Contains(rec.RevocationRef, reported.Serial) {
			t.Errorf("sibling %s after the sweep: %+v %v", r.Serial, rec, err)
		}
		if _, err := st.GetRevoked(ctx, r.Serial); err != nil {
			t.Errorf("sibling %s is not in the revocation index (the CRL): %v", r.Serial, err)
		}
	}
	for name, want := range map[*store.Record]store.Status{retired: store.StatusRevoked, unsigned: store.StatusAbandoned,
		unrelated: store.StatusIssued, before: store.StatusIssued} {
		rec, _ := st.Get(ctx, name.Serial)
		if rec.Status != want {
			t.Errorf("%s (%s) is %s after the sweep, want %s", name.Serial, name.PublicKey[62:], rec.Status, want)
		}
	}
	if rec, _ := st.Get(ctx, retired.Serial); rec.RevocationReason != revocation.IntuneReason {
		t.Errorf("the retired certificate's published reason changed to %d", rec.RevocationReason)
	}

	if again, err := revocation.RevokeSiblings(ctx, st, now.Add(-revocation.SiblingWindow), now.Add(time.Hour)); err != nil || len(again) != 0 {
		t.Errorf("second sweep revoked %d, %v; want nothing", len(again), err)
	}
}

func sameSerials(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s]--; seen[s] < 0 {
			return false
		}
	}
	return true
}
