package ocsp

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	xocsp "golang.org/x/crypto/ocsp"
)

// signRequest turns an unsigned OCSP request into what `openssl ocsp -signer` sends: a requestorName (the
// signer's directoryName, which RFC 6960 §4.1.2 asks a signed request to carry) first in the TBSRequest, and an
// optionalSignature. The signature's bytes are not checked by the responder, so any well-formed value does.
func signRequest(t *testing.T, der []byte, requestor pkix.Name, withSignature bool) []byte {
	t.Helper()
	var outer struct{ TBS asn1.RawValue }
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	name, err := asn1.Marshal(requestor.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	gn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name})
	if err != nil {
		t.Fatal(err)
	}
	rn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: gn})
	if err != nil {
		t.Fatal(err)
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: append(rn, outer.TBS.Bytes...)})
	if err != nil {
		t.Fatal(err)
	}
	body := tbs
	if withSignature {
		sig, err := asn1.Marshal(struct {
			Algorithm pkix.AlgorithmIdentifier
			Signature asn1.BitString
		}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue},
			asn1.BitString{Bytes: bytes.Repeat([]byte{0x42}, 256), BitLength: 2048}})
		if err != nil {
			t.Fatal(err)
		}
		opt, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sig})
		if err != nil {
			t.Fatal(err)
		}
		body = append(body, opt...)
	}
	out, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRespond_SignedRequestsAnswered: RFC 6960 §4.1.2 lets a client sign its request (and name itself in
// requestorName); a responder need not check the signature, but must not call the request malformed, or a relying
// party set up to sign gets no status at all. The nonce of a signed request is echoed as usual.
func TestRespond_SignedRequestsAnswered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(4242)
	f.src.set(serial, Status{Known: true})
	nonce := nonceExt(t, bytes.Repeat([]byte{0x17}, 16))
	for name, der := range map[string][]byte{
		"signed":               signRequest(t, makeRequest(t, f.ca.cert, serial, crypto.SHA256, nil), pkix.Name{CommonName: "rp"}, true),
		"signed, with a nonce": signRequest(t, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nonce), pkix.Name{CommonName: "rp"}, true),
		"requestorName only":   signRequest(t, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil), pkix.Name{CommonName: "rp"}, false),
	} {
		resp, err := f.r.Respond(t.Context(), der)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		parsed, err := xocsp.ParseResponse(resp, f.ca.cert)
		if err != nil || parsed.Status != xocsp.Good || parsed.SerialNumber.Cmp(serial) != 0 {
			t.Errorf("%s: %+v, %v; want good for %v", name, parsed, err, serial)
		}
	}
	// Signing changes nothing about what is malformed: a critical extension the responder does not know, in the
	// request or its entry, is still refused (the checks read the request as sent, signature and all).
	unknown := []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{0x05, 0x00}}}
	for name, der := range map[string][]byte{
		"critical request extension": signRequest(t, makeRequestWith(t, f.ca.cert, serial, crypto.SHA256, unknown, nil), pkix.Name{CommonName: "rp"}, true),
		"critical entry extension":   signRequest(t, makeRequestWith(t, f.ca.cert, serial, crypto.SHA256, nil, unknown), pkix.Name{CommonName: "rp"}, true),
	} {
		if resp, err := f.r.Respond(t.Context(), der); !errors.Is(err, ErrMalformedRequest) || !bytes.Equal(resp, xocsp.MalformedRequestErrorResponse) {
			t.Errorf("signed, %s: err %v; want malformedRequest", name, err)
		}
	}
	// Still malformed: a request with nothing after the signature that parses, or trailing data.
	bad := append(signRequest(t, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil), pkix.Name{CommonName: "rp"}, true), 0x00)
	if resp, err := f.r.Respond(t.Context(), bad); err == nil {
		if p, perr := xocsp.ParseResponse(resp, f.ca.cert); perr == nil && p.Status == xocsp.Good {
			t.Error("a request with trailing data was answered good")
		}
	}
}
