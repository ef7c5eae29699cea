package main

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestTimerRevocationSync drives the hourly function the way the Functions host does: a certificate enrolled
// through Intune is queued for revocation at the fake, the host POSTs the timer envelope to /revocation-sync, and
// the answer is 200 JSON with Logs; the record is revoked, the result uploaded, and OCSP says revoked.
func TestTimerRevocationSync(t *testing.T) {
	s := startIntune(t, intuneSetup{})
	subject := pkix.Name{CommonName: "retired-device"}
	a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{Subject: subject.String()})
	cert, rec := s.issued(t, a)
	ctxRef, err := s.fake.RevokeIssued(rec.Serial)
	if err != nil {
		t.Fatal(err)
	}

	envelope := `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"0001-01-01T00:00:00","Next":"2026-11-22T02:00:00","LastUpdated":"0001-01-01T00:00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"revocation-sync"}}}`
	resp, err := http.Post(s.base+"/revocation-sync", "application/json", bytes.NewBufferString(envelope))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Outputs     map[string]any
		Logs        []string
		ReturnValue any
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("timer answer %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Logs) == 0 {
		t.Fatalf("timer body: %v %+v", err, out)
	}
	if !strings.Contains(out.Logs[0], "downloaded=1") || !strings.Contains(out.Logs[0], "revoked=1") ||
		!strings.Contains(out.Logs[0], "uploaded=1") {
		t.Fatalf("run summary %q", out.Logs[0])
	}

	got, err := s.store.Get(context.Background(), rec.Serial)
	if err != nil || got.Status != store.StatusRevoked || got.RevokedBy != "intune" ||
		got.RevocationReason != revocation.IntuneReason || got.RevocationRef != ctxRef {
		t.Fatalf("record after the sync: %+v %v", got, err)
	}
	uploads := s.fake.UploadedResults()
	if len(uploads) != 1 {
		t.Fatalf("uploads = %+v", uploads)
	}
	runs, err := s.store.Runs(context.Background(), 5)
	if err != nil || len(runs) != 1 || runs[0].Trigger != "timer" || runs[0].Revoked != 1 {
		t.Fatalf("runs = %+v %v", runs, err)
	}
	// OCSP reflects the revocation at once (the sync tells the responder's cache).
	reqDER, err := xocsp.CreateRequest(cert, s.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	oresp, err := http.Post(s.base+"/api/ocsp", "application/ocsp-request", bytes.NewReader(reqDER))
	if err != nil {
		t.Fatal(err)
	}
	defer oresp.Body.Close()
	body, _ := io.ReadAll(oresp.Body)
	parsed, err := xocsp.ParseResponseForCert(body, cert, s.ca)
	if err != nil || parsed.Status != xocsp.Revoked || parsed.RevocationReason != revocation.IntuneReason {
		t.Fatalf("OCSP after the sync: %+v %v", parsed, err)
	}
}
