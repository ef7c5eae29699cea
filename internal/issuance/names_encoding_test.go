package issuance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
)

// TestRequestedExtrasNeverReachTheCertificate: of everything a static-challenge holder or a CSR.Request.Db caller
// can put in a CSR beside its names (a CRL distribution point and an AIA of its own, Microsoft's SID extension, an
// issuerAltName, its own subject key identifier, basicConstraints CA:FALSE, a narrower key usage), only the names
// reach the certificate, byte for byte as requested, and Go and OpenSSL read exactly those names.
func TestRequestedExtrasNeverReachTheCertificate(t *testing.T) {
	iss, _, _, _ := auditedIssuer(t, "Extras CA", nil, Config{})
	prof, err := policy.ParseProfile("narrow", "validity=30d;ku=digitalSignature;eku=clientAuth;dns=*.corp.example.com;"+
		"email=*@corp.example.com;upn=*@corp.example.com;uri=https://*.corp.example.com;ip=10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	marshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	gn := func(tag int, b []byte) asn1.RawValue {
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: b}
	}
	upnInner := marshal(asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("alice@corp.example.com")})
	upn := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(
		marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}),
		marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: upnInner})...)}
	sanValue := marshal([]asn1.RawValue{gn(2, []byte("A.corp.example.com")), gn(1, []byte("bob@corp.example.com")),
		gn(6, []byte("https://dev.corp.example.com/x")), gn(7, net.ParseIP("10.1.2.3").To4()), upn})
	attackerURL := marshal([]asn1.RawValue{gn(6, []byte("http://evil.example/x"))})
	extras := []pkix.Extension{
		{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: sanValue},
		{Id: asn1.ObjectIdentifier{2, 5, 29, 31}, Value: marshal([]asn1.RawValue{{Tag: asn1.TagSequence, IsCompound: true,
			Bytes: marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
				Bytes: marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: attackerURL[2:]})})}})},
		{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}, Value: marshal([]asn1.RawValue{{Tag: asn1.TagSequence, IsCompound: true,
			Bytes: append(marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 2}), attackerURL[2:]...)}})},
		{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 25, 2}, Value: marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific,
			Tag: 0, IsCompound: true, Bytes: []byte{}}})},
		{Id: asn1.ObjectIdentifier{2, 5, 29, 18}, Value: marshal([]asn1.RawValue{gn(2, []byte("evil.example"))})},
		{Id: asn1.ObjectIdentifier{2, 5, 29, 14}, Value: marshal(bytes.Repeat([]byte{0xee}, 20))},
		{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: marshal(struct{}{})},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "laptop-7"}, ExtraExtensions: extras}, leafKey)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := policy.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := policy.Check(csr, prof)
	if err != nil {
		t.Fatalf("policy refused the request: %v", err)
	}
	res, err := iss.Issue(context.Background(), &Request{Checked: checked, Profile: prof, Source: store.SourceAPI,
		Endpoint: "api", Requester: "test", Key: "extras"})
	if err != nil {
		t.Fatal(err)
	}
	cert := res.Cert

	var ids []string
	for _, e := range cert.Extensions {
		ids = append(ids, e.Id.String())
		switch {
		case e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}):
			if !bytes.Equal(e.Value, sanValue) || e.Critical {
				t.Errorf("subjectAltName = %x (critical %t), want the requested names %x, not critical beside a subject",
					e.Value, e.Critical, sanValue)
			}
		case e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 14}):
			if bytes.Contains(e.Value, bytes.Repeat([]byte{0xee}, 20)) {
				t.Error("the certificate carries the requester's subject key identifier")
			}
		}
	}
	slices.Sort(ids)
	if want := []string{"2.5.29.14", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.35", "2.5.29.37"}; !slices.Equal(ids, want) {
		t.Errorf("extensions %v, want exactly %v", ids, want)
	}
	if !slices.Equal(cert.DNSNames, []string{"A.corp.example.com"}) || !slices.Equal(cert.EmailAddresses, []string{"bob@corp.example.com"}) ||
		len(cert.URIs) != 1 || cert.URIs[0].String() != "https://dev.corp.example.com/x" ||
		len(cert.IPAddresses) != 1 || len(cert.IPAddresses[0]) != 4 || !cert.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) ||
		cert.Subject.String() != "CN=laptop-7" || len(cert.CRLDistributionPoints)+len(cert.IssuingCertificateURL)+len(cert.OCSPServer) != 0 ||
		cert.IsCA {
		t.Errorf("Go reads subject %q, DNS %v, e-mail %v, URIs %v, IPs %v, CRL %v, AIA %v %v, CA %t", cert.Subject, cert.DNSNames,
			cert.EmailAddresses, cert.URIs, cert.IPAddresses, cert.CRLDistributionPoints, cert.IssuingCertificateURL, cert.OCSPServer, cert.IsCA)
	}

	path := filepath.Join(t.TempDir(), "leaf.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName", "-nameopt", "RFC2253",
		"-in", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	text := string(out)
	for _, want := range []string{"subject=CN=laptop-7", "DNS:A.corp.example.com", "email:bob@corp.example.com",
		"URI:https://dev.corp.example.com/x", "IP Address:10.1.2.3", "alice@corp.example.com"} {
		if !strings.Contains(text, want) {
			t.Errorf("OpenSSL does not read %q in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "evil") || strings.Count(text, ", ") != 4 {
		t.Errorf("OpenSSL reads other names than the five requested:\n%s", text)
	}
}
