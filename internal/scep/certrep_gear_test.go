package scep_test

import (
	"crypto/x509"
	"encoding/asn1"
	"testing"

	mozpkcs7 "go.mozilla.org/pkcs7"

	"github.com/azscep/azscep/internal/cms"
	"github.com/azscep/azscep/internal/testca"
)

// TestCertRepAnswersInTheRequestAlgorithm: a CertRep is encrypted in the algorithm the client chose for its request
// (RFC 8894 §3.5.2: the "AES" GetCACaps offers is AES-128-CBC), so that gear which sent AES-128 or triple DES — and
// may implement nothing stronger — can open it; single DES is answered in triple DES, never in DES. Each answer
// opens with the device's key (testca.ParseCertRep decrypts it with smallstep/pkcs7 and reads it again with
// smallstep/scep).
func TestCertRepAnswersInTheRequestAlgorithm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for i, tc := range []struct {
		name     string
		envelope func(t *testing.T, csr []byte, ra *x509.Certificate) []byte
		want     asn1.ObjectIdentifier
	}{
		{"aes-128-cbc", cmsEnvelope(cms.AES128CBC), cms.AES128CBC.OID()},
		{"aes-256-cbc", cmsEnvelope(cms.AES256CBC), cms.AES256CBC.OID()},
		{"des-ede3-cbc", cmsEnvelope(cms.DESEDE3CBC), cms.DESEDE3CBC.OID()},
		{"des-cbc", func(t *testing.T, csr []byte, ra *x509.Certificate) []byte {
			// go.mozilla.org/pkcs7's process-wide algorithm is its default, DES-CBC: nothing in this process sets it.
			env, err := mozpkcs7.Encrypt(csr, []*x509.Certificate{ra})
			if err != nil {
				t.Fatal(err)
			}
			return env
		}, cms.DESEDE3CBC.OID()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cn := "gear-" + tc.name
			c := e.client(t, 40+i, cn)
			csr := csrFor(t, c, cn)
			req := c.Message(t, testca.Message{Type: testca.MsgPKCSReq, RawContent: tc.envelope(t, csr.Raw, e.ca.Recipient())})
			rep := e.pki(t, epStatic, req)
			cert := wantSuccess(t, rep)
			if !rep.ContentEncryption.Equal(tc.want) {
				t.Fatalf("CertRep content encryption %v for a %s request, want %v", rep.ContentEncryption, tc.name, tc.want)
			}
			if !rep.KeyEncryption.Equal(oidRSA) {
				t.Errorf("CertRep key transport %v, want rsaEncryption", rep.KeyEncryption)
			}
			if cert.Subject.CommonName != cn {
				t.Errorf("issued %q, want %q", cert.Subject.CommonName, cn)
			}
		})
	}
}

func cmsEnvelope(alg cms.ContentAlgorithm) func(t *testing.T, csr []byte, ra *x509.Certificate) []byte {
	return func(t *testing.T, csr []byte, ra *x509.Certificate) []byte {
		env, err := cms.Envelope(csr, ra, alg)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
}
