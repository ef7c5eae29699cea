package scep_test

import (
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// gateRecord is the one record of the enrollment the test made so far.
func (b *blameEnv) gateRecord(t *testing.T) *store.Record {
	t.Helper()
	recs := b.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records, want the enrollment's one", len(recs))
	}
	return recs[0]
}

// getCert asks, signed with the device's key n, for the certificate with serial (hex).
func (b *blameEnv) getCert(t *testing.T, n int, serial string) *testca.CertRep {
	t.Helper()
	s, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		t.Fatalf("serial %q", serial)
	}
	return b.pki(t, "intune", b.client(t, n, "blame-device").GetCert(t, b.ca.Cert, s))
}

// reported says whether Intune recorded a successNotification for serial.
func (b *blameEnv) reported(serial string) bool {
	for _, i := range b.fake.IssuedCertificates() {
		if strings.EqualFold(i.SerialNumber, serial) {
			return true
		}
	}
	return false
}

// TestIntuneNotificationOutageIsRetried: when successNotification gets no verdict from Intune — Intune down, slow,
// throttling, refusing this CA's identity — the device is not at fault: it gets HTTP 503 with Retry-After (Intune's
// own when it sent one) and no CertRep, the signed certificate stays withheld (never handed out, not even by
// GetCert) and Intune hears no failureNotification. Once Intune answers again, the device's retry is validated
// again and notified: the very same message gets the withheld certificate itself, with no new signature (one record,
// and Intune told of that one certificate); a new transaction with the same key is signed afresh and gets the new
// certificate, while the first one is still never delivered. Before, the outage withheld the certificate with a
// FAILURE badRequest, and every retry of the transaction was refused with FAILURE for good.
func TestIntuneNotificationOutageIsRetried(t *testing.T) {
	t.Parallel()
	jsonError := `{"error":{"code":"InternalServerError","message":"boom"}}`
	for i, tc := range []struct {
		name        string
		fault       intunefake.Fault
		callTimeout time.Duration
		retryAfter  string
		newTxID     bool // the device retries under another transaction ID (same key)
	}{
		{name: "500", fault: intunefake.Fault{Status: http.StatusInternalServerError, Body: jsonError}, retryAfter: "30"},
		{name: "503 with Retry-After", fault: intunefake.Fault{Status: http.StatusServiceUnavailable, Body: jsonError,
			Header: http.Header{"Retry-After": {"7"}}}, retryAfter: "7"},
		{name: "429 with Retry-After", fault: intunefake.Fault{Status: http.StatusTooManyRequests,
			Body: `{"error":{"code":"TooManyRequests","message":"slow down"}}`, Header: http.Header{"Retry-After": {"9"}}},
			retryAfter: "9"},
		{name: "connection dropped", fault: intunefake.Fault{Drop: true}, retryAfter: "30"},
		{name: "times out", fault: intunefake.Fault{Delay: time.Minute}, callTimeout: 300 * time.Millisecond, retryAfter: "30"},
		{name: "401", fault: intunefake.Fault{Status: http.StatusUnauthorized,
			Body: `{"error":{"code":"Unauthorized","message":"no role"}}`}, retryAfter: "30"},
		{name: "403", fault: intunefake.Fault{Status: http.StatusForbidden,
			Body: `{"error":{"code":"Forbidden","message":"no role"}}`}, retryAfter: "30"},
		{name: "500, retried under a new transaction ID", fault: intunefake.Fault{Status: http.StatusInternalServerError,
			Body: jsonError}, retryAfter: "30", newTxID: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timeout := tc.callTimeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			// Strict: Intune accepts a successNotification only for a transaction it validated with that CSR.
			b := newBlameEnvWith(t, timeout, intunefake.Options{RequireValidatedTransaction: true})
			req := b.request(t, i, intunefake.Challenge{})
			b.fake.InjectFault(intunefake.RouteSuccess, tc.fault)
			resp, body := testca.Post(t, b.url("intune"), req.Raw)
			wantUnavailable(t, resp, body, tc.retryAfter)
			first := b.gateRecord(t)
			if first.Status != store.StatusIssued || !first.Withheld || !first.GateUndecided || first.IntuneNotified {
				t.Fatalf("record: %s, withheld %t, undecided %t, notified %t; want issued, withheld, undecided, not notified",
					first.Status, first.Withheld, first.GateUndecided, first.IntuneNotified)
			}
			if b.reported(first.Serial) {
				t.Fatal("Intune recorded the certificate whose notification failed")
			}
			if n := b.fake.Count(intunefake.RouteFailure); n != 0 {
				t.Fatalf("%d failureNotifications: Intune must hear nothing wrong about a request nobody refused", n)
			}
			// The withheld certificate does not leave by GetCert either.
			wantFailure(t, b.getCert(t, i, first.Serial), testca.FailBadCertID)

			// Intune is back: the device's retry is validated again, signed afresh and notified.
			b.fake.ClearFaults()
			validated := b.fake.Count(intunefake.RouteValidate)
			retry := req
			if tc.newTxID {
				c := b.client(t, i, "blame-device")
				retry = c.Message(t, testca.Message{Type: testca.MsgPKCSReq, TransactionID: "retry-" + req.TransactionID,
					Content: csrOf(t, b, first)})
			}
			cert := wantSuccess(t, b.pki(t, "intune", retry))
			if reused := hexSerial(cert) == first.Serial; reused == tc.newTxID {
				t.Fatalf("the retry delivered the first certificate: %t; want it for the same transaction only", reused)
			}
			if n, want := len(b.records(t)), map[bool]int{false: 1, true: 2}[tc.newTxID]; n != want {
				t.Fatalf("%d records after the retry, want %d", n, want)
			}
			if n := b.fake.Count(intunefake.RouteValidate); n != validated+1 {
				t.Fatalf("%d validations for the retry, want 1", n-validated)
			}
			if !b.reported(hexSerial(cert)) || len(b.fake.IssuedCertificates()) != 1 {
				t.Fatalf("Intune recorded %d certificates, want exactly the delivered one", len(b.fake.IssuedCertificates()))
			}
			if n := b.fake.Count(intunefake.RouteFailure); n != 0 {
				t.Fatalf("%d failureNotifications", n)
			}
			got, err := b.mem.Get(t.Context(), hexSerial(cert))
			if err != nil || !got.IntuneNotified || got.Withheld || got.GateUndecided || got.TxID != retry.TransactionID {
				t.Fatalf("delivered record: %v %+v", err, got)
			}
			if tc.newTxID {
				old, err := b.mem.Get(t.Context(), first.Serial)
				if err != nil || !old.Withheld || old.IntuneNotified {
					t.Fatalf("first record after the retry: %v, withheld %t, notified %t; want it withheld still", err,
						old != nil && old.Withheld, old != nil && old.IntuneNotified)
				}
				// The first certificate still never leaves.
				wantFailure(t, b.getCert(t, i, first.Serial), testca.FailBadCertID)
			}

			// The delivered certificate is the transaction's, replayed without Intune.
			calls := len(b.fake.Journal())
			if again := wantSuccess(t, b.pki(t, "intune", retry)); !again.Equal(cert) {
				t.Fatal("the replay returned another certificate")
			}
			if n := len(b.fake.Journal()); n != calls {
				t.Fatalf("the replay made %d Intune calls", n-calls)
			}
		})
	}
}

