package custody_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	mozpkcs7 "go.mozilla.org/pkcs7"

	"github.com/smallstep/pkcs7"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/testca"
)

// now is the fixed clock every test runs at, so validity windows are deterministic.
var now = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

const tenYears = 10 * 365 * 24 * time.Hour

// RSA key generation dominates the suite's run time, so tests draw 2048-bit keys from a small pool generated
// once per process. Each index is a distinct key; tests that need two different keys use two indexes.
var (
	keyPoolMu sync.Mutex
	keyPool   = map[int]*rsa.PrivateKey{}
)

func testRSAKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keyPoolMu.Lock()
	defer keyPoolMu.Unlock()
	if k, ok := keyPool[i]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPool[i] = k
	return k
}

func testECKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testRoot(t testing.TB, key crypto.Signer, cn string) *x509.Certificate {
	t.Helper()
	c, err := custody.NewRoot(key, custody.RootOptions{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"Example Org"}}, Validity: tenYears}, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testRA(t testing.TB, ca *x509.Certificate, caKey crypto.Signer, raKey crypto.PublicKey) *x509.Certificate {
	t.Helper()
	c, err := custody.NewRACertificate(ca, caKey, raKey, "Test RA", now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issue signs tmpl for pub with parent/parentKey, filling in a serial.
func issue(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkEnvelopeOpens encrypts a SCEP-style pkcs7 envelope to cert with go.mozilla.org/pkcs7 (an implementation
// independent of the server's, with the PKCS#1 v1.5 key transport real SCEP clients use) and opens it with key
// through smallstep/pkcs7, the library the SCEP server decrypts with.
func checkEnvelopeOpens(t *testing.T, cert *x509.Certificate, key crypto.PrivateKey) {
	t.Helper()
	content := []byte("PKCS#10 request inside the SCEP envelope")
	env, err := mozpkcs7.Encrypt(content, []*x509.Certificate{cert})
	if err != nil {
		t.Fatalf("encrypting envelope: %v", err)
	}
	p7, err := pkcs7.Parse(env)
	if err != nil {
		t.Fatalf("parsing envelope: %v", err)
	}
	got, err := p7.Decrypt(cert, key)
	if err != nil {
		t.Fatalf("decrypting envelope with the SCEP identity key: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("decrypted %q, want %q", got, content)
	}
}

func wantErr(t *testing.T, err error, target error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", substr)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q does not match %v", err, target)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}

// ecDecrypter is an EC key dressed up as an RAKey, to reach the RSA-only check in Keys.Check.
type ecDecrypter struct{ *ecdsa.PrivateKey }

func (ecDecrypter) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, errors.New("EC keys do not decrypt")
}

// signerOnly hides every method of a key except crypto.Signer.
type signerOnly struct{ crypto.Signer }

func TestNewRootProfile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  x509.SignatureAlgorithm
	}{
		{"RSA", testRSAKey(t, 0), x509.SHA256WithRSA},
		{"P-256", testECKey(t, elliptic.P256()), x509.ECDSAWithSHA256},
		{"P-384", testECKey(t, elliptic.P384()), x509.ECDSAWithSHA384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testRoot(t, tc.key, "Root "+tc.name)
			if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("basic constraints: IsCA=%t valid=%t maxPathLen=%d zero=%t", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
			}
			if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage&want != want {
				t.Errorf("key usage %b lacks keyCertSign|cRLSign", c.KeyUsage)
			}
			if c.SignatureAlgorithm != tc.alg {
				t.Errorf("signature algorithm %s, want %s", c.SignatureAlgorithm, tc.alg)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if !bytes.Equal(c.RawIssuer, c.RawSubject) || c.Subject.CommonName != "Root "+tc.name {
				t.Errorf("issuer %q subject %q", c.Issuer, c.Subject)
			}
			ski, err := custody.KeyID(tc.key.Public())
			if err != nil || !bytes.Equal(c.SubjectKeyId, ski) {
				t.Errorf("SKI %x, want %x (%v)", c.SubjectKeyId, ski, err)
			}
			if !c.NotBefore.Equal(now.Add(-time.Hour)) || !c.NotAfter.Equal(now.Add(tenYears)) {
				t.Errorf("validity %s – %s", c.NotBefore, c.NotAfter)
			}
			// 16 random bytes with the top bit cleared and the next one set: always positive, always 127 bits.
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() != 127 {
				t.Errorf("serial %x has %d bits", c.SerialNumber, c.SerialNumber.BitLen())
			}
		})
	}
}

// TestKeyIDMethod1 checks KeyID against RFC 5280 §4.2.1.2 method 1 computed independently: SHA-1 of the
// subjectPublicKey BIT STRING contents, which is the PKCS#1 RSAPublicKey for RSA and the uncompressed point for EC.
func TestKeyIDMethod1(t *testing.T) {
	t.Parallel()
	rk := testRSAKey(t, 0)
	want := sha1.Sum(x509.MarshalPKCS1PublicKey(&rk.PublicKey))
	if got, err := custody.KeyID(rk.Public()); err != nil || !bytes.Equal(got, want[:]) {
		t.Errorf("RSA KeyID %x, want %x (%v)", got, want, err)
	}
	ek := testECKey(t, elliptic.P256())
	point, err := ek.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want = sha1.Sum(point)
	if got, err := custody.KeyID(ek.Public()); err != nil || !bytes.Equal(got, want[:]) {
		t.Errorf("EC KeyID %x, want %x (%v)", got, want, err)
	}
	if _, err := custody.KeyID("not a key"); err == nil {
		t.Error("KeyID accepted a non-key")
	}
}

func TestNewRACertificate(t *testing.T) {
	t.Parallel()
	caKey, raKey := testRSAKey(t, 0), testRSAKey(t, 1)
	ca := testRoot(t, caKey, "RA Test CA")
	ra := testRA(t, ca, caKey, raKey.Public())
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; ra.KeyUsage != want {
		t.Errorf("RA key usage %b, want %b", ra.KeyUsage, want)
	}
	if ra.IsCA {
		t.Error("RA certificate is a CA")
	}
	if err := ra.CheckSignatureFrom(ca); err != nil {
		t.Errorf("RA not signed by the CA: %v", err)
	}
	if ra.Subject.CommonName != "Test RA" || len(ra.Subject.Organization) != 1 || ra.Subject.Organization[0] != "Example Org" {
		t.Errorf("RA subject %q", ra.Subject)
	}
	if !bytes.Equal(ra.RawIssuer, ca.RawSubject) {
		t.Errorf("RA issuer %q, want %q", ra.Issuer, ca.Subject)
	}
	if !ra.NotAfter.Equal(now.Add(custody.RAValidity)) {
		t.Errorf("RA NotAfter %s, want %s", ra.NotAfter, now.Add(custody.RAValidity))
	}
	if ski, _ := custody.KeyID(raKey.Public()); !bytes.Equal(ra.SubjectKeyId, ski) {
		t.Error("RA SKI is not the method-1 key ID")
	}

	// An RA never outlives its CA.
	shortCA, err := custody.NewRoot(caKey, custody.RootOptions{Subject: pkix.Name{CommonName: "Short CA"}, Validity: 30 * 24 * time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	if ra := testRA(t, shortCA, caKey, raKey.Public()); !ra.NotAfter.Equal(shortCA.NotAfter) {
		t.Errorf("RA NotAfter %s is not clipped to the CA's %s", ra.NotAfter, shortCA.NotAfter)
	}

	// SCEP clients encrypt to the RA, so it must be RSA.
	_, err = custody.NewRACertificate(ca, caKey, testECKey(t, elliptic.P256()).Public(), "EC RA", now)
	wantErr(t, err, nil, "must be RSA")
}

func TestNewSubordinateCSR(t *testing.T) {
	t.Parallel()
	key := testECKey(t, elliptic.P384())
	der, err := custody.NewSubordinateCSR(key, pkix.Name{CommonName: "Issuing CA", Organization: []string{"Example Org"}})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "Issuing CA" || csr.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("CSR subject %q alg %s", csr.Subject, csr.SignatureAlgorithm)
	}
	if !key.PublicKey.Equal(csr.PublicKey) {
		t.Error("CSR is for another key")
	}
}

func TestKeysCheck(t *testing.T) {
	t.Parallel()
	caKey, raKey, otherKey := testRSAKey(t, 0), testRSAKey(t, 1), testRSAKey(t, 2)
	ca := testRoot(t, caKey, "Check CA")
	ra := testRA(t, ca, caKey, raKey.Public())
	otherCA := testRoot(t, otherKey, "Other CA")

	good := func() *custody.Keys {
		return &custody.Keys{Chain: []*x509.Certificate{ca}, CASigner: caKey, RACert: ra, RAKey: raKey}
	}
	if err := good().Check(now); err != nil {
		t.Fatalf("valid keys fail Check: %v", err)
	}

	// A CA certificate for caKey that is not fit to issue: no keyCertSign, or not a CA at all.
	noCertSign := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "No CertSign"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(tenYears), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign},
		otherCA, caKey.Public(), otherKey)
	notCA := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Not a CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(tenYears), BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign},
		otherCA, caKey.Public(), otherKey)

	// An RA certificate for an EC key, signed by the CA (NewRACertificate refuses to make one).
	ecRA := testECKey(t, elliptic.P256())
	ecRACert := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "EC RA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}, ca, ecRA.Public(), caKey)

	for _, tc := range []struct {
		name   string
		mutate func(k *custody.Keys) time.Time
		target error
		substr string
	}{
		{"no chain", func(k *custody.Keys) time.Time { k.Chain = nil; return now }, nil, "no CA certificate"},
		{"no CA key", func(k *custody.Keys) time.Time { k.CASigner = nil; return now }, nil, "no CA certificate or key"},
		{"CA key does not match", func(k *custody.Keys) time.Time { k.CASigner = otherKey; return now },
			custody.ErrKeyMismatch, "the CA key (RSA 2048-bit key) does not match the CA certificate \"CN=Check CA,O=Example Org\" (SHA-256 "},
		{"CA without keyCertSign", func(k *custody.Keys) time.Time { k.Chain = []*x509.Certificate{noCertSign, otherCA}; return now },
			nil, "not a CA certificate with keyCertSign"},
		{"CA not a CA", func(k *custody.Keys) time.Time { k.Chain = []*x509.Certificate{notCA, otherCA}; return now },
			nil, "not a CA certificate with keyCertSign"},
		{"CA expired", func(k *custody.Keys) time.Time { return ca.NotAfter.Add(time.Second) }, nil, "the CA certificate expired at"},
		{"chain link does not verify", func(k *custody.Keys) time.Time { k.Chain = []*x509.Certificate{ca, otherCA}; return now },
			nil, "chain link 0 does not verify"},
		{"RA not yet valid", func(k *custody.Keys) time.Time { return ra.NotBefore.Add(-time.Second) }, nil, "the RA certificate is not valid yet"},
		{"RA not signed by the CA", func(k *custody.Keys) time.Time {
			k.RACert = testRA(t, otherCA, otherKey, raKey.Public())
			return now
		}, nil, "the RA certificate is not signed by the CA"},
		{"RA key not RSA", func(k *custody.Keys) time.Time {
			k.RACert, k.RAKey = ecRACert, ecDecrypter{ecRA}
			return now
		}, nil, "the RA key must be RSA"},
		{"RA key does not match", func(k *custody.Keys) time.Time { k.RAKey = otherKey; return now },
			custody.ErrKeyMismatch, "the RA key does not match the RA certificate"},
		{"RA key missing", func(k *custody.Keys) time.Time { k.RAKey = nil; return now },
			custody.ErrKeyMismatch, "the RA key does not match the RA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := good()
			at := tc.mutate(k)
			wantErr(t, k.Check(at), tc.target, tc.substr)
		})
	}
	// An expired RA is RA maintenance's to renew, which needs the keys: Check passes it, RAExpired says so.
	k := good()
	if err := k.Check(ra.NotAfter.Add(time.Second)); err != nil {
		t.Errorf("Check refuses an expired RA certificate: %v", err)
	}
	if !k.RAExpired(ra.NotAfter.Add(time.Second)) || k.RAExpired(ra.NotAfter) {
		t.Error("RAExpired is wrong at or after the RA certificate's notAfter")
	}
}

