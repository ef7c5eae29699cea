package scep_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// fakeIntune records every call and answers as scripted.
type fakeIntune struct {
	mu                          sync.Mutex
	validateErr, notifyErr      error
	validated, notified, failed []string // transaction IDs
	notifiedSerials             []string
	failCauses                  []error
}

func (f *fakeIntune) Validate(_ context.Context, txID string, csrDER []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(csrDER) == 0 {
		return errors.New("fake intune: empty CSR")
	}
	f.validated = append(f.validated, txID)
	return f.validateErr
}

func (f *fakeIntune) NotifySuccess(_ context.Context, txID string, _ []byte, rec *store.Record, cert *x509.Certificate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notified = append(f.notified, txID)
	if rec.Status != store.StatusIssued || hexSerial(cert) != rec.Serial {
		return fmt.Errorf("fake intune: notified before the record was durable (status %s)", rec.Status)
	}
	f.notifiedSerials = append(f.notifiedSerials, rec.Serial)
	rec.IntuneNotified = f.notifyErr == nil
	return f.notifyErr
}

func (f *fakeIntune) NotifyFailure(_ context.Context, txID string, _ []byte, cause error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, txID)
	f.failCauses = append(f.failCauses, cause)
	return nil
}

func (f *fakeIntune) counts() (v, n, fl int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.validated), len(f.notified), len(f.failed)
}

func intuneEnv(t *testing.T, f *fakeIntune, wrap func(store.Store) store.Store) *env {
	t.Helper()
	return newEnv(t, envOptions{intune: f, wrap: wrap, endpoints: []*scep.Endpoint{
		{Name: "intune", Challenge: scep.ChallengeIntune, Profile: testProfile(t)}}})
}

// The Intune challenge is opaque to us: any string; Intune decides.
const intuneChallenge = "eyJhbGciOi-not-our-business"

func intuneRequest(t *testing.T, e *env, n int) (*testca.Client, *x509.CertificateRequest, *testca.Request) {
	t.Helper()
	c := e.client(t, n, "intune-device")
	csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "intune-device"},
		ChallengePassword: intuneChallenge})
	return c, csr, c.PKCSReq(t, csr)
}

func TestIntuneSuccessAndReplay(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{}
	e := intuneEnv(t, f, nil)
	c, csr, req := intuneRequest(t, e, 0)
	cert := wantSuccess(t, e.pki(t, "intune", req))
	if v, n, fl := f.counts(); v != 1 || n != 1 || fl != 0 {
		t.Fatalf("validate %d, notify %d, failure %d; want 1, 1, 0", v, n, fl)
	}
	if f.notifiedSerials[0] != hexSerial(cert) || f.validated[0] != req.TransactionID {
		t.Error("Intune was told about another transaction or serial")
	}
	if rec, err := e.mem.Get(context.Background(), hexSerial(cert)); err != nil || !rec.IntuneNotified {
		t.Fatalf("the record does not show the accepted notification: %v", err)
	}

	// The device retries: the stored certificate, and no second validation or notification.
	again := wantSuccess(t, e.pki(t, "intune", c.PKCSReq(t, csr)))
	if !again.Equal(cert) {
		t.Fatal("replay returned another certificate")
	}
	if v, n, _ := f.counts(); v != 1 || n != 1 {
		t.Fatalf("after replay: validate %d, notify %d; want 1, 1", v, n)
	}
}

func TestIntuneRejects(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{validateErr: &intune.ValidationError{Operation: "validateRequest", Code: "ChallengeExpired"}}
	e := intuneEnv(t, f, nil)
	_, _, req := intuneRequest(t, e, 0)
	wantFailure(t, e.pki(t, "intune", req), testca.FailBadRequest)
	if v, n, _ := f.counts(); v != 1 || n != 0 {
		t.Fatalf("validate %d, notify %d", v, n)
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records after Intune said no", n)
	}
}

