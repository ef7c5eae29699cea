package scep

import (
	"bytes"
	"errors"
	"testing"

	"github.com/smallstep/pkcs7"
)

// TestInnerNestingBounded: the pre-scan covers what the message pre-scan cannot see — the EnvelopedData inside
// the SignedData's OCTET STRING — and the decrypted content, refusing deep nesting with the opaque decrypt error
// before any parser or decrypter runs, while leaving other malformed input to the parsers.
func TestInnerNestingBounded(t *testing.T) {
	deep := func(n int) []byte {
		return append(bytes.Repeat([]byte{0x30, 0x80}, n), bytes.Repeat([]byte{0, 0}, n)...)
	}
	if err := maxDepthOK(deep(maxNesting + 1)); err == nil {
		t.Fatal("nesting one level over the bound passed")
	}
	if err := maxDepthOK(deep(maxNesting)); err != nil {
		t.Fatalf("nesting at the bound refused: %v", err)
	}
	// A definite length that lies about the input still has its depth counted.
	lying := bytes.Repeat([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, maxNesting+1)
	if err := maxDepthOK(lying); err == nil {
		t.Fatal("deep nesting behind over-long lengths passed")
	}
	// Trailing elements are scanned too, and garbage is not the pre-scan's business.
	if err := maxDepthOK(append([]byte{0x02, 0x01, 0x00}, deep(maxNesting+1)...)); err == nil {
		t.Fatal("deep nesting after a first element passed")
	}
	// A child running past its definite parent is refused here too: pkcs7 would read the overrun again, doubling
	// per level (the envelope is parsed by pkcs7 as well).
	if err := maxDepthOK(rewindBomb(15, 50000)); err == nil {
		t.Fatal("children running past their parents passed the depth scan")
	}
	if err := maxDepthOK([]byte("certainly not BER")); err != nil {
		t.Fatalf("garbage refused by the depth scan: %v", err)
	}

	// Decrypt answers a deeply nested envelope with the opaque decrypt error, like any other bad envelope.
	m := &PKIMessage{p7: &pkcs7.PKCS7{Content: deep(10_000)}}
	if _, err := m.Decrypt(nil, nil); !errors.Is(err, errDecrypt) {
		t.Fatalf("Decrypt of a nested envelope: %v, want the opaque decrypt error", err)
	}
}
