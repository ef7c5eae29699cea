package policy_test

import (
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestDeviceIDOfNamesOneGUID: the device ID a certificate is recorded under (revocation by device, the console's
// search) is exactly the GUID the device URI names. A query, a fragment, a path, user info or a port beside it, the
// opaque form IntuneDeviceId:<id>, or text after the GUID of an ID:…:GUID: URI make DeviceIDOf answer "" instead
// of an ID that is no device ("<id>?x", kept before) or one that a reader of the text does not read (the host of
// "IntuneDeviceId://<id>?x", "<id>?x" to a reader that takes what follows "://").
func TestDeviceIDOfNamesOneGUID(t *testing.T) {
	const g = "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
	for raw, want := range map[string]string{
		"IntuneDeviceId://" + g:                                      g,
		"intunedeviceid://" + strings.ToUpper(g):                     strings.ToUpper(g),
		"IntuneDeviceId://" + g + "?x":                               "",
		"IntuneDeviceId://" + g + "?":                                "",
		"IntuneDeviceId://" + g + "#frag":                            "",
		"IntuneDeviceId://" + g + "/x":                               "",
		"IntuneDeviceId://6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11@" + g: "",
		"IntuneDeviceId://" + g + ":443":                             "",
		"IntuneDeviceId:" + g:                                        "",
		"IntuneDeviceId:" + g + "?x":                                 "",
		"IntuneDeviceId://laptop-17":                                 "",
		"ID:Microsoft Endpoint Manager:GUID:" + g:                    g,
		"ID:Microsoft%20Endpoint%20Manager:guid:" + g:                g,
		"ID:Microsoft Endpoint Manager%3AGUID%3A" + g:                g,
		"ID:Intune?:GUID:" + g:                                       g,
		"ID:Intune#:GUID:" + g:                                       g,
		"ID:/Intune:GUID:" + g:                                       g,
		"ID:Microsoft Endpoint Manager:GUID:" + g + "?x":             "",
		"ID:Microsoft Endpoint Manager:GUID:" + g + "?":              "",
		"ID:Microsoft Endpoint Manager:GUID:" + g + "#frag":          "",
		"ID:Microsoft Endpoint Manager:GUID:" + g + "%3Fx":           "",
		"ID:GUID:" + g + "/x":                                        "",
		"ID:GUID:{" + g + "}":                                        "",
		"ID:GUID:" + strings.Replace(g, "-", "%2D", 1):               "",
		"ID:Intune:GUID:" + g + "-spare":                             "",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got := policy.DeviceIDOf(u); got != want {
			t.Errorf("DeviceIDOf(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestDeviceURIThatNamesNoOneDeviceRefused: where a profile opts in to device URIs (the Intune profile, an
// operator's identity_uris=intunedeviceid), a device URI is accepted only as IntuneDeviceId://<GUID> or
// ID:<product>:GUID:<GUID> with nothing after the GUID; the rest is refused (subject_alt_name_not_allowed, a SCEP
// failInfo badRequest, a 400 at /api/csr) with a reason that says which forms are taken. Before, each of them was
// issued, and the ID forms recorded a device ID ("<GUID>#frag") that names no device, so a revocation of the
// device's certificates missed them.
func TestDeviceURIThatNamesNoOneDeviceRefused(t *testing.T) {
	const g = "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
	wide := mustProfile(t, "p", specWide)
	check := func(raw string) error {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}),
			exts: []pkix.Extension{sanExt(t, gnURI(raw))}}), wide)
		return err
	}
	for _, raw := range []string{"IntuneDeviceId://" + g, "ID:Microsoft Endpoint Manager:GUID:" + g,
		"id:Intune:guid:" + g, "ID:Microsoft Endpoint Manager%3AGUID%3A" + g} {
		if err := check(raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	for _, raw := range []string{
		"IntuneDeviceId://" + g + "?x",
		"IntuneDeviceId://" + g + "?",
		"IntuneDeviceId://" + g + "#frag",
		"IntuneDeviceId://" + g + "/x",
		"IntuneDeviceId://6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11@" + g,
		"IntuneDeviceId://" + g + ":443",
		"IntuneDeviceId:" + g,
		"IntuneDeviceId://laptop-17",
		"ID:Microsoft Endpoint Manager:GUID:" + g + "?x",
		"ID:Microsoft Endpoint Manager:GUID:" + g + "#frag",
		"ID:Microsoft Endpoint Manager:guid:" + g + "%23frag",
		"ID:GUID:" + g + "/x",
		"ID:Printer:GUID:floor-3",
	} {
		err := check(raw)
		wantCode(t, err, policy.CodeSAN)
		if err != nil && !strings.Contains(err.Error(), "does not name one device") {
			t.Errorf("%s: %v, want the reason to say it does not name one device", raw, err)
		}
	}
}

// TestSIDInAnyURIIsASIDURI: a SID in a certificate is authorized like the one Intune writes for strong mapping,
// tag:microsoft.com,2022-09-14:sid:<SID>, whatever URI carries it: the hierarchical tag form, another date or none,
// a path (https://x.example/sid/S-1-5-21-…), a query, a fragment, a urn:. uri= patterns, even "*" (the built-in api
// profile, an operator's static profile), never admit one; only identity_uris=sid does, and then only in that one
// spelling with nothing after the SID. Before, every form but tag:microsoft.com,… passed as an ordinary URI under
// uri=*, and the tag form took a query, a fragment, another date or a SID that is none.
func TestSIDInAnyURIIsASIDURI(t *testing.T) {
	const sid = "S-1-5-21-1004336348-1177238915-682003330-500"
	anyURI := mustProfile(t, "api", specNoIdentity)
	wide := mustProfile(t, "p", specWide)
	check := func(raw string, p *policy.Profile) error {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: "x"}),
			exts: []pkix.Extension{sanExt(t, gnURI(raw))}}), p)
		return err
	}
	exact := []string{"tag:microsoft.com,2022-09-14:sid:" + sid, "TAG:Microsoft.com,2022-09-14:SID:" + sid,
		"tag:microsoft.com,2022-09-14:sid:S-1-5-18"}
	variants := []string{
		"tag://microsoft.com,2022-09-14/sid/" + sid,
		"tag:microsoft.com:sid:" + sid,
		"tag:microsoft.com/sid/" + sid,
		"tag:microsoft.com,2099-01-01:sid:" + sid,
		"tag:microsoft.com%2C2022-09-14:sid:" + sid,
		"tag:microsoft.com,2022-09-14:sid:" + sid + "?x",
		"tag:microsoft.com,2022-09-14:sid:" + sid + "#frag",
		"tag:microsoft.com,2022-09-14:sid:" + sid + "/x",
		"tag:microsoft.com,2022-09-14:sid:%53-1-5-21-1-2-3-500",
		"tag:microsoft.com,2022-09-14:sid:not-a-sid",
		"tag:microsoft.com,2022-09-14:sid:S-1-5",
		"https://x.example/sid/" + sid,
		"https://x.example/enroll?sid=" + sid,
		"https://x.example/#" + sid,
		"https://x.example/%53-1-5-18",
		"urn:sid:" + sid,
		"ldap://dc.example/" + strings.ToLower(sid),
	}
	for _, raw := range exact {
		if err := check(raw, wide); err != nil {
			t.Errorf("%s under identity_uris=sid: %v", raw, err)
		}
		u, _ := url.Parse(raw)
		if got := policy.SIDOf(u); !strings.EqualFold(got, raw[len("tag:microsoft.com,2022-09-14:sid:"):]) {
			t.Errorf("SIDOf(%q) = %q", raw, got)
		}
	}
	for _, raw := range append(exact, variants...) {
		err := check(raw, anyURI)
		wantCode(t, err, policy.CodeSAN)
		if err != nil && !strings.Contains(err.Error(), "SID") {
			t.Errorf("%s under uri=*: %v, want the reason to name the SID", raw, err)
		}
	}
	for _, raw := range variants {
		err := check(raw, wide)
		wantCode(t, err, policy.CodeSAN)
		if u, perr := url.Parse(raw); perr == nil && policy.SIDOf(u) != "" {
			t.Errorf("SIDOf(%q) = %q, want none", raw, policy.SIDOf(u))
		}
	}
	// URIs that name no SID stay ordinary URIs.
	for _, raw := range []string{"https://x.example/items-1-2", "https://x.example/s1-5-21", "tag:example.com,2020:device-1",
		"tag:microsoft.community.example,2020:x", "https://x.example/sid/alice"} {
		if err := check(raw, anyURI); err != nil {
			t.Errorf("%s under uri=*: %v", raw, err)
		}
	}
}

