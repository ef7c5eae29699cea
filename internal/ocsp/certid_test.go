package ocsp

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// TestRespond_CertIDTricksNeverAnswerGood: ways of spelling a CertID that a careless responder could map to another
// serial or issuer, asked about a revoked certificate. None is answered "good": a serial in a non-minimal encoding
// (a leading zero octet) is malformed and never looked up, hashes of one algorithm under another's OID are another
// issuer's, and every hash algorithm the responder knows answers "revoked" with its own CertID.
func TestRespond_CertIDTricksNeverAnswerGood(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(0x5a5a5a)
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: time.Now(), Reason: 1})

	type entry struct{ Cert asn1.RawValue }
	type tbs struct{ RequestList []entry }
	type req struct{ TBSRequest tbs }
	encode := func(alg crypto.Hash, nameHash, keyHash []byte, serialDER []byte) []byte {
		id, err := asn1.Marshal(struct {
			HashAlgorithm pkix.AlgorithmIdentifier
			NameHash      []byte
			KeyHash       []byte
			Serial        asn1.RawValue
		}{pkix.AlgorithmIdentifier{Algorithm: hashOIDs[alg], Parameters: asn1.NullRawValue}, nameHash, keyHash,
			asn1.RawValue{FullBytes: serialDER}})
		if err != nil {
			t.Fatal(err)
		}
		der, err := asn1.Marshal(req{tbs{[]entry{{asn1.RawValue{FullBytes: id}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	name, key := f.ca.cert.RawSubject, issuerKeyBits(t, f.ca.cert)
	minimal := []byte{0x02, 0x03, 0x5a, 0x5a, 0x5a}

	// The encoder is right: the minimal spelling with SHA-1 is the revoked certificate.
	if r := mustParse(t, mustRespond(t, f.r, encode(crypto.SHA1, hashOf(crypto.SHA1, name), hashOf(crypto.SHA1, key), minimal)), f.ca.cert); r.Status != xocsp.Revoked {
		t.Fatalf("minimal SHA-1 CertID: status %d, want revoked", r.Status)
	}
	calls := f.src.calls.Load()
	leadingZero := encode(crypto.SHA1, hashOf(crypto.SHA1, name), hashOf(crypto.SHA1, key), []byte{0x02, 0x04, 0x00, 0x5a, 0x5a, 0x5a})
	if resp, err := f.r.Respond(t.Context(), leadingZero); !errors.Is(err, ErrMalformedRequest) || !bytes.Equal(resp, xocsp.MalformedRequestErrorResponse) {
		t.Errorf("serial with a leading zero octet: err = %v; want malformedRequest", err)
	}
	if n := f.src.calls.Load(); n != calls {
		t.Errorf("a non-minimal serial was looked up (%d lookups)", n-calls)
	}
	for label, der := range map[string][]byte{
		"SHA-256 hashes under SHA-1":       encode(crypto.SHA1, hashOf(crypto.SHA256, name), hashOf(crypto.SHA256, key), minimal),
		"SHA-1 hashes under SHA-256":       encode(crypto.SHA256, hashOf(crypto.SHA1, name), hashOf(crypto.SHA1, key), minimal),
		"SHA-256 name, SHA-1 key hash":     encode(crypto.SHA256, hashOf(crypto.SHA256, name), hashOf(crypto.SHA1, key), minimal),
		"name and key hashes swapped":      encode(crypto.SHA1, hashOf(crypto.SHA1, key), hashOf(crypto.SHA1, name), minimal),
		"SHA-1 key hash of the whole SPKI": encode(crypto.SHA1, hashOf(crypto.SHA1, name), hashOf(crypto.SHA1, f.ca.cert.RawSubjectPublicKeyInfo), minimal),
	} {
		if resp, err := f.r.Respond(t.Context(), der); !errors.Is(err, ErrUnauthorized) || !bytes.Equal(resp, xocsp.UnauthorizedErrorResponse) {
			t.Errorf("%s: err = %v; want unauthorized", label, err)
		}
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		r := mustParse(t, mustRespond(t, f.r, encode(h, hashOf(h, name), hashOf(h, key), minimal)), f.ca.cert)
		if r.Status != xocsp.Revoked || r.IssuerHash != h || r.SerialNumber.Cmp(serial) != 0 {
			t.Errorf("%v CertID: status %d, CertID hash %v, serial %v; want revoked under %v", h, r.Status, r.IssuerHash, r.SerialNumber, h)
		}
	}
}