// TestIntuneEndpointRefusesASecondIdentity: a CSR with two SID URIs or two IntuneDeviceId URIs is refused by
// policy (FAILURE badRequest) before Intune is asked: a certificate names at most one account and one device,
// whatever Intune would say.
func TestIntuneEndpointRefusesASecondIdentity(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{}
	e := intuneEnv(t, f, nil)
	dev := func(id string) *url.URL { return &url.URL{Scheme: "IntuneDeviceId", Host: id} }
	for i, uris := range [][]*url.URL{
		{testca.IntuneSIDURI("S-1-5-21-1-2-3-500"), testca.IntuneSIDURI("S-1-5-21-1-2-3-1001")},
		{dev("5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"), dev("6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11")},
	} {
		c := e.client(t, i, "intune-device")
		csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "intune-device"},
			ChallengePassword: intuneChallenge, URIs: uris})
		wantFailure(t, e.pki(t, "intune", c.PKCSReq(t, csr)), testca.FailBadRequest)
	}
	if v, n, _ := f.counts(); v != 0 || n != 0 {
		t.Fatalf("validate %d, notify %d; want Intune never asked", v, n)
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records after refused requests", n)
	}
}

func TestIntuneUnavailable(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{validateErr: fmt.Errorf("validateRequest: %w", intune.ErrUnavailable)}
	e := intuneEnv(t, f, nil)
	_, _, req := intuneRequest(t, e, 0)
	// Fail closed, and blame nobody's request: 503 with Retry-After, no CertRep (the device retries).
	if resp, body := testca.Post(t, e.url("intune"), req.Raw); resp.StatusCode != http.StatusServiceUnavailable ||
		resp.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP %d Retry-After %q (%d bytes), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), len(body))
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records while Intune was down", n)
	}
}

// TestIntuneNotificationRefused: Intune refusing successNotification withholds the signed certificate for good.
func TestIntuneNotificationRefused(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{notifyErr: &intune.ValidationError{Operation: "successNotification", Code: "Failure"}}
	e := intuneEnv(t, f, nil)
	c, csr, req := intuneRequest(t, e, 0)
	wantFailure(t, e.pki(t, "intune", req), testca.FailBadRequest)
	recs := e.records(t)
	if len(recs) != 1 || recs[0].Status != store.StatusIssued || !recs[0].Withheld {
		t.Fatalf("want one issued, withheld record; got %d", len(recs))
	}
	wantFailure(t, e.pki(t, "intune", c.PKCSReq(t, csr)), testca.FailBadRequest)
	if v, n, _ := f.counts(); v != 1 || n != 1 {
		t.Fatalf("a withheld replay reached Intune again: validate %d, notify %d", v, n)
	}
}

// TestIntuneFailureNotification: issuance failing after a successful validation is reported to Intune.
func TestIntuneFailureNotification(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{}
	boom := errors.New("table rejected the entity")
	e := intuneEnv(t, f, func(s store.Store) store.Store {
		fs := storetest.NewFaultStore(s)
		fs.Inject(storetest.Fault{Method: storetest.MethodInsertBound, Err: boom})
		return fs
	})
	_, _, req := intuneRequest(t, e, 0)
	// The store's failure, not the request's: 500 and no CertRep.
	if resp, body := testca.Post(t, e.url("intune"), req.Raw); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("HTTP %d (%d bytes), want 500", resp.StatusCode, len(body))
	}
	if v, n, fl := f.counts(); v != 1 || n != 0 || fl != 1 {
		t.Fatalf("validate %d, notify %d, failure %d; want 1, 0, 1", v, n, fl)
	}
	if !errors.Is(f.failCauses[0], boom) || f.failed[0] != req.TransactionID {
		t.Errorf("failureNotification cause %v", f.failCauses[0])
	}
}

// heldIntune is fakeIntune whose successNotification, once called, waits until the test releases it.
type heldIntune struct {
	*fakeIntune
	entered, release chan struct{}
	enterOnce        sync.Once
}

