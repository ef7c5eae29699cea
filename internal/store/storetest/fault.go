package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// Method names FaultStore counts and matches faults against: the store.Store method names.
const (
	MethodInsert             = "Insert"
	MethodUpdate             = "Update"
	MethodGet                = "Get"
	MethodSearch             = "Search"
	MethodPending            = "Pending"
	MethodInsertBound        = "InsertBound"
	MethodLookup             = "Lookup"
	MethodAddRevoked         = "AddRevoked"
	MethodListRevoked        = "ListRevoked"
	MethodGetRevoked         = "GetRevoked"
	MethodMarkCompromised    = "MarkCompromised"
	MethodCompromised        = "Compromised"
	MethodListCompromised    = "ListCompromised"
	MethodGetMeta            = "GetMeta"
	MethodPutMeta            = "PutMeta"
	MethodEnqueueRevocation  = "EnqueueRevocation"
	MethodEnqueueRevocations = "EnqueueRevocations"
	MethodUpdateRevocation   = "UpdateRevocation"
	MethodUpdateRevocations  = "UpdateRevocations"
	MethodRevocation         = "Revocation"
	MethodOpenRevocations    = "OpenRevocations"
	MethodRecordRun          = "RecordRun"
	MethodRuns               = "Runs"
	MethodFinishRun          = "FinishRun"
	MethodRunByID            = "RunByID"
	MethodPruneRuns          = "PruneRuns"
	MethodGetBacklog         = "GetBacklog"
	MethodPutBacklog         = "PutBacklog"
	MethodDeleteBacklog      = "DeleteBacklog"
	MethodPruneBacklogs      = "PruneBacklogs"
	MethodPing               = "Ping"
)

// WriteMethods are the methods that change the store; a Fault with an empty Method matches exactly these.
var WriteMethods = []string{
	MethodInsert, MethodUpdate, MethodInsertBound, MethodAddRevoked, MethodMarkCompromised, MethodPutMeta,
	MethodEnqueueRevocation, MethodEnqueueRevocations, MethodUpdateRevocation, MethodUpdateRevocations, MethodRecordRun, MethodFinishRun,
	MethodPruneRuns, MethodPutBacklog, MethodDeleteBacklog, MethodPruneBacklogs,
}

var allMethods = []string{
	MethodInsert, MethodUpdate, MethodGet, MethodSearch, MethodPending, MethodInsertBound, MethodLookup,
	MethodAddRevoked, MethodListRevoked, MethodGetRevoked, MethodMarkCompromised, MethodCompromised, MethodListCompromised,
	MethodGetMeta, MethodPutMeta, MethodEnqueueRevocation, MethodEnqueueRevocations, MethodUpdateRevocation, MethodUpdateRevocations, MethodRevocation, MethodOpenRevocations, MethodRecordRun, MethodRuns,
	MethodFinishRun, MethodRunByID, MethodPruneRuns, MethodPing, MethodGetBacklog, MethodPutBacklog, MethodDeleteBacklog,
	MethodPruneBacklogs,
}

// Fault describes calls a FaultStore makes fail. Faults count matching calls from the moment they are added.
type Fault struct {
	// Method is the method to fail (one of the Method constants); "" matches every write method.
	Method string
	// Nth selects the Nth matching call (1-based); 0 fails every matching call.
	Nth int
	// Err is the error returned (wrapped); nil means store.ErrUnavailable.
	Err error
	// Commit performs the call on the wrapped store before failing it, emulating a write whose outcome the
	// caller cannot know (the response was lost after the backend committed).
	Commit bool
}

type activeFault struct {
	Fault
	seen int
}

// FaultStore wraps a store.Store, counts calls per method and fails the calls selected by its faults. It is
// safe for concurrent use. Issuance and revocation tests use it to prove that a failure at any step loses no
// data (reliability.md §5).
type FaultStore struct {
	inner store.Store

	mu     sync.Mutex
	calls  map[string]int
	faults []*activeFault
	hook   func(method string)
}

var _ store.Store = (*FaultStore)(nil)

// NewFaultStore wraps s with no faults.
func NewFaultStore(s store.Store) *FaultStore {
	return &FaultStore{inner: s, calls: map[string]int{}}
}

