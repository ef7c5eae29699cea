package report

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/azscep/azscep/internal/crl
cpu: Test CPU @ 2.00GHz
BenchmarkGenerate100k-2   	       3	 612345678 ns/op	 4000000 crl-bytes
PASS
ok  	github.com/azscep/azscep/internal/crl	5.1s
pkg: github.com/azscep/azscep/internal/ocsp
BenchmarkRespondCached-2    	  200000	      9000 ns/op	  111111 responses/s	    2048 B/op	      20 allocs/op
BenchmarkHandlerCachedGET-2 	  100000	     20000 ns/op	   50000 responses/s
pkg: github.com/azscep/azscep/internal/store/tables
BenchmarkGroupCommit-2   	     600	   3500000 ns/op	 0.60 txn/enroll	 3.00 ops/enroll	 1.30 azurite-cpu-ms/enroll
pkg: github.com/azscep/azscep/internal/revocation
BenchmarkSync500-2   	       1	12500000000 ns/op
pkg: github.com/azscep/azscep/handler
BenchmarkRSAFloor-2   	       1	1000000000 ns/op	   200.0 enroll/s	 1.5 decrypt-ms	 4.5 signca-ms	 1.5 signra-ms
BenchmarkSCEPLocal/c=1-2     	     100	   8000000 ns/op	   125.0 enroll/s	 7.9 p50-ms	 9.0 p99-ms
BenchmarkSCEPLocal/c=8-2     	     300	   5000000 ns/op	   180.0 enroll/s	 40 p50-ms	 80 p99-ms
BenchmarkSCEPLocal/c=32-2    	     300	   5200000 ns/op	   175.0 enroll/s	 160 p50-ms	 300 p99-ms
BenchmarkPeers-2 	       1	90000000000 ns/op	   150.0 azscep-azurite-enroll/s	 7.0 azscep-azurite-cpu-ms	 1.25 azscep-azurite-vs-peer	 0.60 azscep-azurite-vs-floor	 0.55 azscep-azurite-cpu-vs-floor	 0.81 azscep-azurite-ceiling-vs-floor	 0.70 azscep-azurite-vs-http-floor	 0.95 rsa-floor-http-vs-floor	 220.0 azscep-memory-enroll/s	 1.83 azscep-memory-vs-peer	 0.88 azscep-memory-vs-floor	 120.0 step-ca-v0.30.2-enroll/s	 100.0 micromdm-v2.3.0-enroll/s	 250 floor-enroll/s	 95.0 azscep-azurite-pinned-enroll/s	 10.0 azscep-azurite-pinned-cpu-ms	 1.52 azscep-azurite-pinned-vs-peer	 0.71 azscep-azurite-pinned-vs-floor	 0.34 azscep-azurite-pinned-load-cpu-busy	 0.74 azscep-azurite-pinned-vs-http-floor	 1.01 rsa-floor-http-pinned-vs-floor	 120.0 azscep-memory-pinned-enroll/s	 1.92 azscep-memory-pinned-vs-peer	 0.84 azscep-memory-pinned-vs-floor	 62.5 step-ca-v0.30.2-pinned-enroll/s	 0.45 step-ca-v0.30.2-pinned-vs-floor	 55.0 micromdm-v2.3.0-pinned-enroll/s	 137 floor-1cpu-enroll/s
BenchmarkLatencyBudget/scep-static-2 	  40	 50000000 ns/op	 50 p50-ms	 58 p99-ms	 24 kv-ms	 21 store-ms	 5 other-ms	 1 kv-ops/enroll	 2 table-calls/enroll
BenchmarkLatencyBudget/api-csr-2 	  40	 50000000 ns/op	 62 p50-ms	 70 p99-ms	 24 kv-ms	 21 store-ms	 17 other-ms	 1 kv-ops/enroll	 2 table-calls/enroll
BenchmarkLatencyBudget/api-csr-first-2 	  40	 85000000 ns/op	 85 p50-ms	 90 p99-ms	 24 kv-ms	 25 store-ms	 31 graph-ms	 5 other-ms	 1 kv-ops/enroll	 2 table-calls/enroll	 2 graph-calls/enroll
BenchmarkScaleOut-2 	       1	30000000000 ns/op	 180 instances-1-enroll/s	 185 instances-2-enroll/s	 170 instances-4-enroll/s
BenchmarkKeyVaultOps/scep-2 	  50	 1000 ns/op	 1.000 kvops/enroll
BenchmarkKeyVaultOps/csr-2 	  50	 1000 ns/op	 2.000 kvops/enroll
BenchmarkKeyVaultOps/ocsp-2 	  500	 1000 ns/op	 0.002 kvops/response
BenchmarkIntuneWarm-2 	  20	 1000 ns/op	 2.000 intune-calls/enroll	 0 token-discovery/enroll
BenchmarkIntuneLatency-2 	  20	 130000000 ns/op	 128 p50-ms	 140 p99-ms	 20.5 kv-ms	 101 intune-ms	 4 store-ms	 2.5 other-ms	 1 kv-calls/enroll	 2 intune-calls/enroll
BenchmarkStartToReady-2 	  20	 250000000 ns/op	 25 start-ms	 180 ready-ms
BenchmarkResidentMemory-2 	  1	 1000 ns/op	 18.5 idle-MB	 160 peak-MB
--- FAIL: BenchmarkAPICSRLocal/c=8
FAIL	github.com/azscep/azscep/handler	100s
`

func figure(t *testing.T, figs []Figure, id string) Figure {
	t.Helper()
	for _, f := range figs {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("no figure %s", id)
	return Figure{}
}

func wantPass(t *testing.T, f Figure, want bool) {
	t.Helper()
	if f.Pass == nil || *f.Pass != want {
		t.Errorf("%s: pass = %v, want %v (value %v)", f.ID, f.Pass, want, f.Value)
	}
}

func TestParse(t *testing.T) {
	run, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if run.CPU != "Test CPU @ 2.00GHz" || run.GOOS != "linux" || run.GOARCH != "amd64" {
		t.Errorf("header: %+v", run)
	}
	if v, ok := run.Metric("BenchmarkSCEPLocal/c=8", "p99-ms"); !ok || v != 80 {
		t.Errorf("SCEPLocal/c=8 p99 = %v %v", v, ok)
	}
	b, ok := run.find("/ocsp", mustRE(`^BenchmarkRespondCached$`))
	if !ok || b.Procs != 2 || b.N != 200000 || b.Metrics["allocs/op"] != 20 {
		t.Errorf("RespondCached = %+v", b)
	}
	if len(run.Failures) != 2 || run.Failures[0] != "--- FAIL: BenchmarkAPICSRLocal/c=8" {
		t.Errorf("failures = %q", run.Failures)
	}
	if _, err := Parse(strings.NewReader("BenchmarkX-2 1 12 ns/op 5\n")); err == nil {
		t.Error("an odd value/unit list was accepted")
	}
	if _, err := Parse(strings.NewReader("BenchmarkX-2 1 twelve ns/op\n")); err == nil {
		t.Error("a non-numeric value was accepted")
	}
}

func TestFiguresAgainstTargets(t *testing.T) {
	run, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	figs := Figures(run)
	wantPass(t, figure(t, figs, "kv-scep"), true)
	wantPass(t, figure(t, figs, "kv-csr"), false) // 2 operations where the target is 1
	wantPass(t, figure(t, figs, "kv-ocsp"), true)
	wantPass(t, figure(t, figs, "intune-warm"), true)
	wantPass(t, figure(t, figs, "ocsp-cached"), true)
	wantPass(t, figure(t, figs, "sync-500"), false) // 12.5 s
	wantPass(t, figure(t, figs, "crl-100k"), true)
	gc := figure(t, figs, "group-commit")
	if gc.Value == nil || *gc.Value != 0.60 || gc.Pass != nil || !strings.Contains(gc.Detail, "3.00 entity operations") ||
		!strings.Contains(gc.Detail, "Azurite 1.30 ms") {
		t.Errorf("group commit figure = %v %v %q", gc.Value, gc.Pass, gc.Detail)
	}
	wantPass(t, figure(t, figs, "start-to-ready"), true)
	wantPass(t, figure(t, figs, "rss-idle"), true)
	wantPass(t, figure(t, figs, "rss-load"), false) // 160 MB

	vsPeer := figure(t, figs, "peers-ratio-azscep-azurite")
	if vsPeer.Value == nil || *vsPeer.Value != 1.25 {
		t.Errorf("peer ratio = %v, want 1.25", vsPeer.Value)
	}
	wantPass(t, vsPeer, true)
	if f := figure(t, figs, "peers-ratio-azscep-memory"); f.Pass != nil {
		t.Errorf("in-memory peer ratio is for information, got pass %v", *f.Pass)
	}
	wantPass(t, figure(t, figs, "floor-ratio-azscep-azurite"), false) // 0.60 < 0.65
	wantPass(t, figure(t, figs, "floor-ratio-azscep-memory"), true)   // 0.88 ≥ 0.85
	if f := figure(t, figs, "floor-ratio-azscep-azurite"); !strings.Contains(f.Detail, "CPU time per enrollment") ||
		!strings.Contains(f.Detail, "ceiling on this machine") || !strings.Contains(f.Detail, ": 0.81") ||
		!strings.Contains(f.Detail, "which reached 0.95 of the floor): 0.7") {
		t.Errorf("floor ratio detail %q", f.Detail)
	}
	if f := figure(t, figs, "peers-step-ca-v0.30.2"); f.Value == nil || *f.Value != 120 {
		t.Errorf("step-ca figure = %v", f.Value)
	}
	wantPass(t, figure(t, figs, "budget-scep-static"), true)
	wantPass(t, figure(t, figs, "budget-api-csr"), false) // 62 ms
	if f := figure(t, figs, "budget-api-csr-first"); f.Pass != nil || f.Value == nil || *f.Value != 85 ||
		!strings.Contains(f.Detail, "Graph 31.0 ms") || !strings.Contains(f.Detail, "2.00 Graph call(s)") {
		t.Errorf("a new caller's first request: %+v; want 85 ms with its Graph part and no verdict", f)
	}
	if f := figure(t, figs, "budget-scep-static"); !strings.Contains(f.Detail, "Key Vault 24.0 ms + Table Storage 21.0 ms") {
		t.Errorf("budget detail %q", f.Detail)
	}
	if f := figure(t, figs, "scale-out-4"); f.Value == nil || *f.Value != 170 {
		t.Errorf("scale-out-4 = %v", f.Value)
	}
	// 1,000 × (1 Key Vault op × $0.15/10k + 3 entity ops × $0.00036/10k + $0.40/M + 0.05 s × 2 GB × $0.000026).
	cost := figure(t, figs, "cost-per-1000")
	want := 0.015 + 0.000108 + 0.0004 + 100*0.000026
	if cost.Value == nil || math.Abs(*cost.Value-want) > 1e-9 || !strings.Contains(cost.Detail, "SCEPman") {
		t.Errorf("cost = %v (want %v) %q", cost.Value, want, cost.Detail)
	}
	if f := figure(t, figs, "start-to-ready"); *f.Value != 25 || !strings.Contains(f.Detail, "180 ms") {
		t.Errorf("start-to-ready = %v %q", *f.Value, f.Detail)
	}
	lat := figure(t, figs, "intune-latency")
	for _, want := range []string{"p50 128 ms", "Key Vault 20.5 ms (1.00 calls)", "Intune 101 ms (2.00 calls)", "Table Storage 4.00 ms"} {
		if !strings.Contains(lat.Detail, want) {
			t.Errorf("latency detail %q lacks %q", lat.Detail, want)
		}
	}
	// A figure nobody measured is listed as such, neither passing nor failing.
	if f := figure(t, figs, "csr-local-c8"); f.Value != nil || f.Pass != nil {
		t.Errorf("unmeasured figure = %+v", f)
	}
}

// TestPinnedFigures: the pinned side by side (AZSCEP_BENCH_PIN=1, set by `make bench`) gets its own rows for
// targets 1 and 2, judged on the pinned processes' metrics and never on the shared ones; a run without pinned turns
// lists them as not measured.
func TestPinnedFigures(t *testing.T) {
	run, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	figs := Figures(run)
	vs := figure(t, figs, "peers-ratio-azscep-azurite-pinned")
	if vs.Value == nil || *vs.Value != 1.52 || !strings.Contains(vs.Measure, "pinned") {
		t.Errorf("pinned peer ratio = %+v, want 1.52", vs)
	}
	wantPass(t, vs, true)
	wantPass(t, figure(t, figs, "floor-ratio-azscep-azurite-pinned"), true) // 0.71 ≥ 0.65, where shared is 0.60
	wantPass(t, figure(t, figs, "floor-ratio-azscep-memory-pinned"), false) // 0.84 < 0.85, where shared is 0.88
	d := figure(t, figs, "floor-ratio-azscep-azurite-pinned").Detail
	for _, want := range []string{"which reached 1.01 of the floor): 0.74", "34% busy", "one-CPU floor 137/s"} {
		if !strings.Contains(d, want) {
			t.Errorf("pinned floor detail %q lacks %q", d, want)
		}
	}
	if f := figure(t, figs, "peers-step-ca-v0.30.2-pinned"); f.Value == nil || *f.Value != 62.5 ||
		!strings.Contains(f.Detail, "0.45 of the one-CPU floor") {
		t.Errorf("pinned step-ca figure = %+v", f)
	}
	if f := figure(t, figs, "floor-ratio-azscep-azurite"); strings.Contains(f.Detail, "busy") ||
		strings.Contains(f.Detail, "one-CPU") {
		t.Errorf("the shared row borrowed the pinned run's detail: %q", f.Detail)
	}

	shared, err := Parse(strings.NewReader(regexp.MustCompile(`\s+\S+\s+\S+-pinned-\S+|\s+\S+\s+floor-1cpu-enroll/s`).
		ReplaceAllString(sample, "")))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"peers-ratio-azscep-azurite-pinned", "floor-ratio-azscep-azurite-pinned",
		"floor-ratio-azscep-memory-pinned"} {
		if f := figure(t, Figures(shared), id); f.Value != nil || f.Pass != nil || f.Target == "" {
			t.Errorf("without pinned turns %s = %+v, want not measured beside its target", id, f)
		}
	}
	wantPass(t, figure(t, Figures(shared), "peers-ratio-azscep-azurite"), true)
}

func TestTableAndJSON(t *testing.T) {
	run, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	rep := New(run, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	text := table.String()
	for _, want := range []string{"Key Vault operations per SCEP enrollment", "< 100 ms", "NO", "not measured",
		"failed: --- FAIL: BenchmarkAPICSRLocal/c=8"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Generated  time.Time
		CPU        string
		Figures    []Figure
		Benchmarks []Benchmark
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !back.Generated.Equal(rep.Generated) || back.CPU == "" || len(back.Figures) != len(rep.Figures) ||
		len(back.Benchmarks) != len(run.Benchmarks) {
		t.Fatalf("JSON round trip lost data: %+v", back)
	}
	if f := figure(t, back.Figures, "kv-scep"); f.Value == nil || *f.Value != 1 || f.Target != "1" {
		t.Errorf("kv-scep in JSON = %+v", f)
	}
}

func mustRE(s string) *regexp.Regexp { return regexp.MustCompile(s) }
