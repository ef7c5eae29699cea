package report

import (
	"fmt"
	"math"
	"strings"
)

// Peer names as BenchmarkPeers reports them (metric prefixes).
const (
	PeerAzurite  = "azscep-azurite"
	PeerMemory   = "azscep-memory"
	PeerStepCA   = "step-ca-v0.30.2"
	PeerMicromdm = "micromdm-v2.3.0"
	// PeerFloorHTTP is the stand-in server that does only the floor's private-key operations per request.
	PeerFloorHTTP = "rsa-floor-http"
)

// Placements of the side-by-side run. Shared, every server shares the machine's cores with the load generator and
// Azurite, and its share is of the floor of every core. Pinned (AZSCEP_BENCH_PIN=1, which `make bench` sets on a
// machine with two CPUs or more), a second process of every server runs on a CPU of its own, the load generator and
// Azurite on the other, and its share is of that one CPU's floor: the server has the CPU the floor measures, as in
// Azure, where the clients and Table Storage run elsewhere. BenchmarkPeers reports the pinned processes' metrics
// under the server's name with PinnedSuffix.
const PinnedSuffix = "-pinned"

type placement struct {
	suffix, label string
}

var placements = []placement{
	{"", "shared cores"},
	{PinnedSuffix, "pinned to a CPU of its own"},
}

// peerFigures: issue 13 points 1 and 2, from the side-by-side run, in each placement. The pinned rows are listed
// (as not measured) even when the run had no pinned turns, so that a run without them cannot pass for a whole one.
func peerFigures(r *Run, add func(Figure)) {
	val := func(unit string) *float64 {
		if v, ok := r.Metric(BenchPeers, unit); ok {
			return &v
		}
		return nil
	}
	for _, pl := range placements {
		for _, p := range []struct{ name, measure string }{
			{PeerAzurite, "azscep, local keys + Azurite"}, {PeerMemory, "azscep, local keys + in-memory store"},
			{PeerStepCA, "step-ca v0.30.2 (SCEP provisioner, Badger DB)"}, {PeerMicromdm, "micromdm scepserver v2.3.0 (file depot)"},
		} {
			name := p.name + pl.suffix
			f := Figure{ID: "peers-" + name, Measure: "Side by side (" + pl.label + "), 8 clients, RSA-3072 CA: " + p.measure,
				Value: val(name + "-enroll/s"), Unit: UnitEnrollPerSec, Source: BenchPeers + " " + name + "-enroll/s"}
			details := []string{"median of alternating rounds"}
			if c := val(name + "-cpu-ms"); c != nil {
				details = append(details, fmt.Sprintf("server CPU %s ms per enrollment", formatValue(*c)))
			}
			if s := val(name + "-vs-floor"); s != nil && pl.suffix != "" {
				details = append(details, fmt.Sprintf("%s of the one-CPU floor", formatValue(*s)))
			}
			f.Detail = strings.Join(details, "; ")
			add(f)
		}
		for _, c := range []struct {
			name, measure, target string
			min                   float64
		}{
			{PeerAzurite, "azscep (Azurite) vs the fastest peer, same run", "≥ 1.2", 1.2},
			{PeerMemory, "azscep (in-memory store) vs the fastest peer, same run", "", 0},
		} {
			name := c.name + pl.suffix
			v := val(name + "-vs-peer")
			f := Figure{ID: "peers-ratio-" + name, Measure: c.measure + " (" + pl.label + ")", Value: v, Unit: "ratio",
				Target: c.target, Source: BenchPeers + " " + name + "-vs-peer"}
			if c.min > 0 && v != nil {
				p := *v >= c.min
				f.Pass = &p
			}
			if cpu := val(name + "-cpu-vs-peer"); cpu != nil {
				f.Detail = fmt.Sprintf("by server CPU per enrollment (the store's excluded: in Azure it runs elsewhere): %s×",
					formatValue(*cpu))
			}
			add(f)
		}
		floorName := "the RSA floor measured beside each turn"
		if pl.suffix != "" {
			floorName = "its CPU's RSA floor measured beside each turn"
		}
		for _, c := range []struct {
			name, measure, target string
			min                   float64
		}{
			{PeerAzurite, "azscep (Azurite) enrollments/s as a share of " + floorName, "≥ 0.65", 0.65},
			{PeerMemory, "azscep (in-memory store) enrollments/s as a share of " + floorName, "≥ 0.85", 0.85},
		} {
			name := c.name + pl.suffix
			v := val(name + "-vs-floor")
			f := Figure{ID: "floor-ratio-" + name, Measure: c.measure + " (" + pl.label + ")", Value: v, Unit: "ratio",
				Target: c.target, Source: BenchPeers + " " + name + "-vs-floor"}
			if v != nil {
				p := *v >= c.min
				f.Pass = &p
			}
			f.Detail = floorDetail(val, name, pl.suffix)
			add(f)
		}
	}
}

