package policy_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/policy"
)

type checkCase struct {
	name    string
	spec    csrSpec
	profile string // profile spec; "" means specWide
	want    policy.Code
	verify  func(t *testing.T, r *policy.Request)
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.profile
			if spec == "" {
				spec = specWide
			}
			prof := mustProfile(t, "test", spec)
			req, err := checkDER(buildCSR(t, tc.spec), prof)
			wantCode(t, err, tc.want)
			if tc.want == "" && tc.verify != nil {
				tc.verify(t, req)
			}
		})
	}
}

func keyRef(k testKey) *testKey { return &k }
func algRef(a sigAlg) *sigAlg   { return &a }

func TestCheckKeys(t *testing.T) {
	loadKeys(t)
	samePublicKey := func(want any) func(*testing.T, *policy.Request) {
		return func(t *testing.T, r *policy.Request) {
			if !r.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
				t.Fatalf("request carries a different public key")
			}
		}
	}
	runCheckCases(t, []checkCase{
		{name: "ok/rsa-2048", spec: csrSpec{key: keyRef(signerKey(keys.rsa2048))}, verify: samePublicKey(keys.rsa2048.Public())},
		{name: "ok/rsa-3072", spec: csrSpec{key: keyRef(signerKey(keys.rsa3072))}, verify: samePublicKey(keys.rsa3072.Public())},
		{name: "ok/rsa-4096", spec: csrSpec{key: keyRef(signerKey(rsa4096(t)))}, verify: samePublicKey(rsa4096(t).Public())},
		// The textbook signer used by the refusal cases below must itself produce verifiable signatures.
		{name: "ok/rsa-2048-textbook-signature", spec: csrSpec{key: keyRef(rawKey(keys.rsa2048Raw))}},
		{name: "ok/p-256", spec: csrSpec{key: keyRef(signerKey(keys.p256))}, verify: samePublicKey(keys.p256.Public())},
		{name: "ok/p-384", spec: csrSpec{key: keyRef(signerKey(keys.p384))}},
		{name: "ok/rsa-3072-at-profile-minimum", spec: csrSpec{key: keyRef(signerKey(keys.rsa3072))},
			profile: specWide + ";minrsa=3072"},
		{name: "ok/p-384-only-profile", spec: csrSpec{key: keyRef(signerKey(keys.p384))}, profile: specWide + ";curves=P-384"},

		{name: "fail/rsa-512", spec: csrSpec{key: keyRef(rawKey(keys.rsa512))}, want: policy.CodeBadKey},
		{name: "fail/rsa-1024", spec: csrSpec{key: keyRef(signerKey(keys.rsa1024))}, want: policy.CodeBadKey},
		{name: "fail/rsa-2040", spec: csrSpec{key: keyRef(rawKey(keys.rsa2040))}, want: policy.CodeBadKey},
		{name: "fail/rsa-e3", spec: csrSpec{key: keyRef(rawKey(keys.rsaE3))}, want: policy.CodeBadKey},
		{name: "fail/rsa-small-factor-751", spec: csrSpec{key: keyRef(rawKey(keys.rsaSmallFactor))}, want: policy.CodeBadKey},
		{name: "fail/rsa-fermat-close-primes", spec: csrSpec{key: keyRef(rawKey(keys.rsaFermat))}, want: policy.CodeBadKey},
		{name: "fail/rsa-2048-below-profile-minimum", spec: csrSpec{key: keyRef(signerKey(keys.rsa2048))},
			profile: specWide + ";minrsa=3072", want: policy.CodeBadKey},
		{name: "fail/ed25519", spec: csrSpec{key: keyRef(signerKey(keys.ed))}, want: policy.CodeBadKey},
		{name: "fail/p-521", spec: csrSpec{key: keyRef(signerKey(keys.p521))}, want: policy.CodeBadKey},
		{name: "fail/p-256-not-in-profile", spec: csrSpec{key: keyRef(signerKey(keys.p256))},
			profile: specWide + ";curves=P-384", want: policy.CodeBadKey},
		{name: "fail/p-384-not-in-profile", spec: csrSpec{key: keyRef(signerKey(keys.p384))},
			profile: specWide + ";curves=P-256", want: policy.CodeBadKey},
		{name: "fail/ecdsa-curves-none", spec: csrSpec{key: keyRef(signerKey(keys.p256))},
			profile: specWide + ";curves=none", want: policy.CodeBadKey},
	})
}

// TestCheckKeyDirect covers key material that no CSR can carry past the parser, and confirms the crafted moduli
// are what their names say (so the refusals above are for the stated reason).
func TestCheckKeyDirect(t *testing.T) {
	loadKeys(t)
	prof := mustProfile(t, "device", specWide)
	if new(big.Int).Mod(keys.rsaSmallFactor.N, keys.smallPrim).Sign() != 0 || keys.rsaSmallFactor.N.BitLen() != 2048 {
		t.Fatal("small-factor modulus is not a 2048-bit multiple of 751")
	}
	diff := new(big.Int).Sub(keys.fermatQ, keys.fermatP)
	if diff.BitLen() > 520 || diff.Sign() <= 0 || keys.rsaFermat.N.BitLen() != 2048 {
		t.Fatalf("Fermat modulus primes differ by %d bits", diff.BitLen())
	}
	for _, tc := range []struct {
		name string
		pub  any
		want policy.Code
	}{
		{"ok/rsa-2048", keys.rsa2048.Public(), ""},
		{"fail/nil", nil, policy.CodeBadKey},
		{"fail/even-modulus", rsaPub(new(big.Int).SetBit(new(big.Int).Set(keys.rsa2048.N), 0, 0), 65537), policy.CodeBadKey},
		{"fail/perfect-square", rsaPub(new(big.Int).Mul(keys.fermatP, keys.fermatP), 65537), policy.CodeBadKey},
		{"fail/e-65539", rsaPub(keys.rsa2048.N, 65539), policy.CodeBadKey},
		{"fail/e-1", rsaPub(keys.rsa2048.N, 1), policy.CodeBadKey},
		{"fail/p-224", mustEC(t, elliptic.P224()).Public(), policy.CodeBadKey},
		{"fail/unsupported-type", "not a key", policy.CodeBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, policy.CheckKey(tc.pub, prof), tc.want)
		})
	}
}

func rsaPub(n *big.Int, e int) *rsa.PublicKey { return &rsa.PublicKey{N: n, E: e} }

func mustEC(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckSignature(t *testing.T) {
	loadKeys(t)
	flipLast := func(b []byte) []byte { b = append([]byte(nil), b...); b[len(b)-1] ^= 1; return b }
	other := signerKey(keys.rsa3072)
	runCheckCases(t, []checkCase{
		{name: "ok/sha256-rsa", spec: csrSpec{alg: algRef(algSHA256RSA)}},
		{name: "ok/ecdsa-sha384-on-p256", spec: csrSpec{key: keyRef(signerKey(keys.p256)), alg: algRef(algECDSASHA384)}},
		{name: "ok/ecdsa-sha512-on-p384", spec: csrSpec{key: keyRef(signerKey(keys.p384)), alg: algRef(algECDSASHA512)}},

		// Go's CheckSignature accepts SHA-1 on CSRs, so only the explicit allow-list refuses these.
		{name: "fail/sha1-rsa", spec: csrSpec{alg: algRef(algSHA1RSA)}, want: policy.CodeBadSignatureAlg},
		{name: "fail/ecdsa-sha1", spec: csrSpec{key: keyRef(signerKey(keys.p256)), alg: algRef(algECDSASHA1)},
			want: policy.CodeBadSignatureAlg},
		{name: "fail/md5-rsa", spec: csrSpec{alg: algRef(algMD5RSA)}, want: policy.CodeBadSignatureAlg},
		{name: "fail/unknown-algorithm", spec: csrSpec{alg: algRef(algUnknown)}, want: policy.CodeBadSignatureAlg},
		// SHA-1 with a weak key is reported as the key: that check runs first.
		{name: "fail/sha1-rsa-1024", spec: csrSpec{key: keyRef(signerKey(keys.rsa1024)), alg: algRef(algSHA1RSA)},
			want: policy.CodeBadKey},

		{name: "fail/tampered-signature", spec: csrSpec{tamperSig: flipLast}, want: policy.CodeBadCSRSignature},
		{name: "fail/tampered-ecdsa-signature", spec: csrSpec{key: keyRef(signerKey(keys.p256)),
			tamperSig: func(b []byte) []byte {
				// Keep the DER structure valid: change a byte inside the first INTEGER.
				b = append([]byte(nil), b...)
				b[6] ^= 0x40
				return b
			}}, want: policy.CodeBadCSRSignature},
		{name: "fail/tampered-subject", spec: csrSpec{tamperTBS: func(b []byte) []byte {
			i := bytes.Index(b, []byte("device-1"))
			b[i] = 'D'
			return b
		}}, want: policy.CodeBadCSRSignature},
		{name: "fail/signed-by-another-key", spec: csrSpec{tamperSig: func([]byte) []byte {
			return sign(t, other, algSHA256RSA, []byte("something else"))
		}}, want: policy.CodeBadCSRSignature},
		{name: "fail/rsa-algorithm-on-ecdsa-key", spec: csrSpec{key: keyRef(signerKey(keys.p256)), alg: algRef(algSHA256RSA)},
			want: policy.CodeBadCSRSignature},
	})
}

func TestParseCSR(t *testing.T) {
	good := buildCSR(t, csrSpec{})
	for _, tc := range []struct {
		name string
		der  []byte
		want policy.Code
	}{
		{"ok/good", good, ""},
		{"fail/empty", nil, policy.CodeMalformedCSR},
		{"fail/garbage", []byte("-----BEGIN CERTIFICATE REQUEST-----"), policy.CodeMalformedCSR},
		{"fail/truncated", good[:len(good)-10], policy.CodeMalformedCSR},
		{"fail/trailing-data", append(append([]byte(nil), good...), 0x00), policy.CodeMalformedCSR},
		{"fail/oversize", make([]byte, 16<<10+1), policy.CodeMalformedCSR},
		{"fail/bad-length", []byte{0x30, 0x82}, policy.CodeMalformedCSR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := policy.ParseCSR(tc.der)
			wantCode(t, err, tc.want)
			if tc.want == "" && csr.Subject.CommonName != "device-1" {
				t.Fatalf("parsed CN %q", csr.Subject.CommonName)
			}
		})
	}
}

