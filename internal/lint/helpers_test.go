package lint_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/lint"
)

var (
	keysOnce sync.Once
	keys     struct {
		caEC, leafEC, otherEC, leafP521 *ecdsa.PrivateKey
		caRSA, leafRSA, leafRSA1024     *rsa.PrivateKey
		leafEd                          ed25519.PrivateKey
		err                             error
	}
	fixturesOnce sync.Once
	fixtures     struct {
		caEC, caRSA, otherCA *x509.Certificate
		linterEC, linterRSA  *lint.Linter
		err                  error
	}
)

func loadKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		ec := func() *ecdsa.PrivateKey {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				keys.err = err
			}
			return k
		}
		keys.caEC, keys.leafEC, keys.otherEC = ec(), ec(), ec()
		var err error
		if keys.leafP521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader); err != nil {
			keys.err = err
		}
		if keys.caRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			keys.err = err
		}
		if keys.leafRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			keys.err = err
		}
		if keys.leafRSA1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			keys.err = err
		}
		_, keys.leafEd, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			keys.err = err
		}
	})
	if keys.err != nil {
		t.Fatalf("generating keys: %v", keys.err)
	}
}

// loadFixtures builds two CAs (P-256 and RSA-2048) shaped like the production ones, a third unrelated CA, and a
// Linter for each of the first two. Linter.New generates an RSA key for the RSA CA, so this runs once.
func loadFixtures(t testing.TB) {
	t.Helper()
	loadKeys(t)
	fixturesOnce.Do(func() {
		var err error
		mk := func(cn string, key crypto.Signer) *x509.Certificate {
			c, e := selfSignedCA(cn, key)
			if e != nil && err == nil {
				err = e
			}
			return c
		}
		fixtures.caEC = mk("azscep test issuing CA (P-256)", keys.caEC)
		fixtures.caRSA = mk("azscep test issuing CA (RSA)", keys.caRSA)
		fixtures.otherCA = mk("someone else's CA", keys.otherEC)
		if err == nil {
			fixtures.linterEC, err = lint.New(fixtures.caEC)
		}
		if err == nil {
			fixtures.linterRSA, err = lint.New(fixtures.caRSA)
		}
		fixtures.err = err
	})
	if fixtures.err != nil {
		t.Fatalf("building fixtures: %v", fixtures.err)
	}
}

// selfSignedCA is a self-signed CA certificate for key; each shape, if any, adjusts its template first (name
// constraints, say).
func selfSignedCA(cn string, key crypto.Signer, shape ...func(*x509.Certificate)) (*x509.Certificate, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Contoso"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(3 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	for _, f := range shape {
		f(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// randomSerial mirrors issuance: a 0x5c prefix byte and 128 random bits, 17 octets.
func randomSerial() *big.Int {
	b := make([]byte, 17)
	_, _ = rand.Read(b[1:])
	b[0] = 0x5c
	return new(big.Int).SetBytes(b)
}

func keyID(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum(der) // a key identifier, not a signature (RFC 7093 §2 allows any stable hash)
	return h[:]
}

const maxValidity = 365 * 24 * time.Hour

// leafTemplate mirrors issuance.buildTemplate for a clientAuth device certificate.
func leafTemplate(t testing.TB, pub crypto.PublicKey, now time.Time) *x509.Certificate {
	t.Helper()
	return &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "laptop-7"},
		NotBefore:             now.Add(-time.Hour).Truncate(time.Second),
		NotAfter:              now.Add(maxValidity).Truncate(time.Second).Add(-time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          keyID(t, pub),
		DNSNames:              []string{"laptop-7.corp.contoso.com"},
		// RFC 5280 §4.2.1.13 and §4.2.2.1 name HTTP (not HTTPS) for CDP and caIssuers; zlint warns on https://
		// (w_distribution_point_missing_ldap_or_uri, w_ext_aia_access_location_missing).
		OCSPServer:            []string{"http://ca.contoso.com/api/ocsp"},
		IssuingCertificateURL: []string{"http://ca.contoso.com/api/ca"},
		CRLDistributionPoints: []string{"http://ca.contoso.com/api/crl"},
	}
}

func expectFor(tmpl *x509.Certificate, now time.Time) lint.Expect {
	return lint.Expect{KeyUsage: tmpl.KeyUsage, ExtKeyUsage: tmpl.ExtKeyUsage, MaxValidity: maxValidity,
		NotBefore: now.Add(-time.Hour - time.Second)}
}
