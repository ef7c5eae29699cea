package loadgen

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
)

// SCEP attribute OIDs (RFC 8894 §3.2.1; id-VeriSign 2.16.840.1.113733.1.9.x).
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// Wire values of the SCEP attributes the generator reads and writes.
const (
	msgPKCSReq    = "19"
	msgCertRep    = "3"
	statusSuccess = "0"
)

// GenerateRSAKeys makes n RSA keys of the given size on every CPU at once. SCEP clients sign their requests and
// receive their answers with RSA keys, so even a generator that uses EC CSR keys would need these.
func GenerateRSAKeys(n, bits int) ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			keys[i], errs[i] = rsa.GenerateKey(rand.Reader, bits)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("loadgen: generating keys: %w", err)
	}
	return keys, nil
}

// FetchCACerts runs GetCACert against a SCEP URL (without query) and returns the certificates, the RA (or CA)
// first as RFC 8894 §4.2 requires.
func FetchCACerts(ctx context.Context, client *http.Client, scepURL string) ([]*x509.Certificate, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scepURL+"?operation=GetCACert", nil)
	if err != nil {
		return nil, fmt.Errorf("loadgen: GetCACert request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadgen: GetCACert: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("loadgen: reading GetCACert answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loadgen: GetCACert: HTTP %d", resp.StatusCode)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-x509-ca-cert") {
		c, err := x509.ParseCertificate(body)
		if err != nil {
			return nil, fmt.Errorf("loadgen: GetCACert certificate: %w", err)
		}
		return []*x509.Certificate{c}, nil
	}
	certs, err := scep.CACerts(body)
	if err != nil {
		return nil, fmt.Errorf("loadgen: GetCACert certificates: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("loadgen: GetCACert returned no certificate")
	}
	return certs, nil
}

// SCEPConfig describes the PKCSReq messages BuildSCEP makes.
type SCEPConfig struct {
	// Path is the SCEP endpoint path, e.g. /api/scep/static; requests POST to Path?operation=PKIOperation.
	Path string
	// Recipients are what GetCACert returned. The CSR is encrypted to every RSA certificate among them, as
	// micromdm's scepclient does (key transport needs RSA; an EC CA certificate in the chain is skipped).
	Recipients []*x509.Certificate
	// Challenge is the challengePassword put in every CSR ("" for none).
	Challenge string
	// Keys are the device keys: request i uses Keys[i%len(Keys)] for its CSR, its self-signed signer certificate
	// and the answer's envelope. Every request gets its own random transaction ID and common name, so a server
	// that binds replays to the transaction ID issues a new certificate for each.
	Keys []*rsa.PrivateKey
	// CommonName prefixes each CSR's common name; the request index is appended (default "loadgen-").
	CommonName string
}

// SCEPRequest is a built PKCSReq with what is needed to read its answer.
type SCEPRequest struct {
	Request
	TransactionID string
	SenderNonce   []byte
	Key           *rsa.PrivateKey
	SignerCert    *x509.Certificate
	CSR           *x509.CertificateRequest
}

// BuildSCEP builds n PKCSReq messages on every CPU at once. Each answer is checked during the run with
// CheckCertRep (signature, status SUCCESS, nonce and transaction ID), which costs no private-key operation.
// The message envelope uses smallstep/pkcs7's process-wide ContentEncryptionAlgorithm (the server's scep.Init
// sets AES-256-CBC; a load generator running beside micromdm/scep should leave it there).
func BuildSCEP(cfg SCEPConfig, n int) ([]*SCEPRequest, error) {
	var rsaRecipients []*x509.Certificate
	for _, c := range cfg.Recipients {
		if _, ok := c.PublicKey.(*rsa.PublicKey); ok {
			rsaRecipients = append(rsaRecipients, c)
		}
	}
	if len(cfg.Keys) == 0 || len(rsaRecipients) == 0 || cfg.Path == "" {
		return nil, errors.New("loadgen: SCEPConfig needs Path, Keys and an RSA recipient")
	}
	cfg.Recipients = rsaRecipients
	if cfg.CommonName == "" {
		cfg.CommonName = "loadgen-"
	}
	signers := make([]*x509.Certificate, len(cfg.Keys))
	for i, k := range cfg.Keys {
		c, err := SelfSigned(k, pkix.Name{CommonName: fmt.Sprintf("%ssigner-%d", cfg.CommonName, i)})
		if err != nil {
			return nil, err
		}
		signers[i] = c
	}
	out := make([]*SCEPRequest, n)
	err := parallel(n, func(i int) error {
		k := i % len(cfg.Keys)
		r, err := buildPKCSReq(cfg, cfg.Keys[k], signers[k], fmt.Sprintf("%s%d", cfg.CommonName, i))
		out[i] = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Requests returns the plain requests of built SCEP messages, for Run.
func Requests(reqs []*SCEPRequest) []Request {
	out := make([]Request, len(reqs))
	for i, r := range reqs {
		out[i] = r.Request
	}
	return out
}

func buildPKCSReq(cfg SCEPConfig, key *rsa.PrivateKey, signer *x509.Certificate, cn string) (*SCEPRequest, error) {
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: cn},
			SignatureAlgorithm: x509.SHA256WithRSA},
		ChallengePassword: cfg.Challenge,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("loadgen: CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("loadgen: CSR: %w", err)
	}
	envelope, err := pkcs7.Encrypt(csrDER, cfg.Recipients)
	if err != nil {
		return nil, fmt.Errorf("loadgen: encrypting CSR: %w", err)
	}
	sd, err := pkcs7.NewSignedData(envelope)
	if err != nil {
		return nil, fmt.Errorf("loadgen: signed data: %w", err)
	}
	txid, nonce := make([]byte, 16), make([]byte, 16)
	if _, err := rand.Read(txid); err != nil {
		return nil, err
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	tx := strings.ToUpper(hex.EncodeToString(txid))
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: tx},
		{Type: oidMessageType, Value: msgPKCSReq},
		{Type: oidSenderNonce, Value: nonce},
	}
	if err := sd.AddSigner(signer, key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, fmt.Errorf("loadgen: signing PKIMessage: %w", err)
	}
	raw, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("loadgen: PKIMessage: %w", err)
	}
	r := &SCEPRequest{TransactionID: tx, SenderNonce: nonce, Key: key, SignerCert: signer, CSR: csr}
	r.Request = Request{Method: http.MethodPost, Path: cfg.Path + "?operation=PKIOperation",
		Header: http.Header{"Content-Type": {"application/x-pki-message"}}, Body: raw,
		Check: func(status int, _ http.Header, body []byte) error { return r.CheckCertRep(status, body) }}
	return r, nil
}