// floorDetail is what a share of the floor needs beside it to be read: the same share by CPU time, the stand-in's
// share and the server's share of it, and what ran beside the server (the ceiling that leaves on shared cores, or
// how busy the load generator's CPU was when pinned: a busy one would have held the server back).
func floorDetail(val func(string) *float64, name, suffix string) string {
	var details []string
	if cpu := val(name + "-cpu-vs-floor"); cpu != nil {
		details = append(details, fmt.Sprintf("by CPU time per enrollment (server + store process): %s", formatValue(*cpu)))
	}
	if h := val(name + "-vs-http-floor"); h != nil {
		stand := "?"
		if v := val(PeerFloorHTTP + suffix + "-vs-floor"); v != nil {
			stand = formatValue(*v)
		}
		details = append(details, fmt.Sprintf("of the floor over HTTP (a stand-in doing only the floor's "+
			"operations per request, which reached %s of the floor): %s", stand, formatValue(*h)))
	}
	if ceil := val(name + "-ceiling-vs-floor"); ceil != nil {
		details = append(details, fmt.Sprintf("ceiling on this machine (a server doing only the floor's operations, "+
			"beside the load generator and any store process sharing its CPUs): %s", formatValue(*ceil)))
	}
	if f := val("floor-1cpu-enroll/s"); f != nil && suffix != "" {
		details = append(details, fmt.Sprintf("the one-CPU floor %s/s", formatValue(*f)))
	}
	if busy := val(name + "-load-cpu-busy"); busy != nil {
		details = append(details, fmt.Sprintf("the load generator's CPU (with Azurite, for the Azurite variant) "+
			"was %.0f%% busy in these turns", 100**busy))
	}
	return strings.Join(details, "; ")
}

// budgetFigures: issue 13 point 4. A new caller's first /api/csr request (api-csr-first) is reported beside the
// target's two flows, without a verdict: it waits for Graph, which no cache can spare it.
func budgetFigures(r *Run, add func(Figure)) {
	const delays = "Key Vault +20 ms, Table Storage +8 ms and Graph +30 ms per call"
	for _, flow := range []struct{ sub, measure, target string }{
		{"scep-static", "Static SCEP latency, 1 client, " + delays, "p50 ≤ 60 ms"},
		{"api-csr", "/api/csr latency, 1 client, callers whose account and roles are cached, " + delays, "p50 ≤ 60 ms"},
		{"api-csr-first", "/api/csr latency, 1 client, a new caller's first request (account and roles read in Graph), " + delays, ""},
	} {
		name := BenchLatencyBudget + "/" + flow.sub
		v, ok := r.Metric(name, UnitP50)
		f := Figure{ID: "budget-" + flow.sub, Measure: flow.measure, Unit: "ms", Target: flow.target, Source: name}
		if !ok {
			if flow.target != "" {
				add(f)
			}
			continue
		}
		f.Value = &v
		if flow.target != "" {
			p := v <= 60
			f.Pass = &p
		}
		var parts []string
		for _, m := range []struct{ unit, label string }{{"kv-ms", "Key Vault"}, {"store-ms", "Table Storage"},
			{"graph-ms", "Graph"}, {"other-ms", "CPU and HTTP"}} {
			if x, ok := r.Metric(name, m.unit); ok {
				parts = append(parts, fmt.Sprintf("%s %s ms", m.label, formatValue(x)))
			}
		}
		kv, _ := r.Metric(name, "kv-ops/enroll")
		tc, _ := r.Metric(name, "table-calls/enroll")
		p99, _ := r.Metric(name, UnitP99)
		f.Detail = fmt.Sprintf("mean = %s; %s Key Vault operation(s) and %s Table Storage call(s) per enrollment",
			strings.Join(parts, " + "), formatValue(kv), formatValue(tc))
		if gc, ok := r.Metric(name, "graph-calls/enroll"); ok {
			f.Detail += fmt.Sprintf(", %s Graph call(s)", formatValue(gc))
		}
		f.Detail += "; p99 " + formatValue(p99) + " ms"
		add(f)
	}
}