// TestCheckGoBuiltCSR feeds a CSR made by crypto/x509 itself, the way most clients build them.
func TestCheckGoBuiltCSR(t *testing.T) {
	loadKeys(t)
	u, _ := url.Parse("tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-512")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "laptop-7", Organization: []string{"Contoso"}},
		DNSNames:       []string{"laptop-7.corp.contoso.com"},
		EmailAddresses: []string{"alice@contoso.com"},
		URIs:           []*url.URL{u},
	}, keys.p256)
	if err != nil {
		t.Fatal(err)
	}
	req, err := checkDER(der, mustProfile(t, "device", specWide))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"dns:laptop-7.corp.contoso.com", "email:alice@contoso.com", "uri:" + u.String()}
	if got := req.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	if req.Subject.CommonName != "laptop-7" || !bytes.Equal(req.RawSubject, req.CSR.RawSubject) {
		t.Fatalf("subject not carried: %+v", req.Subject)
	}
	if req.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(req.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("usage from profile: ku=%b eku=%v", req.KeyUsage, req.ExtKeyUsage)
	}
	if req.Validity != (policy.RequestedValidity{}) || req.ChallengePassword != "" {
		t.Fatalf("unexpected attributes: %+v %q", req.Validity, req.ChallengePassword)
	}
}

