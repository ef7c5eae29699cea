// Package custody loads and creates the CA's keys and certificates. The only key types that leave it are
// crypto.Signer (the CA key) and RAKey (the SCEP RA key, which must also decrypt), so a local file key and a
// Key Vault key are interchangeable for every caller.
package custody

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync/atomic"
	"time"

	"github.com/azscep/azscep/internal/keyvault"
)

// ErrKeyMismatch means a private key is not the key of the certificate it is paired with: a CA key version pinned
// to the wrong version, a key file from another CA, an RA key that does not belong to its certificate, or a
// certificate offered for import that was issued for another key. Start-up and `ca import` stop on it.
var ErrKeyMismatch = errors.New("custody: key mismatch")

// RAKey is what SCEP needs from a key: decrypt the envelope's content key and sign the CertRep.
type RAKey interface {
	crypto.Signer
	crypto.Decrypter
}

// Keys is the loaded key material of a CA.
type Keys struct {
	// Chain is the CA certificate first, then its issuers (empty beyond the CA for a root).
	Chain    []*x509.Certificate
	CASigner crypto.Signer
	// RACert and RAKey are the SCEP registration authority. Both are nil in CA-decrypt mode, where the CA key
	// decrypts envelopes and signs CertReps itself.
	RACert *x509.Certificate
	RAKey  RAKey

	// live is the RA installed by SetRA (a renewal picked up while running); it takes precedence over RACert/RAKey.
	live atomic.Pointer[raState]
}

// RA is one SCEP RA certificate and its key.
type RA struct {
	Cert *x509.Certificate
	Key  RAKey
}

// raState is the current RA and, during the overlap after a rotation, the previous one.
type raState struct {
	cur      RA
	prev     *RA
	retireAt time.Time // the previous RA opens envelopes until then
}

// RA returns the current RA certificate and key (nil in CA-decrypt mode). Safe for concurrent use with SetRA.
func (k *Keys) RA() (*x509.Certificate, RAKey) {
	if st := k.live.Load(); st != nil {
		return st.cur.Cert, st.cur.Key
	}
	return k.RACert, k.RAKey
}

// PreviousRA returns the RA certificate and key replaced by the last rotation while its overlap lasts (clients
// that cached GetCACert still encrypt to it), or nils.
func (k *Keys) PreviousRA(now time.Time) (*x509.Certificate, RAKey) {
	if st := k.live.Load(); st != nil && st.prev != nil && now.Before(st.retireAt) {
		return st.prev.Cert, st.prev.Key
	}
	return nil, nil
}

// SetRA installs a new current RA (and the previous one, opened until retireAt) after checking that the current
// one fits the CA, so SCEP requests from now on use it. (Its validity was checked at start-up; renewals replace it
// 30 days before it ends.)
func (k *Keys) SetRA(cur RA, prev *RA, retireAt time.Time) error {
	if err := checkRA(k.CA(), cur.Cert, cur.Key); err != nil {
		return err
	}
	k.live.Store(&raState{cur: cur, prev: prev, retireAt: retireAt})
	return nil
}

// loadRA takes the RA read at start-up: the current one as RACert/RAKey (checked by Check) and, during an overlap
// after a rotation, the previous one as well.
func (k *Keys) loadRA(st *RAState) {
	k.RACert, k.RAKey = st.Current.Cert, st.Current.Key
	if st.Previous != nil {
		k.live.Store(&raState{cur: st.Current, prev: st.Previous, retireAt: RetireAt(st.Current.Cert, RAOverlap)})
	}
}

// CA returns the issuing certificate.
func (k *Keys) CA() *x509.Certificate { return k.Chain[0] }

// SCEPIdentity is the certificate and key SCEP clients encrypt to and CertReps are signed with.
func (k *Keys) SCEPIdentity() (*x509.Certificate, RAKey, error) {
	if cert, key := k.RA(); cert != nil {
		return cert, key, nil
	}
	d, err := k.CADecrypter()
	if err != nil {
		return nil, nil, err
	}
	return k.CA(), d, nil
}