// scaleFigures: issue 13 point 5 (throughput; correctness is TestScaleOut).
func scaleFigures(r *Run, add func(Figure)) {
	for _, n := range []int{1, 2, 4} {
		unit := fmt.Sprintf("instances-%d-enroll/s", n)
		f := Figure{ID: fmt.Sprintf("scale-out-%d", n), Unit: UnitEnrollPerSec, Source: BenchScaleOut + " " + unit,
			Measure: fmt.Sprintf("SCEP enrollments/s, %d instance(s) behind a round-robin proxy on one Azurite, 8 clients", n),
			Detail:  "no errors, no serial delivered twice (the benchmark fails otherwise); same 2 cores for every count"}
		if v, ok := r.Metric(BenchScaleOut, unit); ok {
			f.Value = &v
		}
		add(f)
	}
}

// Azure list prices used for the cost per 1,000 enrollments (USD, pay-as-you-go, East US). They are written down
// here, not fetched: nothing in `make bench` reaches the network. They were taken from the public pricing pages
// below as of 2025 and may have changed; check before quoting.
const (
	// https://azure.microsoft.com/pricing/details/key-vault/ — RSA 3072/4096 keys ("advanced key" operations), the
	// same per-operation price in the Standard (software) and Premium (HSM) tiers; HSM keys add a monthly fee.
	priceKeyVaultPer10k = 0.15
	// https://azure.microsoft.com/pricing/details/storage/tables/ — Standard LRS, "storage transactions", per
	// 10,000. Counted per entity operation: a two-entity transaction is counted as two (the higher reading).
	priceTablePer10k = 0.00036
	// https://azure.microsoft.com/pricing/details/functions/ — Flex Consumption, on demand: executions per
	// million, execution time per GB-s of instance memory: 2,048 MB, the size infra/main.bicep deploys by default
	// (instanceMemoryMB; the size also sets an instance's share of CPU).
	priceFlexPerMillion = 0.40
	priceFlexPerGBs     = 0.000026
	flexInstanceGB      = 2.0
	// https://azure.microsoft.com/pricing/details/app-service/linux/ — App Service Linux, per month (730 h).
	priceAppServiceS1   = 69.35
	priceAppServiceP1V3 = 124.10
	// https://docs.scepman.com/scepman-deployment/azure-sizing — SCEPman's published sizing: 1 × S1 for fewer
	// than 2,000 clients, 1 × P1V3 (about 400 ACU) for fewer than 10,000 (twice that for the redundant design).
)

// costFigures: issue 13 point 6. The operation counts are the measured ones (Key Vault operations and Table
// Storage calls per static SCEP enrollment from BenchmarkLatencyBudget; one Functions execution per enrollment);
// the billed execution time is the p50 latency at one client with production-like latencies, on the default
// 2,048 MB instance, as if nothing ran concurrently (Flex bills instance memory while at least one execution runs, so
// concurrency only lowers it).
func costFigures(r *Run, add func(Figure)) {
	name := BenchLatencyBudget + "/scep-static"
	kv, okKV := r.Metric(name, "kv-ops/enroll")
	calls, okT := r.Metric(name, "table-calls/enroll")
	p50, okL := r.Metric(name, UnitP50)
	f := Figure{ID: "cost-per-1000", Measure: "Azure cost per 1,000 SCEP enrollments (list prices in the detail)",
		Unit: "USD", Source: name + " kv-ops/enroll, table-calls/enroll, p50-ms"}
	if okKV && okT && okL {
		entityOps := calls + 1 // the pending record and its key's claim are one transaction of two entities
		kvCost := 1000 * kv * priceKeyVaultPer10k / 1e4
		tableCost := 1000 * entityOps * priceTablePer10k / 1e4
		execCost := 1000 * priceFlexPerMillion / 1e6
		gbs := 1000 * p50 / 1000 * flexInstanceGB
		timeCost := gbs * priceFlexPerGBs
		total := kvCost + tableCost + execCost + timeCost
		f.Value = &total
		f.Detail = fmt.Sprintf("Key Vault %s ops × $%.2f/10k = $%.4f; Table Storage %s entity ops × $%.5f/10k = $%.5f; "+
			"Functions 1,000 executions × $%.2f/M = $%.4f + %s GB-s (%s ms × %.1f GB) × $%.6f = $%.4f. "+
			"SCEPman (App Service, fixed): 1 × S1 $%.2f/month for < 2,000 clients = $%.2f per 1,000 enrollments at one "+
			"enrollment per client per month; 1 × P1V3 $%.2f/month for < 10,000 clients = $%.2f per 1,000",
			formatValue(1000*kv), priceKeyVaultPer10k, kvCost, formatValue(1000*entityOps), priceTablePer10k, tableCost,
			priceFlexPerMillion, execCost, formatValue(math.Round(gbs*10)/10), formatValue(p50), flexInstanceGB,
			priceFlexPerGBs, timeCost, priceAppServiceS1, priceAppServiceS1/2, priceAppServiceP1V3, priceAppServiceP1V3/10)
	}
	add(f)
}