func TestCheckExtensions(t *testing.T) {
	loadKeys(t)
	ec := keyRef(signerKey(keys.p256))
	kuIs := func(want x509.KeyUsage) func(*testing.T, *policy.Request) {
		return func(t *testing.T, r *policy.Request) {
			if r.KeyUsage != want {
				t.Fatalf("KeyUsage = %b, want %b", r.KeyUsage, want)
			}
		}
	}
	ekuIs := func(want ...x509.ExtKeyUsage) func(*testing.T, *policy.Request) {
		return func(t *testing.T, r *policy.Request) {
			if !slices.Equal(r.ExtKeyUsage, want) {
				t.Fatalf("ExtKeyUsage = %v, want %v", r.ExtKeyUsage, want)
			}
		}
	}
	type bc struct {
		IsCA    bool `asn1:"optional"`
		PathLen int  `asn1:"optional,default:-1"`
	}
	const specTwoEKU = "ku=digitalSignature;eku=clientAuth,emailProtection"
	runCheckCases(t, []checkCase{
		{name: "ok/no-extensions", verify: kuIs(x509.KeyUsageDigitalSignature)},
		{name: "ok/basic-constraints-ca-false", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtBasicConstraints, true, []byte{0x30, 0x00})}}},
		{name: "ok/basic-constraints-explicit-false", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtBasicConstraints, true, []byte{0x30, 0x03, 0x01, 0x01, 0x00})}}},
		{name: "fail/basic-constraints-ca-true", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtBasicConstraints, true, bc{IsCA: true, PathLen: -1})}}, want: policy.CodeForbiddenExtension},
		{name: "fail/basic-constraints-ca-true-pathlen", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtBasicConstraints, true, bc{IsCA: true, PathLen: 0})}}, want: policy.CodeForbiddenExtension},
		{name: "fail/basic-constraints-pathlen-only", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtBasicConstraints, false, []byte{0x30, 0x03, 0x02, 0x01, 0x02})}}, want: policy.CodeForbiddenExtension},
		{name: "fail/basic-constraints-malformed", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtBasicConstraints, true, []byte{0x05, 0x00})}}, want: policy.CodeMalformedCSR},

		// crypto/x509 reads the first value of each extensionRequest and merges the attributes; another parser
		// (Intune's) may read the last value or the first attribute only, and validate names we would not issue.
		{name: "fail/extension-request-two-values", spec: csrSpec{attrs: [][]byte{attribute(t, oidExtensionRequest,
			mustMarshal(t, []pkix.Extension{sanExt(t, gnUPN(t, "admin@contoso.com"))}),
			mustMarshal(t, []pkix.Extension{sanExt(t, gnUPN(t, "user@contoso.com"))}))}}, want: policy.CodeMalformedCSR},
		{name: "fail/extension-request-twice", spec: csrSpec{exts: []pkix.Extension{kuExt(t, x509.KeyUsageDigitalSignature)},
			attrs: [][]byte{attribute(t, oidExtensionRequest, mustMarshal(t, []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))}))}},
			want: policy.CodeMalformedCSR},

		// Windows reads Microsoft's szOID_CERT_EXTENSIONS attribute like extensionRequest; crypto/x509 ignores it. A
		// validator reading names from it could approve a UPN while the certificate got the extensionRequest's names,
		// so it is accepted only as an exact copy of the extensionRequest value.
		{name: "ok/ms-cert-extensions-identical", spec: csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))},
			attrs: [][]byte{attribute(t, oidMSCertExtensions, mustMarshal(t, []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))}))}},
			verify: func(t *testing.T, r *policy.Request) {
				if !slices.Equal(r.DNSNames, []string{"a.contoso.com"}) || len(r.UPNs) != 0 {
					t.Fatalf("names %v", r.Names())
				}
			}},
		{name: "fail/ms-cert-extensions-other-names", spec: csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))},
			attrs: [][]byte{attribute(t, oidMSCertExtensions, mustMarshal(t, []pkix.Extension{sanExt(t, gnUPN(t, "admin@contoso.com"))}))}},
			want: policy.CodeMalformedCSR},
		{name: "fail/ms-cert-extensions-more-extensions", spec: csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))},
			attrs: [][]byte{attribute(t, oidMSCertExtensions, mustMarshal(t, []pkix.Extension{sanExt(t, gnDNS("a.contoso.com")),
				ekuExt(t, oidEKUServerAuth)}))}},
			want: policy.CodeMalformedCSR},
		// Alone it carries nothing this CA copies (legacy Windows clients sent template information there).
		{name: "ok/ms-cert-extensions-without-extension-request", spec: csrSpec{
			attrs: [][]byte{attribute(t, oidMSCertExtensions, mustMarshal(t, []pkix.Extension{sanExt(t, gnUPN(t, "admin@contoso.com"))}))}}},
		{name: "fail/ms-cert-extensions-twice", spec: csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))},
			attrs: [][]byte{
				attribute(t, oidMSCertExtensions, mustMarshal(t, []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))})),
				attribute(t, oidMSCertExtensions, mustMarshal(t, []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))}))}},
			want: policy.CodeMalformedCSR},
		{name: "fail/ms-cert-extensions-two-values", spec: csrSpec{exts: []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))},
			attrs: [][]byte{attribute(t, oidMSCertExtensions,
				mustMarshal(t, []pkix.Extension{sanExt(t, gnDNS("a.contoso.com"))}),
				mustMarshal(t, []pkix.Extension{sanExt(t, gnUPN(t, "admin@contoso.com"))}))}},
			want: policy.CodeMalformedCSR},

		{name: "fail/ku-keyCertSign", spec: csrSpec{exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign)}}, want: policy.CodeForbiddenExtension},
		{name: "fail/ku-cRLSign", spec: csrSpec{exts: []pkix.Extension{kuExt(t, x509.KeyUsageCRLSign)}},
			want: policy.CodeForbiddenExtension},
		{name: "fail/ku-keyCertSign-even-under-wide-profile", profile: specIntune, spec: csrSpec{exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageCertSign)}}, want: policy.CodeForbiddenExtension},
		{name: "fail/ku-keyEncipherment-outside-device-profile", spec: csrSpec{exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)}}, want: policy.CodeKeyUsage},
		{name: "fail/ku-decipherOnly", profile: specIntune, spec: csrSpec{exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageKeyEncipherment|x509.KeyUsageDecipherOnly)}}, want: policy.CodeKeyUsage},
		{name: "fail/ku-malformed", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtKeyUsage, true, []byte{0x04, 0x01, 0x80})}}, want: policy.CodeMalformedCSR},
		// Anything after the value is a request the policy did not read: refused, in every extension it reads.
		{name: "fail/ku-trailing-data", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtKeyUsage, true, append(kuExt(t, x509.KeyUsageDigitalSignature).Value, 0x05, 0x00))}},
			want: policy.CodeMalformedCSR},
		{name: "fail/eku-trailing-data", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtExtKeyUsage, false, append(ekuExt(t, oidEKUClientAuth).Value, 0x05, 0x00))}},
			want: policy.CodeMalformedCSR},
		{name: "fail/basic-constraints-trailing-data", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtBasicConstraints, true, []byte{0x30, 0x00, 0x05, 0x00})}}, want: policy.CodeMalformedCSR},
		{name: "ok/ku-narrowed-to-digitalSignature", profile: specIntune, spec: csrSpec{exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageDigitalSignature)}}, verify: kuIs(x509.KeyUsageDigitalSignature)},
		{name: "ok/ku-narrowed-to-keyEncipherment", profile: specIntune, spec: csrSpec{exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageKeyEncipherment)}}, verify: kuIs(x509.KeyUsageKeyEncipherment)},
		{name: "ok/ku-equal-to-profile", profile: specIntune, spec: csrSpec{exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)}},
			verify: kuIs(x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment)},
		{name: "ok/rsa-keeps-keyEncipherment", profile: specIntune,
			verify: kuIs(x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment)},
		{name: "ok/ec-drops-keyEncipherment", profile: specIntune, spec: csrSpec{key: ec},
			verify: kuIs(x509.KeyUsageDigitalSignature)},
		{name: "ok/ec-asking-both-gets-digitalSignature", profile: specIntune, spec: csrSpec{key: ec, exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)}}, verify: kuIs(x509.KeyUsageDigitalSignature)},
		{name: "fail/ec-asking-only-keyEncipherment", profile: specIntune, spec: csrSpec{key: ec, exts: []pkix.Extension{
			kuExt(t, x509.KeyUsageKeyEncipherment)}}, want: policy.CodeKeyUsage},

		{name: "ok/eku-clientAuth", spec: csrSpec{exts: []pkix.Extension{ekuExt(t, oidEKUClientAuth)}},
			verify: ekuIs(x509.ExtKeyUsageClientAuth)},
		{name: "ok/eku-duplicates-collapse", spec: csrSpec{exts: []pkix.Extension{ekuExt(t, oidEKUClientAuth, oidEKUClientAuth)}},
			verify: ekuIs(x509.ExtKeyUsageClientAuth)},
		{name: "ok/eku-profile-default-without-request", profile: specTwoEKU,
			verify: ekuIs(x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection)},
		{name: "ok/eku-narrowed", profile: specTwoEKU, spec: csrSpec{exts: []pkix.Extension{ekuExt(t, oidEKUEmail)}},
			verify: ekuIs(x509.ExtKeyUsageEmailProtection)},
		{name: "ok/eku-empty-request-keeps-profile", profile: specTwoEKU, spec: csrSpec{exts: []pkix.Extension{ekuExt(t)}},
			verify: ekuIs(x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection)},
		{name: "fail/eku-serverAuth", spec: csrSpec{exts: []pkix.Extension{ekuExt(t, oidEKUServerAuth)}},
			want: policy.CodeExtKeyUsage},
		{name: "fail/eku-clientAuth-plus-serverAuth", spec: csrSpec{exts: []pkix.Extension{
			ekuExt(t, oidEKUClientAuth, oidEKUServerAuth)}}, want: policy.CodeExtKeyUsage},
		{name: "fail/eku-codeSigning", spec: csrSpec{exts: []pkix.Extension{ekuExt(t, oidEKUCodeSigning)}},
			want: policy.CodeExtKeyUsage},
		{name: "fail/eku-any", spec: csrSpec{exts: []pkix.Extension{ekuExt(t, oidEKUAny)}}, want: policy.CodeExtKeyUsage},
		{name: "fail/eku-unknown-oid", spec: csrSpec{exts: []pkix.Extension{ekuExt(t, asn1.ObjectIdentifier{1, 2, 3, 4})}},
			want: policy.CodeExtKeyUsage},
		{name: "fail/eku-malformed", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtExtKeyUsage, false, []byte{0x02, 0x01, 0x01})}}, want: policy.CodeMalformedCSR},

		{name: "fail/name-constraints", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtNameConstraints, true, seq(der(t, asn1RawCtx(0, true, seq(der(t, gnDNS("contoso.com")))))))}},
			want: policy.CodeForbiddenExtension},
		{name: "fail/name-constraints-non-critical", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtNameConstraints, false, []byte{0x30, 0x00})}}, want: policy.CodeForbiddenExtension},
		{name: "fail/unknown-critical", spec: csrSpec{exts: []pkix.Extension{
			ext(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, true, []byte{0x05, 0x00})}}, want: policy.CodeForbiddenExtension},
		{name: "fail/must-staple-critical", spec: csrSpec{exts: []pkix.Extension{
			ext(t, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}, true, []byte{0x30, 0x03, 0x02, 0x01, 0x05})}},
			want: policy.CodeForbiddenExtension},
		{name: "ok/unknown-non-critical-ignored", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidMSTemplateName, false, der(t, bmp("User"))),
			ext(t, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}, false, []byte{0x30, 0x03, 0x02, 0x01, 0x05})}},
			verify: func(t *testing.T, r *policy.Request) {
				if r.SANExtension != nil || r.KeyUsage != x509.KeyUsageDigitalSignature || len(r.ExtKeyUsage) != 1 {
					t.Fatalf("unknown extension changed the request: %+v", r)
				}
			}},
		{name: "ok/subject-key-identifier-ignored", spec: csrSpec{exts: []pkix.Extension{
			ext(t, oidExtSKI, false, []byte{0x04, 0x02, 0x01, 0x02})}}},
	})
}

func asn1RawCtx(tag int, compound bool, content []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: compound, Bytes: content}
}

const (
	intuneSIDURI    = "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-1104"
	intuneDeviceURI = "IntuneDeviceId://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
)

