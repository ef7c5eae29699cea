package scep_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// enrolled is a device that holds a certificate the test CA issued through SCEP.
type enrolled struct {
	client *testca.Client
	cert   *x509.Certificate
	req    *testca.Request
}

// revoke marks c's record revoked (keyCompromise), as the admin API would.
func (e *env) revoke(t *testing.T, c *x509.Certificate) {
	t.Helper()
	rec, err := e.mem.Get(context.Background(), hexSerial(c))
	if err != nil {
		t.Fatal(err)
	}
	rec.Status, rec.RevokedAt, rec.RevocationReason = store.StatusRevoked, time.Now(), 1
	if err := e.mem.Update(context.Background(), rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
}

func enroll(t *testing.T, e *env, keyIndex int, cn string) enrolled {
	t.Helper()
	c := e.client(t, keyIndex, cn)
	req := c.PKCSReq(t, csrFor(t, c, cn))
	return enrolled{client: c, cert: wantSuccess(t, e.pki(t, epStatic, req)), req: req}
}

func TestRenewal(t *testing.T) {
	t.Parallel()
	half := profileValidity / 2

	// renew sends a RenewalReq for a new key (no challenge), signed with old and its key.
	renew := func(t *testing.T, e *env, d enrolled, old *x509.Certificate, subject string) *testca.CertRep {
		t.Helper()
		newKey := testca.RSAKey(t, 7)
		csr := testca.CSR(t, newKey, testca.CSROptions{Subject: pkix.Name{CommonName: subject}})
		return e.pki(t, epStatic, d.client.RenewalReq(t, csr, old, d.client.Key))
	}

	t.Run("inside the window", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		d := enroll(t, e, 0, "renew-me")
		e.offset.Store(int64(half + 24*time.Hour))
		rep := renew(t, e, d, d.cert, "renew-me")
		cert := wantSuccess(t, rep)
		if cert.Equal(d.cert) || !testca.RSAKey(t, 7).PublicKey.Equal(cert.PublicKey) {
			t.Fatal("renewal did not issue a new certificate for the new key")
		}
		if !bytes.Equal(cert.RawSubject, d.cert.RawSubject) {
			t.Error("renewal changed the subject")
		}
		if n := e.countStatus(t, store.StatusIssued); n != 2 {
			t.Errorf("%d issued records, want 2", n)
		}
	})

	refused := []struct {
		name    string
		offset  time.Duration
		prepare func(t *testing.T, e *env, d enrolled) *x509.Certificate // the certificate that signs
		subject string
	}{
		{"before the window", time.Hour, nil, "renew-me"},
		{"expired", profileValidity + time.Hour, nil, "renew-me"},
		{"revoked", half + 24*time.Hour, func(t *testing.T, e *env, d enrolled) *x509.Certificate {
			e.revoke(t, d.cert)
			return d.cert
		}, "renew-me"},
		{"not ours", half + 24*time.Hour, func(t *testing.T, e *env, d enrolled) *x509.Certificate {
			other := testca.New(t, testca.Options{Subject: e.ca.Cert.Subject}) // same name, another key
			return other.Issue(t, d.client.Key.Public(), testca.LeafOptions{Subject: d.cert.Subject,
				NotBefore: d.cert.NotBefore, NotAfter: d.cert.NotAfter})
		}, "renew-me"},
		{"ours but never recorded", half + 24*time.Hour, func(t *testing.T, e *env, d enrolled) *x509.Certificate {
			return e.ca.Issue(t, d.client.Key.Public(), testca.LeafOptions{Subject: d.cert.Subject,
				NotBefore: d.cert.NotBefore, NotAfter: d.cert.NotAfter})
		}, "renew-me"},
		{"different subject", half + 24*time.Hour, nil, "someone-else"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			d := enroll(t, e, 0, "renew-me")
			signer := d.cert
			if tc.prepare != nil {
				signer = tc.prepare(t, e, d)
			}
			e.offset.Store(int64(tc.offset))
			wantFailure(t, renew(t, e, d, signer, tc.subject), testca.FailBadRequest)
			if n := len(e.records(t)); n != 1 {
				t.Errorf("%d records after a refused renewal, want only the original", n)
			}
		})
	}

	t.Run("a PKCSReq signed by an issued certificate still needs the challenge", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		d := enroll(t, e, 0, "renew-me")
		e.offset.Store(int64(half + 24*time.Hour))
		newKey := testca.RSAKey(t, 7)
		csr := testca.CSR(t, newKey, testca.CSROptions{Subject: pkix.Name{CommonName: "renew-me"}})
		rep := e.pki(t, epStatic, d.client.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: csr.Raw,
			SignerCert: d.cert, SignerKey: d.client.Key, TransactionID: "renewal-as-pkcsreq"}))
		wantFailure(t, rep, testca.FailBadRequest)
	})
}

