package policy_test

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestURIHostPatternRefusesAt: a URI that a host pattern allows has no "@" anywhere, not only no user info. curl
// before 7.51.0 (CVE-2016-8624) read https://a.corp.example.com#@evil.com as the host evil.com, and parsers that
// end the authority at "/" only, or take the host after the last "@", read "?@" and "/@" so; a reader that
// decodes first reads %40 as "@". Such a URI names the allowed host to Go and evil.com to them. The whole-scheme
// pattern ("https:*") and "*", which vouch for no host, still allow it, and the identity URIs an Intune profile
// carries are not host patterns' business.
func TestURIHostPatternRefusesAt(t *testing.T) {
	hosts := mustProfile(t, "hosts", "validity=365d;ku=digitalSignature;eku=clientAuth;"+
		"uri=https://*.corp.example.com,spiffe://corp.example.com")
	wholeScheme := mustProfile(t, "scheme", "validity=365d;ku=digitalSignature;eku=clientAuth;uri=https:*,spiffe:*")
	anyURI := mustProfile(t, "any", "validity=365d;ku=digitalSignature;eku=clientAuth;uri=*")
	csr := func(u string) []byte {
		return buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}), exts: []pkix.Extension{sanExt(t, gnURI(u))}})
	}
	for _, u := range []string{
		"https://a.corp.example.com#@evil.com",
		"https://a.corp.example.com?@evil.com",
		"https://a.corp.example.com/@evil.com",
		"https://a.corp.example.com:443/x#@evil.com",
		"https://a.corp.example.com/?next=x@evil.com",
		"https://a.corp.example.com/%40evil.com",
		"https://a.corp.example.com/#%40evil.com",
		"spiffe://corp.example.com/ns/%40evil.com",
		"https://a.corp.example.com@evil.com/", // user info, refused before too
	} {
		t.Run(u, func(t *testing.T) {
			_, err := checkDER(csr(u), hosts)
			wantCode(t, err, policy.CodeSAN)
			if u == "https://a.corp.example.com@evil.com/" {
				return
			}
			for _, p := range []*policy.Profile{wholeScheme, anyURI} {
				if _, err := checkDER(csr(u), p); err != nil {
					t.Errorf("under %s: %v", p.Name, err)
				}
			}
		})
	}
	for _, u := range []string{
		"https://a.corp.example.com",
		"https://a.corp.example.com:8443/path/x?q=1&r=2#frag",
		"spiffe://corp.example.com/ns/prod/sa/web",
	} {
		if _, err := checkDER(csr(u), hosts); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	// The names an Intune SCEP profile writes, under the built-in intune profile's shape.
	intune := mustProfile(t, "intune", specIntune)
	for _, u := range []string{
		"IntuneDeviceId://5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70",
		"ID:Microsoft Endpoint Manager:GUID:5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70",
		"tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-500",
	} {
		if _, err := checkDER(csr(u), intune); err != nil {
			t.Errorf("%s under the intune profile: %v", u, err)
		}
	}
}