func TestCheckSANs(t *testing.T) {
	loadKeys(t)
	many := func(n int) []asn1.RawValue {
		var out []asn1.RawValue
		for i := range n {
			out = append(out, gnDNS(fmt.Sprintf("host-%d.contoso.com", i)))
		}
		return out
	}
	withSAN := func(names ...asn1.RawValue) csrSpec {
		return csrSpec{exts: []pkix.Extension{sanExt(t, names...)}}
	}
	names := func(want ...string) func(*testing.T, *policy.Request) {
		return func(t *testing.T, r *policy.Request) {
			if got := r.Names(); !slices.Equal(got, want) {
				t.Fatalf("Names() = %q, want %q", got, want)
			}
		}
	}
	runCheckCases(t, []checkCase{
		{name: "ok/dns", spec: withSAN(gnDNS("laptop-7.corp.contoso.com")), verify: names("dns:laptop-7.corp.contoso.com")},
		{name: "ok/dns-single-label", spec: withSAN(gnDNS("laptop-7")), verify: names("dns:laptop-7")},
		{name: "ok/email", spec: withSAN(gnEmail("alice@contoso.com")), verify: names("email:alice@contoso.com")},
		{name: "ok/upn", spec: withSAN(gnUPN(t, "alice@contoso.onmicrosoft.com")), verify: func(t *testing.T, r *policy.Request) {
			if !slices.Equal(r.UPNs, []string{"alice@contoso.onmicrosoft.com"}) {
				t.Fatalf("UPNs = %q", r.UPNs)
			}
		}},
		{name: "ok/uri-intune-sid", spec: withSAN(gnURI(intuneSIDURI)), verify: names("uri:" + intuneSIDURI)},
		// url.Parse lowercases the scheme; the certificate keeps the requested bytes (see TestSANExtensionRoundTrip).
		{name: "ok/uri-intune-device-id", spec: withSAN(gnURI(intuneDeviceURI)),
			verify: names("uri:intunedeviceid://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f")},
		{name: "ok/ip-v4-when-allowed", profile: specAllSAN, spec: withSAN(gnIP(net.IPv4(10, 1, 2, 3).To4())),
			verify: names("ip:10.1.2.3")},
		{name: "ok/ip-v6-when-allowed", profile: specAllSAN, spec: withSAN(gnIP(net.ParseIP("2001:db8::1"))),
			verify: names("ip:2001:db8::1")},
		{name: "ok/32-names", spec: withSAN(many(32)...), verify: func(t *testing.T, r *policy.Request) {
			if len(r.DNSNames) != 32 {
				t.Fatalf("%d names", len(r.DNSNames))
			}
		}},

		{name: "fail/dns-not-allowed", profile: "email=*;upn=*", spec: withSAN(gnDNS("laptop.contoso.com")), want: policy.CodeSAN},
		{name: "fail/email-not-allowed", profile: "dns=*", spec: withSAN(gnEmail("alice@contoso.com")), want: policy.CodeSAN},
		{name: "fail/upn-not-allowed", profile: "dns=*;email=*;uri=*", spec: withSAN(gnUPN(t, "alice@contoso.com")), want: policy.CodeSAN},
		{name: "fail/uri-not-allowed", profile: "dns=*;email=*;upn=*", spec: withSAN(gnURI("https://contoso.com/")), want: policy.CodeSAN},
		{name: "fail/ip-not-allowed-by-default", spec: withSAN(gnIP([]byte{10, 0, 0, 1})), want: policy.CodeSAN},
		{name: "fail/one-refused-name-refuses-all", spec: withSAN(gnDNS("ok.contoso.com"), gnIP([]byte{10, 0, 0, 1})),
			want: policy.CodeSAN},
		{name: "fail/directory-name", spec: withSAN(gnDirName(name(t, pkix.Name{CommonName: "admin"}))), want: policy.CodeSAN},
		{name: "fail/registered-id", spec: withSAN(gnRegisteredID(t, asn1.ObjectIdentifier{1, 2, 3, 4})), want: policy.CodeSAN},
		{name: "fail/other-name-not-upn", spec: withSAN(gnOther(t, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 9},
			utf8Str("alice@contoso.com"))), want: policy.CodeSAN},
		{name: "fail/upn-ia5string", spec: withSAN(gnOther(t, oidUPN,
			asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte("alice@contoso.com")})), want: policy.CodeMalformedCSR},
		{name: "fail/upn-missing-explicit-tag", spec: withSAN(asn1.RawValue{FullBytes: mustMarshalParams(t, struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}{oidUPN, utf8Str("alice@contoso.com")}, "tag:0")}), want: policy.CodeMalformedCSR},
		{name: "fail/upn-invalid-utf8", spec: withSAN(gnOther(t, oidUPN,
			asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("al\xffice@contoso.com")})), want: policy.CodeMalformedCSR},
		{name: "fail/upn-without-domain", spec: withSAN(gnUPN(t, "alice")), want: policy.CodeSAN},
		// A second value after the first (encoding/asn1 skips trailing SEQUENCE elements): the entry is copied
		// verbatim, so the unchecked UPN would be signed.
		{name: "fail/upn-second-value", spec: withSAN(otherNameWithTrailer(t, utf8Str("alice@contoso.com"),
			asn1RawCtx(0, true, der(t, utf8Str("administrator@fabrikam.com"))))), want: policy.CodeMalformedCSR},
		{name: "fail/upn-two-strings", spec: withSAN(asn1RawCtx(0, true, append(mustMarshal(t, oidUPN),
			der(t, asn1RawCtx(0, true, append(der(t, utf8Str("alice@contoso.com")), der(t, utf8Str("administrator@fabrikam.com"))...)))...))),
			want: policy.CodeMalformedCSR},
		{name: "fail/upn-control-char", spec: withSAN(gnUPN(t, "al\x07ice@contoso.com")), want: policy.CodeSAN},
		{name: "fail/33-names", spec: withSAN(many(33)...), want: policy.CodeSAN},
		{name: "fail/empty-san", spec: withSAN(), want: policy.CodeSAN},
		{name: "fail/constructed-dns-name", spec: withSAN(asn1RawCtx(2, true, der(t, asn1.RawValue{Tag: asn1.TagIA5String,
			Bytes: []byte("x.contoso.com")}))), want: policy.CodeMalformedCSR},
		{name: "fail/universal-class-entry", spec: withSAN(asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte("x.com")}),
			want: policy.CodeMalformedCSR},
		{name: "fail/ip-5-bytes", profile: specAllSAN, spec: withSAN(gnIP([]byte{1, 2, 3, 4, 5})), want: policy.CodeMalformedCSR},
		{name: "fail/uri-no-scheme", spec: withSAN(gnURI("just/a/path")), want: policy.CodeSAN},
		{name: "fail/uri-too-long", spec: withSAN(gnURI("https://contoso.com/" + strings.Repeat("a", 500))), want: policy.CodeSAN},
	})
	for _, bad := range []string{"", "-lead.contoso.com", "trail-.contoso.com", "two..dots.com", ".lead.com", "trail.com.",
		"*.contoso.com", "under_score.com", "sp ace.com", strings.Repeat("a", 64) + ".com",
		strings.Repeat(strings.Repeat("a", 60)+".", 5) + "com", "ex\u00e4mple.com"} {
		t.Run("fail/dns-malformed/"+clipName(bad), func(t *testing.T) {
			_, err := checkDER(buildCSR(t, withSAN(gnDNS(bad))), mustProfile(t, "d", specWide))
			if r, ok := policy.AsRejection(err); !ok || (r.Code != policy.CodeSAN && r.Code != policy.CodeMalformedCSR) {
				t.Fatalf("got %v, want a SAN or malformed rejection", err)
			}
		})
	}
	for _, bad := range []string{"no-at-sign", "@contoso.com", "alice@", "a@b@contoso.com", "a b@contoso.com",
		"<alice>@contoso.com", "alice@-contoso.com", "alice@contoso..com", strings.Repeat("a", 250) + "@x.com"} {
		t.Run("fail/email-malformed/"+clipName(bad), func(t *testing.T) {
			_, err := checkDER(buildCSR(t, withSAN(gnEmail(bad))), mustProfile(t, "d", specWide))
			wantCode(t, err, policy.CodeSAN)
		})
	}
}

