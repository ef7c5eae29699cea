package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// undecided asserts the answer to a request Intune did not decide (down, throttling, refusing the CA's identity, the
// token or discovery failing): HTTP 503 with retryAfter ("" = any) and no CertRep, no notification of either kind,
// no record. Fail closed, without telling the device its request was wrong.
func (s *intuneService) undecided(t *testing.T, a *attempt, retryAfter string) {
	t.Helper()
	if a.resp.StatusCode != http.StatusServiceUnavailable || a.resp.Header.Get("Content-Type") == "application/x-pki-message" {
		t.Fatalf("PKIOperation = %d %s, want 503 and no CertRep", a.resp.StatusCode, a.resp.Header.Get("Content-Type"))
	}
	got := a.resp.Header.Get("Retry-After")
	if got == "" || (retryAfter != "" && got != retryAfter) {
		t.Fatalf("Retry-After %q, want %q", got, retryAfter)
	}
	if n, f := len(s.calls(t, intunefake.RouteSuccess, a.txID())), len(s.calls(t, intunefake.RouteFailure, a.txID())); n+f != 0 {
		t.Fatalf("%d success and %d failure notifications for a request Intune never validated", n, f)
	}
	noRecordFor(t, s.store, "intune", a.txID())
}

// TestIntuneBlame: through the handler, an Intune outage at validateRequest (503 with Retry-After, every attempt of
// the client's) answers the device 503 with Intune's Retry-After and no CertRep, and the device's retry of the same
// message enrolls once Intune is back; Intune's verdict on a request (an expired challenge) stays a CertRep FAILURE
// badRequest.
func TestIntuneBlame(t *testing.T) {
	s := startIntune(t, intuneSetup{})
	subject := pkix.Name{CommonName: "blame-device"}

	s.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: http.StatusServiceUnavailable,
		Body: `{"error":{"code":"ServiceUnavailable","message":"try later"}}`, Header: http.Header{"Retry-After": {"120"}}})
	a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{})
	s.undecided(t, a, "120")
	if n := len(s.calls(t, intunefake.RouteValidate, a.txID())); n == 0 {
		t.Fatal("validateRequest was never called")
	}
	s.fake.ClearFaults()
	post(t, s.scepURL("intune"), a.req).mustSucceed(t, s.ra)
	if n := len(s.calls(t, intunefake.RouteSuccess, a.txID())); n != 1 {
		t.Fatalf("%d successNotifications after the retry, want 1", n)
	}

	expired := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{ExpiresAt: time.Now().Add(-time.Minute)})
	s.rejectedByIntune(t, expired, "ChallengeExpired")
}

