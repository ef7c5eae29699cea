package report

import (
	"fmt"
	"math"
	"regexp"
	"strings"
)

// Benchmark names and units the handler's benchmarks report under (handler/bench_test.go). They are the contract
// between the benchmarks and this report.
const (
	BenchSCEPLocal      = "BenchmarkSCEPLocal"      // sub-benchmarks c=1, c=8, c=32: enroll/s, p50-ms, p99-ms
	BenchAPICSRLocal    = "BenchmarkAPICSRLocal"    // same, /api/csr
	BenchPeers          = "BenchmarkPeers"          // <server>-enroll/s, <server>-cpu-ms, azscep-*-vs-peer, -vs-floor, -cpu-vs-floor
	BenchLatencyBudget  = "BenchmarkLatencyBudget"  // scep-static, api-csr: p50-ms, kv-ms, store-ms, other-ms, kv-ops/enroll, table-calls/enroll
	BenchScaleOut       = "BenchmarkScaleOut"       // instances-N-enroll/s
	BenchRSAFloor       = "BenchmarkRSAFloor"       // enroll/s, decrypt-ms, signca-ms, signra-ms
	BenchKeyVaultOps    = "BenchmarkKeyVaultOps"    // scep, csr: kvops/enroll; ocsp: kvops/response
	BenchIntuneWarm     = "BenchmarkIntuneWarm"     // intune-calls/enroll, token-discovery/enroll
	BenchIntuneLatency  = "BenchmarkIntuneLatency"  // p50-ms, p99-ms, kv-ms, intune-ms, store-ms, other-ms, kv-calls/enroll, intune-calls/enroll
	BenchStartToReady   = "BenchmarkStartToReady"   // start-ms (process start → GET / answers), ready-ms
	BenchResidentMemory = "BenchmarkResidentMemory" // idle-MB, peak-MB
	BenchSCEPInProcess  = "BenchmarkSCEPInProcess"  // sub-benchmarks azurite, memstore (profiling): enroll/s, p50-ms, p99-ms

	UnitEnrollPerSec = "enroll/s"
	UnitP50          = "p50-ms"
	UnitP99          = "p99-ms"
)

// Concurrency levels of the load benchmarks.
var Concurrency = []int{1, 8, 32}

