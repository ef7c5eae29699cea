package main

// BenchmarkPeers is issue 13's side-by-side run: azscep (Azurite, and the in-memory store), step-ca v0.30.2 and
// micromdm's scepserver v2.3.0, every CA on an RSA-3072 key, driven by the same load generator with the same kind
// of pre-built requests from 8 clients, in alternating rounds (each round sends to every server in turn, the
// order rotating, so that load from elsewhere on the machine falls on all of them alike), with the RSA floor
// measured before the first turn and after every turn. The medians of the rounds give the ratios; each turn's
// share of the floor is against the floor measured just before and after it. The floor over HTTP
// (benchFloorServer) takes its turn like a server: what a server doing nothing but the floor's operations reaches.
// `make bench` installs the peers into .local/peers (AZSCEP_PEERS_DIR).
//
// The benchmark does a fixed amount of work and ignores b.N (the timer runs throughout, so the framework runs it
// once): rounds and requests come from AZSCEP_BENCH_ROUNDS and AZSCEP_BENCH_PEER_REQUESTS. Extra azscep binaries
// can join the rotation with AZSCEP_BENCH_VARIANTS=name=/path/to/binary,...: that is how the before/after table of
// each optimisation is measured in one run. AZSCEP_BENCH_PIN=1 adds a pinned twin of every server to the same
// rounds (benchPinEnv): the server alone on one CPU, the load generator and Azurite on the other, its share
// taken against the floor of one CPU.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/loadgen"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
)

// Peer versions `make bench` installs; the benchmark names them in its output.
const (
	benchStepCAVersion     = "v0.30.2"
	benchScepserverVersion = "v2.3.0"
	benchPeerClients       = 8
	benchChildEnv          = "AZSCEP_BENCH_CHILD"
	// The local CA's key sizes, which the RSA floor measures: the CA signs with 3072 bits, the RA decrypts and
	// signs with 2048.
	benchCABits, benchRABits = 3072, 2048
)

// benchChildMain turns the test binary into a server process when AZSCEP_BENCH_CHILD is set: the handler with the
// in-memory store (memstore), or with Table Storage as configured (tables: the real binary's wiring, used when
// the Azurite variant is profiled), serving like the real binary (same configuration, same JSON logs to stdout),
// so that every variant is a separate process like every other server in the comparison; or the floor over HTTP
// (floor, benchFloorServer). It reports whether it ran.
func benchChildMain() bool {
	mode := os.Getenv(benchChildEnv)
	if mode != "memstore" && mode != "tables" && mode != "floor" {
		return false
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if path := os.Getenv("AZSCEP_BENCH_CPUPROFILE"); path != "" { // the server's own profile, without the client's
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench child: cpu profile: %v\n", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if mode == "floor" {
		benchFloorServer(ctx)
		return true
	}
	cfg, err := config.Load(os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child: %v\n", err)
		os.Exit(2)
	}
	tuneGC()
	var opts buildOptions
	if mode == "memstore" {
		opts.store = memstore.New()
	}
	if err := serve(ctx, cfg, newLogger(cfg.LogLevel), opts); err != nil &&
		!errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "bench child: %v\n", err)
		return true
	}
	return true
}

// benchFloorServer is the floor over HTTP: a stand-in server that reads each POST (up to 64 KiB) and runs only
// the floor's three private-key operations (loadgen.FloorMeter.Enroll, CA 3072 and RA 2048 bits) before a fixed
// CertRep-sized answer. Driven like the servers, it shows what a SCEP server with no work but those operations
// reaches on this machine beside this load generator: HTTP, scheduling and the load generator's share included.
func benchFloorServer(ctx context.Context) {
	m, err := loadgen.NewFloorMeter(benchCABits, benchRABits)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench floor: %v\n", err)
		os.Exit(2)
	}
	answer := make([]byte, benchFloorAnswerBytes)
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, httpx.MaxBody)); err != nil {
					http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
					return
				}
				if err := m.Enroll(); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
			_, _ = w.Write(answer)
		})}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "bench floor: %v\n", err)
		os.Exit(2)
	}
}

// benchFloorAnswerBytes is about the size of azscep's CertRep to these requests.
const benchFloorAnswerBytes = 3000

// startFloorChild runs benchFloorServer in a child process, pinned to cpus (nil: not pinned).
func startFloorChild(b testing.TB, cpus []int) *benchChild {
	return startBenchChild(b, "floor", func(port int) []string {
		return []string{fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port)}
	}, "/", cpus)
}

