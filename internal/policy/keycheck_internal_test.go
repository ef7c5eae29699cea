package policy

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

// The Fermat check runs on every RSA CSR, so its 100 rounds must not allocate per round (a quotient per round was
// a tenth of an enrollment's garbage).
func TestFermatRoundsDoNotAllocate(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if fermatFactorable(key.N) {
		t.Fatal("a random 2048-bit modulus was found Fermat-factorable")
	}
	allocs := testing.AllocsPerRun(20, func() { fermatFactorable(key.N) })
	t.Logf("fermatFactorable: %.0f allocations", allocs)
	if allocs > 40 {
		t.Fatalf("fermatFactorable made %.0f allocations for 100 rounds; want a fixed handful, none per round", allocs)
	}
}