func newHeldIntune(f *fakeIntune) *heldIntune {
	return &heldIntune{fakeIntune: f, entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldIntune) NotifySuccess(ctx context.Context, txID string, csrDER []byte, rec *store.Record, cert *x509.Certificate) error {
	h.enterOnce.Do(func() { close(h.entered) })
	<-h.release
	return h.fakeIntune.NotifySuccess(ctx, txID, csrDER, rec, cert)
}

// asyncAnswer is the answer to a request sent in the background.
type asyncAnswer struct {
	resp *http.Response
	body []byte
	err  error
}

// postAsync posts req to endpoint in the background.
func (e *env) postAsync(endpoint string, req *testca.Request) <-chan asyncAnswer {
	done := make(chan asyncAnswer, 1)
	go func() {
		resp, err := http.Post(e.url(endpoint)+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(req.Raw))
		if err != nil {
			done <- asyncAnswer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- asyncAnswer{resp: resp, body: body, err: err}
	}()
	return done
}

// askedAgain is what a device hears when it asks again for the certificate of its one enrollment: the same
// PKCSReq (same transaction ID and key), a CertPoll for the transaction and a GetCert for the serial, all signed
// with its key.
type askedAgain struct{ retry, poll, get *testca.CertRep }

// wantHeldThenRefused asks again while the notification could still be running (told to wait) and once it cannot
// be any more (refused): a certificate whose acceptance was never recorded is never given.
func (e *env) wantHeldThenRefused(t *testing.T, endpoint string, c *testca.Client, csr *x509.CertificateRequest) {
	t.Helper()
	e.askAgain(t, endpoint, c, csr).wantNotYet(t)
	e.afterDelivery()
	e.askAgain(t, endpoint, c, csr).wantRefused(t)
}

func (e *env) askAgain(t *testing.T, endpoint string, c *testca.Client, csr *x509.CertificateRequest) askedAgain {
	t.Helper()
	recs := e.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records, want the enrollment's one", len(recs))
	}
	serial, ok := new(big.Int).SetString(recs[0].Serial, 16)
	if !ok {
		t.Fatalf("record serial %q", recs[0].Serial)
	}
	return askedAgain{
		retry: e.pki(t, endpoint, c.PKCSReq(t, csr)),
		poll:  e.pki(t, endpoint, c.CertPoll(t, testca.TransactionID(t, csr.PublicKey), e.ca.Cert, csr.Subject)),
		get:   e.pki(t, endpoint, c.GetCert(t, e.ca.Cert, serial)),
	}
}

// wantNotYet asserts that every way of asking again was told to wait (GetCert has no PENDING: badCertID, as
// for a pending record) and got no certificate.
func (a askedAgain) wantNotYet(t *testing.T) {
	t.Helper()
	for name, rep := range map[string]*testca.CertRep{"retry": a.retry, "CertPoll": a.poll} {
		if rep.Status != testca.StatusPending || len(rep.Certificates) != 0 {
			t.Errorf("%s: status %q failInfo %q with %d certificates, want PENDING", name, rep.Status, rep.FailInfo,
				len(rep.Certificates))
		}
	}
	wantFailure(t, a.get, testca.FailBadCertID)
}

// wantRefused asserts the answers for a withheld certificate: FAILURE everywhere, no certificate.
func (a askedAgain) wantRefused(t *testing.T) {
	t.Helper()
	wantFailure(t, a.retry, testca.FailBadRequest)
	wantFailure(t, a.poll, testca.FailBadCertID)
	wantFailure(t, a.get, testca.FailBadCertID)
}

// wantGiven asserts that every way of asking again got cert.
func (a askedAgain) wantGiven(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	for name, rep := range map[string]*testca.CertRep{"retry": a.retry, "CertPoll": a.poll, "GetCert": a.get} {
		if got := wantSuccess(t, rep); !got.Equal(cert) {
			t.Errorf("%s returned another certificate", name)
		}
	}
}

// afterDelivery moves the issuer's clock past the longest a successNotification (with the writes around it) can
// still be in flight.
func (e *env) afterDelivery() { e.issuerOffset.Store(int64(10 * time.Minute)) }

// TestIntuneCertificateWaitsForSuccessNotification: while successNotification is in flight (the issued record is
// durable, IntuneNotified still false), the device's retry of the same PKCSReq and its CertPoll are told PENDING
// and a GetCert of the serial badCertID — none gets the certificate Intune may yet refuse. Once Intune answered,
// they get the certificate if it was accepted and FAILURE if it was refused, and Intune is not called again.
func TestIntuneCertificateWaitsForSuccessNotification(t *testing.T) {
	t.Parallel()
	for _, refused := range []bool{false, true} {
		t.Run(fmt.Sprintf("refused=%t", refused), func(t *testing.T) {
			t.Parallel()
			f := &fakeIntune{}
			if refused {
				f.notifyErr = &intune.ValidationError{Operation: "successNotification", Code: "Failure"}
			}
			h := newHeldIntune(f)
			e := newEnv(t, envOptions{intune: h, endpoints: []*scep.Endpoint{
				{Name: "intune", Challenge: scep.ChallengeIntune, Profile: testProfile(t)}}})
			var once sync.Once
			release := func() { once.Do(func() { close(h.release) }) }
			t.Cleanup(release) // before the server closes: a failing test never leaves the notification hanging
			c, csr, first := intuneRequest(t, e, 0)
			done := e.postAsync("intune", first)
			select {
			case <-h.entered:
			case <-time.After(20 * time.Second):
				t.Fatal("successNotification was never called")
			}

			e.askAgain(t, "intune", c, csr).wantNotYet(t)

			release()
			a := <-done
			if a.err != nil {
				t.Fatal(a.err)
			}
			rep := e.certRep(t, a.resp, a.body, first)
			recs := e.records(t)
			if refused {
				wantFailure(t, rep, testca.FailBadRequest)
				if len(recs) != 1 || !recs[0].Withheld || recs[0].IntuneNotified {
					t.Fatal("want the one record withheld and not notified")
				}
				e.askAgain(t, "intune", c, csr).wantRefused(t)
			} else {
				cert := wantSuccess(t, rep)
				if len(recs) != 1 || recs[0].Withheld || !recs[0].IntuneNotified {
					t.Fatal("want the one record notified and not withheld")
				}
				e.askAgain(t, "intune", c, csr).wantGiven(t, cert)
			}
			if v, n, fl := f.counts(); v != 1 || n != 1 || fl != 0 {
				t.Errorf("validate %d, successNotification %d, failureNotification %d; want 1, 1, 0", v, n, fl)
			}
		})
	}
}

// TestIntuneRefusedCertificateStaysWithheldWhenTheMarkIsLost: Intune refuses successNotification and the write
// marking the record withheld fails, so the record stays issued and not withheld — but it never shows the
// notification accepted. Asking again is told to wait while the notification could still be in flight and refused
// after that: never the certificate Intune refused, and no second Intune call.
func TestIntuneRefusedCertificateStaysWithheldWhenTheMarkIsLost(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{notifyErr: &intune.ValidationError{Operation: "successNotification", Code: "Failure"}}
	e := intuneEnv(t, f, func(s store.Store) store.Store {
		fs := storetest.NewFaultStore(s)
		// Update 1: pending → issued. Update 2: marking the certificate withheld.
		fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 2, Err: errors.New("table storage blip")})
		return fs
	})
	c, csr, req := intuneRequest(t, e, 0)
	wantFailure(t, e.pki(t, "intune", req), testca.FailBadRequest)
	if recs := e.records(t); len(recs) != 1 || recs[0].Status != store.StatusIssued || recs[0].Withheld || recs[0].IntuneNotified {
		t.Fatal("want one issued record, neither withheld nor notified (the withheld mark was lost)")
	}
	e.wantHeldThenRefused(t, "intune", c, csr)
	if v, n, fl := f.counts(); v != 1 || n != 1 || fl != 0 {
		t.Errorf("validate %d, successNotification %d, failureNotification %d; want 1, 1, 0", v, n, fl)
	}
}

