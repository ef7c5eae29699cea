package csrapi_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestRetryWindow: the same CSR from the same caller within the window is answered with the stored certificate
// (no second signature, no second record); another caller, or the same caller after the window, gets a new one.
func TestRetryWindow(t *testing.T) {
	e := newEnv(t)
	der := csrDER(t, ecKey(t, "retry"), testca.CSROptions{Subject: cn("retry-device")})
	tok := e.appToken()

	first := e.wantCert(e.post(tok, der))
	e.clock.Advance(retryWindow - time.Minute)
	// A fresh token for the same app is the same caller.
	again := e.wantCert(e.post(e.appToken(), der))
	if !again.Equal(first) {
		t.Fatalf("retry within the window got serial %s, want the stored %s",
			store.SerialString(again.SerialNumber), store.SerialString(first.SerialNumber))
	}
	if n, all := e.records(store.StatusIssued), e.records(""); n != 1 || all != 1 {
		t.Fatalf("records after a retry: %d issued, %d in all; want 1 and 1", n, all)
	}

	// Another caller (a user with CSR.Request.Db) sending the same CSR is a new request.
	other := e.wantCert(e.post(e.userToken(newUser("carol"), requestDb), der))
	if other.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("another caller got the first caller's certificate")
	}
	if rec := e.record(other); rec.Requester == e.record(first).Requester {
		t.Fatalf("both records name requester %q", rec.Requester)
	}

	// After the window the same caller gets a new certificate, and the first one's record stays as it was.
	e.clock.Advance(2 * time.Minute)
	later := e.wantCert(e.post(e.appToken(), der))
	if later.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("retry after the window replayed the old certificate")
	}
	if n := e.records(store.StatusIssued); n != 3 {
		t.Fatalf("issued records = %d, want 3", n)
	}
	e.record(first)
	// And the new certificate is now the one a retry gets.
	if again := e.wantCert(e.post(tok, der)); !again.Equal(later) {
		t.Fatal("retry after re-issuance did not get the newest certificate")
	}
}

// TestRetrySelfService: a self-service retry replays too, and is still subject to the ownership check.
func TestRetrySelfService(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	dev := entrafake.NewGUID()
	e.graph.AddDevice(dev, alice.oid)
	der := csrDER(t, ecKey(t, "retry-ss"), testca.CSROptions{Subject: cn(dev)})
	first := e.wantCert(e.post(e.userToken(alice, selfService), der))
	if again := e.wantCert(e.post(e.userToken(alice, selfService, entrafake.V1()), der)); !again.Equal(first) {
		t.Fatal("self-service retry (v1 token, same user) did not replay")
	}
	// A retry is still an ownership question: once the cached answer has expired (5 min) and Graph is down, the
	// retry inside the window gets 503, not the stored certificate.
	e.clock.Advance(6 * time.Minute)
	e.graph.SetFault(entrafake.Fault{Status: http.StatusServiceUnavailable})
	wantProblem(t, e.post(e.userToken(alice, selfService), der), http.StatusServiceUnavailable, csrapi.CodeUnavailable)
	e.graph.SetFault(entrafake.Fault{})
	if again := e.wantCert(e.post(e.userToken(alice, selfService), der)); !again.Equal(first) {
		t.Fatal("self-service retry after Graph recovered did not replay")
	}
	if n := e.records(""); n != 1 {
		t.Fatalf("records = %d, want 1", n)
	}
}

// TestRetryConcurrent: identical requests racing each other produce one certificate. Each racer gets either that
// certificate or 409 in_progress with Retry-After (the first one's signature is still under way); a retry after
// the race gets the certificate.
func TestRetryConcurrent(t *testing.T) {
	e := newEnv(t)
	der := csrDER(t, ecKey(t, "race"), testca.CSROptions{Subject: cn("race-device")})
	tok := e.appToken()
	const n = 8
	type result struct {
		status     int
		serial     string
		code       string
		retryAfter string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/csr", bytes.NewReader(der))
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var p problemBody
			_ = json.Unmarshal(body, &p)
			results[i] = result{resp.StatusCode, resp.Header.Get("X-Certificate-Serial"), p.Code, resp.Header.Get("Retry-After")}
		}()
	}
	wg.Wait()
	serial := ""
	for i, r := range results {
		switch {
		case r.status == http.StatusOK && r.serial != "" && (serial == "" || r.serial == serial):
			serial = r.serial
		case r.status == http.StatusConflict && r.code == csrapi.CodeInProgress && r.retryAfter != "":
		default:
			t.Fatalf("request %d: %+v; want 200 with the one serial, or 409 in_progress with Retry-After", i, r)
		}
	}
	if serial == "" {
		t.Fatal("no racer got the certificate")
	}
	if got := e.records(store.StatusIssued); got != 1 {
		t.Fatalf("issued records = %d for %d identical requests, want 1", got, n)
	}
	if got := e.wantCert(e.post(tok, der)); store.SerialString(got.SerialNumber) != serial {
		t.Fatalf("retry after the race got %s, want %s", store.SerialString(got.SerialNumber), serial)
	}
}

