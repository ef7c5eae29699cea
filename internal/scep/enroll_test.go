package scep_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

var (
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidSHA256    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSA       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
)

// checkIssued asserts what every certificate issued for the test profile must be: for the CSR's key and subject,
// signed by the CA, with exactly the profile's KU/EKU, and durable in an issued record.
func checkIssued(t testing.TB, e *env, cert *x509.Certificate, csr *x509.CertificateRequest) {
	t.Helper()
	if err := cert.CheckSignatureFrom(e.ca.Cert); err != nil {
		t.Errorf("certificate not signed by the CA: %v", err)
	}
	if !cert.PublicKey.(*rsa.PublicKey).Equal(csr.PublicKey) {
		t.Error("certificate is for another key than the CSR's")
	}
	if !bytes.Equal(cert.RawSubject, csr.RawSubject) {
		t.Errorf("subject %s, CSR asked for %s", cert.Subject, csr.Subject)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("key usage %b, want the profile's digitalSignature|keyEncipherment", cert.KeyUsage)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(cert.UnknownExtKeyUsage) > 0 {
		t.Errorf("EKU %v, want clientAuth only", cert.ExtKeyUsage)
	}
	if cert.IsCA || !cert.BasicConstraintsValid {
		t.Error("leaf is not CA:FALSE")
	}
	rec, err := e.mem.Get(context.Background(), hexSerial(cert))
	if err != nil {
		t.Fatalf("no record for the issued certificate: %v", err)
	}
	if rec.Status != store.StatusIssued || !bytes.Equal(rec.CertDER, cert.Raw) || rec.Source != store.SourceSCEP {
		t.Errorf("record: status %s, source %s, DER equal %v", rec.Status, rec.Source, bytes.Equal(rec.CertDER, cert.Raw))
	}
}

func TestPKCSReqPOST(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "device-0001")
	csr := csrFor(t, c, "device-0001")
	req := c.PKCSReq(t, csr)
	rep := e.pki(t, epStatic, req) // checks recipientNonce, fresh senderNonce, RA signature, transaction ID
	cert := wantSuccess(t, rep)
	checkIssued(t, e, cert, csr)
	if !rep.ContentEncryption.Equal(oidAES256CBC) {
		t.Errorf("CertRep content encryption %v, want AES-256-CBC", rep.ContentEncryption)
	}
	if !rep.KeyEncryption.Equal(oidRSA) {
		t.Errorf("CertRep key transport %v, want rsaEncryption (what every client can open)", rep.KeyEncryption)
	}
	if !rep.DigestAlgorithm.Equal(oidSHA256) {
		t.Errorf("CertRep digest %v, want SHA-256", rep.DigestAlgorithm)
	}
	if len(rep.Certificates) != 1 {
		t.Errorf("CertRep of a no-chain endpoint carries %d certificates", len(rep.Certificates))
	}
	// micromdm-style clients take the first certificate of the outer SignedData as the issued one.
	if len(rep.SignedCertificates) == 0 || !rep.SignedCertificates[0].Equal(cert) {
		t.Error("issued certificate is not first in the CertRep SignedData")
	}
	if n := len(e.records(t)); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

func TestPKCSReqChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "chain-device")
	csr := csrFor(t, c, "chain-device")
	rep := e.pki(t, epChain, c.PKCSReq(t, csr))
	cert := wantSuccess(t, rep)
	checkIssued(t, e, cert, csr)
	if len(rep.Certificates) != 2 || !rep.Certificates[1].Equal(e.ca.Cert) {
		t.Fatalf("CertRep carries %d certificates, want [issued, CA]", len(rep.Certificates))
	}
}

