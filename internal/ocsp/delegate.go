package ocsp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"
	"unicode/utf8"
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): relying parties need not check the responder
// certificate's own revocation status — which is why it must be short-lived.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

var (
	oidSigECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSigSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
)

// DefaultBackdate is how far a responder certificate's notBefore and a response's thisUpdate lie before their
// signing (Options.Backdate): a relying party whose clock runs behind ours rejects a response whose thisUpdate is in
// its future ("status not yet valid": OpenSSL's OCSP_check_validity allows only the skew its caller passes, none
// with the openssl command's -validity_period 0), and a responder certificate not yet valid. Both lie back by the
// same amount, so thisUpdate never precedes that certificate's notBefore.
const DefaultBackdate = 5 * time.Minute

// delegate is one responder key with its CA-signed certificate. Immutable once built.
type delegate struct {
	key         crypto.Signer
	cert        *x509.Certificate
	hash        crypto.Hash
	sigAlgID    pkix.AlgorithmIdentifier
	responderID asn1.RawValue // ResponderID byKey, RFC 5019 §2.2.3 preference
	renewAt     time.Time
	// endsWithCA: the certificate was cut to the CA certificate's notAfter (RFC 5280: a certificate must not
	// outlive its issuer), so no renewal can give a later one.
	endsWithCA bool
}

// usableFor reports whether responses produced at now stay within the certificate: for the full validity
// (now+validity), or, for a certificate that ends with the CA, with nextUpdate cut to its notAfter (see
// nextUpdate). Without that second case, the CA's last validity would fail this check on every request and
// each one would renew the certificate: a Key Vault signature and a store record per response.
func (d *delegate) usableFor(now time.Time, validity time.Duration) bool {
	switch {
	case d == nil || now.Before(d.cert.NotBefore):
		return false
	case d.endsWithCA:
		return now.Before(d.cert.NotAfter)
	}
	return !now.Add(validity).After(d.cert.NotAfter)
}

// nextUpdate is signed+validity, cut to the certificate's notAfter: a relying party accepts a response only
// while its signer is authorised (RFC 6960 §3.2), so a response must not claim to be good for longer than the
// certificate that signs it — and so never beyond the CA's notAfter. The cut only happens in the CA's last
// response validity; before it usableFor already keeps signed+validity inside the certificate.
func (d *delegate) nextUpdate(signed time.Time, validity time.Duration) time.Time {
	next := signed.Add(validity)
	if next.After(d.cert.NotAfter) {
		return d.cert.NotAfter
	}
	return next
}

// newDelegate generates a responder key and has the CA sign its certificate: the only CA-key operation the
// OCSP path makes, once per renewal. The certificate ends validity after now, or with the CA certificate if
// that is sooner; once the CA has expired there is nothing left to sign for, and it fails before the CA key is
// used or anything is recorded.
func newDelegate(ctx context.Context, rec Recorder, ca *x509.Certificate, caSigner crypto.Signer, caSigAlg x509.SignatureAlgorithm, keyType KeyType, validity, backdate time.Duration, now time.Time) (*delegate, error) {
	if !now.Before(ca.NotAfter) {
		return nil, caExpired(ca)
	}
	var (
		key      crypto.Signer
		err      error
		sigAlgID pkix.AlgorithmIdentifier
	)
	switch keyType {
	case KeyRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		sigAlgID = pkix.AlgorithmIdentifier{Algorithm: oidSigSHA256WithRSA, Parameters: asn1.NullRawValue}
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sigAlgID = pkix.AlgorithmIdentifier{Algorithm: oidSigECDSAWithSHA256}
	}
	if err != nil {
		return nil, fmt.Errorf("generating responder key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding responder public key: %w", err)
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, fmt.Errorf("decoding responder public key: %w", err)
	}
	// KeyHash ::= OCTET STRING -- SHA-1 of the subjectPublicKey BIT STRING value (RFC 6960 §4.2.1); also
	// the subject key identifier (RFC 5280 §4.2.1.2 method 1).
	keyHash := sha1.Sum(info.PublicKey.RightAlign())
	keyHashDER, err := asn1.Marshal(keyHash[:])
	if err != nil {
		return nil, fmt.Errorf("encoding responder key hash: %w", err)
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-backdate).UTC().Truncate(time.Second)
	notAfter := now.Add(validity).UTC().Truncate(time.Second)
	// Never past the CA's notAfter: relying parties reject a certificate that outlives its issuer (RFC 5280
	// path validation checks every certificate's validity at the same time).
	endsWithCA := !notAfter.Before(ca.NotAfter)
	if endsWithCA {
		notAfter = ca.NotAfter.UTC()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: responderCommonName(ca), Organization: ca.Subject.Organization},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          keyHash[:],
		SignatureAlgorithm:    caSigAlg,
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: asn1.NullBytes}},
	}
	if rec != nil {
		if err := rec.Planned(ctx, tmpl); err != nil {
			return nil, fmt.Errorf("recording planned responder certificate: %w", err)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caSigner)
	if err != nil {
		return nil, fmt.Errorf("signing responder certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing responder certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("verifying responder certificate: %w", err)
	}
	if rec != nil {
		if err := rec.Issued(ctx, cert); err != nil {
			return nil, fmt.Errorf("recording responder certificate: %w", err)
		}
	}
	// Renew at half-life so a failed renewal leaves plenty of time to retry; except a certificate that ends with
	// the CA: its successor would end at the same instant, so it serves until then and is never renewed (renewing
	// at each half-life of what is left would sign a new one every few minutes as the end nears).
	renewAt := notBefore.Add(cert.NotAfter.Sub(notBefore) / 2)
	if endsWithCA {
		renewAt = cert.NotAfter
	}
	return &delegate{
		key:         key,
		cert:        cert,
		hash:        crypto.SHA256,
		sigAlgID:    sigAlgID,
		responderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: keyHashDER},
		renewAt:     renewAt,
		endsWithCA:  endsWithCA,
	}, nil
}

// caExpired is the error for an OCSP request once the CA certificate has expired: no responder certificate can
// be issued (it would outlive its issuer) and none that exists is valid any longer.
func caExpired(ca *x509.Certificate) error {
	return fmt.Errorf("%w: the CA certificate expired at %s", ErrInvalidIssuer, ca.NotAfter.UTC().Format(time.RFC3339))
}

// responderCommonName derives a CN distinct from the CA's, within the 64-character ub-common-name.
func responderCommonName(ca *x509.Certificate) string {
	const suffix = " OCSP Responder"
	cn := ca.Subject.CommonName
	for len(cn)+len(suffix) > 64 {
		_, size := utf8.DecodeLastRuneInString(cn)
		cn = cn[:len(cn)-size]
	}
	return cn + suffix
}

// randomSerial returns a positive serial with 159 random bits in at most 20 octets (RFC 5280 §4.1.2.2).
func randomSerial() (*big.Int, error) {
	b := make([]byte, 20)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generating serial: %w", err)
		}
		b[0] &= 0x7f
		if s := new(big.Int).SetBytes(b); s.Sign() > 0 {
			return s, nil
		}
	}
}
