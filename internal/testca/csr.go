package testca

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"testing"

	"github.com/smallstep/scep/x509util"
)

// Object identifiers the builders need.
var (
	oidExtSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtAKI              = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidUPN                 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidSHA1WithRSA         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}

	ekuOID = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
		x509.ExtKeyUsageServerAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 1},
		x509.ExtKeyUsageClientAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 2},
		x509.ExtKeyUsageCodeSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 3},
		x509.ExtKeyUsageEmailProtection: {1, 3, 6, 1, 5, 5, 7, 3, 4},
		x509.ExtKeyUsageAny:             {2, 5, 29, 37, 0},
	}
)

// IntuneSIDURI is the SAN URI Intune adds for strong certificate mapping (KB5014754).
func IntuneSIDURI(sid string) *url.URL {
	return &url.URL{Scheme: "tag", Opaque: "microsoft.com,2022-09-14:sid:" + sid}
}

// CSROptions shape a PKCS#10 request. Every requested extension is written exactly as asked, so a test can
// build requests a CA must refuse.
type CSROptions struct {
	Subject pkix.Name
	// Names for the subjectAltName extension; UPNs become Microsoft otherNames, which Go cannot write itself.
	DNSNames []string
	Emails   []string
	URIs     []*url.URL
	UPNs     []string
	IPs      []net.IP
	// ChallengePassword is added with smallstep/scep's x509util, as SCEP clients do.
	ChallengePassword string
	// KeyUsage and ExtKeyUsage, when set, are requested in the extensionRequest attribute.
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	// RequestCA asks for basicConstraints CA:TRUE (critical).
	RequestCA bool
	// SHA1 signs the request with sha1WithRSAEncryption (RSA keys only), signed by hand so that no Go version's
	// refusal to make SHA-1 signatures can break the test.
	SHA1 bool
	// BadSignature corrupts the request's signature after signing.
	BadSignature bool
	// ExtraExtensions are appended to the extension request verbatim.
	ExtraExtensions []pkix.Extension
}

// CSR builds and parses a certificate request signed by key.
func CSR(t testing.TB, key crypto.Signer, o CSROptions) *x509.CertificateRequest {
	t.Helper()
	tmpl := x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: o.Subject},
		ChallengePassword:  o.ChallengePassword,
	}
	if san := sanExtension(t, o); san != nil {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, *san)
	}
	if o.KeyUsage != 0 {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, keyUsageExtension(t, o.KeyUsage))
	}
	if len(o.ExtKeyUsage) > 0 {
		var oids []asn1.ObjectIdentifier
		for _, e := range o.ExtKeyUsage {
			oid, ok := ekuOID[e]
			if !ok {
				t.Fatalf("testca: no OID for extended key usage %d", e)
			}
			oids = append(oids, oid)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidExtExtKeyUsage, Value: mustMarshal(t, oids)})
	}
	if o.RequestCA {
		bc := struct {
			IsCA bool `asn1:"optional"`
		}{true}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidExtBasicConstraints, Critical: true,
			Value: mustMarshal(t, bc)})
	}
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, o.ExtraExtensions...)
	der, err := x509util.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatalf("testca: creating CSR: %v", err)
	}
	if o.SHA1 {
		der = resignCSRWithSHA1(t, der, key)
	}
	if o.BadSignature {
		der[len(der)-1] ^= 0xff // the last octet of the signature BIT STRING
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("testca: parsing CSR: %v", err)
	}
	return csr
}

// sanExtension encodes GeneralNames by hand: otherName UPNs need it, and the order is kept as given.
func sanExtension(t testing.TB, o CSROptions) *pkix.Extension {
	t.Helper()
	var names []asn1.RawValue
	for _, upn := range o.UPNs {
		utf8, err := asn1.MarshalWithParams(upn, "utf8")
		if err != nil {
			t.Fatalf("testca: %v", err)
		}
		// value [0] EXPLICIT UTF8String, spelled out: encoding/asn1 drops an explicit tag around a RawValue
		// that carries FullBytes.
		on := struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}{oidUPN, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: utf8}}
		b, err := asn1.MarshalWithParams(on, "tag:0")
		if err != nil {
			t.Fatalf("testca: %v", err)
		}
		names = append(names, asn1.RawValue{FullBytes: b})
	}
	for _, e := range o.Emails {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(e)})
	}
	for _, d := range o.DNSNames {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	for _, u := range o.URIs {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u.String())})
	}
	for _, ip := range o.IPs {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: ip})
	}
	if len(names) == 0 {
		return nil
	}
	return &pkix.Extension{Id: oidExtSAN, Value: mustMarshal(t, names)}
}

// keyUsageExtension encodes KeyUsage as RFC 5280 §4.2.1.3 does: bit 0 is the most significant bit.
func keyUsageExtension(t testing.TB, ku x509.KeyUsage) pkix.Extension {
	t.Helper()
	var b [2]byte
	n := 0
	for i := 0; i < 9; i++ {
		if ku&(1<<uint(i)) != 0 {
			b[i/8] |= 0x80 >> uint(i%8)
			n = i + 1
		}
	}
	bytes := b[:(n+7)/8]
	return pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: mustMarshal(t, asn1.BitString{Bytes: bytes, BitLength: n})}
}

// signed is the outer shape shared by certificates and CSRs.
type signed struct {
	TBS       asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

// signSHA1 wraps tbs in a SHA1WithRSA signature made by hand: Go may refuse SHA-1 signatures, clients don't.
func signSHA1(t testing.TB, tbs []byte, key crypto.Signer) []byte {
	t.Helper()
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("testca: SHA-1 signatures need an RSA key, got %T", key)
	}
	sum := sha1.Sum(tbs)
	sig, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA1, sum[:])
	if err != nil {
		t.Fatalf("testca: SHA-1 signature: %v", err)
	}
	return mustMarshal(t, signed{
		TBS:       asn1.RawValue{FullBytes: tbs},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA1WithRSA, Parameters: asn1.NullRawValue},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
}

func resignCSRWithSHA1(t testing.TB, der []byte, key crypto.Signer) []byte {
	t.Helper()
	var s signed
	if rest, err := asn1.Unmarshal(der, &s); err != nil || len(rest) != 0 {
		t.Fatalf("testca: re-reading CSR: %v", err)
	}
	return signSHA1(t, s.TBS.FullBytes, key)
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatalf("testca: asn1: %v", err)
	}
	return b
}
