package issuance

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// auditSigner wraps the CA key and, at every signature, checks the invariant of reliability.md §5.1: a committed
// pending record exists whose planned certificate has exactly the TBS being signed.
type auditSigner struct {
	crypto.Signer
	st     store.Store
	t      *testing.T
	signs  atomic.Int32
	failed atomic.Bool
	fail   error
}

func (a *auditSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	a.signs.Add(1)
	page, _, err := a.st.Search(context.Background(), store.Query{Status: store.StatusPending, Limit: 200})
	if err != nil {
		a.t.Errorf("audit: listing pending records: %v", err)
	}
	found := false
	for _, rec := range page {
		c, err := x509.ParseCertificate(rec.PlannedDER)
		if err != nil {
			continue
		}
		sum := sha256.Sum256(c.RawTBSCertificate)
		if string(sum[:]) == string(digest) {
			found = true
		}
	}
	if !found {
		a.failed.Store(true)
		a.t.Errorf("audit: signature requested without a committed pending record for this TBS")
	}
	if a.fail != nil {
		return nil, a.fail
	}
	return a.Signer.Sign(r, digest, opts)
}

var (
	caOnce sync.Once
	caCert *x509.Certificate
	caKey  *rsa.PrivateKey
)

func testCA(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	caOnce.Do(func() {
		var err error
		caKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		caCert, err = custody.NewRoot(caKey, custody.RootOptions{Subject: pkix.Name{CommonName: "Test CA"},
			Validity: 5 * 365 * 24 * time.Hour}, time.Now())
		if err != nil {
			panic(err)
		}
	})
	return caCert, caKey
}

type fixture struct {
	st     store.Store
	signer *auditSigner
	iss    *Issuer
	prof   *policy.Profile
	sleep  *testca.InstantSleep // the pauses between tries of a write after the signature, taken without waiting
}

func newFixture(t *testing.T, st store.Store) *fixture {
	t.Helper()
	ca, key := testCA(t)
	if st == nil {
		st = memstore.New()
	}
	as := &auditSigner{Signer: key, st: st, t: t}
	sl := &testca.InstantSleep{}
	iss, err := New(Config{CA: CA{Cert: ca, Signer: as}, Store: st, Backdate: 5 * time.Minute, Sleep: sl.Sleep,
		URLs: URLs{OCSP: []string{"http://ca.test/api/ocsp"}, CAIssuers: []string{"http://ca.test/api/ca"},
			CRL: []string{"http://ca.test/api/crl"}}})
	if err != nil {
		t.Fatal(err)
	}
	prof, err := policy.ParseProfile("device", "validity=30d;ku=digitalSignature;eku=clientAuth;dns=*;uri=*")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, signer: as, iss: iss, prof: prof, sleep: sl}
}

var leafKey = func() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}()

func (f *fixture) request(t *testing.T, key crypto.Signer, cn, idem string) *Request {
	t.Helper()
	return f.requestFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn + ".example.net"}},
		key, idem)
}