func TestCertPoll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enroll(t, e, 0, "poller")

	rep := e.pki(t, epStatic, d.client.CertPoll(t, d.req.TransactionID, e.ca.Cert, pkix.Name{CommonName: "poller"}))
	if got := wantSuccess(t, rep); !got.Equal(d.cert) {
		t.Fatal("CertPoll returned another certificate")
	}
	rep = e.pki(t, epStatic, d.client.CertPoll(t, "no-such-transaction", e.ca.Cert, pkix.Name{CommonName: "poller"}))
	wantFailure(t, rep, testca.FailBadCertID)

	// Someone else polling for the device's transaction learns nothing.
	thief := e.client(t, 1, "poller")
	rep = e.pki(t, epStatic, thief.CertPoll(t, d.req.TransactionID, e.ca.Cert, pkix.Name{CommonName: "poller"}))
	wantFailure(t, rep, testca.FailBadCertID)
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("polls made records: %d", n)
	}
}

// TestCertPollOfARevocationInTheIndexOnly: a revocation interrupted between its index entry and its record leaves the
// record saying issued while the CRL lists the certificate. A CertPoll does not hand it out as the request's
// certificate, as it does not hand out one whose record says revoked (and as a replay of the PKCSReq does not).
func TestCertPollOfARevocationInTheIndexOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enroll(t, e, 0, "poll-indexed")
	if _, err := e.store.AddRevoked(t.Context(), store.Revoked{Serial: store.SerialString(d.cert.SerialNumber),
		RevokedAt: time.Now(), Reason: 1, NotAfter: d.cert.NotAfter}); err != nil {
		t.Fatal(err)
	}
	rep := e.pki(t, epStatic, d.client.CertPoll(t, d.req.TransactionID, e.ca.Cert, pkix.Name{CommonName: "poll-indexed"}))
	wantFailure(t, rep, testca.FailBadCertID)
}

// signalingRA is the RA key, telling signed of every signature (the RA signs nothing but CertReps).
type signalingRA struct {
	custody.RAKey
	signed chan<- struct{}
}

func (k signalingRA) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.RAKey.Sign(r, digest, opts)
	k.signed <- struct{}{}
	return sig, err
}

