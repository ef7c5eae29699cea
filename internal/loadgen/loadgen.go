// Package loadgen drives an HTTP service with pre-built requests from C concurrent clients and measures what
// came back: throughput, latency percentiles and errors. It exists for `make bench` (SPEC §6), so that azscep,
// micromdm/scep and step-ca are measured by the same client on the same machine.
//
// Everything expensive on the client side (key generation, CSR signatures, SCEP envelopes, bearer tokens) is
// done before the timed phase by the builders in this package (BuildSCEP, BuildCSR). During the timed phase a
// client only sends bytes and runs each request's Check, which must stay cheap (parse and status checks, no
// private-key operation): on a small machine the load generator shares the CPU with the server, and a client
// that decrypts every answer would measure itself. Full verification of a sample of answers is done after the
// run (VerifyCertRep).
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one pre-built HTTP request.
type Request struct {
	// Method is GET or POST.
	Method string
	// Path is appended to Options.BaseURL; it may carry a query.
	Path   string
	Header http.Header
	Body   []byte
	// Check judges the answer during the timed phase; nil accepts any 2xx. It must be cheap and safe for
	// concurrent use.
	Check func(status int, header http.Header, body []byte) error
}

// Options configures Run.
type Options struct {
	// BaseURL is the service root, e.g. http://127.0.0.1:7071.
	BaseURL string
	// Concurrency is the number of clients sending at once (at least 1).
	Concurrency int
	// Duration stops the run after this long; 0 sends every request. A run also ends when the requests run out,
	// which Result.Exhausted reports so that a too-short request list cannot pass for a timed run.
	Duration time.Duration
	// Client sends the requests; nil means a client with keep-alive connections for Concurrency clients.
	Client *http.Client
	// RequestTimeout bounds each request (default 60 s). A request that hits it counts as an error.
	RequestTimeout time.Duration
	// KeepBodies keeps the answer bodies (Result.Bodies, indexed like the requests) for verification after
	// the run. Off by default: bodies cost memory and nothing in the timed phase needs them.
	KeepBodies bool
}

// Result is what one run measured.
type Result struct {
	Sent      int           // requests sent (answered or failed)
	Errors    int           // transport errors, non-2xx answers without a Check, and failed Checks
	Elapsed   time.Duration // first send to last answer
	Exhausted bool          // the run ended because the requests ran out before Duration
	// Latencies of every sent request (successful or not), sorted ascending.
	Latencies []time.Duration
	// ErrorKinds counts errors by a short description (status code or error text, clipped), at most 20 kinds.
	ErrorKinds map[string]int
	// Statuses counts answers by HTTP status (0 = no answer).
	Statuses map[int]int
	// Bodies holds answer bodies when Options.KeepBodies is set; nil for unsent requests.
	Bodies [][]byte
}

// Throughput is successful requests per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent-r.Errors) / r.Elapsed.Seconds()
}

// Percentile returns the latency at quantile q (0 < q ≤ 1) with the nearest-rank method, or 0 without samples.
func (r *Result) Percentile(q float64) time.Duration {
	return percentile(r.Latencies, q)
}

// Mean is the mean latency.
func (r *Result) Mean() time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.Latencies {
		sum += d
	}
	return sum / time.Duration(len(r.Latencies))
}

// String summarises the run on one line.
func (r *Result) String() string {
	return fmt.Sprintf("%d sent, %d errors in %s: %.1f/s, p50 %s, p99 %s",
		r.Sent, r.Errors, r.Elapsed.Round(time.Millisecond), r.Throughput(),
		r.Percentile(0.50).Round(10*time.Microsecond), r.Percentile(0.99).Round(10*time.Microsecond))
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 || q <= 0 {
		return 0
	}
	if q > 1 {
		q = 1
	}
	// Nearest rank: the smallest value with at least q of the samples at or below it.
	rank := int(q*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ErrNoRequests is returned by Run when there is nothing to send.
var ErrNoRequests = errors.New("loadgen: no requests")

const maxErrorKinds = 20

// Run sends reqs in order from Concurrency clients until they run out, Duration passes or ctx ends, and reports
// what it measured. Each request is sent at most once. It returns an error only for unusable options; failures
// of individual requests are counted in the Result.
func Run(ctx context.Context, opts Options, reqs []Request) (*Result, error) {
	if len(reqs) == 0 {
		return nil, ErrNoRequests
	}
	if opts.BaseURL == "" {
		return nil, errors.New("loadgen: BaseURL is required")
	}
	c := max(opts.Concurrency, 1)
	timeout := opts.RequestTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	client := opts.Client
	if client == nil {
		client = NewClient(c)
	}
	base := strings.TrimRight(opts.BaseURL, "/")

	var (
		next      atomic.Int64
		latencies = make([]time.Duration, len(reqs))
		statuses  = make([]int, len(reqs))
		failed    = make([]string, len(reqs)) // "" = success
		bodies    [][]byte
	)
	if opts.KeepBodies {
		bodies = make([][]byte, len(reqs))
	}
	runCtx := ctx
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}

	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) {
					return
				}
				// A request that was started is finished under the parent context: cutting it off when the
				// duration ends would record a spurious error.
				t0 := time.Now()
				status, header, body, err := send(ctx, client, base, &reqs[i], timeout)
				latencies[i] = time.Since(t0)
				statuses[i] = status
				if err == nil {
					err = check(&reqs[i], status, header, body)
				}
				if err != nil {
					failed[i] = clip(err.Error())
				}
				if bodies != nil {
					bodies[i] = body
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	// A worker claims an index only while the run is on and always sends what it claimed; workers that found
	// the list empty pushed next past the end.
	sent := min(int(next.Load()), len(reqs))
	res := &Result{Elapsed: elapsed, ErrorKinds: map[string]int{}, Statuses: map[int]int{}, Bodies: bodies}
	for i := range sent {
		res.Sent++
		res.Latencies = append(res.Latencies, latencies[i])
		res.Statuses[statuses[i]]++
		if failed[i] != "" {
			res.Errors++
			if _, ok := res.ErrorKinds[failed[i]]; ok || len(res.ErrorKinds) < maxErrorKinds {
				res.ErrorKinds[failed[i]]++
			}
		}
	}
	res.Exhausted = int(next.Load()) >= len(reqs) && (opts.Duration == 0 || elapsed < opts.Duration)
	sort.Slice(res.Latencies, func(a, b int) bool { return res.Latencies[a] < res.Latencies[b] })
	return res, nil
}

// NewClient returns an HTTP client that keeps one idle connection per concurrent client, so the run measures
// requests rather than TCP handshakes.
func NewClient(concurrency int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(concurrency, 1) * 2
	tr.MaxIdleConnsPerHost = max(concurrency, 1) * 2
	return &http.Client{Transport: tr}
}

func send(ctx context.Context, client *http.Client, base string, r *Request, timeout time.Duration) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, base+r.Path, body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("building request: %w", err)
	}
	for k, v := range r.Header {
		req.Header[k] = slices.Clone(v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("reading answer: %w", err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

func check(r *Request, status int, header http.Header, body []byte) error {
	if r.Check != nil {
		return r.Check(status, header, body)
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("HTTP %d", status)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}
