package scep

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
)

// The seed corpora live in testdata/fuzz/<target>: a real PKCSReq and CertRep (made with internal/testca, see
// corpus_gen_test.go) and the BER inputs that crashed pkcs7 before v0.2.3 (reliability.md §3.2). The same edge
// cases are added here so the targets keep them even if the corpus files change. Run a target with e.g.
//
//	go test -run=NONE -fuzz=FuzzParsePKIMessage -fuzztime=60s ./internal/scep

// berEdgeCases are inputs that once panicked smallstep/pkcs7 or that probe checkNesting's bounds.
var berEdgeCases = [][]byte{
	{0x30, 0x82},
	{0x30, 0x81},
	{0x1f, 0x80},
	{0x30, 0x84, 0x01},
	{0x30, 0x80},
	{0x30, 0x80, 0x00, 0x00},
	{0x04, 0x80, 0x00, 0x00},
	{0x30, 0x85, 0x01, 0x02, 0x03, 0x04, 0x05},
	{0x3f, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00},
	nestingBomb(64),
	emptyFirstBomb(64),
	rewindBomb(6, 64),
}

// rewindBomb nests "30 02 30 80 <inner> 00 00" n times around an OCTET STRING of base bytes: a definite SEQUENCE
// of length 2 whose one child, an indefinite SEQUENCE, runs past it. smallstep/pkcs7 reads what the child overran
// again as the parent's siblings, doubling its work and output per level.
func rewindBomb(n, base int) []byte {
	x := append([]byte{0x04, 0x82, byte(base >> 8), byte(base)}, make([]byte, base)...)
	for range n {
		x = append(append([]byte{0x30, 0x02, 0x30, 0x80}, x...), 0x00, 0x00)
	}
	return append(append([]byte{0x30, 0x80}, x...), 0x00, 0x00)
}

// emptyFirstBomb nests depth indefinite-length SEQUENCEs whose first element is 00 00: smallstep/pkcs7 reads that
// as an element, not as the end of the frame, and descends into the next 30 80.
func emptyFirstBomb(depth int) []byte {
	return append([]byte{0x30, 0x80}, bytes.Repeat([]byte{0x00, 0x00, 0x30, 0x80}, depth)...)
}

func nestingBomb(depth int) []byte {
	return append(bytes.Repeat([]byte{0x30, 0x80}, depth), bytes.Repeat([]byte{0x00, 0x00}, depth)...)
}

func FuzzParsePKIMessage(f *testing.F) {
	for _, b := range berEdgeCases {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := ParsePKIMessage(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// Whatever parses must be answerable with a CertRep: the fields the server echoes are present and sane.
		if msg.TransactionID == "" || len(msg.TransactionID) > 256 || len(msg.SenderNonce) != 16 ||
			msg.SignerCert == nil || msg.MessageType == "" {
			t.Fatalf("accepted a message without the fields a CertRep needs: %+v", msg)
		}
	})
}

func FuzzDecodeGETMessage(f *testing.F) {
	for _, b := range berEdgeCases {
		f.Add("operation=PKIOperation&message="+base64.StdEncoding.EncodeToString(b), b)
	}
	f.Add("message=%zz", []byte{0xfb, 0xff})
	f.Add("message=a%2Bb%2F%3D", []byte("\x00"))
	f.Add("message=", []byte{})
	f.Fuzz(func(t *testing.T, rawQuery string, data []byte) {
		// Arbitrary queries must not panic.
		if b, err := DecodeGETMessage(rawQuery); err == nil && len(b) == 0 {
			t.Fatal("decoded an empty message without an error")
		}
		if len(data) == 0 {
			return
		}
		// Every way clients and the Functions host mangle base64 decodes back to the same bytes.
		std := base64.StdEncoding.EncodeToString(data)
		for _, q := range []string{
			std,
			url.QueryEscape(std),
			strings.ReplaceAll(url.QueryEscape(std), "%2B", "%20"),
			strings.ReplaceAll(std, "+", " "),
			strings.ReplaceAll(std, "=", "%3D"),
		} {
			got, err := DecodeGETMessage("operation=PKIOperation&message=" + q)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("message=%q: got %x, %v; want %x", q, got, err, data)
			}
		}
	})
}

