package storetest

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/azscep/azscep/internal/store"
)

// Enroll writes n fresh enrollments through s as the issuance path does — the pending record with its
// idempotency key claim in one write, then the issued update — from writers goroutines. pause, when not nil, is
// called where an enrollment does its private-key operations: before the claim (step 0), before the update (1)
// and after it (2). It is for benchmarks that need an enrollment's store traffic without the rest of the CA.
func Enroll(ctx context.Context, s store.Store, writers, n int, pause func(step int)) error {
	if writers < 1 {
		return fmt.Errorf("storetest: %d writers", writers)
	}
	if pause == nil {
		pause = func(int) {}
	}
	var next atomic.Int64
	var g errgroup.Group
	for range writers {
		g.Go(func() error {
			for next.Add(1) <= int64(n) {
				r := FullRecord(NewSerial())
				pause(0)
				if _, err := s.InsertBound(ctx, "enroll-"+r.Serial, nil, r); err != nil {
					return fmt.Errorf("storetest: claiming %s: %w", r.Serial, err)
				}
				pause(1)
				r.Status, r.CertDER = store.StatusIssued, r.PlannedDER
				if err := s.Update(ctx, r, store.StatusPending); err != nil {
					return fmt.Errorf("storetest: issuing %s: %w", r.Serial, err)
				}
				pause(2)
			}
			return nil
		})
	}
	return g.Wait()
}
