package scep_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/azscep/azscep/internal/intune"
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

func TestIntuneUnavailable(t *testing.T) {
	t.Parallel()
	f := &fakeIntune{validateErr: fmt.Errorf("validateRequest: %w", intune.ErrUnavailable)}
	e := intuneEnv(t, f, nil)
	_, _, req := intuneRequest(t, e, 0)
	// Fail closed with a SCEP FAILURE (the rule for every non-Success answer, outages included).
	wantFailure(t, e.pki(t, "intune", req), testca.FailBadRequest)
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
	wantFailure(t, e.pki(t, "intune", req), testca.FailBadRequest)
	if v, n, fl := f.counts(); v != 1 || n != 0 || fl != 1 {
		t.Fatalf("validate %d, notify %d, failure %d; want 1, 0, 1", v, n, fl)
	}
	if !errors.Is(f.failCauses[0], boom) || f.failed[0] != req.TransactionID {
		t.Errorf("failureNotification cause %v", f.failCauses[0])
	}
}
