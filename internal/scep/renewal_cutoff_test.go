package scep_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// inRenewalWindow moves the server's clock 16 days on: inside the last 15 of the test profile's 30 days for every
// certificate the test issued, the renewed ones included (the issuer's clock stays, so that they are valid at the
// real time the test client signs with them, and renew in turn).
func inRenewalWindow(e *env) { e.offset.Store(int64(16 * 24 * time.Hour)) }

// adminRevoke revokes c the way the admin API does (revocation.Revoke over the env's store), for reason.
func adminRevoke(t *testing.T, e *env, c *x509.Certificate, reason int) {
	t.Helper()
	outcome, _, err := revocation.Revoke(context.Background(), e.store, hexSerial(c), reason, "admin:test", "", time.Now())
	if err != nil || outcome != revocation.Revoked {
		t.Fatalf("revoking %s: %v, %v", hexSerial(c), outcome, err)
	}
}

func (e *env) record(t *testing.T, c *x509.Certificate) *store.Record {
	t.Helper()
	rec, err := e.mem.Get(context.Background(), hexSerial(c))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// wantRefusedWith asserts a badRequest refusal that issued nothing and was logged with a reason containing why.
func wantRefusedWith(t *testing.T, e *env, logs *testca.LogBuffer, rep *testca.CertRep, records int, why string) {
	t.Helper()
	wantFailure(t, rep, testca.FailBadRequest)
	if n := len(e.records(t)); n != records {
		t.Errorf("%d records after the refused renewal, want %d", n, records)
	}
	lines := logs.Records("scep pkioperation")
	if len(lines) == 0 {
		t.Fatal("no pkioperation log line")
	}
	if reason, _ := lines[len(lines)-1]["reason"].(string); !strings.Contains(reason, why) {
		t.Errorf("logged reason %q, want it to say %q", reason, why)
	}
}

// TestRenewalFromSupersededDeniedAfterSuccessorRevoked: the device renewed X into Y; an admin revokes Y (the device
// was stolen, the shared secret rotated). Whoever kept X and its key must not renew from it again: X is superseded,
// still valid and never revoked, and a new certificate from it would carry the device's names past X's own end.
func TestRenewalFromSupersededDeniedAfterSuccessorRevoked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		revoke func(t *testing.T, e *env, c *x509.Certificate)
	}{
		// Through the admin path, for a reason that marks no key: only the forward link refuses.
		{"admin revoke, unspecified", func(t *testing.T, e *env, c *x509.Certificate) { adminRevoke(t, e, c, 0) }},
		{"admin revoke, keyCompromise", func(t *testing.T, e *env, c *x509.Certificate) {
			adminRevoke(t, e, c, store.KeyCompromise)
		}},
		// The record moved to revoked by itself (an older version's revocation, say): the link written at
		// renewal is enough.
		{"record revoked directly", func(t *testing.T, e *env, c *x509.Certificate) { e.revoke(t, c) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &testca.LogBuffer{}
			e := newEnv(t, envOptions{log: logs})
			x := enrollNamed(t, e, epStatic, 0, named)
			inRenewalWindow(e)
			y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
			if got := e.record(t, x.cert).RenewedTo; got != hexSerial(y) {
				t.Fatalf("X's renewed_to = %q after the renewal, want Y %s", got, hexSerial(y))
			}
			tc.revoke(t, e, y)

			rep := renewWith(t, e, epStatic, x, named, 8)
			wantRefusedWith(t, e, logs, rep, 2, "superseded by "+hexSerial(y)+", which is revoked")

			// Nor with Y's own key and transaction (a replay of the X→Y request): Y is revoked, and a revoked
			// replay would otherwise be issued afresh.
			rep = renewWith(t, e, epStatic, x, named, 7)
			wantRefusedWith(t, e, logs, rep, 2, "which is revoked")
		})
	}
}

