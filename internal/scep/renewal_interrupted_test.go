package scep_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// interruptedRevoke revokes c (affiliationChanged: no key mark) as the admin API does, with the revocation's record
// write refused by the store: Revoke fails after its index entry, so the CRL publishes c revoked while c's record
// still says issued, until a retry or the hourly sweep (revocation.CompleteInterrupted) completes it.
func interruptedRevoke(t *testing.T, e *env, fs *storetest.FaultStore, serial string) {
	t.Helper()
	fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1})
	defer fs.Clear()
	_, _, err := revocation.Revoke(context.Background(), fs, serial, 3, "admin:test", "", time.Now())
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("setup: the interrupted revocation answered %v, want the record write's ErrUnavailable", err)
	}
	rec, err := e.mem.Get(context.Background(), serial)
	if err != nil || rec.Status != store.StatusIssued {
		t.Fatalf("setup: record after the interrupted revocation: %v, %v; want still issued", rec, err)
	}
	listed, err := e.mem.ListRevoked(context.Background())
	if err != nil || len(listed) != 1 || listed[0].Serial != serial {
		t.Fatalf("setup: revocation index %v, %v; want %s alone (what the CRL publishes)", listed, err, serial)
	}
}

// TestRenewalSignerRevocationInterrupted: an admin revokes X and the revocation stops between its two writes (Table
// Storage throttled the record write): the CRL already lists X, its record still says issued. A RenewalReq signed
// by X must not turn that published revocation into a fresh certificate with X's names, which would outlive X's
// revocation once a retry or the sweep completes it. Also when the revocation lands while the renewal waits for its
// claim: the signer is read again before the CA signs.
func TestRenewalSignerRevocationInterrupted(t *testing.T) {
	t.Run("before the renewal", func(t *testing.T) {
		var fs *storetest.FaultStore
		logs := &testca.LogBuffer{}
		e := newEnv(t, envOptions{log: logs, wrap: func(s store.Store) store.Store { fs = storetest.NewFaultStore(s); return fs }})
		x := enrollNamed(t, e, epStatic, 0, named)
		inRenewalWindow(e)
		interruptedRevoke(t, e, fs, hexSerial(x.cert))
		wantRefusedWith(t, e, logs, renewWith(t, e, epStatic, x, named), len(e.records(t)), "revoked")
	})
	t.Run("while the renewal waits", func(t *testing.T) {
		hs := &raceHook{}
		var fs *storetest.FaultStore
		e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store {
			fs = storetest.NewFaultStore(s)
			hs.Store = fs
			return hs
		}})
		x := enrollNamed(t, e, epStatic, 0, named)
		inRenewalWindow(e)
		hs.mu.Lock()
		hs.hook = func() { interruptedRevoke(t, e, fs, hexSerial(x.cert)) }
		hs.mu.Unlock()
		rep := renewWith(t, e, epStatic, x, named)
		wantFailure(t, rep, testca.FailBadRequest)
		if n := e.countStatus(t, store.StatusIssued); n != 1 {
			t.Errorf("%d issued records, want X's alone", n)
		}
	})
}

// TestRenewalFromSupersededDeniedAfterSuccessorRevocationInterrupted: the device renewed X into Y; an admin revokes
// Y (the device was stolen) and the revocation stops after its index entry. The CRL lists Y, Y's record still says
// issued, and X's forward link is repointed only after the record. Whoever kept X and its key must not renew from it
// meanwhile: the forward walk reads each successor's index entry too.
func TestRenewalFromSupersededDeniedAfterSuccessorRevocationInterrupted(t *testing.T) {
	var fs *storetest.FaultStore
	logs := &testca.LogBuffer{}
	e := newEnv(t, envOptions{log: logs, wrap: func(s store.Store) store.Store { fs = storetest.NewFaultStore(s); return fs }})
	x := enrollNamed(t, e, epStatic, 0, named)
	inRenewalWindow(e)
	y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
	interruptedRevoke(t, e, fs, hexSerial(y))
	wantRefusedWith(t, e, logs, renewWith(t, e, epStatic, x, named, 8), len(e.records(t)),
		"superseded by "+hexSerial(y)+", which is revoked")
}
