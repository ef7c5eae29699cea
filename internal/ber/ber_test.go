package ber_test

import (
	"bytes"
	"testing"

	"github.com/smallstep/pkcs7"
	mozpkcs7 "go.mozilla.org/pkcs7"

	"github.com/azscep/azscep/internal/ber"
	"github.com/azscep/azscep/internal/ber/bertest"
)

// The seed corpus lives in testdata/fuzz/FuzzCheck; bertest.EdgeCases are added here so the target keeps them even
// if the corpus files change. Run it with
//
//	go test -run=NONE -fuzz=FuzzCheck -fuzztime=60s ./internal/ber
func FuzzCheck(f *testing.F) {
	for _, b := range bertest.EdgeCases() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ber.Check(data) // must not panic or loop
		// Whatever data is, wrapping it in more indefinite-length levels than allowed is refused before a
		// recursive parser could see it.
		wrapped := append(append(bytes.Repeat([]byte{0x30, 0x80}, ber.MaxNesting+1), data...),
			bytes.Repeat([]byte{0x00, 0x00}, ber.MaxNesting+1)...)
		if ber.Check(wrapped) == nil {
			t.Fatalf("accepted %d levels of nesting around %x", ber.MaxNesting+1, data)
		}
		// Anything Check accepts, both pkcs7 libraries parse without blowing their stacks (errors are fine).
		if ber.Check(data) == nil {
			_, _ = pkcs7.Parse(data)
			_, _ = mozpkcs7.Parse(data)
		}
	})
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"empty sequence", []byte{0x30, 0x00}, true},
		{"indefinite, closed", []byte{0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00}, true},
		{"at the limit", bertest.NestingBomb(ber.MaxNesting), true},
		{"one beyond", bertest.NestingBomb(ber.MaxNesting + 1), false},
		{"a bomb", bertest.NestingBomb(16000), false},
		{"00 00 first in each frame, beyond", bertest.EmptyFirstBomb(ber.MaxNesting + 1), false},
		{"00 00 first in each frame, a bomb in a definite SEQUENCE", bertest.DefiniteWrap(bertest.EmptyFirstBomb(15000)), false},
		{"00 00 first, then closed", []byte{0x30, 0x80, 0x00, 0x00, 0x00, 0x00}, true},
		{"a child running past its definite parent, nested", bertest.RewindBomb(15, 50000), false},
		{"a child running past its definite parent, small", bertest.RewindBomb(19, 0), false},
		{"a child running past its definite parent, inside indefinite frames", bertest.OverrunBomb(19), false},
		{"a primitive running past its definite parent", []byte{0x30, 0x03, 0x04, 0x02, 0x00, 0x00}, false},
		{"a definite child running past its parent", []byte{0x30, 0x04, 0x30, 0x03, 0x02, 0x01, 0x05}, false},
		{"an indefinite child inside its definite parent", []byte{0x30, 0x07, 0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00}, true},
		{"an end-of-contents straddling its parent's end", []byte{0x30, 0x06, 0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00}, false},
		{"definite nesting beyond", bertest.DefiniteNest(ber.MaxNesting + 1), false},
		{"definite nesting at the limit", bertest.DefiniteNest(ber.MaxNesting), true},
		{"30 82", []byte{0x30, 0x82}, false},
		{"1F 80", []byte{0x1f, 0x80}, false},
		{"30 84 01", []byte{0x30, 0x84, 0x01}, false},
		{"length beyond input", []byte{0x04, 0x05, 0x01}, false},
		{"five length octets", []byte{0x30, 0x85, 0, 0, 0, 0, 1}, false},
		{"indefinite primitive", []byte{0x04, 0x80, 0x00, 0x00}, false},
		{"trailing element", []byte{0x30, 0x00, 0x30, 0x00}, false},
		{"trailing byte", []byte{0x30, 0x00, 0x00}, false},
	} {
		if err := ber.Check(tc.in); (err == nil) != tc.ok {
			t.Errorf("%s: Check = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestCheckDepth: the lenient scan, for content a parser reads after the message's own scan (an envelope inside an
// OCTET STRING, a decrypted payload), refuses deep nesting and children crossing their parents, and leaves other
// malformed input to the parsers.
func TestCheckDepth(t *testing.T) {
	t.Parallel()
	if err := ber.CheckDepth(bertest.NestingBomb(ber.MaxNesting + 1)); err == nil {
		t.Fatal("nesting one level over the bound passed")
	}
	if err := ber.CheckDepth(bertest.NestingBomb(ber.MaxNesting)); err != nil {
		t.Fatalf("nesting at the bound refused: %v", err)
	}
	// A definite length that lies about the input still has its depth counted.
	lying := bytes.Repeat([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, ber.MaxNesting+1)
	if err := ber.CheckDepth(lying); err == nil {
		t.Fatal("deep nesting behind over-long lengths passed")
	}
	// Trailing elements are scanned too, and garbage is not the scan's business.
	if err := ber.CheckDepth(append([]byte{0x02, 0x01, 0x00}, bertest.NestingBomb(ber.MaxNesting+1)...)); err == nil {
		t.Fatal("deep nesting after a first element passed")
	}
	if err := ber.CheckDepth(bertest.RewindBomb(15, 50000)); err == nil {
		t.Fatal("children running past their parents passed the depth scan")
	}
	if err := ber.CheckDepth([]byte("certainly not BER")); err != nil {
		t.Fatalf("garbage refused by the depth scan: %v", err)
	}
}