// TestSubjectIdentityURIInOneSpelling: a subject value written as an identity URI is held to the spelling the SANs
// are, also where the profile opts in to identity URIs: a CN or O "https://x.example/sid/S-1-5-21-…" or
// "IntuneDeviceId://<GUID>?x" is refused (bad_subject), as its SAN would be. Before, the opt-in alone let it in.
func TestSubjectIdentityURIInOneSpelling(t *testing.T) {
	const (
		sid = "S-1-5-21-1-2-3-500" // short enough for a CN or O with the URI around it
		g   = "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
	)
	wide := mustProfile(t, "p", specWide)
	csr := func(attr, v string) []byte {
		n := pkix.Name{CommonName: v}
		if attr == "O" {
			n = pkix.Name{CommonName: "x", Organization: []string{v}}
		}
		return buildCSR(t, csrSpec{subject: name(t, n)})
	}
	for _, v := range []string{"https://x.example/sid/" + sid, "tag://microsoft.com,2022-09-14/sid/" + sid,
		"tag:microsoft.com,2022-09-14:sid:" + sid + "?x", "IntuneDeviceId://" + g + "?x", "IntuneDeviceId://" + g + "/x"} {
		for _, attr := range []string{"CN", "O"} {
			_, err := checkDER(csr(attr, v), wide)
			wantCode(t, err, policy.CodeSubject)
			if err != nil && !strings.Contains(err.Error(), "looks like a URI") {
				t.Errorf("%s %s: %v, want it refused as a URI", attr, v, err)
			}
		}
	}
	if _, err := checkDER(csr("O", "tag:microsoft.com,2022-09-14:sid:"+sid), wide); err != nil {
		t.Errorf("the SID URI in its one spelling as O under identity_uris=sid: %v", err)
	}
}
