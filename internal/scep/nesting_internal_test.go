package scep

import (
	"errors"
	"runtime"
	"testing"

	"github.com/smallstep/pkcs7"

	"github.com/azscep/azscep/internal/ber/bertest"
)

// TestInnerNestingBounded: the depth scan covers what the message pre-scan cannot see — the EnvelopedData inside
// the SignedData's OCTET STRING — refusing deep nesting with the opaque decrypt error before any parser or
// decrypter runs (ber's tests cover the scan itself).
func TestInnerNestingBounded(t *testing.T) {
	// Decrypt answers a deeply nested envelope with the opaque decrypt error, like any other bad envelope.
	m := &PKIMessage{p7: &pkcs7.PKCS7{Content: bertest.NestingBomb(10_000)}}
	if _, err := m.Decrypt(nil, nil); !errors.Is(err, errDecrypt) {
		t.Fatalf("Decrypt of a nested envelope: %v, want the opaque decrypt error", err)
	}
}

// TestMessageShapeChecked: the message itself is checked before pkcs7 parses it, so the bombs that blow up its
// BER-to-DER conversion are refused as malformed (OverrunBomb(19) alone cost it half a gigabyte).
func TestMessageShapeChecked(t *testing.T) {
	for _, b := range [][]byte{bertest.OverrunBomb(19), bertest.RewindBomb(19, 0), bertest.NestingBomb(5000)} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ParsePKIMessage(b)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePKIMessage(%x…) = %v, want ErrMalformed", b[:8], err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("refusing %d bytes allocated %d KiB", len(b), alloc>>10)
		}
	}
}
