package lint_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/azscep/azscep/internal/lint"
)

// constrainedCA is a CA like the fixtures' whose template constrain shaped (an imported subordinate with RFC 5280
// §4.2.1.10 name constraints), and a Linter for it.
func constrainedCA(t *testing.T, key crypto.Signer, constrain func(*x509.Certificate)) (*x509.Certificate, *lint.Linter) {
	t.Helper()
	ca, err := selfSignedCA("constrained issuing CA", key, constrain)
	if err != nil {
		t.Fatal(err)
	}
	l, err := lint.New(ca)
	if err != nil {
		t.Fatal(err)
	}
	return ca, l
}

func cidr(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestNameConstraints: a planned certificate is refused with a *lint.NameConstraintsError when one of its names
// lies outside the CA's permitted subtrees or inside an excluded one, by crypto/x509's matching rules, and is
// linted as before otherwise.
func TestNameConstraints(t *testing.T) {
	loadFixtures(t)
	permitCorp := func(c *x509.Certificate) { c.PermittedDNSDomains = []string{".corp.example"} }
	names := func(cn string, dns ...string) func(*x509.Certificate) {
		return func(c *x509.Certificate) { c.Subject, c.DNSNames = pkix.Name{CommonName: cn}, dns }
	}
	for _, tc := range []struct {
		name      string
		rsaCA     bool
		constrain func(*x509.Certificate)
		leaf      func(*x509.Certificate)
		refused   string // "" means the leaf must pass; else a substring of the detail
	}{
		// Permitted ".corp.example": subdomains only (the leading dot), at any depth, case ignored.
		{name: "permitted/leading-dot/subdomain", constrain: permitCorp, leaf: names("laptop-7", "a.corp.example")},
		{name: "permitted/leading-dot/deeper", constrain: permitCorp, leaf: names("laptop-7", "x.a.corp.example")},
		{name: "permitted/leading-dot/case", constrain: permitCorp, leaf: names("laptop-7", "A.Corp.EXAMPLE")},
		{name: "permitted/leading-dot/other-domain", constrain: permitCorp, leaf: names("laptop-7", "a.other.example"),
			refused: `"a.other.example"`},
		{name: "permitted/leading-dot/the-domain-itself", constrain: permitCorp, leaf: names("laptop-7", "corp.example"),
			refused: `"corp.example"`},
		{name: "permitted/leading-dot/suffix-not-label", constrain: permitCorp, leaf: names("laptop-7", "a.xcorp.example"),
			refused: `"a.xcorp.example"`},
		{name: "permitted/rsa-ca", rsaCA: true, constrain: permitCorp, leaf: names("laptop-7", "a.corp.example")},
		{name: "permitted/rsa-ca/other-domain", rsaCA: true, constrain: permitCorp, leaf: names("laptop-7", "a.other.example"),
			refused: `"a.other.example"`},
		{name: "permitted/one-bad-name-of-two", constrain: permitCorp, leaf: names("laptop-7", "a.corp.example", "b.other.example"),
			refused: `"b.other.example"`},
		// Permitted "corp.example" (no dot): the domain and its subdomains.
		{name: "permitted/no-dot/the-domain", constrain: func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"corp.example"} },
			leaf: names("laptop-7", "corp.example")},
		{name: "permitted/no-dot/subdomain", constrain: func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"corp.example"} },
			leaf: names("laptop-7", "a.corp.example")},
		{name: "permitted/no-dot/suffix-not-label", constrain: func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"corp.example"} },
			leaf: names("laptop-7", "notcorp.example"), refused: `"notcorp.example"`},

		// Excluded subtrees win over permitted ones.
		{name: "excluded/inside", constrain: func(c *x509.Certificate) {
			c.PermittedDNSDomains, c.ExcludedDNSDomains = []string{".corp.example"}, []string{"lab.corp.example"}
		}, leaf: names("laptop-7", "x.lab.corp.example"), refused: `"x.lab.corp.example"`},
		{name: "excluded/the-excluded-name", constrain: func(c *x509.Certificate) {
			c.ExcludedDNSDomains = []string{"lab.corp.example"}
		}, leaf: names("laptop-7", "LAB.corp.example"), refused: "excluded"},
		{name: "excluded/outside", constrain: func(c *x509.Certificate) {
			c.PermittedDNSDomains, c.ExcludedDNSDomains = []string{".corp.example"}, []string{"lab.corp.example"}
		}, leaf: names("laptop-7", "x.office.corp.example")},

		// IP ranges match under their mask.
		{name: "ip/permitted", constrain: func(c *x509.Certificate) { c.PermittedIPRanges = []*net.IPNet{cidr(t, "10.20.0.0/16")} },
			leaf: func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("10.20.255.1")} }},
		{name: "ip/outside-mask", constrain: func(c *x509.Certificate) { c.PermittedIPRanges = []*net.IPNet{cidr(t, "10.20.0.0/16")} },
			leaf: func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("10.21.0.1")} }, refused: "10.21.0.1"},
		{name: "ip/excluded", constrain: func(c *x509.Certificate) {
			c.PermittedIPRanges, c.ExcludedIPRanges = []*net.IPNet{cidr(t, "10.0.0.0/8")}, []*net.IPNet{cidr(t, "10.9.0.0/16")}
		}, leaf: func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("10.9.3.4")} }, refused: "10.9.3.4"},
		{name: "ip/other-family", constrain: func(c *x509.Certificate) { c.PermittedIPRanges = []*net.IPNet{cidr(t, "10.0.0.0/8")} },
			leaf: func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("fd00::1")} }, refused: "fd00::1"},

		// Email: a mailbox, a host or a ".domain" constraint.
		{name: "email/permitted-host", constrain: func(c *x509.Certificate) { c.PermittedEmailAddresses = []string{"corp.example"} },
			leaf: func(c *x509.Certificate) { c.EmailAddresses = []string{"alice@CORP.example"} }},
		{name: "email/other-host", constrain: func(c *x509.Certificate) { c.PermittedEmailAddresses = []string{"corp.example"} },
			leaf: func(c *x509.Certificate) { c.EmailAddresses = []string{"alice@other.example"} }, refused: "alice@other.example"},
		// crypto/x509 reads a host constraint like a DNS one, subdomains included (RFC 5280 and OpenSSL do not):
		// the lint follows Go, so this passes.
		{name: "email/subdomain-of-host-as-go", constrain: func(c *x509.Certificate) { c.PermittedEmailAddresses = []string{"corp.example"} },
			leaf: func(c *x509.Certificate) { c.EmailAddresses = []string{"alice@eu.corp.example"} }},
		{name: "email/excluded-mailbox", constrain: func(c *x509.Certificate) { c.ExcludedEmailAddresses = []string{"root@corp.example"} },
			leaf: func(c *x509.Certificate) { c.EmailAddresses = []string{"root@corp.example"} }, refused: "root@corp.example"},

		// URI: the host is matched as a DNS name.
		{name: "uri/permitted-host", constrain: func(c *x509.Certificate) { c.PermittedURIDomains = []string{".corp.example"} },
			leaf: func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(t, "https://dev.corp.example/x")} }},
		{name: "uri/other-host", constrain: func(c *x509.Certificate) { c.PermittedURIDomains = []string{".corp.example"} },
			leaf: func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(t, "https://dev.other.example/x")} }, refused: "dev.other.example"},
		{name: "uri/no-host-under-uri-constraints", constrain: func(c *x509.Certificate) { c.PermittedURIDomains = []string{".corp.example"} },
			leaf: func(c *x509.Certificate) {
				c.URIs = []*url.URL{mustURL(t, "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001")}
			}, refused: "empty host"},
		// Only constrained forms are checked (RFC 5280 §4.2.1.10): Intune's strong-mapping URI and an IP under a CA
		// that constrains DNS names only.
		{name: "unconstrained-form/uri-and-ip", constrain: permitCorp, leaf: func(c *x509.Certificate) {
			c.DNSNames = []string{"a.corp.example"}
			c.URIs = []*url.URL{mustURL(t, "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001")}
			c.IPAddresses = []net.IP{net.ParseIP("192.0.2.1")}
		}},

		// The subject commonName, when it is a DNS name, counts as one (OpenSSL checks it; Go does not).
		{name: "cn/dns-name-outside", constrain: permitCorp, leaf: names("a.other.example", "a.corp.example"),
			refused: "commonName"},
		{name: "cn/dns-name-outside-no-san", constrain: permitCorp, leaf: names("a.other.example"), refused: `"a.other.example"`},
		{name: "cn/dns-name-inside-no-san", constrain: permitCorp, leaf: names("a.corp.example")},
		{name: "cn/not-a-dns-name", constrain: permitCorp, leaf: names("laptop-7", "a.corp.example")},
		{name: "cn/upn-is-not-a-dns-name", constrain: permitCorp, leaf: names("alice@other.example", "a.corp.example")},
		{name: "cn/person-is-not-a-dns-name", constrain: permitCorp, leaf: names("Alice B. Smith", "a.corp.example")},

		// Constraint forms crypto/x509 cannot evaluate (here directoryName) in a critical extension make Go refuse
		// every chain through the CA; the forms it can evaluate are still checked, and nothing else is refused.
		{name: "critical-with-directoryName/inside", constrain: func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{nameConstraintsWithDirectoryName(t, ".corp.example")}
		}, leaf: names("laptop-7", "a.corp.example")},
		{name: "critical-with-directoryName/outside", constrain: func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{nameConstraintsWithDirectoryName(t, ".corp.example")}
		}, leaf: names("laptop-7", "a.other.example"), refused: `"a.other.example"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := crypto.Signer(keys.caEC)
			if tc.rsaCA {
				key = keys.caRSA
			}
			ca, l := constrainedCA(t, key, tc.constrain)
			now := time.Now()
			tmpl := leafTemplate(t, keys.leafEC.Public(), now)
			tc.leaf(tmpl)
			plan, err := l.Check(tmpl, keys.leafEC.Public(), expectFor(tmpl, now))
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				assertLinted(t, plan, ca, keys.leafEC.Public())
				return
			}
			var nc *lint.NameConstraintsError
			if !errors.As(err, &nc) {
				t.Fatalf("Check = %v (%T), want a *lint.NameConstraintsError", err, err)
			}
			if !errors.Is(err, lint.ErrLint) {
				t.Errorf("%v does not wrap lint.ErrLint", err)
			}
			if !strings.Contains(nc.Detail, tc.refused) {
				t.Errorf("detail %q does not mention %q", nc.Detail, tc.refused)
			}
			if plan != nil {
				t.Error("a refused certificate was returned as planned")
			}
		})
	}
}

// TestNameConstraintsAgreeWithGo: every planned certificate the lint lets through under a constrained CA verifies
// under that CA with crypto/x509 once signed, and every one it refuses for its SANs does not.
func TestNameConstraintsAgreeWithGo(t *testing.T) {
	loadFixtures(t)
	ca, l := constrainedCA(t, keys.caEC, func(c *x509.Certificate) {
		c.PermittedDNSDomains, c.ExcludedDNSDomains = []string{".corp.example", "corp.test"}, []string{"lab.corp.example"}
		c.PermittedIPRanges = []*net.IPNet{cidr(t, "10.0.0.0/8")}
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, dns := range []string{"a.corp.example", "corp.example", "A.LAB.corp.example", "corp.test", "x.corp.test",
		"xcorp.test", "a.other.example"} {
		for _, ip := range []string{"10.1.2.3", "11.1.2.3"} {
			now := time.Now()
			tmpl := leafTemplate(t, keys.leafEC.Public(), now)
			tmpl.DNSNames, tmpl.IPAddresses = []string{dns}, []net.IP{net.ParseIP(ip)}
			plan, lerr := l.Check(tmpl, keys.leafEC.Public(), expectFor(tmpl, now))
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, keys.leafEC.Public(), keys.caEC)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			_, verr := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if (lerr == nil) != (verr == nil) {
				t.Errorf("%s %s: lint %v, crypto/x509 %v", dns, ip, lerr, verr)
			}
			if lerr == nil && plan == nil {
				t.Errorf("%s %s: no planned certificate", dns, ip)
			}
		}
	}
}

// TestNoNameConstraintsUnchanged: under a CA without name constraints, any name the profile allowed passes.
func TestNoNameConstraintsUnchanged(t *testing.T) {
	loadFixtures(t)
	for _, l := range []*lint.Linter{fixtures.linterEC, fixtures.linterRSA} {
		now := time.Now()
		tmpl := leafTemplate(t, keys.leafEC.Public(), now)
		tmpl.Subject = pkix.Name{CommonName: "a.other.example"}
		tmpl.DNSNames = []string{"a.other.example", "corp.example"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("192.0.2.1")}
		tmpl.URIs = []*url.URL{mustURL(t, "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001")}
		if _, err := l.Check(tmpl, keys.leafEC.Public(), expectFor(tmpl, now)); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
}

// nameConstraintsWithDirectoryName is a critical nameConstraints extension permitting the DNS subtree dns and a
// directoryName subtree (O=Contoso), a form crypto/x509 parses as unhandled.
func nameConstraintsWithDirectoryName(t *testing.T, dns string) pkix.Extension {
	t.Helper()
	dn, err := asn1.Marshal(pkix.Name{Organization: []string{"Contoso"}}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralSubtree { base dNSName }
				b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(dns)) })
			})
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralSubtree { base directoryName }
				b.AddASN1(cbasn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(dn) })
			})
		})
	})
	val, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 30}, Critical: true, Value: val}
}
