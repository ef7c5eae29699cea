package cms

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mozpkcs7 "go.mozilla.org/pkcs7"
)

func selfSigned(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// TestDegenerate: the certs-only SignedData parses with an independent implementation and with openssl, keeps the
// certificates in order, and carries a CRL when given one.
func TestDegenerate(t *testing.T) {
	a, key := selfSigned(t, "first")
	b, _ := selfSigned(t, "second")
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, a, key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := Degenerate([]*x509.Certificate{a, b}, crl)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := mozpkcs7.Parse(der)
	if err != nil {
		t.Fatalf("mozilla pkcs7 cannot parse it: %v", err)
	}
	if len(p7.Certificates) != 2 || !p7.Certificates[0].Equal(a) || !p7.Certificates[1].Equal(b) {
		t.Fatalf("certificates = %d, want [first second]", len(p7.Certificates))
	}
	if len(p7.CRLs) != 1 {
		t.Fatalf("CRLs = %d, want 1", len(p7.CRLs))
	}
	path := filepath.Join(t.TempDir(), "certs.p7")
	if err := os.WriteFile(path, der, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "pkcs7", "-inform", "DER", "-in", path, "-print_certs", "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CN = first") || !strings.Contains(string(out), "CN = second") {
		t.Fatalf("openssl pkcs7: %v\n%s", err, out)
	}
	empty, err := Degenerate(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p7, err := mozpkcs7.Parse(empty); err != nil || len(p7.Certificates) != 0 {
		t.Fatalf("empty degenerate: %v", err)
	}
}
