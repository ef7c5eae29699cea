package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	mozpkcs7 "go.mozilla.org/pkcs7"
)

// TestEnvelopeAlgorithms: an envelope in each algorithm names it, and opens with the recipient's key in openssl
// and in both Go pkcs7 libraries wherever they know the algorithm (neither opens AES-192).
func TestEnvelopeAlgorithms(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x1234567), Subject: pkix.Name{CommonName: "device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	keyPath, certPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		alg       ContentAlgorithm
		smallstep bool
		mozilla   bool
	}{
		{"aes-128-cbc", AES128CBC, true, true},
		{"aes-192-cbc", AES192CBC, false, false},
		{"aes-256-cbc", AES256CBC, true, true},
		{"des-ede3-cbc", DESEDE3CBC, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every length modulo the block size, an exact multiple included (a whole block of padding).
			for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 300} {
				content := bytes.Repeat([]byte{byte(n)}, n)
				env, err := Envelope(content, cert, tc.alg)
				if err != nil {
					t.Fatal(err)
				}
				p7, err := pkcs7.Parse(env)
				if err != nil {
					t.Fatalf("smallstep/pkcs7 cannot parse it: %v", err)
				}
				if tc.smallstep {
					if got, err := p7.Decrypt(cert, key); err != nil || !bytes.Equal(got, content) {
						t.Fatalf("smallstep/pkcs7 Decrypt (%d bytes) = %x, %v", n, got, err)
					}
				}
				if tc.mozilla {
					m7, err := mozpkcs7.Parse(env)
					if err != nil {
						t.Fatalf("mozilla pkcs7 cannot parse it: %v", err)
					}
					if got, err := m7.Decrypt(cert, key); err != nil || !bytes.Equal(got, content) {
						t.Fatalf("mozilla pkcs7 Decrypt (%d bytes) = %x, %v", n, got, err)
					}
				}
				if n != 300 {
					continue
				}
				in := filepath.Join(dir, tc.name+".der")
				if err := os.WriteFile(in, env, 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command("openssl", "cms", "-decrypt", "-inform", "DER", "-in", in,
					"-recip", certPath, "-inkey", keyPath).Output()
				if err != nil || !bytes.Equal(out, content) {
					t.Fatalf("openssl cms -decrypt: %v (%d bytes)", err, len(out))
				}
				text, err := exec.Command("openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", in).Output()
				if err != nil || !bytes.Contains(text, []byte(tc.name)) {
					t.Fatalf("openssl does not name the algorithm %s: %v\n%s", tc.name, err, text)
				}
			}
		})
	}
}
