package lint_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"sort"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	zlintapi "github.com/zmap/zlint/v3/lint"

	"github.com/azscep/azscep/internal/policy"
)

// ZlintAllowed is the one place listing the zlint v3.6.1 findings (warn or worse) an azscep leaf may carry, each
// with the reason it is accepted. Other packages' tests that run zlint over issued certificates should mirror this
// map (test files cannot be imported) and fail on anything else. See reliability.md §3.1.
var ZlintAllowed = map[string]string{
	// RFC 5280 §4.2.1.12 lists digitalSignature/keyAgreement for id-kp-clientAuth. The "intune" profile adds
	// keyEncipherment on RSA keys because Intune SCEP profiles for Wi-Fi/VPN (EAP-TLS with RSA key exchange)
	// request it and Windows refuses the certificate without it. EC keys never get it (RFC 5480 §3).
	"e_key_usage_and_extended_key_usage_inconsistent": "intune profile: keyEncipherment on RSA clientAuth leaves",
	// Intune puts the device ID in an "IntuneDeviceId://<guid>" URI; the GUID is not a host name, and the URI is
	// what Intune and conditional-access consumers match on, so it is copied as requested.
	"e_ext_san_uri_host_not_fqdn_or_ip": "IntuneDeviceId://<guid> SAN URIs are required by Intune",
}

const (
	zSpecDevice = "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid"
	zSpecIntune = "validity=365d;ku=digitalSignature,keyEncipherment;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid"
	sidURI      = "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-1104"
	deviceURI   = "IntuneDeviceId://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
)

// TestZlintIssuedShapes runs the whole local path a request takes (CSR → policy.Check → template as the issuance
// package builds it → Linter.Check) and then zlint over the planned certificate.
func TestZlintIssuedShapes(t *testing.T) {
	loadFixtures(t)
	for _, tc := range []struct {
		name    string
		rsa     bool // RSA CA and RSA leaf; otherwise P-256 for both
		spec    string
		subject pkix.Name
		names   []asn1.RawValue
		want    []string // zlint findings expected, each in ZlintAllowed
	}{
		{name: "device-p256", spec: zSpecDevice, subject: pkix.Name{CommonName: "laptop-7"},
			names: []asn1.RawValue{dnsName("laptop-7.corp.contoso.com"), emailName("alice@contoso.com"), upnName(t, "alice@contoso.com"), uriName(sidURI)}},
		{name: "api-rsa", rsa: true, spec: zSpecDevice, subject: pkix.Name{CommonName: "build-agent-3", Organization: []string{"Contoso"}},
			names: []asn1.RawValue{dnsName("build-agent-3.contoso.com")}},
		{name: "intune-rsa", rsa: true, spec: zSpecIntune, subject: pkix.Name{CommonName: "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"},
			names: []asn1.RawValue{upnName(t, "alice@contoso.com"), uriName(sidURI), uriName(deviceURI)},
			want:  []string{"e_ext_san_uri_host_not_fqdn_or_ip", "e_key_usage_and_extended_key_usage_inconsistent"}},
		{name: "intune-rsa-without-device-uri", rsa: true, spec: zSpecIntune, subject: pkix.Name{CommonName: "alice"},
			names: []asn1.RawValue{upnName(t, "alice@contoso.com"), uriName(sidURI)},
			want:  []string{"e_key_usage_and_extended_key_usage_inconsistent"}},
		{name: "intune-p256-drops-keyEncipherment", spec: zSpecIntune, subject: pkix.Name{CommonName: "alice"},
			names: []asn1.RawValue{upnName(t, "alice@contoso.com"), uriName(sidURI), emailName("alice@contoso.com")}},
		{name: "device-empty-subject", spec: zSpecDevice,
			names: []asn1.RawValue{upnName(t, "alice@contoso.com"), emailName("alice@contoso.com")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, id := range tc.want {
				if _, ok := ZlintAllowed[id]; !ok {
					t.Fatalf("expected finding %s is not in ZlintAllowed", id)
				}
			}
			der := issueThroughPolicy(t, tc.rsa, tc.spec, tc.subject, tc.names)
			zc, err := zx509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("zcrypto cannot parse the planned certificate: %v", err)
			}
			rs := zlint.LintCertificate(zc)
			var got []string
			for id, r := range rs.Results {
				if r.Status >= zlintapi.Warn {
					got = append(got, id)
					if _, ok := ZlintAllowed[id]; !ok {
						t.Errorf("zlint %s: %s %s", id, r.Status, r.Details)
					}
				}
			}
			sort.Strings(got)
			if !equalStrings(got, tc.want) {
				t.Fatalf("zlint findings %q, want exactly %q", got, tc.want)
			}
		})
	}
}

// TestZlintCatchesBadLeaf keeps the harness honest: the same run flags a leaf the policy would never build.
func TestZlintCatchesBadLeaf(t *testing.T) {
	loadFixtures(t)
	now := time.Now()
	tmpl := leafTemplate(t, keys.leafRSA1024.Public(), now)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.SerialNumber = randomSerial()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, fixtures.caEC, keys.leafRSA1024.Public(), keys.caEC)
	if err != nil {
		t.Fatal(err)
	}
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if r := zlint.LintCertificate(zc).Results["e_rsa_mod_less_than_2048_bits"]; r == nil || r.Status != zlintapi.Error {
		t.Fatalf("zlint did not flag a 1024-bit serverAuth leaf: %+v", r)
	}
}

func issueThroughPolicy(t *testing.T, useRSA bool, spec string, subject pkix.Name, names []asn1.RawValue) []byte {
	t.Helper()
	var leafKey crypto.Signer = keys.leafEC
	l := fixtures.linterEC
	if useRSA {
		leafKey, l = keys.leafRSA, fixtures.linterRSA
	}
	sanDER, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject,
		ExtraExtensions: []pkix.Extension{{Id: oidSAN, Value: sanDER}}}, leafKey)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := policy.ParseProfile("test", spec)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := policy.ParseCSR(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	req, err := policy.Check(csr, prof)
	if err != nil {
		t.Fatalf("policy refused the shape: %v", err)
	}
	// As issuance.buildTemplate does: only key, subject and accepted names come from the request.
	now := time.Now()
	tmpl := leafTemplate(t, req.PublicKey, now)
	tmpl.Subject, tmpl.DNSNames = pkix.Name{}, nil
	tmpl.RawSubject = req.RawSubject
	tmpl.KeyUsage, tmpl.ExtKeyUsage = req.KeyUsage, req.ExtKeyUsage
	san := *req.SANExtension
	san.Critical = len(req.RawSubject) <= 2
	tmpl.ExtraExtensions = []pkix.Extension{san}
	plan, err := l.Check(tmpl, req.PublicKey, expectFor(tmpl, now))
	if err != nil {
		t.Fatalf("profile lints refused the shape: %v", err)
	}
	return plan.DER
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func dnsName(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(s)}
}
func emailName(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(s)}
}
func uriName(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(s)}
}

// upnName is otherName { 1.3.6.1.4.1.311.20.2.3, [0] EXPLICIT UTF8String }.
func upnName(t testing.TB, upn string) asn1.RawValue {
	t.Helper()
	inner := mustMarshal(t, asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(upn)})
	der, err := asn1.MarshalWithParams(struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3},
		asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}}, "tag:0")
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{FullBytes: der}
}
