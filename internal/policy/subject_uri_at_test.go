package policy_test

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestSubjectURIWithAtIsAURI: a subject value written as a URI stays a URI when it has an "@": judged as an e-mail
// name alone, "https://evil.example/@corp.example.com" passed as an address in the allowed domain, and
// "IntuneDeviceId://<id>@corp.example.com" put a device identity in the common name of a profile that allows no
// identity URI. A reader that takes the value for the URI it is written as reads another host, or that device.
// Such a value must be allowed as both names; an ordinary address and a value allowed as both still pass.
func TestSubjectURIWithAtIsAURI(t *testing.T) {
	mailOnly := mustProfile(t, "mail", "validity=365d;ku=digitalSignature;eku=clientAuth;"+
		"email=*@corp.example.com;upn=*@corp.example.com")
	both := mustProfile(t, "both", "validity=365d;ku=digitalSignature;eku=clientAuth;"+
		"email=*@corp.example.com;uri=mailto:*")
	csr := func(attr string, v string) []byte {
		n := pkix.Name{CommonName: v}
		if attr == "O" {
			n = pkix.Name{CommonName: "x", Organization: []string{v}}
		}
		return buildCSR(t, csrSpec{subject: name(t, n)})
	}
	for _, v := range []string{
		"https://evil.example/@corp.example.com",
		"ldap://evil.example/x@corp.example.com",
		"https://evil.example#@corp.example.com",
		"IntuneDeviceId://5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70@corp.example.com",
		"tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001@corp.example.com",
		"mailto:alice@corp.example.com",
	} {
		for _, attr := range []string{"CN", "O"} {
			_, err := checkDER(csr(attr, v), mailOnly)
			wantCode(t, err, policy.CodeSubject)
		}
	}
	for _, c := range []struct {
		v string
		p *policy.Profile
	}{
		{"alice@corp.example.com", mailOnly},
		{"mailto:alice@corp.example.com", both},
	} {
		if _, err := checkDER(csr("CN", c.v), c.p); err != nil {
			t.Errorf("%q under %s: %v", c.v, c.p.Name, err)
		}
	}
}