// TestIntuneNotificationOutage: through the handler, Intune failing successNotification with a 503 (every attempt
// of the client's) after it validated the request answers the device 503 with Intune's Retry-After and no CertRep;
// the signed certificate is recorded withheld (undecided), reported to Intune by nothing, handed out by nothing (a
// GetCert of it is refused), and no failureNotification blames the request. Once Intune is back, the device's retry
// of the same message is validated again and notified with that same certificate — no second signature, one record —
// and gets it, which the strict fake recorded; the next retry replays it without Intune.
func TestIntuneNotificationOutage(t *testing.T) {
	s := startIntune(t, intuneSetup{fake: intunefake.Options{RequireValidatedTransaction: true}})
	s.fake.InjectFault(intunefake.RouteSuccess, intunefake.Fault{Status: http.StatusServiceUnavailable,
		Body: `{"error":{"code":"ServiceUnavailable","message":"try later"}}`, Header: http.Header{"Retry-After": {"45"}}})
	a := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "outage-device"}}, intunefake.Challenge{})
	if a.resp.StatusCode != http.StatusServiceUnavailable || a.resp.Header.Get("Content-Type") == "application/x-pki-message" {
		t.Fatalf("PKIOperation = %d %s, want 503 and no CertRep", a.resp.StatusCode, a.resp.Header.Get("Content-Type"))
	}
	if got := a.resp.Header.Get("Retry-After"); got != "45" {
		t.Fatalf("Retry-After %q, want Intune's 45", got)
	}
	first := recordFor(t, s.store, "intune", a.txID())
	if first.Status != store.StatusIssued || !first.Withheld || !first.GateUndecided || first.IntuneNotified {
		t.Fatalf("record: %s, withheld %t, undecided %t, notified %t; want issued, withheld, undecided, not notified",
			first.Status, first.Withheld, first.GateUndecided, first.IntuneNotified)
	}
	if len(s.calls(t, intunefake.RouteSuccess, a.txID())) == 0 || len(s.fake.IssuedCertificates()) != 0 {
		t.Fatal("successNotification was not tried, or Intune recorded the certificate it failed")
	}
	if n := len(s.calls(t, intunefake.RouteFailure, a.txID())); n != 0 {
		t.Fatalf("%d failureNotifications for a request nobody refused", n)
	}
	firstCert, err := x509.ParseCertificate(first.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	device := &testca.Client{Key: a.key, Cert: a.req.SignerCert, Recipients: []*x509.Certificate{s.ra}}
	post(t, s.scepURL("intune"), device.GetCert(t, s.ca, firstCert.SerialNumber)).mustFail(t, s.ra, testca.FailBadCertID)

	// Intune is back: the same message again.
	s.fake.ClearFaults()
	s.fake.ResetJournal()
	retry := &attempt{exchange: post(t, s.scepURL("intune"), a.req), csr: a.csr, password: a.password, key: a.key}
	cert, rec := s.issued(t, retry) // validated once more, notified once, recorded by Intune, the record says so
	if rec.Serial != first.Serial || !cert.Equal(firstCert) || rec.Withheld || rec.GateUndecided {
		t.Fatalf("the retry delivered %s (withheld %t, undecided %t); want the withheld %s, delivered", rec.Serial,
			rec.Withheld, rec.GateUndecided, first.Serial)
	}
	if got := post(t, s.scepURL("intune"), device.GetCert(t, s.ca, firstCert.SerialNumber)).mustSucceed(t, s.ra); !got.Equal(cert) {
		t.Fatal("GetCert of the delivered certificate returned another one")
	}

	s.fake.ResetJournal()
	if again := post(t, s.scepURL("intune"), a.req).mustSucceed(t, s.ra); !again.Equal(cert) {
		t.Fatal("the replay returned another certificate")
	}
	if n := len(s.fake.Journal()); n != 0 {
		t.Fatalf("the replay made %d Intune calls", n)
	}
}

// TestIntuneBacklogStoreDownFailsClosed: through the handler, on Table Storage (Azurite), an Intune enrollment whose
// reservation in its key's backlog cannot be written is not signed: the device gets 503 with Retry-After and no
// CertRep, nothing is recorded, and Intune is told of no success. Its retry once the store answers is signed and
// delivered; the key's backlog then holds that request's reservation alone, naming the delivered record, which
// settles it (the timer prunes it). Before, the bound lived in memory and an Intune enrollment never wrote it.
func TestIntuneBacklogStoreDownFailsClosed(t *testing.T) {
	var fs *storetest.FaultStore
	s := startIntune(t, intuneSetup{wrap: func(st store.Store) store.Store {
		fs = storetest.NewFaultStore(st)
		return fs
	}})
	fs.FailMethod(storetest.MethodPutBacklog, store.ErrUnavailable)
	a := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "backlog-down"}}, intunefake.Challenge{})
	if a.resp.StatusCode != http.StatusServiceUnavailable || a.resp.Header.Get("Retry-After") == "" ||
		a.resp.Header.Get("Content-Type") == "application/x-pki-message" {
		t.Fatalf("PKIOperation with the backlog unwritable = %d %s (Retry-After %q), want 503 and no CertRep",
			a.resp.StatusCode, a.resp.Header.Get("Content-Type"), a.resp.Header.Get("Retry-After"))
	}
	if n := len(s.calls(t, intunefake.RouteSuccess, a.txID())); n != 0 {
		t.Fatalf("%d successNotifications for a request not signed", n)
	}
	noRecordFor(t, s.store, "intune", a.txID())

	fs.Clear()
	cert := post(t, s.scepURL("intune"), a.req).mustSucceed(t, s.ra)
	if n := len(s.calls(t, intunefake.RouteSuccess, a.txID())); n != 1 {
		t.Fatalf("%d successNotifications after the retry, want 1", n)
	}
	b, err := s.store.GetBacklog(t.Context(), store.KeyHash(a.key.Public()))
	if err != nil || len(b.Reservations) != 1 || b.Reservations[0].Serial != store.SerialString(cert.SerialNumber) {
		t.Fatalf("the key's backlog after delivery: %+v, %v; want the delivered certificate's reservation alone", b, err)
	}
	if rec, err := s.store.Get(t.Context(), b.Reservations[0].Serial); err != nil || !rec.IntuneNotified {
		t.Fatalf("the reserved record: %+v, %v; want delivered", rec, err)
	}
}