// TestLostIssuedWriteIsReplayedOnlyWithoutAGate: the pending → issued write commits but its answer is lost, and the
// store refuses every later try until the write's deadline, so the first attempt gets 503 and the record is issued
// with a certificate nobody has seen. On a static endpoint the
// retry gets that certificate, as the first answer would have. On an Intune endpoint failureNotification was sent
// and successNotification never was: asking again is told to wait and then refused, never given the certificate.
func TestLostIssuedWriteIsReplayedOnlyWithoutAGate(t *testing.T) {
	t.Parallel()
	for _, endpoint := range []string{epStatic, "intune"} {
		t.Run(endpoint, func(t *testing.T) {
			t.Parallel()
			f := &fakeIntune{}
			e := newEnv(t, envOptions{intune: f, endpoints: []*scep.Endpoint{
				{Name: epStatic, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t)},
				{Name: "intune", Challenge: scep.ChallengeIntune, Profile: testProfile(t)}},
				wrap: func(s store.Store) store.Store {
					fs := storetest.NewFaultStore(s)
					fs.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1, Commit: true})
					fs.Inject(storetest.Fault{Method: storetest.MethodUpdate}) // every later try
					return fs
				}})
			c := e.client(t, 0, "lost-write")
			challenge := staticSecret
			if endpoint == "intune" {
				challenge = intuneChallenge
			}
			csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "lost-write"},
				ChallengePassword: challenge})
			resp, body := e.do(t, http.MethodPost, e.url(endpoint)+"?operation=PKIOperation", "application/x-pki-message",
				c.PKCSReq(t, csr).Raw)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("first attempt: HTTP %d %q, want 503", resp.StatusCode, body)
			}
			recs := e.records(t)
			if len(recs) != 1 || recs[0].Status != store.StatusIssued || recs[0].IntuneNotified {
				t.Fatal("want one issued, un-notified record (the write committed)")
			}
			if endpoint == epStatic {
				stored, err := x509.ParseCertificate(recs[0].CertDER)
				if err != nil {
					t.Fatal(err)
				}
				e.askAgain(t, endpoint, c, csr).wantGiven(t, stored)
				return
			}
			e.wantHeldThenRefused(t, endpoint, c, csr)
			if v, n, fl := f.counts(); v != 1 || n != 0 || fl != 1 {
				t.Errorf("validate %d, successNotification %d, failureNotification %d; want 1, 0, 1", v, n, fl)
			}
		})
	}
}

