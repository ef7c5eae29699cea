package main

// The SPEC §6 benchmarks (`make bench`; never run by `make test`). Each reports its figures with b.ReportMetric
// under the names internal/loadgen/report maps onto the SPEC table. Performance is measured here, never asserted:
// a benchmark fails only when what it measures is not what it claims to measure (an enrollment that did not
// succeed, a figure that could not be read).
//
// Load benchmarks send b.N enrollments, pre-built before the timer starts, from a fixed number of concurrent
// clients (internal/loadgen); ns/op is wall time per enrollment, enroll/s its inverse, p50-ms/p99-ms the latency
// percentiles of that run. Throughput, start-up and memory are measured on the real binary as a child process
// with local keys and Azurite, like the peers of BenchmarkPeers (bench_peers_test.go), driven by the same load
// generator. Key Vault and Intune figures need the fakes and run the handler in this process (azure mode).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/loadgen"
	"github.com/azscep/azscep/internal/loadgen/report"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/tables"
)

// ---- shared fixtures ------------------------------------------------------------------------------------------

// benchKeyDir is one local CA as `make run` creates it (RSA-3072 CA, RSA-2048 RA): the suite's shared local CA.
func benchKeyDir(b *testing.B) string {
	b.Helper()
	return newLocalKeyDir(b)
}

var benchDevKeys struct {
	once sync.Once
	keys []*rsa.PrivateKey
	err  error
}

// benchDeviceKeys are 16 RSA-2048 device keys; every request still has its own transaction ID and name.
func benchDeviceKeys(b *testing.B) []*rsa.PrivateKey {
	b.Helper()
	benchDevKeys.once.Do(func() { benchDevKeys.keys, benchDevKeys.err = loadgen.GenerateRSAKeys(16, 2048) })
	if benchDevKeys.err != nil {
		b.Fatal(benchDevKeys.err)
	}
	return benchDevKeys.keys
}

// benchBuildSCEP is loadgen.BuildSCEP with the process-wide pkcs7 settings the server runs with (scep.Init:
// AES-256-CBC envelopes, SHA-256 digests). The load generator's requests take them from this process, and a
// benchmark-only run (-run '^$') runs no test that sets them: without this it sent smallstep/pkcs7's defaults,
// DES-CBC envelopes signed over SHA-1, which no Intune device sends, and measured the servers' DES path.
func benchBuildSCEP(cfg loadgen.SCEPConfig, n int) ([]*loadgen.SCEPRequest, error) {
	scep.Init()
	return loadgen.BuildSCEP(cfg, n)
}

func benchUnique() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// benchChild is a server process: the azscep binary or a peer.
type benchChild struct {
	cmd    *exec.Cmd
	base   string
	stderr *bytes.Buffer
	done   chan struct{}
}

// start runs the command and stops it (SIGTERM, then SIGKILL) when the benchmark ends.
func benchStart(b testing.TB, cmd *exec.Cmd, base string) *benchChild {
	return benchStartOn(b, cmd, base, nil)
}

