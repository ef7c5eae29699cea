package ocsp

import (
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"
)

// The BasicOCSPResponse is encoded here rather than with x/crypto/ocsp.CreateResponse because that function
// can only place extensions in singleExtensions, while RFC 6960 §4.4.1 puts the nonce in responseExtensions
// (where OpenSSL and Windows look for it); it also names the responder by subject only, and reads the wall
// clock for producedAt instead of our injected clock.

var (
	oidPKIXOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	hashOIDs         = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA1:   {1, 3, 14, 3, 2, 26},
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
		crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
		crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
	}
)

type ocspResponseASN1 struct {
	Status   asn1.Enumerated
	Response responseBytes `asn1:"explicit,tag:0,optional"`
}

type responseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type basicOCSPResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certs              []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type responseData struct {
	// version defaults to v1 and is omitted (DER forbids encoding a DEFAULT value).
	ResponderID        asn1.RawValue
	ProducedAt         time.Time `asn1:"generalized"`
	Responses          []singleResponse
	ResponseExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type certID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	IssuerKeyHash []byte
	SerialNumber  *big.Int
}

type singleResponse struct {
	CertID     certID
	Good       asn1.Flag   `asn1:"tag:0,optional"`
	Revoked    revokedInfo `asn1:"tag:1,optional"`
	Unknown    asn1.Flag   `asn1:"tag:2,optional"`
	ThisUpdate time.Time   `asn1:"generalized"`
	NextUpdate time.Time   `asn1:"generalized,explicit,tag:0,optional"`
}

type revokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

// certStatus values (RFC 6960 §4.2.1), matching x/crypto/ocsp.Good/Revoked/Unknown.
const (
	statusGood    = 0
	statusRevoked = 1
	statusUnknown = 2
)

// singleStatus is the content of one SingleResponse.
type singleStatus struct {
	status     int
	revokedAt  time.Time
	reason     int
	thisUpdate time.Time
	nextUpdate time.Time
}

// marshalResponse builds and signs a successful OCSPResponse for req with one Sign call on d.key.
func marshalResponse(d *delegate, req *request, st singleStatus, producedAt time.Time) ([]byte, error) {
	sr := singleResponse{
		CertID: certID{
			// The CertID echoes the request's (already verified) hashes and serial; the hash algorithm is written
			// with NULL parameters whatever the request said (OpenSSL and Go match it by OID).
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: hashOIDs[req.hash], Parameters: asn1.NullRawValue},
			NameHash:      req.nameHash,
			IssuerKeyHash: req.keyHash,
			SerialNumber:  req.serial,
		},
		ThisUpdate: st.thisUpdate.UTC(),
		NextUpdate: st.nextUpdate.UTC(),
	}
	switch st.status {
	case statusGood:
		sr.Good = true
	case statusRevoked:
		sr.Revoked = revokedInfo{RevocationTime: st.revokedAt.UTC(), Reason: asn1.Enumerated(st.reason)}
	default:
		sr.Unknown = true
	}
	rd := responseData{
		ResponderID: d.responderID,
		ProducedAt:  producedAt.UTC(),
		Responses:   []singleResponse{sr},
	}
	if req.nonceValue != nil {
		rd.ResponseExtensions = []pkix.Extension{{Id: oidNonce, Value: req.nonceValue}}
	}
	tbs, err := asn1.Marshal(rd)
	if err != nil {
		return nil, fmt.Errorf("encoding response data: %w", err)
	}
	h := d.hash.New()
	h.Write(tbs)
	sig, err := d.key.Sign(rand.Reader, h.Sum(nil), d.hash)
	if err != nil {
		return nil, fmt.Errorf("signing OCSP response: %w", err)
	}
	basic, err := asn1.Marshal(basicOCSPResponse{
		TBSResponseData:    asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: d.sigAlgID,
		Signature:          asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
		Certs:              []asn1.RawValue{{FullBytes: d.cert.Raw}},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding basic response: %w", err)
	}
	der, err := asn1.Marshal(ocspResponseASN1{
		Status:   asn1.Enumerated(0), // successful
		Response: responseBytes{ResponseType: oidPKIXOCSPBasic, Response: basic},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding OCSP response: %w", err)
	}
	return der, nil
}
