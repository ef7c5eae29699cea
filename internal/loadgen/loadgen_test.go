package loadgen

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/testca"
)

func TestMain(m *testing.M) {
	if os.Getenv(pinHelperEnv) != "" {
		pinHelper()
		return
	}
	scep.Init() // the process-wide pkcs7 settings the server uses, as in the handler
	os.Exit(m.Run())
}

// pinHelperEnv makes the test binary a helper process for the pinning tests (pinHelper).
const pinHelperEnv = "LOADGEN_PIN_HELPER"

// pinHelper prints its GOMAXPROCS, then for each "spawn" line on stdin starts four goroutines locked to new OS
// threads and answers "spawned", until stdin closes.
func pinHelper() {
	fmt.Println(runtime.GOMAXPROCS(0))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "spawn" {
			continue
		}
		var ready sync.WaitGroup
		for range 4 {
			ready.Add(1)
			go func() {
				runtime.LockOSThread()
				ready.Done()
				select {}
			}()
		}
		ready.Wait()
		fmt.Println("spawned")
	}
}

func plainRequests(n int, path string) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Method: http.MethodGet, Path: fmt.Sprintf("%s?i=%d", path, i)}
	}
	return reqs
}

func TestRunSendsEachRequestOnceWithBoundedConcurrency(t *testing.T) {
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		seen[r.URL.Query().Get("i")]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		if r.URL.Query().Get("i") == "7" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	res, err := Run(context.Background(), Options{BaseURL: srv.URL, Concurrency: 4}, plainRequests(50, "/x"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 50 || len(res.Latencies) != 50 || !res.Exhausted {
		t.Fatalf("sent %d, %d latencies, exhausted %v; want 50, 50, true", res.Sent, len(res.Latencies), res.Exhausted)
	}
	if len(seen) != 50 {
		t.Fatalf("server saw %d distinct requests, want 50", len(seen))
	}
	for i, n := range seen {
		if n != 1 {
			t.Errorf("request %s sent %d times", i, n)
		}
	}
	if p := peak.Load(); p > 4 {
		t.Errorf("%d requests in flight at once, concurrency is 4", p)
	}
	if res.Errors != 1 || res.ErrorKinds["HTTP 503"] != 1 || res.Statuses[503] != 1 || res.Statuses[200] != 49 {
		t.Fatalf("errors %d kinds %v statuses %v; want the one 503", res.Errors, res.ErrorKinds, res.Statuses)
	}
	for i := 1; i < len(res.Latencies); i++ {
		if res.Latencies[i] < res.Latencies[i-1] {
			t.Fatal("latencies are not sorted")
		}
	}
	if res.Throughput() <= 0 || res.Percentile(0.5) <= 0 || res.Percentile(0.99) < res.Percentile(0.5) {
		t.Fatalf("summary figures inconsistent: %s", res)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	defer srv.Close()
	// 1,000 requests of 20 ms each on 2 clients would take 10 s; the run must end after its 100 ms, with every
	// answer it got checked.
	reqs := plainRequests(1000, "/")
	var checked atomic.Int64
	for i := range reqs {
		reqs[i].Check = func(int, http.Header, []byte) error { checked.Add(1); return nil }
	}
	res, err := Run(context.Background(), Options{BaseURL: srv.URL, Concurrency: 2, Duration: 100 * time.Millisecond}, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Exhausted || res.Sent == 0 || res.Sent >= 1000 || res.Errors != 0 {
		t.Fatalf("sent %d (errors %d, exhausted %v); want a partial, error-free run", res.Sent, res.Errors, res.Exhausted)
	}
	if int(checked.Load()) != res.Sent {
		t.Fatalf("%d answers checked of %d sent", checked.Load(), res.Sent)
	}
}

// TestChecksRunAfterTheTimedPhase: no answer is checked while requests are still being sent, so that checking
// takes no CPU from the server under test; every answer is still checked, header and body included.
func TestChecksRunAfterTheTimedPhase(t *testing.T) {
	var answered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-N", r.URL.Query().Get("n"))
		_, _ = io.WriteString(w, "answer "+r.URL.Query().Get("n"))
		answered.Add(1)
	}))
	defer srv.Close()
	const n = 6
	var checked atomic.Int64
	reqs := make([]Request, n)
	for i := range reqs {
		want := strconv.Itoa(i)
		reqs[i] = Request{Path: "/?n=" + want, Check: func(status int, h http.Header, body []byte) error {
			checked.Add(1)
			if got := answered.Load(); got != n {
				return fmt.Errorf("checked while %d of %d answers were in", got, n)
			}
			if status != http.StatusOK || h.Get("X-N") != want || string(body) != "answer "+want {
				return fmt.Errorf("check got %d %q %q", status, h.Get("X-N"), body)
			}
			return nil
		}}
	}
	res, err := Run(context.Background(), Options{BaseURL: srv.URL, Concurrency: 1}, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || checked.Load() != n || res.Bodies != nil {
		t.Fatalf("errors %d %v, %d checks, bodies kept %v; want %d clean checks after the run and no bodies kept",
			res.Errors, res.ErrorKinds, checked.Load(), res.Bodies != nil, n)
	}
}

// TestClientCPUCoversTheTimedPhaseOnly: ClientCPU counts this process's CPU while requests are on the wire (here
// the in-process server's) and not the checks after it.
func TestClientCPUCoversTheTimedPhaseOnly(t *testing.T) {
	spin := func(d time.Duration) {
		start, err := ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		for {
			now, _ := ProcessCPU(os.Getpid())
			if now-start >= d {
				return
			}
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { spin(200 * time.Millisecond) }))
	defer srv.Close()
	reqs := plainRequests(1, "/")
	reqs[0].Check = func(int, http.Header, []byte) error { spin(400 * time.Millisecond); return nil }
	res, err := Run(context.Background(), Options{BaseURL: srv.URL}, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.ClientCPU < 200*time.Millisecond || res.ClientCPU >= 400*time.Millisecond {
		t.Fatalf("errors %d, ClientCPU %s; want the server's 200 ms and not the check's 400 ms", res.Errors, res.ClientCPU)
	}
}

func TestRunCountsTransportErrorsAndChecks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "body")
	}))
	reqs := plainRequests(3, "/")
	reqs[1].Check = func(status int, h http.Header, body []byte) error {
		if string(body) != "body" || status != 200 {
			t.Errorf("check got %d %q", status, body)
		}
		return fmt.Errorf("rejected by check")
	}
	res, err := Run(context.Background(), Options{BaseURL: srv.URL, KeepBodies: true}, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 1 || res.ErrorKinds["rejected by check"] != 1 || string(res.Bodies[2]) != "body" {
		t.Fatalf("errors %d %v bodies %q", res.Errors, res.ErrorKinds, res.Bodies)
	}
	srv.Close() // now nothing listens
	res, err = Run(context.Background(), Options{BaseURL: srv.URL, RequestTimeout: time.Second}, plainRequests(2, "/"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 2 || res.Statuses[0] != 2 || res.Throughput() != 0 {
		t.Fatalf("errors %d statuses %v; want two transport failures", res.Errors, res.Statuses)
	}
	if _, err := Run(context.Background(), Options{BaseURL: srv.URL}, nil); err != ErrNoRequests {
		t.Fatalf("no requests: %v", err)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	r := &Result{Latencies: lat}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond,
		1: 100 * time.Millisecond, 0.001: time.Millisecond} {
		if got := r.Percentile(q); got != want {
			t.Errorf("p%g = %s, want %s", q*100, got, want)
		}
	}
	if (&Result{}).Percentile(0.5) != 0 || r.Mean() != 50500*time.Microsecond {
		t.Errorf("empty percentile or mean wrong: mean %s", r.Mean())
	}
}

// scepService is the real SCEP server (internal/scep over the real issuer and a memstore) with a static endpoint.
func scepService(t *testing.T) (*httptest.Server, *testca.CA, *memstore.Store) {
	t.Helper()
	ca := testca.New(t, testca.Options{})
	st := memstore.New()
	iss, err := issuance.New(issuance.Config{CA: issuance.CA{Cert: ca.Cert, Signer: ca.Key}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	prof, err := policy.ParseProfile("device", "validity=30d;ku=digitalSignature;eku=clientAuth")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := scep.New(scep.Config{Keys: ca.Keys, Issuer: iss, Store: st, Logger: slog.New(slog.DiscardHandler),
		Endpoints: []*scep.Endpoint{{Name: "static", Challenge: scep.ChallengeStatic, Secret: []byte("s3cret-challenge"), Profile: prof}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts, ca, st
}

var (
	keysOnce sync.Once
	keys     []*rsa.PrivateKey
	keysErr  error
)

func deviceKeys(t *testing.T) []*rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() { keys, keysErr = GenerateRSAKeys(2, 2048) })
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keys
}

// TestSCEPMessagesEnrollAgainstTheRealServer proves the pre-built messages are what a device sends: the real
// server issues one certificate per message (a new transaction each, even with a shared key), the answer check
// accepts the answers, and the full device-side verification opens them.
func TestSCEPMessagesEnrollAgainstTheRealServer(t *testing.T) {
	ts, ca, st := scepService(t)
	recipients, err := FetchCACerts(context.Background(), nil, ts.URL+"/api/scep/static")
	if err != nil {
		t.Fatal(err)
	}
	if !recipients[0].Equal(ca.RACert) {
		t.Fatal("GetCACert did not put the RA first")
	}
	built, err := BuildSCEP(SCEPConfig{Path: "/api/scep/static", Recipients: recipients, Challenge: "s3cret-challenge",
		Keys: deviceKeys(t)}, 6)
	if err != nil {
		t.Fatal(err)
	}
	txs := map[string]bool{}
	for _, r := range built {
		txs[r.TransactionID] = true
	}
	if len(txs) != 6 {
		t.Fatalf("%d distinct transaction IDs for 6 messages", len(txs))
	}
	res, err := Run(context.Background(), Options{BaseURL: ts.URL, Concurrency: 3, KeepBodies: true}, Requests(built))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Sent != 6 {
		t.Fatalf("run: %s %v", res, res.ErrorKinds)
	}
	serials := map[string]bool{}
	for i, r := range built {
		cert, err := r.VerifyCertRep(res.Bodies[i], []*x509.Certificate{ca.Cert})
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		serials[cert.SerialNumber.String()] = true
		if status, _, err := CertRepStatus(res.Bodies[i]); err != nil || status != StatusSuccess {
			t.Fatalf("CertRepStatus = %q, %v", status, err)
		}
	}
	if len(serials) != 6 {
		t.Fatalf("%d distinct certificates for 6 messages", len(serials))
	}
	// The answer to one message does not pass for another's (the check binds transaction and nonce).
	if err := built[0].CheckCertRep(200, res.Bodies[1]); err == nil {
		t.Fatal("an answer to another transaction passed the check")
	}
	if err := built[0].CheckCertRep(503, res.Bodies[0]); err == nil {
		t.Fatal("a 503 passed the check")
	}
	if _, err := built[0].VerifyCertRep(res.Bodies[0], []*x509.Certificate{ca.RACert}); err == nil {
		t.Fatal("a certificate verified against the wrong issuer")
	}
	if n, _, _ := st.Search(context.Background(), storeQuery()); len(n) != 6 {
		t.Fatalf("%d records, want 6", len(n))
	}
}

func TestSCEPWrongChallengeIsAnError(t *testing.T) {
	ts, _, _ := scepService(t)
	recipients, err := FetchCACerts(context.Background(), nil, ts.URL+"/api/scep/static")
	if err != nil {
		t.Fatal(err)
	}
	built, err := BuildSCEP(SCEPConfig{Path: "/api/scep/static", Recipients: recipients, Challenge: "wrong-challenge",
		Keys: deviceKeys(t)}, 2)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{BaseURL: ts.URL, KeepBodies: true}, Requests(built))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 2 {
		t.Fatalf("errors %d, want 2", res.Errors)
	}
	for kind := range res.ErrorKinds {
		if !strings.Contains(kind, "pkiStatus 2") {
			t.Errorf("error kind %q does not name the FAILURE status", kind)
		}
	}
	if status, info, err := CertRepStatus(res.Bodies[0]); err != nil || status != StatusFailure || info != "2" {
		t.Fatalf("CertRepStatus = %q %q %v, want FAILURE badRequest", status, info, err)
	}
}

func TestCSRRequests(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign}
	var tokens sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		csr, err := x509.ParseCertificateRequest(body)
		if err != nil || r.Header.Get("Content-Type") != "application/pkcs10" {
			http.Error(w, "bad csr", 400)
			return
		}
		tokens.Store(r.Header.Get("Authorization"), true)
		subject := csr.Subject
		if subject.CommonName == "loadgen-api-1" {
			subject.CommonName = "someone-else" // a certificate for another name must fail the check
		}
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: subject,
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, caTmpl, csr.PublicKey, caKey)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = w.Write(der)
	}))
	defer srv.Close()
	built, err := BuildCSR(CSRConfig{Path: "/api/csr", Token: func(i int) (string, error) { return fmt.Sprint("tok", i), nil }}, 3)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{BaseURL: srv.URL, Concurrency: 2}, CSRRequests(built))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 1 || res.ErrorKinds["certificate does not match the CSR"] != 1 {
		t.Fatalf("errors %d %v; want the mismatched certificate only", res.Errors, res.ErrorKinds)
	}
	n := 0
	tokens.Range(func(k, _ any) bool { n++; return strings.HasPrefix(k.(string), "Bearer tok") })
	if n != 3 {
		t.Fatalf("%d distinct bearer tokens, want 3", n)
	}
}

