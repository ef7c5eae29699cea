// Package lint checks a to-be-signed certificate before the CA key ever sees it (BR §4.3.1.2). The template is
// signed with a throwaway key of the CA key's type under a stand-in issuer certificate that carries the real
// issuer's name and key identifier, so the linted bytes equal the real TBS except for the signature value. Then
// the project's own profile lints run on the result. zlint runs over issued certificates in the test suite; it
// marks most lints not applicable to clientAuth-only leaves, so these lints are the policy (reliability.md §3.1).
package lint

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// ErrLint is wrapped by every lint failure; issuance refuses to sign after one.
var ErrLint = errors.New("lint")

// Linter signs templates with a throwaway key and lints the result.
type Linter struct {
	issuer     *x509.Certificate // stand-in issuer: real names, throwaway public key
	realIssuer *x509.Certificate
	key        crypto.Signer
}

// New makes a throwaway key of the CA key's type (RSA 2048, or the CA's curve). Key generation is slow (hundreds
// of milliseconds for RSA), so callers build the Linter off the request path.
func New(ca *x509.Certificate) (*Linter, error) {
	var key crypto.Signer
	var err error
	switch k := ca.PublicKey.(type) {
	case *rsa.PublicKey:
		// The TBS does not depend on the issuer key's size (same signature algorithm OID, real names and AKI),
		// so a 2048-bit throwaway key lints exactly the bytes the CA key will sign, at a third of the cost of a
		// 3072- or 4096-bit one on every issuance.
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case *ecdsa.PublicKey:
		key, err = ecdsa.GenerateKey(k.Curve, rand.Reader)
	default:
		return nil, fmt.Errorf("lint: CA key type %T is not supported", ca.PublicKey)
	}
	if err != nil {
		return nil, fmt.Errorf("lint: generating throwaway key: %w", err)
	}
	stand := *ca
	stand.PublicKey = key.Public()
	return &Linter{issuer: &stand, realIssuer: ca, key: key}, nil
}

// Expect is what the issuer intended; the lints compare the certificate with it.
type Expect struct {
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	MaxValidity time.Duration
	NotBefore   time.Time // the earliest acceptable notBefore
}

// Check signs tmpl for pub with the throwaway key, lints it and returns the linted DER (the record of what the CA
// plans to sign).
func (l *Linter) Check(tmpl *x509.Certificate, pub crypto.PublicKey, want Expect) ([]byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, l.issuer, pub, l.key)
	if err != nil {
		return nil, fmt.Errorf("%w: signing with the throwaway key: %v", ErrLint, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: to-be-signed certificate does not parse: %v", ErrLint, err)
	}
	if err := Certificate(cert, l.realIssuer, want); err != nil {
		return nil, err
	}
	return der, nil
}

// Certificate runs the profile lints on a parsed leaf issued (or to be issued) by issuer.
func Certificate(c, issuer *x509.Certificate, want Expect) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrLint, fmt.Sprintf(format, args...))
	}
	switch {
	case !c.BasicConstraintsValid || c.IsCA:
		return fail("leaf must carry basicConstraints CA:FALSE")
	case !extensionCritical(c, oidBasicConstraints):
		return fail("basicConstraints must be critical")
	case c.MaxPathLen > 0 || c.MaxPathLenZero:
		return fail("leaf must not carry a path length")
	case c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return fail("leaf must not have keyCertSign or cRLSign")
	case c.KeyUsage != want.KeyUsage:
		return fail("key usage %b differs from the profile's %b", c.KeyUsage, want.KeyUsage)
	case !slices.Equal(c.ExtKeyUsage, want.ExtKeyUsage) || len(c.UnknownExtKeyUsage) > 0:
		return fail("extended key usage differs from the profile")
	case c.SerialNumber.Sign() <= 0:
		return fail("serial must be positive")
	case serialOctets(c.SerialNumber) > 20:
		return fail("serial longer than 20 octets")
	case c.SerialNumber.Cmp(new(big.Int).Lsh(big.NewInt(1), 64)) < 0:
		return fail("serial has fewer than 64 bits")
	case !c.NotAfter.After(c.NotBefore):
		return fail("notAfter is not after notBefore")
	case c.NotAfter.Sub(c.NotBefore) > want.MaxValidity+time.Hour*2:
		// The profile cap plus the clock-skew back-date (≤ 1 h) and rounding.
		return fail("validity %s exceeds the profile cap %s", c.NotAfter.Sub(c.NotBefore), want.MaxValidity)
	case c.NotAfter.After(issuer.NotAfter):
		return fail("leaf outlives the issuing CA")
	case c.NotBefore.Before(want.NotBefore):
		return fail("notBefore is back-dated beyond the allowed skew")
	case !bytes.Equal(c.RawIssuer, issuer.RawSubject):
		return fail("issuer name differs from the CA subject")
	case len(issuer.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, issuer.SubjectKeyId):
		return fail("authority key identifier differs from the CA's subject key identifier")
	case len(c.SubjectKeyId) == 0:
		return fail("subject key identifier missing")
	case c.SignatureAlgorithm == x509.SHA1WithRSA || c.SignatureAlgorithm == x509.ECDSAWithSHA1 ||
		c.SignatureAlgorithm == x509.MD5WithRSA:
		return fail("weak signature algorithm %v", c.SignatureAlgorithm)
	case len(c.RawSubject) <= 2 && !hasExtension(c, oidSubjectAltName):
		return fail("certificate names nobody")
	case len(c.RawSubject) <= 2 && !extensionCritical(c, oidSubjectAltName):
		// RFC 5280 §4.2.1.6: with an empty subject the names live only in a critical subjectAltName.
		return fail("subjectAltName must be critical when the subject is empty")
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fail("RSA key below 2048 bits")
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fail("ECDSA curve not allowed")
		}
	default:
		return fail("public key type %T is never issued", c.PublicKey)
	}
	for _, e := range c.ExtKeyUsage {
		if e == x509.ExtKeyUsageAny || e == x509.ExtKeyUsageCodeSigning || e == x509.ExtKeyUsageOCSPSigning ||
			e == x509.ExtKeyUsageTimeStamping {
			return fail("extended key usage %d is never issued", e)
		}
	}
	return nil
}

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
)

func hasExtension(c *x509.Certificate, id asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(id) {
			return true
		}
	}
	return false
}

func extensionCritical(c *x509.Certificate, id asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(id) {
			return e.Critical
		}
	}
	return false
}

// serialOctets is the length of the serial's DER INTEGER contents, which is what BR §7.1 caps at 20: a magnitude
// whose top bit is set needs a leading zero octet to stay positive.
func serialOctets(n *big.Int) int {
	return n.BitLen()/8 + 1
}