func TestSCEPIdentity(t *testing.T) {
	t.Parallel()
	caKey, raKey := testRSAKey(t, 0), testRSAKey(t, 1)
	ca := testRoot(t, caKey, "Identity CA")
	ra := testRA(t, ca, caKey, raKey.Public())

	// With an RA, SCEP clients encrypt to the RA.
	k := &custody.Keys{Chain: []*x509.Certificate{ca}, CASigner: caKey, RACert: ra, RAKey: raKey}
	cert, key, err := k.SCEPIdentity()
	if err != nil || cert != ra || key != custody.RAKey(raKey) {
		t.Fatalf("SCEPIdentity = %v, %T, %v; want the RA", cert.Subject, key, err)
	}
	checkEnvelopeOpens(t, cert, key)

	// CA-decrypt mode with an RSA CA key: the CA itself.
	k = &custody.Keys{Chain: []*x509.Certificate{ca}, CASigner: caKey}
	if err := k.Check(now); err != nil {
		t.Fatalf("CA-decrypt keys fail Check: %v", err)
	}
	cert, key, err = k.SCEPIdentity()
	if err != nil || cert != ca || key != custody.RAKey(caKey) {
		t.Fatalf("SCEPIdentity = %v, %T, %v; want the CA", cert.Subject, key, err)
	}
	checkEnvelopeOpens(t, cert, key)

	// CA-decrypt mode cannot work with an EC CA or a key that cannot decrypt; Check refuses both.
	ecKey := testECKey(t, elliptic.P256())
	ecCA := testRoot(t, ecKey, "EC CA")
	k = &custody.Keys{Chain: []*x509.Certificate{ecCA}, CASigner: ecDecrypter{ecKey}}
	_, _, err = k.SCEPIdentity()
	wantErr(t, err, nil, "CA-decrypt mode needs an RSA CA key")
	wantErr(t, k.Check(now), nil, "CA-decrypt mode needs an RSA CA key")

	k = &custody.Keys{Chain: []*x509.Certificate{ca}, CASigner: signerOnly{caKey}}
	_, _, err = k.SCEPIdentity()
	wantErr(t, err, nil, "CA-decrypt mode needs a CA key that can decrypt")
	wantErr(t, k.Check(now), nil, "CA-decrypt mode needs a CA key that can decrypt")

	_, _, err = (&custody.Keys{}).SCEPIdentity()
	wantErr(t, err, nil, "no CA certificate")
}

func TestSignatureAlgorithmFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pub  crypto.PublicKey
		want x509.SignatureAlgorithm
	}{
		{testRSAKey(t, 0).Public(), x509.SHA256WithRSA},
		{testECKey(t, elliptic.P256()).Public(), x509.ECDSAWithSHA256},
		{testECKey(t, elliptic.P384()).Public(), x509.ECDSAWithSHA384},
	} {
		got, err := custody.SignatureAlgorithmFor(tc.pub)
		if err != nil || got != tc.want {
			t.Errorf("SignatureAlgorithmFor(%T) = %s, %v; want %s", tc.pub, got, err, tc.want)
		}
	}
	// The CRL, the OCSP responder's certificate and issued certificates follow this one rule, so a key it refuses
	// is refused everywhere rather than signing some things and not others.
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []crypto.PublicKey{testECKey(t, elliptic.P521()).Public(), edPub} {
		if got, err := custody.SignatureAlgorithmFor(pub); !errors.Is(err, custody.ErrUnsupportedCAKey) {
			t.Errorf("SignatureAlgorithmFor(%T) = %s, %v; want ErrUnsupportedCAKey", pub, got, err)
		}
	}
	if _, err := custody.NewRoot(testECKey(t, elliptic.P521()), custody.RootOptions{Validity: time.Hour}, time.Now()); !errors.Is(err, custody.ErrUnsupportedCAKey) {
		t.Errorf("NewRoot with a P-521 key: %v, want ErrUnsupportedCAKey", err)
	}
}