func TestMeasureRSAFloor(t *testing.T) {
	f, err := MeasureRSAFloor(2048, 2048, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if f.EnrollmentsPerSecond <= 0 || f.Decrypt <= 0 || f.SignCA <= 0 || f.SignRA <= 0 || f.CPUs < 1 {
		t.Fatalf("floor not measured: %+v", f)
	}
	if !strings.Contains(f.String(), "enrollments/s") {
		t.Fatalf("String() = %q", f.String())
	}
	if _, err := MeasureRSAFloor(2048, 2048, 0); err == nil {
		t.Fatal("a zero duration was accepted")
	}
}

// A meter keeps its keys: measured again, and run one enrollment at a time (the bench's stand-in server), it
// uses the same CA and RA keys at the sizes it was made with.
func TestFloorMeterReuse(t *testing.T) {
	m, err := NewFloorMeter(2048, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ca, ra := m.ca, m.ra
	if ca.N.BitLen() != 2048 || ra.N.BitLen() != 1024 {
		t.Fatalf("key sizes %d/%d, want 2048/1024", ca.N.BitLen(), ra.N.BitLen())
	}
	for range 2 {
		f, err := m.Measure(20 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if f.CABits != 2048 || f.RABits != 1024 || f.EnrollmentsPerSecond <= 0 {
			t.Fatalf("floor %+v", f)
		}
	}
	if err := m.Enroll(); err != nil {
		t.Fatal(err)
	}
	if m.ca != ca || m.ra != ra {
		t.Fatal("the meter made new keys")
	}
	m.wrapped = []byte("not an RSA ciphertext")
	if m.Enroll() == nil {
		t.Fatal("Enroll ignored a failed decryption")
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus([]byte("Name:\tazscep\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n"))
	if err != nil || m.RSS != 10<<20 || m.Peak != 20<<20 {
		t.Fatalf("parseStatus = %+v, %v", m, err)
	}
	if _, err := parseStatus([]byte("VmRSS:\t1 MB\n")); err == nil {
		t.Fatal("a line in another unit was accepted")
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing fields were accepted")
	}
	if m, err := ProcessMemory(os.Getpid()); err != nil || m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("ProcessMemory(self) = %+v, %v", m, err)
	}
}

func storeQuery() store.Query { return store.Query{Limit: 100} }

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses, utime 250 and stime 50 ticks.
	line := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 500 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	got, err := parseStat([]byte(line))
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStat = %v, %v; want 3s", got, err)
	}
	if _, err := parseStat([]byte("4242 no parenthesis")); err == nil {
		t.Error("a stat line without the command name parsed")
	}
	if cpu, err := ProcessCPU(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("ProcessCPU(self) = %v, %v", cpu, err)
	}
}
