// Package lint checks a to-be-signed certificate before the CA key ever sees it (BR §4.3.1.2). The template is
// built by crypto/x509 exactly as the CA's signature will build it (real issuer certificate, the CA key's
// signature algorithm), but the "signer" it is handed only captures the to-be-signed bytes and refuses to sign, so
// no key operation runs; the planned certificate is those bytes with a placeholder (empty) signature. Then the
// project's own profile lints run on the result. zlint runs over issued certificates in the test suite; it marks
// most lints not applicable to clientAuth-only leaves, so these lints are the policy (reliability.md §3.1).
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
	"io"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrLint is wrapped by every lint failure; issuance refuses to sign after one.
var ErrLint = errors.New("lint")

// Linter builds to-be-signed certificates without signing them and lints the result.
type Linter struct {
	issuer *x509.Certificate
}

// New returns a Linter for certificates issued by ca (an RSA or ECDSA CA).
func New(ca *x509.Certificate) (*Linter, error) {
	switch ca.PublicKey.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return &Linter{issuer: ca}, nil
	}
	return nil, fmt.Errorf("lint: CA key type %T is not supported", ca.PublicKey)
}

// errCaptured stops x509.CreateCertificate once the to-be-signed bytes are captured.
var errCaptured = errors.New("lint: to-be-signed certificate captured")

// tbsCapture is the signer the template is built with. crypto/x509 hands a crypto.MessageSigner the whole
// to-be-signed certificate (not a digest); it keeps those bytes and refuses, so CreateCertificate stops before any
// signature exists. Its public key is the CA's, so the signature algorithm and the issuer checks are the real ones.
type tbsCapture struct {
	pub crypto.PublicKey
	tbs []byte
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.pub }

func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.tbs = bytes.Clone(msg)
	return nil, errCaptured
}

// Sign is only reached if crypto/x509 stopped handing over the message; failing closed keeps the CA from ever
// signing an unlinted certificate.
func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("lint: crypto/x509 asked for a digest signature; the to-be-signed bytes cannot be captured")
}

// Expect is what the issuer intended; the lints compare the certificate with it.
type Expect struct {
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	MaxValidity time.Duration
	NotBefore   time.Time // the earliest acceptable notBefore
}

// Check builds the to-be-signed certificate for tmpl and pub exactly as the CA's signature will, lints it and
// returns the planned certificate (the record of what the CA plans to sign): the to-be-signed bytes with the
// signature algorithm and an empty signature. No key operation runs.
func (l *Linter) Check(tmpl *x509.Certificate, pub crypto.PublicKey, want Expect) ([]byte, error) {
	capture := &tbsCapture{pub: l.issuer.PublicKey}
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, l.issuer, pub, capture); capture.tbs == nil {
		return nil, fmt.Errorf("%w: building the to-be-signed certificate: %v", ErrLint, err)
	}
	der, err := planned(capture.tbs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLint, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: to-be-signed certificate does not parse: %v", ErrLint, err)
	}
	if err := Certificate(cert, l.issuer, want); err != nil {
		return nil, err
	}
	return der, nil
}

// planned wraps a to-be-signed certificate as a Certificate with the TBS's own signature algorithm and an empty
// signature value (RFC 5280 §4.1: tbsCertificate, signatureAlgorithm, signatureValue).
func planned(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	var algo cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() ||
		!body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !body.SkipASN1(cbasn1.INTEGER) ||
		!body.ReadASN1Element(&algo, cbasn1.SEQUENCE) {
		return nil, errors.New("to-be-signed certificate is malformed")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(algo)
		b.AddASN1BitString(nil)
	})
	return b.Bytes()
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
