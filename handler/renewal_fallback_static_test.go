package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestScepclientHoldingAnotherCAsCertificate: micromdm's scepclient sends a RenewalReq signed with whatever
// certificate it holds, and the challenge in its CSR. A device moved to this CA from another one (a previous CA)
// enrolls with the right challenge, as an enrollment, instead of being refused on every run — also when that
// certificate has expired (its signingTime then lies past its notAfter; the signature still verifies).
func TestScepclientHoldingAnotherCAsCertificate(t *testing.T) {
	svc := startLocal(t)
	previous := testca.New(t, testca.Options{Subject: pkix.Name{CommonName: "previous CA"}})
	now := time.Now()
	for name, o := range map[string]testca.LeafOptions{
		"valid":   {},
		"expired": {NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			key := testca.RSAKey(t, nextDeviceKey(t))
			o.Subject = pkix.Name{CommonName: "migrated-device"}
			old := previous.Issue(t, key.Public(), o)
			write := func(name, typ string, der []byte) {
				t.Helper()
				if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write("d.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
			write("d.pem", "CERTIFICATE", old.Raw)

			got := scepclientEnroll(t, svc.base, dir, "migrated-device")
			if got.Equal(old) || !key.PublicKey.Equal(got.PublicKey) {
				t.Fatal("scepclient kept the other CA's certificate")
			}
			rec, err := svc.store.Get(context.Background(), store.SerialString(got.SerialNumber))
			if err != nil || rec.Status != store.StatusIssued || rec.RenewedFrom != "" {
				t.Fatalf("record %+v, %v: want an issued first enrollment", rec, err)
			}
		})
	}
}