// TestRenewalFromSupersededDeniedFurtherDownTheChain: X → Y → Z and Z revoked: X is cut off too (the links are
// followed forward, not only one step).
func TestRenewalFromSupersededDeniedFurtherDownTheChain(t *testing.T) {
	t.Parallel()
	logs := &testca.LogBuffer{}
	e := newEnv(t, envOptions{log: logs})
	x := enrollNamed(t, e, epStatic, 0, named)
	inRenewalWindow(e)
	y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
	holderY := enrolled{client: testca.NewClient(t, testca.RSAKey(t, 7), named.Subject, e.ca.Recipient()), cert: y}
	z := wantSuccess(t, renewWith(t, e, epStatic, holderY, named, 8))
	if got := e.record(t, y).RenewedTo; got != hexSerial(z) {
		t.Fatalf("Y's renewed_to = %q, want Z %s", got, hexSerial(z))
	}
	adminRevoke(t, e, z, 0)
	// X is valid, unrevoked, and two links away from a revoked certificate.
	wantRefusedWith(t, e, logs, renewWith(t, e, epStatic, x, named, 9), 3, "superseded by "+hexSerial(z))
}

// TestRenewalLinkLostIsRepairedByRevocation: the forward-link write after a renewal fails, every try until its
// deadline (only logged: the renewal stands), and the revocation of the successor writes it instead, so X is still
// cut off.
func TestRenewalLinkLostIsRepairedByRevocation(t *testing.T) {
	t.Parallel()
	var fs *storetest.FaultStore
	logs := &testca.LogBuffer{}
	e := newEnv(t, envOptions{log: logs, wrap: func(s store.Store) store.Store { fs = storetest.NewFaultStore(s); return fs }})
	x := enrollNamed(t, e, epStatic, 0, named)
	inRenewalWindow(e)
	for n := 2; n < 100; n++ { // 1: Y's issued write; 2 on: X's forward link, tried until its deadline
		fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: n})
	}
	y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
	fs.Clear()
	if got := e.record(t, x.cert).RenewedTo; got != "" {
		t.Fatalf("X's renewed_to = %q although its write failed", got)
	}
	if got := e.record(t, y); got.Status != store.StatusIssued {
		t.Fatalf("Y is %s after its forward-link write failed, want issued", got.Status)
	}
	adminRevoke(t, e, y, 0)
	if got := e.record(t, x.cert).RenewedTo; got != hexSerial(y) {
		t.Fatalf("X's renewed_to = %q after Y's revocation, want Y %s", got, hexSerial(y))
	}
	wantRefusedWith(t, e, logs, renewWith(t, e, epStatic, x, named, 8), 2, "which is revoked")
}

// TestRenewalAgainFromSupersededAllowed: a device that lost Y (not revoked) renews from X again; X's forward link
// then names the newest renewal.
func TestRenewalAgainFromSupersededAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	x := enrollNamed(t, e, epStatic, 0, named)
	inRenewalWindow(e)
	y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
	y2 := wantSuccess(t, renewWith(t, e, epStatic, x, named, 8))
	if y2.Equal(y) {
		t.Fatal("the second renewal returned the first one's certificate")
	}
	if got := e.record(t, x.cert).RenewedTo; got != hexSerial(y2) {
		t.Errorf("X's renewed_to = %q, want the newest renewal %s", got, hexSerial(y2))
	}
	if got := e.record(t, y2).RenewedFrom; got != hexSerial(x.cert) {
		t.Errorf("Y2's renewed_from = %q, want X %s", got, hexSerial(x.cert))
	}
	// Revoking the lost Y (not the device's current Y2) cuts X off — it is superseded twice over — but not Y2.
	adminRevoke(t, e, y, 4)
	wantFailure(t, renewWith(t, e, epStatic, x, named, 9), testca.FailBadRequest)
	holderY2 := enrolled{client: testca.NewClient(t, testca.RSAKey(t, 8), named.Subject, e.ca.Recipient()), cert: y2}
	wantSuccess(t, renewWith(t, e, epStatic, holderY2, named, 10))
}

