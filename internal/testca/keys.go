package testca

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	_ "embed" // the fixture keys
	"encoding/pem"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

//go:generate go run gen_keys.go

// fixturePEM holds pre-generated RSA-2048 keys. Generating one under the race detector takes seconds, and
// almost every SCEP test needs several (the RA, each device's signer), so the suite would blow its time budget
// on key generation alone. These keys are public test fixtures: never trust anything they sign.
//
//go:embed testdata/rsa2048.pem
var fixturePEM []byte

// DeviceKeys is how many fixture keys RSAKey serves; indices from DeviceKeys on are generated on first use.
// The fixtures after them are reserved for New, so a test's device key never equals a CA's or RA's key.
const DeviceKeys = 32

var (
	fixtureOnce sync.Once
	fixtures    []*rsa.PrivateKey
	fixtureErr  error

	generatedMu sync.Mutex
	generated   = map[int]*rsa.PrivateKey{}

	caCounter  atomic.Int64
	uniqueNext atomic.Int64
)

func loadFixtures() ([]*rsa.PrivateKey, error) {
	fixtureOnce.Do(func() {
		rest := fixturePEM
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				fixtureErr = fmt.Errorf("testca: parsing fixture key %d: %w", len(fixtures), err)
				return
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				fixtureErr = fmt.Errorf("testca: fixture key %d is %T, not RSA", len(fixtures), k)
				return
			}
			fixtures = append(fixtures, rk)
		}
		if len(fixtures) <= DeviceKeys {
			fixtureErr = fmt.Errorf("testca: only %d fixture keys, want more than %d", len(fixtures), DeviceKeys)
		}
	})
	return fixtures, fixtureErr
}

// RSAKey returns the n-th RSA-2048 test key (n ≥ 0). The same n gives the same key for the whole process, and
// different n give different keys, so a test that needs two devices asks for RSAKey(t, 0) and RSAKey(t, 1).
// Tests that must not share state across tests should not rely on a key being unused elsewhere: give every
// test its own store instead.
func RSAKey(t testing.TB, n int) *rsa.PrivateKey {
	t.Helper()
	if n < 0 {
		t.Fatalf("testca: negative key index %d", n)
	}
	keys, err := loadFixtures()
	if err != nil {
		t.Fatal(err)
	}
	if n < DeviceKeys {
		return keys[n]
	}
	generatedMu.Lock()
	defer generatedMu.Unlock()
	if k, ok := generated[n]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("testca: generating key %d: %v", n, err)
	}
	generated[n] = k
	return k
}

// uniqueRSAKey returns an RSA-2048 key no other call (and no RSAKey index) returns: a reserved fixture while
// they last, then a freshly generated key.
func uniqueRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	keys, err := loadFixtures()
	if err != nil {
		t.Fatal(err)
	}
	i := DeviceKeys + int(uniqueNext.Add(1)) - 1
	if i < len(keys) {
		return keys[i]
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("testca: generating key: %v", err)
	}
	return k
}

// WeakRSAKey generates a fresh 1024-bit RSA key, which every policy must refuse (BR §6.1.5).
func WeakRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatalf("testca: generating 1024-bit key: %v", err)
	}
	return k
}