func FuzzCheckNesting(f *testing.F) {
	for _, b := range berEdgeCases {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkNesting(data) // must not panic or loop
		// Whatever data is, wrapping it in more indefinite-length levels than allowed is refused before the
		// recursive pkcs7 parser could see it.
		wrapped := append(append(bytes.Repeat([]byte{0x30, 0x80}, maxNesting+1), data...),
			bytes.Repeat([]byte{0x00, 0x00}, maxNesting+1)...)
		if checkNesting(wrapped) == nil {
			t.Fatalf("accepted %d levels of nesting around %x", maxNesting+1, data)
		}
		// Anything checkNesting accepts, pkcs7 parses without blowing its stack (errors are fine).
		if checkNesting(data) == nil {
			_, _ = ParsePKIMessage(data)
		}
	})
}

func TestCheckNesting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"empty sequence", []byte{0x30, 0x00}, true},
		{"indefinite, closed", []byte{0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00}, true},
		{"at the limit", nestingBomb(maxNesting), true},
		{"one beyond", nestingBomb(maxNesting + 1), false},
		{"a bomb", nestingBomb(16000), false},
		{"00 00 first in each frame, beyond", emptyFirstBomb(maxNesting + 1), false},
		{"00 00 first in each frame, a bomb in a definite SEQUENCE", definiteWrap(emptyFirstBomb(15000)), false},
		{"00 00 first, then closed", []byte{0x30, 0x80, 0x00, 0x00, 0x00, 0x00}, true},
		{"a child running past its definite parent, nested", rewindBomb(15, 50000), false},
		{"a primitive running past its definite parent", []byte{0x30, 0x03, 0x04, 0x02, 0x00, 0x00}, false},
		{"a definite child running past its parent", []byte{0x30, 0x04, 0x30, 0x03, 0x02, 0x01, 0x05}, false},
		{"an indefinite child inside its definite parent", []byte{0x30, 0x07, 0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00}, true},
		{"an end-of-contents straddling its parent's end", []byte{0x30, 0x06, 0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00}, false},
		{"definite nesting beyond", definiteNest(maxNesting + 1), false},
		{"definite nesting at the limit", definiteNest(maxNesting), true},
		{"30 82", []byte{0x30, 0x82}, false},
		{"1F 80", []byte{0x1f, 0x80}, false},
		{"30 84 01", []byte{0x30, 0x84, 0x01}, false},
		{"length beyond input", []byte{0x04, 0x05, 0x01}, false},
		{"five length octets", []byte{0x30, 0x85, 0, 0, 0, 0, 1}, false},
		{"indefinite primitive", []byte{0x04, 0x80, 0x00, 0x00}, false},
		{"trailing element", []byte{0x30, 0x00, 0x30, 0x00}, false},
		{"trailing byte", []byte{0x30, 0x00, 0x00}, false},
	} {
		if err := checkNesting(tc.in); (err == nil) != tc.ok {
			t.Errorf("%s: checkNesting = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// definiteWrap puts b in one definite-length SEQUENCE.
func definiteWrap(b []byte) []byte {
	return append([]byte{0x30, 0x83, byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

// definiteNest is depth definite-length SEQUENCEs around an INTEGER.
func definiteNest(depth int) []byte {
	b := []byte{0x02, 0x01, 0x01}
	for i := 0; i < depth; i++ {
		if len(b) < 128 {
			b = append([]byte{0x30, byte(len(b))}, b...)
		} else {
			b = append([]byte{0x30, 0x81, byte(len(b))}, b...)
		}
	}
	return b
}

func FuzzContentKeyLen(f *testing.F) {
	for _, b := range berEdgeCases {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if maxDepthOK(data) != nil {
			return // Decrypt refuses these before reading the envelope
		}
		switch n := contentKeyLen(data); n {
		case 0, 8, 16, 24, 32:
		default:
			t.Fatalf("content-key length %d", n)
		}
	})
}