// Inject adds a fault. It panics on an unknown Method, which is a bug in the test.
func (f *FaultStore) Inject(ft Fault) {
	if ft.Method != "" && !slices.Contains(allMethods, ft.Method) {
		panic(fmt.Sprintf("storetest: unknown store method %q", ft.Method))
	}
	if ft.Err == nil {
		ft.Err = store.ErrUnavailable
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &activeFault{Fault: ft})
}

// FailNthWrite makes the nth write (counting every write method from now, 1-based) fail with err.
func (f *FaultStore) FailNthWrite(n int, err error) {
	f.Inject(Fault{Nth: n, Err: err})
}

// FailMethod makes every call of method fail with err.
func (f *FaultStore) FailMethod(method string, err error) {
	f.Inject(Fault{Method: method, Err: err})
}

// OnCall installs a function run at the start of every call (before any fault), for example to cancel a
// context between two steps of the caller. It runs without FaultStore's lock held.
func (f *FaultStore) OnCall(hook func(method string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// Clear removes every fault and the hook; call counts are kept.
func (f *FaultStore) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
	f.hook = nil
}

// Calls reports how many times method was called (including failed calls).
func (f *FaultStore) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// TotalCalls reports how many calls of any method were made (including failed ones): the store round trips.
func (f *FaultStore) TotalCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

// Writes reports how many write calls were made (including failed ones).
func (f *FaultStore) Writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range WriteMethods {
		n += f.calls[m]
	}
	return n
}

// Inner returns the wrapped store, to inspect state behind the faults.
func (f *FaultStore) Inner() store.Store { return f.inner }

// enter counts the call and decides its fate: a nil fault means call through.
func (f *FaultStore) enter(method string) *Fault {
	f.mu.Lock()
	f.calls[method]++
	hook := f.hook
	var hit *Fault
	write := slices.Contains(WriteMethods, method)
	for _, af := range f.faults {
		if af.Method == method || af.Method == "" && write {
			af.seen++
			if hit == nil && (af.Nth == 0 || af.seen == af.Nth) {
				c := af.Fault
				hit = &c
			}
		}
	}
	f.mu.Unlock()
	if hook != nil {
		hook(method)
	}
	return hit
}

func injected(method string, ft *Fault) error {
	return fmt.Errorf("storetest: injected fault in %s: %w", method, ft.Err)
}

// do runs call unless a fault says otherwise. For a committed fault it runs lost instead when given: the call
// on a copy of the caller's argument, so that the caller sees none of the write's effects (such as a new ETag),
// as when the response is lost.
func (f *FaultStore) do(method string, call, lost func() error) error {
	ft := f.enter(method)
	if ft == nil {
		return call()
	}
	if ft.Commit {
		if lost == nil {
			lost = call
		}
		_ = lost()
	}
	return injected(method, ft)
}

// Insert implements store.Store.
func (f *FaultStore) Insert(ctx context.Context, r *store.Record) error {
	return f.do(MethodInsert, func() error { return f.inner.Insert(ctx, r) },
		func() error { c := *r; return f.inner.Insert(ctx, &c) })
}

// Update implements store.Store.
func (f *FaultStore) Update(ctx context.Context, r *store.Record, from store.Status) error {
	return f.do(MethodUpdate, func() error { return f.inner.Update(ctx, r, from) },
		func() error { c := *r; return f.inner.Update(ctx, &c, from) })
}

