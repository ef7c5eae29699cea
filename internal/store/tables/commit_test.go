package tables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/storetest"
)

// gateTransport, once armed, holds the next transaction on the wire until the test opens the gate, so that the
// writes started meanwhile queue up behind it; it counts the transactions and their operations.
type gateTransport struct {
	mu        sync.Mutex
	armed     bool
	gate      chan struct{}
	held      atomic.Bool
	ops       []int // operations per transaction, in order
	stripFail bool  // remove the failed operation's position from the answer, as a service that omits it would
}

func newGate() *gateTransport { return &gateTransport{} }

// arm makes the next transaction wait for open.
func (g *gateTransport) arm() {
	g.mu.Lock()
	g.armed, g.gate = true, make(chan struct{})
	g.mu.Unlock()
	g.held.Store(false)
}

func (g *gateTransport) open() {
	g.mu.Lock()
	close(g.gate)
	g.mu.Unlock()
}

// waitHeld waits until the armed gate holds a transaction.
func (g *gateTransport) waitHeld() {
	for !g.held.Load() {
		runtime.Gosched()
	}
}

func (g *gateTransport) Do(req *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(req.URL.Path, "/$batch") {
		return http.DefaultTransport.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	g.mu.Lock()
	g.ops = append(g.ops, bytes.Count(body, []byte("Content-Type: application/http")))
	hold, gate := g.armed, g.gate
	g.armed = false
	g.mu.Unlock()
	if hold {
		g.held.Store(true)
		<-gate
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !g.stripFail {
		return resp, err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	for i := range 100 {
		out = bytes.ReplaceAll(out, fmt.Appendf(nil, `"value":"%d:`, i), []byte(`"value":"`))
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	return resp, nil
}

func (g *gateTransport) opsPerBatch() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.ops...)
}

func newGatedStore(t testing.TB, g *gateTransport) *Store {
	t.Helper()
	return newInternalStore(t, WithTransport(g))
}

// newInternalStore is a Store on a fresh Azurite account with its tables created, for the package's own tests.
func newInternalStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := NewFromConnectionString(azuritetest.ConnectionString(t), "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureTables(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// holdOne inserts a record whose transaction the armed gate holds on the wire; the returned channel gives the
// insert's outcome once the gate opens.
func holdOne(ctx context.Context, s *Store, g *gateTransport) <-chan error {
	done := make(chan error, 1)
	g.arm()
	go func() { done <- s.Insert(ctx, storetest.FullRecord(storetest.NewSerial())) }()
	g.waitHeld()
	return done
}

// waitQueued waits until n groups wait behind the transaction on the wire.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.certsCommit.mu.Lock()
		got := len(s.certsCommit.queue)
		s.certsCommit.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d groups queued, want %d", got, n)
		}
		runtime.Gosched()
	}
}

// Writes that queue while a transaction is on the wire go out together in the next one, and each caller gets
// its own ETags: the record's insert and binding, and the issued update that follows, as an enrollment does.
func TestGroupCommitSharesTransactions(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := newGatedStore(t, g)
	ctx := t.Context()

	firstDone := holdOne(ctx, s, g)
	const n = 12
	recs := make([]*store.Record, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		recs[i] = &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending, Subject: fmt.Sprintf("CN=%d", i)}
		wg.Go(func() { _, errs[i] = s.InsertBound(ctx, fmt.Sprintf("key-%d", i), nil, recs[i]) })
	}
	waitQueued(t, s, n)
	g.open()
	wg.Wait()
	if err := <-firstDone; err != nil {
		t.Fatalf("first insert: %v", err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("InsertBound %d: %v", i, err)
		}
	}
	if got := g.opsPerBatch(); len(got) != 2 || got[0] != 1 || got[1] != 2*n {
		t.Fatalf("operations per transaction = %v, want [1 %d]: the queued groups did not share one", got, 2*n)
	}
	// Each caller got its own record's ETag: the issued updates that follow are accepted, again in one
	// transaction when they queue together.
	g.arm()
	for i := range n {
		recs[i].Status = store.StatusIssued
		wg.Go(func() { errs[i] = s.Update(ctx, recs[i], store.StatusPending) })
	}
	g.waitHeld()
	waitQueued(t, s, n-1)
	g.open()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
		got, err := s.Get(ctx, recs[i].Serial)
		if err != nil || got.Status != store.StatusIssued || got.ETag != recs[i].ETag {
			t.Fatalf("record %d after update: %+v, %v; want issued at ETag %s", i, got, err, recs[i].ETag)
		}
		if b, err := s.Lookup(ctx, fmt.Sprintf("key-%d", i)); err != nil || b.Serial != recs[i].Serial {
			t.Fatalf("binding %d = %+v, %v", i, b, err)
		}
	}
	if got := g.opsPerBatch(); len(got) != 4 || got[3] != n-1 {
		t.Errorf("operations per transaction = %v, want the last %d updates in one", got, n-1)
	}
}

