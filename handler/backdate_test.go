package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// TestRevocationInformationBackdatedLikeCertificates: AZSCEP_BACKDATE, which an operator raises for relying parties
// whose clocks run behind, back-dates the CRL's and the OCSP responses' thisUpdate and the responder certificate's
// notBefore as it does the certificates' notBefore: a party that accepts the certificates would otherwise find the
// revocation information "not yet valid" and fail the check.
func TestRevocationInformationBackdatedLikeCertificates(t *testing.T) {
	const backdate = 40 * time.Minute
	svc := startLocal(t, "AZSCEP_BACKDATE=40m")
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(svc.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
		}
		return body
	}
	ca, err := x509.ParseCertificate(get("/api/ca"))
	if err != nil {
		t.Fatal(err)
	}
	near := func(what string, got time.Time, now time.Time) {
		t.Helper()
		if d := now.Add(-backdate).Sub(got); d < -2*time.Second || d > 2*time.Second {
			t.Errorf("%s = %v, want %v before now (%v)", what, got, backdate, now)
		}
	}

	now := time.Now()
	crl, err := x509.ParseRevocationList(get("/api/crl"))
	if err != nil {
		t.Fatal(err)
	}
	near("CRL thisUpdate", crl.ThisUpdate, now)

	reqDER, err := xocsp.CreateRequest(&x509.Certificate{SerialNumber: big.NewInt(0x5eed)}, ca, &xocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	now = time.Now()
	resp, err := http.Post(svc.base+"/api/ocsp", "application/ocsp-request", bytes.NewReader(reqDER))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := xocsp.ParseResponse(body, ca)
	if err != nil {
		t.Fatalf("OCSP response: %v", err)
	}
	near("OCSP thisUpdate", r.ThisUpdate, now)
	if r.Certificate == nil {
		t.Fatal("the OCSP response carries no responder certificate")
	}
	near("responder certificate notBefore", r.Certificate.NotBefore, now)
}