// benchStartOn is benchStart with the child pinned to cpus from its start when cpus is not nil
// (AZSCEP_BENCH_PIN): it checks the child's Cpus_allowed_list before going on.
func benchStartOn(b testing.TB, cmd *exec.Cmd, base string, cpus []int) *benchChild {
	b.Helper()
	c := &benchChild{cmd: cmd, base: base, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := cmd.Start
	if cpus != nil {
		start = func() error { return loadgen.StartPinned(cmd, cpus) }
	}
	if err := start(); err != nil {
		b.Fatal(err)
	}
	if cpus != nil {
		if got, err := loadgen.AllowedCPUs(cmd.Process.Pid); err != nil || got != benchCPUList(cpus) {
			_ = cmd.Process.Kill()
			b.Fatalf("%s started on CPUs %q (%v), want %q", cmd.Path, got, err, benchCPUList(cpus))
		}
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	b.Cleanup(c.stop)
	return c
}

func (c *benchChild) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitFor polls url until it answers 200.
func (c *benchChild) waitFor(b testing.TB, url string, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.done:
			b.Fatalf("%s exited: %s", c.cmd.Path, c.stderr.String())
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not answer %s: %s", c.cmd.Path, url, c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchAzscepEnv is the local-mode environment of the binary: Azurite tables with a fresh prefix, the shared CA,
// the development token issuer.
func benchAzscepEnv(b *testing.B, port int) []string {
	return []string{"AZSCEP_MODE=local", fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port),
		"AZSCEP_TABLES_CONNECTION=" + azuritetest.ConnectionString(b), "AZSCEP_LOCAL_KEY_DIR=" + benchKeyDir(b),
		"AZSCEP_DEV_ISSUER=true", benchRatePerClient, benchRateGlobal}
}

// The load generator is one client at one address; the SCEP rate limits would measure themselves instead of the
// issuance path, so the benchmarks lift them.
const (
	benchRatePerClient = "AZSCEP_SCEP_RATE_PER_CLIENT=1000000/1s"
	benchRateGlobal    = "AZSCEP_SCEP_RATE_GLOBAL=1000000/1s"
)

// startAzscep runs the real binary and waits until its dependencies are built.
func startAzscep(b *testing.B) *benchChild { return startAzscepOn(b, nil) }

// startAzscepOn is startAzscep pinned to cpus (nil: not pinned).
func startAzscepOn(b *testing.B, cpus []int) *benchChild {
	b.Helper()
	port := freePort(b)
	cmd := exec.Command(buildBinary(b))
	cmd.Env = benchAzscepEnv(b, port)
	c := benchStartOn(b, cmd, fmt.Sprintf("http://127.0.0.1:%d", port), cpus)
	c.waitFor(b, c.base+"/api/health", time.Minute)
	return c
}

// benchSCEP runs b.N pre-built enrollments against scepURL from c clients and reports the figures. Failed
// enrollments fail the benchmark unless tolerated (another product's behaviour under load is reported as its
// errors metric, not hidden and not fatal).
func benchSCEP(b *testing.B, base, path, challenge string, c int, tolerateErrors bool) *loadgen.Result {
	b.Helper()
	b.StopTimer()
	recipients, err := loadgen.FetchCACerts(context.Background(), nil, base+path)
	if err != nil {
		b.Fatal(err)
	}
	built, err := benchBuildSCEP(loadgen.SCEPConfig{Path: path, Recipients: recipients, Challenge: challenge,
		Keys: benchDeviceKeys(b), CommonName: "bench-" + benchUnique() + "-"}, b.N)
	if err != nil {
		b.Fatal(err)
	}
	res := benchRun(b, base, c, loadgen.Requests(built), tolerateErrors)
	// Outside the timed phase, open a few successful answers as a device would.
	opened := 0
	for i := 0; i < len(built) && opened < 3; i++ {
		if built[i].CheckCertRep(http.StatusOK, res.Bodies[i]) != nil {
			continue
		}
		if _, err := built[i].VerifyCertRep(res.Bodies[i], recipients); err != nil {
			b.Fatalf("answer %d does not give the device its certificate: %v", i, err)
		}
		opened++
	}
	if opened == 0 {
		b.Fatalf("no enrollment succeeded: %v", res.ErrorKinds)
	}
	return res
}

// benchRun is the timed phase.
func benchRun(b *testing.B, base string, c int, reqs []loadgen.Request, tolerateErrors bool) *loadgen.Result {
	b.Helper()
	client := loadgen.NewClient(c)
	b.StartTimer()
	res, err := loadgen.Run(context.Background(), loadgen.Options{BaseURL: base, Concurrency: c, Client: client,
		KeepBodies: true}, reqs)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Errors > 0 && !tolerateErrors {
		b.Fatalf("%d of %d requests failed: %v", res.Errors, res.Sent, res.ErrorKinds)
	}
	reportLoad(b, res)
	if tolerateErrors {
		b.ReportMetric(float64(res.Errors), "errors")
	}
	return res
}

func reportLoad(b *testing.B, res *loadgen.Result) {
	b.ReportMetric(res.Throughput(), report.UnitEnrollPerSec)
	b.ReportMetric(ms(res.Percentile(0.50)), report.UnitP50)
	b.ReportMetric(ms(res.Percentile(0.99)), report.UnitP99)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ---- throughput, local keys ---------------------------------------------------------------------------------

// BenchmarkSCEPLocal: SCEP enrollments on the real binary, local keys, Azurite, 1/8/32 concurrent clients.
func BenchmarkSCEPLocal(b *testing.B) {
	svc := startAzscep(b)
	for _, c := range report.Concurrency {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			benchSCEP(b, svc.base, "/api/scep/static", config.LocalStaticChallenge, c, false)
		})
	}
}

// BenchmarkAPICSRLocal: /api/csr enrollments on the real binary with development-issuer tokens, one caller per
// request (the endpoint rate-limits per caller), minted before the timed phase.
func BenchmarkAPICSRLocal(b *testing.B) {
	svc := startAzscep(b)
	keyDir := "" // the server's own key directory: the development issuer's key lives there
	for _, kv := range svc.cmd.Env {
		if v, ok := strings.CutPrefix(kv, "AZSCEP_LOCAL_KEY_DIR="); ok {
			keyDir = v
		}
	}
	dev, err := entra.NewDevIssuer(entra.DevIssuerConfig{Dir: filepath.Join(keyDir, "dev-issuer"),
		BaseURL: svc.base + "/api/dev"})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range report.Concurrency {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			b.StopTimer()
			run := benchUnique()
			tokens := make([]string, b.N)
			for i := range tokens {
				if tokens[i], err = dev.Mint(entra.DevTokenRequest{ObjectID: entrafake.NewGUID(),
					UPN: fmt.Sprintf("bench-%s-%d@azscep.local", run, i), Roles: []string{entra.RoleCSRRequestDb}}); err != nil {
					b.Fatal(err)
				}
			}
			built, err := loadgen.BuildCSR(loadgen.CSRConfig{Path: "/api/csr", CommonName: "bench-" + run + "-",
				Token: func(i int) (string, error) { return tokens[i], nil }}, b.N)
			if err != nil {
				b.Fatal(err)
			}
			benchRun(b, svc.base, c, loadgen.CSRRequests(built), false)
		})
	}
}

