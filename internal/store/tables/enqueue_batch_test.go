package tables_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
)

// newRequests returns n downloaded revocation requests with request contexts under prefix.
func newRequests(prefix string, n int) []*store.RevocationRequest {
	rs := make([]*store.RevocationRequest, n)
	for i := range rs {
		rs[i] = &store.RevocationRequest{RequestContext: fmt.Sprintf("%s/%d", prefix, i), SerialNumber: storetest.NewSerial()}
	}
	return rs
}

// TestEnqueueRevocationsLostAnswer: a batch of inserts whose answer is lost after Table Storage committed it. When
// the SDK's retry meets the entities the first attempt wrote, the store recognises its own WriteIDs and reports the
// success it was, with each item's stored ETag (so the sync's ETag-conditioned updates that follow go through),
// rather than ErrExists, which would send every item down the path of a request delivered before. When no retry
// reaches the service, the caller is told it failed, and inserting the items again one by one finds each one
// stored once: nothing lost, nothing held twice.
func TestEnqueueRevocationsLostAnswer(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	lt := &lossyTransport{drop: func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/$batch") && armed.CompareAndSwap(true, false)
	}}
	retry := tables.DefaultRetry
	retry.RetryDelay = time.Millisecond
	s := newStore(t, tables.WithTransport(lt), tables.WithRetry(retry))
	ctx := t.Context()

	rs := newRequests("lost", 40)
	armed.Store(true)
	if err := s.EnqueueRevocations(ctx, rs); err != nil {
		t.Fatalf("EnqueueRevocations with a lost answer, retried by the SDK: %v", err)
	}
	if n := lt.dropped.Load(); n != 1 {
		t.Fatalf("dropped %d answers, want 1 (the test did not exercise the retry)", n)
	}
	for i, r := range rs {
		got, err := s.Revocation(ctx, r.RequestContext)
		if err != nil || got.ETag != r.ETag || got.State != store.WorkDownloaded || !got.Downloaded.Equal(r.Downloaded) {
			t.Fatalf("item %d: stored %+v, %v; caller holds ETag %q, downloaded %v", i, got, err, r.ETag, r.Downloaded)
		}
		r.State = store.WorkApplied
	}
	if err := s.UpdateRevocations(ctx, rs); err != nil {
		t.Fatalf("UpdateRevocations on the ETags the lost answer's batch reported: %v", err)
	}

	// A batch naming an item someone else stored is still refused, lost answer or not, and writes nothing.
	other := newRequests("other", 3)
	other[1] = &store.RevocationRequest{RequestContext: rs[7].RequestContext, SerialNumber: rs[7].SerialNumber}
	armed.Store(true)
	if err := s.EnqueueRevocations(ctx, other); !errors.Is(err, store.ErrExists) {
		t.Fatalf("EnqueueRevocations with a known item and a lost answer = %v, want ErrExists", err)
	}
	for _, r := range []*store.RevocationRequest{other[0], other[2]} {
		if _, err := s.Revocation(ctx, r.RequestContext); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s written by a refused batch (%v)", r.RequestContext, err)
		}
	}

	// No retry reaches the service: the caller cannot tell, and writing the items one by one is safe.
	noRetry := tables.DefaultRetry
	noRetry.MaxRetries = -1
	once := newStore(t, tables.WithTransport(lt), tables.WithRetry(noRetry))
	rs = newRequests("unsure", 5)
	armed.Store(true)
	if err := once.EnqueueRevocations(ctx, rs); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("EnqueueRevocations with a lost answer and no retry = %v, want ErrUnavailable", err)
	}
	for i, r := range rs {
		if err := once.EnqueueRevocation(ctx, r); !errors.Is(err, store.ErrExists) {
			t.Errorf("item %d written again one by one = %v, want ErrExists (the batch committed)", i, err)
		}
	}
	open, err := once.OpenRevocations(ctx, 0)
	if err != nil || len(open) != len(rs) {
		t.Fatalf("OpenRevocations = %d items, %v; want each of the %d once", len(open), err, len(rs))
	}
}
