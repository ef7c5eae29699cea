package tables

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// scanningService answers the first page of every query with no entities and a continuation, as the service does
// when it scanned a large partition for its five seconds without finding a match; asked with that continuation, it
// gives Azurite's answer to the query. It counts the query pages asked for.
type scanningService struct{ queries atomic.Int64 }

const scannedMark = "scanned"

func (s *scanningService) Do(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || !strings.HasSuffix(req.URL.Path, "()") {
		return http.DefaultTransport.RoundTrip(req)
	}
	s.queries.Add(1)
	q := req.URL.Query()
	first := !q.Has("NextPartitionKey")
	if q.Get("NextPartitionKey") == scannedMark {
		q.Del("NextPartitionKey")
		q.Del("NextRowKey")
	}
	out := req.Clone(req.Context())
	out.URL.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil || resp.StatusCode != http.StatusOK || !first {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var page map[string]json.RawMessage
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, err
	}
	page["value"] = json.RawMessage("[]")
	body, _ = json.Marshal(page)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Set("x-ms-continuation-NextPartitionKey", scannedMark)
	resp.Header.Set("x-ms-continuation-NextRowKey", "-")
	return resp, nil
}

// A Search with ScanPages whose filter the service answers only by scanning asks for at most that many pages: past them it
// returns what it found (nothing here) with a token, which goes on from where the service stopped and finds the
// records, each once. A caller bounded in time, as the hourly sweeps are, keeps the progress of every call instead
// of ending, every run, inside one call that scans for minutes.
func TestSearchAsksForBoundedPages(t *testing.T) {
	t.Parallel()
	svc := &scanningService{}
	s := newInternalStore(t, WithTransport(svc))
	ctx := t.Context()
	want := map[string]bool{}
	for range 3 {
		r := storetest.FullRecord(storetest.NewSerial())
		if err := s.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		want[r.Serial] = true
	}
	before := svc.queries.Load()
	page, next, err := s.Search(ctx, store.Query{Status: store.StatusPending, Limit: 10, ScanPages: 1})
	if err != nil || len(page) != 0 || next == "" || svc.queries.Load()-before != 1 {
		t.Fatalf("first call = %d records, next %q, %v, after %d query pages; want none, a token, one page", len(page),
			next, err, svc.queries.Load()-before)
	}
	page, next, err = s.Search(ctx, store.Query{Status: store.StatusPending, Limit: 10, ScanPages: 1, Continuation: next})
	if err != nil || len(page) != len(want) || next != "" {
		t.Fatalf("second call = %d records, next %q, %v; want the %d records, no token", len(page), next, err, len(want))
	}
	for _, r := range page {
		if !want[r.Serial] {
			t.Errorf("unexpected or repeated record %s", r.Serial)
		}
		delete(want, r.Serial)
	}
}
