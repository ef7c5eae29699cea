package testca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
)

func TestLogBuffer(t *testing.T) {
	t.Parallel()
	var b LogBuffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { log.Info("wanted", "n", i) })
	}
	wg.Wait()
	log.Info("other")
	_, _ = b.Write([]byte("not json\n"))

	recs := b.Records("wanted")
	if len(recs) != 8 {
		t.Fatalf("Records(wanted) = %d records, want 8:\n%s", len(recs), b.String())
	}
	seen := map[float64]bool{}
	for _, r := range recs {
		seen[r["n"].(float64)] = true
	}
	if len(seen) != 8 {
		t.Errorf("records lost or duplicated: %v", seen)
	}
	if got := len(b.Records("other")); got != 1 {
		t.Errorf("Records(other) = %d, want 1", got)
	}
	if got := len(b.Records("want")); got != 0 {
		t.Errorf("Records matched a prefix: %d", got)
	}
	if !strings.HasSuffix(b.String(), "not json\n") {
		t.Errorf("String does not end with the last write: %q", b.String())
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(start)
	var now func() time.Time = c.Now
	var _ interface{ Now() time.Time } = c
	if !now().Equal(start) {
		t.Fatalf("Now = %v, want %v", now(), start)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { c.Advance(time.Minute); _ = c.Now() })
	}
	wg.Wait()
	if want := start.Add(10 * time.Minute); !now().Equal(want) {
		t.Errorf("after 10 Advance(1m): %v, want %v", now(), want)
	}
	c.Set(start.Add(-time.Hour))
	if want := start.Add(-time.Hour); !c.Now().Equal(want) {
		t.Errorf("after Set: %v, want %v", c.Now(), want)
	}
	if !(&Clock{}).Now().IsZero() {
		t.Error("the zero Clock does not read the zero time")
	}
}

func TestCountingSigner(t *testing.T) {
	t.Parallel()
	ca := New(t, Options{})
	s := &CountingSigner{Signer: ca.Key}
	digest := sha256.Sum256([]byte("tbs"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(ca.Key.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Error("the signature is not the wrapped key's")
	}
	if s.Calls() != 1 {
		t.Errorf("Calls = %d, want 1", s.Calls())
	}
	down := errors.New("key vault down")
	s.Fail(down)
	if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, down) {
		t.Errorf("Sign after Fail = %v, want %v", err, down)
	}
	if s.Calls() != 2 {
		t.Errorf("Calls = %d, want 2 (failed calls count)", s.Calls())
	}
	s.Fail(nil)
	if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Errorf("Sign after Fail(nil): %v", err)
	}
	if s.Public() != ca.Key.Public() {
		t.Error("Public is not the wrapped key's")
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, "body")
	}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPut, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := Do(t, srv.Client(), req)
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Method") != http.MethodPut || string(body) != "body" {
		t.Errorf("Do = %d %q %q", resp.StatusCode, resp.Header.Get("X-Method"), body)
	}
}

// pagedStore serves n records in pages of q.Limit, the continuation token being the next index.
type pagedStore struct {
	n     int
	calls int
}

func (s *pagedStore) Search(_ context.Context, q store.Query) ([]*store.Record, string, error) {
	s.calls++
	from := 0
	if q.Continuation != "" {
		from, _ = strconv.Atoi(q.Continuation)
	}
	to := min(from+q.Limit, s.n)
	var page []*store.Record
	for i := from; i < to; i++ {
		page = append(page, &store.Record{Subject: strconv.Itoa(i)})
	}
	if to == s.n {
		return page, "", nil
	}
	return page, strconv.Itoa(to), nil
}

func TestAllRecords(t *testing.T) {
	t.Parallel()
	s := &pagedStore{n: 7}
	recs := AllRecords(t, s, store.Query{Limit: 3})
	if len(recs) != 7 || s.calls != 3 {
		t.Fatalf("AllRecords = %d records in %d pages, want 7 in 3", len(recs), s.calls)
	}
	for i, r := range recs {
		if r.Subject != strconv.Itoa(i) {
			t.Errorf("record %d is %q", i, r.Subject)
		}
	}
}
