package main

import (
	"sync"
	"testing"

	"github.com/azscep/azscep/internal/store/storetest"
)

// TestEnrollmentStoreRoundTrips: through the real handler, a fresh enrollment costs two store round trips — the
// pending record with its idempotency claim in one write, then the issued update — for static SCEP and for
// /api/csr (an Intune enrollment adds the replay lookup before Intune is asked, and the delivery bookkeeping).
func TestEnrollmentStoreRoundTrips(t *testing.T) {
	for _, fl := range []fxFlow{fxFlows[0], fxFlows[2]} {
		t.Run(fl.name, func(t *testing.T) {
			e := newFxEnv(t, fxOptions{})
			req := fl.new(e, t)
			var mu sync.Mutex
			var calls []string
			e.fs.OnCall(func(m string) { mu.Lock(); calls = append(calls, m); mu.Unlock() })
			if out := e.send(t, req); !out.ok() {
				t.Fatalf("enrollment failed: %s", out)
			}
			e.fs.Clear()
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != 2 || calls[0] != storetest.MethodInsertBound || calls[1] != storetest.MethodUpdate {
				t.Errorf("store calls %v, want [%s %s]", calls, storetest.MethodInsertBound, storetest.MethodUpdate)
			}
			e.check(t)
		})
	}
}