// TestCertRepBuiltWhileTheRecordIsMadeDurable: the RA signs the successful CertRep while the issued-record write
// is still on the wire (held here until that signature exists), so the device does not wait for both in turn;
// the answer is the one sent once the write committed. TestStoreUnavailable covers the other side: when that
// write fails, the CertRep built early is dropped and the client gets a 503 without a PKI message.
func TestCertRepBuiltWhileTheRecordIsMadeDurable(t *testing.T) {
	t.Parallel()
	ca := theCA(t)
	signed := make(chan struct{}, 4)
	keys := &custody.Keys{Chain: ca.Keys.Chain, CASigner: ca.Keys.CASigner, RACert: ca.Keys.RACert,
		RAKey: signalingRA{RAKey: ca.Keys.RAKey, signed: signed}}
	var early, updates atomic.Int32
	var written atomic.Bool
	e := newEnv(t, envOptions{keys: keys, wrap: func(s store.Store) store.Store {
		f := storetest.NewFaultStore(s)
		f.OnCall(func(method string) {
			if method != storetest.MethodUpdate || updates.Add(1) != 1 { // the first Update: pending → issued
				return
			}
			select {
			case <-signed:
				early.Add(1)
			case <-time.After(5 * time.Second):
			}
			// Hold the write a little longer: an answer sent before it would reach the client meanwhile.
			time.Sleep(100 * time.Millisecond)
			written.Store(true)
		})
		return f
	}})
	c := e.client(t, 0, "early")
	cert := wantSuccess(t, e.pki(t, epStatic, c.PKCSReq(t, csrFor(t, c, "early"))))
	if !written.Load() {
		t.Fatal("the answer left before the issued record was written")
	}
	if early.Load() != 1 {
		t.Fatal("the CertRep was not signed while the issued record was being written")
	}
	if len(signed) != 0 {
		t.Fatalf("%d more RA signatures: the early CertRep was not the one sent", len(signed))
	}
	rec, err := e.mem.Get(context.Background(), hexSerial(cert))
	if err != nil || rec.Status != store.StatusIssued || !bytes.Equal(rec.CertDER, cert.Raw) {
		t.Fatalf("record %v (err %v): want the delivered certificate issued", rec, err)
	}
}

// TestPendingWhileSigning holds issuance between the signature and the issued-record write: a CertPoll and a
// duplicate PKCSReq for the same transaction get PENDING (no second signature), and once the record is written
// the poll returns the certificate.
func TestPendingWhileSigning(t *testing.T) {
	t.Parallel()
	reached, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store {
		f := storetest.NewFaultStore(s)
		f.OnCall(func(method string) {
			if method == storetest.MethodUpdate { // the first Update is pending → issued, after signing
				once.Do(func() { close(reached); <-release })
			}
		})
		return f
	}})
	t.Cleanup(unblock) // runs before the server closes, so a failing test never leaves the request hanging
	c := e.client(t, 0, "slow")
	csr := csrFor(t, c, "slow")
	first := c.PKCSReq(t, csr)
	type answer struct {
		resp *http.Response
		body []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Post(e.url(epStatic)+"?operation=PKIOperation", "application/x-pki-message",
			bytes.NewReader(first.Raw))
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- answer{resp, body, err}
	}()
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("issuance never reached the issued-record write")
	}

	rep := e.pki(t, epStatic, c.CertPoll(t, first.TransactionID, e.ca.Cert, pkix.Name{CommonName: "slow"}))
	if rep.Status != testca.StatusPending {
		t.Errorf("CertPoll during signing: status %q failInfo %q, want PENDING", rep.Status, rep.FailInfo)
	}
	// A duplicate PKCSReq in this process joins the issuance in flight and gets its certificate once it is
	// durable (no second signature, no PENDING round trip for the client).
	dup := c.PKCSReq(t, csr)
	dupDone := make(chan answer, 1)
	go func() {
		resp, err := http.Post(e.url(epStatic)+"?operation=PKIOperation", "application/x-pki-message",
			bytes.NewReader(dup.Raw))
		if err != nil {
			dupDone <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		dupDone <- answer{resp, body, err}
	}()
	select {
	case a := <-dupDone:
		t.Fatalf("the duplicate was answered (%v) before the first request's certificate was durable", a.err)
	case <-time.After(200 * time.Millisecond):
	}
	unblock()
	held := <-done
	if held.err != nil {
		t.Fatal(held.err)
	}
	cert := wantSuccess(t, e.certRep(t, held.resp, held.body, first))
	dupAns := <-dupDone
	if dupAns.err != nil {
		t.Fatal(dupAns.err)
	}
	if got := wantSuccess(t, e.certRep(t, dupAns.resp, dupAns.body, dup)); !got.Equal(cert) {
		t.Fatal("the duplicate got another certificate")
	}
	rep = e.pki(t, epStatic, c.CertPoll(t, first.TransactionID, e.ca.Cert, pkix.Name{CommonName: "slow"}))
	if got := wantSuccess(t, rep); !got.Equal(cert) {
		t.Fatal("CertPoll after signing returned another certificate")
	}
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("%d records, want 1: a duplicate caused a second signature", n)
	}
}