// BenchmarkRSAFloor measures, in the same run, the three private-key operations a SCEP enrollment with local
// keys cannot avoid, at the local CA's sizes (CA 3072, RA 2048), on every CPU.
func BenchmarkRSAFloor(b *testing.B) {
	var sum loadgen.Floor
	for i := 0; i < b.N; i++ {
		f, err := loadgen.MeasureRSAFloor(benchCABits, benchRABits, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		sum.EnrollmentsPerSecond += f.EnrollmentsPerSecond
		sum.Decrypt += f.Decrypt
		sum.SignCA += f.SignCA
		sum.SignRA += f.SignRA
	}
	n := float64(b.N)
	b.ReportMetric(sum.EnrollmentsPerSecond/n, report.UnitEnrollPerSec)
	b.ReportMetric(ms(sum.Decrypt)/n, "decrypt-ms")
	b.ReportMetric(ms(sum.SignCA)/n, "signca-ms")
	b.ReportMetric(ms(sum.SignRA)/n, "signra-ms")
}

// ---- the process: start-up and memory ------------------------------------------------------------------------

// BenchmarkStartToReady starts the real binary b.N times and reports the time from process start to the first
// answer to GET / (start-ms, the SPEC figure) and to GET /api/health 200 (ready-ms: store and keys loaded).
func BenchmarkStartToReady(b *testing.B) {
	bin := buildBinary(b)
	port := freePort(b)
	env := benchAzscepEnv(b, port)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	poll := func(url string, c *benchChild) time.Time {
		for {
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Now()
				}
			}
			select {
			case <-c.done:
				b.Fatalf("the binary exited: %s", c.stderr.String())
			default:
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	var start, ready time.Duration
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin)
		cmd.Env = env
		t0 := time.Now()
		c := benchStart(b, cmd, base)
		start += poll(base+"/", c).Sub(t0)
		ready += poll(base+"/api/health", c).Sub(t0)
		c.stop()
	}
	b.ReportMetric(ms(start)/float64(b.N), "start-ms")
	b.ReportMetric(ms(ready)/float64(b.N), "ready-ms")
}