func TestPKCSReqGET(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	encodings := []struct {
		name string
		enc  func(b64 string) string
	}{
		{"unescaped base64", func(s string) string { return s }},
		{"URL-escaped base64", url.QueryEscape},
		// The Functions host re-encodes the query and a '+' arrives as a space.
		{"plus turned into space", func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "%2B", "%20") }},
		{"macOS: only '=' escaped", func(s string) string { return strings.ReplaceAll(s, "=", "%3D") }},
	}
	for i, enc := range encodings {
		c := e.client(t, 1+i, "get-device")
		csr := csrFor(t, c, "get-device")
		req := c.PKCSReq(t, csr)
		b64 := base64.StdEncoding.EncodeToString(req.Raw)
		if !strings.Contains(b64, "+") {
			t.Fatal("the message has no '+' to mangle")
		}
		u := e.url(epStatic) + "/pkiclient.exe?operation=PKIOperation&message=" + enc.enc(b64)
		resp, body := e.do(t, http.MethodGet, u, "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d %q", enc.name, resp.StatusCode, body)
		}
		cert := wantSuccess(t, e.certRep(t, resp, body, req))
		checkIssued(t, e, cert, csr)
	}
	if n := e.countStatus(t, store.StatusIssued); n != len(encodings) {
		t.Errorf("%d issued records, want %d", n, len(encodings))
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "replay-device")
	csr := csrFor(t, c, "replay-device")
	first := c.PKCSReq(t, csr)
	cert := wantSuccess(t, e.pki(t, epStatic, first))

	// The client retries: the byte-identical message, then a new message (new nonce) for the same transaction.
	again := wantSuccess(t, e.pki(t, epStatic, first))
	second := c.PKCSReq(t, csr)
	if second.TransactionID != first.TransactionID || bytes.Equal(second.SenderNonce, first.SenderNonce) {
		t.Fatal("test setup: the retry must reuse the transaction ID with a new nonce")
	}
	third := wantSuccess(t, e.pki(t, epStatic, second)) // recipientNonce = the retry's nonce, checked by ParseCertRep
	for _, got := range []*x509.Certificate{again, third} {
		if !got.Equal(cert) {
			t.Fatalf("replay returned serial %s, want the stored %s", hexSerial(got), hexSerial(cert))
		}
	}
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("replays made %d records, want 1", n)
	}

	// Same transaction ID, another key: refused, nothing recorded.
	other := e.client(t, 1, "replay-device")
	rep := e.pki(t, epStatic, other.Message(t, testca.Message{Type: testca.MsgPKCSReq, TransactionID: first.TransactionID,
		Content: csrFor(t, other, "replay-device").Raw}))
	wantFailure(t, rep, testca.FailBadRequest)
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("a key-mismatched replay made a record: %d records", n)
	}
	// The same transaction ID on another endpoint is another transaction.
	wantSuccess(t, e.pki(t, epChain, other.Message(t, testca.Message{Type: testca.MsgPKCSReq,
		TransactionID: first.TransactionID, Content: csrFor(t, other, "replay-device").Raw})))
}

func TestChallenge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "challenge")
	for name, pw := range map[string]string{
		"missing":     "",
		"wrong":       "correct-horse-battery-stapl",
		"longer":      staticSecret + "x",
		"wrong case":  strings.ToUpper(staticSecret),
		"one changed": "Correct-horse-battery-staple",
	} {
		csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "challenge"}, ChallengePassword: pw})
		rep := e.pki(t, epStatic, c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: csr.Raw,
			TransactionID: "challenge-" + name}))
		if rep.Status != testca.StatusFailure || rep.FailInfo != testca.FailBadRequest {
			t.Errorf("%s challenge: status %q failInfo %q, want FAILURE badRequest", name, rep.Status, rep.FailInfo)
		}
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("refused challenges left %d records", n)
	}
}

func TestPolicyRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "policy")
	subj := pkix.Name{CommonName: "policy"}
	cases := []struct {
		name     string
		key      *rsa.PrivateKey
		opts     testca.CSROptions
		failInfo string
	}{
		{"SHA-1 CSR", c.Key, testca.CSROptions{SHA1: true}, testca.FailBadAlg},
		{"CA:TRUE", c.Key, testca.CSROptions{RequestCA: true}, testca.FailBadRequest},
		{"1024-bit key", testca.WeakRSAKey(t), testca.CSROptions{}, testca.FailBadRequest},
		{"keyCertSign", c.Key, testca.CSROptions{KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, testca.FailBadRequest},
		{"EKU serverAuth outside profile", c.Key, testca.CSROptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, testca.FailBadRequest},
		{"EKU anyExtendedKeyUsage", c.Key, testca.CSROptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, testca.FailBadRequest},
		{"unknown critical extension", c.Key, testca.CSROptions{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}}, testca.FailBadRequest},
		{"IP SAN outside the profile", c.Key, testca.CSROptions{ExtraExtensions: []pkix.Extension{ipSAN(t)}}, testca.FailBadRequest},
	}
	for i, tc := range cases {
		tc.opts.Subject, tc.opts.ChallengePassword = subj, staticSecret
		csr := testca.CSR(t, tc.key, tc.opts)
		rep := e.pki(t, epStatic, c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: csr.Raw,
			TransactionID: "policy-" + string(rune('a'+i))}))
		if rep.Status != testca.StatusFailure || rep.FailInfo != tc.failInfo {
			t.Errorf("%s: status %q failInfo %q, want FAILURE %q", tc.name, rep.Status, rep.FailInfo, tc.failInfo)
		}
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("refused requests left %d records", n)
	}
}

// TestSubjectReadAsAnIPAddress: the test profile allows no IP address, so a CN that a reader which trims values
// (" 10.0.0.1") or stops at the first space, like inet_aton ("10.0.0.1 printer"), takes for one is refused with
// failInfo badRequest, as the address alone is.
func TestSubjectReadAsAnIPAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for i, cn := range []string{"10.0.0.1", " 10.0.0.1", "10.0.0.1\u3000", "10.0.0.1\u2028", "10.0.0.1 printer"} {
		c := e.client(t, i, "subject")
		csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: cn}, ChallengePassword: staticSecret})
		rep := e.pki(t, epStatic, c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: csr.Raw,
			TransactionID: "subject-" + string(rune('a'+i))}))
		if rep.Status != testca.StatusFailure || rep.FailInfo != testca.FailBadRequest {
			t.Errorf("CN %+q: status %q failInfo %q, want FAILURE %q", cn, rep.Status, rep.FailInfo, testca.FailBadRequest)
		}
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("refused requests left %d records", n)
	}
}

func ipSAN(t testing.TB) pkix.Extension {
	v, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: []byte{10, 0, 0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: v}
}

// TestProfileNarrowingAndNames: a CSR may narrow the profile's usages, and Intune's SID URI and a UPN pass.
func TestProfileNarrowingAndNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "names")
	sid := testca.IntuneSIDURI("S-1-5-21-1004336348-1177238915-682003330-512")
	csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "names"}, ChallengePassword: staticSecret,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{sid}, UPNs: []string{"adele@contoso.example"}, Emails: []string{"adele@contoso.example"}})
	cert := wantSuccess(t, e.pki(t, epStatic, c.PKCSReq(t, csr)))
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("narrowed key usage %b, want digitalSignature", cert.KeyUsage)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != sid.String() {
		t.Errorf("URIs %v, want the Intune SID URI", cert.URIs)
	}
	if len(cert.EmailAddresses) != 1 {
		t.Errorf("emails %v", cert.EmailAddresses)
	}
	var sawUPN bool
	upnOID, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3})
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			sawUPN = bytes.Contains(ext.Value, upnOID) && bytes.Contains(ext.Value, []byte("adele@contoso.example"))
		}
	}
	if !sawUPN {
		t.Error("the UPN otherName did not reach the certificate")
	}
}

