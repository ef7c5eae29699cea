package issuance

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
)

// failFrom is faults that fail the nth call of method and every later one (store.ErrUnavailable): a store that
// stays down.
func failFrom(method string, n int) []storetest.Fault {
	out := []storetest.Fault{{Method: method, Nth: n}}
	for k := n + 1; k < n+200; k++ {
		out = append(out, storetest.Fault{Method: method, Nth: k})
	}
	return out
}

// stored is the record of serial behind the faults.
func stored(t *testing.T, fs *storetest.FaultStore, serial string) *store.Record {
	t.Helper()
	rec, err := fs.Inner().Get(context.Background(), serial)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// storedAsReturned is the record res names, behind the faults, after checking that it is the version res returned:
// issued, with res's certificate and ETag (the next write is conditioned on it).
func storedAsReturned(t *testing.T, fs *storetest.FaultStore, res *Result) *store.Record {
	t.Helper()
	rec := stored(t, fs, res.Record.Serial)
	if rec.Status != store.StatusIssued || !bytes.Equal(rec.CertDER, res.Cert.Raw) || rec.ETag != res.Record.ETag {
		t.Fatalf("stored record %s (ETag %s), want issued with the returned certificate (ETag %s)", rec.Status, rec.ETag, res.Record.ETag)
	}
	return rec
}

// onlyRecord is the one record in the store behind the faults.
func onlyRecord(t *testing.T, fs *storetest.FaultStore) *store.Record {
	t.Helper()
	page, _, err := fs.Inner().Search(context.Background(), store.Query{Limit: 10})
	if err != nil || len(page) != 1 {
		t.Fatalf("want one record, got %d (%v)", len(page), err)
	}
	return page[0]
}

// TestIssuedWriteTriedAgainWhileStoreUnavailable: a throttled store (store.ErrUnavailable) refuses the issued write
// twice and then takes it: the certificate is issued, once, with one signature, after two pauses; gated, its gate
// runs once on the durable record.
func TestIssuedWriteTriedAgainWhileStoreUnavailable(t *testing.T) {
	for _, gated := range []bool{false, true} {
		t.Run(map[bool]string{false: "ungated", true: "gated"}[gated], func(t *testing.T) {
			fs := storetest.NewFaultStore(memstore.New())
			f := newFixture(t, fs)
			f.signer.st = fs.Inner()
			fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1})
			fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 2})
			var calls atomic.Int32
			req := f.request(t, nil, "busy", "tx-busy")
			if gated {
				req.Gated, req.Deliver = true, notify(&calls)
			}
			res, err := f.iss.Issue(context.Background(), req)
			if err != nil {
				t.Fatalf("Issue: %v; want the certificate once the store takes the write", err)
			}
			rec := storedAsReturned(t, fs, res)
			if n := f.signer.signs.Load(); n != 1 {
				t.Errorf("signatures = %d, want 1", n)
			}
			if n := f.sleep.Calls(); n != 2 {
				t.Errorf("pauses = %d, want 2 (one after each refusal)", n)
			}
			if gated && (calls.Load() != 1 || !rec.IntuneNotified) {
				t.Errorf("gate ran %d times, record notified %t; want once, notified", calls.Load(), rec.IntuneNotified)
			}
		})
	}
}

// TestIssuedWriteGivesUpAtItsDeadline: a store down for the whole write deadline gets the outcome it always got —
// no certificate leaves, the record stays pending without one, one signature — after tries spread over the
// deadline (writeTimeout), not one.
func TestIssuedWriteGivesUpAtItsDeadline(t *testing.T) {
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	f.signer.st = fs.Inner()
	fs.Inject(storetest.Fault{Method: storetest.MethodUpdate})
	res, err := f.iss.Issue(context.Background(), f.request(t, nil, "down", "tx-down"))
	if !errors.Is(err, store.ErrUnavailable) || res != nil {
		t.Fatalf("Issue = %v, %v; want ErrUnavailable and no certificate", res, err)
	}
	rec := onlyRecord(t, fs)
	if rec.Status != store.StatusPending || rec.CertDER != nil {
		t.Fatalf("record %s with certificate %t; want pending without one", rec.Status, rec.CertDER != nil)
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Errorf("signatures = %d, want 1", n)
	}
	if n := fs.Calls(storetest.MethodUpdate); n < 4 || n > 20 {
		t.Errorf("the issued write was tried %d times; want a handful spread over its deadline", n)
	}
	if got := f.sleep.Total(); got < writeTimeout-time.Second || got > writeTimeout+retryMax {
		t.Errorf("paused %s in all; want about the write's deadline, %s", got, writeTimeout)
	}
	fs.Clear()
	if _, err := f.iss.Issue(context.Background(), f.request(t, nil, "down", "tx-down")); !errors.Is(err, ErrInProgress) {
		t.Fatalf("retry = %v, want ErrInProgress while the record is pending", err)
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Errorf("signatures = %d after the retry, want 1", n)
	}
}

