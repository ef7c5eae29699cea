package main

import (
	"crypto/x509/pkix"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
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
