// Package ctxtime holds the one wait every retry loop here needs: a pause that ends early when its context does,
// so that a caller's deadline or cancellation is never spent asleep.
package ctxtime

import (
	"context"
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
