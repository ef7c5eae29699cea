package policy_test

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestDeviceIDFormCommonName: a common name in the ID:<product>:GUID:<id> form (the device ID URI network access
// servers read, written as a CN) names the device as much as a bare GUID CN does: readers take the device ID from
// what follows the last "GUID:" of the CN as well as of the SAN URIs (authentik's Intune endpoint stage). So it
// needs identity_uris=devicecn (or intunedeviceid) at the static and API doors, like a GUID CN; the Intune door,
// which lets Intune vouch for device CNs, and profiles that opt in keep issuing it.
func TestDeviceIDFormCommonName(t *testing.T) {
	const id = "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"
	static := mustProfile(t, "device", specNoIdentity)
	devicecn := mustProfile(t, "fleet", specNoIdentity+";identity_uris=devicecn")
	intuneIDs := mustProfile(t, "ids", specNoIdentity+";identity_uris=intunedeviceid")
	// The SCEP Intune door checks against the endpoint's profile widened so (scep.Server.enroll).
	intuneDoor := static.WithIdentityURIs(policy.IdentityDeviceCN)
	csr := func(cn string) []byte { return buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: cn})}) }

	// "ID:Microsoft Endpoint Manager:GUID:<id>" itself is 71 characters, longer than any CN (64): the shorter
	// product names that Intune profiles also write are what fits.
	for _, cn := range []string{
		"ID:Intune:GUID:" + id,
		"ID:MEM:GUID:" + id,
		"id:intune:guid:{5F2C1D0E-8B7A-4C3E-9F1A-2B3C4D5E6F70}",
		"Device GUID: " + id,
		"ID:Ｉｎｔｕｎｅ:ＧＵＩＤ:" + id, // fullwidth, which NFKC folds to the ASCII form
	} {
		_, err := checkDER(csr(cn), static)
		wantCode(t, err, policy.CodeSubject)
		for _, p := range []*policy.Profile{devicecn, intuneIDs, intuneDoor} {
			if _, err := checkDER(csr(cn), p); err != nil {
				t.Errorf("CN %q under %s: %v", cn, p.Name, err)
			}
		}
	}
	// What follows GUID: is no device ID: free text, as before.
	for _, cn := range []string{"ID:Printer:GUID:floor-3", "GUID: unknown", "ID:Intune:GUID:" + id + "-spare"} {
		if _, err := checkDER(csr(cn), static); err != nil {
			t.Errorf("CN %q: %v", cn, err)
		}
	}
}

// TestDeviceIDCommonNameInEveryGUIDSpelling: a device ID is a GUID in whichever spelling a relying party's parser
// reads, not only the hyphenated one: Go's uuid.Parse and .NET's Guid.Parse take 32 hex digits without hyphens and
// a GUID inside braces, .NET also inside parentheses, Go and Python after urn:uuid:, and Python with its hyphens
// anywhere. A network access server that parses the CN so and looks the device up in Entra or Intune maps any of
// them to the device, so each needs identity_uris=devicecn at the static and API doors, like the hyphenated form.
func TestDeviceIDCommonNameInEveryGUIDSpelling(t *testing.T) {
	static := mustProfile(t, "device", specNoIdentity)
	devicecn := mustProfile(t, "fleet", specNoIdentity+";identity_uris=devicecn")
	csr := func(cn string) []byte { return buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: cn})}) }
	for _, cn := range []string{
		"5f2c1d0e8b7a4c3e9f1a2b3c4d5e6f70",       // .NET "N", Go, Python
		"5F2C1D0E8B7A4C3E9F1A2B3C4D5E6F70",       // the same in upper case
		"(5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70)", // .NET "P"
		"{5f2c1d0e8b7a4c3e9f1a2b3c4d5e6f70}",     // Python strips the braces and the hyphens
		"urn:uuid:5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70",
		"5f2c1d0e8b7a-4c3e9f1a-2b3c4d5e6f70", // Python removes every hyphen
		"ID:Intune:GUID:5f2c1d0e8b7a4c3e9f1a2b3c4d5e6f70",
	} {
		_, err := checkDER(csr(cn), static)
		wantCode(t, err, policy.CodeSubject)
		if _, err := checkDER(csr(cn), devicecn); err != nil {
			t.Errorf("CN %q under a profile with identity_uris=devicecn: %v", cn, err)
		}
	}
	// Hex that is no GUID's length, and other text, stays free text.
	for _, cn := range []string{"5f2c1d0e8b7a4c3e9f1a2b3c4d5e6f", "5f2c1d0e8b7a4c3e9f1a2b3c4d5e6f7012", "router-17",
		"0123456789abcdef"} {
		if _, err := checkDER(csr(cn), static); err != nil {
			t.Errorf("CN %q: %v", cn, err)
		}
	}
}
