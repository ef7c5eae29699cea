package scep_test

import (
	"crypto/x509/pkix"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/testca"
)

// TestRenewalReqSignedWithAnExpiredCertificate: clients put their clock in the signingTime attribute, which for a
// certificate that expired lies past its notAfter. The signature still verifies: the request gets the renewal's
// refusal as a CertRep (or, with the static challenge, an enrollment), not HTTP 400 "signature does not verify",
// which told the device and the operator something false. A signature that does not verify stays a 400.
func TestRenewalReqSignedWithAnExpiredCertificate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enroll(t, e, 0, "renew-me")
	now := time.Now()
	expired := e.ca.Issue(t, d.client.Key.Public(), testca.LeafOptions{Subject: d.cert.Subject,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	csr := func(key int, pw string) []byte {
		return testca.CSR(t, testca.RSAKey(t, key), testca.CSROptions{Subject: pkix.Name{CommonName: "renew-me"},
			ChallengePassword: pw}).Raw
	}
	renewal := func(key int, pw string) *testca.Request {
		return d.client.Message(t, testca.Message{Type: testca.MsgRenewalReq, Content: csr(key, pw),
			TransactionID: testca.TransactionID(t, testca.RSAKey(t, key).Public()), SignerCert: expired, SignerKey: d.client.Key})
	}

	wantFailure(t, e.pki(t, epStatic, renewal(7, "")), testca.FailBadRequest)

	forged := d.client.Message(t, testca.Message{Type: testca.MsgRenewalReq, Content: csr(8, staticSecret),
		SignerCert: expired, SignerKey: d.client.Key, ForgeWith: testca.RSAKey(t, 8)})
	if resp, body := testca.Post(t, e.url(epStatic), forged.Raw); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged signature with an expired certificate: HTTP %d %q, want 400", resp.StatusCode, body)
	}

	wantSuccess(t, e.pki(t, epStatic, renewal(9, staticSecret)))
	if n := len(e.records(t)); n != 2 {
		t.Fatalf("%d records, want the original and the enrollment", n)
	}
}
