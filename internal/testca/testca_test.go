package testca

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep/x509util"
)

func TestNew(t *testing.T) {
	t.Parallel()
	ec := New(t, Options{})
	if _, ok := ec.Key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("default CA key is %T, want ECDSA", ec.Key)
	}
	if ec.RACert == nil || ec.Keys.RACert != ec.RACert || ec.Recipient() != ec.RACert {
		t.Fatal("default CA has no RA")
	}
	if err := ec.RACert.CheckSignatureFrom(ec.Cert); err != nil {
		t.Errorf("RA not signed by the CA: %v", err)
	}
	if ec.RACert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Error("RA certificate lacks keyEncipherment")
	}

	r := New(t, Options{KeyType: KeyRSA, NoRA: true})
	if _, ok := r.Key.(*rsa.PrivateKey); !ok {
		t.Errorf("RSA CA key is %T", r.Key)
	}
	if r.RACert != nil || r.Keys.RAKey != nil || r.Recipient() != r.Cert {
		t.Error("NoRA CA has an RA")
	}
	if r.Cert.Subject.CommonName == ec.Cert.Subject.CommonName {
		t.Error("two CAs share a subject")
	}
}

func TestKeysAreDistinct(t *testing.T) {
	t.Parallel()
	a, b := RSAKey(t, 0), RSAKey(t, 1)
	if a.Equal(b) {
		t.Fatal("RSAKey(0) == RSAKey(1)")
	}
	if !RSAKey(t, 0).Equal(a) {
		t.Fatal("RSAKey(0) is not stable")
	}
	ra := New(t, Options{}).RAKey
	for i := 0; i < DeviceKeys; i++ {
		if RSAKey(t, i).Equal(ra) {
			t.Fatalf("an RA key equals device key %d", i)
		}
	}
	if got := WeakRSAKey(t).N.BitLen(); got != 1024 {
		t.Errorf("weak key has %d bits", got)
	}
}

