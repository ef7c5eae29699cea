package storetest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
)

// The wrapper without faults is a store like any other.
func TestFaultStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.NewFaultStore(memstore.New()) })
}

func TestFailNthWrite(t *testing.T) {
	ctx := t.Context()
	f := storetest.NewFaultStore(memstore.New())
	boom := errors.New("boom")
	f.FailNthWrite(2, boom)

	r := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
	if err := f.Insert(ctx, r); err != nil {
		t.Fatalf("write 1: %v", err)
	}
	if _, err := f.Lookup(ctx, "k"); !errors.Is(err, store.ErrNotFound) { // reads do not count
		t.Fatalf("Lookup = %v", err)
	}
	bound := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
	if _, err := f.InsertBound(ctx, "k", nil, bound); !errors.Is(err, boom) {
		t.Fatalf("write 2 = %v, want the injected error", err)
	}
	if _, err := f.Inner().Lookup(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed write reached the store: %v", err)
	}
	if _, err := f.InsertBound(ctx, "k", nil, bound); err != nil {
		t.Fatalf("write 3: %v", err)
	}
	if f.Writes() != 3 || f.Calls(storetest.MethodInsertBound) != 2 || f.Calls(storetest.MethodLookup) != 1 {
		t.Errorf("counts: writes %d InsertBound %d lookups %d", f.Writes(), f.Calls(storetest.MethodInsertBound), f.Calls(storetest.MethodLookup))
	}
}

func TestFailMethod(t *testing.T) {
	ctx := t.Context()
	f := storetest.NewFaultStore(memstore.New())
	f.FailMethod(storetest.MethodUpdate, nil)
	r := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
	if err := f.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.Status = store.StatusIssued
		if err := f.Update(ctx, r, store.StatusPending); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Update = %v, want ErrUnavailable", err)
		}
	}
	f.Clear()
	if err := f.Update(ctx, r, store.StatusPending); err != nil {
		t.Fatalf("Update after Clear: %v", err)
	}
	if got := f.Calls(storetest.MethodUpdate); got != 4 {
		t.Errorf("Update calls = %d, want 4", got)
	}
}

// A committed fault writes but reports failure, and the caller's record keeps its old ETag.
func TestCommitFault(t *testing.T) {
	ctx := t.Context()
	f := storetest.NewFaultStore(memstore.New())
	r := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
	if err := f.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	f.Inject(storetest.Fault{Method: storetest.MethodUpdate, Nth: 1, Commit: true, Err: context.DeadlineExceeded})
	old := r.ETag
	r.Status = store.StatusIssued
	if err := f.Update(ctx, r, store.StatusPending); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update = %v", err)
	}
	if r.ETag != old {
		t.Error("committed fault leaked the new ETag to the caller")
	}
	got, err := f.Get(ctx, r.Serial)
	if err != nil || got.Status != store.StatusIssued {
		t.Fatalf("committed write not in the store: %v %v", got, err)
	}
	if err := f.Update(ctx, r, store.StatusPending); !errors.Is(err, store.ErrConflict) {
		t.Errorf("retry after a committed write = %v, want ErrConflict", err)
	}
}

func TestOnCall(t *testing.T) {
	f := storetest.NewFaultStore(memstore.New())
	var seen []string
	f.OnCall(func(m string) { seen = append(seen, m) })
	_ = f.Ping(t.Context())
	_, _ = f.Runs(t.Context(), 1)
	if len(seen) != 2 || seen[0] != storetest.MethodPing || seen[1] != storetest.MethodRuns {
		t.Errorf("hook saw %v", seen)
	}
}

// A committed fault on EnqueueRevocations writes every item of the batch but tells the caller it failed, with none
// of the write's effects on the caller's items (no ETag), as when a transaction's answer is lost: the caller's one
// by one retry then finds each item stored.
func TestFaultStoreEnqueueRevocationsCommitted(t *testing.T) {
	ctx := t.Context()
	f := storetest.NewFaultStore(memstore.New())
	f.Inject(storetest.Fault{Method: storetest.MethodEnqueueRevocations, Nth: 1, Commit: true})
	rs := []*store.RevocationRequest{{RequestContext: "a", SerialNumber: "01"}, {RequestContext: "b", SerialNumber: "02"}}
	if err := f.EnqueueRevocations(ctx, rs); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("EnqueueRevocations = %v, want the injected ErrUnavailable", err)
	}
	for _, r := range rs {
		if r.ETag != "" {
			t.Errorf("%s: the caller sees ETag %q from a write whose answer was lost", r.RequestContext, r.ETag)
		}
		if _, err := f.Inner().Revocation(ctx, r.RequestContext); err != nil {
			t.Errorf("%s not committed: %v", r.RequestContext, err)
		}
		if err := f.EnqueueRevocation(ctx, r); !errors.Is(err, store.ErrExists) {
			t.Errorf("%s inserted again = %v, want ErrExists", r.RequestContext, err)
		}
	}
	if n := f.Calls(storetest.MethodEnqueueRevocations); n != 1 || f.Writes() != 3 {
		t.Errorf("counted %d batch calls and %d writes, want 1 and 3", n, f.Writes())
	}
}