// A group the service refuses fails alone, with the answer it would have had alone; the groups it shared the
// transaction with commit in the next one. Also when the service does not say which operation failed.
func TestGroupCommitRefusedGroupFailsAlone(t *testing.T) {
	t.Parallel()
	for _, strip := range []bool{false, true} {
		t.Run(fmt.Sprintf("position-omitted=%v", strip), func(t *testing.T) {
			t.Parallel()
			g := newGate()
			g.stripFail = strip
			s := newGatedStore(t, g)
			ctx := t.Context()

			bound := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
			b, err := s.InsertBound(ctx, "taken", nil, bound)
			if err != nil {
				t.Fatal(err)
			}
			stale := storetest.FullRecord(storetest.NewSerial())
			if err := s.Insert(ctx, stale); err != nil {
				t.Fatal(err)
			}
			fresh := *stale
			fresh.Note = "someone else's write"
			if err := s.Update(ctx, &fresh, store.StatusPending); err != nil {
				t.Fatal(err)
			}
			holdDone := holdOne(ctx, s, g)
			var wg sync.WaitGroup
			okRecs := []*store.Record{storetest.FullRecord(storetest.NewSerial()), storetest.FullRecord(storetest.NewSerial())}
			var okErrs [2]error
			var takenErr, staleErr error
			var takenBinding store.Binding
			loser := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
			wg.Go(func() { okErrs[0] = s.Insert(ctx, okRecs[0]) })
			waitQueued(t, s, 1)
			wg.Go(func() { takenBinding, takenErr = s.InsertBound(ctx, "taken", nil, loser) })
			waitQueued(t, s, 2)
			stale.Note = "stale"
			wg.Go(func() { staleErr = s.Update(ctx, stale, store.StatusPending) })
			waitQueued(t, s, 3)
			wg.Go(func() { okErrs[1] = s.Insert(ctx, okRecs[1]) })
			waitQueued(t, s, 4)
			g.open()
			wg.Wait()
			if err := <-holdDone; err != nil {
				t.Fatal(err)
			}

			if !errors.Is(takenErr, store.ErrExists) || takenBinding.Serial != bound.Serial || takenBinding.ETag != b.ETag {
				t.Errorf("InsertBound of a bound key = %+v, %v; want ErrExists and the binding %+v", takenBinding, takenErr, b)
			}
			if _, err := s.Get(ctx, loser.Serial); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the refused group's record = %v, want nothing written", err)
			}
			if !errors.Is(staleErr, store.ErrConflict) {
				t.Errorf("stale Update = %v, want ErrConflict", staleErr)
			}
			if got, err := s.Get(ctx, stale.Serial); err != nil || got.Note != "someone else's write" {
				t.Errorf("record after the stale update = %+v, %v", got, err)
			}
			for i, r := range okRecs {
				if okErrs[i] != nil {
					t.Fatalf("insert %d beside the refused groups: %v", i, okErrs[i])
				}
				if got, err := s.Get(ctx, r.Serial); err != nil || got.ETag != r.ETag {
					t.Errorf("record %d = %+v, %v; want ETag %s", i, got, err, r.ETag)
				}
			}
		})
	}
}

