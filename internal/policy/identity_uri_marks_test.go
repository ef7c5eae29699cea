package policy_test

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestDeviceURIWithOneGUIDMark: an ID:…:GUID: URI names its device after its one "GUID:". One with two names two
// devices, and readers differ on which they take: DeviceIDOf takes the last, a reader that searches from the start
// the first, and one that parses the URI drops a "#…" fragment (so "ID:x:GUID:<B>#:GUID:<A>" is device B to it, A
// to DeviceIDOf). Beside an IntuneDeviceId://<A> such a URI passed the "same device" check while naming B, so it is
// refused; the URIs Intune profiles and Cisco ISE write (one mark) still pass.
func TestDeviceURIWithOneGUIDMark(t *testing.T) {
	wide := mustProfile(t, "p", specWide)
	const (
		devA = "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
		devB = "6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11"
	)
	for _, tc := range []struct {
		uris []string
		want policy.Code
	}{
		{[]string{"IntuneDeviceId://" + devA, "ID:Microsoft Endpoint Manager:GUID:" + devA}, ""},
		{[]string{"ID:Microsoft%20Endpoint%20Manager:GUID:" + devA}, ""},
		{[]string{"IntuneDeviceId://" + devA, "ID:Microsoft Endpoint Manager:GUID:" + devB + "#:GUID:" + devA}, policy.CodeSAN},
		{[]string{"IntuneDeviceId://" + devA, "ID:Microsoft Endpoint Manager:GUID:" + devB + ":GUID:" + devA}, policy.CodeSAN},
		{[]string{"IntuneDeviceId://" + devA, "ID:Microsoft Endpoint Manager:GUID:" + devB + "?:guid:" + devA}, policy.CodeSAN},
		{[]string{"ID:Microsoft Endpoint Manager:GUID:" + devB + "%3AGUID:" + devA}, policy.CodeSAN},
	} {
		var gns []pkix.Extension
		switch len(tc.uris) {
		case 1:
			gns = []pkix.Extension{sanExt(t, gnURI(tc.uris[0]))}
		default:
			gns = []pkix.Extension{sanExt(t, gnURI(tc.uris[0]), gnURI(tc.uris[1]))}
		}
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}), exts: gns}), wide)
		t.Logf("%q: %v", tc.uris, err)
		wantCode(t, err, tc.want)
	}
}
