package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// The server runs with serveGCPercent unless the operator set GOGC, whose value the runtime already applied.
func TestTuneGC(t *testing.T) {
	prev, hadGOGC := os.LookupEnv("GOGC")
	restore := debug.SetGCPercent(100)
	t.Cleanup(func() {
		debug.SetGCPercent(restore)
		if hadGOGC {
			os.Setenv("GOGC", prev)
		} else {
			os.Unsetenv("GOGC")
		}
	})

	os.Unsetenv("GOGC")
	tuneGC()
	if got := debug.SetGCPercent(100); got != serveGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, serveGCPercent)
	}

	os.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // what the runtime did with GOGC=150 at start
	tuneGC()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Fatalf("GOGC=150: GC percent %d, want the operator's 150", got)
	}
}
