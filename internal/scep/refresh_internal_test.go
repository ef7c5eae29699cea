package scep

import (
	"context"
	"testing"
	"time"
)

// TestRARefreshRateLimited: envelopes that no RA opens (junk, or one to an RA rotated elsewhere) re-read the
// stored RA at most once per raRefreshGap, so they cannot turn into a store read each.
func TestRARefreshRateLimited(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s := &Server{now: func() time.Time { return now }, refreshRA: func(context.Context) (bool, error) { return false, nil }}
	if !s.mayRefreshRA() {
		t.Fatal("the first envelope may not re-read the RA")
	}
	for range 5 {
		if s.mayRefreshRA() {
			t.Fatal("a second re-read inside the gap")
		}
	}
	now = now.Add(raRefreshGap)
	if !s.mayRefreshRA() {
		t.Fatal("no re-read after the gap")
	}
	if (&Server{now: time.Now}).mayRefreshRA() {
		t.Error("re-read without a refresher (CA-decrypt mode)")
	}
}