// benchPeer is one server in the rotation.
type benchPeer struct {
	name, base, path, challenge string
	recipients                  []*x509.Certificate
	rounds                      [][]*loadgen.SCEPRequest
	pid                         int  // the server process, for its CPU time
	peer                        bool // another product (not azscep)
	azurite                     bool // its store is the shared Azurite, whose CPU time is its too
	floor                       bool // the floor over HTTP (benchFloorServer), a yardstick rather than a server
	pinned                      bool // on benchServerCPUs, its turns with the load generator and Azurite on benchLoadCPUs
	rates                       []float64
	floorShares                 []float64 // each turn's rate over the floor measured just before and after it
	p50                         []float64
	cpu, storeCPU               []float64 // ms of CPU per enrollment: the server's, Azurite's
	loadCPU                     []float64 // ms of CPU per enrollment of the load generator (this process)
	errors                      int
}

func benchEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchPeersDir(b *testing.B) string {
	if d := os.Getenv("AZSCEP_PEERS_DIR"); d != "" {
		return d
	}
	d, err := filepath.Abs(filepath.Join("..", ".local", "peers"))
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func benchPeerBinary(b *testing.B, name string) string {
	p := filepath.Join(benchPeersDir(b), name)
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("%s is not installed at %s: `make bench` installs it (go install, CGO_ENABLED=0)", name, p)
	}
	return p
}

// startAzscepChild runs the test binary as the handler (benchChildMain) with the in-memory store (memstore) or
// Azurite (tables), pinned to cpus (nil: not pinned).
func startAzscepChild(b *testing.B, mode string, cpus []int) *benchChild {
	return startBenchChild(b, mode, func(port int) []string { return benchAzscepEnv(b, port) }, "/api/health", cpus)
}

// startBenchChild runs the test binary as a bench child (benchChildMain) in mode, with env on a free port,
// pinned to cpus (nil: not pinned), and waits until readyPath answers 200. With AZSCEP_BENCH_CPUPROFILE=path the
// child writes its CPU profile to path.<mode> (path.<mode>.pinned when pinned).
func startBenchChild(b testing.TB, mode string, env func(port int) []string, readyPath string, cpus []int) *benchChild {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	port := freePort(b)
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(env(port), benchChildEnv+"="+mode)
	if v := os.Getenv("AZSCEP_BENCH_CPUPROFILE"); v != "" {
		if cpus != nil {
			v += ".pinned"
		}
		cmd.Env = append(cmd.Env, "AZSCEP_BENCH_CPUPROFILE="+v+"."+mode)
	}
	c := benchStartOn(b, cmd, fmt.Sprintf("http://127.0.0.1:%d", port), cpus)
	c.waitFor(b, c.base+readyPath, time.Minute)
	return c
}

// startAzscepBinary runs an azscep binary (a variant, or the suite's build) against Azurite, pinned to cpus
// (nil: not pinned).
func startAzscepBinary(b *testing.B, bin string, cpus []int) *benchChild {
	b.Helper()
	port := freePort(b)
	cmd := exec.Command(bin)
	cmd.Env = benchAzscepEnv(b, port)
	c := benchStartOn(b, cmd, fmt.Sprintf("http://127.0.0.1:%d", port), cpus)
	c.waitFor(b, c.base+"/api/health", time.Minute)
	return c
}