// CheckCertRep is the check every answer gets (after the timed phase, see Run): HTTP 200, a CertRep whose outer
// signature verifies, pkiStatus SUCCESS, the request's transaction ID and recipientNonce = our senderNonce.
func (r *SCEPRequest) CheckCertRep(status int, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("HTTP %d", status)
	}
	p7, err := pkcs7.Parse(body)
	if err != nil {
		return fmt.Errorf("CertRep does not parse: %w", err)
	}
	if err := p7.Verify(); err != nil {
		return fmt.Errorf("CertRep signature: %w", err)
	}
	var msgType, pkiStatus, tx string
	var rn []byte
	for _, a := range []struct {
		oid asn1.ObjectIdentifier
		v   any
	}{{oidMessageType, &msgType}, {oidPKIStatus, &pkiStatus}, {oidTransactionID, &tx}, {oidRecipientNonce, &rn}} {
		if err := p7.UnmarshalSignedAttribute(a.oid, a.v); err != nil {
			return fmt.Errorf("CertRep attribute %s: %w", a.oid, err)
		}
	}
	if msgType != msgCertRep {
		return fmt.Errorf("messageType %q, want CertRep", msgType)
	}
	if pkiStatus != statusSuccess {
		var fi string
		_ = p7.UnmarshalSignedAttribute(oidFailInfo, &fi)
		return fmt.Errorf("pkiStatus %s failInfo %s", pkiStatus, fi)
	}
	if tx != r.TransactionID || !bytes.Equal(rn, r.SenderNonce) {
		return errors.New("CertRep answers another transaction")
	}
	return nil
}

// VerifyCertRep does what a device does with a successful answer (outside the timed phase): it opens the
// envelope with the device key and returns the issued certificate after checking that it certifies the CSR's
// key and name and verifies against one of roots.
func (r *SCEPRequest) VerifyCertRep(body []byte, roots []*x509.Certificate) (*x509.Certificate, error) {
	if err := r.CheckCertRep(http.StatusOK, body); err != nil {
		return nil, err
	}
	msg, err := scep.ParsePKIMessage(body)
	if err != nil {
		return nil, fmt.Errorf("parsing CertRep: %w", err)
	}
	if err := msg.DecryptPKIEnvelope(r.SignerCert, r.Key); err != nil {
		return nil, fmt.Errorf("opening CertRep envelope: %w", err)
	}
	if msg.CertRepMessage == nil || msg.CertRepMessage.Certificate == nil {
		return nil, errors.New("CertRep carries no certificate")
	}
	cert := msg.CertRepMessage.Certificate
	if !publicKeysEqual(cert.PublicKey, r.CSR.PublicKey) {
		return nil, errors.New("issued certificate is for another key")
	}
	if cert.Subject.CommonName != r.CSR.Subject.CommonName {
		return nil, fmt.Errorf("issued certificate CN %q, requested %q", cert.Subject.CommonName, r.CSR.Subject.CommonName)
	}
	for _, root := range roots {
		if cert.CheckSignatureFrom(root) == nil {
			return cert, nil
		}
	}
	return nil, errors.New("issued certificate does not verify against the CA")
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// SelfSigned is the throwaway certificate a device signs its PKCSReq with (RFC 8894 §2.3).
func SelfSigned(key *rsa.PrivateKey, subject pkix.Name) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("loadgen: self-signed certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// parallel runs fn(0..n-1) on every CPU and returns the first error.
func parallel(n int, fn func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), max(n, 1))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// CertRep statuses (RFC 8894 §3.2.1.3) as CertRepStatus reports them.
const (
	StatusSuccess = "SUCCESS"
	StatusFailure = "FAILURE"
	StatusPending = "PENDING"
)

// CertRepStatus reads the pkiStatus (SUCCESS, FAILURE or PENDING) and failInfo of a CertRep after checking its
// signature. It needs no key, so tests can classify any answer, successful or not.
func CertRepStatus(body []byte) (status, failInfo string, err error) {
	p7, err := pkcs7.Parse(body)
	if err != nil {
		return "", "", fmt.Errorf("CertRep does not parse: %w", err)
	}
	if err := p7.Verify(); err != nil {
		return "", "", fmt.Errorf("CertRep signature: %w", err)
	}
	var s string
	if err := p7.UnmarshalSignedAttribute(oidPKIStatus, &s); err != nil {
		return "", "", fmt.Errorf("CertRep pkiStatus: %w", err)
	}
	switch s {
	case "0":
		return StatusSuccess, "", nil
	case "2":
		_ = p7.UnmarshalSignedAttribute(oidFailInfo, &failInfo)
		return StatusFailure, failInfo, nil
	case "3":
		return StatusPending, "", nil
	}
	return "", "", fmt.Errorf("unknown pkiStatus %q", s)
}