func mustMarshalParams(t *testing.T, v any, params string) []byte {
	t.Helper()
	b, err := asn1.MarshalWithParams(v, params)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clipName(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// TestSANExtensionRoundTrip checks that the re-encoded extension says exactly what was requested and accepted,
// by putting it in a real certificate and reading it back.
func TestSANExtensionRoundTrip(t *testing.T) {
	loadKeys(t)
	names := []asn1.RawValue{
		gnDNS("laptop-7.corp.contoso.com"),
		gnEmail("alice@contoso.com"),
		gnUPN(t, "alice@contoso.onmicrosoft.com"),
		gnURI(intuneSIDURI),
		gnURI(intuneDeviceURI),
		gnIP([]byte{192, 0, 2, 7}),
		gnIP(net.ParseIP("2001:db8::7")),
	}
	requested := sanExt(t, names...)
	req, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{requested}}), mustProfile(t, "all", specAllSAN))
	if err != nil {
		t.Fatal(err)
	}
	if req.SANExtension == nil || !req.SANExtension.Id.Equal(oidExtSAN) {
		t.Fatalf("SANExtension = %+v", req.SANExtension)
	}
	if !bytes.Equal(req.SANExtension.Value, requested.Value) {
		t.Fatalf("re-encoded SAN differs from the request:\n got %x\nwant %x", req.SANExtension.Value, requested.Value)
	}
	wantNames := []string{"dns:laptop-7.corp.contoso.com", "email:alice@contoso.com", "upn:alice@contoso.onmicrosoft.com",
		"uri:" + intuneSIDURI, "uri:intunedeviceid://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f", "ip:192.0.2.7", "ip:2001:db8::7"}
	if got := req.Names(); !slices.Equal(got, wantNames) {
		t.Fatalf("Names() = %q", got)
	}

	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{*req.SANExtension}}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, keys.p256.Public(), keys.p256)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cert.DNSNames, []string{"laptop-7.corp.contoso.com"}) ||
		!slices.Equal(cert.EmailAddresses, []string{"alice@contoso.com"}) ||
		len(cert.URIs) != 2 || cert.URIs[0].String() != intuneSIDURI || !strings.EqualFold(cert.URIs[1].String(), intuneDeviceURI) ||
		len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.IPv4(192, 0, 2, 7)) || !cert.IPAddresses[1].Equal(net.ParseIP("2001:db8::7")) {
		t.Fatalf("certificate names: dns=%q email=%q uri=%v ip=%v", cert.DNSNames, cert.EmailAddresses, cert.URIs, cert.IPAddresses)
	}
	// Go drops otherName; read the UPN back by hand, and check the URI kept its requested case on the wire.
	var raw pkix.Extension
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidExtSAN) {
			raw = e
		}
	}
	var gns []asn1.RawValue
	if _, err := asn1.Unmarshal(raw.Value, &gns); err != nil || len(gns) != len(names) {
		t.Fatalf("SAN in certificate: %v (%d names)", err, len(gns))
	}
	var on struct {
		Type  asn1.ObjectIdentifier
		Value string `asn1:"explicit,tag:0,utf8"`
	}
	if _, err := asn1.UnmarshalWithParams(gns[2].FullBytes, &on, "tag:0"); err != nil || !on.Type.Equal(oidUPN) ||
		on.Value != "alice@contoso.onmicrosoft.com" {
		t.Fatalf("UPN in certificate: %v %v %q", err, on.Type, on.Value)
	}
	if string(gns[4].Bytes) != intuneDeviceURI {
		t.Fatalf("IntuneDeviceId URI on the wire = %q", gns[4].Bytes)
	}
}

func TestCheckSubject(t *testing.T) {
	loadKeys(t)
	withName := func(n pkix.Name) csrSpec { return csrSpec{subject: name(t, n)} }
	rdns := func(n int) csrSpec {
		var s pkix.RDNSequence
		for i := range n {
			s = append(s, pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: fmt.Sprintf("ou%d", i)}})
		}
		return csrSpec{subject: mustMarshal(t, s)}
	}
	rawATV := func(oid asn1.ObjectIdentifier, v asn1.RawValue) csrSpec {
		return csrSpec{subject: seq(mustMarshal(t, []asn1.RawValue{{FullBytes: seq(mustMarshal(t, oid), der(t, v))}}))}
	}
	// rawATV builds SEQUENCE { SEQUENCE { ... } }, but an RDN is a SET; fix the inner tag.
	setRDN := func(s csrSpec) csrSpec { s.subject[2] = 0x31; return s }
	extra := func(oid asn1.ObjectIdentifier, v string) csrSpec {
		return withName(pkix.Name{CommonName: "x", ExtraNames: []pkix.AttributeTypeAndValue{{Type: oid, Value: v}}})
	}
	sanDNS := []pkix.Extension{sanExt(t, gnDNS("laptop.contoso.com"))}
	tlv := func(tag int, content ...[]byte) []byte {
		return der(t, asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, IsCompound: true, Bytes: bytes.Join(content, nil)})
	}
	set := func(atvs ...[]byte) []byte { return tlv(asn1.TagSet, atvs...) }
	atv := func(oid asn1.ObjectIdentifier, values ...asn1.RawValue) []byte {
		parts := [][]byte{mustMarshal(t, oid)}
		for _, v := range values {
			parts = append(parts, der(t, v))
		}
		return tlv(asn1.TagSequence, parts...)
	}
	name := func(rdns ...[]byte) csrSpec { return csrSpec{subject: tlv(asn1.TagSequence, rdns...)} }
	oidCN, oidOU := asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.ObjectIdentifier{2, 5, 4, 11}
	runCheckCases(t, []checkCase{
		{name: "ok/typical", spec: withName(pkix.Name{CommonName: "laptop-7", Organization: []string{"Contoso"},
			OrganizationalUnit: []string{"Devices"}, Country: []string{"NL"}, Locality: []string{"Amsterdam"},
			Province: []string{"Noord-Holland"}, StreetAddress: []string{"Main 1"}, PostalCode: []string{"1011AB"},
			SerialNumber: "ABC123"}), verify: func(t *testing.T, r *policy.Request) {
			if r.Subject.CommonName != "laptop-7" || r.Subject.Country[0] != "NL" {
				t.Fatalf("subject %+v", r.Subject)
			}
		}},
		{name: "ok/dc-uid-email-title-names", spec: withName(pkix.Name{CommonName: "alice", ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: "contoso"},
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "alice"},
			{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "alice@contoso.com"},
			{Type: asn1.ObjectIdentifier{2, 5, 4, 12}, Value: "Engineer"},
			{Type: asn1.ObjectIdentifier{2, 5, 4, 4}, Value: "Smith"},
			{Type: asn1.ObjectIdentifier{2, 5, 4, 42}, Value: "Alice"},
		}})},
		{name: "ok/cn-64", spec: withName(pkix.Name{CommonName: strings.Repeat("a", 64)})},
		{name: "ok/cn-64-multibyte-runes", spec: withName(pkix.Name{CommonName: strings.Repeat("é", 64)})},
		{name: "ok/bmpstring-cn", spec: setRDN(rawATV(asn1.ObjectIdentifier{2, 5, 4, 3}, bmp("laptöp"))),
			verify: func(t *testing.T, r *policy.Request) {
				if r.Subject.CommonName != "laptöp" {
					t.Fatalf("CN %q", r.Subject.CommonName)
				}
			}},
		{name: "ok/16-rdns", spec: rdns(16)},
		{name: "ok/empty-subject-with-san", spec: csrSpec{subject: emptyName, exts: sanDNS},
			verify: func(t *testing.T, r *policy.Request) {
				if r.SANExtension == nil || !bytes.Equal(r.RawSubject, emptyName) {
					t.Fatalf("empty-subject request: %+v", r)
				}
			}},

		{name: "fail/cn-65", spec: withName(pkix.Name{CommonName: strings.Repeat("a", 65)}), want: policy.CodeSubject},
		{name: "fail/cn-empty", spec: withName(pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: ""}}}), want: policy.CodeSubject},
		{name: "fail/country-3-letters", spec: withName(pkix.Name{CommonName: "x", Country: []string{"NLD"}}), want: policy.CodeSubject},
		{name: "fail/cn-nul", spec: withName(pkix.Name{CommonName: "lap\x00top"}), want: policy.CodeSubject},
		{name: "fail/cn-newline", spec: withName(pkix.Name{CommonName: "laptop\nCN=admin"}), want: policy.CodeSubject},
		{name: "fail/cn-del", spec: withName(pkix.Name{CommonName: "laptop\x7f"}), want: policy.CodeSubject},
		// A GUID common name names a device to the relying parties that map certificates to Entra or Intune
		// devices: only a profile that opts in to device identities issues one.
		{name: "fail/cn-device-id", spec: withName(pkix.Name{CommonName: "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"}),
			profile: specNoIdentity, want: policy.CodeSubject},
		{name: "fail/cn-device-id-braces-upper-case", spec: withName(pkix.Name{CommonName: " {5F2C1D0E-8B7A-4C3E-9F1A-2B3C4D5E6F70}"}),
			profile: specNoIdentity, want: policy.CodeSubject},
		{name: "fail/cn-device-id-fullwidth-digit", spec: withName(pkix.Name{CommonName: "\uFF15f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"}),
			profile: specNoIdentity, want: policy.CodeSubject},
		{name: "ok/cn-device-id-opted-in", spec: withName(pkix.Name{CommonName: "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"}),
			profile: specNoIdentity + ";identity_uris=intunedeviceid"},
		// devicecn alone: a static fleet named by hardware UUIDs, without IntuneDeviceId:// URIs.
		{name: "ok/cn-device-id-devicecn", spec: withName(pkix.Name{CommonName: "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"}),
			profile: specNoIdentity + ";identity_uris=devicecn"},
		{name: "fail/devicecn-is-no-device-uri", spec: func() csrSpec {
			s := withName(pkix.Name{CommonName: "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"})
			s.exts = []pkix.Extension{sanExt(t, gnURI("IntuneDeviceId://5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"))}
			return s
		}(),
			profile: specNoIdentity + ";identity_uris=devicecn", want: policy.CodeSAN},
		{name: "ok/cn-guid-with-suffix-is-a-label", spec: withName(pkix.Name{CommonName: "5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70-printer"}),
			profile: specNoIdentity},
		{name: "ok/ou-guid", spec: withName(pkix.Name{CommonName: "x", OrganizationalUnit: []string{"5f2c1d0e-8b7a-4c3e-9f1a-2b3c4d5e6f70"}}),
			profile: specNoIdentity},
		// Explicit directional formatting reorders what a viewer shows: this CN displays as "device-0001".
		{name: "fail/cn-right-to-left-override", spec: withName(pkix.Name{CommonName: "\u202E1000-ecived"}), want: policy.CodeSubject},
		{name: "fail/o-left-to-right-embedding", spec: withName(pkix.Name{CommonName: "x", Organization: []string{"Contoso\u202A"}}),
			want: policy.CodeSubject},
		{name: "fail/ou-pop-directional-isolate", spec: withName(pkix.Name{CommonName: "x", OrganizationalUnit: []string{"\u2069Sales"}}),
			want: policy.CodeSubject},
		{name: "ok/cn-right-to-left-mark", spec: withName(pkix.Name{CommonName: "\u05D3\u05E0\u05D4\u200F-1"})},
		{name: "fail/ou-c1-control", spec: withName(pkix.Name{CommonName: "x", OrganizationalUnit: []string{"a\u0085b"}}),
			want: policy.CodeSubject},
		// A TeletexString is refused whatever it holds (TestSubjectStringTypes); this one would also read, as Go
		// reads it (Latin-1), with the C1 control NEL.
		{name: "fail/t61-c1-control", spec: setRDN(rawATV(asn1.ObjectIdentifier{2, 5, 4, 3},
			asn1.RawValue{Tag: asn1.TagT61String, Bytes: []byte{'a', 0x85, 'b'}})), want: policy.CodeSubject},
		{name: "fail/unknown-attribute", spec: extra(asn1.ObjectIdentifier{1, 2, 3, 4}, "x"), want: policy.CodeSubject},
		{name: "fail/organization-identifier", spec: extra(asn1.ObjectIdentifier{2, 5, 4, 97}, "VATNL-123"), want: policy.CodeSubject},
		{name: "fail/17-rdns", spec: rdns(17), want: policy.CodeSubject},
		{name: "fail/empty-subject-without-san", spec: csrSpec{subject: emptyName}, want: policy.CodeSubject},
		{name: "fail/non-string-value", spec: setRDN(rawATV(asn1.ObjectIdentifier{2, 5, 4, 3},
			asn1.RawValue{Tag: asn1.TagInteger, Bytes: []byte{1}})), want: policy.CodeSubject},

		// The subject is copied into the certificate byte for byte, so its shape is held to RFC 5280 exactly:
		// encoding/asn1 and crypto/x509 read the first value of an attribute and skip whatever follows it.
		{name: "ok/multi-valued-rdn", spec: name(set(atv(oidCN, utf8Str("device-1")), atv(oidOU, utf8Str("Devices"))))},
		{name: "fail/attribute-second-value", spec: name(set(atv(oidCN, utf8Str("device-1"), utf8Str("admin.contoso.com")))),
			want: policy.CodeSubject},
		{name: "fail/empty-rdn", spec: name(set()), want: policy.CodeSubject},
		// crypto/x509 itself refuses these before the policy sees them.
		{name: "fail/attribute-without-value", spec: name(set(atv(oidCN))), want: policy.CodeMalformedCSR},
		{name: "fail/rdn-is-a-sequence", spec: name(tlv(asn1.TagSequence, atv(oidCN, utf8Str("device-1")))),
			want: policy.CodeMalformedCSR},
		{name: "fail/trailing-byte-in-rdn", spec: name(append(set(atv(oidCN, utf8Str("device-1"))), 0x00)),
			want: policy.CodeMalformedCSR},
	})
}