// TestRenewalRetryReplaysSuccessor: the X→Y renewal sent again (same transaction, same new key: a client whose
// answer was lost) still gets Y, although X's forward link now names Y.
func TestRenewalRetryReplaysSuccessor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	x := enrollNamed(t, e, epStatic, 0, named)
	inRenewalWindow(e)
	y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
	again := renewWith(t, e, epStatic, x, named, 7)
	if got := wantSuccess(t, again); !got.Equal(y) {
		t.Fatalf("the retried renewal got %s, want the replay of Y %s", hexSerial(got), hexSerial(y))
	}
	if n := len(e.records(t)); n != 2 {
		t.Errorf("%d records after the retry, want 2", n)
	}
	if got := e.record(t, x.cert).RenewedTo; got != hexSerial(y) {
		t.Errorf("X's renewed_to = %q after the retry, want Y %s", got, hexSerial(y))
	}
}

// TestRenewalWithCompromisedKeyDenied: key K was revoked for keyCompromise on one certificate; another certificate
// for K (an earlier enrollment) may not renew onto a fresh key, and no renewal may ask for K.
func TestRenewalWithCompromisedKeyDenied(t *testing.T) {
	t.Parallel()
	t.Run("signer's key", func(t *testing.T) {
		t.Parallel()
		logs := &testca.LogBuffer{}
		e := newEnv(t, envOptions{log: logs})
		x1 := enrollNamed(t, e, epStatic, 0, named)
		csr := testca.CSR(t, x1.client.Key, named)
		x2 := wantSuccess(t, e.pki(t, epStatic, x1.client.Message(t, testca.Message{Type: testca.MsgPKCSReq,
			TransactionID: "second-enrollment", Content: csr.Raw})))
		adminRevoke(t, e, x2, store.KeyCompromise)
		mark, err := e.mem.Compromised(context.Background(), store.KeyHash(x1.client.Key.Public()))
		if err != nil || mark.Serial != hexSerial(x2) {
			t.Fatalf("key mark %+v, %v; want one naming %s", mark, err, hexSerial(x2))
		}
		inRenewalWindow(e)
		wantRefusedWith(t, e, logs, renewWith(t, e, epStatic, x1, named, 8), 2,
			"renewal signer's key was reported compromised (certificate "+hexSerial(x2))
	})
	t.Run("requested key", func(t *testing.T) {
		t.Parallel()
		logs := &testca.LogBuffer{}
		e := newEnv(t, envOptions{log: logs})
		d := enrollNamed(t, e, epStatic, 0, named)
		other := enrollNamed(t, e, epStatic, 9, named) // key 9, then reported compromised
		adminRevoke(t, e, other.cert, store.KeyCompromise)
		inRenewalWindow(e)
		wantRefusedWith(t, e, logs, renewWith(t, e, epStatic, d, named, 9), 2,
			"requested key was reported compromised")
		// Another reason marks nothing: the same renewal for a key revoked as superseded is fine.
		e2 := newEnv(t, envOptions{})
		d2 := enrollNamed(t, e2, epStatic, 0, named)
		other2 := enrollNamed(t, e2, epStatic, 9, named)
		adminRevoke(t, e2, other2.cert, 4)
		inRenewalWindow(e2)
		wantSuccess(t, renewWith(t, e2, epStatic, d2, named, 10))
	})
}