// CADecrypter is the CA key as the key SCEP clients encrypt to (CA-decrypt mode, or an endpoint that hands out
// the CA alone): an RSA key that can decrypt, and whose Key Vault key_ops allow it.
func (k *Keys) CADecrypter() (RAKey, error) {
	if len(k.Chain) == 0 || k.CASigner == nil {
		return nil, errors.New("custody: no CA certificate or key")
	}
	if _, ok := k.CASigner.Public().(*rsa.PublicKey); !ok {
		return nil, errors.New("custody: CA-decrypt mode needs an RSA CA key (SCEP clients encrypt to it)")
	}
	d, ok := k.CASigner.(RAKey)
	if !ok {
		return nil, errors.New("custody: CA-decrypt mode needs a CA key that can decrypt")
	}
	// A Key Vault key implements Decrypt whatever its key type and key_ops say; without "decrypt" every
	// enrollment would fail with 403, so refuse at start-up instead.
	if c, ok := d.(interface{ CanDecrypt() bool }); ok && !c.CanDecrypt() {
		return nil, fmt.Errorf("custody: CA-decrypt mode needs a CA key whose key_ops allow decrypt; %s allows only %s",
			describeKey(d), describeOps(d))
	}
	return d, nil
}

// Check verifies the invariants start-up must refuse to run without: the CA key matches the CA certificate, the
// chain links, the CA can sign certificates, and the RA certificate chains to the CA and its validity has begun.
//
// An RA certificate that has expired is not refused: it is the RA maintenance's to renew (RAKeeper.Maintain, which
// start-up runs at once for it, and `ca rotate-ra`), and both need the keys this loads. Refusing it stopped every
// start, so the hourly timer that renews the RA could never run again, and `ca rotate-ra` failed on it too.
func (k *Keys) Check(now time.Time) error {
	if len(k.Chain) == 0 || k.CASigner == nil {
		return errors.New("custody: no CA certificate or key")
	}
	ca := k.CA()
	if err := matchCAKey(k.CASigner, ca); err != nil {
		return err
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("custody: the CA certificate is not a CA certificate with keyCertSign")
	}
	if now.After(ca.NotAfter) {
		return fmt.Errorf("custody: the CA certificate expired at %s", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	for i := 0; i+1 < len(k.Chain); i++ {
		if err := k.Chain[i].CheckSignatureFrom(k.Chain[i+1]); err != nil {
			return fmt.Errorf("custody: chain link %d does not verify: %w", i, err)
		}
	}
	if k.RACert == nil {
		_, _, err := k.SCEPIdentity()
		return err
	}
	if err := checkRA(ca, k.RACert, k.RAKey); err != nil {
		return err
	}
	if now.Before(k.RACert.NotBefore) {
		return fmt.Errorf("custody: the RA certificate is not valid yet (%s – %s): the clock of the machine that issued "+
			"it was ahead, or this one's is behind", k.RACert.NotBefore.UTC().Format(time.RFC3339),
			k.RACert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// RAExpired reports whether the current RA certificate has expired at now (false in CA-decrypt mode).
func (k *Keys) RAExpired(now time.Time) bool {
	cert, _ := k.RA()
	return cert != nil && now.After(cert.NotAfter)
}

// checkRA verifies that an RA certificate and key belong together, are RSA and were issued by ca.
func checkRA(ca, cert *x509.Certificate, key RAKey) error {
	if cert == nil {
		return errors.New("custody: no RA certificate")
	}
	if key == nil || !publicKeysEqual(key.Public(), cert.PublicKey) {
		return fmt.Errorf("%w: the RA key does not match the RA certificate %q", ErrKeyMismatch, cert.Subject.String())
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return errors.New("custody: the RA key must be RSA (SCEP clients encrypt to it)")
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("custody: the RA certificate is not signed by the CA: %w", err)
	}
	return nil
}

// matchCAKey refuses a CA key that is not the key of the CA certificate, naming both so an operator can tell a
// wrongly pinned Key Vault version or a stray key file from the real thing.
func matchCAKey(key crypto.Signer, ca *x509.Certificate) error {
	if !publicKeysEqual(key.Public(), ca.PublicKey) {
		return fmt.Errorf("%w: the CA key (%s) does not match the CA certificate %q (SHA-256 %s)",
			ErrKeyMismatch, describeKey(key), ca.Subject.String(), Fingerprint(ca))
	}
	return nil
}

// describeKey names a key for an error message without revealing anything secret: the Key Vault key ID when
// there is one, otherwise its type and size.
func describeKey(k crypto.Signer) string {
	if id, ok := k.(interface{ KID() string }); ok && id.KID() != "" {
		return id.KID()
	}
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit key", pub.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("EC %s key", pub.Curve.Params().Name)
	}
	return fmt.Sprintf("%T key", k.Public())
}

// describeOps lists a Key Vault key's key_ops for an error message.
func describeOps(k any) string {
	o, ok := k.(interface{ KeyOps() []string })
	if !ok || len(o.KeyOps()) == 0 {
		return "no operations"
	}
	return strings.Join(o.KeyOps(), ", ")
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// RootOptions shape a self-signed root.
type RootOptions struct {
	Subject  pkix.Name
	Validity time.Duration
}

// NewRoot makes a self-signed CA certificate with signer (one signature).
func NewRoot(signer crypto.Signer, opts RootOptions, now time.Time) (*x509.Certificate, error) {
	alg, err := SignatureAlgorithmFor(signer.Public())
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := KeyID(signer.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               opts.Subject,
		NotBefore:             now.Add(-time.Hour).Truncate(time.Second),
		NotAfter:              now.Add(opts.Validity).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
		SignatureAlgorithm:    alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("custody: signing root certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// NewSubordinateCSR makes the CSR an admin sends to a parent CA.
func NewSubordinateCSR(signer crypto.Signer, subject pkix.Name) ([]byte, error) {
	alg, err := SignatureAlgorithmFor(signer.Public())
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: subject, SignatureAlgorithm: alg}, signer)
	if err != nil {
		return nil, fmt.Errorf("custody: signing subordinate CSR: %w", err)
	}
	return der, nil
}

// RAValidity is how long an RA certificate lives, but never past the CA certificate; the hourly timer renews it
// RARenewBefore its end (unless it already ends with the CA), and `ca rotate-ra` at any time.
const RAValidity = 2 * 365 * 24 * time.Hour

// OIDCertificateRequestAgent is Microsoft's Certificate Request Agent EKU (1.3.6.1.4.1.311.20.2.1), what NDES RA
// certificates carry. It is the RA certificate's only EKU, so no TLS client or server, code-signing or e-mail
// validator accepts the RA certificate for anything: it can only encrypt SCEP envelopes and sign CertReps.
var OIDCertificateRequestAgent = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 1}

// Recorder makes a certificate the CA issues to itself durable like every other certificate: Planned runs before
// the CA key signs (an error stops the signature) and Issued before the certificate is used (an error discards it).
// revocation.ResponderRecords implements it.
type Recorder interface {
	Planned(ctx context.Context, tmpl *x509.Certificate) error
	Issued(ctx context.Context, cert *x509.Certificate) error
}

// HasRAUsage reports whether c is an RA certificate restricted to the Certificate Request Agent EKU (RA
// certificates made before it are renewed by the hourly timer).
func HasRAUsage(c *x509.Certificate) bool {
	return len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 1 && c.UnknownExtKeyUsage[0].Equal(OIDCertificateRequestAgent)
}

// NewRACertificate issues the SCEP RA certificate for raPub (RSA) with the CA key, unrecorded (tests and
// bootstrap without a store; IssueRACertificate records it).
func NewRACertificate(ca *x509.Certificate, caSigner crypto.Signer, raPub crypto.PublicKey, cn string, now time.Time) (*x509.Certificate, error) {
	return IssueRACertificate(context.Background(), nil, ca, caSigner, raPub, cn, now)
}

// raNotAfter is when an RA certificate issued at now ends: RAValidity later, but never after the CA certificate.
func raNotAfter(ca *x509.Certificate, now time.Time) time.Time {
	notAfter := now.Add(RAValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	return notAfter.Truncate(time.Second)
}

// caValidFor refuses an RA certificate once the CA certificate has expired: it would end with the CA, before its
// back-dated notBefore, so the CA key would sign a certificate valid at no time.
func caValidFor(ca *x509.Certificate, now time.Time) error {
	if !now.Before(ca.NotAfter) {
		return fmt.Errorf("custody: the CA certificate expired at %s; no RA certificate can be issued",
			ca.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// IssueRACertificate issues the SCEP RA certificate for raPub (RSA) with the CA key: keyEncipherment (clients
// encrypt to it), digitalSignature (it signs CertReps) and the Certificate Request Agent EKU only. When rec is
// set, a pending record is written before the CA key signs and the issued record before the certificate is
// returned, so every RA certificate is listed, revocable and in the CRL once revoked.
func IssueRACertificate(ctx context.Context, rec Recorder, ca *x509.Certificate, caSigner crypto.Signer, raPub crypto.PublicKey, cn string, now time.Time) (*x509.Certificate, error) {
	if _, ok := raPub.(*rsa.PublicKey); !ok {
		return nil, errors.New("custody: the RA key must be RSA")
	}
	if err := caValidFor(ca, now); err != nil {
		return nil, err
	}
	alg, err := SignatureAlgorithmFor(ca.PublicKey)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := KeyID(raPub)
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{CommonName: cn}
	if len(ca.Subject.Organization) > 0 {
		subject.Organization = ca.Subject.Organization
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-raBackdate).Truncate(time.Second),
		NotAfter:              raNotAfter(ca, now),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{OIDCertificateRequestAgent},
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		SignatureAlgorithm:    alg,
	}
	if rec != nil {
		if err := rec.Planned(ctx, tmpl); err != nil {
			return nil, fmt.Errorf("custody: recording the planned RA certificate: %w", err)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, raPub, caSigner)
	if err != nil {
		return nil, fmt.Errorf("custody: signing RA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("custody: parsing RA certificate: %w", err)
	}
	if rec != nil {
		if err := rec.Issued(ctx, cert); err != nil {
			return nil, fmt.Errorf("custody: recording the RA certificate: %w", err)
		}
	}
	return cert, nil
}

// ErrUnsupportedCAKey is returned for a CA key the CA does not sign with: anything but RSA, P-256 and P-384.
var ErrUnsupportedCAKey = errors.New("custody: unsupported CA key")

// SignatureAlgorithmFor is the one rule for how a CA key signs, whatever it signs (certificates, CRLs, the OCSP
// responder's certificate, CSRs for a parent): PKCS #1 v1.5 with SHA-256 for RSA, which every relying party and
// Key Vault's RS256 take, and ECDSA with the hash matching the curve's strength. P-521 is refused: Key Vault binds
// it to ES512, which much of the software that checks certificates does not support.
func SignatureAlgorithmFor(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		}
		return x509.UnknownSignatureAlgorithm, fmt.Errorf("%w: ECDSA on curve %s (P-256 or P-384 only)",
			ErrUnsupportedCAKey, k.Curve.Params().Name)
	}
	return x509.UnknownSignatureAlgorithm, fmt.Errorf("%w: %T", ErrUnsupportedCAKey, pub)
}

// Fingerprint is the upper-case hex SHA-256 of a certificate.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x40
	return new(big.Int).SetBytes(b), nil
}

// KeyID is the RFC 5280 §4.2.1.2 method-1 key identifier: SHA-1 of the subjectPublicKey bits.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return SPKIKeyID(der)
}

// SPKIKeyID is KeyID of a DER SubjectPublicKeyInfo, for a caller that has marshalled the key already.
func SPKIKeyID(der []byte) ([]byte, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	s := sha1.Sum(spki.PublicKey.Bytes)
	return s[:], nil
}

// rsaSignChecks is whether crypto/rsa verifies its own PKCS #1 v1.5 signatures: Go's RSA private-key operation
// (crypto/internal/fips140/rsa decrypt withCheck) recomputes sig^e mod N and compares it with the padded digest
// before returning, so a wrong signature is an error, never a result. A BoringCrypto build signs in BoringSSL
// instead and turns this off (boring.go).
var rsaSignChecks = true

// SignerVerifiesItself reports whether every signature signer returns is already verified under ca's public key,
// so that the caller need not verify it again. That holds when signer's public key is ca's and signer is one of
//
//   - *keyvault.Key: SignContext verifies Key Vault's answer under the pinned public key (checkSignature);
//   - *rsa.PrivateKey: crypto/rsa checks its own signature (rsaSignChecks), for PKCS #1 v1.5 and PSS alike.
//
// It is a switch on these concrete types, so no wrapper or other signer (a test's, an *ecdsa.PrivateKey, whose
// signing does not verify, an HSM added later) can claim it by accident: anything else is verified by its caller.
func SignerVerifiesItself(signer crypto.Signer, ca *x509.Certificate) bool {
	switch signer.(type) {
	case *keyvault.Key:
	case *rsa.PrivateKey:
		if !rsaSignChecks {
			return false
		}
	default:
		return false
	}
	return publicKeysEqual(signer.Public(), ca.PublicKey)
}
