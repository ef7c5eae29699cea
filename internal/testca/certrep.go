package testca

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
)

// CertRep is a server's answer, verified and decrypted.
type CertRep struct {
	Status         string // StatusSuccess, StatusFailure or StatusPending
	FailInfo       string // set with StatusFailure
	TransactionID  string
	SenderNonce    []byte
	RecipientNonce []byte
	// DigestAlgorithm is the signer's digest algorithm OID.
	DigestAlgorithm asn1.ObjectIdentifier
	// ContentEncryption and KeyEncryption are the EnvelopedData algorithm OIDs (SUCCESS only).
	ContentEncryption asn1.ObjectIdentifier
	KeyEncryption     asn1.ObjectIdentifier
	// Certificates is the decrypted degenerate payload: the issued certificate first, then any chain.
	Certificates []*x509.Certificate
	// CRLs is the decrypted GetCRL payload.
	CRLs []pkix.CertificateList
	// SignedCertificates are the certificates in the outer SignedData.
	SignedCertificates []*x509.Certificate
}

// Certificate is the issued certificate of a SUCCESS, or nil.
func (r *CertRep) Certificate() *x509.Certificate {
	if len(r.Certificates) == 0 {
		return nil
	}
	return r.Certificates[0]
}

// ParseCertRep verifies and opens the server's answer to req. It fails the test on any protocol violation: a
// signature that does not verify against signer (the RA, or the CA in CA-decrypt mode), a messageType other
// than CertRep, another transaction ID, a recipientNonce that is not req's senderNonce, a senderNonce that is
// not 16 fresh bytes, a FAILURE without failInfo, an envelope that does not decrypt with req's key. It also
// cross-checks with smallstep/scep's own client parser that a stock client reads the same answer.
func (req *Request) ParseCertRep(t testing.TB, body []byte, signer *x509.Certificate) *CertRep {
	t.Helper()
	p7, err := pkcs7.Parse(body)
	if err != nil {
		t.Fatalf("testca: CertRep does not parse: %v", err)
	}
	rep := &CertRep{SignedCertificates: p7.Certificates}
	if len(p7.Signers) != 1 {
		t.Fatalf("testca: CertRep has %d signers, want 1", len(p7.Signers))
	}
	rep.DigestAlgorithm = p7.Signers[0].DigestAlgorithm.Algorithm
	p7.Certificates = []*x509.Certificate{signer}
	if err := p7.Verify(); err != nil {
		t.Fatalf("testca: CertRep signature does not verify against %s: %v", signer.Subject, err)
	}
	var mt string
	mustAttr(t, p7, oidMessageType, &mt, "messageType")
	if mt != MsgCertRep {
		t.Fatalf("testca: CertRep messageType = %q, want %q", mt, MsgCertRep)
	}
	mustAttr(t, p7, oidTransactionID, &rep.TransactionID, "transactionID")
	if rep.TransactionID != req.TransactionID {
		t.Fatalf("testca: CertRep transactionID = %q, want %q", rep.TransactionID, req.TransactionID)
	}
	mustAttr(t, p7, oidPKIStatus, &rep.Status, "pkiStatus")
	mustAttr(t, p7, oidRecipientNonce, &rep.RecipientNonce, "recipientNonce")
	if !bytes.Equal(rep.RecipientNonce, req.SenderNonce) {
		t.Fatalf("testca: CertRep recipientNonce %x is not the request's senderNonce %x", rep.RecipientNonce, req.SenderNonce)
	}
	mustAttr(t, p7, oidSenderNonce, &rep.SenderNonce, "senderNonce")
	if len(rep.SenderNonce) != 16 || bytes.Equal(rep.SenderNonce, req.SenderNonce) {
		t.Fatalf("testca: CertRep senderNonce %x is not a fresh 16-byte nonce", rep.SenderNonce)
	}
	switch rep.Status {
	case StatusFailure:
		mustAttr(t, p7, oidFailInfo, &rep.FailInfo, "failInfo")
	case StatusSuccess:
		rep.openEnvelope(t, p7.Content, req)
	case StatusPending:
	default:
		t.Fatalf("testca: CertRep pkiStatus %q is not a RFC 8894 value", rep.Status)
	}
	rep.crossCheck(t, body, req, signer)
	return rep
}

