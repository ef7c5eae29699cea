package policy_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestAllowListSemantics pins the documented pattern semantics (README "Profiles") name by name.
func TestAllowListSemantics(t *testing.T) {
	p := mustProfile(t, "p", "dns=host.example.net,*.corp.example.com,**.lab.example.com;"+
		"upn=*@contoso.com,admin@fabrikam.com,kim@fabrikam.com;email=*@*.mail.example.com;ip=10.0.0.0/8,192.0.2.7,2001:db8::/32;"+
		"uri=https://*.corp.example.com,spiffe://corp.example.com,urn:*")
	numeric := mustProfile(t, "n", "uri=https://10.0.0.1,https://*.0x")
	for _, tc := range []struct {
		name string
		got  bool
		want bool
	}{
		// DNS: exact, "*." one label, "**." one or more labels, never the suffix itself, case-insensitive.
		{"dns/exact", p.AllowsDNS("host.example.net"), true},
		{"dns/exact-case", p.AllowsDNS("HOST.Example.NET"), true},
		{"dns/exact-is-not-a-suffix", p.AllowsDNS("a.host.example.net"), false},
		{"dns/one-label", p.AllowsDNS("laptop-7.corp.example.com"), true},
		{"dns/one-label-case", p.AllowsDNS("Laptop-7.CORP.example.com"), true},
		{"dns/one-label-not-two", p.AllowsDNS("a.b.corp.example.com"), false},
		{"dns/one-label-not-the-suffix", p.AllowsDNS("corp.example.com"), false},
		{"dns/one-label-not-an-empty-label", p.AllowsDNS(".corp.example.com"), false},
		{"dns/one-label-whole-label-only", p.AllowsDNS("evilcorp.example.com"), false},
		{"dns/one-label-not-a-longer-suffix", p.AllowsDNS("a.corp.example.com.evil.test"), false},
		{"dns/many-labels-one", p.AllowsDNS("x.lab.example.com"), true},
		{"dns/many-labels-three", p.AllowsDNS("a.b.c.lab.example.com"), true},
		{"dns/many-labels-not-the-suffix", p.AllowsDNS("lab.example.com"), false},
		{"dns/other-domain", p.AllowsDNS("dc01.contoso.com"), false},
		// UPN and e-mail: local part "*" or literal (case-insensitive), domain by DNS pattern.
		{"upn/any-local", p.AllowsUPN("alice@contoso.com"), true},
		{"upn/domain-case", p.AllowsUPN("Alice@CONTOSO.COM"), true},
		{"upn/subdomain-is-not-the-domain", p.AllowsUPN("alice@eu.contoso.com"), false},
		{"upn/longer-domain", p.AllowsUPN("alice@contoso.com.evil.test"), false},
		{"upn/literal-local", p.AllowsUPN("ADMIN@fabrikam.com"), true},
		{"upn/other-local", p.AllowsUPN("alice@fabrikam.com"), false},
		{"upn/second-at", p.AllowsUPN("alice@evil.test@contoso.com"), false},
		// Case is ASCII case only: U+212A KELVIN SIGN and U+017F LONG S are not "k" and "s" here.
		{"upn/literal-local-ascii-case", p.AllowsUPN("KIM@fabrikam.com"), true},
		{"upn/literal-local-unicode-fold", p.AllowsUPN("\u212Aim@fabrikam.com"), false},
		{"email/one-label-domain", p.AllowsEmail("bob@eu.mail.example.com"), true},
		{"email/not-the-bare-domain", p.AllowsEmail("bob@mail.example.com"), false},
		{"email/upn-list-is-not-email", p.AllowsEmail("alice@contoso.com"), false},
		// IP by CIDR block or single address.
		{"ip/in-block", p.AllowsIP(net.ParseIP("10.200.0.1")), true},
		{"ip/outside-block", p.AllowsIP(net.ParseIP("11.0.0.1")), false},
		{"ip/single", p.AllowsIP(net.ParseIP("192.0.2.7")), true},
		{"ip/next-to-single", p.AllowsIP(net.ParseIP("192.0.2.8")), false},
		{"ip/v6-block", p.AllowsIP(net.ParseIP("2001:db8:1::5")), true},
		{"ip/v6-outside", p.AllowsIP(net.ParseIP("2001:db9::5")), false},
		// URI by scheme and host pattern; "scheme:*" for a whole scheme.
		{"uri/host", p.AllowsURI(mustURL(t, "https://app.corp.example.com/path?q=1")), true},
		{"uri/host-port", p.AllowsURI(mustURL(t, "HTTPS://app.corp.example.com:8443/")), true},
		{"uri/scheme-differs", p.AllowsURI(mustURL(t, "http://app.corp.example.com/")), false},
		{"uri/host-outside", p.AllowsURI(mustURL(t, "https://app.evil.test/")), false},
		{"uri/user-info", p.AllowsURI(mustURL(t, "https://app.corp.example.com@evil.test/")), false},
		{"uri/user-info-matching-host", p.AllowsURI(mustURL(t, "https://x@app.corp.example.com/")), false},
		// A host pattern matches host names only: an IP-literal host (inet_aton forms included) is an address, which
		// ip= governs, even when the pattern is written like one.
		{"uri/ip-host-by-pattern", numeric.AllowsURI(mustURL(t, "https://10.0.0.1/")), false},
		{"uri/hex-host-by-pattern", numeric.AllowsURI(mustURL(t, "https://app.0x/")), false},
		{"uri/exact-host", p.AllowsURI(mustURL(t, "spiffe://corp.example.com/ns/prod/sa/web")), true},
		{"uri/whole-scheme", p.AllowsURI(mustURL(t, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")), true},
		// Identity URIs never pass by uri= patterns.
		{"uri/sid-not-by-pattern", p.AllowsURI(mustURL(t, intuneSIDURI)), false},
		{"uri/device-not-by-pattern", p.AllowsURI(mustURL(t, intuneDeviceURI)), false},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: allowed = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestIdentityURIsNeedTheOptIn: SID and IntuneDeviceId URIs are refused even under uri=*, in any spelling, until
// the profile lists their kind in identity_uris.
func TestSameName(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"kim@contoso.test", "kim@contoso.test", true},
		{"KIM@Contoso.TEST", "kim@contoso.test", true},
		{"\u212Aim@contoso.test", "kim@contoso.test", false}, // KELVIN SIGN, which strings.EqualFold folds to k
		{"\u017Fam@contoso.test", "sam@contoso.test", false}, // LONG S, folded to s
		{"\u00C9ric", "\u00E9ric", false},                    // non-ASCII letters differ unless byte-identical
		{"\u00E9ric", "\u00E9ric", true},
		{"kim", "kim ", false},
	} {
		if got := policy.SameName(tc.a, tc.b); got != tc.want {
			t.Errorf("SameName(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestIdentityURIsNeedTheOptIn(t *testing.T) {
	sidVariants := []string{intuneSIDURI, "TAG:Microsoft.Com,2022-09-14:SID:S-1-5-21-1-2-3-500",
		"tag:microsoft.com,2099-01-01:sid:S-1-5-21-1-2-3-500"}
	deviceVariants := []string{intuneDeviceURI, "intunedeviceid://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f",
		"INTUNEDEVICEID://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f/x",
		// Cisco ISE reads the Intune device ID from this form (its Intune integration's SCEP profile SAN).
		"ID:Microsoft Endpoint Manager:GUID:5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f",
		"id:Microsoft%20Endpoint%20Manager:guid:5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f",
		"ID:Microsoft Endpoint Manager%3AGUID%3A5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"}
	uriStar := mustProfile(t, "p", "uri=*")
	sidOnly := mustProfile(t, "p", "uri=*;identity_uris=sid")
	deviceOnly := mustProfile(t, "p", "identity_uris=intunedeviceid")
	for _, s := range sidVariants {
		u := mustURL(t, s)
		if uriStar.AllowsURI(u) || deviceOnly.AllowsURI(u) || !sidOnly.AllowsURI(u) {
			t.Errorf("%s: uri=* %v, devices %v, sid %v", s, uriStar.AllowsURI(u), deviceOnly.AllowsURI(u), sidOnly.AllowsURI(u))
		}
	}
	for _, s := range deviceVariants {
		u := mustURL(t, s)
		if uriStar.AllowsURI(u) || sidOnly.AllowsURI(u) || !deviceOnly.AllowsURI(u) {
			t.Errorf("%s: uri=* %v, sid %v, devices %v", s, uriStar.AllowsURI(u), sidOnly.AllowsURI(u), deviceOnly.AllowsURI(u))
		}
	}
	// A door that authorizes device IDs itself widens a copy, never the configured profile.
	wider := uriStar.WithIdentityURIs(policy.IdentityIntuneDeviceID)
	if !wider.AllowsURI(mustURL(t, intuneDeviceURI)) || uriStar.AllowsURI(mustURL(t, intuneDeviceURI)) {
		t.Fatal("WithIdentityURIs must widen a copy only")
	}

	// Through Check: the SID URI is refused by the built-in device profile and by a uri=* profile.
	loadKeys(t)
	for _, spec := range []string{specDevice, "dns=*;uri=*"} {
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnURI(intuneSIDURI))}}), mustProfile(t, "p", spec))
		wantCode(t, err, policy.CodeSAN)
	}
}

// TestBuiltInDeviceProfileNames: the static endpoint's profile yields DNS names and a CN, nothing that names a
// person or an Entra/Intune identity.
func TestBuiltInDeviceProfileNames(t *testing.T) {
	loadKeys(t)
	prof := mustProfile(t, "device", specDevice)
	for _, tc := range []struct {
		name string
		spec csrSpec
		want policy.Code
	}{
		{"ok/dns", csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS("router-7.branch.example.net"))}}, ""},
		{"ok/cn-only", csrSpec{subject: name(t, pkix.Name{CommonName: "router-7"})}, ""},
		{"ok/cn-dns", csrSpec{subject: name(t, pkix.Name{CommonName: "router-7.branch.example.net"})}, ""},
		{"fail/upn", csrSpec{exts: []pkix.Extension{sanExt(t, gnUPN(t, "administrator@contoso.com"))}}, policy.CodeSAN},
		{"fail/email", csrSpec{exts: []pkix.Extension{sanExt(t, gnEmail("alice@contoso.com"))}}, policy.CodeSAN},
		{"fail/sid-uri", csrSpec{exts: []pkix.Extension{sanExt(t, gnURI(intuneSIDURI))}}, policy.CodeSAN},
		{"fail/device-uri", csrSpec{exts: []pkix.Extension{sanExt(t, gnURI(intuneDeviceURI))}}, policy.CodeSAN},
		{"fail/plain-uri", csrSpec{exts: []pkix.Extension{sanExt(t, gnURI("https://example.net/"))}}, policy.CodeSAN},
		{"fail/ip", csrSpec{exts: []pkix.Extension{sanExt(t, gnIP([]byte{10, 0, 0, 1}))}}, policy.CodeSAN},
		{"fail/dns-and-upn", csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS("r.example.net"),
			gnUPN(t, "administrator@contoso.com"))}}, policy.CodeSAN},
		{"fail/cn-upn", csrSpec{subject: name(t, pkix.Name{CommonName: "administrator@contoso.com"})}, policy.CodeSubject},
		{"fail/cn-sid-uri", csrSpec{subject: name(t, pkix.Name{CommonName: intuneSIDURI[:60]})}, policy.CodeSubject},
		{"fail/cn-ip", csrSpec{subject: name(t, pkix.Name{CommonName: "10.0.0.1"})}, policy.CodeSubject},
		{"fail/email-attribute", csrSpec{subject: name(t, pkix.Name{CommonName: "router-7", ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "alice@contoso.com"}}})}, policy.CodeSubject},
		{"fail/second-cn-upn", csrSpec{subject: name(t, pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "router-7"},
			{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "administrator@contoso.com"}}})}, policy.CodeSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkDER(buildCSR(t, tc.spec), prof)
			wantCode(t, err, tc.want)
		})
	}
}

