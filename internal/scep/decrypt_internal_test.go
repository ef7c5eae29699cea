package scep

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"testing"

	"github.com/azscep/azscep/internal/testca"
)

// spyDecrypter records how the envelope's key transport is opened and what it gave back.
type spyDecrypter struct {
	*rsa.PrivateKey
	opts []crypto.DecrypterOpts
	outs [][]byte
	errs []error
}

func (s *spyDecrypter) Decrypt(r io.Reader, ct []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	out, err := s.PrivateKey.Decrypt(r, ct, opts)
	s.opts, s.outs, s.errs = append(s.opts, opts), append(s.outs, out), append(s.errs, err)
	return out, err
}

// The RA is asked for a session key of the envelope's content-key length, so a bad PKCS#1 v1.5 padding yields a
// random key and the content is still decrypted (and fails later, with the same opaque error), instead of failing
// at once while a good padding goes on (Bleichenbacher's oracle is the difference).
func TestEnvelopeKeyTransportRejectsImplicitly(t *testing.T) {
	ca := testca.New(t, testca.Options{})
	key := testca.RSAKey(t, 0)
	c := testca.NewClient(t, key, pkix.Name{CommonName: "implicit"}, ca.RACert)
	req := c.PKCSReq(t, testca.CSR(t, key, testca.CSROptions{Subject: pkix.Name{CommonName: "implicit"}}))
	msg, err := ParsePKIMessage(req.Raw)
	if err != nil {
		t.Fatal(err)
	}
	n := contentKeyLen(msg.p7.Content)
	if n == 0 {
		t.Fatal("the content-key length of a DER envelope was not read")
	}
	raKey := ca.RAKey
	spy := &spyDecrypter{PrivateKey: raKey}
	good, err := msg.Decrypt(ca.RACert, spy)
	if err != nil {
		t.Fatalf("a good envelope: %v", err)
	}
	if o, ok := spy.opts[0].(*rsa.PKCS1v15DecryptOptions); !ok || o.SessionKeyLen != n {
		t.Fatalf("key transport opened with %#v, want PKCS#1 v1.5 with SessionKeyLen %d", spy.opts[0], n)
	}

	// The same envelope with its encrypted content key garbled, in DER and re-encoded as BER (which pkcs7 accepts
	// too): the decrypter returns a random key of the right length instead of a padding error, and the envelope
	// fails with the one opaque error. The last byte is garbled: the ciphertext stays below the modulus (one at or
	// above it is refused on public grounds alone, which tells an attacker nothing) and only the padding breaks.
	// The content is then decrypted under that random key, which now and then (about one time in a hundred) leaves
	// a valid CBC padding and a shallow enough BER prefix: Decrypt returns garbage, which the CSR parser refuses with
	// the same answer as a failed decrypt. What may never come out is the real content.
	der := append([]byte(nil), msg.p7.Content...)
	der[rsaCiphertextAt(t, der, raKey.Size())+raKey.Size()-1] ^= 0xff
	for name, env := range map[string][]byte{"DER": der, "BER": indefinite(t, der)} {
		msg.p7.Content = env
		spy = &spyDecrypter{PrivateKey: raKey}
		plain, err := msg.Decrypt(ca.RACert, spy)
		if err != nil && !errors.Is(err, errDecrypt) || err == nil && bytes.Equal(plain, good) {
			t.Fatalf("%s: a garbled key transport: %v, want the opaque decrypt error (or garbage)", name, err)
		}
		if len(spy.outs) != 1 || spy.errs[0] != nil || len(spy.outs[0]) != n {
			t.Fatalf("%s: decrypter gave %d bytes and %v for a bad padding, want a random key of %d bytes", name,
				len(spy.outs[0]), spy.errs[0], n)
		}
	}
}

// rsaCiphertextAt is the offset of the first content byte of the OCTET STRING of size n (the encrypted content key).
func rsaCiphertextAt(t *testing.T, der []byte, n int) int {
	t.Helper()
	full, err := asn1.Marshal(make([]byte, n))
	if err != nil {
		t.Fatal(err)
	}
	hdr := string(full[:len(full)-n])
	for i := 0; i+len(hdr)+n <= len(der); i++ {
		if string(der[i:i+len(hdr)]) == hdr {
			return i + len(hdr)
		}
	}
	t.Fatal("no RSA-sized OCTET STRING in the envelope")
	return 0
}

// indefinite re-encodes a DER element's outer length as indefinite (BER).
func indefinite(t *testing.T, der []byte) []byte {
	t.Helper()
	var v asn1.RawValue
	if _, err := asn1.Unmarshal(der, &v); err != nil {
		t.Fatal(err)
	}
	return append(append([]byte{der[0], 0x80}, v.Bytes...), 0x00, 0x00)
}

// envelopeWith is a DER ContentInfo holding an EnvelopedData whose content is encrypted with alg.
func envelopeWith(t *testing.T, alg asn1.ObjectIdentifier) []byte {
	t.Helper()
	type eci struct {
		ContentType asn1.ObjectIdentifier
		Algorithm   pkix.AlgorithmIdentifier
	}
	type enveloped struct {
		Version    int
		Recipients []asn1.RawValue `asn1:"set"`
		Content    eci
	}
	type contentInfo struct {
		Type    asn1.ObjectIdentifier
		Content enveloped `asn1:"explicit,tag:0"`
	}
	der, err := asn1.Marshal(contentInfo{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}, Content: enveloped{
		Recipients: []asn1.RawValue{{FullBytes: []byte{0x30, 0x00}}},
		Content:    eci{ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}, Algorithm: pkix.AlgorithmIdentifier{Algorithm: alg}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestContentKeyLen(t *testing.T) {
	for _, tc := range []struct {
		alg  asn1.ObjectIdentifier
		want int
	}{
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}, 16},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, 32},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}, 24},
		{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}, 8},
		{asn1.ObjectIdentifier{1, 2, 3, 4}, 0}, // unknown: the decrypter is asked as pkcs7 asks it
	} {
		if got := contentKeyLen(envelopeWith(t, tc.alg)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.alg, got, tc.want)
		}
	}
	// BER, as pkcs7 accepts it: the same envelope with indefinite lengths reads the same.
	if got := contentKeyLen(indefinite(t, envelopeWith(t, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}))); got != 32 {
		t.Errorf("BER envelope: %d, want 32", got)
	}
	if got := contentKeyLen([]byte{0x30, 0x80, 0x00, 0x00}); got != 0 {
		t.Errorf("an empty BER sequence: %d, want 0", got)
	}
}