// Two writes of one entity never share a transaction (the service would refuse it as a whole): the second
// waits for the next one, and a replace conditioned on the ETag the first replaced fails as stale.
func TestGroupCommitOneWritePerEntity(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := newGatedStore(t, g)
	ctx := t.Context()
	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	holdDone := holdOne(ctx, s, g)
	a, b := *r, *r
	a.Note, b.Note = "a", "b"
	var errA, errB error
	var wg sync.WaitGroup
	wg.Go(func() { errA = s.Update(ctx, &a, store.StatusPending) })
	waitQueued(t, s, 1)
	wg.Go(func() { errB = s.Update(ctx, &b, store.StatusPending) })
	waitQueued(t, s, 2)
	g.open()
	wg.Wait()
	if err := <-holdDone; err != nil {
		t.Fatal(err)
	}
	if errA != nil || !errors.Is(errB, store.ErrConflict) {
		t.Fatalf("two updates from one ETag = %v, %v; want success then ErrConflict", errA, errB)
	}
	if got := g.opsPerBatch(); len(got) != 4 || got[2] != 1 || got[3] != 1 {
		t.Errorf("operations per transaction = %v, want the two updates in separate ones", got)
	}
}

// A caller whose context ends while its group waits withdraws it: nothing of it is written.
func TestGroupCommitWithdrawnWhileQueued(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := newGatedStore(t, g)
	holdDone := holdOne(t.Context(), s, g)
	ctx, cancel := context.WithCancel(t.Context())
	r := storetest.FullRecord(storetest.NewSerial())
	done := make(chan error, 1)
	go func() { done <- s.Insert(ctx, r) }()
	waitQueued(t, s, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Insert withdrawn while queued = %v, want context.Canceled", err)
	}
	g.open()
	if err := <-holdDone; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), r.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("withdrawn record = %v, want nothing written", err)
	}
	if got := g.opsPerBatch(); len(got) != 1 {
		t.Errorf("transactions = %v, want only the held one", got)
	}
}

// A caller whose context ends once its group is on the wire waits for the answer, since its writes may commit: it
// gets the outcome of the write, not a failure for a write that was made. An issuance told its pending record's
// insert failed, or a revocation told its record write failed, when both committed, would answer the client wrongly.
func TestGroupCommitOnTheWireOutlivesTheCaller(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := newGatedStore(t, g)
	ctx, cancel := context.WithCancel(t.Context())
	r := storetest.FullRecord(storetest.NewSerial())
	done := make(chan error, 1)
	g.arm()
	go func() { done <- s.Insert(ctx, r) }()
	g.waitHeld()
	cancel()
	g.open()
	if err := <-done; err != nil {
		t.Fatalf("Insert whose caller left while it was on the wire = %v, want its committed outcome", err)
	}
	if got, err := s.Get(t.Context(), r.Serial); err != nil || got.ETag != r.ETag {
		t.Errorf("record = %v, %v; want it written, with the ETag the caller got", got, err)
	}
}

// benchPauses are a benchmark enrollment's pauses around its writes (storetest.Enroll's steps), so that the store
// sees the load it sees in BenchmarkPeers: they add up to an enrollment's time apart from the store there (the
// in-memory server's p50 at 8 clients on the 2-core bench machine, 16 ms, most of it waiting for a CPU), split as
// the private-key operations fall — RA decrypt before the pending record, the CA signature between the writes,
// the CertRep after (built during the update, but the client waits on both).
var benchPauses = [3]time.Duration{4 * time.Millisecond, 8 * time.Millisecond, 4 * time.Millisecond}

const benchWriters = 8 // BenchmarkPeers' clients

var (
	warmOnce sync.Once
	warmErr  error
)

