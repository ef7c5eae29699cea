package crl

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"
	"time"
)

// BenchmarkGenerate100k measures one full CRL generation (validate, sort, sign, verify) of 100,000 entries with
// an RSA-3072 CA key — the SPEC §6 target is < 5 s.
func BenchmarkGenerate100k(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		b.Fatal(err)
	}
	ca := newTestCA(b, key)
	src := &memSource{}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src.entries = make([]Entry, 100_000)
	for i := range src.entries {
		serial := make([]byte, 16)
		if _, err := rand.Read(serial); err != nil {
			b.Fatal(err)
		}
		serial[0] |= 0x40
		src.entries[i] = Entry{
			Serial:    new(big.Int).SetBytes(serial),
			RevokedAt: base.Add(time.Duration(i) * time.Second),
			Reason:    []int{0, 1, 4, 5, 9}[i%5],
		}
	}
	p, err := NewPublisher(ca.cert, ca.signer, src, &MemoryCounter{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var size int
	for b.Loop() {
		c, err := p.generate(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		size = len(c.DER)
	}
	b.ReportMetric(float64(size), "crl-bytes")
	if got, want := ca.signer.Calls(), int64(b.N); got != want {
		b.Fatalf("Sign calls = %d for %d generations", got, want)
	}
}
