package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/store"
)

// TestSignerFaultIsNotBlamedOnTheDevice: when the CA key fails to sign — Key Vault answers a signature that does not
// verify, or refuses the sign request with 400 — a SCEP device gets no CertRep FAILURE (badRequest tells gear its
// request was wrong, and it stops retrying) but an HTTP error: 503 with Retry-After for the wrong signature (the next
// try signs afresh), 500 for the refusal. Intune still hears of the failure, as a signing failure. The same request
// sent again then gets its certificate.
func TestSignerFaultIsNotBlamedOnTheDevice(t *testing.T) {
	vault, err := newFxVault(t, kvfake.New(t), false) // its own fake: faults injected here reach no other test
	if err != nil {
		t.Fatal(err)
	}
	for _, fl := range fxFlows[:2] { // the SCEP flows
		for _, tc := range []struct {
			name       string
			inject     func(e *fxEnv)
			clear      func(e *fxEnv)
			wantStatus int
			retryAfter bool
		}{
			{"wrong-signature", func(e *fxEnv) { e.tap.setCorrupt(true) }, func(e *fxEnv) { e.tap.setCorrupt(false) },
				http.StatusServiceUnavailable, true},
			{"vault-400", func(e *fxEnv) { e.kv.Fail(kvfake.OpSign, 1, http.StatusBadRequest) }, func(e *fxEnv) { e.kv.ClearFaults() },
				http.StatusInternalServerError, false},
		} {
			t.Run(fl.name+"/"+tc.name, func(t *testing.T) {
				e := newFxEnv(t, fxOptions{vault: vault})
				req := fl.new(e, t)
				tc.inject(e)
				status, header, body := fxSendRaw(t, e, req)
				tc.clear(e)
				if status != tc.wantStatus {
					t.Fatalf("signer fault answered HTTP %d (%d bytes), want %d and no CertRep", status, len(body), tc.wantStatus)
				}
				ra, err := strconv.Atoi(header.Get("Retry-After"))
				if tc.retryAfter && (err != nil || ra <= 0) {
					t.Errorf("HTTP %d without a usable Retry-After (%q)", status, header.Get("Retry-After"))
				}
				recs := e.records(t)
				if len(recs) != 1 || recs[0].Status != store.StatusAbandoned || recs[0].CertDER != nil {
					t.Fatalf("want one abandoned record without a certificate, got %v", statuses(recs))
				}
				if fl.name == "scep-intune" {
					reps := e.intune.FailureReports()
					if len(reps) != 1 || reps[0].HResult != int64(intune.HResultSigningFailed) {
						t.Fatalf("Intune failure reports %+v, want one HResultSigningFailed", reps)
					}
				}
				// The device asks again, as told, and is served.
				if out := e.send(t, req); !out.ok() {
					t.Fatalf("the same request sent again after the fault: %s\n%s", out, e.logs.String())
				}
				e.check(t)
			})
		}
	}
}

// fxSendRaw sends req and returns the answer as it came, headers included.
func fxSendRaw(t *testing.T, e *fxEnv, req fxReq) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, req.Method, e.srv.URL+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	resp, err := e.srv.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}