// BenchmarkGroupCommit: fresh enrollments' writes to the certs table — the pending record with its key claim,
// then the issued update — from 8 concurrent writers pausing between writes as an enrollment does for its
// private-key operations. The writers sleep rather than compute, so that the store process has the CPUs to
// itself: this is the store's cost per enrollment apart from the RSA work that makes BenchmarkPeers' figures
// move with the machine. It reports the transactions and entity operations sent per enrollment and, when the
// benchmark started Azurite itself, Azurite's CPU time per enrollment; it fails unless every enrollment wrote
// exactly its three entities, or if group commit sent more than the two transactions a lone enrollment needs.
// It first warms Azurite (azuritetest.Warmup enrollments, once per process; the benchmarks after it in this
// package then run against a warm Azurite too).
func BenchmarkGroupCommit(b *testing.B) {
	g := newGate()
	s := newGatedStore(b, g)
	warmOnce.Do(func() { warmErr = storetest.Enroll(b.Context(), s, benchWriters, azuritetest.Warmup(b), nil) })
	if warmErr != nil {
		b.Fatalf("warming Azurite: %v", warmErr)
	}
	ours := azuritetest.SharedPID() != 0 // not with AZSCEP_TABLES_CONNECTION: no process to read
	before := len(g.opsPerBatch())
	cpu0 := azuritetest.SharedCPU(b)
	b.ResetTimer()
	err := storetest.Enroll(b.Context(), s, benchWriters, b.N, func(step int) { time.Sleep(benchPauses[step]) })
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	used := azuritetest.SharedCPU(b) - cpu0
	batches := g.opsPerBatch()[before:]
	ops := 0
	for _, n := range batches {
		ops += n
	}
	n := float64(b.N)
	if ops != 3*b.N {
		b.Fatalf("%d entity operations for %d enrollments, want 3 each", ops, b.N)
	}
	if len(batches) > 2*b.N {
		b.Fatalf("%d transactions for %d enrollments, more than two each", len(batches), b.N)
	}
	b.ReportMetric(float64(len(batches))/n, "txn/enroll")
	b.ReportMetric(float64(ops)/n, "ops/enroll")
	if ours {
		b.ReportMetric(float64(used.Microseconds())/1000/n, "azurite-cpu-ms/enroll")
	}
}

// refusingBatches answers every transaction as the service refuses one whose first operation it will not take:
// a 202 whose changeset holds that operation's error (here, as for a property over 64 KiB, a permanent 400).
type refusingBatches struct {
	status int
	code   string
}

func (rb refusingBatches) Do(req *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(req.URL.Path, "/$batch") {
		return http.DefaultTransport.RoundTrip(req)
	}
	_, _ = io.Copy(io.Discard, req.Body)
	body := "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n" +
		"--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		fmt.Sprintf("HTTP/1.1 %d %s\r\n", rb.status, http.StatusText(rb.status)) +
		"Content-Type: application/json;odata=minimalmetadata;streaming=true;charset=utf-8\r\n\r\n" +
		`{"odata.error":{"code":"` + rb.code + `","message":{"lang":"en-US","value":"0:refused.\nRequestId:1\nTime:2026-12-07T00:00:00Z"}}}` +
		"\r\n--changesetresponse_2--\r\n--batchresponse_1--\r\n"
	return &http.Response{StatusCode: http.StatusAccepted, Status: "202 Accepted", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"multipart/mixed; boundary=batchresponse_1"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
}

// A transaction the service refuses for good (a 4xx on one of its operations) is not reported as an outage: the
// caller would answer "try again later" to a request that fails the same way every time. Throttling is.
func TestInsertBoundRefusalKeepsItsKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status      int
		code        string
		unavailable bool
	}{
		{http.StatusBadRequest, "PropertyValueTooLarge", false},
		{http.StatusBadRequest, "EntityTooLarge", false},
		{http.StatusServiceUnavailable, "ServerBusy", true},
		{http.StatusInternalServerError, "OperationTimedOut", true},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			s, err := NewFromConnectionString(azuritetest.ConnectionString(t), "", WithTransport(refusingBatches{tc.status, tc.code}),
				WithRetry(policy.RetryOptions{MaxRetries: -1}))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.EnsureTables(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, err = s.InsertBound(t.Context(), "k", nil, storetest.FullRecord(storetest.NewSerial()))
			if err == nil || errors.Is(err, store.ErrUnavailable) != tc.unavailable || !strings.Contains(err.Error(), tc.code) {
				t.Errorf("InsertBound refused with %d %s = %v; want an error naming the code, unavailable: %v",
					tc.status, tc.code, err, tc.unavailable)
			}
		})
	}
}
