// Package bertest holds hostile BER inputs for the tests and fuzz seeds of every parser behind ber.Check.
package bertest

import "bytes"

// EdgeCases are inputs that once panicked smallstep/pkcs7, or that probe ber.Check's bounds.
func EdgeCases() [][]byte {
	return [][]byte{
		{0x30, 0x82},
		{0x30, 0x81},
		{0x1f, 0x80},
		{0x30, 0x84, 0x01},
		{0x30, 0x80},
		{0x30, 0x80, 0x00, 0x00},
		{0x04, 0x80, 0x00, 0x00},
		{0x30, 0x85, 0x01, 0x02, 0x03, 0x04, 0x05},
		{0x3f, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00},
		NestingBomb(64),
		EmptyFirstBomb(64),
		RewindBomb(6, 64),
		OverrunBomb(6),
	}
}

// RewindBomb nests "30 02 30 80 <inner> 00 00" n times around an OCTET STRING of base bytes: a definite SEQUENCE
// of length 2 whose one child, an indefinite SEQUENCE, runs past it. Both pkcs7 libraries read what the child
// overran again as the parent's siblings, doubling their work and output per level.
func RewindBomb(n, base int) []byte {
	x := append([]byte{0x04, 0x82, byte(base >> 8), byte(base)}, make([]byte, base)...)
	for range n {
		x = append(append([]byte{0x30, 0x02, 0x30, 0x80}, x...), 0x00, 0x00)
	}
	return append(append([]byte{0x30, 0x80}, x...), 0x00, 0x00)
}

// OverrunBomb nests "30 80 30 02 30 80 <inner> 00 00" n times around a NULL: RewindBomb's overrun, each level
// inside an indefinite SEQUENCE. 19 levels are 154 bytes that go.mozilla.org/pkcs7 turned into half a gigabyte.
func OverrunBomb(n int) []byte {
	x := []byte{0x05, 0x00}
	for range n {
		x = append(append([]byte{0x30, 0x80, 0x30, 0x02, 0x30, 0x80}, x...), 0x00, 0x00)
	}
	return x
}

// EmptyFirstBomb nests depth indefinite-length SEQUENCEs whose first element is 00 00: smallstep/pkcs7 reads that
// as an element, not as the end of the frame, and descends into the next 30 80.
func EmptyFirstBomb(depth int) []byte {
	return append([]byte{0x30, 0x80}, bytes.Repeat([]byte{0x00, 0x00, 0x30, 0x80}, depth)...)
}

// NestingBomb is depth indefinite-length SEQUENCEs, each closed.
func NestingBomb(depth int) []byte {
	return append(bytes.Repeat([]byte{0x30, 0x80}, depth), bytes.Repeat([]byte{0x00, 0x00}, depth)...)
}

// DefiniteWrap puts b in one definite-length SEQUENCE.
func DefiniteWrap(b []byte) []byte {
	return append([]byte{0x30, 0x83, byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

// DefiniteNest is depth definite-length SEQUENCEs around an INTEGER.
func DefiniteNest(depth int) []byte {
	b := []byte{0x02, 0x01, 0x01}
	for range depth {
		if len(b) < 128 {
			b = append([]byte{0x30, byte(len(b))}, b...)
		} else {
			b = append([]byte{0x30, 0x81, byte(len(b))}, b...)
		}
	}
	return b
}