// TestRetryRevoked: a retry whose earlier certificate was revoked is refused (409), not answered with the
// revoked certificate.
func TestRetryRevoked(t *testing.T) {
	e := newEnv(t)
	der := csrDER(t, ecKey(t, "revoked"), testca.CSROptions{Subject: cn("revoked-device")})
	cert := e.wantCert(e.post(e.appToken(), der))
	rec := e.record(cert)
	rec.Status, rec.RevokedAt, rec.RevocationReason, rec.RevokedBy = store.StatusRevoked, e.clock.Now(), 1, "test"
	if err := e.store.Update(context.Background(), rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, e.post(e.appToken(), der), http.StatusConflict, "revoked")
}

// faultStore makes the store unavailable on demand.
type faultStore struct {
	store.Store
	down atomic.Bool
}

func (f *faultStore) err(op string) error {
	return fmt.Errorf("faultstore: %s: %w", op, store.ErrUnavailable)
}

func (f *faultStore) Insert(ctx context.Context, r *store.Record) error {
	if f.down.Load() {
		return f.err("insert")
	}
	return f.Store.Insert(ctx, r)
}

func (f *faultStore) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	if f.down.Load() {
		return store.Binding{}, f.err("insert bound")
	}
	return f.Store.InsertBound(ctx, key, prev, r)
}

func (f *faultStore) Lookup(ctx context.Context, key string) (store.Binding, error) {
	if f.down.Load() {
		return store.Binding{}, f.err("lookup")
	}
	return f.Store.Lookup(ctx, key)
}

// faultSigner is a CA key that fails like an unreachable Key Vault on demand.
type faultSigner struct {
	crypto.Signer
	down  atomic.Bool
	calls atomic.Int32
}

func (f *faultSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return nil, fmt.Errorf("faultsigner: %w", keyvault.ErrUnavailable)
	}
	return f.Signer.Sign(r, digest, opts)
}

// TestDependenciesDown: Table Storage or Key Vault being unavailable is 503 with Retry-After, and no certificate
// leaves; the same request succeeds once the dependency is back.
func TestDependenciesDown(t *testing.T) {
	t.Run("store", func(t *testing.T) {
		var fs *faultStore
		e := newEnvWith(t, deps{store: func(s store.Store) store.Store { fs = &faultStore{Store: s}; return fs }})
		der := csrDER(t, ecKey(t, "store-down"), testca.CSROptions{Subject: cn("store-down")})
		fs.down.Store(true)
		r := e.post(e.appToken(), der)
		wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
		wantRetryAfter(t, r, 1)
		fs.down.Store(false)
		e.wantCert(e.post(e.appToken(), der))
	})
	t.Run("key vault", func(t *testing.T) {
		var fsg *faultSigner
		e := newEnvWith(t, deps{signer: func(s crypto.Signer) crypto.Signer { fsg = &faultSigner{Signer: s}; return fsg }})
		der := csrDER(t, ecKey(t, "kv-down"), testca.CSROptions{Subject: cn("kv-down")})
		fsg.down.Store(true)
		r := e.post(e.appToken(), der)
		wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
		wantRetryAfter(t, r, 1)
		if fsg.calls.Load() != 1 {
			t.Fatalf("CA key calls = %d, want 1", fsg.calls.Load())
		}
		if n := e.records(store.StatusIssued); n != 0 {
			t.Fatalf("issued records = %d while the CA key is down", n)
		}
		if n := e.records(store.StatusAbandoned); n != 1 {
			t.Fatalf("abandoned records = %d, want the one pending record abandoned", n)
		}
		fsg.down.Store(false)
		e.wantCert(e.post(e.appToken(), der))
	})
}

// TestRateLimit: a burst beyond the per-caller limit gets 429 with Retry-After before any work is done; other
// callers are not affected.
func TestRateLimit(t *testing.T) {
	t.Run("configured", func(t *testing.T) {
		// One request per thousand seconds (burst 1): the second request is over the limit however slow the
		// machine is, and Retry-After says how long to wait.
		e := newEnv(t, func(c *csrapi.Config) { c.RatePerCaller = 0.001 })
		der := csrDER(t, ecKey(t, "rate"), testca.CSROptions{Subject: cn("rate-device")})
		e.wantCert(e.post(e.appToken(), der))
		for range 3 {
			r := e.post(e.appToken(), der)
			wantProblem(t, r, http.StatusTooManyRequests, csrapi.CodeRateLimited)
			wantRetryAfter(t, r, 900)
		}
		// Another caller has its own bucket.
		e.wantCert(e.post(e.userToken(newUser("dave"), requestDb), der))
		if n := e.records(""); n != 2 {
			t.Fatalf("records = %d, want 2", n)
		}
	})
	t.Run("default", func(t *testing.T) {
		e := newEnv(t, func(c *csrapi.Config) { c.RatePerCaller = 0 })
		tok := e.appToken()
		// Cheap requests (refused for their media type after the rate check) drain the default burst of 21.
		const burst = 21
		limited := 0
		for i := 0; i < 200 && limited == 0; i++ {
			r := e.do(request{body: []byte("{}"), contentType: "application/json", auth: bearer(tok)})
			switch r.StatusCode {
			case http.StatusTooManyRequests:
				if i < burst {
					t.Fatalf("request %d limited inside the burst", i)
				}
				wantProblem(t, r, http.StatusTooManyRequests, csrapi.CodeRateLimited)
				wantRetryAfter(t, r, 1)
				limited++
			case http.StatusUnsupportedMediaType:
			default:
				t.Fatalf("request %d: status %d", i, r.StatusCode)
			}
		}
		if limited == 0 {
			t.Fatal("200 back-to-back requests were never rate limited")
		}
	})
}