// Figures maps a run onto SPEC §6: one row per target, plus the figures behind them.
func Figures(r *Run) []Figure {
	var out []Figure
	add := func(f Figure) { out = append(out, f) }
	val := func(name, unit string) *float64 {
		if v, ok := r.Metric(name, unit); ok {
			return &v
		}
		return nil
	}
	pass := func(v *float64, ok func(float64) bool) *bool {
		if v == nil {
			return nil
		}
		p := ok(*v)
		return &p
	}
	latency := func(name string) string {
		p50, p99 := val(name, UnitP50), val(name, UnitP99)
		if p50 == nil || p99 == nil {
			return ""
		}
		return fmt.Sprintf("p50 %s ms, p99 %s ms", formatValue(*p50), formatValue(*p99))
	}

	// Key Vault and Intune calls.
	for _, kv := range []struct{ sub, measure string }{
		{"scep", "Key Vault operations per SCEP enrollment, steady state (RA envelope mode)"},
		{"csr", "Key Vault operations per /api/csr enrollment"},
	} {
		name := BenchKeyVaultOps + "/" + kv.sub
		v := val(name, "kvops/enroll")
		add(Figure{ID: "kv-" + kv.sub, Measure: kv.measure, Value: v, Unit: "ops", Target: "1",
			Pass: pass(v, func(x float64) bool { return math.Abs(x-1) < 0.01 }), Source: name + " kvops/enroll"})
	}
	ocspName := BenchKeyVaultOps + "/ocsp"
	v := val(ocspName, "kvops/response")
	add(Figure{ID: "kv-ocsp", Measure: "Key Vault operations per OCSP response (amortised)", Value: v, Unit: "ops",
		Target: "0", Pass: pass(v, func(x float64) bool { return x < 0.01 }), Source: ocspName + " kvops/response"})

	calls, side := val(BenchIntuneWarm, "intune-calls/enroll"), val(BenchIntuneWarm, "token-discovery/enroll")
	f := Figure{ID: "intune-warm", Measure: "Intune calls per Intune enrollment, warm", Value: calls, Unit: "calls",
		Target: "2 (validate + notify), no token or discovery call", Source: BenchIntuneWarm + " intune-calls/enroll"}
	if calls != nil && side != nil {
		p := math.Abs(*calls-2) < 0.01 && *side == 0
		f.Pass = &p
		f.Detail = fmt.Sprintf("token + discovery calls per enrollment: %s", formatValue(*side))
	}
	add(f)

	// SCEP throughput with local keys, the RSA floor, and the peers.
	for _, c := range Concurrency {
		name := fmt.Sprintf("%s/c=%d", BenchSCEPLocal, c)
		v := val(name, UnitEnrollPerSec)
		add(Figure{ID: fmt.Sprintf("scep-local-c%d", c), Measure: fmt.Sprintf("SCEP enrollments/s, local keys + Azurite, %d concurrent", c),
			Value: v, Unit: UnitEnrollPerSec, Detail: latency(name), Source: name})
	}
	floor := val(BenchRSAFloor, UnitEnrollPerSec)
	f = Figure{ID: "rsa-floor", Measure: "RSA floor: 3 private-key operations per enrollment, all CPUs", Value: floor,
		Unit: UnitEnrollPerSec, Source: BenchRSAFloor}
	if d, sca, sra := val(BenchRSAFloor, "decrypt-ms"), val(BenchRSAFloor, "signca-ms"), val(BenchRSAFloor, "signra-ms"); d != nil && sca != nil && sra != nil {
		f.Detail = fmt.Sprintf("RA decrypt %s + CA sign %s + RA sign %s ms on one CPU", formatValue(*d), formatValue(*sca), formatValue(*sra))
	}
	add(f)
	peerFigures(r, add)
	budgetFigures(r, add)
	scaleFigures(r, add)
	costFigures(r, add)

	for _, c := range Concurrency {
		name := fmt.Sprintf("%s/c=%d", BenchAPICSRLocal, c)
		add(Figure{ID: fmt.Sprintf("csr-local-c%d", c), Measure: fmt.Sprintf("/api/csr enrollments/s, local keys + Azurite, %d concurrent", c),
			Value: val(name, UnitEnrollPerSec), Unit: UnitEnrollPerSec, Detail: latency(name), Source: name})
	}

	// Latency on the Intune endpoint with slow dependencies.
	f = Figure{ID: "intune-latency", Measure: "Intune enrollment latency (p50), Key Vault +20 ms/call, Intune +50 ms/call",
		Value: val(BenchIntuneLatency, UnitP50), Unit: "ms", Source: BenchIntuneLatency}
	if f.Value != nil {
		parts := []string{latency(BenchIntuneLatency)}
		for _, p := range []struct{ unit, label, calls string }{{"kv-ms", "Key Vault", "kv-calls/enroll"},
			{"intune-ms", "Intune", "intune-calls/enroll"}, {"store-ms", "Table Storage", ""}, {"other-ms", "CPU and HTTP", ""}} {
			if x := val(BenchIntuneLatency, p.unit); x != nil {
				s := fmt.Sprintf("%s %s ms", p.label, formatValue(*x))
				if n := val(BenchIntuneLatency, p.calls); p.calls != "" && n != nil {
					s += fmt.Sprintf(" (%s calls)", formatValue(*n))
				}
				parts = append(parts, s)
			}
		}
		f.Detail = strings.Join(parts, "; ")
	}
	add(f)

	// Process figures.
	start := val(BenchStartToReady, "start-ms")
	f = Figure{ID: "start-to-ready", Measure: "Handler start to answering GET /", Unit: "ms", Target: "< 100 ms",
		Source: BenchStartToReady + " start-ms"}
	if start != nil {
		f.Value, f.Pass = start, pass(start, func(x float64) bool { return x < 100 })
		if r := val(BenchStartToReady, "ready-ms"); r != nil {
			f.Detail = fmt.Sprintf("dependencies built (GET /api/health 200) after %s ms", formatValue(*r))
		}
	}
	add(f)
	idle := val(BenchResidentMemory, "idle-MB")
	add(Figure{ID: "rss-idle", Measure: "Resident memory, idle", Value: idle, Unit: "MB", Target: "< 40 MB",
		Pass: pass(idle, func(x float64) bool { return x < 40 }), Source: BenchResidentMemory + " idle-MB"})
	peak := val(BenchResidentMemory, "peak-MB")
	add(Figure{ID: "rss-load", Measure: "Resident memory, peak under 32 concurrent enrollments", Value: peak, Unit: "MB",
		Target: "< 150 MB", Pass: pass(peak, func(x float64) bool { return x < 150 }), Source: BenchResidentMemory + " peak-MB"})

	// Figures from the other packages' benchmarks.
	f = Figure{ID: "ocsp-cached", Measure: "OCSP responses/s for known serials (cached)", Unit: "responses/s", Target: "≥ 5,000 on 2 cores"}
	if b, ok := r.find("/ocsp", regexp.MustCompile(`^BenchmarkRespondCached$`)); ok {
		if x, has := b.Metrics["responses/s"]; has {
			f.Value, f.Pass, f.Source = &x, pass(&x, func(v float64) bool { return v >= 5000 }), "ocsp "+b.Name
			if b.Procs > 0 {
				f.Detail = fmt.Sprintf("GOMAXPROCS %d", b.Procs)
			}
			if h, ok := r.find("/ocsp", regexp.MustCompile(`^BenchmarkHandlerCachedGET$`)); ok {
				if y, has := h.Metrics["responses/s"]; has {
					f.Detail = strings.TrimPrefix(f.Detail+"; with the HTTP handler: "+formatValue(y)+"/s", "; ")
				}
			}
		}
	}
	add(f)
	f = Figure{ID: "group-commit", Measure: "Table Storage transactions per enrollment, 8 concurrent writers (group commit)",
		Unit: "txn"}
	if b, ok := r.find("/store/tables", regexp.MustCompile(`^BenchmarkGroupCommit$`)); ok {
		if x, has := b.Metrics["txn/enroll"]; has {
			f.Value, f.Source = &x, "tables "+b.Name
			var parts []string
			if ops, has := b.Metrics["ops/enroll"]; has {
				parts = append(parts, formatValue(ops)+" entity operations per enrollment")
			}
			if c, has := b.Metrics["azurite-cpu-ms/enroll"]; has {
				parts = append(parts, "Azurite "+formatValue(c)+" ms of CPU per enrollment, the writers asleep between writes")
			}
			f.Detail = strings.Join(parts, "; ")
		}
	}
	add(f)
	f = Figure{ID: "sync-500", Measure: "Revocation sync of 500 requests against Azurite", Unit: "s", Target: "< 10 s"}
	if b, ok := r.find("/revocation", regexp.MustCompile(`500`)); ok {
		if x, has := b.Metrics["ns/op"]; has {
			s := x / 1e9
			f.Value, f.Pass, f.Source = &s, pass(&s, func(v float64) bool { return v < 10 }), "revocation "+b.Name
		}
	}
	add(f)
	f = Figure{ID: "crl-100k", Measure: "CRL with 100,000 revoked entries", Unit: "s", Target: "generated in < 5 s"}
	if b, ok := r.find("/crl", regexp.MustCompile(`100k`)); ok {
		if x, has := b.Metrics["ns/op"]; has {
			s := x / 1e9
			f.Value, f.Pass, f.Source = &s, pass(&s, func(v float64) bool { return v < 5 }), "crl "+b.Name
		}
	}
	add(f)

	for _, sub := range []string{"azurite", "memstore"} {
		name := BenchSCEPInProcess + "/" + sub
		add(Figure{ID: "scep-inprocess-" + sub, Measure: "SCEP enrollments/s, server in the load generator's process, 8 concurrent, " + sub,
			Value: val(name, UnitEnrollPerSec), Unit: UnitEnrollPerSec, Detail: latency(name), Source: name})
	}
	return out
}
