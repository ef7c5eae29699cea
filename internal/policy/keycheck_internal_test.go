package policy

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"
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
	// 19–21 for most keys; a round whose residues pass the filter takes a square root, a few allocations each
	// (up to 48 seen in 150 keys). An allocation per round would make 100 or more.
	if allocs > 80 {
		t.Fatalf("fermatFactorable made %.0f allocations for 100 rounds; want a fixed handful, none per round", allocs)
	}
}

// fermatReference is Fermat's method as the textbook writes it, a square root per round: the carried residues of
// fermatFactorable must find exactly what it finds.
func fermatReference(n *big.Int) bool {
	a := new(big.Int).Sqrt(n)
	if new(big.Int).Mul(a, a).Cmp(n) == 0 {
		return true
	}
	a.Add(a, big.NewInt(1))
	for range fermatRounds {
		b2 := new(big.Int).Mul(a, a)
		b2.Sub(b2, n)
		b := new(big.Int).Sqrt(b2)
		if new(big.Int).Mul(b, b).Cmp(b2) == 0 {
			return true
		}
		a.Add(a, big.NewInt(1))
	}
	return false
}

// TestFermatRoundByRound builds moduli n = x² − y² that Fermat's method factors at a chosen round k (y² ≈ 2xk, so
// x ≈ ⌈√n⌉ + k), on both sides of the 100-round limit, and holds fermatFactorable to the reference on each: a
// carried residue that drifted by one round, or a b² rebuilt wrongly, shows here as a modulus found in the wrong
// round or not at all.
func TestFermatRoundByRound(t *testing.T) {
	found := map[bool]int{}
	for _, k := range []int64{0, 1, 2, 3, 7, 31, 64, 98, 99, 100, 101, 102, 150, 1000} {
		for trial := range 3 {
			x, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 1024))
			if err != nil {
				t.Fatal(err)
			}
			x.SetBit(x, 1023, 1)
			y := new(big.Int).Mul(x, big.NewInt(2*k))
			y.Sqrt(y)
			y.Add(y, big.NewInt(int64(trial)))
			if x.Bit(0) == y.Bit(0) { // n odd, as an RSA modulus is
				y.Add(y, big.NewInt(1))
			}
			n := new(big.Int).Mul(x, x)
			n.Sub(n, new(big.Int).Mul(y, y))
			want := fermatReference(n)
			if got := fermatFactorable(n); got != want {
				t.Fatalf("round %d, trial %d: fermatFactorable = %v, the reference says %v", k, trial, got, want)
			}
			found[want]++
		}
	}
	if found[true] == 0 || found[false] == 0 {
		t.Fatalf("the moduli were all found or all missed (%v): the rounds around the limit were not exercised", found)
	}
}

// BenchmarkFermat is the Fermat check on one random 2048-bit modulus, which every RSA CSR pays.
func BenchmarkFermat(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if fermatFactorable(key.N) {
			b.Fatal("a random 2048-bit modulus was found Fermat-factorable")
		}
	}
}
