// Package ctxtime holds the one wait every retry loop here needs: a pause that ends early when its context does,
// so that a caller's deadline or cancellation is never spent asleep; and the jittered length of that pause.
package ctxtime

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits for d, or until ctx is done and then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backoff is the pause before retry n (0-based) of a loop without a server-given delay: first doubled n times,
// capped at ceiling, with "equal jitter" (half of it fixed, half drawn at random) so that instances refused
// together do not come back together, while every pause still lasts at least half its step.
func Backoff(first, ceiling time.Duration, n int) time.Duration {
	d := first
	for i := 0; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}
