package csrapi_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/ber/bertest"
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

// readSeed reads one file of the go-fuzz corpus format this package's seeds use.
func readSeed(t *testing.T, name string) ([]byte, bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzDecodeCSR", name))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 3 || lines[0] != "go test fuzz v1" {
		t.Fatalf("seed %s is not a corpus file", name)
	}
	body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("seed %s: %v", name, err)
	}
	cms, err := strconv.ParseBool(strings.TrimSuffix(strings.TrimPrefix(lines[2], "bool("), ")"))
	if err != nil {
		t.Fatalf("seed %s: %v", name, err)
	}
	return []byte(body), cms
}

// TestDecodeCSRSeeds pins what the seed corpus (made with openssl: an EC key, its CSR, and a CMS SignedData
// signed by a self-signed certificate for that key) must decode to, so the fuzz seeds keep covering the success
// paths and not only the refusals.
func TestDecodeCSRSeeds(t *testing.T) {
	want, _ := readSeed(t, "der")
	if _, err := policy.ParseCSR(want); err != nil {
		t.Fatalf("the DER seed is not a CSR: %v", err)
	}
	for _, name := range []string{"der", "pem", "base64-wrapped", "cms-der", "cms-base64", "cms-pem"} {
		body, cms := readSeed(t, name)
		got, err := csrapi.DecodeCSR(body, cms)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: DecodeCSR = %d bytes, %v; want the DER seed", name, len(got), err)
		}
	}
	for _, name := range []string{"csr-as-cms", "two-pem-blocks", "pem-trailing", "truncated-length", "garbage",
		"empty", "whitespace", "nested-ber", "pem-header-only", "pem-empty-block"} {
		body, cms := readSeed(t, name)
		if got, err := csrapi.DecodeCSR(body, cms); err == nil {
			t.Errorf("%s: DecodeCSR accepted it (%d bytes)", name, len(got))
		}
	}
}

// TestDecodeCSRRefusesBERBombs: a CMS body of under 200 bytes whose elements overrun their parents makes the pkcs7
// parser's BER-to-DER conversion read each overrun again, doubling per level (19 levels: 154 bytes, half a
// gigabyte and seconds of CPU; 24 levels would take the process down). The body's shape is checked before the
// parser sees it, so the refusal costs next to nothing. Not parallel: it reads the process's allocation total.
func TestDecodeCSRRefusesBERBombs(t *testing.T) {
	for name, body := range map[string][]byte{
		"overrun inside indefinite frames": bertest.OverrunBomb(19),
		"overrun inside definite frames":   bertest.RewindBomb(19, 0),
		"nesting":                          bertest.NestingBomb(5000),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := csrapi.DecodeCSR(body, true)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "BER") {
			t.Errorf("%s (%d bytes): DecodeCSR = %v, want the BER shape refused", name, len(body), err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("%s (%d bytes): refusing it allocated %d KiB", name, len(body), alloc>>10)
		}
	}
}
