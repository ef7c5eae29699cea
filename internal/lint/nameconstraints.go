package lint

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
)

// NameConstraintsError is the lint failure for a planned certificate naming something the issuing CA's name
// constraints (RFC 5280 §4.2.1.10) do not allow: a name outside every permitted subtree of its form, or inside an
// excluded one. Every verifier that enforces the constraints would reject the certificate, so it is refused before
// any record or key operation. Detail names the offending name; it is safe to show to the requester (the names
// are the requester's own, already through policy). It wraps ErrLint.
type NameConstraintsError struct {
	Detail string
}

func (e *NameConstraintsError) Error() string {
	return fmt.Sprintf("%v: name constraints: %s", ErrLint, e.Detail)
}

// Unwrap makes errors.Is(err, ErrLint) hold for it, like every other lint failure.
func (e *NameConstraintsError) Unwrap() error { return ErrLint }

var oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}

// nameConstraints holds what the name constraints lint needs of a CA that carries the extension: a stand-in for
// the CA with the CA's subject, key identifier, validity and name constraints (as crypto/x509 parsed them) but a
// throwaway key, and that key. Nil for a CA without the extension: its certificates are not checked.
type nameConstraints struct {
	ca    *x509.Certificate // the real CA, for the name forms it constrains
	root  *x509.Certificate // the stand-in
	roots *x509.CertPool    // holding only root
	key   *ecdsa.PrivateKey // root's key; it signs probes only, never anything that leaves this package
}