// TestCommonNameAllowList: a CN that looks like a name is held to that type's allow-list; free text and single
// labels are not names.
func TestCommonNameAllowList(t *testing.T) {
	loadKeys(t)
	prof := mustProfile(t, "p", "dns=*.corp.example.com;upn=*@contoso.com;ip=10.0.0.0/8")
	for _, tc := range []struct {
		cn   string
		want policy.Code
	}{
		{"laptop-7.corp.example.com", ""},
		{"LAPTOP-7.Corp.Example.com", ""},
		{"dc01.contoso.com", policy.CodeSubject},
		{"alice@contoso.com", ""},
		{"alice@fabrikam.com", policy.CodeSubject},
		{"alice smith@contoso.com", policy.CodeSubject},
		{"10.1.2.3", ""},
		{"192.0.2.1", policy.CodeSubject},
		{"https://x.corp.example.com/", policy.CodeSubject},
		{"IntuneDeviceId://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f", policy.CodeSubject},
		{"urn:uuid:5f2c8a1e", policy.CodeSubject},
		{"5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f", policy.CodeSubject}, // an Entra or Intune device ID, without the opt-in
		{"356938035643809", ""},                                      // IMEI
		{"Alice Smith", ""},
		{"J. Smith", ""}, // dotted but not a DNS name
		// Not valid DNS names although the allow-list's pattern matches their text: a TLS client normalises them.
		{"a_b.corp.example.com", policy.CodeSubject},
		{"w\u00E4.corp.example.com", policy.CodeSubject},
		// Wildcards and names a TLS client normalises before matching (OpenSSL falls back to the CN without a
		// DNS SAN): never issued, even inside the allow-list.
		{"*.bank.example", policy.CodeSubject},
		{"*.corp.example.com", policy.CodeSubject},
		{"laptop-7.corp.example.com.", policy.CodeSubject},
		{"www.bank.example.", policy.CodeSubject},
		{"a_b.bank.example", policy.CodeSubject},
		{"www.bänk.example", policy.CodeSubject},
		{"Printer *3", policy.CodeSubject},
		// Look-alike characters that fold to a name.
		{"alice\uFF20fabrikam.com", policy.CodeSubject},
		{"alice\uFF20contoso.com", policy.CodeSubject},
		{"www\u3002bank\u3002example", policy.CodeSubject},
		{"dc01\uFF0Econtoso\uFF0Ecom", policy.CodeSubject},
		{"Ｒｏｕｔｅｒ 17", ""}, // fullwidth free text is not a name
		// Invisible format characters hide a name from the DNS-shape test but not from a reader or IDNA.
		{"evil\u00ADcorp.example.com", policy.CodeSubject},      // soft hyphen
		{"dc01\u200B.contoso.com", policy.CodeSubject},          // zero-width space
		{"laptop-7\u200D.corp.example.com", policy.CodeSubject}, // zero-width joiner, even inside the allow-list
		{"alice\u2060@fabrikam.com", policy.CodeSubject},        // word joiner
		{"moc.elpmaxe.knab\u202E", policy.CodeSubject},          // right-to-left override
		{"Router\u00AD 17", ""},                                 // free text stays free text
		// Look-alikes by compatibility form (NFKC, as UTS 46 maps names), not by a list: dots that are not
		// U+002E, digits with a full stop, letter-like symbols, the fullwidth asterisk, ignorable marks.
		{"evil\u2024com", policy.CodeSubject},                            // ONE DOT LEADER: evil.com
		{"evil\uFE52com", policy.CodeSubject},                            // SMALL FULL STOP: evil.com
		{"evil\u2488com", policy.CodeSubject},                            // DIGIT ONE FULL STOP: evil1.com
		{"laptop-7\u2024corp\u2024example\u2024com", policy.CodeSubject}, // even inside the allow-list
		{"www\uFE12bank\uFE12example", policy.CodeSubject},               // vertical ideographic full stop: U+3002, a dot
		{"\u212Aim@contoso.com", policy.CodeSubject},                     // KELVIN SIGN: Kim@contoso.com
		{"alice\uFE6Bcontoso.com", policy.CodeSubject},                   // SMALL COMMERCIAL AT
		{"\uFF0A.bank.example", policy.CodeSubject},                      // FULLWIDTH ASTERISK: a wildcard
		{"\uFF14\uFF10.\uFF10.\uFF10.\uFF11", policy.CodeSubject},        // fullwidth digits: 10.0.0.1, an allowed IP
		{"evil\uFE0Fcorp.example.com", policy.CodeSubject},               // variation selector, default-ignorable
		{"evil\u034Fcorp.example.com", policy.CodeSubject},               // COMBINING GRAPHEME JOINER, default-ignorable
		// Ordinary names in any script stay free text, whatever NFKC does to them.
		{"Zo\u00EB M\u00FCller", ""},
		{"Zoe\u0308 Mu\u0308ller", ""},                                  // decomposed: NFKC composes it, still not a name
		{"\u6771\u4EAC\u30AA\u30D5\u30A3\u30B9", ""},                    // 東京オフィス
		{"\uFF84\uFF73\uFF77\uFF6E\uFF73 \uFF75\uFF8C\uFF68\uFF7D", ""}, // half-width katakana
		{"\u0418\u0432\u0430\u043D", ""},                                // Иван
		{"\u0418\u0432\u0430\u043D \u041F\u0435\u0442\u0440\u043E\u0432", ""},
		{"Stra\u00DFe 5, B\u00FCro \u2116 3", ""},                // NUMERO SIGN: "No"
		{"\uFF52\uFF4F\uFF55\uFF54\uFF45\uFF52\uFF11\uFF17", ""}, // fullwidth single label: router17, not a name
	} {
		t.Run(tc.cn, func(t *testing.T) {
			_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: tc.cn})}), prof)
			wantCode(t, err, tc.want)
		})
	}
}

