package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/store"
)

// TestRevokedOCSPResponderIsReplaced: an admin who suspects the OCSP responder's key revokes its certificate
// through the admin API (the console offers it like any record). Its responses carry id-pkix-ocsp-nocheck, so no
// relying party would ever see that revocation: the responder must stop signing with it at once and sign with a
// new certificate and key, including the answer about the revoked one.
func TestRevokedOCSPResponderIsReplaced(t *testing.T) {
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	caPEM, err := os.ReadFile(filepath.Join(svc.cfg.LocalKeyDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := custody.ParsePEMCertificates(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ca := chain[0]
	leaf := issueViaAPI(t, svc.base, devToken(t, svc.base, "CSR.Request.Db"), pkix.Name{CommonName: "victim"}, "victim.example")
	before := ocspStatus(t, svc.base, leaf, ca)
	if before.Certificate == nil {
		t.Fatal("the OCSP response is not signed by a delegated responder")
	}
	// Under an RSA CA the responses are RSA-signed, for relying parties that verify RSA only.
	if _, rsaCA := ca.PublicKey.(*rsa.PublicKey); rsaCA {
		if _, ok := before.Certificate.PublicKey.(*rsa.PublicKey); !ok {
			t.Errorf("responder key %T under an RSA CA, want RSA", before.Certificate.PublicKey)
		}
	} else {
		t.Errorf("the local CA key is %T; this test expects the default RSA CA", ca.PublicKey)
	}
	responder := store.SerialString(before.Certificate.SerialNumber)
	if rec, err := svc.store.Get(context.Background(), responder); err != nil || rec.Source != "ocsp" {
		t.Fatalf("responder record %+v, %v", rec, err)
	}

	req, err := http.NewRequest(http.MethodPost, svc.base+"/api/certificates/"+responder+"/revoke",
		strings.NewReader(`{"reason":"keyCompromise","comment":"responder key leaked"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+devToken(t, svc.base, "Certificates.Manage"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || v.Status != "revoked" {
		t.Fatalf("revoking the responder: %d %+v", resp.StatusCode, v)
	}

	after := ocspStatus(t, svc.base, leaf, ca)
	if after.Certificate == nil || store.SerialString(after.Certificate.SerialNumber) == responder ||
		after.Certificate.PublicKey == nil || after.Certificate.Equal(before.Certificate) {
		t.Fatalf("after revoking responder %s, OCSP answers are still signed by it", responder)
	}
	if after.Status != ocsp.Good {
		t.Errorf("the leaf is %d, want good", after.Status)
	}
	self := ocspStatus(t, svc.base, before.Certificate, ca)
	if self.Status != ocsp.Revoked || store.SerialString(self.Certificate.SerialNumber) == responder {
		t.Errorf("the revoked responder: status %d, signed by %s; want revoked, signed by its successor", self.Status,
			store.SerialString(self.Certificate.SerialNumber))
	}
}