// TestEnvelopeOracle: every failure between decrypting and parsing the CSR gets the same answer, so a PKCS#1
// v1.5 padding oracle learns nothing (reliability.md §2).
func TestEnvelopeOracle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	other := testca.New(t, testca.Options{})
	c := e.client(t, 0, "oracle")
	good := csrFor(t, c, "oracle")
	garbage := make([]byte, 600)
	_, _ = rand.Read(garbage)
	badSig := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "oracle"},
		ChallengePassword: staticSecret, BadSignature: true})

	msgs := map[string]*testca.Request{
		"encrypted to another RA": c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: good.Raw,
			Recipients: []*x509.Certificate{other.RACert}, TransactionID: "oracle-1"}),
		"garbage envelope": c.Message(t, testca.Message{Type: testca.MsgPKCSReq, RawContent: garbage,
			TransactionID: "oracle-2"}),
		"inner not a CSR": c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: []byte("certainly not a CSR"),
			TransactionID: "oracle-3"}),
		"bad CSR signature": c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: badSig.Raw,
			TransactionID: "oracle-4"}),
	}
	for name, req := range msgs {
		resp, body := testca.Post(t, e.url(epStatic), req.Raw)
		rep := e.certRep(t, resp, body, req)
		if rep.Status != testca.StatusFailure || rep.FailInfo != testca.FailBadMessageCheck {
			t.Errorf("%s: status %q failInfo %q, want FAILURE badMessageCheck", name, rep.Status, rep.FailInfo)
		}
		if len(body) > 4096 {
			t.Errorf("%s: a %d-byte failure answer", name, len(body))
		}
	}
	// A message whose outer signature does not verify gets no CertRep at all: signing one could cost a Key Vault
	// operation, and its transaction ID and nonce are not authenticated.
	forged := c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: good.Raw, ForgeWith: testca.RSAKey(t, 1),
		TransactionID: "oracle-5"})
	if resp, body := testca.Post(t, e.url(epStatic), forged.Raw); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(string(body), "signature") {
		t.Errorf("outer signature invalid: HTTP %d %q, want 400", resp.StatusCode, body)
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records after undecryptable requests", n)
	}
}

// TestWindowsSigner: the Windows SCEP client signs with a self-signed certificate whose AKI is critical and whose
// self-signature is SHA-1; Go's parser refuses it, the pkcs7 legacy fallback (scep.Init) must accept it.
func TestWindowsSigner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	key := testca.RSAKey(t, 0)
	win := testca.WindowsSigner(t, key, pkix.Name{CommonName: "DESKTOP-4U2K1Q"})
	if _, err := x509.ParseCertificate(win.Raw); err == nil {
		t.Fatal("test setup: crypto/x509 accepts the Windows signer, so this test proves nothing")
	}
	c := &testca.Client{Key: key, Cert: win, Recipients: []*x509.Certificate{e.ca.RACert}}
	csr := csrFor(t, c, "DESKTOP-4U2K1Q")
	cert := wantSuccess(t, e.pki(t, epStatic, c.PKCSReq(t, csr)))
	checkIssued(t, e, cert, csr)
}

func TestGetCRL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "crl")
	rep := e.pki(t, epStatic, c.GetCRL(t, e.ca.Cert, e.ca.RACert.SerialNumber))
	wantFailure(t, rep, testca.FailBadRequest)

	crl := crlSource{der: makeCRL(t, e.ca)}
	e2 := newEnv(t, envOptions{crl: crl})
	rep = e2.pki(t, epStatic, c.GetCRL(t, e.ca.Cert, e.ca.RACert.SerialNumber))
	if rep.Status != testca.StatusSuccess || len(rep.CRLs) != 1 {
		t.Fatalf("GetCRL with a CRL: status %q, %d CRLs", rep.Status, len(rep.CRLs))
	}
	got, err := asn1.Marshal(rep.CRLs[0])
	if err != nil || !bytes.Equal(got, crl.der) {
		t.Fatal("GetCRL returned another CRL")
	}
}

type crlSource struct{ der []byte }

func (s crlSource) CurrentDER(context.Context) ([]byte, error) { return s.der, nil }
