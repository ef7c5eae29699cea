package policy_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestSubjectValueInjectsNoAttribute: no subject value holds a DN separator ("/", ",", "+", ";") followed by an
// attribute type and "=". Relying parties match the subject as one string, OpenSSL's one-line /C=…/CN=… form
// (FreeRADIUS's TLS-Client-Cert-Subject, nginx's $ssl_client_s_dn_legacy) or the RFC 2253/4514 CN=…,O=… form
// (nginx's $ssl_client_s_dn, Apache's SSL_CLIENT_S_DN), with patterns that do not honour the printers' escapes, so
// CN="dev/CN=evil.com" is CN=evil.com to them. Under the static door's profiles the value is otherwise free text
// (or, with "@", an e-mail name email=* allows), so nothing else refused these. Ordinary text that uses the same
// punctuation is not refused.
func TestSubjectValueInjectsNoAttribute(t *testing.T) {
	static := mustProfile(t, "device", specDevice)
	wide := mustProfile(t, "static", specNoIdentity)
	oidTitle := asn1.ObjectIdentifier{2, 5, 4, 12}
	csr := func(n pkix.Name) []byte { return buildCSR(t, csrSpec{subject: name(t, n)}) }
	for _, tc := range []struct {
		what string
		n    pkix.Name
	}{
		{"slash", pkix.Name{CommonName: "dev/CN=evil.com"}},
		{"comma", pkix.Name{CommonName: "dev,CN=evil.com"}},
		{"comma and space", pkix.Name{CommonName: "Smith, CN=evil.com"}},
		{"plus", pkix.Name{CommonName: "evil.com+OU=x"}},
		{"semicolon", pkix.Name{CommonName: "x;CN=evil.com"}},
		{"spaces around the type", pkix.Name{CommonName: "dev / CN = evil.com"}},
		{"lower-case type", pkix.Name{CommonName: "dev/cn=evil.com"}},
		{"organization", pkix.Name{CommonName: "dev", Organization: []string{"Contoso/O=Fabrikam"}}},
		{"organizational unit", pkix.Name{CommonName: "dev", OrganizationalUnit: []string{"Sales,OU=Domain Admins"}}},
		{"e-mail address", pkix.Name{CommonName: "dev/emailAddress=admin@contoso.com"}},
		{"UID", pkix.Name{CommonName: "dev/UID=administrator"}},
		{"DC", pkix.Name{CommonName: "dev,DC=contoso"}},
		{"dotted OID", pkix.Name{CommonName: "dev/2.5.4.3=evil.com"}},
		{"RFC 1779 OID", pkix.Name{CommonName: "dev,OID.2.5.4.3=evil.com"}},
		{"fullwidth", pkix.Name{CommonName: "dev／ＣＮ＝evil.com"}},
		{"locality (free text)", pkix.Name{CommonName: "dev", Locality: []string{"Paris/CN=evil.com"}}},
		{"street (free text)", pkix.Name{CommonName: "dev", StreetAddress: []string{"1 Main St;CN=evil.com"}}},
		{"title (free text)", pkix.Name{CommonName: "dev", ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: oidTitle, Value: "Engineer+CN=evil.com"}}}},
		{"NUL", pkix.Name{CommonName: "x\x00CN=evil.com"}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			for _, p := range []*policy.Profile{static, wide} {
				_, err := checkDER(csr(tc.n), p)
				wantCode(t, err, policy.CodeSubject)
			}
		})
	}
	_, err := checkDER(csr(pkix.Name{CommonName: "dev/CN=evil.com"}), static)
	if r, _ := policy.AsRejection(err); r == nil || !strings.Contains(r.Detail, `"/CN="`) {
		t.Errorf("the refusal does not name the separator and type it found: %v", err)
	}

	for _, v := range []string{
		"Smith, John", "R&D/Lab 3", "a+b", "C++ team", "Müller; Zoë", "printer/3rd floor", "Q&A, EMEA",
		"50/50 = even", "Build 10.0/19045", "東京オフィス/第2課", "Q&A = help", "Room 3 = lab", "1=1", "= x",
		"#1 fan", "#Ops", "#define", "#abc", "C#", "Line 1\u00A0Line 2",
	} {
		n := pkix.Name{CommonName: v, Organization: []string{v}, OrganizationalUnit: []string{v}, Locality: []string{v}}
		if _, err := checkDER(csr(n), static); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// TestIntuneSubjectsStillIssue: the subjects an Intune SCEP profile writes (CN={{AAD_Device_ID}},
// CN={{UserName}},E={{EmailAddress}}, OU and O from the profile) pass the DN-separator rule at the Intune door.
func TestIntuneSubjectsStillIssue(t *testing.T) {
	intuneDoor := mustProfile(t, "intune", specIntune).WithIdentityURIs(policy.IdentityDeviceCN)
	for _, n := range []pkix.Name{
		{CommonName: "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"},
		{CommonName: "Smith, John", Organization: []string{"Contoso, Ltd."}, OrganizationalUnit: []string{"R&D/Devices"},
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1},
				Value: "john.smith@contoso.com"}}},
		{CommonName: "alice@contoso.com"},
		{CommonName: "DESKTOP-7Q2K1LM", SerialNumber: "PF3ABC12"},
		{CommonName: "Alice's iPhone", OrganizationalUnit: []string{"#2 floor"}},
		{CommonName: "alice@contoso.com", Organization: []string{"Contoso"}, OrganizationalUnit: []string{"Devices"}},
		{CommonName: "ID:Intune:GUID:5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"},
	} {
		if _, err := checkDER(buildCSR(t, csrSpec{subject: name(t, n)}), intuneDoor); err != nil {
			t.Errorf("%v: %v", n, err)
		}
	}
}