// TestIntuneAcceptedNotificationIsRecordedBeforeTheCertificateLeaves: the write recording that Intune accepted
// successNotification fails. Lost once or twice (with or without committing), it is made again and the device gets
// its certificate with IntuneNotified durable. Lost until the write's deadline, the device is told PENDING — not FAILURE, and no
// failureNotification: Intune has the certificate — and is never given a certificate the records do not show as
// reported to Intune.
func TestIntuneAcceptedNotificationIsRecordedBeforeTheCertificateLeaves(t *testing.T) {
	t.Parallel()
	// Update 1: pending → issued. Update 2: the notification's bookkeeping. Update 3 on: its next tries.
	var lostForGood []storetest.Fault
	for n := 2; n < 100; n++ {
		lostForGood = append(lostForGood, storetest.Fault{Method: storetest.MethodUpdate, Nth: n})
	}
	for _, tc := range []struct {
		name   string
		faults []storetest.Fault
		given  bool
	}{
		{"lost once", []storetest.Fault{{Method: storetest.MethodUpdate, Nth: 2}}, true},
		{"committed, answer lost", []storetest.Fault{{Method: storetest.MethodUpdate, Nth: 2, Commit: true}}, true},
		{"lost twice", []storetest.Fault{{Method: storetest.MethodUpdate, Nth: 2}, {Method: storetest.MethodUpdate, Nth: 3}}, true},
		{"lost for good", lostForGood, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeIntune{}
			e := intuneEnv(t, f, func(s store.Store) store.Store {
				fs := storetest.NewFaultStore(s)
				for _, ft := range tc.faults {
					fs.Inject(ft)
				}
				return fs
			})
			c, csr, req := intuneRequest(t, e, 0)
			rep := e.pki(t, "intune", req)
			recs := e.records(t)
			if len(recs) != 1 || recs[0].Status != store.StatusIssued || recs[0].Withheld {
				t.Fatal("want one issued record, not withheld")
			}
			if tc.given {
				cert := wantSuccess(t, rep)
				if !recs[0].IntuneNotified {
					t.Fatal("certificate delivered while the record does not show it reported to Intune")
				}
				e.askAgain(t, "intune", c, csr).wantGiven(t, cert)
			} else {
				if rep.Status != testca.StatusPending || len(rep.Certificates) != 0 {
					t.Fatalf("status %q failInfo %q, want PENDING without a certificate", rep.Status, rep.FailInfo)
				}
				e.wantHeldThenRefused(t, "intune", c, csr)
			}
			if v, n, fl := f.counts(); v != 1 || n != 1 || fl != 0 {
				t.Errorf("validate %d, successNotification %d, failureNotification %d; want 1, 1, 0", v, n, fl)
			}
		})
	}
}

