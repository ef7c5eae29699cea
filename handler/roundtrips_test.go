package main

import (
	"slices"
	"sync"
	"testing"

	"github.com/azscep/azscep/internal/store/storetest"
)

// TestEnrollmentStoreRoundTrips: through the real handler, a fresh enrollment costs two store round trips — the
// pending record with its idempotency claim in one write, then the issued update — for static SCEP and for
// /api/csr. An Intune enrollment adds the replay lookup before Intune is asked, the reservation in its key's
// backlog (a create, for a fresh key) and the delivery bookkeeping: five, and no backlog delete, as the delivered
// certificate's record settles its reservation and the hourly timer prunes it. Before, the reservation was deleted
// before the answer: six.
func TestEnrollmentStoreRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		fl   fxFlow
		want []string
	}{
		{fxFlows[0], []string{storetest.MethodInsertBound, storetest.MethodUpdate}},
		{fxFlows[1], []string{storetest.MethodLookup, storetest.MethodPutBacklog, storetest.MethodInsertBound,
			storetest.MethodUpdate, storetest.MethodUpdate}},
		{fxFlows[2], []string{storetest.MethodInsertBound, storetest.MethodUpdate}},
	} {
		t.Run(tc.fl.name, func(t *testing.T) {
			e := newFxEnv(t, fxOptions{})
			req := tc.fl.new(e, t)
			var mu sync.Mutex
			var calls []string
			e.fs.OnCall(func(m string) { mu.Lock(); calls = append(calls, m); mu.Unlock() })
			if out := e.send(t, req); !out.ok() {
				t.Fatalf("enrollment failed: %s", out)
			}
			e.fs.Clear()
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(calls, tc.want) {
				t.Errorf("store calls %v, want %v", calls, tc.want)
			}
			e.check(t)
		})
	}
}
