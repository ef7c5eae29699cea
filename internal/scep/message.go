package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/azscep/azscep/internal/ber"
	"github.com/azscep/azscep/internal/cms"
	"github.com/azscep/azscep/internal/custody"

	"github.com/azscep/azscep/internal/httpx"
)

// MessageType is the SCEP messageType attribute (RFC 8894 §3.2.1.2), a decimal string on the wire.
type MessageType string

// The message types the server understands. UpdateReq (18) from older drafts is refused.
const (
	CertRep    MessageType = "3"
	RenewalReq MessageType = "17"
	PKCSReq    MessageType = "19"
	CertPoll   MessageType = "20" // GetCertInitial
	GetCert    MessageType = "21"
	GetCRL     MessageType = "22"
)

// PKIStatus is the pkiStatus attribute of a CertRep.
type PKIStatus string

// RFC 8894 §3.2.1.3.
const (
	StatusSuccess PKIStatus = "0"
	StatusFailure PKIStatus = "2"
	StatusPending PKIStatus = "3"
)

// FailInfo is the failInfo attribute of a FAILURE CertRep.
type FailInfo string

// RFC 8894 §3.2.1.4.
const (
	BadAlg          FailInfo = "0"
	BadMessageCheck FailInfo = "1"
	BadRequest      FailInfo = "2"
	BadTime         FailInfo = "3"
	BadCertID       FailInfo = "4"
)

var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// ErrMalformed marks messages that cannot be answered with a CertRep (no readable transaction ID or nonce):
// the HTTP edge answers 400.
var ErrMalformed = errors.New("scep: malformed message")

// PKIMessage is a parsed, not yet decrypted, client request.
type PKIMessage struct {
	TransactionID string
	MessageType   MessageType
	SenderNonce   []byte
	// SignerCert signed the request: a self-signed throwaway for PKCSReq, the old certificate for RenewalReq.
	SignerCert *x509.Certificate
	// SignatureValid is false when the outer signature did not verify; such a message is refused with HTTP 400.
	SignatureValid bool
	p7             *pkcs7.PKCS7
	// previousRA is set when the envelope was addressed to the previous RA (during its overlap after a rotation):
	// the client trusts that RA certificate, so its CertRep is signed with it too.
	previousRA *raIdentity
}

// raIdentity is an RA certificate and its key.
type raIdentity struct {
	cert *x509.Certificate
	key  custody.RAKey
}

// ParsePKIMessage parses and verifies the outer SignedData. Errors wrap ErrMalformed.
func ParsePKIMessage(der []byte) (*PKIMessage, error) {
	if err := ber.Check(der); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing SignedData: %v", ErrMalformed, err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signer, got %d", ErrMalformed, len(p7.Signers))
	}
	m := &PKIMessage{p7: p7}
	var tx, mt string
	if err := p7.UnmarshalSignedAttribute(oidTransactionID, &tx); err != nil || tx == "" || len(tx) > 256 {
		return nil, fmt.Errorf("%w: transactionID missing or malformed", ErrMalformed)
	}
	if err := p7.UnmarshalSignedAttribute(oidMessageType, &mt); err != nil || mt == "" || len(mt) > 4 {
		return nil, fmt.Errorf("%w: messageType missing or malformed", ErrMalformed)
	}
	if err := p7.UnmarshalSignedAttribute(oidSenderNonce, &m.SenderNonce); err != nil || len(m.SenderNonce) != 16 {
		return nil, fmt.Errorf("%w: senderNonce missing or not 16 bytes", ErrMalformed)
	}
	m.TransactionID, m.MessageType = tx, MessageType(mt)
	m.SignerCert = p7.GetOnlySigner()
	if m.SignerCert == nil {
		return nil, fmt.Errorf("%w: signer certificate missing", ErrMalformed)
	}
	m.SignatureValid = verify(p7, m.SignerCert) == nil
	return m, nil
}

