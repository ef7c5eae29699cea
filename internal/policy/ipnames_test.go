package policy_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestIPAddressesAreNotDNSNames: a profile without an ip= list yields no IP address in any form. inet_aton and
// TLS stacks that match an IP host against dNSName entries read "10.0.0.1", "10.1" and "0x0a000001" as 10.0.0.1,
// and the Baseline Requirements forbid IPs in dNSName; domain components read together name a host the same way.
// A single number stays allowed as a CN (an IMEI, a serial number) but not as a DNS name.
func TestIPAddressesAreNotDNSNames(t *testing.T) {
	dev := mustProfile(t, "device", specDevice) // dns=*, no ip=
	for _, d := range []string{"10.0.0.1", "0x0a000001", "192.168.1.1", "10.1", "167772161", "host.010", "a.0x7f"} {
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS(d))}}), dev)
		wantCode(t, err, policy.CodeSAN)
	}
	for _, cn := range []string{"10.0.0.1", "10.1", "0x0a.0.0.1", "127.1"} {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: cn})}), dev)
		wantCode(t, err, policy.CodeSubject)
	}
	dc := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	ip := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: dc, Value: "1"}, {Type: dc, Value: "0"}, {Type: dc, Value: "0"}, {Type: dc, Value: "10"}}}
	_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, ip)}), dev)
	wantCode(t, err, policy.CodeSubject)

	// Still names: a single-number CN, digits inside labels, a numeric label that is not the last.
	for _, cn := range []string{"356938035643809", "router-17", "Contoso Agent v1.2", "Room 4.2", "Build 10.0.19045"} {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: cn})}), dev)
		wantCode(t, err, "")
	}
	for _, d := range []string{"host1.corp.example", "10.corp.example", "x-0x1.example"} {
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS(d))}}), dev)
		wantCode(t, err, "")
	}
}

// TestURIHostPatternIsADNSName: a URI host pattern is a dns= pattern, so the host must be a DNS name; an IPv6
// literal whose zone ID ends in the allowed suffix ("[2001:db8::1%25x.corp.example]") is an IP host, not a host
// under corp.example.
func TestURIHostPatternIsADNSName(t *testing.T) {
	p := mustProfile(t, "u", "uri=https://*.corp.example,ldap://**.corp.example")
	for _, u := range []string{"https://[2001:db8::1%25x.corp.example]/", "ldap://[::ffff:192.0.2.1%25.corp.example]/",
		"https://10.0.0.1/", "https://0x0a000001.corp.example.10/"} {
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnURI(u))}}), p)
		wantCode(t, err, policy.CodeSAN)
	}
	for _, u := range []string{"https://www.corp.example/", "ldap://a.b.corp.example/"} {
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnURI(u))}}), p)
		wantCode(t, err, "")
	}
}

// TestIPv4MappedBlockRefused: ::ffff:0:0/96 is 0.0.0.0/0 to net.IPNet.Contains (it compares an IPv4 address with
// the block's last four bytes), so every v4-mapped block must be written as the IPv4 block it means.
func TestIPv4MappedBlockRefused(t *testing.T) {
	for _, spec := range []string{"ip=::ffff:0:0/96", "ip=::ffff:0.0.0.0/96", "ip=::ffff:10.0.0.0/104"} {
		if _, err := policy.ParseProfile("x", spec); err == nil {
			t.Errorf("%s accepted", spec)
		}
	}
	p := mustProfile(t, "x", "ip=10.0.0.0/8,2001:db8::/32")
	for ip, code := range map[string]policy.Code{"10.1.2.3": "", "8.8.8.8": policy.CodeSAN, "2001:db8::5": ""} {
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnIP(ipBytes(ip)))}}), p)
		wantCode(t, err, code)
	}
}

func ipBytes(s string) []byte {
	ip := net.ParseIP(s)
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// TestEmptyHexLabelIsANumber: the WHATWG URL parser (browsers, Node, every fetch-based client) reads a last label
// of "0x" as the number 0, so "10.0.0.0x" is the IPv4 address 10.0.0.0 to it, as "10.0.0.0" is; strconv.ParseUint
// refuses "0x", and the name passed as a DNS name. A profile without ip= yields it in no form.
func TestEmptyHexLabelIsANumber(t *testing.T) {
	dev := mustProfile(t, "device", specDevice) // dns=*, no ip=
	for _, d := range []string{"10.0.0.0x", "192.168.1.0X", "host.0x"} {
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS(d))}}), dev)
		wantCode(t, err, policy.CodeSAN)
	}
	for _, cn := range []string{"10.0.0.0x", "127.0X"} {
		_, err := checkDER(buildCSR(t, csrSpec{subject: name(t, pkix.Name{CommonName: cn})}), dev)
		wantCode(t, err, policy.CodeSubject)
	}
}
