// Package ber guards the parsers of CMS (pkcs7) against hostile BER (X.690) before they see it. Both pkcs7
// libraries the service uses convert BER to DER recursively, and both can be made to nest without bound or to
// double their work per level (reliability.md §3.3): every untrusted CMS body passes Check first.
package ber

import (
	"errors"
	"fmt"
)

// MaxNesting bounds BER nesting before a recursive parser sees the input. SCEP messages and CMS-wrapped CSRs
// nest about a dozen levels deep.
const MaxNesting = 32

// Check walks b's BER headers iteratively and refuses what would make a BER-to-DER conversion blow up: nesting
// deeper than MaxNesting, and an element that crosses the end of the element holding it. It also refuses
// malformed headers and anything after the first top-level element: pkcs7.Parse silently ignores trailing data,
// and a message must be exactly one ContentInfo. Call it before any pkcs7 parser sees untrusted input.
func Check(b []byte) error { return scan(b, true) }

// CheckDepth refuses only what Check refuses for the parser's sake (deep nesting, an element crossing its
// parent's end); anything else malformed is left to the real parser, which refuses it with its own error.
func CheckDepth(b []byte) error { return scan(b, false) }

// scan walks b's BER headers without recursion. strict refuses malformed headers and trailing data; otherwise
// the walk stops at the first malformed header and only excessive nesting is an error.
func scan(b []byte, strict bool) error {
	malformed := func(msg string) error {
		if strict {
			return errors.New(msg)
		}
		return nil
	}
	// end < 0: indefinite length. kids counts the elements read in the frame: the parser after this scan
	// (smallstep/pkcs7's BER conversion) reads an indefinite frame's first element before it looks for the
	// end-of-contents octets, so 00 00 there is an element (tag 0, length 0), not the frame's end; counting it as
	// the end would let "30 80 00 00 30 80 …" nest without limit behind a scan that sees two levels.
	type frame struct{ end, kids int }
	var stack []frame
	// bound is where the innermost definite-length frame ends (the input's end at the top level). No element may
	// cross it, in either mode: pkcs7's BER conversion does not hold a child inside its parent's length but reads
	// what the child overran again as the parent's next siblings, so "30 02 30 80 …", nested, doubles its work and
	// output per level (50 KB became 800 MB of DER and seconds of CPU).
	bound := func() int {
		for k := len(stack) - 1; k >= 0; k-- {
			if stack[k].end >= 0 {
				return stack[k].end
			}
		}
		return len(b)
	}
	errCross := errors.New("BER element crosses the end of the element that holds it")
	i := 0
	seenTop := false
	for i < len(b) {
		// Close the definite-length frames that end here. An indefinite frame still open where its definite
		// parent ends crosses that end.
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.end < 0 {
				if i >= bound() {
					return errCross
				}
				break
			}
			if i < top.end {
				break
			}
			if i > top.end {
				return errCross
			}
			stack = stack[:len(stack)-1]
		}
		if i+1 < len(b) && b[i] == 0 && b[i+1] == 0 && len(stack) > 0 && stack[len(stack)-1].end < 0 &&
			stack[len(stack)-1].kids > 0 {
			stack = stack[:len(stack)-1] // end-of-contents of an indefinite frame
			i += 2
			if i > bound() {
				return errCross
			}
			continue
		}
		if len(stack) > 0 {
			stack[len(stack)-1].kids++
		}
		if len(stack) == 0 {
			if seenTop && strict {
				return errors.New("trailing data after the message")
			}
			seenTop = true
		}
		tag := b[i]
		i++
		if tag&0x1f == 0x1f { // high tag number
			for i < len(b) && b[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if i >= len(b) {
			return malformed("truncated BER header")
		}
		length, start, ok := Length(b, i, tag)
		if !ok {
			return malformed("bad BER length")
		}
		i = start
		limit := bound()
		if length >= 0 && i+length > limit && limit < len(b) {
			return errCross
		}
		if tag&0x20 != 0 { // constructed: descend
			end := -1
			if length >= 0 {
				end = i + length
				if end > len(b) {
					if strict {
						return errors.New("BER length beyond input")
					}
					end = len(b) // keep counting depth inside: a lenient parser might still descend
				}
			}
			stack = append(stack, frame{end: end})
			if len(stack) > MaxNesting {
				return fmt.Errorf("BER nesting deeper than %d", MaxNesting)
			}
			continue
		}
		if length < 0 || i+length > len(b) {
			return malformed("BER length beyond input")
		}
		i += length
	}
	return nil
}

// Length reads the length octets at b[i] of an element with tag: the length (-1 for the indefinite form, which
// only a constructed element may have) and where the contents start. Lengths of more than four octets are refused.
func Length(b []byte, i int, tag byte) (length, start int, ok bool) {
	if i >= len(b) {
		return 0, 0, false
	}
	l := int(b[i])
	i++
	switch {
	case l < 0x80:
		return l, i, true
	case l == 0x80:
		return -1, i, tag&0x20 != 0
	}
	n := l & 0x7f
	if n > 4 || i+n > len(b) {
		return 0, 0, false
	}
	for k := 0; k < n; k++ {
		length = length<<8 | int(b[i+k])
	}
	return length, i + n, true
}
