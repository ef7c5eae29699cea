package revocation_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// refuseRevoking is a store that fails every revocation of one record (its revocation index entry, the first write
// of a revocation), as a record that can never be revoked would.
type refuseRevoking struct {
	store.Store
	serial string
}

func (r refuseRevoking) AddRevoked(ctx context.Context, e store.Revoked) (store.Revoked, error) {
	if e.Serial == r.serial {
		return store.Revoked{}, errors.New("refused for this test")
	}
	return r.Store.AddRevoked(ctx, e)
}

// TestRevokeDisabledRecordThatNeverRevokes: the round that names an account disabled meets a certificate of it whose
// revocation fails in every run. The runs before MaxRecordTries keep the round (and the delta waits), as for any
// failure that may pass; the run that reaches it passes over that certificate, reports it, and ends the round, so
// the next run reads the delta again. The account's other certificate is revoked; the one passed over stays issued.
func TestRevokeDisabledRecordThatNeverRevokes(t *testing.T) {
	e := newAccountsEnv(t, false)
	alice := entrafake.NewGUID()
	off := false
	dir := &fixedDir{users: []entra.DirectoryChange{{ID: alice, Enabled: &off}}}
	later := e.now.Add(24 * time.Hour)
	good := e.issued(t, "oid:"+alice+" upn:alice@contoso.example", "alice@contoso.example", nil, "", "", later)
	bad := e.issued(t, "oid:"+alice+" upn:alice@contoso.example", "alice@contoso.example", nil, "", "", later)
	st := refuseRevoking{Store: e.st, serial: bad.Serial}

	for run := 1; run <= revocation.MaxRecordTries; run++ {
		sw := revocation.RevokeDisabled(context.Background(), st, dir, e.now)
		link, inRound := deltaState(t, e.st, "entra-users-delta")
		if run < revocation.MaxRecordTries {
			if sw.AccountsErr == nil || len(sw.Skipped) != 0 || !inRound || link != "" {
				t.Fatalf("run %d = %+v (link %q, round %t); want the failure reported and the round kept", run, sw, link,
					inRound)
			}
			continue
		}
		if sw.AccountsErr != nil || !slices.Equal(sw.Skipped, []string{bad.Serial}) || inRound || link != "round1" {
			t.Fatalf("run %d = %+v (link %q, round %t); want %s passed over and the round ended", run, sw, link, inRound,
				bad.Serial)
		}
	}
	if st, _, _, _ := e.status(t, good); st != store.StatusRevoked {
		t.Errorf("the other certificate is %s, want revoked", st)
	}
	if st, _, _, _ := e.status(t, bad); st != store.StatusIssued {
		t.Errorf("the certificate passed over is %s, want issued", st)
	}
	// The next run reads the delta again (the account, found gone within RecheckWindow, is looked for once more).
	pages := dir.pages.Load()
	sw := revocation.RevokeDisabled(context.Background(), st, dir, e.now.Add(time.Hour))
	if sw.Accounts.Pages != 1 || sw.Accounts.Resumed || dir.pages.Load() != pages+2 {
		t.Fatalf("the run after = %+v; want the deltas read again", sw)
	}
}

// TestVerifyPassLookupThatNeverAnswers: Graph fails, in every run, the lookup of one certificate holder while it
// answers the others. The verifying pass stops at that record in the runs before MaxRecordTries, then passes over
// it (reported), ends, and records the tenant verified; the deleted account's certificate was revoked, the one
// passed over stays issued, the holder still there keeps theirs.
func TestVerifyPassLookupThatNeverAnswers(t *testing.T) {
	e := newAccountsEnv(t, false)
	old := e.now.Add(-24 * time.Hour)
	h := e.unansweredHolder(t, old)
	aliceCert, bobCert, samCert := h.aliceCert, h.bobCert, h.samCert

	for run := 1; run <= revocation.MaxRecordTries; run++ {
		sw := e.sweepAt(context.Background(), e.now.Add(time.Duration(run-1)*time.Hour))
		if run < revocation.MaxRecordTries {
			if !errors.Is(sw.AccountsErr, entra.ErrUnavailable) || !sw.CheckLeft || len(sw.Skipped) != 0 || !e.passOpen(t) {
				t.Fatalf("run %d = %+v; want the failed lookup reported and the pass kept", run, sw)
			}
			continue
		}
		if sw.AccountsErr != nil || sw.CheckLeft || !slices.Equal(sw.Skipped, []string{samCert.Serial}) || e.passOpen(t) ||
			!e.deltaDoc(t, "entra-users-delta").Verified {
			t.Fatalf("run %d = %+v; want %s passed over and the pass ended", run, sw, samCert.Serial)
		}
	}
	for name, c := range map[string]struct {
		rec  *store.Record
		want store.Status
	}{"alice": {aliceCert, store.StatusIssued}, "bob": {bobCert, store.StatusRevoked}, "sam": {samCert, store.StatusIssued}} {
		if st, _, _, _ := e.status(t, c.rec); st != c.want {
			t.Errorf("%s's certificate is %s, want %s", name, st, c.want)
		}
	}
}
