package ctxtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if err := Sleep(t.Context(), time.Millisecond); err != nil {
		t.Errorf("Sleep = %v, want nil after the pause", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("Sleep on a cancelled context = %v after %v, want context.Canceled at once", err, time.Since(start))
	}
}

func TestBackoff(t *testing.T) {
	const first, ceiling = 100 * time.Millisecond, time.Second
	for n, step := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		step *= time.Millisecond
		for range 50 {
			if d := Backoff(first, ceiling, n); d < step/2 || d > step {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", n, d, step/2, step)
			}
		}
	}
	if d := Backoff(first, ceiling, 1<<20); d < ceiling/2 || d > ceiling {
		t.Fatalf("Backoff after many retries = %v, want within [%v, %v]", d, ceiling/2, ceiling)
	}
	if d := Backoff(time.Nanosecond, time.Nanosecond, 0); d != time.Nanosecond {
		t.Fatalf("Backoff of a step too small to halve = %v, want the step", d)
	}
}
