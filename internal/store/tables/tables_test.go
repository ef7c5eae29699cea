package tables_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
	"github.com/azscep/azscep/internal/transport"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// newStore returns a store on fresh tables of the shared Azurite.
func newStore(t testing.TB, opts ...tables.Option) *tables.Store {
	t.Helper()
	s, err := tables.NewFromConnectionString(azuritetest.ConnectionString(t), "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureTables(t.Context()); err != nil {
		t.Fatalf("EnsureTables: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestEnsureTablesTwice(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if err := s.EnsureTables(t.Context()); err != nil {
		t.Fatalf("second EnsureTables: %v", err)
	}
}

// A missing table is a deployment fault: it must not read as "no such certificate".
func TestMissingTableIsUnavailable(t *testing.T) {
	t.Parallel()
	s, err := tables.NewFromConnectionString(azuritetest.ConnectionString(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "ABCDEF"); !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get without tables = %v, want ErrUnavailable only", err)
	}
	if _, _, err := s.GetMeta(t.Context(), "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetMeta without tables = %v, want ErrUnavailable", err)
	}
}

func TestPrefix(t *testing.T) {
	conn := azuritetest.ConnectionString(t)
	s, err := tables.NewFromConnectionString(conn, "ca1")
	if err != nil {
		t.Fatal(err)
	}
	names := s.TableNames()
	if len(names) != 5 || !strings.HasPrefix(names[0], "t") || !strings.HasSuffix(names[0], "ca1certs") {
		t.Errorf("table names %v: want the connection string's prefix, then ca1", names)
	}
	// Without a TablePrefix the argument alone must make valid table names.
	plain := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=AAAA;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
	for _, bad := range []string{"1abc", "a-b", "ab_c", strings.Repeat("a", 57)} {
		if _, err := tables.NewFromConnectionString(plain, bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
	if _, err := tables.NewFromConnectionString(plain, "a1"); err != nil {
		t.Errorf("prefix a1 refused: %v", err)
	}
	if _, err := tables.NewFromConnectionString("UseDevelopmentStorage=true", ""); err == nil {
		t.Error("shorthand connection string accepted")
	}
}

// The stopped-backend case the health endpoint and the HTTP edge rely on: every call fails with
// ErrUnavailable (quickly, thanks to the small retry budget), and the store recovers when the backend returns.
func TestStoppedBackendIsUnavailable(t *testing.T) {
	t.Parallel()
	proxy := azuritetest.NewProxy(t)
	s, err := tables.NewFromConnectionString(proxy.ConnectionString(), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	proxy.Stop()
	checks := map[string]error{
		"Ping":       s.Ping(ctx),
		"Insert":     s.Insert(ctx, storetest.FullRecord(storetest.NewSerial())),
		"AddRevoked": func() error { _, err := s.AddRevoked(ctx, store.Revoked{Serial: r.Serial}); return err }(),
	}
	_, checks["Get"] = s.Get(ctx, r.Serial)
	_, checks["InsertBound"] = s.InsertBound(ctx, "k", nil, &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending})
	_, checks["ListRevoked"] = s.ListRevoked(ctx)
	_, _, checks["Search"] = s.Search(ctx, store.Query{})
	_, _, checks["GetMeta"] = s.GetMeta(ctx, "m")
	up := *r
	up.Status = store.StatusIssued
	checks["Update"] = s.Update(ctx, &up, store.StatusPending)
	for name, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the backend gone = %v, want ErrUnavailable", name, err)
		}
	}

	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after recovery: %v", err)
	}
	got, err := s.Get(ctx, r.Serial)
	if err != nil || got.Status != store.StatusPending {
		t.Fatalf("Get after recovery = %v, %v", got, err)
	}
	r.Status = store.StatusIssued
	if err := s.Update(ctx, r, store.StatusPending); err != nil {
		t.Errorf("Update after recovery: %v", err)
	}
}

// A call that hangs is cut by the per-call timeout and reported as unavailable.
func TestCallTimeoutIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	conn := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=AAAA;TableEndpoint=http://" + ln.Addr().String() + "/devstoreaccount1;"
	s, err := tables.NewFromConnectionString(conn, "", tables.WithCallTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "ABC"); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get against a silent server = %v, want ErrUnavailable wrapping the deadline", err)
	}
}

