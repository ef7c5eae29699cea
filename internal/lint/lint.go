// Package lint checks a to-be-signed certificate before the CA key ever sees it (BR §4.3.1.2). crypto/x509 builds
// the to-be-signed bytes from the template (real issuer certificate, the CA key's signature algorithm), but the
// "signer" it is handed only captures them and refuses to sign, so no key operation runs; the planned certificate
// is those bytes with a placeholder (empty) signature. Then the project's own profile lints run on the result, and
// the name constraints lint (RFC 5280 §4.2.1.10) when the CA certificate carries them (nameconstraints.go). The
// CA later signs exactly these bytes (Planned.WithSignature), so what is linted is by construction what is signed.
// zlint runs over issued certificates in the test suite; it marks most lints not applicable to clientAuth-only
// leaves, so these lints are the policy (reliability.md §3.1).
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
	names  *nameConstraints // nil when the issuer carries no name constraints
}

// New returns a Linter for certificates issued by ca (an RSA or ECDSA CA).
func New(ca *x509.Certificate) (*Linter, error) {
	switch ca.PublicKey.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		names, err := newNameConstraints(ca)
		if err != nil {
			return nil, err
		}
		return &Linter{issuer: ca, names: names}, nil
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

// Planned is a to-be-signed certificate that passed the lints: exactly what the CA will sign. Its parts are named
// after RFC 5280 §4.1; Cert is DER parsed once, so nobody needs to parse it again.
type Planned struct {
	// TBSCertificate is the DER tbsCertificate: the bytes the CA signs (§4.1.1.1).
	TBSCertificate []byte
	// SignatureAlgorithm is the DER AlgorithmIdentifier, copied from the TBS's own signature field, which
	// §4.1.1.2 requires the outer signatureAlgorithm to equal.
	SignatureAlgorithm []byte
	// Hash is the digest the signature algorithm signs (SHA-256, SHA-384 or SHA-512; see SignatureHash).
	Hash crypto.Hash
	// DER is the planned certificate: TBSCertificate, SignatureAlgorithm and an empty signatureValue. It is the
	// record of what the CA plans to sign.
	DER []byte
	// Cert is DER parsed.
	Cert *x509.Certificate
}

// Check builds the to-be-signed certificate for tmpl and pub exactly as crypto/x509 would sign it (the real issuer,
// the CA key's signature algorithm), lints it and returns it as Planned. No key operation runs.
func (l *Linter) Check(tmpl *x509.Certificate, pub crypto.PublicKey, want Expect) (*Planned, error) {
	capture := &tbsCapture{pub: l.issuer.PublicKey}
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, l.issuer, pub, capture); capture.tbs == nil {
		return nil, fmt.Errorf("%w: building the to-be-signed certificate: %v", ErrLint, err)
	}
	algo, err := signatureAlgorithm(capture.tbs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLint, err)
	}
	p := &Planned{TBSCertificate: capture.tbs, SignatureAlgorithm: algo}
	if p.DER, err = p.WithSignature(nil); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLint, err)
	}
	if p.Cert, err = x509.ParseCertificate(p.DER); err != nil {
		return nil, fmt.Errorf("%w: to-be-signed certificate does not parse: %v", ErrLint, err)
	}
	if err := Certificate(p.Cert, l.issuer, want); err != nil {
		return nil, err
	}
	if l.names != nil {
		// RFC 5280 §4.2.1.10: a name the issuing CA may not certify (a *NameConstraintsError).
		if err := l.names.check(p.Cert); err != nil {
			return nil, err
		}
	}
	// Refused here, before any record or key operation, rather than by the signer.
	if p.Hash, err = SignatureHash(p.Cert.SignatureAlgorithm); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLint, err)
	}
	return p, nil
}

// SignatureHash is the digest the CA signs for alg: SHA-256, SHA-384 or SHA-512 with RSA PKCS #1 v1.5 or ECDSA.
// Everything else (RSA-PSS, Ed25519, SHA-1, MD5, unknown) is an error: issuance signs only what it can hash and
// verify the same way crypto/x509 does.
func SignatureHash(alg x509.SignatureAlgorithm) (crypto.Hash, error) {
	switch alg {
	case x509.SHA256WithRSA, x509.ECDSAWithSHA256:
		return crypto.SHA256, nil
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384:
		return crypto.SHA384, nil
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512:
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("signature algorithm %v is not signed by this CA", alg)
}

// WithSignature is the Certificate (RFC 5280 §4.1: SEQUENCE { tbsCertificate, signatureAlgorithm,
// signatureValue BIT STRING }) of the planned TBS with signatureValue sig; a nil sig gives the planned
// certificate. The TBS is copied as is, so the signed certificate carries byte for byte what was linted.
func (p *Planned) WithSignature(sig []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(p.TBSCertificate)
		b.AddBytes(p.SignatureAlgorithm)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// signatureAlgorithm is the TBS's signature field (RFC 5280 §4.1.2.3), the AlgorithmIdentifier the outer
// signatureAlgorithm must repeat.
func signatureAlgorithm(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	var algo cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() ||
		!body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !body.SkipASN1(cbasn1.INTEGER) ||
		!body.ReadASN1Element(&algo, cbasn1.SEQUENCE) {
		return nil, errors.New("to-be-signed certificate is malformed")
	}
	return algo, nil
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