// TestSubjectStringTypes: the subject is copied into the certificate byte for byte, so it may only use string
// types every reader decodes the same way. Go reads a TeletexString as Latin-1 and Windows CryptoAPI as UTF-8 first,
// so the UTF-8 bytes of a fullwidth name, which the policy refuses as a UTF8String, were read by the policy as
// harmless Latin-1 mojibake and reached Windows as that fullwidth name; Go drops a trailing NUL from a BMPString
// that the certificate keeps.
func TestSubjectStringTypes(t *testing.T) {
	loadKeys(t)
	const prof = "dns=*.corp.example.com;upn=*@contoso.com;email=*@contoso.com"
	var (
		oidCN     = asn1.ObjectIdentifier{2, 5, 4, 3}
		oidO      = asn1.ObjectIdentifier{2, 5, 4, 10}
		oidOU     = asn1.ObjectIdentifier{2, 5, 4, 11}
		oidL      = asn1.ObjectIdentifier{2, 5, 4, 7}
		oidSerial = asn1.ObjectIdentifier{2, 5, 4, 5}
		oidUID    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
		oidDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
		oidEmail  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	)
	str := func(tag int, b []byte) asn1.RawValue { return asn1.RawValue{Tag: tag, Bytes: b} }
	t61 := func(s string) asn1.RawValue { return str(asn1.TagT61String, []byte(s)) } // the UTF-8 bytes of s
	ia5 := func(s string) asn1.RawValue { return str(asn1.TagIA5String, []byte(s)) }
	// subject is a Name of one RDN per value, each value encoded as given.
	subject := func(atvs ...any) csrSpec {
		var rdns [][]byte
		for i := 0; i < len(atvs); i += 2 {
			atv := seq(mustMarshal(t, atvs[i].(asn1.ObjectIdentifier)), der(t, atvs[i+1].(asn1.RawValue)))
			rdns = append(rdns, der(t, asn1.RawValue{Tag: asn1.TagSet, IsCompound: true, Bytes: atv}))
		}
		return csrSpec{subject: seq(rdns...)}
	}
	const (
		fullwidthAdmin = "\uFF21\uFF24\uFF2D\uFF29\uFF2E\uFF20\uFF23\uFF2F\uFF2E\uFF34\uFF2F\uFF33\uFF2F\uFF61\uFF23\uFF2F\uFF2D" // ＡＤＭＩＮ＠ＣＯＮＴＯＳＯ｡ＣＯＭ
		fullwidthEvil  = "\uFF25\uFF36\uFF29\uFF2C\uFF61\uFF23\uFF2F\uFF2D"                                                       // ＥＶＩＬ｡ＣＯＭ
	)
	type tc struct {
		name   string
		spec   csrSpec
		want   policy.Code
		detail string // a word the refusal must name
	}
	cases := []tc{
		// The same fullwidth names as UTF8Strings: refused as look-alikes, as before.
		{"utf8-fullwidth-upn-cn", subject(oidCN, utf8Str(fullwidthAdmin)), policy.CodeSubject, "look-alike"},
		{"utf8-fullwidth-dns-cn", subject(oidCN, utf8Str(fullwidthEvil)), policy.CodeSubject, "look-alike"},
		// As TeletexStrings with 8-bit bytes, in every attribute (free text too): Go and Windows read them apart.
		{"t61-fullwidth-upn-cn", subject(oidCN, t61(fullwidthAdmin)), policy.CodeSubject, "TeletexString"},
		{"t61-fullwidth-dns-cn", subject(oidCN, t61(fullwidthEvil)), policy.CodeSubject, "TeletexString"},
		{"t61-latin-locality", subject(oidCN, utf8Str("device-1"), oidL, t61("Zoë")), policy.CodeSubject, "TeletexString"},
		// ASCII TeletexStrings read the same everywhere (OpenSSL's nombstr mask writes them).
		{"ok/t61-ascii", subject(oidCN, t61("router_17"), oidL, t61("Amsterdam")), "", ""},
		// Go refuses surrogates in a BMPString itself: the CSR does not parse.
		{"bmp-surrogate-pair", subject(oidCN, bmp("laptop\U0001F600")), policy.CodeMalformedCSR, ""},
		{"bmp-trailing-nul", subject(oidCN, bmp("laptop\x00")), policy.CodeSubject, "NUL"},
		{"bmp-nul-inside", subject(oidCN, bmp("lap\x00top")), policy.CodeSubject, "NUL"},
		{"bmp-nul-only", subject(oidCN, bmp("\x00")), policy.CodeSubject, "NUL"},
		{"bmp-fullwidth-dns-cn", subject(oidCN, bmp(fullwidthEvil)), policy.CodeSubject, "look-alike"},
		{"visible", subject(oidCN, str(26, []byte("device-1"))), policy.CodeSubject, "VisibleString"},
		{"videotex", subject(oidCN, str(21, []byte("device-1"))), policy.CodeSubject, "VideotexString"},
		{"graphic", subject(oidCN, str(25, []byte("device-1"))), policy.CodeSubject, "GraphicString"},
		{"general", subject(oidCN, str(27, []byte("device-1"))), policy.CodeSubject, "GeneralString"},
		{"universal", subject(oidCN, str(28, []byte("\x00\x00\x00d"))), policy.CodeSubject, "UniversalString"},
		{"octet-string", subject(oidCN, str(asn1.TagOctetString, []byte("device-1"))), policy.CodeSubject, "not a string"},

		{"ok/printable", subject(oidCN, printable("device-1"), oidO, printable("Contoso Ltd.")), "", ""},
		{"ok/utf8", subject(oidCN, utf8Str("Zoë Müller"), oidO, utf8Str("東京オフィス")), "", ""},
		{"ok/bmp", subject(oidCN, bmp("Иван"), oidOU, bmp("東京オフィス")), "", ""},
		{"ok/ia5-email-dc", subject(oidCN, utf8Str("alice"), oidEmail, ia5("alice@contoso.com"),
			oidDC, ia5("com"), oidDC, ia5("example"), oidDC, ia5("corp")), "", ""},
		{"ok/numeric-serial", subject(oidCN, utf8Str("device-1"), oidSerial, str(asn1.TagNumericString, []byte("4711 0815"))), "", ""},
	}
	// Every attribute the policy reads as a name, and a free-text one.
	for _, oid := range []asn1.ObjectIdentifier{oidCN, oidO, oidOU, oidUID, oidSerial, oidDC, oidL} {
		for _, v := range []struct{ label, value string }{{"admin", fullwidthAdmin}, {"evil", fullwidthEvil}} {
			cases = append(cases, tc{fmt.Sprintf("t61-%s-%s", oid, v.label), subject(oidCN, utf8Str("device-1"), oid, t61(v.value)),
				policy.CodeSubject, "TeletexString"})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := checkDER(buildCSR(t, c.spec), mustProfile(t, "p", prof))
			wantCode(t, err, c.want)
			if c.detail != "" && !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("refusal %q does not say %q", err, c.detail)
			}
		})
	}
}