// lossyTransport sends a request and then drops the response for the requests drop selects, as a network
// failure after the service committed the write would.
type lossyTransport struct {
	drop    func(*http.Request) bool
	dropped atomic.Int32
}

func (l *lossyTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && l.drop(req) {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		l.dropped.Add(1)
		return nil, fmt.Errorf("connection reset after %s %s (simulated)", req.Method, req.URL.Path)
	}
	return resp, err
}

// When the SDK retries a write whose response was lost, the retry meets our own entity (409 or 412); the store
// recognises its WriteID and reports the success it was, instead of "exists" or "conflict".
func TestLostResponseIsRetriedAsSuccess(t *testing.T) {
	t.Parallel()
	var once sync.Map     // method+path → dropped once
	var armed atomic.Bool // from the first write after start-up (which writes the layout document)
	lt := &lossyTransport{drop: func(r *http.Request) bool {
		if !armed.Load() || r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch {
			return false
		}
		if strings.HasSuffix(r.URL.Path, "/Tables") {
			return false
		}
		_, seen := once.LoadOrStore(r.Method+" "+r.URL.Path, true)
		return !seen
	}}
	retry := tables.DefaultRetry
	retry.RetryDelay = time.Millisecond
	s := newStore(t, tables.WithTransport(lt), tables.WithRetry(retry))
	ctx := t.Context()
	armed.Store(true)

	// Every write to the certs table is a transaction on the same $batch path: drop the next one's response.
	dropNextBatch := func() {
		once.Range(func(k, _ any) bool {
			if strings.HasSuffix(k.(string), "/$batch") {
				once.Delete(k)
			}
			return true
		})
	}
	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(ctx, r); err != nil {
		t.Fatalf("Insert with a lost response: %v", err)
	}
	r.Status = store.StatusIssued
	dropNextBatch()
	if err := s.Update(ctx, r, store.StatusPending); err != nil {
		t.Fatalf("Update with a lost response: %v", err)
	}
	got, err := s.Get(ctx, r.Serial)
	if err != nil || got.ETag != r.ETag || got.Status != store.StatusIssued {
		t.Fatalf("after lost responses: %v, etag %q vs %q", err, got.ETag, r.ETag)
	}
	bound := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
	dropNextBatch()
	b, err := s.InsertBound(ctx, "lost", nil, bound)
	if err != nil || b.Serial != bound.Serial || b.ETag == "" {
		t.Fatalf("InsertBound with a lost response: %+v, %v", b, err)
	}
	if got, err := s.Get(ctx, bound.Serial); err != nil || got.ETag != bound.ETag {
		t.Fatalf("InsertBound with a lost response left the record's ETag %q, stored %+v, %v", bound.ETag, got, err)
	}
	dropNextBatch()
	next := &store.Record{Serial: storetest.NewSerial(), Status: store.StatusPending}
	if nb, err := s.InsertBound(ctx, "lost", &b, next); err != nil || nb.Serial != next.Serial {
		t.Fatalf("rebinding InsertBound with a lost response: %+v, %v", nb, err)
	}
	// A revocation request's insert and its update (a merge outside the certs table, so not a transaction).
	q := &store.RevocationRequest{RequestContext: "lost-ctx", SerialNumber: bound.Serial}
	if err := s.EnqueueRevocation(ctx, q); err != nil {
		t.Fatalf("EnqueueRevocation with a lost response: %v", err)
	}
	q.State, q.Succeeded = store.WorkApplied, true
	if err := s.UpdateRevocation(ctx, q); err != nil {
		t.Fatalf("UpdateRevocation with a lost response: %v", err)
	}
	if open, err := s.OpenRevocations(ctx, 0); err != nil || len(open) != 1 || open[0].ETag != q.ETag || open[0].State != store.WorkApplied {
		t.Fatalf("after UpdateRevocation with a lost response: %+v, %v (ETag %q)", open, err, q.ETag)
	}
	if n := lt.dropped.Load(); n != 6 {
		t.Errorf("dropped %d responses, want 6 (the test did not exercise the retry path)", n)
	}
	// Someone else's write still conflicts.
	stale := *got
	stale.Status = store.StatusRevoked
	if err := s.Update(ctx, got, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, &stale, store.StatusIssued); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale Update = %v, want ErrConflict", err)
	}
}

