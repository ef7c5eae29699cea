package lint_test

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/lint"
)

// subjectWithEmail is the DER subject CN=<cn>, emailAddress=<email>, the emailAddress an IA5String as PKCS #9 has
// it (and as openssl req writes it): the raw subject issuance copies from a CSR.
func subjectWithEmail(t *testing.T, cn, email string) []byte {
	t.Helper()
	atv := func(oid asn1.ObjectIdentifier, tag int, v string) asn1.RawValue {
		b := mustMarshal(t, struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}{oid, asn1.RawValue{Tag: tag, Bytes: []byte(v)}})
		return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: b}
	}
	return mustMarshal(t, []asn1.RawValue{
		atv(asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.TagUTF8String, cn),
		atv(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, asn1.TagIA5String, email),
	})
}

// TestNameConstraintsSubjectEmailAddress: under a CA whose name constraints limit e-mail names, an emailAddress in
// the subject is an e-mail name too (RFC 5280 §4.2.1.10). OpenSSL checks it and refuses the chain; crypto/x509 does
// not, so a certificate the lint let through would give a Go relying party a mailbox the CA may not certify. The
// lint refuses exactly what OpenSSL refuses.
func TestNameConstraintsSubjectEmailAddress(t *testing.T) {
	loadFixtures(t)
	dir := t.TempDir()
	writePEM := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name      string
		constrain func(*x509.Certificate)
		email     string
		refused   bool
	}{
		{"excluded-mailbox", func(c *x509.Certificate) { c.ExcludedEmailAddresses = []string{"root@corp.example"} },
			"root@corp.example", true},
		{"outside-permitted-host", func(c *x509.Certificate) { c.PermittedEmailAddresses = []string{"corp.example"} },
			"admin@other.example", true},
		{"inside-permitted-host", func(c *x509.Certificate) { c.PermittedEmailAddresses = []string{"corp.example"} },
			"alice@corp.example", false},
		// Only constrained forms are checked: DNS constraints say nothing about e-mail names.
		{"dns-constraints-only", func(c *x509.Certificate) { c.PermittedDNSDomains = []string{".corp.example"} },
			"admin@other.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, l := constrainedCA(t, keys.caEC, tc.constrain)
			now := time.Now()
			tmpl := leafTemplate(t, keys.leafEC.Public(), now)
			tmpl.DNSNames = []string{"laptop-7.corp.example"}
			tmpl.RawSubject = subjectWithEmail(t, "laptop-7", tc.email)
			plan, err := l.Check(tmpl, keys.leafEC.Public(), expectFor(tmpl, now))

			// What OpenSSL makes of the same certificate, signed.
			der, serr := x509.CreateCertificate(rand.Reader, tmpl, ca, keys.leafEC.Public(), keys.caEC)
			if serr != nil {
				t.Fatal(serr)
			}
			out, verr := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", writePEM("ca.pem", ca.Raw),
				writePEM("leaf.pem", der)).CombinedOutput()
			if opensslRefused := verr != nil; opensslRefused != tc.refused ||
				tc.refused && !strings.Contains(string(out), "subtree violation") {
				t.Fatalf("openssl verify (refused %t, want %t): %s", opensslRefused, tc.refused, out)
			}

			if !tc.refused {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				assertLinted(t, plan, ca, keys.leafEC.Public())
				return
			}
			var nc *lint.NameConstraintsError
			if !errors.As(err, &nc) || plan != nil {
				t.Fatalf("Check = (planned %t, %v); want a *lint.NameConstraintsError like OpenSSL's refusal", plan != nil, err)
			}
			if !strings.Contains(nc.Detail, tc.email) || !strings.Contains(nc.Detail, "emailAddress") {
				t.Errorf("detail %q does not name the subject's %s", nc.Detail, tc.email)
			}
		})
	}
}