// verify checks the outer signature. pkcs7 refuses a signingTime outside the signer certificate's validity before it
// looks at the signature, but that time is the signer's own claim and proves nothing here: what the certificate
// authorizes is decided at the server's time (liveRecord), and a RenewalReq signed with an expired certificate is
// answered with a renewal's refusal, not as a forgery. So the signature is then checked once more, against a copy
// of signer whose validity is the claimed time.
func verify(p7 *pkcs7.PKCS7, signer *x509.Certificate) error {
	err := p7.Verify()
	var st *pkcs7.SigningTimeNotValidError
	if !errors.As(err, &st) {
		return err
	}
	i := slices.Index(p7.Certificates, signer)
	if i < 0 {
		return err
	}
	claimed := *signer
	claimed.NotBefore, claimed.NotAfter = st.SigningTime, st.SigningTime
	certs := p7.Certificates
	p7.Certificates = slices.Clone(certs)
	p7.Certificates[i] = &claimed
	defer func() { p7.Certificates = certs }()
	return p7.Verify()
}

// Decrypt opens the pkcsPKIEnvelope with the RA (or CA) key. Every failure caused by the message returns the
// same error so that the answer never tells an attacker which step failed (PKCS#1 v1.5 padding oracle); only a
// key that is unavailable (httpx.Unavailable) is reported as such.
func (m *PKIMessage) Decrypt(cert *x509.Certificate, key crypto.Decrypter) ([]byte, error) {
	// The EnvelopedData sits in an OCTET STRING, which the pre-scan of the whole message did not descend into:
	// bound its nesting too before the recursive parser sees it.
	if ber.CheckDepth(m.p7.Content) != nil {
		return nil, errDecrypt
	}
	env, err := pkcs7.Parse(m.p7.Content)
	if err != nil {
		return nil, errDecrypt
	}
	if n := contentKeyLen(m.p7.Content); n > 0 {
		key = implicitRejection{Decrypter: key, keyLen: n}
	}
	plain, err := env.Decrypt(cert, key)
	if err != nil {
		// A remote decrypter (Key Vault) that is down or throttling says nothing about the ciphertext: pass that
		// on so the client gets 503 and retries. Every other failure is the one opaque error.
		if _, ok := httpx.Unavailable(err); ok {
			return nil, fmt.Errorf("scep: opening envelope: %w", err)
		}
		return nil, errDecrypt
	}
	// And the decrypted content (a CSR, IssuerAndSerialNumber or IssuerAndSubject), before any parser sees it.
	if ber.CheckDepth(plain) != nil {
		return nil, errDecrypt
	}
	return plain, nil
}

var errDecrypt = errors.New("scep: envelope cannot be opened")

// implicitRejection asks the decrypter for a session key of the envelope's content-key length. smallstep/pkcs7
// asks for RSA PKCS#1 v1.5 key transport with SessionKeyLen 0, so a bad padding would fail at once while a good one
// goes on to decrypt the content; with the length, the decrypter (crypto/rsa, or keyvault.Key) returns a random key
// instead of a padding error, every envelope is decrypted, and the two fail alike and as late (Bleichenbacher's
// oracle needs them apart).
type implicitRejection struct {
	crypto.Decrypter
	keyLen int
}

func (d implicitRejection) Decrypt(r io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if o, ok := opts.(*rsa.PKCS1v15DecryptOptions); ok && o.SessionKeyLen == 0 {
		opts = &rsa.PKCS1v15DecryptOptions{SessionKeyLen: d.keyLen}
	}
	return d.Decrypter.Decrypt(r, ciphertext, opts)
}

// Content-encryption algorithms smallstep/pkcs7 opens: their key lengths, and the algorithm a CertRep answers each
// in. The client chooses its algorithm from what GetCACaps offers (RFC 8894 §3.5.2: "AES" is AES-128-CBC) and the
// answer follows that choice: network gear that implements AES-128 only (or, if it sent DES, triple DES at best)
// cannot open an AES-256 CertRep. Single DES, broken, is answered in triple DES, the weakest this server sends: a client that knows
// only single DES cannot enroll here. AES-GCM is not a SCEP algorithm; its clients get AES-256-CBC.
var contentAlgs = map[string]struct {
	keyLen int
	reply  cms.ContentAlgorithm
}{
	"1.3.14.3.2.7":            {8, cms.DESEDE3CBC},  // DES-CBC
	"1.2.840.113549.3.7":      {24, cms.DESEDE3CBC}, // DES-EDE3-CBC
	"2.16.840.1.101.3.4.1.2":  {16, cms.AES128CBC},  // AES-128-CBC
	"2.16.840.1.101.3.4.1.22": {24, cms.AES192CBC},  // AES-192-CBC
	"2.16.840.1.101.3.4.1.42": {32, cms.AES256CBC},  // AES-256-CBC
	"2.16.840.1.101.3.4.1.6":  {16, cms.AES256CBC},  // AES-128-GCM
	"2.16.840.1.101.3.4.1.46": {32, cms.AES256CBC},  // AES-256-GCM
}

