package policy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestECKeyUnderKeyTransportOnlyProfile: an ECDSA key cannot do key transport, so Check drops keyEncipherment and
// dataEncipherment for it (RFC 5480 §3). Under a profile that allows nothing else (an encryption-only S/MIME
// profile, ku=keyEncipherment) nothing is left, and a certificate with no key usage is not restricted to nothing but
// carries no keyUsage extension at all, which relying parties read as every usage: signing with a key the profile
// allows only to decrypt. The request is refused instead, whether or not the CSR asks for a key usage itself.
func TestECKeyUnderKeyTransportOnlyProfile(t *testing.T) {
	for _, spec := range []string{
		"ku=keyEncipherment;eku=emailProtection;email=*",
		"ku=keyEncipherment,dataEncipherment;eku=emailProtection;email=*",
	} {
		p, err := policy.ParseProfile("smime-encrypt", spec)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "alice"}, EmailAddresses: []string{"alice@contoso.example"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		req, err := policy.Check(csr, p)
		if err == nil {
			t.Fatalf("%s: an ECDSA CSR was accepted with key usage %b", spec, req.KeyUsage)
		}
		if r, ok := policy.AsRejection(err); !ok || r.Code != policy.CodeKeyUsage {
			t.Fatalf("%s: %v, want a %s rejection", spec, err, policy.CodeKeyUsage)
		}
	}
}