// csrOf is the CSR of rec's planned certificate's enrollment, as the device sent it: the fake keeps what Intune
// validated for its transaction.
func csrOf(t *testing.T, b *blameEnv, rec *store.Record) []byte {
	t.Helper()
	v, ok := b.fake.Validations()[rec.TxID]
	if !ok || len(v.CSR) == 0 {
		t.Fatalf("no validation recorded for transaction %q", rec.TxID)
	}
	return v.CSR
}

// TestIntuneNotificationRefusalStaysWithheld: Intune refusing the successNotification — a refusal code, or a 4xx
// for the notification itself (which the next notification would meet again) — withholds the certificate for good:
// FAILURE badRequest, a retry of the transaction refused without asking Intune again and without a new signature,
// and no failureNotification.
func TestIntuneNotificationRefusalStaysWithheld(t *testing.T) {
	t.Parallel()
	for i, tc := range []struct {
		name  string
		fault intunefake.Fault
	}{
		{"refusal code", intunefake.Fault{Status: http.StatusOK,
			Body: `{"code":"ChallengeDecryptionError","errorDescription":"no"}`}},
		{"400", intunefake.Fault{Status: http.StatusBadRequest,
			Body: `{"error":{"code":"BadRequest","message":"notification: certificateThumbprint is required"}}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBlameEnvWith(t, 10*time.Second, intunefake.Options{RequireValidatedTransaction: true})
			req := b.request(t, i, intunefake.Challenge{})
			b.fake.InjectFault(intunefake.RouteSuccess, tc.fault)
			wantFailure(t, b.pki(t, "intune", req), testca.FailBadRequest)
			rec := b.gateRecord(t)
			if rec.Status != store.StatusIssued || !rec.Withheld || rec.GateUndecided || rec.IntuneNotified {
				t.Fatalf("record: %s, withheld %t, undecided %t, notified %t; want issued, withheld for good",
					rec.Status, rec.Withheld, rec.GateUndecided, rec.IntuneNotified)
			}
			b.fake.ClearFaults()
			calls := len(b.fake.Journal())
			wantFailure(t, b.pki(t, "intune", req), testca.FailBadRequest)
			wantFailure(t, b.getCert(t, i, rec.Serial), testca.FailBadCertID)
			if n := len(b.fake.Journal()); n != calls {
				t.Fatalf("the retries made %d Intune calls", n-calls)
			}
			if n := len(b.records(t)); n != 1 {
				t.Fatalf("%d records: a refused notification's retry was signed again", n)
			}
			if n := b.fake.Count(intunefake.RouteFailure); n != 0 {
				t.Fatalf("%d failureNotifications after a refused successNotification (§6.3 says none)", n)
			}
		})
	}
}

// TestIntuneUndecidedPollIsPending: a device that polls (CertPoll, GetCertInitial) for a transaction whose
// successNotification got no verdict — say it had been told PENDING while the notification was in flight — is told
// PENDING, not FAILURE: nobody refused its request, and the transaction can still complete. Once its PKCSReq is
// re-sent and Intune answers, that same certificate is delivered and the next poll returns it. A poll signed by
// another key still learns nothing (badCertID). Before, the poll got FAILURE badCertID, which ends the enrollment.
func TestIntuneUndecidedPollIsPending(t *testing.T) {
	t.Parallel()
	const n = 40 // a fixture key no other test of this file uses
	b := newBlameEnvWith(t, 10*time.Second, intunefake.Options{RequireValidatedTransaction: true})
	req := b.request(t, n, intunefake.Challenge{})
	b.fake.InjectFault(intunefake.RouteSuccess, intunefake.Fault{Status: http.StatusServiceUnavailable,
		Body: `{"error":{"code":"ServiceUnavailable","message":"down"}}`})
	resp, body := testca.Post(t, b.url("intune"), req.Raw)
	wantUnavailable(t, resp, body, "30")
	rec := b.gateRecord(t)
	if !rec.Withheld || !rec.GateUndecided {
		t.Fatalf("record withheld %t undecided %t, want both", rec.Withheld, rec.GateUndecided)
	}
	poll := func(signer int) *testca.CertRep {
		t.Helper()
		c := b.client(t, signer, "blame-device")
		return b.pki(t, "intune", c.CertPoll(t, req.TransactionID, b.ca.Cert, pkix.Name{CommonName: "blame-device"}))
	}
	calls := len(b.fake.Journal())
	if rep := poll(n); rep.Status != testca.StatusPending || len(rep.Certificates) != 0 {
		t.Fatalf("poll of an undecided transaction: status %q failInfo %q, %d certificates; want PENDING and none",
			rep.Status, rep.FailInfo, len(rep.Certificates))
	}
	wantFailure(t, poll(n+1), testca.FailBadCertID)
	if got := len(b.fake.Journal()); got != calls {
		t.Fatalf("the polls made %d Intune calls", got-calls)
	}

	b.fake.ClearFaults()
	cert := wantSuccess(t, b.pki(t, "intune", req))
	if hexSerial(cert) != rec.Serial || !b.reported(rec.Serial) {
		t.Fatalf("retry delivered %s (reported %t), want the withheld %s, reported", hexSerial(cert), b.reported(rec.Serial), rec.Serial)
	}
	if got := wantSuccess(t, poll(n)); !got.Equal(cert) {
		t.Fatal("the poll after delivery returned another certificate")
	}
}

// TestIntuneUndecidedBacklogAnswers503: a device whose successNotifications get no verdict and that retries under a
// new transaction ID each time is signed for only a few times (issuance's per-key bound); its next PKCSReq gets the
// outage's answer — HTTP 503 with Retry-After, no CertRep — with nothing recorded or signed and no
// failureNotification, and the retry of its first transaction still gets that certificate once Intune answers.
// Before, every such retry was one more signature and one more withheld record.
func TestIntuneUndecidedBacklogAnswers503(t *testing.T) {
	t.Parallel()
	const n = 41 // a fixture key no other test of this file uses
	b := newBlameEnvWith(t, 10*time.Second, intunefake.Options{RequireValidatedTransaction: true})
	first := b.request(t, n, intunefake.Challenge{})
	b.fake.InjectFault(intunefake.RouteSuccess, intunefake.Fault{Status: http.StatusServiceUnavailable,
		Body: `{"error":{"code":"ServiceUnavailable","message":"down"}}`})
	c := b.client(t, n, "blame-device")
	csr := csrOf(t, b, func() *store.Record {
		resp, body := testca.Post(t, b.url("intune"), first.Raw)
		wantUnavailable(t, resp, body, "30")
		return b.gateRecord(t)
	}())
	var records int
	for try := 1; ; try++ {
		retry := c.Message(t, testca.Message{Type: testca.MsgPKCSReq, TransactionID: fmt.Sprintf("retry-%d-%s", try,
			first.TransactionID), Content: csr})
		before := len(b.records(t))
		resp, body := testca.Post(t, b.url("intune"), retry.Raw)
		wantUnavailable(t, resp, body, "30")
		records = len(b.records(t))
		if records == before {
			break // refused before anything was recorded
		}
		if try > 10 {
			t.Fatalf("%d retries under new transaction IDs each signed and recorded", try)
		}
	}
	if records != 3 {
		t.Fatalf("%d records before retries stopped being signed, want 3", records)
	}
	if n := b.fake.Count(intunefake.RouteFailure); n != 0 {
		t.Fatalf("%d failureNotifications for requests nobody refused", n)
	}

	b.fake.ClearFaults()
	cert := wantSuccess(t, b.pki(t, "intune", first))
	if !b.reported(hexSerial(cert)) || len(b.records(t)) != records {
		t.Fatalf("the first transaction's retry: reported %t, %d records (want %d)", b.reported(hexSerial(cert)),
			len(b.records(t)), records)
	}
}
