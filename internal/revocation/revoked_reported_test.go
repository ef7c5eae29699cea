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

// refuseUpdating is a store that fails every update of one record: here the predecessor of a renewed certificate,
// whose forward link a revocation repairs after its own record is durable (linkAncestors).
type refuseUpdating struct {
	store.Store
	serial string
}

func (r refuseUpdating) Update(ctx context.Context, rec *store.Record, from store.Status) error {
	if rec.Serial == r.serial {
		return errors.New("refused for this test")
	}
	return r.Store.Update(ctx, rec, from)
}

// TestRevokeDisabledReportsRevocationWithLateFailure: the sweep revokes a certificate of a disabled account, and a
// write after its revocation became durable (the forward link of the certificate it renewed) fails. The certificate
// is revoked, so a run must report it among those it revoked (the operator's log, the run's lines), whatever the
// later failure. Before, the scan took the failure for the record's and left the revocation out of Revoked, and no
// later run, which no longer finds the record issued, reported it either.
func TestRevokeDisabledReportsRevocationWithLateFailure(t *testing.T) {
	e := newAccountsEnv(t, false)
	ctx := context.Background()
	alice := entrafake.NewGUID()
	off := false
	dir := &fixedDir{users: []entra.DirectoryChange{{ID: alice, Enabled: &off}}}
	later := e.now.Add(24 * time.Hour)
	parent := e.issued(t, "oid:"+entrafake.NewGUID()+" upn:bob@contoso.example", "bob@contoso.example", nil, "", "", later)
	renewed := e.issued(t, "oid:"+alice+" upn:alice@contoso.example", "alice@contoso.example", nil, "", "", later)
	rec, err := e.st.Get(ctx, renewed.Serial)
	if err != nil {
		t.Fatal(err)
	}
	rec.RenewedFrom = parent.Serial
	if err := e.st.Update(ctx, rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	st := refuseUpdating{Store: e.st, serial: parent.Serial}

	var reported []string
	for run := range revocation.MaxRecordTries + 1 {
		sw := revocation.RevokeDisabled(ctx, st, dir, e.now.Add(time.Duration(run)*time.Hour))
		for _, r := range sw.Accounts.Revoked {
			reported = append(reported, r.Serial)
		}
	}
	if got, _, _, _ := e.status(t, renewed); got != store.StatusRevoked {
		t.Fatalf("alice's certificate is %s, want revoked", got)
	}
	if !slices.Contains(reported, renewed.Serial) {
		t.Errorf("alice's certificate was revoked but no run reported it (reported %v)", reported)
	}
}
