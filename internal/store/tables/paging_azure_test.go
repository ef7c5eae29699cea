package tables_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
)

// azurePages cuts every query page Azurite answers into the pages Azure may answer it with (Query Timeout and
// Pagination): first an empty page that carries a continuation token (the query ran out of its five seconds, or
// met a partition boundary, before it found anything), then pages of fewer entities than $top, each with a
// token, the last with Azurite's own token (or none). A client that ends a listing on an empty or short page, or
// takes a short page for the last, loses entities; one that follows the tokens sees every entity once.
type azurePages struct {
	pages atomic.Int64 // pages served that Azurite alone would not have served
}

// pageToken is the continuation state azurePages hands out: the request Azurite is to answer (its own
// continuation, if any), how many of that answer's entities were served already, and whether the empty page was.
type pageToken struct {
	PK, RK string
	HasPK  bool
	Skip   int
}

const pageTokenPrefix = "azpage."

func (p *azurePages) Do(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || !strings.HasSuffix(req.URL.Path, "()") {
		return http.DefaultTransport.RoundTrip(req)
	}
	q := req.URL.Query()
	tok, started := pageToken{}, false
	if v := q.Get("NextPartitionKey"); strings.HasPrefix(v, pageTokenPrefix) {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(v, pageTokenPrefix))
		if err != nil || json.Unmarshal(raw, &tok) != nil {
			return nil, fmt.Errorf("azurePages: bad token %q", v)
		}
		started = true
		q.Del("NextPartitionKey")
		q.Del("NextRowKey")
		if tok.HasPK {
			q.Set("NextPartitionKey", tok.PK)
			q.Set("NextRowKey", tok.RK)
		}
	} else {
		tok = pageToken{PK: q.Get("NextPartitionKey"), RK: q.Get("NextRowKey"), HasPK: q.Has("NextPartitionKey")}
	}
	out := req.Clone(req.Context())
	out.URL.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var page map[string]json.RawMessage
	var value []json.RawMessage
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("azurePages: %w", err)
	}
	if err := json.Unmarshal(page["value"], &value); err != nil {
		return nil, fmt.Errorf("azurePages: %w", err)
	}
	value = value[min(tok.Skip, len(value)):]
	serve, more := value, false
	switch {
	case !started:
		serve, more = nil, true // the empty page, with a token
	case len(value) > 1:
		serve, more = value[:len(value)/2], true
	}
	if more {
		p.pages.Add(1)
		next := tok
		next.Skip += len(serve)
		raw, _ := json.Marshal(next)
		resp.Header.Set("x-ms-continuation-NextPartitionKey", pageTokenPrefix+base64.RawURLEncoding.EncodeToString(raw))
		resp.Header.Set("x-ms-continuation-NextRowKey", "-")
	}
	if serve == nil {
		serve = []json.RawMessage{}
	}
	page["value"], _ = json.Marshal(serve)
	body, _ = json.Marshal(page)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// The contract holds when the service pages as Azure may: empty pages with a token, short pages with a token.
func TestContractWithAzurePaging(t *testing.T) {
	pages := &azurePages{}
	t.Run("contract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, tables.WithTransport(pages)) })
	})
	if pages.pages.Load() == 0 {
		t.Error("no page was cut: the transport saw no query")
	}
}

// Every write the contract makes is one Azure takes.
func TestContractWithinAzureLimits(t *testing.T) {
	limits := &azureLimits{}
	t.Run("contract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, tables.WithTransport(limits)) })
	})
	if v := limits.take(); len(v) > 0 {
		t.Errorf("writes Azure refuses:\n%s", strings.Join(v, "\n"))
	}
	if limits.batches == 0 {
		t.Error("no transaction was checked")
	}
}

// largestRecord is a record with as many and as long names as policy allows, in a character the JSON on the wire
// escapes to six bytes ('&' is \u0026 there): the largest transaction body a record makes.
func largestRecord() *store.Record {
	r := storetest.FullRecord(storetest.NewSerial())
	r.SANs = nil
	for range 32 {
		r.SANs = append(r.SANs, "uri:https://app.example/?"+strings.Repeat("&", 512-len("https://app.example/?")))
	}
	return r
}

// The group commit of a busy instance and a restore fill transactions with the largest records; Azure refuses a
// transaction over 4 MiB (Azurite takes any), so both must stay within it.
func TestLargeTransactionsWithinAzureLimits(t *testing.T) {
	t.Parallel()
	limits := &azureLimits{}
	// Transactions of 1 to 2 MiB: the call timeout allows for Azurite on a loaded machine, not for Azure.
	s := newStore(t, tables.WithTransport(limits), tables.WithCallTimeout(time.Minute))
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			_, err := s.InsertBound(ctx, fmt.Sprintf("key-%d", i), nil, largestRecord())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var backup bytes.Buffer
	if _, err := s.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	dst := newStore(t, tables.WithTransport(limits), tables.WithCallTimeout(time.Minute))
	if inserted, _, err := dst.Restore(ctx, &backup); err != nil || inserted[tables.TableCerts] != 80 {
		t.Fatalf("restore: inserted %s, %v; want 80 certs entities", inserted, err)
	}
	if v := limits.take(); len(v) > 0 {
		t.Errorf("writes Azure refuses:\n%s", strings.Join(v, "\n"))
	}
	t.Logf("%d transactions, the largest %d bytes", limits.batches, limits.maxBatch)
}