// TestGetCertEmptySubjectIsNobody: two SAN-only certificates share the empty subject, which names no holder; the
// holder of one does not get the other by serial (the key's owner still does).
func TestGetCertEmptySubjectIsNobody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := enrollNamed(t, e, epStatic, 0, testca.CSROptions{DNSNames: []string{"a.corp.example"}, ChallengePassword: staticSecret})
	b := enrollNamed(t, e, epStatic, 1, testca.CSROptions{DNSNames: []string{"b.corp.example"}, ChallengePassword: staticSecret})
	if len(a.cert.Subject.Names) != 0 || len(b.cert.Subject.Names) != 0 {
		t.Fatalf("subjects %q and %q, want both empty", a.cert.Subject, b.cert.Subject)
	}
	asB := &testca.Client{Key: testca.RSAKey(t, 1), Cert: b.cert, Recipients: []*x509.Certificate{e.ca.Recipient()}}
	if rep := e.pki(t, epStatic, asB.GetCert(t, e.ca.Cert, a.cert.SerialNumber)); rep.Status != testca.StatusFailure ||
		rep.FailInfo != testca.FailBadCertID || len(rep.Certificates) != 0 {
		t.Errorf("GetCert of a's certificate by b's holder: status %q failInfo %q, want FAILURE badCertID", rep.Status, rep.FailInfo)
	}
	asA := &testca.Client{Key: testca.RSAKey(t, 0), Cert: a.cert, Recipients: []*x509.Certificate{e.ca.Recipient()}}
	if got := wantSuccess(t, e.pki(t, epStatic, asA.GetCert(t, e.ca.Cert, a.cert.SerialNumber))); !got.Equal(a.cert) {
		t.Fatal("the key's owner did not get its certificate")
	}
}

// TestGetCert: GetCert answers only the certificate's holder — the key's owner, or a holder of a valid certificate
// of ours for the same subject — and everyone else gets badCertID, the answer for a serial that does not exist.
func TestGetCert(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enroll(t, e, 0, "getcert")
	get := func(c *testca.Client, issuer *x509.Certificate, serial *big.Int) *testca.CertRep {
		t.Helper()
		return e.pki(t, epStatic, c.GetCert(t, issuer, serial))
	}
	as := func(key int, cert *x509.Certificate) *testca.Client {
		return &testca.Client{Key: testca.RSAKey(t, key), Cert: cert, Recipients: []*x509.Certificate{e.ca.Recipient()}}
	}

	// The key's owner, signing with a fresh self-signed certificate (as after losing the certificate).
	if got := wantSuccess(t, get(e.client(t, 0, "anything"), e.ca.Cert, d.cert.SerialNumber)); !got.Equal(d.cert) {
		t.Fatal("GetCert returned another certificate")
	}
	// A holder of another valid certificate of ours for the same subject (another key, e.g. after a renewal).
	sibling := enroll(t, e, 1, "getcert")
	if got := wantSuccess(t, get(as(1, sibling.cert), e.ca.Cert, d.cert.SerialNumber)); !got.Equal(d.cert) {
		t.Fatal("GetCert for the subject's holder returned another certificate")
	}

	other := enroll(t, e, 2, "someone-else")
	forged := testca.SelfSigned(t, testca.RSAKey(t, 3), d.cert.Subject)
	refused := map[string]*testca.Client{
		"a stranger's self-signed certificate":            e.client(t, 3, "getcert"),
		"a self-signed certificate with the same subject": as(3, forged),
		"our certificate for another subject":             as(2, other.cert),
	}
	for name, c := range refused {
		if rep := get(c, e.ca.Cert, d.cert.SerialNumber); rep.Status != testca.StatusFailure ||
			rep.FailInfo != testca.FailBadCertID || len(rep.Certificates) != 0 {
			t.Errorf("%s: status %q failInfo %q, want FAILURE badCertID", name, rep.Status, rep.FailInfo)
		}
	}
	// The sibling's certificate once revoked no longer opens the subject's certificates.
	e.revoke(t, sibling.cert)
	wantFailure(t, get(as(1, sibling.cert), e.ca.Cert, d.cert.SerialNumber), testca.FailBadCertID)

	unknown, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	wantFailure(t, get(d.client, e.ca.Cert, unknown), testca.FailBadCertID)
	foreign := testca.New(t, testca.Options{})
	wantFailure(t, get(d.client, foreign.Cert, d.cert.SerialNumber), testca.FailBadCertID)
	// Content that is not IssuerAndSerialNumber.
	wantFailure(t, e.pki(t, epStatic, d.client.Message(t, testca.Message{Type: testca.MsgGetCert,
		Content: []byte("serial please")})), testca.FailBadRequest)
}

