package policy_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
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

// TestOneIdentityOfEachKind: a certificate names at most one account (one SID URI) and one device (one
// IntuneDeviceId URI, and one ID:…:GUID: URI naming the same device), even where the profile allows the identity
// URIs: a relying party reads one of several, and which one differs from reader to reader. Ordinary URIs are not
// limited.
func TestOneIdentityOfEachKind(t *testing.T) {
	wide := mustProfile(t, "p", specWide)
	const (
		sidA = "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-500"
		sidB = "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-1105"
		devA = "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
		devB = "6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11"
	)
	for _, tc := range []struct {
		name string
		uris []string
		want policy.Code
	}{
		{"one of each", []string{sidA, "IntuneDeviceId://" + devA, "ID:Microsoft Endpoint Manager:GUID:" + devA}, ""},
		{"both device forms, ID case differs", []string{"IntuneDeviceId://" + devA,
			"ID:Microsoft Endpoint Manager:GUID:" + strings.ToUpper(devA)}, ""},
		{"ordinary URIs", []string{"https://a.example.com", "https://b.example.com", sidA}, ""},
		{"two SIDs", []string{sidA, sidB}, policy.CodeSAN},
		{"the same SID twice", []string{sidA, sidA}, policy.CodeSAN},
		{"two SIDs, another spelling", []string{sidA, "TAG:Microsoft.com,2023-01-01:sid:S-1-5-21-1-2-3-500"}, policy.CodeSAN},
		{"two IntuneDeviceIds", []string{"IntuneDeviceId://" + devA, "intunedeviceid://" + devB}, policy.CodeSAN},
		{"the same IntuneDeviceId twice", []string{"IntuneDeviceId://" + devA, "IntuneDeviceId://" + devA}, policy.CodeSAN},
		{"two ID:GUID: URIs", []string{"ID:Microsoft Endpoint Manager:GUID:" + devA, "ID:Other:GUID:" + devB}, policy.CodeSAN},
		{"device forms naming two devices", []string{"IntuneDeviceId://" + devA,
			"ID:Microsoft Endpoint Manager:GUID:" + devB}, policy.CodeSAN},
		{"device forms naming two devices, percent-encoded", []string{"ID:Microsoft Endpoint Manager%3AGUID%3A" + devB,
			"IntuneDeviceId://" + devA}, policy.CodeSAN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gns []asn1.RawValue
			for _, u := range tc.uris {
				gns = append(gns, gnURI(u))
			}
			_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}), exts: []pkix.Extension{sanExt(t, gns...)}}), wide)
			wantCode(t, err, tc.want)
		})
	}
}

// TestDeviceIDURIWhereverItsGUIDIs: an ID: URI names a device wherever its "GUID:" is. Readers take the device ID
// from what follows the last "GUID:" of the URI's text, so ID:/…:GUID:<id> (which url.URL reads as a path),
// ID:x?:GUID:<id> (a query), ID:x#:GUID:<id> (a fragment) and ID:GUID:<id> are that device as much as
// ID:Microsoft Endpoint Manager:GUID:<id> is: uri= patterns, even *, never allow them, identity_uris=intunedeviceid
// does, and one naming another device than the certificate's IntuneDeviceId URI is refused.
func TestDeviceIDURIWhereverItsGUIDIs(t *testing.T) {
	const devA, devB = "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f", "6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11"
	anyURI := mustProfile(t, "any", "validity=365d;ku=digitalSignature;eku=clientAuth;uri=*")
	idScheme := mustProfile(t, "ids", "validity=365d;ku=digitalSignature;eku=clientAuth;uri=id:*")
	devices := mustProfile(t, "devices", "validity=365d;ku=digitalSignature;eku=clientAuth;identity_uris=intunedeviceid")
	csr := func(uris ...string) []byte {
		var gns []asn1.RawValue
		for _, u := range uris {
			gns = append(gns, gnURI(u))
		}
		return buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}), exts: []pkix.Extension{sanExt(t, gns...)}})
	}
	for _, u := range []string{
		"ID:/Microsoft Endpoint Manager:GUID:" + devB,
		"ID://intune/x:GUID:" + devB,
		"ID:Intune?:GUID:" + devB,
		"ID:Intune#:GUID:" + devB,
		"ID:Intune?x=%3AGUID%3A" + devB,
		"ID:GUID:" + devB,
	} {
		t.Run(u, func(t *testing.T) {
			for _, p := range []*policy.Profile{anyURI, idScheme} {
				_, err := checkDER(csr(u), p)
				wantCode(t, err, policy.CodeSAN)
			}
			if _, err := checkDER(csr(u), devices); err != nil {
				t.Errorf("under identity_uris=intunedeviceid: %v", err)
			}
			_, err := checkDER(csr("IntuneDeviceId://"+devA, u), devices)
			wantCode(t, err, policy.CodeSAN)
			if _, err := checkDER(csr("IntuneDeviceId://"+devB, u), devices); err != nil {
				t.Errorf("beside the same device's IntuneDeviceId URI: %v", err)
			}
		})
	}
	// An ID: URI without a device ID stays an ordinary URI.
	if _, err := checkDER(csr("ID:Intune:device"), idScheme); err != nil {
		t.Errorf("ID:Intune:device under uri=id:*: %v", err)
	}
}
