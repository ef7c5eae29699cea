package testca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"testing"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/cryptoutil"
)

// SCEP wire values (RFC 8894 §3.2.1), spelled out here rather than taken from the server under test.
const (
	MsgCertRep    = "3"
	MsgRenewalReq = "17"
	MsgUpdateReq  = "18" // from pre-RFC drafts; servers refuse it
	MsgPKCSReq    = "19"
	MsgCertPoll   = "20" // GetCertInitial
	MsgGetCert    = "21"
	MsgGetCRL     = "22"

	StatusSuccess = "0"
	StatusFailure = "2"
	StatusPending = "3"

	FailBadAlg          = "0"
	FailBadMessageCheck = "1"
	FailBadRequest      = "2"
	FailBadTime         = "3"
	FailBadCertID       = "4"
)

// SCEP attribute OIDs (id-VeriSign 113733.1.9.x).
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// Client is a SCEP requester: a key, the certificate it signs messages with, and the certificates it encrypts
// envelopes to (the RA, or the CA in CA-decrypt mode).
type Client struct {
	Key        *rsa.PrivateKey
	Cert       *x509.Certificate
	Recipients []*x509.Certificate
}

// NewClient makes a client that signs with a self-signed certificate for key, as a device does for PKCSReq.
func NewClient(t testing.TB, key *rsa.PrivateKey, subject pkix.Name, recipients ...*x509.Certificate) *Client {
	t.Helper()
	return &Client{Key: key, Cert: SelfSigned(t, key, subject), Recipients: recipients}
}

// Request is a built PKIMessage and what the client must remember to read the answer.
type Request struct {
	Raw           []byte
	MessageType   string
	TransactionID string
	SenderNonce   []byte
	// SignerCert and SignerKey signed the request; the CertRep is encrypted to SignerCert (so only an RSA
	// SignerKey can open a SUCCESS).
	SignerCert *x509.Certificate
	SignerKey  crypto.Signer
}

// TransactionID is the transaction ID smallstep/scep derives from a public key (base64 of its key identifier),
// the ID a client resending a request for the same key uses.
func TransactionID(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	id, err := cryptoutil.GenerateSubjectKeyID(pub)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return base64.StdEncoding.EncodeToString(id)
}

// PKCSReq builds an enrollment request the way real Go clients do, with smallstep/scep's NewCSRRequest: the
// CSR encrypted to the recipients, signed by the client's certificate, the transaction ID derived from the CSR
// key.
func (c *Client) PKCSReq(t testing.TB, csr *x509.CertificateRequest) *Request {
	t.Helper()
	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{MessageType: scep.PKCSReq, Recipients: c.Recipients,
		SignerKey: c.Key, SignerCert: c.Cert})
	if err != nil {
		t.Fatalf("testca: building PKCSReq: %v", err)
	}
	return &Request{Raw: msg.Raw, MessageType: MsgPKCSReq, TransactionID: string(msg.TransactionID),
		SenderNonce: msg.SenderNonce, SignerCert: c.Cert, SignerKey: c.Key}
}

// Message describes a PKIMessage built by hand, for the message types smallstep/scep cannot build and for
// malformed requests.
type Message struct {
	// Type is the messageType attribute, any decimal string.
	Type string
	// TransactionID defaults to TransactionID(client key).
	TransactionID string
	// Content is the plaintext of the pkcsPKIEnvelope, encrypted to Recipients (default: the client's).
	Content    []byte
	Recipients []*x509.Certificate
	// RawContent, when set, is the SignedData content verbatim (no envelope): for garbage envelopes.
	RawContent []byte
	// SignerCert and SignerKey default to the client's. A RenewalReq is signed with the old certificate; an
	// ECDSA signer makes a request no CertRep can be encrypted to.
	SignerCert *x509.Certificate
	SignerKey  crypto.Signer
	// ForgeWith, when set, signs with this key while naming SignerCert: the outer signature does not verify.
	ForgeWith crypto.Signer
}

