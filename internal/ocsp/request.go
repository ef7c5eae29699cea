package ocsp

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"

	xocsp "golang.org/x/crypto/ocsp"
)

// oidNonce is id-pkix-ocsp-nonce (RFC 6960 §4.4.1, RFC 8954).
var oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// maxNonceLen is the RFC 8954 upper bound on the nonce octets.
const maxNonceLen = 32

// request is what the responder needs from an OCSPRequest.
type request struct {
	hash       crypto.Hash
	nameHash   []byte
	keyHash    []byte
	serial     *big.Int
	nonceValue []byte // extnValue of the nonce extension, echoed verbatim; nil without a nonce
}

// rawOCSPRequest mirrors RFC 6960 §4.1.1 closely enough to reach what x/crypto/ocsp drops: the number of
// requests and the requestExtensions.
type rawOCSPRequest struct {
	TBSRequest        rawTBSRequest
	OptionalSignature asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type rawTBSRequest struct {
	Version           int           `asn1:"explicit,tag:0,default:0,optional"`
	RequestorName     asn1.RawValue `asn1:"explicit,tag:1,optional"`
	RequestList       []asn1.RawValue
	RequestExtensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
}

// parseRequest decodes an OCSP request. Errors wrap ErrMalformedRequest.
func parseRequest(der []byte) (*request, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty request", ErrMalformedRequest)
	}
	// x/crypto/ocsp validates the CertID (hash algorithm, field types) and rejects trailing data; our own pass
	// below reads the parts it drops. It refuses signed requests and a requestorName (which a signed request
	// carries), both of which RFC 6960 §4.1 allows and neither of which a responder must check: it is given the
	// request without them, and they are ignored (a signature would decide nothing here: any relying party may
	// ask about any certificate).
	parsed, err := xocsp.ParseRequest(unsigned(der))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedRequest, err)
	}
	var raw rawOCSPRequest
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedRequest, err)
	}
	// RFC 5019 §2.1.1: one Request per OCSPRequest. Answering only the first would hand the client a response
	// that silently omits the others.
	if len(raw.TBSRequest.RequestList) != 1 {
		return nil, fmt.Errorf("%w: %d certificates requested, want 1", ErrMalformedRequest, len(raw.TBSRequest.RequestList))
	}
	if parsed.SerialNumber == nil {
		return nil, fmt.Errorf("%w: no serial number", ErrMalformedRequest)
	}
	// The same rule for the certificate's own request entry (singleRequestExtensions), which x/crypto/ocsp drops.
	var single struct {
		Cert       asn1.RawValue
		Extensions []pkix.Extension `asn1:"explicit,tag:0,optional"`
	}
	if rest, err := asn1.Unmarshal(raw.TBSRequest.RequestList[0].FullBytes, &single); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: request entry is malformed", ErrMalformedRequest)
	}
	for _, ext := range single.Extensions {
		if ext.Critical {
			return nil, fmt.Errorf("%w: unrecognised critical extension %s in the request entry", ErrMalformedRequest, ext.Id)
		}
	}
	req := &request{
		hash:     parsed.HashAlgorithm,
		nameHash: parsed.IssuerNameHash,
		keyHash:  parsed.IssuerKeyHash,
		serial:   parsed.SerialNumber,
	}
	for _, ext := range raw.TBSRequest.RequestExtensions {
		if !ext.Id.Equal(oidNonce) {
			// RFC 6960 §4.4 with RFC 5280's rule: an unrecognised extension is ignored unless it is critical.
			if ext.Critical {
				return nil, fmt.Errorf("%w: unrecognised critical request extension %s", ErrMalformedRequest, ext.Id)
			}
			continue
		}
		if req.nonceValue != nil {
			return nil, fmt.Errorf("%w: duplicate nonce extension", ErrMalformedRequest)
		}
		if err := checkNonce(ext.Value); err != nil {
			return nil, err
		}
		req.nonceValue = ext.Value
	}
	return req, nil
}

// checkNonce enforces RFC 8954 §2.1: Nonce ::= OCTET STRING (SIZE(1..32)), and a responder rejects a nonce
// outside that range with malformedRequest.
func checkNonce(extnValue []byte) error {
	var nonce []byte
	rest, err := asn1.Unmarshal(extnValue, &nonce)
	switch {
	case err != nil:
		return fmt.Errorf("%w: nonce is not an OCTET STRING: %w", ErrMalformedRequest, err)
	case len(rest) != 0:
		return fmt.Errorf("%w: trailing data after nonce", ErrMalformedRequest)
	case len(nonce) < 1 || len(nonce) > maxNonceLen:
		return fmt.Errorf("%w: nonce length %d outside 1..%d", ErrMalformedRequest, len(nonce), maxNonceLen)
	}
	return nil
}

// unsigned is der without its optionalSignature and its TBSRequest's requestorName, or der itself when it has
// neither or does not parse (x/crypto/ocsp then says why).
func unsigned(der []byte) []byte {
	var outer struct {
		TBS       asn1.RawValue
		Signature asn1.RawValue `asn1:"explicit,tag:0,optional"`
	}
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) != 0 || !outer.TBS.IsCompound {
		return der
	}
	var kept []byte
	dropped := len(outer.Signature.FullBytes) > 0
	for b := outer.TBS.Bytes; len(b) > 0; {
		var e asn1.RawValue
		var err error
		if b, err = asn1.Unmarshal(b, &e); err != nil {
			return der
		}
		if e.Class == asn1.ClassContextSpecific && e.Tag == 1 { // requestorName [1] EXPLICIT GeneralName
			dropped = true
			continue
		}
		kept = append(kept, e.FullBytes...)
	}
	if !dropped {
		return der
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: kept})
	if err != nil {
		return der
	}
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: tbs})
	if err != nil {
		return der
	}
	return out
}