// TestIdentityAttributesHeldToAllowLists: the subject attributes relying parties map to an identity (UID for
// pam_pkcs11 and RADIUS, serialNumber, O, OU, DC) are held to the allow-lists like the common name; the other
// attributes (locality, title …) are free text.
func TestIdentityAttributesHeldToAllowLists(t *testing.T) {
	loadKeys(t)
	prof := mustProfile(t, "p", "dns=*.corp.example.com;upn=*@contoso.com")
	oid := func(s string) asn1.ObjectIdentifier {
		var o asn1.ObjectIdentifier
		for part := range strings.SplitSeq(s, ".") {
			n, _ := strconv.Atoi(part)
			o = append(o, n)
		}
		return o
	}
	for _, tc := range []struct {
		attr, value string
		want        policy.Code
	}{
		{"0.9.2342.19200300.100.1.1", "administrator@fabrikam.com", policy.CodeSubject}, // UID
		{"0.9.2342.19200300.100.1.1", "alice@contoso.com", ""},
		{"0.9.2342.19200300.100.1.1", "alice", ""},
		{"2.5.4.5", "alice@fabrikam.com", policy.CodeSubject}, // serialNumber
		{"2.5.4.5", "SN-4471-22", ""},
		{"2.5.4.10", "alice@fabrikam.com", policy.CodeSubject}, // O
		{"2.5.4.10", "Contoso Ltd.", ""},
		{"2.5.4.11", "www.bank.example", policy.CodeSubject}, // OU
		{"2.5.4.11", "*.corp.example.com", policy.CodeSubject},
		{"2.5.4.11", "IT", ""},
		{"0.9.2342.19200300.100.1.25", "bank.example", policy.CodeSubject}, // DC
		{"0.9.2342.19200300.100.1.25", "corp", ""},
		{"2.5.4.7", "St.Louis", ""}, // locality: free text
		// Look-alikes by compatibility form, in every identity attribute and the emailAddress attribute.
		{"0.9.2342.19200300.100.1.1", "\u212Aim@contoso.com", policy.CodeSubject},
		{"2.5.4.10", "evil\u2024com", policy.CodeSubject},
		{"2.5.4.11", "www\uFE52bank\uFE52example", policy.CodeSubject},
		{"0.9.2342.19200300.100.1.25", "evil\u2488com", policy.CodeSubject},
		{"2.5.4.5", "laptop-7\uFE52corp\uFE52example\uFE52com", policy.CodeSubject},
		{"1.2.840.113549.1.9.1", "adm\u2024in@contoso.com", policy.CodeSubject},
		{"1.2.840.113549.1.9.1", "alice@contoso.com", ""},
		{"2.5.4.10", "Zo\u00EB M\u00FCller GmbH", ""},
		{"2.5.4.11", "\u6771\u4EAC\u30AA\u30D5\u30A3\u30B9", ""},
	} {
		t.Run(tc.attr+"="+tc.value, func(t *testing.T) {
			n := pkix.Name{CommonName: "device-1", ExtraNames: []pkix.AttributeTypeAndValue{{Type: oid(tc.attr), Value: tc.value}}}
			_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, n)}), prof)
			wantCode(t, err, tc.want)
		})
	}
}

