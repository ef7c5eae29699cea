package csrapi_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/policy"
)

// FuzzDecodeCSR feeds arbitrary bodies to the REST body decoder (reliability.md §3.2: every untrusted parser has a
// fuzz target and a seed corpus in testdata/fuzz). It must never panic; whatever it returns must either parse as
// a CSR and go through policy, or be refused there with an error; and a valid DER CSR must come back unchanged
// however it is wrapped.
//
// Run it with: go test -run=NONE -fuzz=FuzzDecodeCSR -fuzztime=60s ./internal/csrapi
func FuzzDecodeCSR(f *testing.F) {
	// More seeds live in testdata/fuzz/FuzzDecodeCSR (DER, PEM, base64, CMS made with openssl, and broken ones).
	f.Add([]byte{0x30, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00}, true)
	f.Add([]byte("-----BEGIN PKCS7-----\n-----END PKCS7-----\n"), false)
	f.Add([]byte("MII="), false)

	prof, err := policy.ParseProfile("api", apiProfile)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, cms bool) {
		out, err := csrapi.DecodeCSR(body, cms)
		if err != nil {
			if out != nil {
				t.Fatalf("DecodeCSR returned %d bytes with error %v", len(out), err)
			}
			return
		}
		if len(out) == 0 {
			t.Fatal("DecodeCSR succeeded with an empty request")
		}
		again, err2 := csrapi.DecodeCSR(body, cms)
		if err2 != nil || !bytes.Equal(again, out) {
			t.Fatalf("DecodeCSR is not deterministic: %v", err2)
		}
		csr, err := policy.ParseCSR(out)
		if err != nil {
			if _, ok := policy.AsRejection(err); !ok {
				t.Fatalf("ParseCSR error %v is not a policy rejection", err)
			}
			return
		}
		if _, err := policy.Check(csr, prof); err != nil {
			if _, ok := policy.AsRejection(err); !ok {
				t.Fatalf("Check error %v is not a policy rejection", err)
			}
		}
		// A plain DER CSR is returned as it came, and its PEM and base64 spellings decode to the same bytes.
		if !cms && bytes.Equal(out, body) {
			for name, wrapped := range map[string][]byte{
				"PEM":    pemCSR(body),
				"base64": wrap64(body, "\r\n"),
				"raw":    []byte(base64.StdEncoding.EncodeToString(body)),
			} {
				got, err := csrapi.DecodeCSR(wrapped, false)
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("%s spelling of a DER CSR: %v (equal %v)", name, err, bytes.Equal(got, body))
				}
			}
		}
	})
}
