package testca

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
)

// tbsCertificate is RFC 5280's TBSCertificate with every field kept raw except the ones WindowsSigner rewrites.
type tbsCertificate struct {
	Version            int `asn1:"optional,explicit,default:0,tag:0"`
	SerialNumber       *big.Int
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Issuer             asn1.RawValue
	Validity           asn1.RawValue
	Subject            asn1.RawValue
	PublicKey          asn1.RawValue
	Extensions         []pkix.Extension `asn1:"optional,explicit,tag:3"`
}

// WindowsSigner makes the self-signed certificate the Windows SCEP client signs its requests with: an
// authority key identifier marked critical (Go ≥ 1.23 refuses to parse it: "x509: authority key identifier
// incorrectly marked critical") and a sha1WithRSAEncryption self-signature — the shape step-ca's
// test/integration/scep createWindowsTemplate reproduces.
//
// The DER is in the returned certificate's Raw. Because crypto/x509 cannot parse it, the certificate is
// assembled by hand with just what CMS needs (Raw, RawIssuer, RawSubject, SerialNumber, PublicKey); the server
// reads it through smallstep/pkcs7's legacy-parser fallback.
func WindowsSigner(t testing.TB, key *rsa.PrivateKey, subject pkix.Name) *x509.Certificate {
	t.Helper()
	ski, err := custody.KeyID(key.Public())
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		SubjectKeyId: ski,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	// Windows writes keyIdentifier only, marked critical.
	aki := struct {
		ID []byte `asn1:"optional,tag:0"`
	}{ski}
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidExtAKI, Critical: true, Value: mustMarshal(t, aki)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("testca: creating Windows signer certificate: %v", err)
	}
	var outer signed
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatalf("testca: %v", err)
	}
	var tbs tbsCertificate
	if rest, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil || len(rest) != 0 {
		t.Fatalf("testca: re-reading TBS: %v", err)
	}
	found := false
	for _, e := range tbs.Extensions {
		found = found || e.Id.Equal(oidExtAKI) && e.Critical
	}
	if !found {
		t.Fatal("testca: crypto/x509 dropped the critical AKI")
	}
	tbs.SignatureAlgorithm = pkix.AlgorithmIdentifier{Algorithm: oidSHA1WithRSA, Parameters: asn1.NullRawValue}
	tbsDER := mustMarshal(t, tbs)
	certDER := signSHA1(t, tbsDER, key)

	// Read back the raw fields CMS needs.
	var again tbsCertificate
	if _, err := asn1.Unmarshal(tbsDER, &again); err != nil {
		t.Fatalf("testca: %v", err)
	}
	return &x509.Certificate{
		Raw:                     certDER,
		RawTBSCertificate:       tbsDER,
		RawIssuer:               again.Issuer.FullBytes,
		RawSubject:              again.Subject.FullBytes,
		RawSubjectPublicKeyInfo: again.PublicKey.FullBytes,
		SerialNumber:            again.SerialNumber,
		Subject:                 subject,
		Issuer:                  subject,
		NotBefore:               tmpl.NotBefore,
		NotAfter:                tmpl.NotAfter,
		PublicKey:               key.Public(),
		PublicKeyAlgorithm:      x509.RSA,
		SignatureAlgorithm:      x509.SHA1WithRSA,
		SubjectKeyId:            ski,
		AuthorityKeyId:          ski,
	}
}
