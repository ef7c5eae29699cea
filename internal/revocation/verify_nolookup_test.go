package revocation_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// usersOnly reads the users delta and cannot look one user up.
type usersOnly struct{ d *entra.Directory }

func (u usersOnly) UsersDelta(ctx context.Context, link string) (*entra.DeltaPage, error) {
	return u.d.UsersDelta(ctx, link)
}

// TestRevokeVerifyingRoundWithoutLookups: a verifying pass (after an enumeration from scratch) is left unfinished by
// a run that spent its lookups. A run whose directory cannot look objects up neither fails (a nil lookup called)
// nor ends the pass as verified without the answers; the next run with a directory that looks up finishes it, every
// deleted account's certificate revoked.
func TestRevokeVerifyingRoundWithoutLookups(t *testing.T) {
	e := newAccountsEnv(t, false)
	var recs []*store.Record
	for i := range revocation.MaxLookups + 30 {
		id, upn := entrafake.NewGUID(), "gone"+strings.Repeat("x", i%3)+entrafake.NewGUID()[:6]+"@contoso.example"
		recs = append(recs, e.cert(t, "oid:"+id+" upn:"+upn, upn, nil, "", e.now.Add(time.Hour)))
	}
	e.user(t, "alice")
	if sw := e.sweepBoth(); sw.AccountsErr != nil || !sw.CheckLeft {
		t.Fatalf("first run = %+v; want the pass left for the next run", sw)
	}

	var sw revocation.AccountSweep
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("a run whose directory cannot look up panicked in a verifying pass: %v", p)
			}
		}()
		sw, err = revocation.RevokeDisabledAccounts(context.Background(), e.st, usersOnly{e.dir}, e.now)
	}()
	if err != nil || sw.LookedUp != 0 || !e.passOpen(t) {
		t.Fatalf("run without lookups = %+v, %v (pass open %t); want no error and the pass kept", sw, err, e.passOpen(t))
	}

	sw2 := e.sweepBoth()
	if sw2.AccountsErr != nil || sw2.CheckLeft || e.passOpen(t) {
		t.Fatalf("next run = %+v; want the pass finished", sw2)
	}
	for _, r := range recs {
		if st, _, _, _ := e.status(t, r); st != store.StatusRevoked {
			t.Fatalf("%s is %s, want revoked", r.Serial, st)
		}
	}
}