// TestSubjectValueStartsWithNoAttribute: no subject value begins with an attribute type and "=", nor with "#" and
// hex pairs, nor holds a Unicode line separator. Printed, a value follows its own type and "=", so O="CN=evil.com"
// is /O=CN=evil.com in the one-line form, where a first-match "CN=([^/]+)" reads evil.com, and CN="CN=evil.com" is
// CN=CN=evil.com, whose last part split on "=" is evil.com. A value "#0c08…" is, once a reader loses the printer's
// "\#" escape, the hex of a BER-encoded value an RFC 4514 parser decodes to a string the policy never judged. And
// U+2028/U+2029 end a line for JavaScript, Python's splitlines and .NET and Java line readers, so
// "dev\u2028CN=evil.com" has a line CN=evil.com.
func TestSubjectValueStartsWithNoAttribute(t *testing.T) {
	static := mustProfile(t, "device", specDevice)
	wide := mustProfile(t, "static", specNoIdentity)
	intuneDoor := mustProfile(t, "intune", specIntune).WithIdentityURIs(policy.IdentityDeviceCN)
	csr := func(n pkix.Name) []byte { return buildCSR(t, csrSpec{subject: name(t, n)}) }
	for _, tc := range []struct {
		what, want string
		n          pkix.Name
	}{
		{"CN=CN=", "begins with", pkix.Name{CommonName: "CN=evil.com"}},
		{"O=CN=", "begins with", pkix.Name{CommonName: "dev", Organization: []string{"CN=evil.com"}}},
		{"OU=emailAddress=", "begins with", pkix.Name{CommonName: "dev",
			OrganizationalUnit: []string{"emailAddress=admin@contoso.com"}}},
		{"lower case and spaces", "begins with", pkix.Name{CommonName: "cn = evil.com"}},
		{"dotted OID", "begins with", pkix.Name{CommonName: "2.5.4.3=evil.com"}},
		{"RFC 1779 OID", "begins with", pkix.Name{CommonName: "OID.2.5.4.3=evil.com"}},
		{"fullwidth", "begins with", pkix.Name{CommonName: "ＣＮ＝evil.com"}},
		{"any keyword", "begins with", pkix.Name{CommonName: "x=1"}},
		{"country", "begins with", pkix.Name{CommonName: "dev", Locality: []string{"C=3 printers"}}},
		{"free-text attribute", "begins with", pkix.Name{CommonName: "dev", StreetAddress: []string{"UID=administrator"}}},
		{"hexstring", "hex digits", pkix.Name{CommonName: "#0c0865766963"}},
		{"hexstring then space", "hex digits", pkix.Name{CommonName: "#0c03616263 x"}},
		{"upper-case hexstring", "hex digits", pkix.Name{CommonName: "dev", Organization: []string{"#0C03414243"}}},
		{"fullwidth hexstring", "hex digits", pkix.Name{CommonName: "＃０ｃ０３６１６２６３"}},
		{"line separator", "U+2028", pkix.Name{CommonName: "dev\u2028CN=evil.com"}},
		{"paragraph separator", "U+2029", pkix.Name{CommonName: "dev", Organization: []string{"Contoso\u2029Fabrikam"}}},
		{"next line", "control", pkix.Name{CommonName: "dev\u0085CN=evil.com"}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			for _, p := range []*policy.Profile{static, wide, intuneDoor} {
				_, err := checkDER(csr(tc.n), p)
				wantCode(t, err, policy.CodeSubject)
				if r, _ := policy.AsRejection(err); r == nil || !strings.Contains(r.Detail, tc.want) {
					t.Errorf("%s: the refusal does not say why (%q): %v", p.Name, tc.want, err)
				}
			}
		})
	}
}