// TestDomainComponentsReadAsOneName: the DC attributes together name a domain (DC=com, DC=evil is evil.com), held
// to the DNS allow-list as a whole even though each label alone is not a name.
func TestDomainComponentsReadAsOneName(t *testing.T) {
	loadKeys(t)
	prof := mustProfile(t, "p", "dns=*.corp.example.com,**.lab.example.com,host.example.net")
	dc := func(labels ...string) pkix.Name { // in DER order: the top-level label first
		n := pkix.Name{CommonName: "device-1"}
		for _, l := range labels {
			n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: l})
		}
		return n
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   policy.Code
	}{
		{"one label", []string{"corp"}, ""},
		{"the domain of allowed hosts (*.)", []string{"com", "example", "corp"}, ""},
		{"the domain of allowed hosts (**.)", []string{"com", "example", "lab"}, ""},
		{"an allowed host", []string{"com", "example", "corp", "eu"}, ""},
		{"an allowed exact name", []string{"net", "example", "host"}, ""},
		{"other domain", []string{"com", "evil"}, policy.CodeSubject},
		{"allowed labels, reversed", []string{"corp", "example", "com"}, policy.CodeSubject},
		{"parent of the allowed domain", []string{"com", "example"}, policy.CodeSubject},
		{"the domain of an exact name only", []string{"net", "example"}, policy.CodeSubject},
		{"not a DNS label", []string{"com", "Contoso Ltd"}, policy.CodeSubject},
		// The domain is the pattern's suffix itself, label for label: not a name that merely ends in it, nor one
		// deeper than the pattern reaches.
		{"ends in the allowed domain's text", []string{"com", "example", "evilcorp"}, policy.CodeSubject},
		{"ends in the ** domain's text", []string{"com", "example", "evillab"}, policy.CodeSubject},
		{"two labels under a one-label pattern", []string{"com", "example", "corp", "b", "a"}, policy.CodeSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, dc(tc.labels...))}), prof)
			wantCode(t, err, tc.want)
		})
	}
}