// startStepCA runs step-ca with an RSA-3072 root and intermediate (the intermediate signs certificates and, as
// step-ca's default SCEP decrypter, opens envelopes and signs CertReps), a SCEP provisioner with a static
// challenge answering AES-256-CBC, its default Badger database, and SCEP on a plain-HTTP address on 127.0.0.1;
// pinned to cpus (nil: not pinned).
func startStepCA(b *testing.B, challenge string, cpus []int) *benchChild {
	b.Helper()
	bin := benchPeerBinary(b, "step-ca")
	dir := b.TempDir()
	keys, err := loadgen.GenerateRSAKeys(2, 3072)
	if err != nil {
		b.Fatal(err)
	}
	rootKey, intKey := keys[0], keys[1]
	now := time.Now()
	mkCA := func(cn string, serial int64, pub *rsa.PublicKey, parent *x509.Certificate, signer *rsa.PrivateKey) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
		if parent == nil {
			parent = tmpl
		} else {
			tmpl.MaxPathLenZero = true
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			b.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	root := mkCA("bench step-ca root", 1, &rootKey.PublicKey, nil, rootKey)
	inter := mkCA("bench step-ca intermediate", 2, &intKey.PublicKey, root, rootKey)
	keyDER, err := x509.MarshalPKCS8PrivateKey(intKey)
	if err != nil {
		b.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	httpPort, tlsPort := freePort(b), freePort(b)
	cfg := map[string]any{
		"root": write("root.crt", "CERTIFICATE", root.Raw), "crt": write("intermediate.crt", "CERTIFICATE", inter.Raw),
		"key":     write("intermediate.key", "PRIVATE KEY", keyDER),
		"address": fmt.Sprintf("127.0.0.1:%d", tlsPort), "insecureAddress": fmt.Sprintf("127.0.0.1:%d", httpPort),
		"dnsNames": []string{"127.0.0.1"}, "logger": map[string]any{"format": "text"},
		"db": map[string]any{"type": "badgerv2", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{"provisioners": []any{map[string]any{
			"type": "SCEP", "name": "bench", "challenge": challenge, "minimumPublicKeyLength": 2048,
			"encryptionAlgorithmIdentifier": 2, // AES-256-CBC, as azscep answers
		}}},
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, cfgPath)
	cmd.Env = append(os.Environ(), "STEPPATH="+dir, "HOME="+dir)
	c := benchStartOn(b, cmd, fmt.Sprintf("http://127.0.0.1:%d", httpPort), cpus)
	c.waitFor(b, c.base+"/scep/bench?operation=GetCACaps", time.Minute)
	return c
}

// startMicromdm runs scepserver with an RSA-3072 CA (micromdm uses the CA key for all three operations) and its
// file depot; pinned to cpus (nil: not pinned).
func startMicromdm(b *testing.B, challenge string, cpus []int) *benchChild {
	b.Helper()
	bin := benchPeerBinary(b, "scepserver")
	depot := filepath.Join(b.TempDir(), "depot")
	if out, err := exec.Command(bin, "ca", "-init", "-depot", depot, "-keySize", "3072").CombinedOutput(); err != nil {
		b.Fatalf("scepserver ca -init: %v\n%s", err, out)
	}
	port := freePort(b)
	cmd := exec.Command(bin, "-depot", depot, "-http-addr", fmt.Sprintf("127.0.0.1:%d", port), "-challenge", challenge)
	c := benchStartOn(b, cmd, fmt.Sprintf("http://127.0.0.1:%d", port), cpus)
	c.waitFor(b, c.base+"/scep?operation=GetCACaps", 30*time.Second)
	return c
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// warmAzurite writes azuritetest.Warmup enrollments into tables of their own on the Azurite the azscep-azurite
// servers use, as every server is warmed before the rounds: without it the azscep-azurite turns, 2,100
// enrollments in all, measured a fresh Azurite while its CPU per enrollment was still falling.
func warmAzurite(b *testing.B) {
	conn := azuritetest.ConnectionString(b) // starts the shared Azurite if need be, which Warmup asks about
	n := azuritetest.Warmup(b)
	if n == 0 {
		return
	}
	st, err := tables.NewFromConnectionString(conn, "warm")
	if err != nil {
		b.Fatalf("warming Azurite: %v", err)
	}
	if err := st.EnsureTables(b.Context()); err != nil {
		b.Fatalf("warming Azurite: %v", err)
	}
	if err := storetest.Enroll(b.Context(), st, benchPeerClients, n, nil); err != nil {
		b.Fatalf("warming Azurite: %v", err)
	}
}

// benchVariants parses AZSCEP_BENCH_VARIANTS.
func benchVariants(b *testing.B) [][2]string {
	var out [][2]string
	for item := range strings.SplitSeq(os.Getenv("AZSCEP_BENCH_VARIANTS"), ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		name, path, ok := strings.Cut(item, "=")
		if !ok || name == "" || path == "" {
			b.Fatalf("AZSCEP_BENCH_VARIANTS item %q is not name=/path/to/azscep", item)
		}
		out = append(out, [2]string{name, path})
	}
	return out
}

// AZSCEP_BENCH_PIN=1 adds a pinned side-by-side run to BenchmarkPeers, in the same rounds: a second process of
// every server (the azscep variants, the stand-in, the peers) starts pinned to benchServerCPUs, and during its
// turns the load generator (this process) and Azurite run on benchLoadCPUs; its shares are against the floor of
// one CPU (loadgen.FloorMeter.MeasureOn), measured on the server's CPU after every turn. On a 2-core machine the
// unpinned servers share both cores with the load generator and Azurite, so no server can reach the floor of
// both cores; pinned, the server has a core to itself, as it would on a machine where the clients and the store
// are elsewhere.
const benchPinEnv = "AZSCEP_BENCH_PIN"

// The CPUs of a pinned run: the servers on the second CPU, the load generator and Azurite on the first.
var (
	benchServerCPUs = []int{1}
	benchLoadCPUs   = []int{0}
)

// benchPinned reports whether AZSCEP_BENCH_PIN asks for the pinned run; it fails on a machine with one CPU.
func benchPinned(b *testing.B) bool {
	switch os.Getenv(benchPinEnv) {
	case "", "0":
		return false
	case "1":
	default:
		b.Fatalf("%s=%q: 1 or unset", benchPinEnv, os.Getenv(benchPinEnv))
	}
	if runtime.NumCPU() < 2 {
		b.Fatalf("%s=1 needs two CPUs, this process has %d", benchPinEnv, runtime.NumCPU())
	}
	return true
}

// benchCPUList writes cpus as /proc/<pid>/status writes Cpus_allowed_list (one CPU, or several comma-separated:
// the pinned run uses single CPUs).
func benchCPUList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// benchPinLoad moves the load generator (this process, GOMAXPROCS with it) and the shared Azurite, if any, to
// benchLoadCPUs for a pinned turn and checks that they are there; the returned function moves them back.
func benchPinLoad(b testing.TB) func() {
	b.Helper()
	var others []int
	if pid := azuritetest.SharedPID(); pid != 0 {
		others = append(others, pid)
	}
	restore, err := loadgen.PinSelf(benchLoadCPUs, others...)
	if err != nil {
		b.Fatal(err)
	}
	for _, pid := range append([]int{os.Getpid()}, others...) {
		if got, err := loadgen.AllowedCPUs(pid); err != nil || got != benchCPUList(benchLoadCPUs) {
			b.Fatalf("process %d is on CPUs %q (%v) for a pinned turn, want %q", pid, got, err,
				benchCPUList(benchLoadCPUs))
		}
	}
	return func() {
		if err := restore(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPeers(b *testing.B) {
	rounds := benchEnvInt("AZSCEP_BENCH_ROUNDS", 7)
	perRound := benchEnvInt("AZSCEP_BENCH_PEER_REQUESTS", 300)
	const peerChallenge = "bench-peer-challenge"

	var peers []*benchPeer
	// startSet starts every server pinned to cpus (nil: not pinned) and returns the in-memory azscep and the
	// stand-in, whose rounds are the in-memory azscep's.
	startSet := func(cpus []int) (memory, floorHTTP *benchPeer) {
		pinned, suffix := cpus != nil, ""
		if pinned {
			suffix = "-pinned"
		}
		add := func(name string, c *benchChild, path, challenge string) *benchPeer {
			peer := path != "/api/scep/static"
			p := &benchPeer{name: name + suffix, base: c.base, path: path, challenge: challenge,
				pid: c.cmd.Process.Pid, peer: peer, azurite: !peer && name != "azscep-memory", pinned: pinned}
			peers = append(peers, p)
			return p
		}
		azurite := func() *benchChild { return startAzscepOn(b, cpus) }
		if os.Getenv("AZSCEP_BENCH_CPUPROFILE") != "" { // the same wiring in the test binary, which can profile itself
			azurite = func() *benchChild { return startAzscepChild(b, "tables", cpus) }
		}
		add("azscep-azurite", azurite(), "/api/scep/static", config.LocalStaticChallenge)
		memory = add("azscep-memory", startAzscepChild(b, "memstore", cpus), "/api/scep/static",
			config.LocalStaticChallenge)
		for _, v := range benchVariants(b) {
			add(v[0], startAzscepBinary(b, v[1], cpus), "/api/scep/static", config.LocalStaticChallenge)
		}
		stand := startFloorChild(b, cpus)
		floorHTTP = &benchPeer{name: "rsa-floor-http" + suffix, base: stand.base, path: "/api/scep/static",
			pid: stand.cmd.Process.Pid, floor: true, pinned: pinned}
		peers = append(peers, floorHTTP)
		add("step-ca-"+benchStepCAVersion, startStepCA(b, peerChallenge, cpus), "/scep/bench", peerChallenge)
		add("micromdm-"+benchScepserverVersion, startMicromdm(b, peerChallenge, cpus), "/scep", peerChallenge)
		return memory, floorHTTP
	}
	memory, floorHTTP := startSet(nil)
	pin := benchPinned(b)
	var memoryPinned, floorHTTPPinned *benchPeer
	if pin {
		memoryPinned, floorHTTPPinned = startSet(benchServerCPUs)
	}

	for _, p := range peers {
		var err error
		if p.floor {
			continue // it takes the in-memory variant's requests once they are built
		}
		if p.recipients, err = loadgen.FetchCACerts(context.Background(), nil, p.base+p.path); err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		for r := range rounds {
			built, err := benchBuildSCEP(loadgen.SCEPConfig{Path: p.path, Recipients: p.recipients,
				Challenge: p.challenge, Keys: benchDeviceKeys(b), CommonName: fmt.Sprintf("peer-%s-%d-", benchUnique(), r)},
				perRound)
			if err != nil {
				b.Fatal(err)
			}
			p.rounds = append(p.rounds, built)
		}
		// Warm each server (connections, lazy start-up work) outside the rounds.
		warm, err := benchBuildSCEP(loadgen.SCEPConfig{Path: p.path, Recipients: p.recipients, Challenge: p.challenge,
			Keys: benchDeviceKeys(b), CommonName: "warm-" + benchUnique() + "-"}, benchPeerClients)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := loadgen.Run(context.Background(), loadgen.Options{BaseURL: p.base, Concurrency: benchPeerClients},
			loadgen.Requests(warm)); err != nil {
			b.Fatal(err)
		}
	}

	warmAzurite(b)
	floorHTTP.rounds = memory.rounds // the stand-in only reads them
	if pin {
		floorHTTPPinned.rounds = memoryPinned.rounds
	}

	// The floor is measured before the first turn and after every turn, so that each turn's share of the floor
	// is taken against the floor measured just before and just after it: this machine's speed drifts within
	// minutes, and a share against one floor per round would carry that drift. The pinned run's floor is one
	// CPU's, the server's.
	meter, err := loadgen.NewFloorMeter(benchCABits, benchRABits)
	if err != nil {
		b.Fatal(err)
	}
	all, one := &benchFloors{}, &benchFloors{}
	measureFloors := func() {
		f, err := meter.Measure(benchFloorWindow)
		if err != nil {
			b.Fatal(err)
		}
		all.add(f)
		if pin {
			if f, err = meter.MeasureOn(benchFloorWindow, benchServerCPUs[0]); err != nil {
				b.Fatal(err)
			}
			one.add(f)
		}
	}
	measureFloors()
	for r := range rounds {
		for i := range peers {
			p := peers[(i+r)%len(peers)]
			unpin := func() {}
			if p.pinned {
				unpin = benchPinLoad(b)
			}
			cpu0, store0 := benchCPU(b, p.pid), time.Duration(0)
			if p.azurite {
				store0 = azuritetest.SharedCPU(b)
			}
			res, err := loadgen.Run(context.Background(), loadgen.Options{BaseURL: p.base, Concurrency: benchPeerClients,
				Client: loadgen.NewClient(benchPeerClients), KeepBodies: r == 0 && !p.floor}, p.requests(r))
			if err != nil {
				b.Fatal(err)
			}
			n := float64(res.Sent - res.Errors)
			p.cpu = append(p.cpu, ms(benchCPU(b, p.pid)-cpu0)/n)
			p.loadCPU = append(p.loadCPU, ms(res.ClientCPU)/n)
			if p.azurite && azuritetest.SharedPID() != 0 { // not with AZSCEP_TABLES_CONNECTION: no process to read
				p.storeCPU = append(p.storeCPU, ms(azuritetest.SharedCPU(b)-store0)/n)
			}
			unpin()
			p.rates = append(p.rates, res.Throughput())
			p.p50 = append(p.p50, ms(res.Percentile(0.5)))
			p.errors += res.Errors
			if r == 0 && !p.floor {
				benchOpenSome(b, p, res)
			}
			measureFloors()
			floors := all
			if p.pinned {
				floors = one
			}
			p.floorShares = append(p.floorShares, res.Throughput()/floors.around())
		}
	}

	var lines []string
	lines = append(lines, fmt.Sprintf("%-22s %10s %8s %9s %9s %9s %7s  %s", "server (RSA-3072 CA)", "median/s", "p50 ms",
		"CPU ms", "store ms", "loadgen", "errors", "rounds (enroll/s)"))
	for _, p := range peers {
		rs := make([]string, len(p.rates))
		for i, v := range p.rates {
			rs[i] = fmt.Sprintf("%.0f", v)
		}
		storeCPU := "-"
		if len(p.storeCPU) > 0 {
			storeCPU = fmt.Sprintf("%.2f", median(p.storeCPU))
		}
		lines = append(lines, fmt.Sprintf("%-22s %10.1f %8.1f %9.2f %9s %9.2f %7d  %s", p.name, median(p.rates),
			median(p.p50), median(p.cpu), storeCPU, median(p.loadCPU), p.errors, strings.Join(rs, " ")))
		b.ReportMetric(median(p.rates), p.name+"-enroll/s")
		b.ReportMetric(median(p.cpu), p.name+"-cpu-ms")
	}
	lines = append(lines, all.line("RSA floor (3072/2048)"))
	b.ReportMetric(median(all.rates), "floor-enroll/s")
	unpinned := slices.DeleteFunc(slices.Clone(peers), func(p *benchPeer) bool { return p.pinned })
	lines = append(lines, benchPeersSummary(b, unpinned, floorHTTP, all)...)
	if pin {
		lines = append(lines, one.line("RSA floor, CPU "+benchCPUList(benchServerCPUs)))
		b.ReportMetric(median(one.rates), "floor-1cpu-enroll/s")
		lines = append(lines, fmt.Sprintf("pinned (%s=1): servers on CPU %s, the load generator and Azurite on CPU %s; "+
			"shares against the floor of one CPU", benchPinEnv, benchCPUList(benchServerCPUs), benchCPUList(benchLoadCPUs)))
		pinned := slices.DeleteFunc(slices.Clone(peers), func(p *benchPeer) bool { return !p.pinned })
		lines = append(lines, benchPeersSummary(b, pinned, floorHTTPPinned, one)...)
	}
	// Printed rather than logged: the testing package keeps only the first ten lines of a benchmark's log.
	fmt.Printf("BenchmarkPeers: side by side, %d alternating rounds of %d enrollments from %d clients; each turn's "+
		"share of the floor is against the floor measured just before and after it:\n%s\n", rounds, perRound,
		benchPeerClients, strings.Join(lines, "\n"))
}

// benchFloors is one kind of floor measured through a run (of every CPU, or of the pinned server's one).
type benchFloors struct {
	rates []float64
	op    loadgen.Floor // the least disturbed single-CPU measurement of the operations
}

func (f *benchFloors) add(m loadgen.Floor) {
	f.rates = append(f.rates, m.EnrollmentsPerSecond)
	if len(f.rates) == 1 || m.Decrypt+m.SignCA+m.SignRA < f.op.Decrypt+f.op.SignCA+f.op.SignRA {
		f.op = m
	}
}

// around is the floor around the turn just run: the mean of the measurements before and after it.
func (f *benchFloors) around() float64 {
	n := len(f.rates)
	return (f.rates[n-2] + f.rates[n-1]) / 2
}

// cpuMS is the CPU time of one enrollment's private-key operations, in ms.
func (f *benchFloors) cpuMS() float64 { return ms(f.op.Decrypt + f.op.SignCA + f.op.SignRA) }

func (f *benchFloors) line(name string) string {
	return fmt.Sprintf("%-22s %10.1f %8s %9.2f %9s %9s %7s  %s", name, median(f.rates), "", f.cpuMS(), "", "", "",
		fmt.Sprintf("%d measurements, %.0f to %.0f", len(f.rates), slices.Min(f.rates), slices.Max(f.rates)))
}

// benchPeersSummary is the ratios of one side-by-side run (the unpinned servers, or the pinned ones) against its
// fastest peer, its floor and its stand-in, reported as metrics under each server's name.
func benchPeersSummary(b *testing.B, peers []*benchPeer, floorHTTP *benchPeer, floors *benchFloors) []string {
	bestPeer, leastPeerCPU := 0.0, 0.0 // the fastest peer's median rate, the least CPU per enrollment of a peer
	for _, p := range peers {
		if m := median(p.rates); p.peer && m > bestPeer {
			bestPeer = m
		}
		if c := median(p.cpu); p.peer && (leastPeerCPU == 0 || c < leastPeerCPU) {
			leastPeerCPU = c
		}
	}
	floor, floorCPU := median(floors.rates), floors.cpuMS()
	// The floor's rate has every CPU it measures doing private-key operations and nothing else. Unpinned, the
	// load generator (and for the Azurite variant, Azurite) runs on the same CPUs, so even a server that did only
	// those operations would reach a share of the floor below 1: the ceiling printed beside each azscep variant.
	// Pinned, they run on the other CPU, and the share of it they kept busy is printed instead.
	floorBusyCPU := float64(floors.op.CPUs) * 1000 / floor // ms of the floor's CPUs per enrollment at its rate
	httpShare := median(floorHTTP.floorShares)
	lines := []string{fmt.Sprintf("%s (a stand-in doing only the floor's operations per HTTP request): %.2f of "+
		"the floor (turns %s)", floorHTTP.name, httpShare, strings.Trim(fmt.Sprintf("%.2f", floorHTTP.floorShares), "[]"))}
	b.ReportMetric(httpShare, floorHTTP.name+"-vs-floor")
	for _, p := range peers {
		if p.floor {
			continue
		}
		m := median(p.rates)
		vsHTTP := make([]float64, len(p.rates))
		for r := range p.rates {
			vsHTTP[r] = p.rates[r] / floorHTTP.rates[r]
		}
		if p.peer {
			if floorHTTP.pinned { // the peers' shares too, so that the pinned side by side is read whole
				lines = append(lines, fmt.Sprintf("%s: %.2f of the floor, %.2f of the floor over HTTP", p.name,
					median(p.floorShares), median(vsHTTP)))
				b.ReportMetric(median(p.floorShares), p.name+"-vs-floor")
			}
			continue
		}
		ratio, share := m/bestPeer, median(p.floorShares)
		cpuShare := floorCPU / median(p.cpu)
		if p.azurite {
			cpuShare = floorCPU / (median(p.cpu) + median(p.storeCPU))
		}
		cpuVsPeer := leastPeerCPU / median(p.cpu)
		beside := median(p.loadCPU)
		if p.azurite {
			beside += median(p.storeCPU)
		}
		besideName := map[bool]string{true: " and Azurite", false: ""}[p.azurite]
		var room string
		if p.pinned {
			busy := m * beside / 1000 // of CPU benchLoadCPUs, in its turns
			room = fmt.Sprintf("the load generator%s kept CPU %s %.0f%% busy", besideName,
				benchCPUList(benchLoadCPUs), 100*busy)
			b.ReportMetric(busy, p.name+"-load-cpu-busy")
		} else {
			ceiling := floorBusyCPU / (floorBusyCPU + beside)
			room = fmt.Sprintf("ceiling beside the load generator%s %.2f", besideName, ceiling)
			b.ReportMetric(ceiling, p.name+"-ceiling-vs-floor")
		}
		lines = append(lines, fmt.Sprintf("%s: %.2f× the fastest peer (target ≥ 1.2; %.2f× by server CPU per enrollment); "+
			"%.2f of the floor (turns %s), %.2f of the floor over HTTP, %s; "+
			"%.2f of the floor's CPU time per enrollment (server + store)", p.name, ratio, cpuVsPeer, share,
			strings.Trim(fmt.Sprintf("%.2f", p.floorShares), "[]"), median(vsHTTP), room, cpuShare))
		b.ReportMetric(cpuVsPeer, p.name+"-cpu-vs-peer")
		b.ReportMetric(ratio, p.name+"-vs-peer")
		b.ReportMetric(share, p.name+"-vs-floor")
		b.ReportMetric(median(vsHTTP), p.name+"-vs-http-floor")
		b.ReportMetric(cpuShare, p.name+"-cpu-vs-floor")
	}
	return lines
}

// benchFloorWindow is how long each measurement of the floor runs (one before the first turn, one after each).
const benchFloorWindow = time.Second

// requests is round r's requests for p; the floor over HTTP only reads them, so its answers are not checked.
func (p *benchPeer) requests(r int) []loadgen.Request {
	reqs := loadgen.Requests(p.rounds[r])
	if p.floor {
		for i := range reqs {
			reqs[i].Check = nil
		}
	}
	return reqs
}

// benchOpenSome opens a few successful answers of a peer as a device would (outside the timed runs), so that a
// server answering fast with something useless cannot win.
func benchOpenSome(b *testing.B, p *benchPeer, res *loadgen.Result) {
	b.Helper()
	opened := 0
	for i, req := range p.rounds[0] {
		if opened == 3 {
			return
		}
		if req.CheckCertRep(http.StatusOK, res.Bodies[i]) != nil {
			continue
		}
		if _, err := req.VerifyCertRep(res.Bodies[i], p.recipients); err != nil {
			b.Fatalf("%s: answer %d does not give the device its certificate: %v", p.name, i, err)
		}
		opened++
	}
	if opened == 0 {
		b.Fatalf("%s: no enrollment succeeded: %v", p.name, res.ErrorKinds)
	}
}

// benchCPU is the CPU time process pid has used (0 for pid 0).
func benchCPU(b *testing.B, pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, err := loadgen.ProcessCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkScaleOut: 1, 2 and 4 azscep processes (the real binary) on one set of tables in Azurite, each set
// behind its own round-robin proxy, driven in alternating rounds like BenchmarkPeers. It reports enrollments/s
// per instance count and fails on any error or on a serial delivered twice. On one 2-core machine the instances
// share the same CPUs, so the figure shows that adding instances costs nothing and breaks nothing, not that it
// adds capacity; TestScaleOut covers duplicates, the sync lease and CRL numbers.
func BenchmarkScaleOut(b *testing.B) {
	rounds := benchEnvInt("AZSCEP_BENCH_ROUNDS", 5)
	perRound := benchEnvInt("AZSCEP_BENCH_PEER_REQUESTS", 300)
	bin := buildBinary(b)
	type setup struct {
		n      int
		base   string
		rounds [][]*loadgen.SCEPRequest
		recips []*x509.Certificate
		rates  []float64
		errors int
	}
	var setups []*setup
	for _, n := range []int{1, 2, 4} {
		env := benchAzscepEnv(b, 0) // one set of tables and one CA for the n instances
		var bases []string
		for range n {
			port := freePort(b)
			cmd := exec.Command(bin)
			cmd.Env = append(slices.Clone(env), fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port))
			c := benchStart(b, cmd, fmt.Sprintf("http://127.0.0.1:%d", port))
			c.waitFor(b, c.base+"/api/health", time.Minute)
			bases = append(bases, c.base)
		}
		s := &setup{n: n, base: roundRobin(b, bases).URL}
		path := "/api/scep/static"
		var err error
		if s.recips, err = loadgen.FetchCACerts(context.Background(), nil, s.base+path); err != nil {
			b.Fatal(err)
		}
		for r := range rounds + 1 { // round 0 warms every instance
			built, err := benchBuildSCEP(loadgen.SCEPConfig{Path: path, Recipients: s.recips,
				Challenge: config.LocalStaticChallenge, Keys: benchDeviceKeys(b),
				CommonName: fmt.Sprintf("scale-%d-%s-%d-", n, benchUnique(), r)}, perRound)
			if err != nil {
				b.Fatal(err)
			}
			s.rounds = append(s.rounds, built)
		}
		setups = append(setups, s)
	}
	for r := range rounds + 1 {
		for i := range setups {
			s := setups[(i+r)%len(setups)]
			res, err := loadgen.Run(context.Background(), loadgen.Options{BaseURL: s.base, Concurrency: benchPeerClients,
				Client: loadgen.NewClient(benchPeerClients), KeepBodies: true}, loadgen.Requests(s.rounds[r]))
			if err != nil {
				b.Fatal(err)
			}
			s.errors += res.Errors
			if r == 0 {
				continue
			}
			s.rates = append(s.rates, res.Throughput())
			serials := map[string]bool{}
			for j, req := range s.rounds[r] {
				c, err := req.VerifyCertRep(res.Bodies[j], s.recips)
				if err != nil {
					b.Fatalf("%d instances: answer %d: %v", s.n, j, err)
				}
				if serials[c.SerialNumber.String()] {
					b.Fatalf("%d instances: serial %s delivered twice", s.n, c.SerialNumber)
				}
				serials[c.SerialNumber.String()] = true
			}
		}
	}
	var lines []string
	for _, s := range setups {
		if s.errors != 0 {
			b.Fatalf("%d instances: %d failed enrollments", s.n, s.errors)
		}
		m := median(s.rates)
		b.ReportMetric(m, fmt.Sprintf("instances-%d-enroll/s", s.n))
		lines = append(lines, fmt.Sprintf("%d instance(s): median %.1f enroll/s, rounds %.0f, 0 errors", s.n, m, s.rates))
	}
	b.Logf("scale-out on one Azurite, %d alternating rounds of %d enrollments from %d clients:\n%s", rounds, perRound,
		benchPeerClients, strings.Join(lines, "\n"))
}
