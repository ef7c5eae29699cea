// Package loadgen drives an HTTP service with pre-built requests from C concurrent clients and measures what
// came back: throughput, latency percentiles and errors. It exists for `make bench` (SPEC §6), so that azscep,
// micromdm/scep and step-ca are measured by the same client on the same machine.
//
// Everything expensive on the client side (key generation, CSR signatures, SCEP envelopes, bearer tokens) is
// done before the timed phase by the builders in this package (BuildSCEP, BuildCSR). During the timed phase a
// client only sends bytes and reads answers; every answer's Check runs after the last answer came back (Run),
// because on a small machine the load generator shares the CPU with the server, and a client that parses and
// verifies answers while the server works would take that CPU from it and measure itself. Full verification
// of a sample of answers, as a device does it, is done by the caller after the run (VerifyCertRep).
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
	// Check judges the answer; nil accepts any 2xx. Run calls it after the timed phase, from several
	// goroutines at once, so it must be safe for concurrent use.
	Check func(status int, header http.Header, body []byte) error
}

// Options configures Run.
type Options struct {
	// BaseURL is the service root, e.g. http://127.0.0.1:7071.
	BaseURL string
	// Concurrency is the number of clients sending at once (at least 1).
	Concurrency int
	// Duration stops the sending after this long; 0 sends every request. A run also ends when the requests run
	// out, which Result.Exhausted reports so that a too-short request list cannot pass for a timed run. Run
	// returns later by the time the answers' checks take.
	Duration time.Duration
	// Client sends the requests; nil means a client with keep-alive connections for Concurrency clients.
	Client *http.Client
	// RequestTimeout bounds each request (default 60 s). A request that hits it counts as an error.
	RequestTimeout time.Duration
	// KeepBodies keeps the answer bodies (Result.Bodies, indexed like the requests) for verification after
	// the run. Off by default: Run holds every body until the checks are done and drops them then.
	KeepBodies bool
}

// Result is what one run measured.
type Result struct {
	Sent      int           // requests sent (answered or failed)
	Errors    int           // transport errors, non-2xx answers without a Check, and failed Checks
	Elapsed   time.Duration // first send to last answer
	Exhausted bool          // the run ended because the requests ran out before Duration
	// ClientCPU is the CPU time this process (the load generator) used during the timed phase, the answers'
	// checks excluded; 0 where /proc cannot be read.
	ClientCPU time.Duration
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
// what it measured. Each request is sent at most once. Elapsed and the latencies cover sending and receiving
// only: the answers are checked once the last one is in (see the package comment). It returns an error only for
// unusable options; failures of individual requests are counted in the Result.
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
		headers   = make([]http.Header, len(reqs))
		bodies    = make([][]byte, len(reqs))
		failed    = make([]string, len(reqs)) // "" = success
	)
	runCtx := ctx
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}

	cpu0, cpuErr := ProcessCPU(os.Getpid())
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
				if reqs[i].Check != nil {
					headers[i] = header
				}
				if reqs[i].Check != nil || opts.KeepBodies {
					bodies[i] = body // held for the check after the timed phase, or for the caller
				}
				if err != nil {
					failed[i] = clip(err.Error())
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var clientCPU time.Duration
	if cpu1, err := ProcessCPU(os.Getpid()); err == nil && cpuErr == nil {
		clientCPU = cpu1 - cpu0
	}

	// A worker claims an index only while the run is on and always sends what it claimed; workers that found
	// the list empty pushed next past the end.
	sent := min(int(next.Load()), len(reqs))
	checkAnswers(reqs[:sent], statuses, headers, bodies, failed)
	res := &Result{Elapsed: elapsed, ClientCPU: clientCPU, ErrorKinds: map[string]int{}, Statuses: map[int]int{}}
	if opts.KeepBodies {
		res.Bodies = bodies
	}
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

// checkAnswers runs the Check of every answered request that has no transport error yet, on every CPU, and
// records the failures in failed.
func checkAnswers(reqs []Request, statuses []int, headers []http.Header, bodies [][]byte, failed []string) {
	_ = parallel(len(reqs), func(i int) error {
		if failed[i] == "" {
			if err := check(&reqs[i], statuses[i], headers[i], bodies[i]); err != nil {
				failed[i] = clip(err.Error())
			}
		}
		return nil
	})
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