// More revoked entries than one service page (1,000) all come back.
func TestListRevokedPages(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	const n = 1234
	addRevoked(t, s, n)
	got, err := s.ListRevoked(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("ListRevoked returned %d entries, want %d", len(got), n)
	}
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.Serial] || e.RevokedAt.IsZero() || e.Reason != 1 {
			t.Fatalf("bad entry %+v", e)
		}
		seen[e.Serial] = true
	}
}

func addRevoked(t testing.TB, s store.Store, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := atomic.Int64{}
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := s.AddRevoked(t.Context(), store.Revoked{Serial: fmt.Sprintf("%X", 0x100000+i), RevokedAt: time.Now(), Reason: 1}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func BenchmarkInsertUpdate(b *testing.B) {
	s := newStore(b)
	ctx := b.Context()
	for b.Loop() {
		r := storetest.FullRecord(storetest.NewSerial())
		if err := s.Insert(ctx, r); err != nil {
			b.Fatal(err)
		}
		r.Status = store.StatusIssued
		r.CertDER = r.PlannedDER
		if err := s.Update(ctx, r, store.StatusPending); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := newStore(b)
	ctx := b.Context()
	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(ctx, r); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Get(ctx, r.Serial); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListRevoked10k(b *testing.B) {
	s := newStore(b)
	addRevoked(b, s, 10000)
	for b.Loop() {
		got, err := s.ListRevoked(b.Context())
		if err != nil || len(got) != 10000 {
			b.Fatalf("ListRevoked: %d entries, %v", len(got), err)
		}
	}
}

type fakeCredential struct{ scopes chan []string }

func (f fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	select {
	case f.scopes <- o.Scopes:
	default:
	}
	return azcore.AccessToken{Token: "test-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// The managed-identity path: requests carry a bearer token for Azure Storage's scope.
func TestNewWithCredential(t *testing.T) {
	auth := make(chan string, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case auth <- r.Header.Get("Authorization"):
		default:
		}
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
		_, _ = io.WriteString(w, `{"value":[]}`)
	}))
	defer srv.Close()
	cred := fakeCredential{scopes: make(chan []string, 1)}
	s, err := tables.NewWithCredential(srv.URL, cred, "ca", tables.WithTransport(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got := <-auth; got != "Bearer test-token" {
		t.Errorf("Authorization = %q", got)
	}
	if got := <-cred.scopes; len(got) != 1 || got[0] != "https://storage.azure.com/.default" {
		t.Errorf("token scopes = %v", got)
	}
}

// TestAnswersAreCapped: whatever answers for Table Storage (a proxy, a misrouted private endpoint) cannot make a
// read allocate without bound: a point read answered with 256 MiB fails as unavailable after reading about the
// cap, whether the answer announces its length or not.
func TestAnswersAreCapped(t *testing.T) {
	const answer = 256 << 20
	chunk := bytes.Repeat([]byte("A"), 1<<20) // one buffer, so that the server's writes allocate nothing measured
	for _, announced := range []bool{true, false} {
		var attempts atomic.Int32
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			attempts.Add(1)
			w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
			if announced {
				w.Header().Set("Content-Length", strconv.Itoa(answer))
			}
			for range answer >> 20 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}))
		// Reading the 64 MiB up to the cap is what is measured here, not the try timeout: under the race detector
		// it takes longer than the default 5 s try, whose expiry would hide the cap behind a retry.
		retry := tables.DefaultRetry
		retry.TryTimeout = time.Minute
		s, err := tables.NewWithCredential(srv.URL, fakeCredential{scopes: make(chan []string, 1)}, "ca",
			tables.WithTransport(srv.Client()), tables.WithRetry(retry), tables.WithCallTimeout(2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = s.Get(t.Context(), "01AB")
		runtime.ReadMemStats(&after)
		srv.Close()
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, transport.ErrAnswerTooLarge) {
			t.Errorf("announced=%v: Get = %v, want unavailable: answer too large", announced, err)
		}
		// One attempt (the same answer would come back), and at most about twice the cap (64 MiB; the buffer
		// doubles while it reads up to the cap).
		if n := attempts.Load(); n != 1 {
			t.Errorf("announced=%v: %d attempts, want 1", announced, n)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 160<<20 && !raceDetector {
			t.Errorf("announced=%v: allocated %d MiB", announced, alloc>>20)
		}
	}
}

// slowQueries answers every query page (a GET with $filter) only after delay, as the service does when it executes
// a query for its full five seconds before answering with a continuation token; other calls pass at once.
type slowQueries struct {
	delay time.Duration
	armed atomic.Bool
}

func (s *slowQueries) Do(req *http.Request) (*http.Response, error) {
	if s.armed.Load() && req.Method == http.MethodGet && req.URL.Query().Has("$filter") {
		select {
		case <-time.After(s.delay):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// A query page the service takes longer over than a write's try timeout is waited for, not cut and tried again
// until the listing fails: the service may execute a query for five seconds, the same as that timeout, before it
// answers, so on a large partition a sparse filter (the pending records) would otherwise fail on every call.
func TestSlowQueryPagesAreWaitedFor(t *testing.T) {
	t.Parallel()
	slow := &slowQueries{delay: 300 * time.Millisecond}
	retry := tables.DefaultRetry
	retry.TryTimeout = 100 * time.Millisecond // the write-sized try timeout, scaled down with the service's page time
	s := newStore(t, tables.WithTransport(slow), tables.WithRetry(retry))
	ctx := t.Context()
	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRevoked(ctx, store.Revoked{Serial: r.Serial, RevokedAt: time.Now(), Reason: 1}); err != nil {
		t.Fatal(err)
	}
	slow.armed.Store(true)
	if got, err := s.Pending(ctx, time.Now().Add(time.Hour)); err != nil || len(got) != 1 {
		t.Errorf("Pending with slow pages = %d records, %v; want the one", len(got), err)
	}
	if got, err := s.ListRevoked(ctx); err != nil || len(got) != 1 {
		t.Errorf("ListRevoked with slow pages = %d entries, %v; want the one", len(got), err)
	}
	if got, _, err := s.Search(ctx, store.Query{Status: store.StatusPending}); err != nil || len(got) != 1 {
		t.Errorf("Search with slow pages = %d records, %v; want the one", len(got), err)
	}
}

// requestLog passes every request on and keeps the method and unescaped path and query of those it is armed for.
type requestLog struct {
	mu    sync.Mutex
	armed bool
	seen  []string
}

func (l *requestLog) Do(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	if l.armed {
		q, _ := url.QueryUnescape(req.URL.RawQuery)
		l.seen = append(l.seen, req.Method+" "+req.URL.Path+"?"+q)
	}
	l.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := l.seen
	l.seen, l.armed = nil, true
	return seen
}

// The status route (GET /api/certificates/revocation-sync/{id}) reads a run by the ID it was given: one point read,
// for a run that exists and for one that does not, whatever the number of runs kept, rather than a query over the
// runs partition, which the service answers with a scan and, for an ID it does not hold, pages through to the end.
// An ID of the older form, which holds no start, is still found by the query.
func TestRunByIDIsOnePointRead(t *testing.T) {
	t.Parallel()
	log := &requestLog{}
	s := newStore(t, tables.WithTransport(log))
	ctx := t.Context()
	started := time.Now().Add(-time.Hour)
	legacy := store.SyncRun{ID: "0123456789abcdef", Started: started.Add(-time.Hour), Trigger: "timer"}
	if err := s.RecordRun(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		at := started.Add(time.Duration(i) * time.Minute)
		run := store.SyncRun{ID: store.NewRunID(at), Started: at, Trigger: "timer"}
		if err := s.RecordRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	log.take()
	for _, id := range []string{ids[2], store.NewRunID(started.Add(2 * time.Minute)), store.NewRunID(time.Now())} {
		r, err := s.RunByID(ctx, id)
		if found := id == ids[2]; found && (err != nil || r.ID != id) || !found && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunByID(%s) = %+v, %v", id, r, err)
		}
		seen := log.take()
		if len(seen) != 1 || strings.Contains(seen[0], "$filter") || !strings.Contains(seen[0], "RowKey='") {
			t.Errorf("RunByID(%s) sent %q; want one point read", id, seen)
		}
	}
	if r, err := s.RunByID(ctx, legacy.ID); err != nil || r.ID != legacy.ID {
		t.Errorf("RunByID of an ID of the older form = %+v, %v", r, err)
	}
	if seen := log.take(); len(seen) != 1 || !strings.Contains(seen[0], "$filter") {
		t.Errorf("RunByID of an ID of the older form sent %q; want the query", seen)
	}
}
