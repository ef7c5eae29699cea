package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/testca"
)

func TestStrikesCountOnlyFailures(t *testing.T) {
	clock := testca.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s := NewStrikes(Bucket{Burst: 3, Per: time.Minute}, clock.Now)

	// Tries that are forgiven cost nothing, however many.
	for i := range 20 {
		forgive, ok := s.Take("a")
		if !ok {
			t.Fatalf("forgiven try %d refused", i)
		}
		forgive()
	}
	// Three failures spend the bucket; the fourth try is refused before it is judged.
	for i := range 3 {
		if _, ok := s.Take("a"); !ok {
			t.Fatalf("failure %d refused", i)
		}
	}
	if _, ok := s.Take("a"); ok {
		t.Fatal("a fourth try after three failures was admitted")
	}
	// Another key has its own bucket.
	if _, ok := s.Take("b"); !ok {
		t.Fatal("key b refused for a's failures")
	}
	// A refused try takes nothing: one token is back after 20 s.
	clock.Advance(20 * time.Second)
	forgive, ok := s.Take("a")
	if !ok {
		t.Fatal("no try after the bucket refilled by one")
	}
	forgive()
	if _, ok := s.Take("a"); !ok {
		t.Fatal("the forgiven try kept its token")
	}
	if _, ok := s.Take("a"); ok {
		t.Fatal("two tries admitted on one refilled token")
	}
}

// TestStrikesConcurrentTriesCannotOverrun: the token is taken before the try is judged, so many tries at once get no
// more than the bucket holds.
func TestStrikesConcurrentTriesCannotOverrun(t *testing.T) {
	clock := testca.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s := NewStrikes(Bucket{Burst: 5, Per: time.Hour}, clock.Now)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted int
	)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, ok := s.Take("a"); ok {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if admitted != 5 {
		t.Fatalf("%d concurrent failing tries admitted, want 5", admitted)
	}
}

// TestStrikesFullTableShares: once the table is full of keys still refilling, new keys share one bucket instead of
// going uncounted.
func TestStrikesFullTableShares(t *testing.T) {
	clock := testca.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s := NewStrikes(Bucket{Burst: 2, Per: time.Hour}, clock.Now)
	for i := range maxClients {
		s.Take(fmt.Sprint("k", i)) // a failure each: none is idle, so a sweep frees nothing
	}
	for i := range 2 {
		if _, ok := s.Take(fmt.Sprint("new", i)); !ok {
			t.Fatalf("new key %d refused before the shared bucket was spent", i)
		}
	}
	if _, ok := s.Take("new-2"); ok {
		t.Fatal("a new key beyond the full table went uncounted")
	}
	// Keys whose buckets refilled are forgotten, which makes room again.
	clock.Advance(time.Hour)
	if _, ok := s.Take("new-3"); !ok {
		t.Fatal("a new key refused after every bucket refilled")
	}
	if n := len(s.keys); n != 1 {
		t.Fatalf("%d keys after the sweep, want 1", n)
	}
}
