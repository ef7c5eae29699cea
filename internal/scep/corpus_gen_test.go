//go:build corpusgen

package scep_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/azscep/azscep/internal/testca"
)

// TestGenerateFuzzCorpus rewrites the checked-in seed corpora under testdata/fuzz from a live exchange with a
// test server. It only builds with the corpusgen tag:
//
//	go test -tags corpusgen -run TestGenerateFuzzCorpus ./internal/scep
func TestGenerateFuzzCorpus(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "fuzz-seed")
	req := c.PKCSReq(t, csrFor(t, c, "fuzz-seed"))
	resp, certRep := e.do(t, "POST", e.url(epStatic)+"?operation=PKIOperation", "application/x-pki-message", req.Raw)
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	req.ParseCertRep(t, certRep, e.ca.RACert)
	bad := c.Message(t, testca.Message{Type: "99", Content: []byte("not a CSR"), TransactionID: "fuzz-seed-failure"})
	resp, failBody := e.do(t, "POST", e.url(epStatic)+"?operation=PKIOperation", "application/x-pki-message", bad.Raw)
	wantFailure(t, e.certRep(t, resp, failBody, bad), testca.FailBadRequest)

	bomb := append(bytes.Repeat([]byte{0x30, 0x80}, 1024), bytes.Repeat([]byte{0, 0}, 1024)...)
	ber := map[string][]byte{
		"ber-30-82":    {0x30, 0x82},
		"ber-30-81":    {0x30, 0x81},
		"ber-1f-80":    {0x1f, 0x80},
		"ber-30-84-01": {0x30, 0x84, 0x01},
		"nesting-bomb": bomb,
	}
	bytesCorpus := map[string][]byte{"pkcsreq": req.Raw, "certrep-success": certRep, "certrep-failure": failBody}
	for k, v := range ber {
		bytesCorpus[k] = v
	}
	for _, dir := range []string{"testdata/fuzz/FuzzParsePKIMessage", "../ber/testdata/fuzz/FuzzCheck"} {
		for name, data := range bytesCorpus {
			write(t, dir, name, fmt.Sprintf("[]byte(%q)\n", data))
		}
	}
	b64 := base64.StdEncoding.EncodeToString(req.Raw)
	write(t, "testdata/fuzz/FuzzDecodeGETMessage", "pkcsreq-get",
		fmt.Sprintf("string(%q)\n[]byte(%q)\n", "operation=PKIOperation&message="+b64, req.Raw))
	for name, data := range ber {
		write(t, "testdata/fuzz/FuzzDecodeGETMessage", name, fmt.Sprintf("string(%q)\n[]byte(%q)\n",
			"operation=PKIOperation&message="+base64.StdEncoding.EncodeToString(data), data))
	}
}

// write puts one seed in dir, a fuzz target's corpus directory (FuzzCheck's is in the ber package, which
// guards this package's parser).
func write(t *testing.T, dir, name, values string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+values), 0o644); err != nil {
		t.Fatal(err)
	}
}