// TestStoreUnavailable: Table Storage down before any certificate leaves means HTTP 503 with Retry-After, so
// the client retries; never a certificate without a durable issued record.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		fault       storetest.Fault
		wantPending int // records left pending (signed, outcome unrecorded) — resolvable by serial later
	}{
		{"every write fails", storetest.Fault{}, 0},
		{"pending record with its idempotency claim fails", storetest.Fault{Method: storetest.MethodInsertBound}, 0},
		// Every try of it, until its deadline (one refusal is tried again: issuance's durableUpdate).
		{"issued-record write fails after signing", storetest.Fault{Method: storetest.MethodUpdate}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var fs *storetest.FaultStore
			e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store {
				fs = storetest.NewFaultStore(s)
				return fs
			}})
			fs.Inject(tc.fault)
			c := e.client(t, 0, "unavailable")
			resp, body := testca.Post(t, e.url(epStatic), c.PKCSReq(t, csrFor(t, c, "unavailable")).Raw)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("HTTP %d, want 503", resp.StatusCode)
			}
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s <= 0 {
				t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			if bytes.Contains(body, []byte{0x30, 0x82}) || resp.Header.Get("Content-Type") == "application/x-pki-message" {
				t.Error("a 503 carries a PKI message")
			}
			if n := e.countStatus(t, store.StatusIssued); n != 0 {
				t.Errorf("%d issued records", n)
			}
			if n := e.countStatus(t, store.StatusPending); n != tc.wantPending {
				t.Errorf("%d pending records, want %d", n, tc.wantPending)
			}

			// Once the store is back, the client's retry succeeds.
			fs.Clear()
			req := c.PKCSReq(t, csrFor(t, c, "unavailable"))
			if tc.wantPending > 0 {
				// The signed-but-unrecorded attempt holds the transaction until it goes stale: no second
				// signature for it meanwhile. A new key is a new transaction.
				rep := e.pki(t, epStatic, req)
				if rep.Status != testca.StatusPending {
					t.Errorf("retry of the unrecorded transaction: status %q, want PENDING", rep.Status)
				}
				c = e.client(t, 1, "unavailable")
				req = c.PKCSReq(t, csrFor(t, c, "unavailable"))
			}
			wantSuccess(t, e.pki(t, epStatic, req))
		})
	}
}

// TestNoSecretsInLogs: the static challenge, right or wrong, never reaches the log.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	var buf testca.LogBuffer
	e := newEnv(t, envOptions{log: &buf})
	c := e.client(t, 0, "logged")
	wantSuccess(t, e.pki(t, epStatic, c.PKCSReq(t, csrFor(t, c, "logged"))))
	wrong := "wrong-but-secret-looking-guess"
	csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "logged"}, ChallengePassword: wrong})
	wantFailure(t, e.pki(t, epStatic, c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: csr.Raw,
		TransactionID: "logged-2"})), testca.FailBadRequest)
	out := buf.String()
	if !strings.Contains(out, "scep pkioperation") {
		t.Fatalf("nothing logged: %q", out)
	}
	for _, secret := range []string{staticSecret, wrong} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains the challenge %q", secret)
		}
	}
}

