package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
)

// ContentAlgorithm is a content-encryption algorithm Envelope can use.
type ContentAlgorithm int

// The CBC algorithms SCEP clients encrypt with (RFC 8894 §3.5.2: "AES" is AES-128-CBC, "DES3" triple DES).
const (
	AES256CBC ContentAlgorithm = iota
	AES192CBC
	AES128CBC
	DESEDE3CBC
)

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
)

// OID is the algorithm's identifier in a ContentEncryptionAlgorithmIdentifier.
func (a ContentAlgorithm) OID() asn1.ObjectIdentifier {
	switch a {
	case AES128CBC:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	case AES192CBC:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	case DESEDE3CBC:
		return asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	}
	return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
}

// block returns the algorithm's block cipher under key.
func (a ContentAlgorithm) block(key []byte) (cipher.Block, error) {
	if a == DESEDE3CBC {
		return des.NewTripleDESCipher(key)
	}
	return aes.NewCipher(key)
}

func (a ContentAlgorithm) keyLen() int {
	switch a {
	case AES128CBC:
		return 16
	case AES192CBC, DESEDE3CBC:
		return 24
	}
	return 32
}

// Envelope encrypts content to recipient as an EnvelopedData (RFC 5652 §6) in a ContentInfo, with the content
// algorithm alg and RSA PKCS#1 v1.5 key transport, the one every SCEP client opens. A SCEP CertRep is encrypted in
// the algorithm the client chose for its request: a client that asked in AES-128 or triple DES need not know
// AES-256. smallstep/pkcs7 and go.mozilla.org/pkcs7 take the algorithm only from a process-wide variable (which this
// process's request builders read too) and neither encrypts triple DES, hence this encoder.
func Envelope(content []byte, recipient *x509.Certificate, alg ContentAlgorithm) ([]byte, error) {
	pub, ok := recipient.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("cms: recipient key %T cannot receive RSA key transport", recipient.PublicKey)
	}
	if recipient.SerialNumber == nil {
		return nil, errors.New("cms: recipient certificate has no serial number")
	}
	key := make([]byte, alg.keyLen())
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("cms: content key: %w", err)
	}
	block, err := alg.block(key)
	if err != nil {
		return nil, fmt.Errorf("cms: content cipher: %w", err)
	}
	iv := make([]byte, block.BlockSize())
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("cms: IV: %w", err)
	}
	// PKCS #7 padding (RFC 5652 §6.3): always 1 to blockSize bytes, each the pad length.
	pad := block.BlockSize() - len(content)%block.BlockSize()
	sealed := append(append([]byte(nil), content...), make([]byte, pad)...)
	for i := len(content); i < len(sealed); i++ {
		sealed[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(sealed, sealed)
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, pub, key)
	if err != nil {
		return nil, fmt.Errorf("cms: wrapping content key: %w", err)
	}
	ivParam, err := asn1.Marshal(iv)
	if err != nil {
		return nil, fmt.Errorf("cms: encoding IV: %w", err)
	}

	type issuerAndSerial struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}
	type recipientInfo struct {
		Version                int
		Recipient              issuerAndSerial
		KeyEncryptionAlgorithm pkix.AlgorithmIdentifier
		EncryptedKey           []byte
	}
	type encryptedContentInfo struct {
		ContentType                asn1.ObjectIdentifier
		ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
		EncryptedContent           asn1.RawValue
	}
	env, err := asn1.Marshal(struct {
		Version              int
		RecipientInfos       []recipientInfo `asn1:"set"`
		EncryptedContentInfo encryptedContentInfo
	}{
		RecipientInfos: []recipientInfo{{
			Recipient:              issuerAndSerial{Issuer: asn1.RawValue{FullBytes: recipient.RawIssuer}, Serial: recipient.SerialNumber},
			KeyEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue},
			EncryptedKey:           wrapped,
		}},
		EncryptedContentInfo: encryptedContentInfo{
			ContentType:                oidData,
			ContentEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: alg.OID(), Parameters: asn1.RawValue{FullBytes: ivParam}},
			// [0] IMPLICIT OCTET STRING
			EncryptedContent: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: sealed},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cms: encoding EnvelopedData: %w", err)
	}
	out, err := asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{oidEnvelopedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: env}})
	if err != nil {
		return nil, fmt.Errorf("cms: encoding ContentInfo: %w", err)
	}
	return out, nil
}
