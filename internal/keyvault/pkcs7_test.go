package keyvault_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// selfSigned issues a self-signed CA certificate with the vault key.
func selfSigned(t *testing.T, signer crypto.Signer, alg x509.SignatureAlgorithm) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "azscep test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		SignatureAlgorithm:    alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatalf("x509.CreateCertificate with the Key Vault key: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestPKCS7SignedData covers the SHA-1 trap of smallstep/pkcs7 (go-libraries.md
// §1) and the fix: with the SHA-256 default, a Key Vault key signs SignedData.
// Not parallel: it changes pkcs7's process-wide default digest.
func TestPKCS7SignedData(t *testing.T) {
	e := newEnv(t)
	content := []byte("CertRep payload")
	t.Cleanup(func() { _ = pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1) })

	for _, tc := range []struct {
		name string
		priv crypto.Signer
		alg  x509.SignatureAlgorithm
	}{
		{"rsa", rsaKey, x509.SHA256WithRSA},
		{"p256", p256Key, x509.ECDSAWithSHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := e.key(t, "pkcs7-"+tc.name, tc.priv, kvfake.KeyOptions{}, keyvault.Options{})
			cert := selfSigned(t, k, tc.alg)

			// pkcs7's own default (SHA-1) cannot be served by Key Vault and
			// must fail locally, without a round trip.
			if err := pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1); err != nil {
				t.Fatal(err)
			}
			before := e.fake.Count(kvfake.OpSign)
			sd, err := pkcs7.NewSignedData(content)
			if err != nil {
				t.Fatal(err)
			}
			if err := sd.AddSigner(cert, k, pkcs7.SignerInfoConfig{}); err == nil {
				t.Fatal("SHA-1 SignedData signed by a Key Vault key: want an error")
			} else if !errors.Is(err, keyvault.ErrUnsupported) {
				t.Fatalf("SHA-1 error = %v, want ErrUnsupported", err)
			}
			if got := e.fake.Count(kvfake.OpSign); got != before {
				t.Fatalf("SHA-1 signing reached the vault (%d sign calls)", got-before)
			}

			if err := pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256); err != nil {
				t.Fatal(err)
			}
			sd, err = pkcs7.NewSignedData(content)
			if err != nil {
				t.Fatal(err)
			}
			if err := sd.AddSigner(cert, k, pkcs7.SignerInfoConfig{}); err != nil {
				t.Fatalf("AddSigner with the Key Vault key: %v", err)
			}
			der, err := sd.Finish()
			if err != nil {
				t.Fatal(err)
			}
			p7, err := pkcs7.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := p7.Verify(); err != nil {
				t.Fatalf("SignedData does not verify: %v", err)
			}
			if !bytes.Equal(p7.Content, content) {
				t.Fatal("content mismatch")
			}
			if got := p7.Signers[0].DigestAlgorithm.Algorithm; !got.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
				t.Fatalf("digest algorithm = %v, want SHA-256", got)
			}
		})
	}
}

// TestPKCS7EnvelopeDecrypt: smallstep/pkcs7 decrypts SCEP-style envelopes
// through the Key's crypto.Decrypter, for PKCS#1 v1.5 (what SCEP clients
// send) and RSAES-OAEP recipients. Not parallel: it changes pkcs7 globals.
func TestPKCS7EnvelopeDecrypt(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ra", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	cert := selfSigned(t, k, x509.SHA256WithRSA)
	content := []byte("PKCS#10 request inside the envelope")

	oldKEA, oldHash, oldCEA := pkcs7.KeyEncryptionAlgorithm, pkcs7.KeyEncryptionHash, pkcs7.ContentEncryptionAlgorithm
	t.Cleanup(func() {
		pkcs7.KeyEncryptionAlgorithm, pkcs7.KeyEncryptionHash, pkcs7.ContentEncryptionAlgorithm = oldKEA, oldHash, oldCEA
	})
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC

	for _, tc := range []struct {
		name string
		kea  []int
		hash crypto.Hash
	}{
		{"rsaEncryption", pkcs7.OIDEncryptionAlgorithmRSA, crypto.SHA256},
		{"oaep-sha1", pkcs7.OIDEncryptionAlgorithmRSAESOAEP, crypto.SHA1},
		{"oaep-sha256", pkcs7.OIDEncryptionAlgorithmRSAESOAEP, crypto.SHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkcs7.KeyEncryptionAlgorithm, pkcs7.KeyEncryptionHash = tc.kea, tc.hash
			env, err := pkcs7.Encrypt(content, []*x509.Certificate{cert})
			if err != nil {
				t.Fatal(err)
			}
			p7, err := pkcs7.Parse(env)
			if err != nil {
				t.Fatal(err)
			}
			before := e.fake.Count(kvfake.OpDecrypt)
			got, err := p7.Decrypt(cert, k)
			if err != nil {
				t.Fatalf("pkcs7 Decrypt with the Key Vault key: %v", err)
			}
			if !bytes.Equal(got, content) {
				t.Fatal("decrypted content mismatch")
			}
			if n := e.fake.Count(kvfake.OpDecrypt) - before; n != 1 {
				t.Fatalf("decrypt calls = %d, want 1", n)
			}
		})
	}
}
