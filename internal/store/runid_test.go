package store

import (
	"testing"
	"time"
)

// A run ID holds its start in one spelling; anything else is an ID of the older form, which holds none.
func TestRunID(t *testing.T) {
	started := time.Date(2026, 12, 7, 14, 4, 4, 123456789, time.FixedZone("CET", 3600))
	id := NewRunID(started)
	if len(id) != 41 || id[:25] != "20261207T130404.1234567Z-" {
		t.Fatalf("NewRunID = %s", id)
	}
	if at, ok := RunIDStart(id); !ok || !at.Equal(started.Truncate(100*time.Nanosecond)) || at.Location() != time.UTC {
		t.Errorf("RunIDStart(%s) = %v, %v", id, at, ok)
	}
	if NewRunID(started) == id {
		t.Errorf("two runs started in the same instant got one ID")
	}
	for _, bad := range []string{
		"", "0123456789abcdef", "run-4",
		"20261207T130404.1234567Z-0123456789ABCDEF", // upper-case digits
		"20261207T130404.1234567Z_0123456789abcdef",
		"20261207T130404.1234567Z-0123456789abcde",
		"20261307T130404.1234567Z-0123456789abcdef", // month 13
		"20261207T250404.1234567Z-0123456789abcdef",
		"20261207T130404,1234567Z-0123456789abcdef",
		"20261207T130404.123456Z0-0123456789abcdef",
	} {
		if at, ok := RunIDStart(bad); ok {
			t.Errorf("RunIDStart(%q) = %v, true; want false", bad, at)
		}
	}
}