func mustAttr(t testing.TB, p7 *pkcs7.PKCS7, oid asn1.ObjectIdentifier, out any, name string) {
	t.Helper()
	if err := p7.UnmarshalSignedAttribute(oid, out); err != nil {
		t.Fatalf("testca: CertRep %s attribute: %v", name, err)
	}
}

// envelope is the part of an EnvelopedData ContentInfo whose algorithms the tests check.
type envelope struct {
	ContentType asn1.ObjectIdentifier
	Content     struct {
		Version        int
		RecipientInfos []struct {
			Version                int
			IssuerAndSerial        asn1.RawValue
			KeyEncryptionAlgorithm pkix.AlgorithmIdentifier
			EncryptedKey           []byte
		} `asn1:"set"`
		EncryptedContentInfo struct {
			ContentType                asn1.ObjectIdentifier
			ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
			EncryptedContent           asn1.RawValue `asn1:"tag:0,optional"`
		}
	} `asn1:"explicit,tag:0"`
}

func (rep *CertRep) openEnvelope(t testing.TB, content []byte, req *Request) {
	t.Helper()
	var env envelope
	if _, err := asn1.Unmarshal(content, &env); err != nil {
		t.Fatalf("testca: CertRep content is not an EnvelopedData: %v", err)
	}
	if !env.ContentType.Equal(pkcs7.OIDEnvelopedData) || len(env.Content.RecipientInfos) == 0 {
		t.Fatalf("testca: CertRep content type %v with %d recipients", env.ContentType, len(env.Content.RecipientInfos))
	}
	rep.ContentEncryption = env.Content.EncryptedContentInfo.ContentEncryptionAlgorithm.Algorithm
	rep.KeyEncryption = env.Content.RecipientInfos[0].KeyEncryptionAlgorithm.Algorithm
	e7, err := pkcs7.Parse(content)
	if err != nil {
		t.Fatalf("testca: CertRep envelope: %v", err)
	}
	plain, err := e7.Decrypt(req.SignerCert, req.SignerKey)
	if err != nil {
		t.Fatalf("testca: CertRep envelope does not decrypt with the requester's key: %v", err)
	}
	deg, err := pkcs7.Parse(plain)
	if err != nil {
		t.Fatalf("testca: CertRep payload is not a degenerate PKCS#7: %v", err)
	}
	rep.Certificates, rep.CRLs = deg.Certificates, deg.CRLs
}

// crossCheck reads the answer again with smallstep/scep, as a stock Go SCEP client (micromdm, step) would.
func (rep *CertRep) crossCheck(t testing.TB, body []byte, req *Request, signer *x509.Certificate) {
	t.Helper()
	msg, err := scep.ParsePKIMessage(body, scep.WithCACerts([]*x509.Certificate{signer}))
	if err != nil {
		t.Fatalf("testca: smallstep/scep cannot parse the CertRep: %v", err)
	}
	if msg.CertRepMessage == nil || string(msg.PKIStatus) != rep.Status || string(msg.FailInfo) != rep.FailInfo {
		t.Fatalf("testca: smallstep/scep reads the CertRep differently: %+v", msg.CertRepMessage)
	}
	if rep.Status != StatusSuccess || len(rep.Certificates) == 0 {
		return
	}
	if err := msg.DecryptPKIEnvelope(req.SignerCert, req.SignerKey); err != nil {
		t.Fatalf("testca: smallstep/scep cannot decrypt the CertRep: %v", err)
	}
	if msg.Certificate == nil || !msg.Certificate.Equal(rep.Certificates[0]) {
		t.Fatal("testca: smallstep/scep finds another certificate in the CertRep")
	}
}
