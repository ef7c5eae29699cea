package scep

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/ber"
	"github.com/azscep/azscep/internal/ber/bertest"
)

// The seed corpora live in testdata/fuzz/<target>: a real PKCSReq and CertRep (made with internal/testca, see
// corpus_gen_test.go) and the BER inputs that crashed pkcs7 before v0.2.3 (reliability.md §3.2). The edge cases
// of bertest are added here so the targets keep them even if the corpus files change. Run a target with e.g.
//
//	go test -run=NONE -fuzz=FuzzParsePKIMessage -fuzztime=60s ./internal/scep

func FuzzParsePKIMessage(f *testing.F) {
	for _, b := range bertest.EdgeCases() {
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
	for _, b := range bertest.EdgeCases() {
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

func FuzzContentKeyLen(f *testing.F) {
	for _, b := range bertest.EdgeCases() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if ber.CheckDepth(data) != nil {
			return // Decrypt refuses these before reading the envelope
		}
		switch n := contentKeyLen(data); n {
		case 0, 8, 16, 24, 32:
		default:
			t.Fatalf("content-key length %d", n)
		}
	})
}