// Get implements store.Store.
func (f *FaultStore) Get(ctx context.Context, serial string) (r *store.Record, err error) {
	err = f.do(MethodGet, func() error { r, err = f.inner.Get(ctx, serial); return err }, nil)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Search implements store.Store.
func (f *FaultStore) Search(ctx context.Context, q store.Query) (page []*store.Record, next string, err error) {
	err = f.do(MethodSearch, func() error { page, next, err = f.inner.Search(ctx, q); return err }, nil)
	if err != nil {
		return nil, "", err
	}
	return page, next, nil
}

// Pending implements store.Store.
func (f *FaultStore) Pending(ctx context.Context, before time.Time) (rs []*store.Record, err error) {
	err = f.do(MethodPending, func() error { rs, err = f.inner.Pending(ctx, before); return err }, nil)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// InsertBound implements store.Store. An injected fault returns a zero Binding; a committed one writes on a
// copy of the record, so the caller sees no new ETag.
func (f *FaultStore) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (b store.Binding, err error) {
	err = f.do(MethodInsertBound, func() error { b, err = f.inner.InsertBound(ctx, key, prev, r); return err },
		func() error { c := *r; _, err := f.inner.InsertBound(ctx, key, prev, &c); return err })
	return b, err
}

// Lookup implements store.Store.
func (f *FaultStore) Lookup(ctx context.Context, key string) (b store.Binding, err error) {
	err = f.do(MethodLookup, func() error { b, err = f.inner.Lookup(ctx, key); return err }, nil)
	if err != nil {
		return store.Binding{}, err
	}
	return b, nil
}

// AddRevoked implements store.Store.
func (f *FaultStore) AddRevoked(ctx context.Context, e store.Revoked) (kept store.Revoked, err error) {
	err = f.do(MethodAddRevoked, func() error { kept, err = f.inner.AddRevoked(ctx, e); return err },
		func() error { _, err := f.inner.AddRevoked(ctx, e); return err })
	if err != nil {
		return store.Revoked{}, err
	}
	return kept, nil
}

// ListRevoked implements store.Store.
func (f *FaultStore) ListRevoked(ctx context.Context) (rs []store.Revoked, err error) {
	err = f.do(MethodListRevoked, func() error { rs, err = f.inner.ListRevoked(ctx); return err }, nil)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// GetRevoked implements store.Store.
func (f *FaultStore) GetRevoked(ctx context.Context, serial string) (e store.Revoked, err error) {
	err = f.do(MethodGetRevoked, func() error { e, err = f.inner.GetRevoked(ctx, serial); return err }, nil)
	if err != nil {
		return store.Revoked{}, err
	}
	return e, nil
}

// MarkCompromised implements store.Store.
func (f *FaultStore) MarkCompromised(ctx context.Context, k store.CompromisedKey) (kept store.CompromisedKey, created bool, err error) {
	err = f.do(MethodMarkCompromised, func() error { kept, created, err = f.inner.MarkCompromised(ctx, k); return err },
		func() error { _, _, err := f.inner.MarkCompromised(ctx, k); return err })
	if err != nil {
		return store.CompromisedKey{}, false, err
	}
	return kept, created, nil
}

// Compromised implements store.Store.
func (f *FaultStore) Compromised(ctx context.Context, publicKey string) (k store.CompromisedKey, err error) {
	err = f.do(MethodCompromised, func() error { k, err = f.inner.Compromised(ctx, publicKey); return err }, nil)
	if err != nil {
		return store.CompromisedKey{}, err
	}
	return k, nil
}

// ListCompromised implements store.Store.
func (f *FaultStore) ListCompromised(ctx context.Context) (out []store.CompromisedKey, err error) {
	err = f.do(MethodListCompromised, func() error { out, err = f.inner.ListCompromised(ctx); return err }, nil)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetMeta implements store.Store.
func (f *FaultStore) GetMeta(ctx context.Context, name string) (v []byte, etag string, err error) {
	err = f.do(MethodGetMeta, func() error { v, etag, err = f.inner.GetMeta(ctx, name); return err }, nil)
	if err != nil {
		return nil, "", err
	}
	return v, etag, nil
}

// PutMeta implements store.Store.
func (f *FaultStore) PutMeta(ctx context.Context, name string, value []byte, etag string) (ne string, err error) {
	err = f.do(MethodPutMeta, func() error { ne, err = f.inner.PutMeta(ctx, name, value, etag); return err }, nil)
	if err != nil {
		return "", err
	}
	return ne, nil
}

// EnqueueRevocation implements store.Store.
func (f *FaultStore) EnqueueRevocation(ctx context.Context, r *store.RevocationRequest) error {
	return f.do(MethodEnqueueRevocation, func() error { return f.inner.EnqueueRevocation(ctx, r) },
		func() error { c := *r; return f.inner.EnqueueRevocation(ctx, &c) })
}

// EnqueueRevocations implements store.Store. A committed fault writes copies of the items, so that the caller
// sees none of the write's effects (no ETag), as when the transaction's answer is lost.
func (f *FaultStore) EnqueueRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	return f.do(MethodEnqueueRevocations, func() error { return f.inner.EnqueueRevocations(ctx, rs) },
		func() error { return f.inner.EnqueueRevocations(ctx, copyRequests(rs)) })
}

// UpdateRevocation implements store.Store.
func (f *FaultStore) UpdateRevocation(ctx context.Context, r *store.RevocationRequest) error {
	return f.do(MethodUpdateRevocation, func() error { return f.inner.UpdateRevocation(ctx, r) },
		func() error { c := *r; return f.inner.UpdateRevocation(ctx, &c) })
}

// UpdateRevocations implements store.Store.
func (f *FaultStore) UpdateRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	return f.do(MethodUpdateRevocations, func() error { return f.inner.UpdateRevocations(ctx, rs) },
		func() error { return f.inner.UpdateRevocations(ctx, copyRequests(rs)) })
}

func copyRequests(rs []*store.RevocationRequest) []*store.RevocationRequest {
	c := make([]*store.RevocationRequest, len(rs))
	for i, r := range rs {
		cp := *r
		c[i] = &cp
	}
	return c
}

// Revocation implements store.Store.
func (f *FaultStore) Revocation(ctx context.Context, requestContext string) (r *store.RevocationRequest, err error) {
	err = f.do(MethodRevocation, func() error { r, err = f.inner.Revocation(ctx, requestContext); return err }, nil)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// OpenRevocations implements store.Store.
func (f *FaultStore) OpenRevocations(ctx context.Context, limit int) (rs []*store.RevocationRequest, err error) {
	err = f.do(MethodOpenRevocations, func() error { rs, err = f.inner.OpenRevocations(ctx, limit); return err }, nil)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// RecordRun implements store.Store.
func (f *FaultStore) RecordRun(ctx context.Context, run store.SyncRun) error {
	return f.do(MethodRecordRun, func() error { return f.inner.RecordRun(ctx, run) }, nil)
}

// Runs implements store.Store.
func (f *FaultStore) Runs(ctx context.Context, limit int) (rs []store.SyncRun, err error) {
	err = f.do(MethodRuns, func() error { rs, err = f.inner.Runs(ctx, limit); return err }, nil)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// FinishRun implements store.Store.
func (f *FaultStore) FinishRun(ctx context.Context, run store.SyncRun) error {
	return f.do(MethodFinishRun, func() error { return f.inner.FinishRun(ctx, run) }, nil)
}

// RunByID implements store.Store.
func (f *FaultStore) RunByID(ctx context.Context, id string) (run store.SyncRun, err error) {
	err = f.do(MethodRunByID, func() error { run, err = f.inner.RunByID(ctx, id); return err }, nil)
	if err != nil {
		return store.SyncRun{}, err
	}
	return run, nil
}

// PruneRuns implements store.Store.
func (f *FaultStore) PruneRuns(ctx context.Context, before time.Time, limit int) (n int, err error) {
	err = f.do(MethodPruneRuns, func() error { n, err = f.inner.PruneRuns(ctx, before, limit); return err }, nil)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Ping implements store.Store.
func (f *FaultStore) Ping(ctx context.Context) error {
	return f.do(MethodPing, func() error { return f.inner.Ping(ctx) }, nil)
}

// GetBacklog implements store.Store.
func (f *FaultStore) GetBacklog(ctx context.Context, publicKey string) (b *store.Backlog, err error) {
	err = f.do(MethodGetBacklog, func() error { b, err = f.inner.GetBacklog(ctx, publicKey); return err }, nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// PutBacklog implements store.Store.
func (f *FaultStore) PutBacklog(ctx context.Context, b *store.Backlog) error {
	return f.do(MethodPutBacklog, func() error { return f.inner.PutBacklog(ctx, b) }, nil)
}

// DeleteBacklog implements store.Store.
func (f *FaultStore) DeleteBacklog(ctx context.Context, publicKey, etag string) error {
	return f.do(MethodDeleteBacklog, func() error { return f.inner.DeleteBacklog(ctx, publicKey, etag) }, nil)
}

// PruneBacklogs implements store.Store.
func (f *FaultStore) PruneBacklogs(ctx context.Context, before time.Time, limit int) (n int, err error) {
	err = f.do(MethodPruneBacklogs, func() error { n, err = f.inner.PruneBacklogs(ctx, before, limit); return err }, nil)
	if err != nil {
		return 0, err
	}
	return n, nil
}
