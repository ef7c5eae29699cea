package main

import (
	"testing"
	"time"

	"github.com/azscep/azscep/internal/loadgen"
)

// Production-like latencies of issue 13's latency budget: a Key Vault call from a Flex instance in the same
// region, and a Table Storage round trip.
const (
	benchKVLatency    = 20 * time.Millisecond
	benchTableLatency = 8 * time.Millisecond
)

// BenchmarkLatencyBudget: one client enrolling on the static SCEP endpoint and on /api/csr (azure mode: CA key in
// the Key Vault fake, RA key unwrapped once at start, records on Azurite) while every Key Vault call takes 20 ms
// more and every Table Storage call 8 ms more. It reports p50/p99 and splits the mean enrollment into Key Vault,
// Table Storage and the rest (CPU, HTTP), with the operation counts behind them, which the report also prices
// (cost per 1,000 enrollments). Each /api/csr request comes from a new user, so each pays the account read in
// Graph (graph-calls/enroll); the Graph fake answers on loopback, and issue 13's budget adds no latency for it.
func BenchmarkLatencyBudget(b *testing.B) {
	e := newBenchAzureEnvWith(b, benchTableLatency)
	e.kv.SetLatency("", benchKVLatency)
	for _, flow := range []struct {
		name  string
		build func(b *testing.B, n int) []loadgen.Request
	}{
		{"scep-static", func(b *testing.B, n int) []loadgen.Request { return e.scepRequests(b, fxEndpointStatic, n) }},
		{"api-csr", func(b *testing.B, n int) []loadgen.Request {
			reqs := make([]loadgen.Request, n)
			for i := range reqs {
				reqs[i] = e.csrRequest(b).Request
			}
			return reqs
		}},
	} {
		b.Run(flow.name, func(b *testing.B) {
			b.StopTimer()
			e.run(b, 1, flow.build(b, 1)) // warm: connections, caches
			reqs := flow.build(b, b.N)
			kvOps, kvNanos := e.kv.Total(), e.tap.nanos.Load()
			tCalls, tNanos := e.tables.calls.Load(), e.tables.nanos.Load()
			gCalls := len(e.entra.graph.Requests())
			b.StartTimer()
			res := e.run(b, 1, reqs)
			b.StopTimer()
			n := float64(res.Sent)
			kv := float64(e.tap.nanos.Load()-kvNanos) / n / 1e6
			st := float64(e.tables.nanos.Load()-tNanos) / n / 1e6
			reportLoad(b, res)
			b.ReportMetric(kv, "kv-ms")
			b.ReportMetric(st, "store-ms")
			b.ReportMetric(ms(res.Mean())-kv-st, "other-ms")
			b.ReportMetric(float64(e.kv.Total()-kvOps)/n, "kv-ops/enroll")
			b.ReportMetric(float64(e.tables.calls.Load()-tCalls)/n, "table-calls/enroll")
			b.ReportMetric(float64(len(e.entra.graph.Requests())-gCalls)/n, "graph-calls/enroll")
		})
	}
}