func TestCheckValidityAttribute(t *testing.T) {
	loadKeys(t)
	withAttr := func(a ...[]byte) csrSpec { return csrSpec{attrs: a} }
	validityIs := func(unit string, n int) func(*testing.T, *policy.Request) {
		return func(t *testing.T, r *policy.Request) {
			if r.Validity != (policy.RequestedValidity{Unit: unit, Units: n}) {
				t.Fatalf("Validity = %+v, want %s×%d", r.Validity, unit, n)
			}
		}
	}
	cases := []checkCase{
		{name: "ok/absent", verify: validityIs("", 0)},
		{name: "ok/utf8-pairs", spec: withAttr(attribute(t, oidValidityAttr,
			seq(der(t, utf8Str("ValidityPeriod")), der(t, utf8Str("Days"))),
			seq(der(t, utf8Str("ValidityPeriodUnits")), der(t, utf8Str("7"))))), verify: validityIs("Days", 7)},
		{name: "ok/other-pairs-only", spec: withAttr(attribute(t, oidValidityAttr, pair(t, "CertificateTemplate", "User"))),
			verify: validityIs("", 0)},
		{name: "ok/mixed-with-other-pairs", spec: withAttr(attribute(t, oidValidityAttr, pair(t, "CertificateTemplate", "User"),
			pair(t, "ValidityPeriod", "Hours"), pair(t, "ValidityPeriodUnits", "12"))), verify: validityIs("Hours", 12)},
		{name: "ok/units-upper-bound", spec: withAttr(validityPerValue(t, "Minutes", "1000000")), verify: validityIs("Minutes", 1000000)},
		{name: "ok/with-challenge", spec: withAttr(validitySequence(t, "Days", "30"),
			attribute(t, oidChallengePassword, der(t, printable("s3cret")))), verify: func(t *testing.T, r *policy.Request) {
			validityIs("Days", 30)(t, r)
			if r.ChallengePassword != "s3cret" {
				t.Fatalf("challenge %q", r.ChallengePassword)
			}
		}},
	}
	for i, unit := range []string{"Minutes", "Hours", "Days", "Weeks", "Months", "Years"} {
		n := fmt.Sprint(i + 2)
		cases = append(cases,
			checkCase{name: "ok/per-value/" + unit, spec: withAttr(validityPerValue(t, unit, n)), verify: validityIs(unit, i+2)},
			checkCase{name: "ok/sequence/" + unit, spec: withAttr(validitySequence(t, unit, n)), verify: validityIs(unit, i+2)})
	}
	for _, n := range []string{"0", "-1", "abc", "1.5", "05", "+5", " 5", "", "1000001", "99999999999999999999"} {
		cases = append(cases, checkCase{name: "fail/units/" + clipName(n), spec: withAttr(validityPerValue(t, "Days", n)),
			want: policy.CodeValidity})
	}
	oddBMP := asn1.RawValue{Tag: asn1.TagBMPString, Bytes: []byte{0, 'D', 0}}
	cases = append(cases, []checkCase{
		{name: "fail/two-attributes", spec: withAttr(validityPerValue(t, "Days", "3"), validityPerValue(t, "Years", "3")),
			want: policy.CodeMalformedCSR},
		{name: "fail/unit-unknown", spec: withAttr(validityPerValue(t, "Fortnights", "2")), want: policy.CodeValidity},
		{name: "fail/unit-only", spec: withAttr(attribute(t, oidValidityAttr, pair(t, "ValidityPeriod", "Days"))),
			want: policy.CodeValidity},
		{name: "fail/units-only", spec: withAttr(attribute(t, oidValidityAttr, pair(t, "ValidityPeriodUnits", "3"))),
			want: policy.CodeValidity},
		{name: "fail/pair-three-elements", spec: withAttr(attribute(t, oidValidityAttr,
			seq(der(t, bmp("ValidityPeriod")), der(t, bmp("Days")), der(t, bmp("x"))))), want: policy.CodeValidity},
		{name: "fail/pair-one-element", spec: withAttr(attribute(t, oidValidityAttr, seq(der(t, bmp("ValidityPeriod"))))),
			want: policy.CodeValidity},
		{name: "fail/pair-integer-value", spec: withAttr(attribute(t, oidValidityAttr,
			seq(der(t, bmp("ValidityPeriodUnits")), mustMarshal(t, 3)))), want: policy.CodeValidity},
		{name: "fail/odd-length-bmp", spec: withAttr(attribute(t, oidValidityAttr,
			seq(der(t, bmp("ValidityPeriod")), der(t, oddBMP)))), want: policy.CodeValidity},
		{name: "fail/value-not-sequence", spec: withAttr(attribute(t, oidValidityAttr, der(t, bmp("Days")))),
			want: policy.CodeValidity},
		{name: "fail/empty-sequence", spec: withAttr(attribute(t, oidValidityAttr, seq())), want: policy.CodeValidity},
		{name: "fail/nested-too-deep", spec: withAttr(attribute(t, oidValidityAttr,
			seq(seq(pair(t, "ValidityPeriod", "Days"), pair(t, "ValidityPeriodUnits", "3"))))), want: policy.CodeValidity},
	}...)
	runCheckCases(t, cases)
}