// TestUndeliveredIntuneCertificateAuthorizesNothing: an Intune certificate whose acceptance by Intune was never
// recorded may not leave, so whoever shows it did not get it from us: it is no renewal signer. The same renewal
// with the acceptance recorded succeeds.
func TestUndeliveredIntuneCertificateAuthorizesNothing(t *testing.T) {
	t.Parallel()
	for _, notified := range []bool{true, false} {
		t.Run(fmt.Sprintf("notified=%t", notified), func(t *testing.T) {
			t.Parallel()
			f := &fakeIntune{}
			e := intuneEnv(t, f, nil)
			c, _, req := intuneRequest(t, e, 0)
			cert := wantSuccess(t, e.pki(t, "intune", req))
			if !notified {
				ctx := context.Background()
				rec, err := e.mem.Get(ctx, hexSerial(cert))
				if err != nil {
					t.Fatal(err)
				}
				rec.IntuneNotified = false
				if err := e.mem.Update(ctx, rec, store.StatusIssued); err != nil {
					t.Fatal(err)
				}
			}
			e.afterDelivery()
			e.offset.Store(int64(profileValidity/2 + 24*time.Hour))
			csr := testca.CSR(t, testca.RSAKey(t, 7), testca.CSROptions{Subject: pkix.Name{CommonName: "intune-device"}})
			rep := e.pki(t, "intune", c.RenewalReq(t, csr, cert, c.Key))
			if notified {
				wantSuccess(t, rep)
				return
			}
			wantFailure(t, rep, testca.FailBadRequest)
			if v, _, _ := f.counts(); v != 1 {
				t.Errorf("Intune validated %d requests, want only the first enrollment's", v)
			}
		})
	}
}