func TestCSROptions(t *testing.T) {
	t.Parallel()
	key := RSAKey(t, 2)
	csr := CSR(t, key, CSROptions{
		Subject:           pkix.Name{CommonName: "device-1"},
		DNSNames:          []string{"device-1.example.com"},
		Emails:            []string{"user@example.com"},
		UPNs:              []string{"user@example.com"},
		URIs:              []*url.URL{IntuneSIDURI("S-1-5-21-1-2-3-1001")},
		ChallengePassword: "s3cret-challenge",
		KeyUsage:          x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if csr.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature algorithm %v", csr.SignatureAlgorithm)
	}
	if pw, err := x509util.ParseChallengePassword(csr.Raw); err != nil || pw != "s3cret-challenge" {
		t.Errorf("challenge = %q, %v", pw, err)
	}
	if len(csr.DNSNames) != 1 || len(csr.EmailAddresses) != 1 || len(csr.URIs) != 1 ||
		csr.URIs[0].String() != "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001" {
		t.Errorf("names: %v %v %v", csr.DNSNames, csr.EmailAddresses, csr.URIs)
	}
	var sawUPN, sawKU, sawEKU bool
	for _, e := range csr.Extensions {
		switch {
		case e.Id.Equal(oidExtSAN):
			sawUPN = upnOf(t, e.Value) == "user@example.com"
		case e.Id.Equal(oidExtKeyUsage):
			var bs asn1.BitString
			_, _ = asn1.Unmarshal(e.Value, &bs)
			sawKU = bs.At(0) == 1 && bs.At(2) == 1 && bs.At(1) == 0
		case e.Id.Equal(oidExtExtKeyUsage):
			sawEKU = true
		}
	}
	if !sawUPN || !sawKU || !sawEKU {
		t.Errorf("extensions: UPN %v, KU %v, EKU %v", sawUPN, sawKU, sawEKU)
	}

	ca := CSR(t, key, CSROptions{Subject: pkix.Name{CommonName: "x"}, RequestCA: true})
	var bcCritical bool
	for _, e := range ca.Extensions {
		if e.Id.Equal(oidExtBasicConstraints) {
			var bc struct {
				IsCA bool `asn1:"optional"`
			}
			_, _ = asn1.Unmarshal(e.Value, &bc)
			bcCritical = e.Critical && bc.IsCA
		}
	}
	if !bcCritical {
		t.Error("RequestCA did not ask for a critical CA:TRUE")
	}

	sha1 := CSR(t, key, CSROptions{Subject: pkix.Name{CommonName: "x"}, SHA1: true, ChallengePassword: "abcdefgh"})
	if sha1.SignatureAlgorithm != x509.SHA1WithRSA {
		t.Errorf("SHA1 CSR has %v", sha1.SignatureAlgorithm)
	}
	if err := sha1.CheckSignature(); err != nil {
		t.Errorf("SHA-1 CSR signature must still verify (only the algorithm is bad): %v", err)
	}
	if pw, _ := x509util.ParseChallengePassword(sha1.Raw); pw != "abcdefgh" {
		t.Error("SHA-1 re-signing lost the challenge")
	}

	bad := CSR(t, key, CSROptions{Subject: pkix.Name{CommonName: "x"}, BadSignature: true})
	if bad.CheckSignature() == nil {
		t.Error("BadSignature CSR verifies")
	}
}

// upnOf decodes the first GeneralName as an RFC 5280 otherName holding a Microsoft UPN, strictly.
func upnOf(t *testing.T, san []byte) string {
	t.Helper()
	var names []asn1.RawValue
	if _, err := asn1.Unmarshal(san, &names); err != nil || len(names) == 0 {
		t.Fatalf("SAN: %v", err)
	}
	var on struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if rest, err := asn1.UnmarshalWithParams(names[0].FullBytes, &on, "tag:0"); err != nil || len(rest) != 0 {
		t.Fatalf("otherName: %v", err)
	}
	// encoding/asn1 keeps the explicit [0] in FullBytes; its contents must be exactly one UTF8String.
	var inner asn1.RawValue
	if rest, err := asn1.Unmarshal(on.Value.Bytes, &inner); err != nil || len(rest) != 0 ||
		inner.Tag != asn1.TagUTF8String || !on.Type.Equal(oidUPN) {
		t.Fatalf("UPN value: %v (type %v, tag %d)", err, on.Type, inner.Tag)
	}
	return string(inner.Bytes)
}

func TestWindowsSigner(t *testing.T) {
	key := RSAKey(t, 3)
	c := WindowsSigner(t, key, pkix.Name{CommonName: "WIN-DEVICE"})
	_, err := x509.ParseCertificate(c.Raw)
	if err == nil || !strings.Contains(err.Error(), "authority key identifier incorrectly marked critical") {
		t.Fatalf("crypto/x509 should refuse the Windows signer, got %v", err)
	}
	var outer signed
	if _, err := asn1.Unmarshal(c.Raw, &outer); err != nil || !outer.Algorithm.Algorithm.Equal(oidSHA1WithRSA) {
		t.Fatalf("outer signature algorithm %v, %v", outer.Algorithm.Algorithm, err)
	}

	// A message signed with it parses and verifies through pkcs7's legacy fallback, as on the server.
	pkcs7.SetFallbackLegacyX509CertificateParserEnabled(true)
	t.Cleanup(func() { pkcs7.SetFallbackLegacyX509CertificateParserEnabled(false) })
	ca := New(t, Options{})
	cl := &Client{Key: key, Cert: c, Recipients: []*x509.Certificate{ca.RACert}}
	req := cl.PKCSReq(t, CSR(t, key, CSROptions{Subject: pkix.Name{CommonName: "WIN-DEVICE"}}))
	p7, err := pkcs7.Parse(req.Raw)
	if err != nil {
		t.Fatalf("pkcs7 with the legacy fallback: %v", err)
	}
	if err := p7.Verify(); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if s := p7.GetOnlySigner(); s == nil || !s.PublicKey.(*rsa.PublicKey).Equal(key.Public()) {
		t.Fatal("signer certificate not found")
	}
}