func TestPEMHelpers(t *testing.T) {
	t.Parallel()
	caKey := testRSAKey(t, 0)
	a, b := testRoot(t, caKey, "A"), testRoot(t, caKey, "B")
	data := custody.EncodePEM(a, b)
	// Other PEM blocks (a key, a CSR) between certificates are skipped, not misparsed.
	data = append([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), data...)
	certs, err := custody.ParsePEMCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(a) || !certs[1].Equal(b) {
		t.Fatalf("parsed %d certificates, not [A B]", len(certs))
	}
	_, err = custody.ParsePEMCertificates([]byte("no pem here"))
	wantErr(t, err, nil, "no certificate found")
	_, err = custody.ParsePEMCertificates([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	wantErr(t, err, nil, "parsing certificate")

	fp := custody.Fingerprint(a)
	if len(fp) != 64 || strings.ToUpper(fp) != fp || fp == custody.Fingerprint(b) {
		t.Errorf("fingerprint %q", fp)
	}
}

// stubRecorder records what IssueRACertificate tells it, and fails Planned when told to.
type stubRecorder struct {
	failPlanned error
	planned     []*x509.Certificate
	issued      []*x509.Certificate
}

func (r *stubRecorder) Planned(_ context.Context, tmpl *x509.Certificate) error {
	if r.failPlanned != nil {
		return r.failPlanned
	}
	r.planned = append(r.planned, tmpl)
	return nil
}

func (r *stubRecorder) Issued(_ context.Context, c *x509.Certificate) error {
	r.issued = append(r.issued, c)
	return nil
}

// TestIssueRACertificateRecordsBeforeSigning: the RA certificate is planned (recorded pending) before the CA key
// signs and reported issued after; when the pending record cannot be written the CA key is never used. It carries
// only the Certificate Request Agent EKU, so TLS validators refuse it.
func TestIssueRACertificateRecordsBeforeSigning(t *testing.T) {
	t.Parallel()
	caKey, raKey := testRSAKey(t, 0), testRSAKey(t, 1)
	ca := testRoot(t, caKey, "Recorded RA CA")
	signer := &testca.CountingSigner{Signer: caKey}
	rec := &stubRecorder{failPlanned: errors.New("store down")}
	_, err := custody.IssueRACertificate(context.Background(), rec, ca, signer, raKey.Public(), "RA", now)
	wantErr(t, err, nil, "recording the planned RA certificate")
	if signer.Calls() != 0 {
		t.Fatalf("the CA key signed %d times without a pending record", signer.Calls())
	}
	rec.failPlanned = nil
	ra, err := custody.IssueRACertificate(context.Background(), rec, ca, signer, raKey.Public(), "RA", now)
	if err != nil {
		t.Fatal(err)
	}
	if signer.Calls() != 1 || len(rec.planned) != 1 || len(rec.issued) != 1 ||
		rec.planned[0].SerialNumber.Cmp(ra.SerialNumber) != 0 || rec.issued[0] != ra {
		t.Fatalf("signatures %d, planned %d, issued %d", signer.Calls(), len(rec.planned), len(rec.issued))
	}
	if !custody.HasRAUsage(ra) {
		t.Fatalf("RA EKUs %v %v", ra.ExtKeyUsage, ra.UnknownExtKeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageCodeSigning} {
		if _, err := ra.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}, CurrentTime: now}); err == nil {
			t.Errorf("the RA certificate verifies for EKU %d", u)
		}
	}
}