// An Intune certificate is renewed only with Intune. Switching the endpoint that issued it to a static challenge
// (which the README describes) must not turn the shared secret into a stand-in for Intune's validateRequest: the
// record says Intune authorized it, whatever the endpoint's settings say now.
func TestStaticEndpointDoesNotRenewIntuneCertificatesAfterASwitch(t *testing.T) {
	f := &fakeIntune{}
	e := intuneEnv(t, f, nil)
	c, _, req := intuneRequest(t, e, 0)
	old := wantSuccess(t, e.pki(t, "intune", req))

	prof, err := policy.ParseProfile("device", "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := scep.New(scep.Config{Keys: e.ca.Keys, Issuer: e.issuer, Store: e.store, Logger: slog.New(slog.DiscardHandler),
		Endpoints: []*scep.Endpoint{{Name: "intune", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: prof}},
		Now:       func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.offset.Store(int64(profileValidity/2 + 24*time.Hour)) // inside the renewal window

	csr := testca.CSR(t, testca.RSAKey(t, 7), testca.CSROptions{Subject: old.Subject})
	wantFailure(t, e.pki(t, "intune", c.RenewalReq(t, csr, old, c.Key)), testca.FailBadRequest)
	if v, n, _ := f.counts(); v != 1 || n != 1 {
		t.Errorf("Intune calls after the refused renewal: validate %d, notify %d; want 1 and 1", v, n)
	}
	// A record from before the delivery gate (not Gated, but reported to Intune by its successNotification) was
	// authorized by Intune just the same.
	ctx := context.Background()
	rec, err := e.mem.Get(ctx, hexSerial(old))
	if err != nil || !rec.IntuneNotified {
		t.Fatalf("the Intune record: %v, notified %v", err, err == nil && rec.IntuneNotified)
	}
	rec.Gated = false
	if err := e.mem.Update(ctx, rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, e.pki(t, "intune", c.RenewalReq(t, csr, old, c.Key)), testca.FailBadRequest)
	if n := len(e.records(t)); n != 1 {
		t.Errorf("%d records after the refused renewals, want 1", n)
	}
	// The refusal is about who authorized the old certificate, not the request: a static enrollment with the
	// secret still works there.
	d := e.client(t, 8, "static-after-switch")
	wantSuccess(t, e.pki(t, "intune", d.PKCSReq(t, csrFor(t, d, "static-after-switch"))))
}

// TestIntuneEndpointTakesDeviceIDCommonName: a common name shaped like a device ID (Intune's
// CN={{AAD_Device_ID}}) needs the profile's opt-in where nobody vouches for it, but on an endpoint with Intune's
// challenge Intune validates every CSR: an operator's profile there (the built-in intune profile narrowed with
// AZSCEP_PROFILE_INTUNE, or another profile for an Intune endpoint) that does not list identity_uris still issues
// the devices' certificates, while a static endpoint with the same profile still refuses the CN, and the Intune
// endpoint still refuses IntuneDeviceId URIs the profile does not allow.
func TestIntuneEndpointTakesDeviceIDCommonName(t *testing.T) {
	t.Parallel()
	narrow, err := policy.ParseProfile("corp", "validity=30d;ku=digitalSignature,keyEncipherment;eku=clientAuth;dns=*;upn=*")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIntune{}
	e := newEnv(t, envOptions{intune: f, endpoints: []*scep.Endpoint{
		{Name: "intune", Challenge: scep.ChallengeIntune, Profile: narrow},
		{Name: "static", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: narrow}}})
	const deviceID = "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"
	c := e.client(t, 0, deviceID)
	csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: deviceID}, ChallengePassword: intuneChallenge})
	cert := wantSuccess(t, e.pki(t, "intune", c.PKCSReq(t, csr)))
	if cert.Subject.CommonName != deviceID {
		t.Errorf("issued CN %q, want the device ID", cert.Subject.CommonName)
	}
	if v, n, _ := f.counts(); v != 1 || n != 1 {
		t.Errorf("validate %d, notify %d; want 1, 1", v, n)
	}

	// Behind a shared secret nobody vouches for the device: the profile's opt-in is still needed.
	s := e.client(t, 1, deviceID)
	scsr := testca.CSR(t, s.Key, testca.CSROptions{Subject: pkix.Name{CommonName: deviceID}, ChallengePassword: staticSecret})
	wantFailure(t, e.pki(t, "static", s.PKCSReq(t, scsr)), testca.FailBadRequest)

	// The Intune door widens the CN only, not the identity URIs the operator's profile leaves out.
	u := e.client(t, 2, deviceID)
	ucsr := testca.CSR(t, u.Key, testca.CSROptions{Subject: pkix.Name{CommonName: deviceID}, ChallengePassword: intuneChallenge,
		URIs: []*url.URL{{Scheme: "IntuneDeviceId", Host: deviceID}}})
	wantFailure(t, e.pki(t, "intune", u.PKCSReq(t, ucsr)), testca.FailBadRequest)
}