// requestFor is a static SCEP request for the CSR tmpl signed with key (leafKey if nil), checked against f.prof.
func (f *fixture) requestFor(t *testing.T, tmpl *x509.CertificateRequest, key crypto.Signer, idem string) *Request {
	t.Helper()
	if key == nil {
		key = leafKey
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := policy.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := policy.Check(csr, f.prof)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{Checked: checked, Profile: f.prof, Source: store.SourceSCEP, Endpoint: "static",
		Requester: "test", TxID: idem, Key: idem}
}

func TestIssueRecordsBeforeAndAfterSigning(t *testing.T) {
	f := newFixture(t, nil)
	res, err := f.iss.Issue(context.Background(), f.request(t, nil, "device-1", "tx-1"))
	if err != nil {
		t.Fatal(err)
	}
	if f.signer.signs.Load() != 1 {
		t.Fatalf("signatures = %d, want 1", f.signer.signs.Load())
	}
	c := res.Cert
	if err := c.CheckSignatureFrom(caCert); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	rec, err := f.st.Get(context.Background(), store.SerialString(c.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.StatusIssued || string(rec.CertDER) != string(c.Raw) || rec.SHA256 == "" || rec.SHA1 == "" {
		t.Fatalf("record not issued with the certificate: %+v", rec.Status)
	}
	if n := len(c.SerialNumber.Bytes()); n != 17 {
		t.Errorf("serial is %d octets, want 17 (prefix + 128 random bits)", n)
	}
	if c.IsCA || !c.BasicConstraintsValid || c.KeyUsage != x509.KeyUsageDigitalSignature ||
		len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("profile content wrong: CA=%v KU=%v EKU=%v", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
	}
	if len(c.OCSPServer) != 1 || len(c.IssuingCertificateURL) != 1 || len(c.CRLDistributionPoints) != 1 {
		t.Errorf("AIA/CDP missing: %v %v %v", c.OCSPServer, c.IssuingCertificateURL, c.CRLDistributionPoints)
	}
	if d := c.NotAfter.Sub(time.Now()); d > 30*24*time.Hour || d < 29*24*time.Hour {
		t.Errorf("validity %s, want the 30 day profile cap", d)
	}
	if time.Since(c.NotBefore) < 4*time.Minute {
		t.Errorf("notBefore %s is not back-dated", c.NotBefore)
	}
}

func TestValidityAttributeShortensAndCANotAfterCaps(t *testing.T) {
	f := newFixture(t, nil)
	req := f.request(t, nil, "short", "")
	req.Checked.Validity = policy.RequestedValidity{Unit: "Days", Units: 7}
	res, err := f.iss.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(res.Cert.NotAfter); d > 7*24*time.Hour || d < 7*24*time.Hour-time.Minute {
		t.Errorf("validity %s, want 7 days", d)
	}
	req.Checked.Validity = policy.RequestedValidity{Unit: "Years", Units: 10}
	res, err = f.iss.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(res.Cert.NotAfter); d > 30*24*time.Hour {
		t.Errorf("a CSR widened validity to %s beyond the profile cap", d)
	}

	// A CA that expires in 10 days caps every leaf at its own notAfter.
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	shortCA, err := custody.NewRoot(key, custody.RootOptions{Subject: pkix.Name{CommonName: "Short CA"},
		Validity: 10 * 24 * time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	iss, err := New(Config{CA: CA{Cert: shortCA, Signer: key}, Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	res, err = iss.Issue(context.Background(), f.request(t, nil, "capped", ""))
	if err != nil {
		t.Fatal(err)
	}
	if res.Cert.NotAfter.After(shortCA.NotAfter) {
		t.Errorf("leaf notAfter %s outlives the CA %s", res.Cert.NotAfter, shortCA.NotAfter)
	}
}

func TestReplayReturnsStoredCertificateWithoutSigning(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first, err := f.iss.Issue(ctx, f.request(t, nil, "replay", "tx-replay"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.iss.Replay(ctx, "tx-replay", leafKey.Public(), 0)
	if err != nil || got == nil || !got.Replayed || string(got.Cert.Raw) != string(first.Cert.Raw) {
		t.Fatalf("Replay = %v, %v; want the stored certificate", got, err)
	}
	// A second Issue with the same key (a client retry that raced past Replay) also replays.
	again, err := f.iss.Issue(ctx, f.request(t, nil, "replay", "tx-replay"))
	if err != nil || !again.Replayed || string(again.Cert.Raw) != string(first.Cert.Raw) {
		t.Fatalf("second Issue = %v, %v; want a replay", again, err)
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Fatalf("signatures = %d, want 1", n)
	}
	// The duplicate stopped at the key claim: no second record was written.
	page, _, _ := f.st.Search(ctx, store.Query{Limit: 10})
	if len(page) != 1 {
		t.Fatalf("want exactly the one issued record, got %d", len(page))
	}

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := f.iss.Replay(ctx, "tx-replay", other.Public(), 0); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Replay with another key: %v, want ErrKeyMismatch", err)
	}
	if _, err := f.iss.Issue(ctx, f.request(t, other, "replay", "tx-replay")); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Issue with another key: %v, want ErrKeyMismatch", err)
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Fatalf("signatures = %d after mismatched replays, want 1", n)
	}
}

func TestReplayWindow(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	f.iss.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := f.iss.Issue(ctx, f.request(t, nil, "window", "api-key")); err != nil {
		t.Fatal(err)
	}
	if res, err := f.iss.Replay(ctx, "api-key", leafKey.Public(), time.Minute); err != nil || res == nil {
		t.Fatalf("inside the window: %v %v", res, err)
	}
	now = now.Add(2 * time.Minute)
	if res, err := f.iss.Replay(ctx, "api-key", leafKey.Public(), time.Minute); err != nil || res != nil {
		t.Fatalf("outside the window: %v %v, want nothing to replay", res, err)
	}
	res, err := f.iss.Issue(ctx, &Request{Checked: f.request(t, nil, "window", "").Checked, Profile: f.prof,
		Source: store.SourceAPI, Key: "api-key", ReplayWindow: time.Minute})
	if err != nil || res.Replayed {
		t.Fatalf("after the window a new certificate is issued: %v %v", res, err)
	}
	if f.signer.signs.Load() != 2 {
		t.Fatalf("signatures = %d, want 2", f.signer.signs.Load())
	}
}

func TestConcurrentDuplicatesSignOnce(t *testing.T) {
	f := newFixture(t, nil)
	const n = 16
	var wg sync.WaitGroup
	serials := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.iss.Issue(context.Background(), f.request(t, nil, "dup", "tx-dup"))
			if err != nil {
				if errors.Is(err, ErrInProgress) {
					return
				}
				t.Error(err)
				return
			}
			serials <- res.Record.Serial
		}()
	}
	wg.Wait()
	close(serials)
	seen := map[string]bool{}
	for s := range serials {
		seen[s] = true
	}
	if len(seen) != 1 {
		t.Fatalf("duplicates got %d different serials, want 1", len(seen))
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Fatalf("signatures = %d, want 1", n)
	}
}

// TestStoreFailureAtEveryWrite fails each store write of one issuance in turn (and then each with the write
// committed but its answer lost) and checks that no certificate is returned without an issued record, and no
// signature happened without a committed pending record (the audit signer).
func TestStoreFailureAtEveryWrite(t *testing.T) {
	for _, commit := range []bool{false, true} {
		for n := 1; n <= 4; n++ {
			t.Run(fmt.Sprintf("write%d/commit=%t", n, commit), func(t *testing.T) {
				fs := storetest.NewFaultStore(memstore.New())
				f := newFixture(t, fs)
				fs.Inject(storetest.Fault{Nth: n, Commit: commit})
				res, err := f.iss.Issue(context.Background(), f.request(t, nil, "fault", "tx-fault"))
				if err != nil {
					if res != nil {
						t.Fatal("a result came back with an error")
					}
					return
				}
				rec, gerr := fs.Inner().Get(context.Background(), res.Record.Serial)
				if gerr != nil || rec.Status != store.StatusIssued || string(rec.CertDER) != string(res.Cert.Raw) {
					t.Fatalf("certificate returned without a committed issued record: %v %v", rec, gerr)
				}
			})
		}
	}
}

func TestContextCancelledBetweenSteps(t *testing.T) {
	for step := 1; step <= 5; step++ {
		t.Run(fmt.Sprint("call", step), func(t *testing.T) {
			fs := storetest.NewFaultStore(memstore.New())
			f := newFixture(t, fs)
			ctx, cancel := context.WithCancel(context.Background())
			var calls atomic.Int32
			fs.OnCall(func(string) {
				if calls.Add(1) == int32(step) {
					cancel()
				}
			})
			res, err := f.iss.Issue(ctx, f.request(t, nil, "cancel", "tx-cancel"))
			fs.Clear()
			if err == nil {
				rec, gerr := fs.Inner().Get(context.Background(), res.Record.Serial)
				if gerr != nil || rec.Status != store.StatusIssued {
					t.Fatalf("certificate returned without an issued record: %v", gerr)
				}
			}
			// Whatever happened, every signed certificate is recorded as issued or still revocable by serial.
			page, _, _ := fs.Inner().Search(context.Background(), store.Query{Limit: 50})
			for _, rec := range page {
				if rec.CertDER != nil && rec.Status != store.StatusIssued {
					t.Errorf("record %s has a certificate but status %s", rec.Serial, rec.Status)
				}
			}
		})
	}
}

func TestSignerFailureAbandonsRecord(t *testing.T) {
	f := newFixture(t, nil)
	f.signer.fail = errors.New("key vault says no")
	_, err := f.iss.Issue(context.Background(), f.request(t, nil, "signfail", "tx-signfail"))
	if !errors.Is(err, ErrSigner) {
		t.Fatalf("err = %v, want ErrSigner", err)
	}
	page, _, _ := f.st.Search(context.Background(), store.Query{Limit: 10})
	if len(page) != 1 || page[0].Status != store.StatusAbandoned || page[0].Note == "" {
		t.Fatalf("want one abandoned record with a note, got %+v", page)
	}
	// The transaction can be retried: the abandoned record does not block it.
	f.signer.fail = nil
	if _, err := f.iss.Issue(context.Background(), f.request(t, nil, "signfail", "tx-signfail")); err != nil {
		t.Fatalf("retry after an abandoned attempt: %v", err)
	}
}

func TestDeliveryFailureWithholds(t *testing.T) {
	f := newFixture(t, nil)
	req := f.request(t, nil, "withheld", "tx-withheld")
	req.Deliver = func(ctx context.Context, rec *store.Record, c *x509.Certificate) error {
		return errors.New("intune refused the notification")
	}
	res, err := f.iss.Issue(context.Background(), req)
	if !errors.Is(err, ErrWithheld) || res != nil {
		t.Fatalf("Issue = %v, %v; want ErrWithheld and no certificate", res, err)
	}
	page, _, _ := f.st.Search(context.Background(), store.Query{Status: store.StatusIssued, Limit: 10})
	if len(page) != 1 || !page[0].Withheld {
		t.Fatalf("want the issued record marked withheld, got %+v", page)
	}
	if _, err := f.iss.Replay(context.Background(), "tx-withheld", leafKey.Public(), 0); !errors.Is(err, ErrWithheld) {
		t.Fatalf("replay of a withheld certificate: %v, want ErrWithheld", err)
	}
}

// TestUndecidedDeliveryIsIssuedAfreshOnRetry: a delivery gate that got no verdict (its error wraps ErrUndecided:
// Intune down, throttling, refusing our identity) withholds the certificate like a refusal does — Issue returns
// ErrWithheld, the record is issued and withheld, nothing hands the certificate out — but the record says the gate
// was undecided, so the request's retry with the same key is not refused: it is a new enrollment (ReplayRequest
// finds nothing to replay, so the caller authorizes it again). A retry with another CSR (the same key) takes the key
// over with a new pending record before its own signature, and is delivered through the gate; the first certificate
// stays withheld. (The same CSR gets the first certificate: TestUndecidedDeliveryRetryDeliversTheSameCertificate.) A
// refusal (an error without ErrUndecided) is still withheld for good, its retry refused without a signature.
func TestUndecidedDeliveryIsIssuedAfreshOnRetry(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	var calls atomic.Int32
	req := f.request(t, nil, "undecided", "tx-undecided")
	req.Gated = true
	req.Deliver = func(context.Context, *store.Record, *x509.Certificate) error {
		calls.Add(1)
		return fmt.Errorf("%w: intune: successNotification: HTTP 503", ErrUndecided)
	}
	res, err := f.iss.Issue(ctx, req)
	if !errors.Is(err, ErrWithheld) || !errors.Is(err, ErrUndecided) || res != nil {
		t.Fatalf("Issue = %v, %v; want ErrWithheld and ErrUndecided, no certificate", res, err)
	}
	b, err := f.st.Lookup(ctx, "tx-undecided")
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.st.Get(ctx, b.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != store.StatusIssued || !first.Withheld || !first.GateUndecided || first.IntuneNotified {
		t.Fatalf("record %s withheld %t undecided %t notified %t; want issued, withheld, undecided", first.Status,
			first.Withheld, first.GateUndecided, first.IntuneNotified)
	}
	if err := f.iss.Releasable(first, true); !errors.Is(err, ErrWithheld) {
		t.Fatalf("Releasable(undecided withheld record) = %v, want ErrWithheld", err)
	}
	if got, err := f.iss.ReplayRequest(ctx, req); got != nil || err != nil {
		t.Fatalf("ReplayRequest after an undecided gate = %v, %v; want a new enrollment (nil, nil)", got, err)
	}

	// The retry with another CSR, once the gate decides: a new certificate under the same key, delivered.
	undecidedDeliver := req.Deliver
	req = f.request(t, nil, "undecided", "tx-undecided")
	req.Gated, req.Deliver = true, undecidedDeliver
	if got, err := f.iss.ReplayRequest(ctx, req); got != nil || err != nil {
		t.Fatalf("ReplayRequest for another CSR after an undecided gate = %v, %v; want a new enrollment", got, err)
	}
	req.Deliver = notify(&calls)
	res, err = f.iss.Issue(ctx, req)
	if err != nil {
		t.Fatalf("retry after an undecided gate: %v", err)
	}
	if res.Replayed || res.Record.Serial == first.Serial || !res.Record.IntuneNotified || f.signer.signs.Load() != 2 {
		t.Fatalf("retry: replayed %t serial %s (first %s) notified %t, %d signatures; want a new, delivered certificate",
			res.Replayed, res.Record.Serial, first.Serial, res.Record.IntuneNotified, f.signer.signs.Load())
	}
	if b, err := f.st.Lookup(ctx, "tx-undecided"); err != nil || b.Serial != res.Record.Serial {
		t.Fatalf("the key is bound to %q (%v), want the new certificate %s", b.Serial, err, res.Record.Serial)
	}
	if old, err := f.st.Get(ctx, first.Serial); err != nil || !old.Withheld || old.IntuneNotified ||
		!errors.Is(f.iss.Releasable(old, true), ErrWithheld) {
		t.Fatalf("first record after the retry: %v %+v; want it withheld still", err, old)
	}
	again, err := f.iss.ReplayRequest(ctx, req)
	if err != nil || again == nil || !again.Cert.Equal(res.Cert) {
		t.Fatalf("replay after the retry = %v, %v; want the delivered certificate", again, err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("the gate ran %d times, want 2", n)
	}

	// A refusal is withheld for good: its retry is refused, with no signature.
	refused := f.request(t, nil, "refused", "tx-refused")
	refused.Gated = true
	refused.Deliver = func(context.Context, *store.Record, *x509.Certificate) error {
		return errors.New("intune: successNotification rejected: ChallengeDecryptionError")
	}
	if _, err := f.iss.Issue(ctx, refused); !errors.Is(err, ErrWithheld) || errors.Is(err, ErrUndecided) {
		t.Fatalf("refused gate: %v, want ErrWithheld only", err)
	}
	refused.Deliver = notify(&calls)
	signs := f.signer.signs.Load()
	if _, err := f.iss.Issue(ctx, refused); !errors.Is(err, ErrWithheld) || f.signer.signs.Load() != signs {
		t.Fatalf("retry after a refusal: %v with %d new signatures; want ErrWithheld and none", err, f.signer.signs.Load()-signs)
	}
}

// TestUndecidedDeliveryRetryDeliversTheSameCertificate: the retry of a request whose delivery gate got no verdict,
// for the very same CSR, does not sign again: the withheld certificate goes through the gate once more, so a device
// that Intune validates but never answers the notification for costs one signature and one record however often it
// retries, and Intune is told of one certificate for the transaction, the one that leaves. Once the gate passes the
// record is delivered (no longer withheld) and replays hand it out; a refusal on the retry withholds it for good. A
// certificate outside the replay window is not reused: that retry signs afresh. Before, every retry was signed anew.
func TestUndecidedDeliveryRetryDeliversTheSameCertificate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	now := time.Now()
	f.iss.now = func() time.Time { return now }
	var seen []string // the serials the gate was asked to deliver
	undecided := func(_ context.Context, rec *store.Record, _ *x509.Certificate) error {
		seen = append(seen, rec.Serial)
		return fmt.Errorf("%w: intune: successNotification: HTTP 503", ErrUndecided)
	}
	req := f.request(t, nil, "redeliver", "tx-redeliver")
	req.Gated, req.Deliver, req.ReplayWindow = true, undecided, time.Hour
	for n := range 3 {
		if _, err := f.iss.Issue(ctx, req); !errors.Is(err, ErrWithheld) || !errors.Is(err, ErrUndecided) {
			t.Fatalf("attempt %d: %v, want withheld and undecided", n+1, err)
		}
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Fatalf("%d signatures for three attempts of one CSR whose notification got no verdict, want 1", n)
	}
	page, _, _ := f.st.Search(ctx, store.Query{Limit: 10})
	if len(page) != 1 || !page[0].Withheld || !page[0].GateUndecided || page[0].IntuneNotified {
		t.Fatalf("records %+v, want one, withheld and undecided", page)
	}
	first := page[0].Serial
	if len(seen) != 3 || seen[1] != first || seen[2] != first {
		t.Fatalf("the gate was asked to deliver %v, want %s each time", seen, first)
	}

	// Intune answers: the same certificate is delivered, and is the transaction's from then on.
	var calls atomic.Int32
	req.Deliver = notify(&calls)
	res, err := f.iss.Issue(ctx, req)
	if err != nil {
		t.Fatalf("retry once the gate decides: %v", err)
	}
	if res.Record.Serial != first || res.Replayed || f.signer.signs.Load() != 1 || calls.Load() != 1 {
		t.Fatalf("retry: serial %s (first %s), replayed %t, %d signatures, %d deliveries; want the first, delivered once",
			res.Record.Serial, first, res.Replayed, f.signer.signs.Load(), calls.Load())
	}
	got, err := f.st.Get(ctx, first)
	if err != nil || got.Withheld || got.GateUndecided || !got.IntuneNotified || f.iss.Releasable(got, true) != nil {
		t.Fatalf("record after delivery: %v %+v; want delivered", err, got)
	}
	again, err := f.iss.ReplayRequest(ctx, req)
	if err != nil || again == nil || !again.Replayed || !again.Cert.Equal(res.Cert) {
		t.Fatalf("replay after delivery = %v, %v; want the delivered certificate", again, err)
	}

	// A refusal on the retry withholds the certificate for good: the next retry is refused, nothing signed.
	refused := f.request(t, nil, "refused-later", "tx-refused-later")
	refused.Gated, refused.Deliver = true, undecided
	if _, err := f.iss.Issue(ctx, refused); !errors.Is(err, ErrUndecided) {
		t.Fatalf("first attempt: %v, want undecided", err)
	}
	refused.Deliver = func(context.Context, *store.Record, *x509.Certificate) error {
		return errors.New("intune: successNotification rejected: ChallengeDecryptionError")
	}
	signs := f.signer.signs.Load()
	if _, err := f.iss.Issue(ctx, refused); !errors.Is(err, ErrWithheld) || errors.Is(err, ErrUndecided) {
		t.Fatalf("retry refused: %v, want withheld for good", err)
	}
	refused.Deliver = notify(&calls)
	if _, err := f.iss.Issue(ctx, refused); !errors.Is(err, ErrWithheld) || f.signer.signs.Load() != signs {
		t.Fatalf("retry after the refusal: %v with %d new signatures; want ErrWithheld and none", err, f.signer.signs.Load()-signs)
	}

	// Outside the replay window the withheld certificate is not reused: the retry is a new enrollment, signed.
	late := f.request(t, nil, "late", "tx-late")
	late.Gated, late.Deliver, late.ReplayWindow = true, undecided, time.Hour
	if _, err := f.iss.Issue(ctx, late); !errors.Is(err, ErrUndecided) {
		t.Fatalf("first attempt: %v, want undecided", err)
	}
	now = now.Add(2 * time.Hour)
	late.Deliver = notify(&calls)
	signs = f.signer.signs.Load()
	if res, err := f.iss.Issue(ctx, late); err != nil || f.signer.signs.Load() != signs+1 {
		t.Fatalf("retry past the window: %v, %v with %d new signatures; want a new certificate", res, err, f.signer.signs.Load()-signs)
	}
}

// TestUndecidedBacklogStopsSigning: while Intune validates but never answers the notification, retries that cannot
// reuse a withheld certificate (a new transaction ID each time, or a CSR signed again) are signed only until
// maxUndecided certificates of the key await a verdict; the next one is refused with ErrUndecidedBacklog (which the
// SCEP door answers 503, as the outage) before anything is recorded or signed. The retry of a withheld
// transaction with its own CSR still goes through, with no signature, and once a certificate of the key is delivered
// the key may be signed for again. Another key is not affected. Before, every such retry cost one more signature and
// one more withheld record.
func TestUndecidedBacklogStopsSigning(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	undecided := func(context.Context, *store.Record, *x509.Certificate) error {
		return fmt.Errorf("%w: intune: successNotification: HTTP 503", ErrUndecided)
	}
	gated := func(key crypto.Signer, tx string, deliver func(context.Context, *store.Record, *x509.Certificate) error) *Request {
		r := f.request(t, key, "backlog", tx)
		r.Gated, r.Deliver = true, deliver
		return r
	}
	var firstReq *Request
	for n := range maxUndecided {
		r := gated(nil, fmt.Sprint("tx-backlog-", n), undecided)
		if n == 0 {
			firstReq = r
		}
		if _, err := f.iss.Issue(ctx, r); !errors.Is(err, ErrUndecided) || errors.Is(err, ErrUndecidedBacklog) {
			t.Fatalf("attempt %d: %v, want withheld undecided", n+1, err)
		}
	}
	signs := f.signer.signs.Load()
	page, _, _ := f.st.Search(ctx, store.Query{Limit: 50})
	records := len(page)
	if _, err := f.iss.Issue(ctx, gated(nil, "tx-backlog-over", undecided)); !errors.Is(err, ErrUndecidedBacklog) ||
		!errors.Is(err, ErrUndecided) || errors.Is(err, ErrWithheld) {
		t.Fatalf("attempt past the cap: %v, want ErrUndecidedBacklog (undecided, not withheld)", err)
	}
	page, _, _ = f.st.Search(ctx, store.Query{Limit: 50})
	if f.signer.signs.Load() != signs || len(page) != records {
		t.Fatalf("past the cap: %d signatures and %d records more, want none", f.signer.signs.Load()-signs, len(page)-records)
	}
	if _, err := f.st.Lookup(ctx, "tx-backlog-over"); err == nil {
		t.Fatal("the refused request's idempotency key is bound")
	}

	// Another key is not held back.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var calls atomic.Int32
	if _, err := f.iss.Issue(ctx, gated(other, "tx-backlog-other", notify(&calls))); err != nil {
		t.Fatalf("another key: %v", err)
	}

	// The first transaction's own retry redelivers its certificate, without a signature, and frees the key.
	firstReq.Deliver = notify(&calls)
	signs = f.signer.signs.Load()
	res, err := f.iss.Issue(ctx, firstReq)
	if err != nil || f.signer.signs.Load() != signs {
		t.Fatalf("redelivery past the cap: %v with %d signatures; want the withheld certificate, none", err, f.signer.signs.Load()-signs)
	}
	if !res.Record.IntuneNotified || res.Record.TxID != "tx-backlog-0" {
		t.Fatalf("redelivered record %+v", res.Record)
	}
	if _, err := f.iss.Issue(ctx, gated(nil, "tx-backlog-after", notify(&calls))); err != nil {
		t.Fatalf("after a delivery the key is signed for again: %v", err)
	}
}

// TestSignedSeesTheCertificateBeforeItIsDurable: Signed gets the certificate Issue then returns, while its record is
// still pending (so the caller may prepare its answer, not send it), and is not called for a replay, which has no
// new signature.
func TestSignedSeesTheCertificateBeforeItIsDurable(t *testing.T) {
	f := newFixture(t, nil)
	req := f.request(t, nil, "early", "tx-early")
	var seen *x509.Certificate
	req.Signed = func(c *x509.Certificate) {
		seen = c
		rec, err := f.st.Get(context.Background(), store.SerialString(c.SerialNumber))
		if err != nil || rec.Status != store.StatusPending {
			t.Errorf("record at Signed: %v (err %v), want pending", rec, err)
		}
	}
	res, err := f.iss.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen != res.Cert {
		t.Fatalf("Signed saw %v, want the returned certificate", seen)
	}
	seen = nil
	again, err := f.iss.Issue(context.Background(), req)
	if err != nil || !again.Replayed || seen != nil {
		t.Fatalf("replay: %v, %v, Signed called %v; want a replay without Signed", again, err, seen != nil)
	}
}

func TestStalePendingIsTakenOver(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	f.iss.now = func() time.Time { return now }
	ctx := context.Background()
	// A crashed attempt: pending record bound to the key, never signed.
	crashed := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending,
		PublicKey: store.KeyHash(leafKey.Public()), Created: now, Updated: now}
	if _, err := f.st.InsertBound(ctx, "tx-stale", nil, crashed); err != nil {
		t.Fatal(err)
	}
	if _, err := f.iss.Issue(ctx, f.request(t, nil, "stale", "tx-stale")); !errors.Is(err, ErrInProgress) {
		t.Fatalf("a fresh pending record must answer in-progress, got %v", err)
	}
	now = now.Add(10 * time.Minute)
	res, err := f.iss.Issue(ctx, f.request(t, nil, "stale", "tx-stale"))
	if err != nil {
		t.Fatalf("stale pending record should be taken over: %v", err)
	}
	b, _ := f.st.Lookup(ctx, "tx-stale")
	if b.Serial != res.Record.Serial {
		t.Fatalf("key bound to %s, want %s", b.Serial, res.Record.Serial)
	}
}

// TestWrongSignatureIsNeverDelivered: a signature that does not verify under the CA certificate ends with
// ErrSigner, the pending record abandoned with a note and no certificate anywhere; the key is then free for a retry.
// Both ways a signer can be trusted or not are covered: a signer of a type that verifies itself (crypto/rsa) but
// holds another key, so it is not trusted for this CA, and a wrapper (verified by issuance) returning garbage.
func TestWrongSignatureIsNeverDelivered(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer func(key crypto.Signer) crypto.Signer
	}{
		// A compromised or misconfigured KMS signing with another key.
		{"other-key", func(crypto.Signer) crypto.Signer { return other }},
		// A signer that is not known to verify its own output and answers garbage of the right length.
		{"garbage", func(key crypto.Signer) crypto.Signer { return garbageSigner{key} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			iss, err := New(Config{CA: CA{Cert: f.iss.ca.Cert, Signer: tc.signer(f.iss.ca.Signer)}, Store: f.st})
			if err != nil {
				t.Fatal(err)
			}
			if iss.signerVerifies {
				t.Fatal("a signer that does not sign for the CA certificate's key is trusted to verify itself")
			}
			res, err := iss.Issue(context.Background(), f.request(t, nil, "bad", "tx-bad"))
			if !errors.Is(err, ErrSigner) || res != nil {
				t.Fatalf("Issue = %v, %v; want ErrSigner and no certificate", res, err)
			}
			page, _, _ := f.st.Search(context.Background(), store.Query{Limit: 10})
			if len(page) != 1 || page[0].Status != store.StatusAbandoned || page[0].CertDER != nil ||
				!strings.Contains(page[0].Note, "does not verify against the CA certificate") {
				t.Fatalf("want one abandoned record with the note and no certificate, got %+v", page)
			}
			if _, err := f.iss.Issue(context.Background(), f.request(t, nil, "bad", "tx-bad")); err != nil {
				t.Fatalf("retry with the real key after an abandoned attempt: %v", err)
			}
		})
	}
}

// garbageSigner is a CA signer that is not known to verify itself and returns a wrong signature.
type garbageSigner struct{ crypto.Signer }

func (g garbageSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	sig := make([]byte, g.Public().(*rsa.PublicKey).Size())
	_, err := rand.Read(sig)
	sig[0] = 0 // below the modulus: a well-formed, wrong signature
	return sig, err
}

// TestSignedCertificateIsThePlannedTBS: for an RSA-3072 CA (crypto/rsa verifies its own signature, issuance does
// not) and a P-384 CA (issuance verifies), the delivered certificate's TBS is byte for byte the planned (linted)
// one recorded in the pending record, it verifies under the CA certificate with crypto/x509, and the CA key signed
// once.
func TestSignedCertificateIsThePlannedTBS(t *testing.T) {
	rsa3072, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		key          crypto.Signer
		alg          x509.SignatureAlgorithm
		selfVerifies bool
	}{
		{"rsa-3072", rsa3072, x509.SHA256WithRSA, true},
		{"ecdsa-p384", p384, x509.ECDSAWithSHA384, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := custody.NewRoot(tc.key, custody.RootOptions{Subject: pkix.Name{CommonName: tc.name + " CA"},
				Validity: 365 * 24 * time.Hour}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			st := memstore.New()
			var signs atomic.Int32
			signer := crypto.Signer(countingSigner{tc.key, &signs})
			if tc.selfVerifies {
				signer = tc.key // the concrete type is what custody vouches for
			}
			f := newFixture(t, st)
			iss, err := New(Config{CA: CA{Cert: ca, Signer: signer}, Store: st})
			if err != nil {
				t.Fatal(err)
			}
			if iss.signerVerifies != tc.selfVerifies {
				t.Fatalf("signerVerifies = %v, want %v", iss.signerVerifies, tc.selfVerifies)
			}
			res, err := iss.Issue(context.Background(), f.request(t, nil, "tbs", "tx-tbs"))
			if err != nil {
				t.Fatal(err)
			}
			planned, err := x509.ParseCertificate(res.Record.PlannedDER)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(res.Cert.RawTBSCertificate, planned.RawTBSCertificate) {
				t.Fatal("the delivered certificate's TBS differs from the planned (linted) one")
			}
			if err := res.Cert.CheckSignatureFrom(ca); err != nil || res.Cert.SignatureAlgorithm != tc.alg {
				t.Fatalf("delivered certificate (%v) does not verify under the CA: %v", res.Cert.SignatureAlgorithm, err)
			}
			if !bytes.Equal(res.Cert.Raw, res.Record.CertDER) {
				t.Fatal("the record holds another certificate than the one delivered")
			}
			if !tc.selfVerifies && signs.Load() != 1 {
				t.Fatalf("signatures = %d, want 1", signs.Load())
			}
		})
	}
}

// countingSigner counts signatures; as a wrapper it is not known to verify itself.
type countingSigner struct {
	crypto.Signer
	n *atomic.Int32
}

func (c countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

func BenchmarkIssue(b *testing.B) {
	ca, key := testCA(nil)
	st := memstore.New()
	iss, _ := New(Config{CA: CA{Cert: ca, Signer: key}, Store: st})
	prof, _ := policy.ParseProfile("device", "")
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "b"}}, leafKey)
	csr, _ := policy.ParseCSR(der)
	checked, _ := policy.Check(csr, prof)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := iss.Issue(context.Background(), &Request{Checked: checked, Profile: prof, Key: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFreshIssuanceTwoRoundTrips: a fresh issuance costs two store round trips, with or without an idempotency
// key: the pending record (with the key's claim in the same write), then the issued update. Nothing is read.
func TestFreshIssuanceTwoRoundTrips(t *testing.T) {
	for _, key := range []string{"tx-fresh", ""} {
		fs := storetest.NewFaultStore(memstore.New())
		f := newFixture(t, fs)
		f.signer.st = fs.Inner() // the audit's own read is not the issuer's
		if _, err := f.iss.Issue(context.Background(), f.request(t, nil, "fresh", key)); err != nil {
			t.Fatal(err)
		}
		write := storetest.MethodInsertBound
		if key == "" {
			write = storetest.MethodInsert
		}
		if fs.TotalCalls() != 2 || fs.Calls(write) != 1 || fs.Calls(storetest.MethodUpdate) != 1 {
			t.Errorf("key %q: %d store calls (%s %d, Update %d), want 2: one %s and one Update", key,
				fs.TotalCalls(), write, fs.Calls(write), fs.Calls(storetest.MethodUpdate), write)
		}
	}
}

// TestClaimAndRecordCommitTogether: the key's claim and the pending record are one write. When it fails nothing
// is bound and nothing signed; when it committed but the answer was lost, the retry finds the bound pending
// record (in progress) and does not sign a second time.
func TestClaimAndRecordCommitTogether(t *testing.T) {
	ctx := context.Background()
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	fs.Inject(storetest.Fault{Method: storetest.MethodInsertBound, Nth: 1})
	if _, err := f.iss.Issue(ctx, f.request(t, nil, "lost", "tx-lost")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Issue with the write failing = %v, want ErrUnavailable", err)
	}
	if b, err := fs.Inner().Lookup(ctx, "tx-lost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed write bound the key: %+v, %v", b, err)
	}
	if page, _, _ := fs.Inner().Search(ctx, store.Query{}); len(page) != 0 {
		t.Fatalf("a failed write left %d records", len(page))
	}
	fs.Inject(storetest.Fault{Method: storetest.MethodInsertBound, Nth: 1, Commit: true})
	if _, err := f.iss.Issue(ctx, f.request(t, nil, "lost", "tx-lost")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Issue with the answer lost = %v, want ErrUnavailable", err)
	}
	b, err := fs.Inner().Lookup(ctx, "tx-lost")
	if err != nil {
		t.Fatalf("the committed write did not bind the key: %v", err)
	}
	if rec, err := fs.Inner().Get(ctx, b.Serial); err != nil || rec.Status != store.StatusPending {
		t.Fatalf("the key is bound without its pending record: %+v, %v", rec, err)
	}
	if _, err := f.iss.Issue(ctx, f.request(t, nil, "lost", "tx-lost")); !errors.Is(err, ErrInProgress) {
		t.Fatalf("retry = %v, want ErrInProgress", err)
	}
	if n := f.signer.signs.Load(); n != 0 {
		t.Fatalf("signatures = %d, want 0", n)
	}
}

// TestBindingWithoutRecordIsTakenOver: older versions claimed the key and inserted the record in two writes, so a
// binding can point to a record that was never written. A new request takes the key over (conditioned on the
// binding's ETag) and signs once.
func TestBindingWithoutRecordIsTakenOver(t *testing.T) {
	ctx := context.Background()
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	orphan := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
	if _, err := fs.Inner().InsertBound(ctx, "tx-orphan", nil, orphan); err != nil {
		t.Fatal(err)
	}
	// The binding's record reads as missing, as an orphaned claim's would.
	fs.Inject(storetest.Fault{Method: storetest.MethodGet, Nth: 1, Err: store.ErrNotFound})
	res, err := f.iss.Issue(ctx, f.request(t, nil, "orphan", "tx-orphan"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := fs.Inner().Lookup(ctx, "tx-orphan"); b.Serial != res.Record.Serial || res.Record.Serial == orphan.Serial {
		t.Fatalf("key bound to %s, issued %s (orphan %s)", b.Serial, res.Record.Serial, orphan.Serial)
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Fatalf("signatures = %d, want 1", n)
	}
}

// TestReplayOnlyValidUnrevoked: a replay returns the stored certificate only while it is valid; an expired one,
// or a revoked one when the request says ReissueRevoked (SCEP), makes the request a new enrollment whose key
// claim takes the idempotency key over. Without it a revoked certificate is ErrRevoked (/api/csr answers 409).
func TestReplayOnlyValidUnrevoked(t *testing.T) {
	ctx := context.Background()
	t.Run("revoked", func(t *testing.T) {
		f := newFixture(t, nil)
		first, err := f.iss.Issue(ctx, f.request(t, nil, "revoked", "tx-rev"))
		if err != nil {
			t.Fatal(err)
		}
		rec := first.Record
		rec.Status, rec.RevokedAt, rec.RevocationReason = store.StatusRevoked, time.Now(), 1
		if err := f.st.Update(ctx, rec, store.StatusIssued); err != nil {
			t.Fatal(err)
		}
		if _, err := f.iss.Replay(ctx, "tx-rev", leafKey.Public(), 0); !errors.Is(err, ErrRevoked) {
			t.Fatalf("Replay of a revoked certificate: %v, want ErrRevoked by default", err)
		}
		req := f.request(t, nil, "revoked", "tx-rev")
		req.ReissueRevoked = true
		if res, err := f.iss.ReplayRequest(ctx, req); err != nil || res != nil {
			t.Fatalf("ReplayRequest of a revoked certificate with ReissueRevoked = %v, %v; want nothing to replay", res, err)
		}
		again, err := f.iss.Issue(ctx, req)
		if err != nil || again.Replayed || again.Record.Serial == rec.Serial {
			t.Fatalf("Issue after revocation = %v, %v; want a new certificate", again, err)
		}
		if b, err := f.st.Lookup(ctx, "tx-rev"); err != nil || b.Serial != again.Record.Serial {
			t.Fatalf("the key is bound to %v (%v), want the new serial %s", b.Serial, err, again.Record.Serial)
		}
	})
	// A revocation interrupted after its index entry: the CRL lists the certificate while its record still says
	// issued. It is revoked for every relying party, so a replay neither hands it out nor counts it as live.
	t.Run("revoked-in-the-index-only", func(t *testing.T) {
		f := newFixture(t, nil)
		first, err := f.iss.Issue(ctx, f.request(t, nil, "indexed", "tx-idx"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.AddRevoked(ctx, store.Revoked{Serial: first.Record.Serial, RevokedAt: time.Now(), Reason: 1}); err != nil {
			t.Fatal(err)
		}
		if res, err := f.iss.Replay(ctx, "tx-idx", leafKey.Public(), 0); !errors.Is(err, ErrRevoked) {
			t.Fatalf("Replay of a certificate the index lists = %v, %v; want ErrRevoked", res, err)
		}
		req := f.request(t, nil, "indexed", "tx-idx")
		req.ReissueRevoked = true
		again, err := f.iss.Issue(ctx, req)
		if err != nil || again.Replayed || again.Record.Serial == first.Record.Serial {
			t.Fatalf("Issue with ReissueRevoked = %v, %v; want a new certificate", again, err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		f := newFixture(t, nil)
		now := time.Now()
		f.iss.now = func() time.Time { return now }
		first, err := f.iss.Issue(ctx, f.request(t, nil, "expired", "tx-exp"))
		if err != nil {
			t.Fatal(err)
		}
		now = first.Cert.NotAfter.Add(time.Second)
		if res, err := f.iss.Replay(ctx, "tx-exp", leafKey.Public(), 0); err != nil || res != nil {
			t.Fatalf("Replay of an expired certificate = %v, %v; want nothing to replay", res, err)
		}
	})
}

// TestNotAfterCap: a cap (a renewal chain's end) ends the certificate no later than the cap.
func TestNotAfterCap(t *testing.T) {
	f := newFixture(t, nil)
	req := f.request(t, nil, "capped", "")
	req.NotAfterCap = time.Now().Add(48 * time.Hour)
	req.RenewedFrom, req.ChainStarted = "5C01", time.Now().Add(-time.Hour)
	req.ChainEnds = time.Now().Add(90 * 24 * time.Hour)
	res, err := f.iss.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cert.NotAfter.After(req.NotAfterCap) {
		t.Fatalf("notAfter %v after the cap %v", res.Cert.NotAfter, req.NotAfterCap)
	}
	if res.Record.RenewedFrom != "5C01" || !res.Record.ChainStarted.Equal(req.ChainStarted) ||
		!res.Record.ChainEnds.Equal(req.ChainEnds) {
		t.Fatalf("record renewed_from %q chain_started %v chain_ends %v", res.Record.RenewedFrom,
			res.Record.ChainStarted, res.Record.ChainEnds)
	}
}

// notify is a delivery gate that accepts, as the Intune success notification does, and counts its calls.
func notify(calls *atomic.Int32) func(context.Context, *store.Record, *x509.Certificate) error {
	return func(_ context.Context, rec *store.Record, _ *x509.Certificate) error {
		calls.Add(1)
		rec.IntuneNotified = true
		return nil
	}
}

// TestReleasable: a stored certificate may be handed out again unless withheld; one issued behind a delivery gate
// only once its record shows the gate passed, and until then it is in progress for deliverWindow after the record's
// last write and withheld after that.
func TestReleasable(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	f.iss.now = func() time.Time { return now }
	for _, tc := range []struct {
		name                      string
		gated, notified, withheld bool
		age                       time.Duration
		want                      error
		recordGated               bool // the record's own mark (store.Record.Gated)
	}{
		{"ungated", false, false, false, time.Hour, nil, false},
		// The endpoint no longer says gated (its challenge was switched to static), the record still does.
		{"record gated, gate is over", false, false, false, deliverWindow, ErrWithheld, true},
		{"record gated, gate may still run", false, false, false, 0, ErrInProgress, true},
		{"record gated, notified", false, true, false, time.Hour, nil, true},
		{"ungated, withheld", false, false, true, 0, ErrWithheld, false},
		{"gated, notified", true, true, false, time.Hour, nil, false},
		{"gated, notified, withheld", true, true, true, 0, ErrWithheld, false},
		{"gated, just written", true, false, false, 0, ErrInProgress, false},
		{"gated, gate may still run", true, false, false, deliverWindow - time.Second, ErrInProgress, false},
		{"gated, gate is over", true, false, false, deliverWindow, ErrWithheld, false},
		{"gated, withheld", true, false, true, 0, ErrWithheld, false},
	} {
		rec := &store.Record{Serial: "01", Status: store.StatusIssued, IntuneNotified: tc.notified, Withheld: tc.withheld,
			Updated: now.Add(-tc.age), Gated: tc.recordGated}
		if err := f.iss.Releasable(rec, tc.gated); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestGatedRequestNeedsItsGate: a request marked Gated without a Deliver is refused before anything is written or
// signed (its certificate would leave ungated, while every replay waited for a gate that never runs).
func TestGatedRequestNeedsItsGate(t *testing.T) {
	f := newFixture(t, nil)
	req := f.request(t, nil, "gated", "tx-gated")
	req.Gated = true
	if res, err := f.iss.Issue(context.Background(), req); err == nil || res != nil {
		t.Fatalf("Issue = %v, %v; want an error", res, err)
	}
	if page, _, _ := f.st.Search(context.Background(), store.Query{Limit: 10}); len(page) != 0 || f.signer.signs.Load() != 0 {
		t.Fatalf("%d records, %d signatures; want none", len(page), f.signer.signs.Load())
	}
}

// TestGatedCertificateOfALostIssuedWrite: the issued write commits but its answer is lost, and the store stays
// unavailable for the rest of the write's deadline, so Issue fails and the gate never runs. Every replay — gated (ReplayRequest, or Issue meeting the key claim) or not (the record's own
// mark decides, whatever the caller's endpoint now says) — is in progress while the gate could still be running and
// withheld after, and never runs the gate itself.
func TestGatedCertificateOfALostIssuedWrite(t *testing.T) {
	fs := storetest.NewFaultStore(memstore.New())
	f := newFixture(t, fs)
	now := time.Now()
	f.iss.now = func() time.Time { return now }
	ctx := context.Background()
	var calls atomic.Int32
	gatedReq := func() *Request {
		req := f.request(t, nil, "lost", "tx-lost")
		req.Gated, req.Deliver = true, notify(&calls)
		return req
	}
	fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1, Commit: true})
	fs.Inject(storetest.Fault{Method: storetest.MethodUpdate}) // and every later try
	if res, err := f.iss.Issue(ctx, gatedReq()); err == nil || res != nil {
		t.Fatalf("Issue = %v, %v; want the lost write's error", res, err)
	}
	fs.Clear()
	if res, err := f.iss.Replay(ctx, "tx-lost", leafKey.Public(), 0); !errors.Is(err, ErrInProgress) || res != nil {
		t.Fatalf("ungated Replay = %v, %v; want ErrInProgress (the record carries the gate)", res, err)
	}
	if res, err := f.iss.ReplayRequest(ctx, gatedReq()); !errors.Is(err, ErrInProgress) || res != nil {
		t.Fatalf("gated ReplayRequest = %v, %v; want ErrInProgress", res, err)
	}
	if res, err := f.iss.Issue(ctx, gatedReq()); !errors.Is(err, ErrInProgress) || res != nil {
		t.Fatalf("gated Issue = %v, %v; want ErrInProgress", res, err)
	}
	now = now.Add(deliverWindow + time.Minute) // the store stamped the record a little after now
	if res, err := f.iss.ReplayRequest(ctx, gatedReq()); !errors.Is(err, ErrWithheld) || res != nil {
		t.Fatalf("gated ReplayRequest after the window = %v, %v; want ErrWithheld", res, err)
	}
	if res, err := f.iss.Issue(ctx, gatedReq()); !errors.Is(err, ErrWithheld) || res != nil {
		t.Fatalf("gated Issue after the window = %v, %v; want ErrWithheld", res, err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the delivery gate ran %d times for a certificate whose issuance failed", n)
	}
	if n := f.signer.signs.Load(); n != 1 {
		t.Fatalf("signatures = %d, want 1", n)
	}
}

// TestAcceptedDeliveryIsDurableBeforeTheCertificateLeaves: Issue returns a gated certificate only once its record
// durably shows the gate passed. A lost bookkeeping write is made again (or found committed); lost until the write's
// deadline, the certificate does not leave and the answer is ErrInProgress (not a failure: the gate accepted it). A gate that
// returns no error without recording its pass withholds the certificate.
func TestAcceptedDeliveryIsDurableBeforeTheCertificateLeaves(t *testing.T) {
	// Update 1: pending → issued. Update 2: the gate's bookkeeping. Update 3 on: its next tries, while the store is
	// unavailable, until the write's deadline.
	for _, tc := range []struct {
		name   string
		faults []storetest.Fault
		want   error
	}{
		{"no fault", nil, nil},
		{"lost once", []storetest.Fault{{Method: storetest.MethodUpdate, Nth: 2}}, nil},
		{"committed, answer lost", []storetest.Fault{{Method: storetest.MethodUpdate, Nth: 2, Commit: true}}, nil},
		{"lost twice", []storetest.Fault{{Method: storetest.MethodUpdate, Nth: 2}, {Method: storetest.MethodUpdate, Nth: 3}}, nil},
		{"committed, then unavailable, read back late", []storetest.Fault{{Method: storetest.MethodUpdate, Nth: 2, Commit: true},
			{Method: storetest.MethodUpdate, Nth: 3}, {Method: storetest.MethodGet, Nth: 1}}, nil},
		{"down for the write's deadline", failFrom(storetest.MethodUpdate, 2), ErrInProgress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := storetest.NewFaultStore(memstore.New())
			f := newFixture(t, fs)
			for _, ft := range tc.faults {
				fs.Inject(ft)
			}
			var calls atomic.Int32
			req := f.request(t, nil, "durable", "tx-durable")
			req.Gated, req.Deliver = true, notify(&calls)
			res, err := f.iss.Issue(context.Background(), req)
			page, _, _ := fs.Inner().Search(context.Background(), store.Query{Limit: 10})
			if len(page) != 1 || page[0].Status != store.StatusIssued || page[0].Withheld {
				t.Fatalf("want one issued record, not withheld; got %d", len(page))
			}
			if !page[0].Gated {
				t.Fatal("the record of a gated request does not carry the gate (store.Record.Gated)")
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) || res != nil {
					t.Fatalf("Issue = %v, %v; want %v and no certificate", res, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !page[0].IntuneNotified || !res.Record.IntuneNotified || !bytes.Equal(page[0].CertDER, res.Cert.Raw) {
				t.Fatalf("certificate returned while the record shows notified %v", page[0].IntuneNotified)
			}
			if calls.Load() != 1 {
				t.Fatalf("the gate ran %d times, want 1", calls.Load())
			}
		})
	}
	t.Run("gate passed without recording it", func(t *testing.T) {
		f := newFixture(t, nil)
		req := f.request(t, nil, "silent", "tx-silent")
		req.Gated = true
		req.Deliver = func(context.Context, *store.Record, *x509.Certificate) error { return nil }
		if res, err := f.iss.Issue(context.Background(), req); !errors.Is(err, ErrWithheld) || res != nil {
			t.Fatalf("Issue = %v, %v; want ErrWithheld", res, err)
		}
	})
}

// TestRenewLink: a renewal's issuance points the renewed record at the new one (one more Update, on renewals
// only); a conflict re-reads and writes again while the link is still what the caller saw, and leaves a link
// someone else moved; a failure only logs; a withheld certificate is never linked.
func TestRenewLink(t *testing.T) {
	old := func(t *testing.T, f *fixture) *store.Record {
		t.Helper()
		res, err := f.iss.Issue(context.Background(), f.request(t, nil, "old", "tx-old"))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := f.st.Get(context.Background(), res.Record.Serial)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	renew := func(t *testing.T, f *fixture, prev *store.Record, tx string) *Result {
		t.Helper()
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		req := f.request(t, k, "old", tx)
		req.RenewedFrom, req.Renews = prev.Serial, prev
		res, err := f.iss.Issue(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	linked := func(t *testing.T, f *fixture, serial string) string {
		t.Helper()
		r, err := f.st.Get(context.Background(), serial)
		if err != nil {
			t.Fatal(err)
		}
		return r.RenewedTo
	}

	t.Run("written before the certificate is returned", func(t *testing.T) {
		fs := storetest.NewFaultStore(memstore.New())
		f := newFixture(t, fs)
		f.signer.st = fs.Inner()
		prev := old(t, f)
		before := fs.Calls(storetest.MethodUpdate)
		res := renew(t, f, prev, "tx-new")
		if n := fs.Calls(storetest.MethodUpdate) - before; n != 2 {
			t.Errorf("%d updates for the renewal, want 2 (issued, link)", n)
		}
		if got := linked(t, f, prev.Serial); got != res.Record.Serial {
			t.Errorf("renewed_to = %q, want %s", got, res.Record.Serial)
		}
		if prev.RenewedTo != "" {
			t.Error("the caller's record was changed")
		}
	})

	t.Run("earlier successor revoked after the check: the link stays on it", func(t *testing.T) {
		// The renewal check passed while the earlier successor was live; it was revoked before this renewal wrote
		// its link. Revoke found the link already on it and wrote nothing, so the move must not hide it.
		f := newFixture(t, nil)
		prev := old(t, f)
		first := renew(t, f, prev, "tx-first")
		prev, _ = f.st.Get(context.Background(), prev.Serial) // as the second renewal's check read it
		y1, _ := f.st.Get(context.Background(), first.Record.Serial)
		y1.Status, y1.RevokedAt, y1.RevocationReason = store.StatusRevoked, time.Now(), store.KeyCompromise
		if err := f.st.Update(context.Background(), y1, store.StatusIssued); err != nil {
			t.Fatal(err)
		}
		renew(t, f, prev, "tx-second")
		if got := linked(t, f, prev.Serial); got != first.Record.Serial {
			t.Errorf("renewed_to = %q, want the revoked earlier successor %s", got, first.Record.Serial)
		}
	})

	t.Run("conflict, link unchanged: written again", func(t *testing.T) {
		f := newFixture(t, nil)
		prev := old(t, f)
		cur, _ := f.st.Get(context.Background(), prev.Serial)
		cur.Note = "touched" // another writer: prev's ETag is stale
		if err := f.st.Update(context.Background(), cur, store.StatusIssued); err != nil {
			t.Fatal(err)
		}
		res := renew(t, f, prev, "tx-new")
		got, _ := f.st.Get(context.Background(), prev.Serial)
		if got.RenewedTo != res.Record.Serial || got.Note != "touched" {
			t.Errorf("renewed_to %q note %q, want %s and the other writer's note", got.RenewedTo, got.Note, res.Record.Serial)
		}
	})

	t.Run("conflict, link moved: left", func(t *testing.T) {
		f := newFixture(t, nil)
		prev := old(t, f)
		cur, _ := f.st.Get(context.Background(), prev.Serial)
		cur.RenewedTo = "ABCDEF" // a revocation pointed it at a revoked successor meanwhile
		if err := f.st.Update(context.Background(), cur, store.StatusIssued); err != nil {
			t.Fatal(err)
		}
		renew(t, f, prev, "tx-new")
		if got := linked(t, f, prev.Serial); got != "ABCDEF" {
			t.Errorf("renewed_to = %q, want the link someone else moved it to", got)
		}
	})

	t.Run("unavailable once: tried again", func(t *testing.T) {
		fs := storetest.NewFaultStore(memstore.New())
		f := newFixture(t, fs)
		f.signer.st = fs.Inner()
		prev := old(t, f)
		fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 2}) // 1: issued; 2: the link
		res := renew(t, f, prev, "tx-new")
		if got := linked(t, f, prev.Serial); got != res.Record.Serial {
			t.Errorf("renewed_to = %q, want %s", got, res.Record.Serial)
		}
	})

	t.Run("failure only logs", func(t *testing.T) {
		fs := storetest.NewFaultStore(memstore.New())
		f := newFixture(t, fs)
		f.signer.st = fs.Inner()
		prev := old(t, f)
		for _, ft := range failFrom(storetest.MethodUpdate, 2) { // 1: issued; 2 on: the link, until its deadline
			fs.Inject(ft)
		}
		res := renew(t, f, prev, "tx-new")
		if res.Record.Status != store.StatusIssued {
			t.Errorf("renewal %s", res.Record.Status)
		}
		if got := linked(t, f, prev.Serial); got != "" {
			t.Errorf("renewed_to = %q although its write failed", got)
		}
	})

	t.Run("withheld: not linked", func(t *testing.T) {
		f := newFixture(t, nil)
		prev := old(t, f)
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		req := f.request(t, k, "old", "tx-new")
		req.RenewedFrom, req.Renews, req.Gated = prev.Serial, prev, true
		req.Deliver = func(context.Context, *store.Record, *x509.Certificate) error { return errors.New("intune says no") }
		if _, err := f.iss.Issue(context.Background(), req); !errors.Is(err, ErrWithheld) {
			t.Fatalf("Issue = %v, want ErrWithheld", err)
		}
		if got := linked(t, f, prev.Serial); got != "" {
			t.Errorf("renewed_to = %q for a withheld certificate", got)
		}
	})
}

// TestReauthorizeBeforeSignature: Reauthorize runs with the pending record durable and before the CA signs; its
// refusal is returned as it is, nothing is signed, and the record is abandoned with the reason.
func TestReauthorizeBeforeSignature(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	refusal := errors.New("signer revoked meanwhile")
	req := f.request(t, nil, "reauth", "tx-reauth")
	var pendingSeen bool
	req.Reauthorize = func(ctx context.Context) error {
		page, _, err := f.st.Search(ctx, store.Query{Status: store.StatusPending, Limit: 10})
		pendingSeen = err == nil && len(page) == 1
		return refusal
	}
	if _, err := f.iss.Issue(context.Background(), req); !errors.Is(err, refusal) {
		t.Fatalf("Issue = %v, want the refusal", err)
	}
	if !pendingSeen {
		t.Error("Reauthorize ran before the pending record was durable")
	}
	if n := f.signer.signs.Load(); n != 0 {
		t.Errorf("%d signatures after the refusal", n)
	}
	page, _, err := f.st.Search(context.Background(), store.Query{Limit: 10})
	if err != nil || len(page) != 1 || page[0].Status != store.StatusAbandoned ||
		!strings.Contains(page[0].Note, refusal.Error()) {
		t.Fatalf("records %+v, %v; want one abandoned, saying why", page, err)
	}
	// Without a refusal the request is signed as usual, also when its client hung up meanwhile: the read runs
	// detached, like the signature, so the retry finds a certificate to replay rather than an abandoned record.
	req = f.request(t, nil, "reauth-ok", "tx-reauth-ok")
	ctx, hangUp := context.WithCancel(context.Background())
	req.Reauthorize = func(actx context.Context) error {
		hangUp()
		return actx.Err()
	}
	if _, err := f.iss.Issue(ctx, req); err != nil || f.signer.signs.Load() != 1 {
		t.Fatalf("Issue = %v with %d signatures, want a certificate", err, f.signer.signs.Load())
	}
}

// TestNameConstraintsRefusal: under an issuing CA whose name constraints (RFC 5280 §4.2.1.10) permit only
// ".corp.example", a profile that allows any DNS name still gets a.corp.example issued, while a.other.example is
// refused by the lint as a policy refusal (policy.CodeNameConstraints) before any record or signature.
func TestNameConstraintsRefusal(t *testing.T) {
	iss, st, as, ca := auditedIssuer(t, "Constrained Issuing CA", func(c *x509.Certificate) {
		c.PermittedDNSDomainsCritical, c.PermittedDNSDomains = true, []string{".corp.example"}
	}, Config{})
	request := func(dns string) *Request { return deviceRequest(t, leafKey, dns) }

	_, err := iss.Issue(context.Background(), request("a.other.example"))
	r, ok := policy.AsRejection(err)
	if !ok || r.Code != policy.CodeNameConstraints || !strings.Contains(r.Detail, `"a.other.example"`) {
		t.Fatalf("Issue(a.other.example) = %v, want a %s rejection naming it", err, policy.CodeNameConstraints)
	}
	if page, _, _ := st.Search(context.Background(), store.Query{Limit: 10}); len(page) != 0 || as.signs.Load() != 0 {
		t.Fatalf("refusal left %d records and %d signatures, want none", len(page), as.signs.Load())
	}
	if _, err := st.Lookup(context.Background(), request("a.other.example").Key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refusal claimed its idempotency key: %v", err)
	}

	res, err := iss.Issue(context.Background(), request("a.corp.example"))
	if err != nil {
		t.Fatalf("Issue(a.corp.example): %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := res.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify under the constrained CA: %v", err)
	}
}

// markedKeys is a KeyMarks holding one compromised key.
type markedKeys struct{ hash string }

func (m markedKeys) Compromised(_ context.Context, h string) (store.CompromisedKey, bool, error) {
	if h == m.hash {
		return store.CompromisedKey{PublicKey: h, Serial: "0A"}, true, nil
	}
	return store.CompromisedKey{}, false, nil
}

// TestCompromisedKeyRefusal: a key marked compromised is a policy refusal, key_compromised, before any record,
// claim or signature, whatever the door; another key is issued as usual.
func TestCompromisedKeyRefusal(t *testing.T) {
	iss, st, as, _ := auditedIssuer(t, "Marks CA", nil,
		Config{CompromisedKeys: markedKeys{hash: store.SPKIHash(mustSPKI(t, leafKey))}})
	request := func(key crypto.Signer) *Request { return deviceRequest(t, key, "laptop-7.corp.example") }
	_, err := iss.Issue(context.Background(), request(leafKey))
	if r, ok := policy.AsRejection(err); !ok || r.Code != policy.CodeKeyCompromised {
		t.Fatalf("Issue with the marked key = %v, want a %s rejection", err, policy.CodeKeyCompromised)
	}
	if page, _, _ := st.Search(context.Background(), store.Query{Limit: 10}); len(page) != 0 || as.signs.Load() != 0 {
		t.Fatalf("refusal left %d records and %d signatures, want none", len(page), as.signs.Load())
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue(context.Background(), request(other)); err != nil {
		t.Fatalf("Issue with another key: %v", err)
	}
}

func mustSPKI(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return spki
}

// TestAcceptedDeliveryOntoAWithheldRecord: when the gate's bookkeeping write meets a record that changed meanwhile
// and is now withheld, the acceptance is not written onto it and the certificate does not leave: a withheld
// certificate never leaves, whoever marked it.
func TestAcceptedDeliveryOntoAWithheldRecord(t *testing.T) {
	f := newFixture(t, nil)
	req := f.request(t, nil, "withheld-meanwhile", "tx-withheld-meanwhile")
	req.Gated = true
	req.Deliver = func(ctx context.Context, rec *store.Record, _ *x509.Certificate) error {
		// Another writer withholds the stored record while the gate runs: the bookkeeping write below conflicts.
		cur, err := f.st.Get(ctx, rec.Serial)
		if err != nil {
			return err
		}
		cur.Withheld, cur.Note = true, "withheld by another writer"
		if err := f.st.Update(ctx, cur, store.StatusIssued); err != nil {
			return err
		}
		rec.IntuneNotified = true
		return nil
	}
	res, err := f.iss.Issue(context.Background(), req)
	if res != nil || err == nil {
		t.Fatalf("Issue = %v, %v; want no certificate for a record withheld meanwhile", res, err)
	}
	page, _, _ := f.st.Search(context.Background(), store.Query{Limit: 10})
	if len(page) != 1 || !page[0].Withheld || page[0].IntuneNotified {
		t.Fatalf("stored record withheld %v, notified %v; want withheld and not notified", page[0].Withheld, page[0].IntuneNotified)
	}
}

// TestGateOutlivesTheClient: a client that hangs up once its certificate is signed must not turn it into a
// withheld one: the delivery gate and the write recording its outcome run detached from the request, so Intune is
// told, the record says so, and the client's retry replays the certificate.
func TestGateOutlivesTheClient(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := f.request(t, nil, "hangup", "tx-hangup")
	req.Gated = true
	req.Signed = func(*x509.Certificate) { cancel() } // the client goes away right after the signature
	req.Deliver = func(dctx context.Context, rec *store.Record, _ *x509.Certificate) error {
		if err := dctx.Err(); err != nil {
			return fmt.Errorf("delivering: %w", err)
		}
		rec.IntuneNotified = true
		return nil
	}
	if _, err := f.iss.Issue(ctx, req); err != nil {
		t.Fatalf("Issue whose client hung up after the signature: %v", err)
	}
	page, _, _ := f.st.Search(context.Background(), store.Query{Limit: 10})
	if len(page) != 1 || page[0].Withheld || !page[0].IntuneNotified {
		t.Fatalf("stored record withheld %v, notified %v; want delivered", page[0].Withheld, page[0].IntuneNotified)
	}
	res, err := f.iss.Replay(context.Background(), req.Key, req.Checked.PublicKey, 0)
	if err != nil || res == nil {
		t.Fatalf("the retry's replay = %v, %v; want the delivered certificate", res, err)
	}
}

// auditedIssuer is an Issuer over a memstore whose CA, self-signed with a P-256 key (auditSigner matches SHA-256
// digests), edit may change before it is signed (name constraints, say); cfg's CA and Store are set here.
func auditedIssuer(t *testing.T, name string, edit func(*x509.Certificate), cfg Config) (*Issuer, *memstore.Store, *auditSigner, *x509.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	as := &auditSigner{Signer: caKey, st: st, t: t}
	cfg.CA, cfg.Store = CA{Cert: ca, Signer: as}, st
	if cfg.Backdate == 0 {
		cfg.Backdate = 5 * time.Minute
	}
	iss, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return iss, st, as, ca
}

// deviceRequest is an /api/csr request for CN=laptop-7 with the DNS name dns and key, checked against the
// device profile (any DNS name); its idempotency key is per name and key.
func deviceRequest(t *testing.T, key crypto.Signer, dns string) *Request {
	t.Helper()
	prof, err := policy.ParseProfile("device", "validity=30d;ku=digitalSignature;eku=clientAuth;dns=*")
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "laptop-7"}, DNSNames: []string{dns}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := policy.ParseCSR(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := policy.Check(csr, prof)
	if err != nil {
		t.Fatalf("policy refused %s: %v", dns, err)
	}
	return &Request{Checked: checked, Profile: prof, Source: store.SourceAPI, Endpoint: "api", Requester: "test",
		Key: "k|" + dns + "|" + store.SPKIHash(mustSPKI(t, key))}
}