// Message builds a PKIMessage with smallstep/pkcs7: SignedData over an EnvelopedData, with the transactionID,
// messageType and senderNonce signed attributes.
func (c *Client) Message(t testing.TB, m Message) *Request {
	t.Helper()
	if m.SignerCert == nil {
		m.SignerCert, m.SignerKey = c.Cert, c.Key
	}
	if m.TransactionID == "" {
		m.TransactionID = TransactionID(t, m.SignerKey.Public())
	}
	if m.Recipients == nil {
		m.Recipients = c.Recipients
	}
	content := m.RawContent
	if content == nil {
		var err error
		content, err = pkcs7.Encrypt(m.Content, m.Recipients)
		if err != nil {
			t.Fatalf("testca: encrypting envelope: %v", err)
		}
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatalf("testca: %v", err)
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	signKey := m.SignerKey
	if m.ForgeWith != nil {
		signKey = m.ForgeWith
	}
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: m.TransactionID},
		{Type: oidMessageType, Value: m.Type},
		{Type: oidSenderNonce, Value: nonce},
	}
	if err := sd.AddSigner(m.SignerCert, signKey, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		t.Fatalf("testca: signing PKIMessage: %v", err)
	}
	raw, err := sd.Finish()
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return &Request{Raw: raw, MessageType: m.Type, TransactionID: m.TransactionID, SenderNonce: nonce,
		SignerCert: m.SignerCert, SignerKey: m.SignerKey}
}

// RenewalReq builds a RenewalReq for csr signed with an existing certificate and its key (RFC 8894 §3.3.1.2).
func (c *Client) RenewalReq(t testing.TB, csr *x509.CertificateRequest, old *x509.Certificate, oldKey *rsa.PrivateKey) *Request {
	t.Helper()
	return c.Message(t, Message{Type: MsgRenewalReq, TransactionID: TransactionID(t, csr.PublicKey), Content: csr.Raw,
		SignerCert: old, SignerKey: oldKey})
}

// CertPoll builds a CertPoll (GetCertInitial) for an earlier transaction: IssuerAndSubject in the envelope.
func (c *Client) CertPoll(t testing.TB, transactionID string, issuer *x509.Certificate, subject pkix.Name) *Request {
	t.Helper()
	subj, err := asn1.Marshal(subject.ToRDNSequence())
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	ias := struct {
		Issuer  asn1.RawValue
		Subject asn1.RawValue
	}{asn1.RawValue{FullBytes: issuer.RawSubject}, asn1.RawValue{FullBytes: subj}}
	return c.Message(t, Message{Type: MsgCertPoll, TransactionID: transactionID, Content: mustMarshal(t, ias)})
}

// GetCert builds a GetCert for the certificate issuer issued with serial: IssuerAndSerialNumber in the envelope.
func (c *Client) GetCert(t testing.TB, issuer *x509.Certificate, serial *big.Int) *Request {
	t.Helper()
	return c.Message(t, Message{Type: MsgGetCert, Content: issuerAndSerial(t, issuer, serial)})
}

// GetCRL builds a GetCRL naming a certificate of issuer.
func (c *Client) GetCRL(t testing.TB, issuer *x509.Certificate, serial *big.Int) *Request {
	t.Helper()
	return c.Message(t, Message{Type: MsgGetCRL, Content: issuerAndSerial(t, issuer, serial)})
}

func issuerAndSerial(t testing.TB, issuer *x509.Certificate, serial *big.Int) []byte {
	return mustMarshal(t, struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}{asn1.RawValue{FullBytes: issuer.RawSubject}, serial})
}

// Post sends a PKIOperation as POST with Content-Type application/x-pki-message and returns the response with
// its body read. endpoint is the SCEP URL without a query.
func Post(t testing.TB, endpoint string, raw []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(endpoint+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("testca: POST PKIOperation: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testca: reading response: %v", err)
	}
	return resp, body
}