// contentKeyLen is the content-key length of the EnvelopedData ContentInfo b, 0 when unknown (contentAlg).
func contentKeyLen(b []byte) int { return contentAlgs[contentAlg(b)].keyLen }

// replyAlgorithm is the content-encryption algorithm of m's CertRep: the one its envelope used, or AES-256-CBC.
func (m *PKIMessage) replyAlgorithm() cms.ContentAlgorithm {
	if a, ok := contentAlgs[contentAlg(m.p7.Content)]; ok {
		return a.reply
	}
	return cms.AES256CBC
}

// contentAlg reads the content-encryption algorithm of a ContentInfo holding an EnvelopedData (RFC 5652 §6.1), in
// DER or BER as pkcs7 accepts it, and returns its OID in dotted form, or "" when the structure is unreadable (the
// decrypter is then asked as pkcs7 asks it). Its nesting was bounded by ber.CheckDepth.
func contentAlg(b []byte) string {
	ci, ok := berInto(b, 0x30)
	if !ok {
		return ""
	}
	env, ok := berField(ci, 0x06, 0xa0) // contentType, then [0] content
	if !ok {
		return ""
	}
	if env, ok = berInto(env, 0x30); !ok {
		return ""
	}
	if env, ok = berSkip(env, 0x02); !ok { // version
		return ""
	}
	if next, _, _, ok := berNext(env); ok && next == 0xa0 { // originatorInfo
		env, _ = berSkip(env, 0xa0)
	}
	eci, ok := berField(env, 0x31, 0x30) // recipientInfos, then encryptedContentInfo
	if !ok {
		return ""
	}
	alg, ok := berField(eci, 0x06, 0x30) // contentType, then contentEncryptionAlgorithm
	if !ok {
		return ""
	}
	tag, oid, _, ok := berNext(alg)
	if !ok || tag != 0x06 || len(oid) > 127 {
		return ""
	}
	var id asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(append([]byte{0x06, byte(len(oid))}, oid...), &id); err != nil {
		return ""
	}
	return id.String()
}

// berNext splits the first BER element off b: its (one-byte) tag, its contents, and what follows. An indefinite
// length is followed to its end-of-contents octets.
func berNext(b []byte) (tag byte, content, rest []byte, ok bool) {
	if len(b) < 2 || b[0]&0x1f == 0x1f {
		return 0, nil, nil, false
	}
	tag = b[0]
	l, i, ok := ber.Length(b, 1, tag)
	if !ok {
		return 0, nil, nil, false
	}
	if l < 0 {
		for j := i; j+1 < len(b); {
			if b[j] == 0 && b[j+1] == 0 {
				return tag, b[i:j], b[j+2:], true
			}
			_, _, after, ok := berNext(b[j:])
			if !ok {
				return 0, nil, nil, false
			}
			j = len(b) - len(after)
		}
		return 0, nil, nil, false
	}
	if i+l > len(b) {
		return 0, nil, nil, false
	}
	return tag, b[i : i+l], b[i+l:], true
}

// berInto returns the contents of b's first element when it has tag want.
func berInto(b []byte, want byte) ([]byte, bool) {
	tag, content, _, ok := berNext(b)
	return content, ok && tag == want
}

// berSkip returns what follows b's first element when it has tag want.
func berSkip(b []byte, want byte) ([]byte, bool) {
	tag, _, rest, ok := berNext(b)
	return rest, ok && tag == want
}

// berField skips an element with tag skip and returns the contents of the next one, which must have tag want.
func berField(b []byte, skip, want byte) ([]byte, bool) {
	rest, ok := berSkip(b, skip)
	if !ok {
		return nil, false
	}
	return berInto(rest, want)
}