// BenchmarkResidentMemory reads the binary's resident memory when idle (after start-up, before any request) and
// its peak (VmHWM) after b.N enrollments from 32 concurrent clients.
func BenchmarkResidentMemory(b *testing.B) {
	b.StopTimer()
	svc := startAzscep(b)
	time.Sleep(2 * time.Second) // let start-up work finish
	idle, err := loadgen.ProcessMemory(svc.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	benchSCEP(b, svc.base, "/api/scep/static", config.LocalStaticChallenge, 32, false)
	after, err := loadgen.ProcessMemory(svc.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(idle.RSS)/(1<<20), "idle-MB")
	b.ReportMetric(float64(after.Peak)/(1<<20), "peak-MB")
}

// ---- Key Vault and Intune, azure mode with the fakes ---------------------------------------------------------

// benchAzureEnv is the handler in azure mode: a realistic vault (3072-bit keys created by the fake, as `ca init`
// creates them), the Intune and Entra fakes, records on Azurite, and timers around Key Vault, Intune and the
// store.
type benchAzureEnv struct {
	*fxEnv
	intuneCalls, intuneNanos atomic.Int64
	store                    *benchTimedStore
	tables                   *benchTableTransport
}

func newBenchAzureEnv(b *testing.B) *benchAzureEnv { return newBenchAzureEnvWith(b, 0) }

// newBenchAzureEnvWith is newBenchAzureEnv with every Table Storage call (every HTTP request to Azurite, a
// transaction included) delayed by tableDelay, as a round trip to the storage account would be.
func newBenchAzureEnvWith(b *testing.B, tableDelay time.Duration) *benchAzureEnv {
	b.Helper()
	kv := kvfake.New(b)
	vault, err := newFxVault(b, kv, true)
	if err != nil {
		b.Fatal(err)
	}
	tt := &benchTableTransport{delay: tableDelay, client: &http.Client{Transport: loadgen.NewClient(64).Transport}}
	st, err := tables.NewFromConnectionString(azuritetest.ConnectionString(b), "azscep", tables.WithTransport(tt))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.EnsureTables(context.Background()); err != nil {
		b.Fatal(err)
	}
	e := &benchAzureEnv{tables: tt}
	e.fxEnv = newFxEnv(b, fxOptions{vault: vault, backing: st, quiet: true,
		wrap: func(s store.Store) store.Store { e.store = &benchTimedStore{Store: s}; return e.store },
		httpWrap: func(rt http.RoundTripper) http.RoundTripper {
			return benchRoundTripper(func(r *http.Request) (*http.Response, error) {
				start := time.Now()
				resp, err := rt.RoundTrip(r)
				if r.URL.Host == strings.TrimPrefix(e.intune.URL(), "https://") {
					e.intuneCalls.Add(1)
					e.intuneNanos.Add(int64(time.Since(start)))
				}
				return resp, err
			})
		}})
	// The fault suite's audit reads the records at every signature (through the tables, not the timed store):
	// a check of the suite, not work of the service, so the benchmarks turn it off.
	e.tap.audit.Store(false)
	return e
}

// benchTableTransport counts and times the requests to Table Storage and adds a fixed delay to each.
type benchTableTransport struct {
	delay        time.Duration
	client       *http.Client
	calls, nanos atomic.Int64
}

func (t *benchTableTransport) Do(r *http.Request) (*http.Response, error) {
	start := time.Now()
	defer func() { t.calls.Add(1); t.nanos.Add(int64(time.Since(start))) }()
	if t.delay > 0 {
		select {
		case <-time.After(t.delay):
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return t.client.Do(r)
}

type benchRoundTripper func(*http.Request) (*http.Response, error)

func (f benchRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// benchTimedStore adds up the time spent in the store.
type benchTimedStore struct {
	store.Store
	calls, nanos atomic.Int64
}

func (s *benchTimedStore) time(start time.Time) {
	s.calls.Add(1)
	s.nanos.Add(int64(time.Since(start)))
}

func (s *benchTimedStore) Insert(ctx context.Context, r *store.Record) error {
	defer s.time(time.Now())
	return s.Store.Insert(ctx, r)
}

func (s *benchTimedStore) Update(ctx context.Context, r *store.Record, from store.Status) error {
	defer s.time(time.Now())
	return s.Store.Update(ctx, r, from)
}

func (s *benchTimedStore) Get(ctx context.Context, serial string) (*store.Record, error) {
	defer s.time(time.Now())
	return s.Store.Get(ctx, serial)
}

func (s *benchTimedStore) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	defer s.time(time.Now())
	return s.Store.InsertBound(ctx, key, prev, r)
}

func (s *benchTimedStore) Lookup(ctx context.Context, key string) (store.Binding, error) {
	defer s.time(time.Now())
	return s.Store.Lookup(ctx, key)
}

// scepRequests builds n enrollments on an endpoint of the azure environment.
func (e *benchAzureEnv) scepRequests(b *testing.B, endpoint string, n int) []loadgen.Request {
	b.Helper()
	challenge := fxStaticSecret
	if endpoint == fxEndpointIntune {
		challenge = fxIntuneSecret
	}
	built, err := benchBuildSCEP(loadgen.SCEPConfig{Path: "/api/scep/" + endpoint, Recipients: e.rcpts,
		Challenge: challenge, Keys: benchDeviceKeys(b), CommonName: "bench-" + benchUnique() + "-"}, n)
	if err != nil {
		b.Fatal(err)
	}
	return loadgen.Requests(built)
}

// run sends reqs outside any timing and fails on an unsuccessful enrollment.
func (e *benchAzureEnv) run(b *testing.B, c int, reqs []loadgen.Request) *loadgen.Result {
	b.Helper()
	res, err := loadgen.Run(context.Background(), loadgen.Options{BaseURL: e.srv.URL, Concurrency: c}, reqs)
	if err != nil {
		b.Fatal(err)
	}
	if res.Errors > 0 {
		b.Fatalf("%d of %d requests failed: %v", res.Errors, res.Sent, res.ErrorKinds)
	}
	return res
}

// BenchmarkKeyVaultOps counts Key Vault operations (the fake's journal) per SCEP enrollment in RA envelope mode,
// per /api/csr enrollment, and per OCSP response for issued certificates.
func BenchmarkKeyVaultOps(b *testing.B) {
	e := newBenchAzureEnv(b)
	e.run(b, 1, e.scepRequests(b, fxEndpointStatic, 1)) // warm: the linter's key, connections
	b.Run("scep", func(b *testing.B) {
		b.StopTimer()
		reqs := e.scepRequests(b, fxEndpointStatic, b.N)
		before := e.kv.Total()
		b.StartTimer()
		res := e.run(b, 4, reqs)
		b.StopTimer()
		b.ReportMetric(float64(e.kv.Total()-before)/float64(res.Sent), "kvops/enroll")
	})
	b.Run("csr", func(b *testing.B) {
		b.StopTimer()
		reqs := make([]loadgen.Request, b.N)
		for i := range reqs {
			reqs[i] = e.csrRequest(b).Request
		}
		before := e.kv.Total()
		b.StartTimer()
		res := e.run(b, 4, reqs)
		b.StopTimer()
		b.ReportMetric(float64(e.kv.Total()-before)/float64(res.Sent), "kvops/enroll")
	})
	b.Run("ocsp", func(b *testing.B) {
		b.StopTimer()
		var certs []*x509.Certificate
		for _, rec := range e.records(b) {
			if rec.Status == store.StatusIssued {
				c, err := x509.ParseCertificate(rec.CertDER)
				if err != nil {
					b.Fatal(err)
				}
				certs = append(certs, c)
			}
		}
		if len(certs) == 0 {
			b.Fatal("no issued certificates to ask about")
		}
		reqs := make([]loadgen.Request, b.N)
		for i := range reqs {
			der, err := ocsp.CreateRequest(certs[i%len(certs)], e.ca, nil)
			if err != nil {
				b.Fatal(err)
			}
			reqs[i] = loadgen.Request{Method: http.MethodPost, Path: "/api/ocsp", Body: der,
				Header: http.Header{"Content-Type": {"application/ocsp-request"}},
				Check: func(status int, _ http.Header, body []byte) error {
					if status != http.StatusOK {
						return fmt.Errorf("HTTP %d", status)
					}
					r, err := ocsp.ParseResponse(body, nil)
					if err != nil {
						return err
					}
					if r.Status != ocsp.Good {
						return fmt.Errorf("status %d, want good", r.Status)
					}
					return nil
				}}
		}
		before := e.kv.Total()
		b.StartTimer()
		res := e.run(b, 4, reqs)
		b.StopTimer()
		b.ReportMetric(float64(e.kv.Total()-before)/float64(res.Sent), "kvops/response")
	})
}

// intuneRoutes are the Intune-side calls counted per enrollment; tokenRoutes are the ones a warm client must not
// make.
var (
	benchIntuneRoutes = []intunefake.Route{intunefake.RouteToken, intunefake.RouteOpenIDConfig,
		intunefake.RouteInstanceDiscovery, intunefake.RouteDiscovery, intunefake.RouteValidate, intunefake.RouteSuccess,
		intunefake.RouteFailure}
	benchTokenRoutes = []intunefake.Route{intunefake.RouteToken, intunefake.RouteOpenIDConfig,
		intunefake.RouteInstanceDiscovery, intunefake.RouteDiscovery}
)

func benchCount(in *intunefake.Server, routes []intunefake.Route) int {
	n := 0
	for _, r := range routes {
		n += in.Count(r)
	}
	return n
}

// BenchmarkIntuneWarm counts the calls to Entra, Graph and Intune per enrollment on the intune endpoint once the
// client is warm (token and discovery cached).
func BenchmarkIntuneWarm(b *testing.B) {
	b.StopTimer()
	e := newBenchAzureEnv(b)
	e.run(b, 1, e.scepRequests(b, fxEndpointIntune, 1)) // warm: token, discovery
	reqs := e.scepRequests(b, fxEndpointIntune, b.N)
	all, side := benchCount(e.intune, benchIntuneRoutes), benchCount(e.intune, benchTokenRoutes)
	b.StartTimer()
	res := e.run(b, 4, reqs)
	b.StopTimer()
	n := float64(res.Sent)
	b.ReportMetric(float64(benchCount(e.intune, benchIntuneRoutes)-all)/n, "intune-calls/enroll")
	b.ReportMetric(float64(benchCount(e.intune, benchTokenRoutes)-side)/n, "token-discovery/enroll")
}

// BenchmarkIntuneLatency measures one client enrolling on the intune endpoint while every Key Vault call takes
// 20 ms more and every Intune call 50 ms more, and splits the mean enrollment time into Key Vault, Intune, Table
// Storage (Azurite) and the rest (CPU, HTTP).
func BenchmarkIntuneLatency(b *testing.B) {
	b.StopTimer()
	e := newBenchAzureEnv(b)
	e.kv.SetLatency("", 20*time.Millisecond)
	for _, r := range benchIntuneRoutes {
		e.intune.InjectFault(r, intunefake.Fault{Delay: 50 * time.Millisecond})
	}
	e.run(b, 1, e.scepRequests(b, fxEndpointIntune, 1)) // warm
	reqs := e.scepRequests(b, fxEndpointIntune, b.N)
	kvCalls, kvNanos := e.tap.calls.Load(), e.tap.nanos.Load()
	inCalls, inNanos := e.intuneCalls.Load(), e.intuneNanos.Load()
	stNanos := e.store.nanos.Load()
	b.StartTimer()
	res := e.run(b, 1, reqs)
	b.StopTimer()
	n := float64(res.Sent)
	kv := float64(e.tap.nanos.Load()-kvNanos) / n / 1e6
	in := float64(e.intuneNanos.Load()-inNanos) / n / 1e6
	st := float64(e.store.nanos.Load()-stNanos) / n / 1e6
	reportLoad(b, res)
	b.ReportMetric(kv, "kv-ms")
	b.ReportMetric(in, "intune-ms")
	b.ReportMetric(st, "store-ms")
	b.ReportMetric(ms(res.Mean())-kv-in-st, "other-ms")
	b.ReportMetric(float64(e.tap.calls.Load()-kvCalls)/n, "kv-calls/enroll")
	b.ReportMetric(float64(e.intuneCalls.Load()-inCalls)/n, "intune-calls/enroll")
}

// ---- in process, for profiles ----------------------------------------------------------------------------------

// BenchmarkSCEPInProcess runs the handler in this process (local keys, 8 clients) so that `go test -cpuprofile`
// sees the server: against Azurite, and against the in-memory store to isolate our own code.
func BenchmarkSCEPInProcess(b *testing.B) {
	for _, backend := range []string{"azurite", "memstore"} {
		b.Run(backend, func(b *testing.B) {
			b.StopTimer()
			port := freePort(b)
			cfg, err := config.Load(benchAzscepEnv(b, port))
			if err != nil {
				b.Fatal(err)
			}
			opts := buildOptions{}
			if backend == "memstore" {
				opts.store = memstore.New()
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- serve(ctx, cfg, benchDiscardLogger(), opts) }()
			b.Cleanup(func() {
				cancel()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					b.Errorf("serve: %v", err)
				}
			})
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			fxWaitHealthy(b, base, done)
			benchSCEP(b, base, "/api/scep/static", config.LocalStaticChallenge, 8, false)
		})
	}
}

// benchDiscardLogger logs like the service (JSON, info) into nothing: the encoding cost stays in the profile.
func benchDiscardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// TestBenchRequestsAreAES256 checks that the benchmarks' requests are what the server is built for, whatever the
// process's pkcs7 settings were before (a benchmark-only process has smallstep/pkcs7's defaults, DES-CBC and
// SHA-1): the envelope AES-256-CBC, the signature over SHA-256.
func TestBenchRequestsAreAES256(t *testing.T) {
	// Afterwards the settings every handler in this process runs with.
	t.Cleanup(scep.Init)
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmDESCBC // a fresh process's default
	_ = pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)

	keys, err := loadgen.GenerateRSAKeys(1, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench RA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &keys[0].PublicKey, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	ra, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	built, err := benchBuildSCEP(loadgen.SCEPConfig{Path: "/api/scep/static", Recipients: []*x509.Certificate{ra},
		Challenge: "c", Keys: keys}, 1)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(built[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Signers) != 1 || !p7.Signers[0].DigestAlgorithm.Algorithm.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
		t.Errorf("request signed with digest %v, want SHA-256", p7.Signers)
	}
	var env struct {
		ContentType asn1.ObjectIdentifier
		Content     struct {
			Version              int
			RecipientInfos       asn1.RawValue
			EncryptedContentInfo struct {
				ContentType                asn1.ObjectIdentifier
				ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
			}
		} `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(p7.Content, &env); err != nil {
		t.Fatalf("request content is not an EnvelopedData: %v", err)
	}
	if alg := env.Content.EncryptedContentInfo.ContentEncryptionAlgorithm.Algorithm; !alg.Equal(pkcs7.OIDEncryptionAlgorithmAES256CBC) {
		t.Fatalf("request envelope encrypted with %v, want AES-256-CBC (%v)", alg, pkcs7.OIDEncryptionAlgorithmAES256CBC)
	}
}