func TestRequestedValidityNotAfter(t *testing.T) {
	from := time.Date(2026, time.January, 31, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    policy.RequestedValidity
		from time.Time
		want time.Time
	}{
		{policy.RequestedValidity{Unit: "Minutes", Units: 90}, from, from.Add(90 * time.Minute)},
		{policy.RequestedValidity{Unit: "Hours", Units: 25}, from, time.Date(2026, 2, 1, 13, 0, 0, 0, time.UTC)},
		{policy.RequestedValidity{Unit: "Days", Units: 30}, from, time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)},
		{policy.RequestedValidity{Unit: "Weeks", Units: 2}, from, time.Date(2026, 2, 14, 12, 0, 0, 0, time.UTC)},
		// Calendar months normalise like time.AddDate: 31 January + 1 month is 3 March in 2026.
		{policy.RequestedValidity{Unit: "Months", Units: 1}, from, time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)},
		{policy.RequestedValidity{Unit: "Months", Units: 12}, from, time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC)},
		{policy.RequestedValidity{Unit: "Years", Units: 1}, from, time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC)},
		{policy.RequestedValidity{Unit: "Years", Units: 1}, time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC),
			time.Date(2029, 3, 1, 0, 0, 0, 0, time.UTC)},
		{policy.RequestedValidity{}, from, time.Time{}},
		{policy.RequestedValidity{Unit: "Fortnights", Units: 1}, from, time.Time{}},
	} {
		t.Run(fmt.Sprintf("ok/%s-%d", tc.v.Unit, tc.v.Units), func(t *testing.T) {
			if got := tc.v.NotAfter(tc.from); !got.Equal(tc.want) {
				t.Fatalf("NotAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckChallengePassword(t *testing.T) {
	loadKeys(t)
	withChallenge := func(values ...[]byte) csrSpec {
		return csrSpec{attrs: [][]byte{attribute(t, oidChallengePassword, values...)}}
	}
	pw := func(want string) func(*testing.T, *policy.Request) {
		return func(t *testing.T, r *policy.Request) {
			if r.ChallengePassword != want {
				t.Fatalf("ChallengePassword = %q, want %q", r.ChallengePassword, want)
			}
		}
	}
	runCheckCases(t, []checkCase{
		{name: "ok/absent", verify: pw("")},
		{name: "ok/printable", spec: withChallenge(der(t, printable("A1B2C3D4"))), verify: pw("A1B2C3D4")},
		{name: "ok/utf8", spec: withChallenge(der(t, utf8Str("pässwörd-✓"))), verify: pw("pässwörd-✓")},
		{name: "ok/bmp", spec: withChallenge(der(t, bmp("pässwörd-✓"))), verify: pw("pässwörd-✓")},
		{name: "ok/ia5", spec: withChallenge(der(t, asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte("x_y")})), verify: pw("x_y")},
		{name: "ok/teletex", spec: withChallenge(der(t, asn1.RawValue{Tag: asn1.TagT61String, Bytes: []byte("abc")})), verify: pw("abc")},
		{name: "ok/long-intune-style", spec: withChallenge(der(t, utf8Str(strings.Repeat("eyJhbGciOi", 200)))),
			verify: pw(strings.Repeat("eyJhbGciOi", 200))},
		{name: "fail/two-values", spec: withChallenge(der(t, printable("a")), der(t, printable("b"))), want: policy.CodeChallenge},
		{name: "fail/two-attributes", spec: csrSpec{attrs: [][]byte{attribute(t, oidChallengePassword, der(t, printable("a"))),
			attribute(t, oidChallengePassword, der(t, printable("b")))}}, want: policy.CodeMalformedCSR},
		{name: "fail/no-values", spec: withChallenge(), want: policy.CodeChallenge},
		{name: "fail/integer", spec: withChallenge(mustMarshal(t, 1234)), want: policy.CodeChallenge},
		{name: "fail/octet-string", spec: withChallenge(mustMarshal(t, []byte("secret"))), want: policy.CodeChallenge},
		{name: "fail/odd-bmp", spec: withChallenge(der(t, asn1.RawValue{Tag: asn1.TagBMPString, Bytes: []byte{0, 'a', 0}})),
			want: policy.CodeChallenge},
	})
}

// TestCheckChallengeNotInError makes sure a refusal never echoes the challenge password.
func TestCheckChallengeNotInError(t *testing.T) {
	loadKeys(t)
	secret := "TOPSECRET-challenge-4711"
	spec := csrSpec{
		exts:  []pkix.Extension{ekuExt(t, oidEKUCodeSigning)},
		attrs: [][]byte{attribute(t, oidChallengePassword, der(t, printable(secret)), der(t, printable(secret)))},
	}
	for _, prof := range []string{specWide, specAllSAN} {
		_, err := checkDER(buildCSR(t, spec), mustProfile(t, "p", prof))
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("error %v", err)
		}
	}
	spec.exts = nil
	_, err := checkDER(buildCSR(t, spec), mustProfile(t, "p", specWide))
	wantCode(t, err, policy.CodeChallenge)
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("challenge password leaked into %q", err)
	}
}

func TestRejection(t *testing.T) {
	r := &policy.Rejection{Code: policy.CodeSAN, Detail: "no"}
	wrapped := fmt.Errorf("enrolling: %w", r)
	got, ok := policy.AsRejection(wrapped)
	if !ok || got != r {
		t.Fatalf("AsRejection(wrapped) = %v, %v", got, ok)
	}
	if r.Error() != "subject_alt_name_not_allowed: no" {
		t.Fatalf("Error() = %q", r.Error())
	}
	if _, ok := policy.AsRejection(errors.New("plain")); ok {
		t.Fatal("plain error reported as a rejection")
	}
	if _, ok := policy.AsRejection(nil); ok {
		t.Fatal("nil reported as a rejection")
	}
}

// TestRejectionDetailIsClipped keeps attacker-chosen names short and free of control characters in messages.
func TestRejectionDetailIsClipped(t *testing.T) {
	loadKeys(t)
	long := strings.Repeat("x", 300) + "@-bad"
	_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnEmail(long))}}), mustProfile(t, "d", specWide))
	wantCode(t, err, policy.CodeSAN)
	if len(err.Error()) > 200 || strings.Contains(err.Error(), long) {
		t.Fatalf("detail not clipped: %d bytes", len(err.Error()))
	}
	_, err = checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, gnUPN(t, "a\nb"))}}), mustProfile(t, "d", specWide))
	wantCode(t, err, policy.CodeSAN)
	if strings.ContainsAny(err.Error(), "\n") {
		t.Fatalf("control character in %q", err)
	}
}

// BenchmarkCheck measures the per-request policy cost for a typical Intune-shaped P-256 CSR.
func BenchmarkCheck(b *testing.B) {
	loadKeys(b)
	der := buildCSR(b, csrSpec{key: keyRef(signerKey(keys.p256)), exts: []pkix.Extension{
		sanExt(b, gnUPN(b, "alice@contoso.com"), gnURI(intuneSIDURI), gnURI(intuneDeviceURI)),
		kuExt(b, x509.KeyUsageDigitalSignature)}, attrs: [][]byte{validityPerValue(b, "Days", "30")}})
	prof := mustProfile(b, "intune", specIntune)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := checkDER(der, prof); err != nil {
			b.Fatal(err)
		}
	}
}

// otherNameWithTrailer is an otherName UPN entry with an extra element after its [0] value.
func otherNameWithTrailer(t *testing.T, upn, trailer asn1.RawValue) asn1.RawValue {
	t.Helper()
	body := append(mustMarshal(t, oidUPN), der(t, asn1RawCtx(0, true, der(t, upn)))...)
	return asn1RawCtx(0, true, append(body, der(t, trailer)...))
}

// A real OpenSSL request made with `string_mask = nombstr` (old openssl.cnf files, embedded SCEP clients): its
// subject is TeletexStrings because of "_", "&" and "(", all ASCII, which every reader decodes alike.
func TestOpenSSLNombstrSubjectAccepted(t *testing.T) {
	der, err := os.ReadFile("testdata/openssl-nombstr.csr")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := policy.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	req, err := policy.Check(csr, mustProfile(t, "device", "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*"))
	if err != nil {
		t.Fatalf("CN=router_17, O=Contoso & Co (Lab_1) as TeletexStrings refused: %v", err)
	}
	if req.Subject.CommonName != "router_17" {
		t.Errorf("CN read as %q", req.Subject.CommonName)
	}
}
