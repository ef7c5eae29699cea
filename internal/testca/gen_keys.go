//go:build ignore

// gen_keys regenerates testdata/rsa2048.pem, the fixture RSA keys behind RSAKey. Run it with
// `go run gen_keys.go` from this directory; the keys are test fixtures and protect nothing.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log"
	"os"
)

const count = 48

func main() {
	var out []byte
	for range count {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			log.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			log.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	}
	if err := os.WriteFile("testdata/rsa2048.pem", out, 0o644); err != nil {
		log.Fatal(err)
	}
}