// TestRenewalCutOffCostsFirstEnrollmentsNothing: the cut-off's reads and the forward-link write are a renewal's
// alone; a first enrollment makes exactly the store calls it made before.
func TestRenewalCutOffCostsFirstEnrollmentsNothing(t *testing.T) {
	t.Parallel()
	var fs *storetest.FaultStore
	e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store { fs = storetest.NewFaultStore(s); return fs }})
	x := enrollNamed(t, e, epStatic, 0, named)
	if c, u, g, r := fs.Calls(storetest.MethodCompromised), fs.Calls(storetest.MethodUpdate), fs.Calls(storetest.MethodGet),
		fs.Calls(storetest.MethodGetRevoked); c != 0 || u != 1 || g != 0 || r != 0 {
		t.Errorf("first enrollment: %d mark reads, %d updates, %d record reads, %d index reads; want 0, 1 (issued), 0, 0",
			c, u, g, r)
	}
	inRenewalWindow(e)
	wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
	// The renewal: the signer's record, its revocation index entry and two key marks (signer's and requested), read
	// at the check and again before the signature, then the issued write and the link.
	if c, u, g, r := fs.Calls(storetest.MethodCompromised), fs.Calls(storetest.MethodUpdate)-1, fs.Calls(storetest.MethodGet),
		fs.Calls(storetest.MethodGetRevoked); c != 4 || u != 2 || g != 2 || r != 2 {
		t.Errorf("renewal: %d mark reads, %d updates, %d record reads, %d index reads; want 4, 2, 2, 2", c, u, g, r)
	}
}

// TestRenewalChainWalkBounded: the forward walk reads at most store.MaxRenewalWalk records; a signer whose chain
// runs on past that is refused instead of read further.
func TestRenewalChainWalkBounded(t *testing.T) {
	t.Parallel()
	logs := &testca.LogBuffer{}
	e := newEnv(t, envOptions{log: logs})
	x := enrollNamed(t, e, epStatic, 0, named)
	inRenewalWindow(e)
	// X → Y1 → … → Y(MaxRenewalWalk+1), each renewed from the one before as soon as it exists: the links are
	// written directly (renewing that often through SCEP would need the clock to race ahead of X's validity).
	prev := e.record(t, x.cert)
	for i := range store.MaxRenewalWalk + 1 {
		r := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusIssued, RenewedFrom: prev.Serial}
		if err := e.mem.Insert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		prev.RenewedTo = r.Serial
		if err := e.mem.Update(context.Background(), prev, prev.Status); err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
		prev = r
	}
	records := len(e.records(t))
	wantRefusedWith(t, e, logs, renewWith(t, e, epStatic, x, named, 7), records, "renewed more than")

	// One link fewer, and the chain is read to its end.
	e2 := newEnv(t, envOptions{})
	x2 := enrollNamed(t, e2, epStatic, 0, named)
	inRenewalWindow(e2)
	prev = e2.record(t, x2.cert)
	for range store.MaxRenewalWalk {
		r := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusIssued, RenewedFrom: prev.Serial}
		if err := e2.mem.Insert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		prev.RenewedTo = r.Serial
		if err := e2.mem.Update(context.Background(), prev, prev.Status); err != nil {
			t.Fatal(err)
		}
		prev = r
	}
	wantSuccess(t, renewWith(t, e2, epStatic, x2, named, 7))
}

// TestRenewalCutOffStoreOutage: when the store does not answer the cut-off's reads, the renewal gets 503 and
// Retry-After (Table Storage down before signing), never a certificate, and nothing is written.
func TestRenewalCutOffStoreOutage(t *testing.T) {
	t.Parallel()
	for _, method := range []string{storetest.MethodCompromised, storetest.MethodGet, storetest.MethodGetRevoked} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			var fs *storetest.FaultStore
			e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store { fs = storetest.NewFaultStore(s); return fs }})
			x := enrollNamed(t, e, epStatic, 0, named)
			inRenewalWindow(e)
			y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
			if method == storetest.MethodGet {
				fs.Inject(storetest.Fault{Method: method, Nth: 2}) // 1: X's record; 2: its successor Y's
			} else {
				fs.FailMethod(method, nil)
			}
			csr := testca.CSR(t, testca.RSAKey(t, 8), testca.CSROptions{Subject: named.Subject, DNSNames: named.DNSNames, UPNs: named.UPNs})
			resp, body := testca.Post(t, e.url(epStatic), x.client.RenewalReq(t, csr, x.cert, x.client.Key).Raw)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("HTTP %d %q (Retry-After %q), want 503 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
			if n := len(e.records(t)); n != 2 {
				t.Errorf("%d records, want X and %s only", n, hexSerial(y))
			}
		})
	}
}