// TestSANAllowListThroughCheck: names outside the patterns are refused with the SAN code and the profile named.
func TestSANAllowListThroughCheck(t *testing.T) {
	loadKeys(t)
	prof := mustProfile(t, "corp", "dns=*.corp.example.com;upn=*@contoso.com;email=*@contoso.com;ip=10.0.0.0/8;uri=https://*.corp.example.com")
	ok := []asn1.RawValue{gnDNS("a.corp.example.com"), gnUPN(t, "alice@contoso.com"), gnEmail("alice@contoso.com"),
		gnIP([]byte{10, 9, 8, 7}), gnURI("https://app.corp.example.com/x")}
	req, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, ok...)}}), prof)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Names()) != 5 {
		t.Fatalf("names %v", req.Names())
	}
	type named struct {
		name string
		gn   asn1.RawValue
	}
	upn := func(s string) named { return named{"upn:" + s, gnUPN(t, s)} }
	other := func(gn asn1.RawValue) named { return named{fmt.Sprintf("%d:%q", gn.Tag, gn.Bytes), gn} }
	for _, bad := range []named{other(gnDNS("a.b.corp.example.com")), upn("alice@fabrikam.com"),
		other(gnEmail("alice@contoso.com.evil.test")), other(gnIP([]byte{192, 0, 2, 1})), other(gnURI("https://evil.test/")),
		other(gnURI(intuneSIDURI)),
		// Look-alike and invisible characters in a SAN as in the subject.
		upn("adm\u00ADin@contoso.com"), upn("\uFF41lice@contoso.com"), upn("alice\u200D@contoso.com"),
		// ... and by compatibility form (NFKC), not by a list.
		upn("\u212Aim@contoso.com"), upn("adm\u2024in@contoso.com"), upn("adm\uFE52in@contoso.com"),
		upn("alice\uFE0F@contoso.com"), upn("\u2488alice@contoso.com")} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, append(append([]asn1.RawValue{}, ok...), bad.gn)...)}}), prof)
			wantCode(t, err, policy.CodeSAN)
		})
	}
	// A UPN in another script is not a look-alike.
	for _, u := range []string{"zo\u00EB@contoso.com", "\u0438\u0432\u0430\u043D@contoso.com", "\u6771\u4EAC@contoso.com"} {
		req, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnUPN(t, u))}}), prof)
		if err != nil || !slices.Equal(req.UPNs, []string{u}) {
			t.Errorf("UPN %q: %v", u, err)
		}
	}
}