// TestIssuedWriteLostAnswerIsRecognised: the issued write commits and its answer is lost (the Tables store's WriteID
// recognises that only within one call); the next try meets a conflict, the record read back is issued with exactly
// this certificate, and that is success: the certificate is returned with the stored version, whose ETag the next
// writes (the gate's bookkeeping) are conditioned on. Also when reading it back is refused once.
func TestIssuedWriteLostAnswerIsRecognised(t *testing.T) {
	for _, tc := range []struct {
		name      string
		gated     bool
		getRefuse bool
	}{
		{"ungated", false, false},
		{"gated", true, false},
		{"read back refused once", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := storetest.NewFaultStore(memstore.New())
			f := newFixture(t, fs)
			f.signer.st = fs.Inner()
			fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1, Commit: true})
			if tc.getRefuse {
				fs.Inject(storetest.Fault{Method: storetest.MethodGet, Nth: 1})
			}
			var calls atomic.Int32
			req := f.request(t, nil, "lost", "tx-lost")
			if tc.gated {
				req.Gated, req.Deliver = true, notify(&calls)
			}
			res, err := f.iss.Issue(context.Background(), req)
			if err != nil {
				t.Fatalf("Issue: %v; want the certificate whose issued write committed", err)
			}
			rec := storedAsReturned(t, fs, res)
			if n := f.signer.signs.Load(); n != 1 {
				t.Errorf("signatures = %d, want 1", n)
			}
			if tc.gated && (calls.Load() != 1 || !rec.IntuneNotified) {
				t.Errorf("gate ran %d times, record notified %t; want once, notified", calls.Load(), rec.IntuneNotified)
			}
			again, err := f.iss.Issue(context.Background(), req)
			if err != nil || !again.Replayed || !again.Cert.Equal(res.Cert) {
				t.Fatalf("retry = %v, %v; want a replay of the same certificate", again, err)
			}
		})
	}
}

// TestIssuedWriteConflictWithAnotherWriter: a conflict whose record shows another writer's change (here an admin
// revoked the pending record by serial while it was being signed) stays a failure, also after an unavailable try:
// no certificate leaves, the record is neither marked issued nor written over, and nothing is tried again.
func TestIssuedWriteConflictWithAnotherWriter(t *testing.T) {
	for _, unavailableFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "conflict", true: "unavailable, then conflict"}[unavailableFirst], func(t *testing.T) {
			fs := storetest.NewFaultStore(memstore.New())
			f := newFixture(t, fs)
			f.signer.st = fs.Inner()
			if unavailableFirst {
				fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1})
			}
			req := f.request(t, nil, "revoked", "tx-revoked")
			req.Signed = func(c *x509.Certificate) {
				rec := stored(t, fs, store.SerialString(c.SerialNumber))
				rec.Status, rec.RevokedAt, rec.RevokedBy = store.StatusRevoked, time.Now(), "admin:test"
				if err := fs.Inner().Update(context.Background(), rec, store.StatusPending); err != nil {
					t.Error(err)
				}
			}
			res, err := f.iss.Issue(context.Background(), req)
			if !errors.Is(err, store.ErrConflict) || res != nil {
				t.Fatalf("Issue = %v, %v; want ErrConflict and no certificate", res, err)
			}
			rec := onlyRecord(t, fs)
			if rec.Status != store.StatusRevoked || rec.CertDER != nil || rec.RevokedBy != "admin:test" {
				t.Fatalf("record %s by %q with certificate %t; want the admin's revocation as written", rec.Status, rec.RevokedBy, rec.CertDER != nil)
			}
			want := 1
			if unavailableFirst {
				want = 2
			}
			if n := fs.Calls(storetest.MethodUpdate); n != want {
				t.Errorf("%d updates, want %d: none after the conflict", n, want)
			}
		})
	}
}

// TestWithheldMarkTriedAgain: the mark of a certificate whose delivery was refused is tried again while the store
// is unavailable, so the record says withheld at once rather than only after deliverWindow.
func TestWithheldMarkTriedAgain(t *testing.T) {
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	f.signer.st = fs.Inner()
	fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 2}) // 1: issued; 2: withheld
	req := f.request(t, nil, "refused", "tx-refused")
	req.Gated = true
	req.Deliver = func(context.Context, *store.Record, *x509.Certificate) error { return errors.New("intune says no") }
	if res, err := f.iss.Issue(context.Background(), req); !errors.Is(err, ErrWithheld) || res != nil {
		t.Fatalf("Issue = %v, %v; want ErrWithheld", res, err)
	}
	if rec := onlyRecord(t, fs); rec.Status != store.StatusIssued || !rec.Withheld {
		t.Fatalf("record %s, withheld %t; want issued and withheld", rec.Status, rec.Withheld)
	}
}

// TestBackoff: the pause before each next try doubles from retryFirst up to retryMax, each drawn from the upper
// half of that, and several tries fit in writeTimeout.
func TestBackoff(t *testing.T) {
	var least time.Duration
	for try := 0; try < 40; try++ {
		ceil := min(retryFirst<<min(try, 10), retryMax)
		for range 50 {
			if d := backoff(try); d < ceil/2 || d > ceil {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", try, d, ceil/2, ceil)
			}
		}
		if try < 4 {
			least += ceil / 2
		}
	}
	if least > writeTimeout/2 {
		t.Errorf("the first four pauses take at least %s, too much of writeTimeout %s", least, writeTimeout)
	}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[backoff(3)] = true
	}
	if len(seen) < 2 {
		t.Error("backoff is not jittered")
	}
}