// newNameConstraints returns the lint's state for ca, nil when ca has no name constraints extension.
//
// The stand-in is built field by field rather than copied, so that only the name constraints can fail a
// verification: it is a CA for any purpose and path length, with no certificate policies, and without the real
// CA's unhandled critical extensions. The last matters for constraints of forms crypto/x509 does not evaluate
// (directoryName, otherName such as Microsoft's UPN): marked critical they make Go refuse every chain through the
// CA; here the forms it does evaluate are still checked, and the others are left to the verifiers that know them.
func newNameConstraints(ca *x509.Certificate) (*nameConstraints, error) {
	idx := -1
	for n, e := range ca.Extensions {
		if e.Id.Equal(oidNameConstraints) {
			idx = n
		}
	}
	if idx < 0 {
		return nil, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lint: generating the name constraints probe key: %w", err)
	}
	root := &x509.Certificate{
		Raw:                   ca.Raw, // the pool's identity for it; never parsed again
		RawSubject:            ca.RawSubject,
		RawIssuer:             ca.RawSubject,
		SubjectKeyId:          ca.SubjectKeyId,
		NotBefore:             ca.NotBefore,
		NotAfter:              ca.NotAfter,
		PublicKey:             key.Public(),
		PublicKeyAlgorithm:    x509.ECDSA,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
		Extensions:            slices.Clone(ca.Extensions[idx : idx+1]),

		PermittedDNSDomainsCritical: ca.PermittedDNSDomainsCritical,
		PermittedDNSDomains:         ca.PermittedDNSDomains,
		ExcludedDNSDomains:          ca.ExcludedDNSDomains,
		PermittedIPRanges:           ca.PermittedIPRanges,
		ExcludedIPRanges:            ca.ExcludedIPRanges,
		PermittedEmailAddresses:     ca.PermittedEmailAddresses,
		ExcludedEmailAddresses:      ca.ExcludedEmailAddresses,
		PermittedURIDomains:         ca.PermittedURIDomains,
		ExcludedURIDomains:          ca.ExcludedURIDomains,
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return &nameConstraints{ca: ca, root: root, roots: roots, key: key}, nil
}

// check is the name constraints lint (RFC 5280 §4.2.1.10) of the planned certificate c. The names come from c as
// crypto/x509 parsed the to-be-signed bytes; the matching is crypto/x509's own (x509.Certificate.Verify): a probe
// certificate carrying those names, signed by the stand-in's throwaway key, is verified under the stand-in. So the
// rules are exactly a Go verifier's: a permitted or excluded DNS subtree "corp.example" covers the name and its
// subdomains and ".corp.example" only subdomains; case is ignored; IP ranges match under their mask; an email
// constraint is a mailbox, a host or a ".domain"; a URI's host is matched as a DNS name.
//
// Which names: DNS, IP, email and URI subjectAltNames, each subject commonName that is a DNS name (cnDNSName;
// Go ignores the commonName, OpenSSL and others check it against DNS constraints), and each subject emailAddress
// (RFC 5280 §4.2.1.10 has it checked against the rfc822Name constraints, and OpenSSL does; Go does not, so a Go
// relying party would take a name the CA may not certify). A form is checked only when the
// CA constrains it (RFC 5280: constraints of one form say nothing about names of another). Go itself refuses a
// certificate whose URI has no host (Intune's strong-mapping "tag:" URI) under a CA with constraints of any form;
// here that happens only when the CA constrains URIs, as RFC 5280 and OpenSSL have it.
func (nc *nameConstraints) check(c *x509.Certificate) error {
	ca := nc.ca
	probe := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: nc.root.NotBefore, NotAfter: nc.root.NotAfter}
	var cn []string
	if len(ca.PermittedDNSDomains) > 0 || len(ca.ExcludedDNSDomains) > 0 {
		probe.DNSNames = append(probe.DNSNames, c.DNSNames...)
		for _, atv := range c.Subject.Names {
			if s, ok := atv.Value.(string); ok && atv.Type.Equal(oidCommonName) && cnDNSName(s) {
				cn = append(cn, s)
			}
		}
		probe.DNSNames = append(probe.DNSNames, cn...)
	}
	if len(ca.PermittedIPRanges) > 0 || len(ca.ExcludedIPRanges) > 0 {
		probe.IPAddresses = append([]net.IP(nil), c.IPAddresses...)
	}
	var email []string
	if len(ca.PermittedEmailAddresses) > 0 || len(ca.ExcludedEmailAddresses) > 0 {
		probe.EmailAddresses = append([]string(nil), c.EmailAddresses...)
		for _, atv := range c.Subject.Names {
			if s, ok := atv.Value.(string); ok && atv.Type.Equal(oidEmailAddress) {
				email = append(email, s)
			}
		}
		probe.EmailAddresses = append(probe.EmailAddresses, email...)
	}
	if len(ca.PermittedURIDomains) > 0 || len(ca.ExcludedURIDomains) > 0 {
		probe.URIs = append([]*url.URL(nil), c.URIs...)
	}
	if len(probe.DNSNames)+len(probe.IPAddresses)+len(probe.EmailAddresses)+len(probe.URIs) == 0 {
		return nil // nothing of a constrained form
	}
	der, err := x509.CreateCertificate(rand.Reader, probe, nc.root, nc.key.Public(), nc.key)
	if err != nil {
		return fmt.Errorf("%w: building the name constraints probe: %v", ErrLint, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: parsing the name constraints probe: %v", ErrLint, err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: nc.roots, CurrentTime: nc.root.NotBefore,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil {
		return nil
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && (invalid.Reason == x509.CANotAuthorizedForThisName || invalid.Reason == x509.TooManyConstraints) {
		detail := invalid.Detail
		if invalid.Reason == x509.TooManyConstraints {
			detail = "too many names and constraints to compare"
		}
		if len(cn) > 0 {
			detail += " (the subject commonName counts as a DNS name)"
		}
		if len(email) > 0 {
			detail += " (the subject emailAddress counts as an e-mail name)"
		}
		return &NameConstraintsError{Detail: "the issuing CA's name constraints do not allow it: " + detail}
	}
	// The stand-in leaves nothing else to fail; fail closed all the same.
	return fmt.Errorf("%w: checking name constraints: %v", ErrLint, err)
}

var (
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// cnDNSName reports whether a commonName is a DNS name for the name constraints lint, by OpenSSL's rule
// (cn2dnsid in crypto/x509/v3_ncons.c): at least two labels of letters, digits and hyphens, no label empty or
// starting or ending with a hyphen. A UPN, a device GUID or a person's name is not one.
func cnDNSName(s string) bool {
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}
