package policy_test

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestIdentityURIsPercentEncodedOrWithEmptyFragment: a SID tag URI written with percent-encoding
// ("microsoft.com%2C…", "%6Dicrosoft.com,…") is still a SID URI, governed by identity_uris= and not by uri=*;
// and a URI ending in an empty fragment ("#", which url.URL neither keeps nor prints) is malformed, so that the
// name checked is the name relying parties read.
func TestIdentityURIsPercentEncodedOrWithEmptyFragment(t *testing.T) {
	anyURI := mustProfile(t, "api", "validity=365d;ku=digitalSignature;eku=clientAuth;uri=*")
	const sid = "sid:S-1-5-21-1004336348-1177238915-682003330-500"
	for _, u := range []string{"tag:microsoft.com%2C2022-09-14:" + sid, "tag:%6Dicrosoft.com,2022-09-14:" + sid,
		"tag:microsoft.com,2022-09-14:" + sid} {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}), exts: []pkix.Extension{sanExt(t, gnURI(u))}}), anyURI)
		wantCode(t, err, policy.CodeSAN)
	}
	devices := mustProfile(t, "d", "validity=365d;ku=digitalSignature;eku=clientAuth;identity_uris=intunedeviceid")
	for u, code := range map[string]policy.Code{
		"IntuneDeviceId://6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11":  "",
		"IntuneDeviceId://6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11#": policy.CodeSAN,
	} {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}), exts: []pkix.Extension{sanExt(t, gnURI(u))}}), devices)
		wantCode(t, err, code)
	}
}
