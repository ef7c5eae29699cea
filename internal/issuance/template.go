package issuance

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"github.com/azscep/azscep/internal/policy"
)

// serialBytes is the serial's random part: 16 bytes from crypto/rand, after a fixed prefix byte that keeps the
// DER INTEGER positive and exactly 17 octets (BR §7.1: > 0, ≤ 20 octets, ≥ 64 random bits).
const serialBytes = 16

// serialPrefix is 0x01–0x7f so the encoded integer is positive without a leading zero octet.
const serialPrefix = 0x5c

func newSerial() (*big.Int, error) {
	b := make([]byte, serialBytes+1)
	b[0] = serialPrefix
	if _, err := rand.Read(b[1:]); err != nil {
		return nil, fmt.Errorf("reading random serial: %w", err)
	}
	return new(big.Int).SetBytes(b), nil
}

// buildTemplate turns a policy-checked request into the certificate template. Only the public key, subject and
// accepted names come from the request; everything else comes from the profile and the CA. ski is the subject
// key identifier of the request's key. A non-zero cap ends the certificate no later than that instant.
func (i *Issuer) buildTemplate(req *policy.Request, prof *policy.Profile, serial *big.Int, ski []byte, now, capAt time.Time) (*x509.Certificate, error) {
	notBefore := now.Add(-i.backdate).Truncate(time.Second)
	// The profile's validity is the whole validity, back-dating included (a validity=397d profile must not give
	// 397 days and 5 minutes).
	notAfter := notBefore.Add(prof.MaxValidity)
	if want := req.Validity.NotAfter(now); !want.IsZero() && want.Before(notAfter) {
		notAfter = want
	}
	if !capAt.IsZero() && capAt.Before(notAfter) {
		notAfter = capAt
	}
	if notAfter.After(i.ca.Cert.NotAfter) {
		notAfter = i.ca.Cert.NotAfter
	}
	// RFC 5280 §4.1.2.5: validity is inclusive of notAfter, so end one second early.
	notAfter = notAfter.Truncate(time.Second).Add(-time.Second)
	if !notAfter.After(now) {
		return nil, &policy.Rejection{Code: policy.CodeValidity, Detail: "the CA certificate (or the renewal chain) ends too soon to issue"}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            req.RawSubject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              req.KeyUsage,
		ExtKeyUsage:           req.ExtKeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		SignatureAlgorithm:    i.sigAlg,
		OCSPServer:            i.urls.OCSP,
		IssuingCertificateURL: i.urls.CAIssuers,
		CRLDistributionPoints: i.urls.CRL,
	}
	if req.SANExtension != nil {
		ext := *req.SANExtension
		// RFC 5280 §4.2.1.6: with an empty subject the SAN extension must be critical.
		ext.Critical = len(req.RawSubject) <= 2
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	return tmpl, nil
}
