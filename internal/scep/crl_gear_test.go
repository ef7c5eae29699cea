package scep_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/testca"
)

// TestGetCRLFailureIsTheServers: a GetCRL whose CRL the server cannot produce — its signature came back wrong from
// Key Vault, Key Vault refused the sign request, the publisher failed — is answered with an HTTP error (503 and
// Retry-After where a new try signs afresh, else 500), never a CertRep FAILURE badRequest that blames the request.
func TestGetCRLFailureIsTheServers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
	}{
		{"signature does not verify", fmt.Errorf("signing CRL: %w", keyvault.ErrInvalidResponse), http.StatusServiceUnavailable},
		{"vault refuses the request", fmt.Errorf("signing CRL: %w", keyvault.ErrRejected), http.StatusInternalServerError},
		{"publisher fails", fmt.Errorf("assembling the CRL: entry list is inconsistent"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{crl: failingCRL{tc.err}})
			c := e.client(t, 0, "crl")
			resp, body := testca.Post(t, e.url(epStatic), c.GetCRL(t, e.ca.Cert, e.ca.RACert.SerialNumber).Raw)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("GetCRL with the CRL failing: HTTP %d (%d bytes), want %d and no CertRep", resp.StatusCode, len(body), tc.wantStatus)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); tc.wantStatus == http.StatusServiceUnavailable && (err != nil || ra <= 0) {
				t.Errorf("503 without a usable Retry-After (%q)", resp.Header.Get("Retry-After"))
			}
		})
	}
}

type failingCRL struct{ err error }

func (f failingCRL) CurrentDER(context.Context) ([]byte, error) { return nil, f.err }
