package policy_test

import (
	"crypto/x509/pkix"
	"net"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestIPv4MappedSANRefused: an iPAddress of 16 bytes holding ::ffff:10.0.0.1 is 10.0.0.1 to Go's allow-list
// (net.IPNet.Contains maps it down) but an IPv6 address to OpenSSL, which compares address bytes and length; the
// same address as 4 bytes, and a genuine IPv6 address, are issued.
func TestIPv4MappedSANRefused(t *testing.T) {
	p := mustProfile(t, "ip", "validity=30d;ku=digitalSignature;eku=clientAuth;ip=10.0.0.0/8,2001:db8::/32")
	mapped := net.ParseIP("::ffff:10.0.0.1")
	if len(mapped) != net.IPv6len || !p.AllowsIP(mapped) {
		t.Fatalf("setup: want a 16-byte mapped address the IPv4 allow-list matches, got %d bytes", len(mapped))
	}
	_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnIP(mapped))}}), p)
	wantCode(t, err, policy.CodeSAN)

	for _, ip := range []net.IP{mapped.To4(), net.ParseIP("2001:db8::1")} {
		req, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnIP(ip))}}), p)
		wantCode(t, err, "")
		if len(req.IPs) != 1 || len(req.IPs[0]) != len(ip) || !req.IPs[0].Equal(ip) {
			t.Fatalf("IPs = %v, want exactly %v in %d bytes", req.IPs, ip, len(ip))
		}
	}
}
