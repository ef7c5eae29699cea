package csrapi_test

// Names a self-service caller could slip past the binding to its own identity: a second value hidden in a subject
// attribute, and a Unicode look-alike of its own UPN.

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// TestSubjectAttributeSecondValueRefused: the subject is copied into the certificate verbatim (RawSubject), while
// encoding/asn1 and crypto/x509 read only the first value of an AttributeTypeAndValue. A self-service caller who
// puts SEQUENCE { CN, "<own UPN>", "<victim UPN>" } in the subject must not get the victim's UPN signed unchecked.
func TestSubjectAttributeSecondValueRefused(t *testing.T) {
	e := newEnv(t)
	alice, mallory := newUser("alice"), newUser("mallory")
	tok := e.userToken(alice, selfService)

	atv, err := asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Value  string `asn1:"utf8"`
		Hidden string `asn1:"utf8"`
	}{oidCommonName, alice.upn, mallory.upn})
	if err != nil {
		t.Fatal(err)
	}
	set, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: atv})
	if err != nil {
		t.Fatal(err)
	}
	rawSubject, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: set})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: rawSubject},
		ecKey(t, "second-value"))
	if err != nil {
		t.Fatal(err)
	}
	r := e.post(tok, der)
	if r.StatusCode == http.StatusOK {
		cert, err := x509.ParseCertificate(r.body)
		if err != nil {
			t.Fatalf("issued certificate does not parse: %v", err)
		}
		if bytes.Contains(cert.RawSubject, []byte(mallory.upn)) {
			t.Fatalf("self-service certificate for %s carries %s in its subject (CN read as %q)", alice.upn,
				mallory.upn, cert.Subject.CommonName)
		}
		t.Fatalf("a subject attribute with a trailing value was accepted")
	}
	if r.StatusCode != http.StatusBadRequest && r.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %d, want 400 or 403; body %s", r.StatusCode, r.body)
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d after a refused request, want 0", n)
	}
}

// TestSelfServiceUPNComparedAsASCII: strings.EqualFold folds U+212A KELVIN SIGN to "k", so a caller whose UPN is
// kim@contoso.test must not get a certificate naming "\u212Aim@contoso.test" — a different name (a look-alike
// on-premises account, say) to relying parties that compare UPNs as ASCII, as Entra does. The policy refuses that one
// already as a look-alike (its compatibility form is ASCII); a look-alike no normalisation maps to ASCII (Cyrillic
// к) passes the policy and is refused by the binding, which compares names by ASCII case only.
func TestSelfServiceUPNComparedAsASCII(t *testing.T) {
	e := newEnv(t)
	kim := user{oid: entrafake.NewGUID(), upn: "kim@contoso.test"}
	tok := e.userToken(kim, selfService)
	for _, tt := range []struct {
		upn    string
		status int
		code   string
	}{
		{"\u212Aim@contoso.test", http.StatusBadRequest, "subject_alt_name_not_allowed"},
		{"\u043Aim@contoso.test", http.StatusForbidden, "not_bound_to_caller"},
	} {
		r := e.post(tok, csrDER(t, ecKey(t, "kelvin"), testca.CSROptions{UPNs: []string{tt.upn}}))
		if r.StatusCode == http.StatusOK {
			t.Fatalf("self-service caller %s got a certificate for the UPN %q", kim.upn, tt.upn)
		}
		wantProblem(t, r, tt.status, tt.code)
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d after refused requests, want 0", n)
	}
}