// CertRepOptions describe one CertRep.
type CertRepOptions struct {
	Status   PKIStatus
	FailInfo FailInfo
	// Certs is the degenerate PKCS#7 payload of a SUCCESS: the issued certificate first, then the chain if the
	// endpoint sends it. For GetCRL, CRL carries the CRL instead.
	Certs []*x509.Certificate
	CRL   []byte
	// Signer is the RA (or CA) certificate and key that sign the CertRep.
	SignerCert *x509.Certificate
	SignerKey  crypto.Signer
}

// CertRep builds the response to m. SUCCESS payloads are encrypted to the request's signer certificate in the
// content-encryption algorithm of the request's own envelope (replyAlgorithm).
func (m *PKIMessage) CertRep(o CertRepOptions) ([]byte, error) {
	var content []byte
	if o.Status == StatusSuccess {
		deg, err := cms.Degenerate(o.Certs, o.CRL)
		if err != nil {
			return nil, err
		}
		content, err = cms.Envelope(deg, m.SignerCert, m.replyAlgorithm())
		if err != nil {
			return nil, fmt.Errorf("scep: encrypting CertRep: %w", err)
		}
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: printable(m.TransactionID)},
		{Type: oidMessageType, Value: printable(string(CertRep))},
		{Type: oidPKIStatus, Value: printable(string(o.Status))},
		{Type: oidSenderNonce, Value: nonce},
		{Type: oidRecipientNonce, Value: m.SenderNonce},
	}
	if o.Status == StatusFailure {
		attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfo, Value: printable(string(o.FailInfo))})
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, fmt.Errorf("scep: building CertRep: %w", err)
	}
	if o.Status == StatusSuccess && len(o.Certs) > 0 {
		// Clients such as micromdm's take the first certificate of the SignedData as the issued one.
		sd.AddCertificate(o.Certs[0])
	}
	if err := sd.AddSigner(o.SignerCert, o.SignerKey, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, fmt.Errorf("scep: signing CertRep: %w", err)
	}
	return sd.Finish()
}

// printable encodes s as a PrintableString when it can be one (transaction IDs are base64 or hex) and as a
// UTF8String otherwise, exactly as the attribute was sent.
func printable(s string) asn1.RawValue {
	tag := asn1.TagPrintableString
	for _, c := range s {
		if !isPrintable(c) {
			tag = asn1.TagUTF8String
			break
		}
	}
	return asn1.RawValue{Tag: tag, Bytes: []byte(s)}
}

func isPrintable(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.ContainsRune(" '()+,-./:=?", c)
}

// Degenerate builds a certs-only SignedData (GetCACert chains, CertRep payloads).
func Degenerate(certs []*x509.Certificate) ([]byte, error) { return cms.Degenerate(certs, nil) }

// DecodeGETMessage decodes the `message` query parameter of a GET PKIOperation. Clients send base64 with or
// without URL escaping (macOS leaves '+', '/' unescaped), and the Functions host re-encodes the query so '+'
// arrives as a space; both are undone here before strict base64 decoding.
func DecodeGETMessage(rawQuery string) ([]byte, error) {
	var raw string
	for _, kv := range strings.Split(rawQuery, "&") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "message" {
			raw = v
			break
		}
	}
	if raw == "" {
		return nil, fmt.Errorf("%w: message parameter missing", ErrMalformed)
	}
	if strings.Contains(raw, "%") {
		u, err := url.PathUnescape(raw) // PathUnescape keeps '+' as '+'
		if err != nil {
			return nil, fmt.Errorf("%w: message parameter is not URL-encoded", ErrMalformed)
		}
		raw = u
		if strings.Contains(raw, "%") { // double-encoded by an intermediary
			if u, err := url.PathUnescape(raw); err == nil {
				raw = u
			}
		}
	}
	raw = strings.NewReplacer(" ", "+", "\r", "", "\n", "").Replace(raw)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		// Nothing left once line breaks are dropped ("message=%0A") is as missing as no parameter.
		if b, err := enc.Strict().DecodeString(raw); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: message parameter is not base64", ErrMalformed)
}
