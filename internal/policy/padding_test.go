package policy_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestPaddedSubjectValuesRefused: a subject value that begins or ends with white space of any kind is refused in
// every attribute, whatever the profile allows. Relying parties trim values (.NET's Trim, Python's strip, LDAP's
// insignificant-space matching), so " 10.0.0.1" or "host.evil.com\u00A0", free text to a check that reads the
// value as it is, is the IP address or DNS name to them, which the allow-lists never saw.
func TestPaddedSubjectValuesRefused(t *testing.T) {
	loadKeys(t)
	// The IP and DNS names below are inside these lists, so only the padding can refuse them.
	prof := mustProfile(t, "p", "dns=*.corp.example.com,host.evil.com,evil.com;ip=10.0.0.0/8")
	pads := map[string]string{
		"space": " ", "no-break space": "\u00A0", "ideographic space": "\u3000",
		"line separator": "\u2028", "paragraph separator": "\u2029", "ogham space mark": "\u1680",
		"narrow no-break space": "\u202F", "em space": "\u2003", "byte order mark": "\uFEFF",
		"zero width space": "\u200B", "mongolian vowel separator": "\u180E",
	}
	values := []string{"10.0.0.1", "host.evil.com", "evil.com", "laptop-7.corp.example.com", "Floor 3 printer", "router-17"}
	attrs := map[string]asn1.ObjectIdentifier{
		"CN": {2, 5, 4, 3}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11}, "serialNumber": {2, 5, 4, 5},
		"UID": {0, 9, 2342, 19200300, 100, 1, 1}, "DC": {0, 9, 2342, 19200300, 100, 1, 25}, "L": {2, 5, 4, 7},
	}
	for attr, oid := range attrs {
		for _, v := range values {
			if attr == "DC" && strings.Contains(v, " ") {
				continue // not a domain label at all
			}
			// Unpadded, each value passes: the allow-lists admit it.
			n := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: oid, Value: v}}}
			if _, err := checkDER(buildCSR(t, csrSpec{subject: name(t, n)}), prof); err != nil {
				t.Fatalf("%s=%q: %v", attr, v, err)
			}
			for pname, pad := range pads {
				for _, padded := range []string{pad + v, v + pad} {
					t.Run(attr+"/"+pname+"/"+padded, func(t *testing.T) {
						n := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: oid, Value: padded}}}
						_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, n)}), prof)
						wantCode(t, err, policy.CodeSubject)
					})
				}
			}
		}
	}
	// White space inside a value is text, not padding.
	for _, cn := range []string{"Floor 3 printer", "Zo\u00EB\u00A0M\u00FCller", "\u6771\u4EAC\u3000\u30AA\u30D5\u30A3\u30B9"} {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: cn})}), prof)
		wantCode(t, err, "")
	}
}

// TestFirstWordIPAddressIsAnIPName: a subject value whose first word is an IP address is that address to
// inet_aton, which stops at the first space ("10.0.0.1 printer" is 10.0.0.1), and to any reader that splits the
// value into words: it is held to ip= like the address alone.
func TestFirstWordIPAddressIsAnIPName(t *testing.T) {
	loadKeys(t)
	withIP := mustProfile(t, "p", "dns=*.corp.example.com;ip=10.0.0.0/8")
	noIP := mustProfile(t, "device", specDevice)
	for _, tc := range []struct {
		cn           string
		withIP, noIP policy.Code
	}{
		{"10.0.0.1 printer", "", policy.CodeSubject},
		// Split by a space NFKC reads as " ": a look-alike of the above, refused even where the address is allowed.
		{"10.0.0.1\u00A0printer", policy.CodeSubject, policy.CodeSubject},
		{"10.0.0.1\u3000printer", policy.CodeSubject, policy.CodeSubject},
		// A line separator is refused anywhere in a value (a line reader splits there), allowed address or not.
		{"10.0.0.1\u2028printer", policy.CodeSubject, policy.CodeSubject},
		{"192.0.2.1 printer", policy.CodeSubject, policy.CodeSubject},
		{"2001:db8::1 router", policy.CodeSubject, policy.CodeSubject},
		// inet_aton's other forms are never issued, as for the value alone.
		{"10.1 printer", policy.CodeSubject, policy.CodeSubject},
		{"0x0a.0.0.1 printer", policy.CodeSubject, policy.CodeSubject},
		{"012.0.0.1 printer", policy.CodeSubject, policy.CodeSubject},
		{"10.0.19045 build", policy.CodeSubject, policy.CodeSubject},
		// Look-alike digits that fold to such a value.
		{"\uFF11\uFF10.0.0.1 printer", policy.CodeSubject, policy.CodeSubject},
		// Free text: no first word that inet_aton reads.
		{"Floor 3 printer", "", ""},
		{"Build 10.0.19045", "", ""},
		{"Room 4.2", "", ""},
		{"v1.2 beta", "", ""},
		{"3 printers", "", ""},
		{"356938035643809 IMEI", "", ""},
	} {
		t.Run(tc.cn, func(t *testing.T) {
			der := buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: tc.cn})})
			_, err := checkDER(der, withIP)
			wantCode(t, err, tc.withIP)
			_, err = checkDER(der, noIP)
			wantCode(t, err, tc.noIP)
		})
	}
}

// TestUPNWithWhiteSpaceRefused: a UPN is one word; white space of any kind in it (a UTF8String may carry
// U+2028 or U+1680 as well as a space) is refused, so that a reader that trims or splits the name cannot find in it
// another account than the one the allow-list saw.
func TestUPNWithWhiteSpaceRefused(t *testing.T) {
	loadKeys(t)
	prof := mustProfile(t, "p", "upn=*@contoso.com")
	csr := func(upn string) []byte {
		return buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnUPN(t, upn))}})
	}
	if _, err := checkDER(csr("admin@contoso.com"), prof); err != nil {
		t.Fatalf("plain UPN: %v", err)
	}
	for _, upn := range []string{"\u2028admin@contoso.com", "admin\u1680@contoso.com", "ad min@contoso.com",
		"admin\u00A0@contoso.com", "\uFEFFadmin@contoso.com", "admin@contoso.com\u3000"} {
		t.Run(upn, func(t *testing.T) {
			_, err := checkDER(csr(upn), prof)
			wantCode(t, err, policy.CodeSAN)
		})
	}
}
