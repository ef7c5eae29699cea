package ocsp

import (
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

// responderCertBackdate absorbs clock skew between us and relying parties.
const responderCertBackdate = 5 * time.Minute

// delegate is one responder key with its CA-signed certificate. Immutable once built.
type delegate struct {
	key         crypto.Signer
	cert        *x509.Certificate
	hash        crypto.Hash
	sigAlgID    pkix.AlgorithmIdentifier
	responderID asn1.RawValue // ResponderID byKey, RFC 5019 §2.2.3 preference
	renewAt     time.Time
}

// usableFor reports whether responses produced at now (valid until now+validity) stay within the certificate.
func (d *delegate) usableFor(now time.Time, validity time.Duration) bool {
	return d != nil && !now.Before(d.cert.NotBefore) && !now.Add(validity).After(d.cert.NotAfter)
}

// newDelegate generates a responder key and has the CA sign its certificate: the only CA-key operation the
// OCSP path makes, once per renewal.
func newDelegate(ctx context.Context, rec Recorder, ca *x509.Certificate, caSigner crypto.Signer, caSigAlg x509.SignatureAlgorithm, keyType KeyType, validity time.Duration, now time.Time) (*delegate, error) {
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
	notBefore := now.Add(-responderCertBackdate).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: responderCommonName(ca), Organization: ca.Subject.Organization},
		NotBefore:             notBefore,
		NotAfter:              now.Add(validity).UTC().Truncate(time.Second),
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
	return &delegate{
		key:         key,
		cert:        cert,
		hash:        crypto.SHA256,
		sigAlgID:    sigAlgID,
		responderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: keyHashDER},
		// Renew at half-life so a failed renewal leaves plenty of time to retry.
		renewAt: notBefore.Add(cert.NotAfter.Sub(notBefore) / 2),
	}, nil
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

// signatureAlgorithm picks how the CA key signs the responder certificate: SHA-256 for RSA and P-256,
// SHA-384 for P-384, SHA-512 for P-521 (the same rule the CRL uses).
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		case elliptic.P521():
			return x509.ECDSAWithSHA512, nil
		}
	case ed25519.PublicKey:
		return x509.PureEd25519, nil
	}
	return x509.UnknownSignatureAlgorithm, fmt.Errorf("%w: unsupported CA key type %T", ErrInvalidIssuer, pub)
}