func makeCRL(t testing.TB, ca *testca.CA) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(7),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestECSignerRefused: a requester whose signer key is not RSA cannot receive an encrypted CertRep, so nothing
// may be issued for it (otherwise a certificate would be signed and recorded that no answer can carry).
func TestECSignerRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := testca.SelfSigned(t, ecKey, pkix.Name{CommonName: "ec-device"})
	csr := testca.CSR(t, ecKey, testca.CSROptions{Subject: pkix.Name{CommonName: "ec-device"}, ChallengePassword: staticSecret})
	c := e.client(t, 0, "unused")
	rep := e.pki(t, epStatic, c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: csr.Raw,
		SignerCert: signer, SignerKey: ecKey}))
	wantFailure(t, rep, testca.FailBadAlg)
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records for an undeliverable request", n)
	}
}

// flakyRA is an RA key whose remote operations fail as Key Vault does when it is down.
type flakyRA struct {
	custody.RAKey
	failDecrypt, failSign bool
}

func (k flakyRA) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if k.failDecrypt {
		return nil, fmt.Errorf("unwrapping content key: %w", keyvault.ErrUnavailable)
	}
	return k.RAKey.Decrypt(r, msg, opts)
}

func (k flakyRA) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.failSign {
		return nil, fmt.Errorf("signing CertRep: %w", keyvault.ErrUnavailable)
	}
	return k.RAKey.Sign(r, digest, opts)
}

// TestRAKeyUnavailable: an RA key in Key Vault that cannot answer gives 503 + Retry-After, not a verdict on the
// request; a CertRep that cannot be signed after issuance leaves the certificate to the client's retry.
func TestRAKeyUnavailable(t *testing.T) {
	t.Parallel()
	base := theCA(t)
	for _, tc := range []struct {
		name       string
		ra         flakyRA
		wantIssued int
	}{
		{"decrypt", flakyRA{RAKey: base.RAKey, failDecrypt: true}, 0},
		{"sign", flakyRA{RAKey: base.RAKey, failSign: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys := &custody.Keys{Chain: base.Keys.Chain, CASigner: base.Keys.CASigner, RACert: base.Keys.RACert, RAKey: tc.ra}
			ca := *base
			ca.Keys = keys
			e := newEnv(t, envOptions{ca: &ca})
			c := e.client(t, 0, "kv-down")
			req := c.PKCSReq(t, csrFor(t, c, "kv-down"))
			resp, _ := testca.Post(t, e.url(epStatic), req.Raw)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("HTTP %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if n := e.countStatus(t, store.StatusIssued); n != tc.wantIssued {
				t.Fatalf("%d issued records, want %d", n, tc.wantIssued)
			}
		})
	}
}

// TestRetiredEndpointRecordsCountAsGated: a SCEP record whose endpoint this server no longer has (renamed or
// removed) may have been issued behind Intune's delivery gate, which records written before the gate existed do not
// say (Gated and IntuneNotified both false): GetCert refuses it like an undelivered certificate rather than hand
// it out.
func TestRetiredEndpointRecordsCountAsGated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enroll(t, e, 0, "retired")
	getCert := func() *testca.CertRep { return e.pki(t, epStatic, d.client.GetCert(t, e.ca.Cert, d.cert.SerialNumber)) }
	wantSuccess(t, getCert()) // while its endpoint exists
	ctx := context.Background()
	rec, err := e.mem.Get(ctx, hexSerial(d.cert))
	if err != nil || rec.Gated || rec.IntuneNotified {
		t.Fatalf("the static record: %v, gated %v", err, err == nil && rec.Gated)
	}
	rec.Endpoint = "retired"
	if err := e.mem.Update(ctx, rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, getCert(), testca.FailBadCertID)
}
