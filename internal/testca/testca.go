// Package testca builds throwaway certificate authorities and SCEP clients for tests: a CA (EC P-256 or RSA)
// with an RSA SCEP registration authority as *custody.Keys, CSR builders that produce the requests a policy must
// refuse (SHA-1, 1024-bit, CA:TRUE, forbidden usages) as well as the ones it must accept (Intune SID URIs, UPNs),
// a Windows-shaped SCEP signer certificate (critical AKI, SHA-1 self-signature), and a SCEP client on
// github.com/smallstep/scep and github.com/smallstep/pkcs7 that speaks every message type the server answers.
//
// It is a normal package so that the tests of several packages can share it, but nothing outside tests may
// import it: its RSA keys are fixtures checked into the repository (see RSAKey) and protect nothing.
//
// The SCEP helpers use smallstep/pkcs7's process-wide algorithms; tests that call them should set those once
// (scep.Init in TestMain), exactly as the server does.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
)

// Key types for Options.KeyType.
const (
	KeyEC  = "EC"  // ECDSA P-256 (the default: generating it is cheap, also under -race)
	KeyRSA = "RSA" // RSA 2048, a fixture key
)

// Options shape a throwaway CA. The zero value is an EC P-256 root valid for a year with an RSA RA.
type Options struct {
	// KeyType is KeyEC (default) or KeyRSA. CA-decrypt mode (NoRA) needs KeyRSA.
	KeyType string
	// Subject of the root; default CN=azscep test CA <n>, O=azscep tests.
	Subject pkix.Name
	// Validity of the root; default one year.
	Validity time.Duration
	// NoRA leaves Keys.RACert and Keys.RAKey nil: the CA key decrypts and signs CertReps itself.
	NoRA bool
	// Now is the issuing time; default time.Now.
	Now time.Time
}

// CA is a throwaway certificate authority.
type CA struct {
	// Keys is what custody would load: the chain (the root alone), the CA signer and the RA.
	Keys *custody.Keys
	// Cert is the CA certificate, Keys.Chain[0].
	Cert *x509.Certificate
	// Key is the CA private key (*ecdsa.PrivateKey or *rsa.PrivateKey).
	Key crypto.Signer
	// RACert and RAKey are the SCEP RA, nil with Options.NoRA.
	RACert *x509.Certificate
	RAKey  *rsa.PrivateKey
}

// New makes a CA through the same custody functions `azscep ca init` uses (custody.NewRoot and
// custody.NewRACertificate), so a test exercises the certificates production would have.
func New(t testing.TB, opts Options) *CA {
	t.Helper()
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if opts.Validity == 0 {
		opts.Validity = 365 * 24 * time.Hour
	}
	n := caCounter.Add(1)
	if opts.Subject.CommonName == "" {
		opts.Subject = pkix.Name{CommonName: "azscep test CA " + big.NewInt(n).String(), Organization: []string{"azscep tests"}}
	}
	var key crypto.Signer
	switch opts.KeyType {
	case "", KeyEC:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatalf("testca: generating CA key: %v", err)
		}
		key = k
	case KeyRSA:
		key = uniqueRSAKey(t)
	default:
		t.Fatalf("testca: unknown key type %q", opts.KeyType)
	}
	root, err := custody.NewRoot(key, custody.RootOptions{Subject: opts.Subject, Validity: opts.Validity}, now)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	ca := &CA{Cert: root, Key: key, Keys: &custody.Keys{Chain: []*x509.Certificate{root}, CASigner: key}}
	if !opts.NoRA {
		ca.RAKey = uniqueRSAKey(t)
		ca.RACert, err = custody.NewRACertificate(root, key, ca.RAKey.Public(), "azscep test RA", now)
		if err != nil {
			t.Fatalf("testca: %v", err)
		}
		ca.Keys.RACert, ca.Keys.RAKey = ca.RACert, ca.RAKey
	}
	if err := ca.Keys.Check(now); err != nil {
		t.Fatalf("testca: the CA fails custody's start-up check: %v", err)
	}
	return ca
}

// Recipient is the certificate SCEP clients encrypt to: the RA, or the CA in CA-decrypt mode.
func (ca *CA) Recipient() *x509.Certificate {
	if ca.RACert != nil {
		return ca.RACert
	}
	return ca.Cert
}

// LeafOptions shape a certificate Issue signs directly with the CA key, bypassing the issuance package: for
// certificates the CA's records know nothing about, or with validity periods issuance would never produce.
type LeafOptions struct {
	Subject   pkix.Name
	NotBefore time.Time // default now − 1 h
	NotAfter  time.Time // default now + 24 h
	KeyUsage  x509.KeyUsage
	ExtKeyUse []x509.ExtKeyUsage
}

// Issue signs a clientAuth leaf for pub with the CA key.
func (ca *CA) Issue(t testing.TB, pub crypto.PublicKey, o LeafOptions) *x509.Certificate {
	t.Helper()
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(24 * time.Hour)
	}
	if o.KeyUsage == 0 {
		o.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if o.ExtKeyUse == nil {
		o.ExtKeyUse = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               o.Subject,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              o.KeyUsage,
		ExtKeyUsage:           o.ExtKeyUse,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatalf("testca: issuing leaf: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testca: parsing leaf: %v", err)
	}
	return c
}

// SelfSigned makes the throwaway signer certificate a SCEP client signs its PKCSReq with (RFC 8894 §2.3): the
// subject is the CSR's, the key is the CSR's, the signature SHA-256.
func SelfSigned(t testing.TB, key crypto.Signer, subject pkix.Name) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("testca: self-signing: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testca: parsing self-signed certificate: %v", err)
	}
	return c
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testca: %v", err)
	}
	b[0] = b[0]&0x3f | 0x40
	return new(big.Int).SetBytes(b)
}
