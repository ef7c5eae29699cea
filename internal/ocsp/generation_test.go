package ocsp

import (
	"context"
	"crypto"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// memGeneration is a GenerationSource that counts its reads. It remembers the last `history` revocations.
type memGeneration struct {
	mu      sync.Mutex
	gen     uint64
	revoked []*big.Int // revoked[i] was revoked at generation i+1
	history int        // 0 = unlimited
	err     error
	reads   atomic.Int64
}

func (g *memGeneration) RevokedSince(_ context.Context, after uint64) (uint64, []*big.Int, bool, error) {
	g.reads.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, nil, false, g.err
	}
	if g.history > 0 && g.gen-after > uint64(g.history) {
		return g.gen, nil, false, nil
	}
	return g.gen, append([]*big.Int(nil), g.revoked[after:]...), true, nil
}

// bump records a revocation made elsewhere.
func (g *memGeneration) bump(serial *big.Int) {
	g.mu.Lock()
	g.gen++
	g.revoked = append(g.revoked, serial)
	g.mu.Unlock()
}

func (g *memGeneration) setErr(err error) {
	g.mu.Lock()
	g.err = err
	g.mu.Unlock()
}

// TestGenerationBoundsStaleness: a revocation made elsewhere (the store changes and the generation is bumped,
// but this responder's Invalidate is never called) is answered within GenerationInterval. The generation is read
// at most once per interval, however many requests arrive, and not at all while it is fresh.
func TestGenerationBoundsStaleness(t *testing.T) {
	f, gen, serial, status := goodUnderGeneration(t, big.NewInt(0x5C01))
	for range 100 {
		status()
	}
	if n := gen.reads.Load(); n != 1 {
		t.Fatalf("generation reads for 101 requests inside one interval = %d, want 1", n)
	}
	lookups := f.src.calls.Load()

	// Another instance revokes: the store says revoked and the generation moves on.
	other := big.NewInt(0x5C09)
	f.src.set(other, Status{Known: true})
	otherReq := makeRequest(t, f.ca.cert, other, crypto.SHA1, nil)
	mustRespond(t, f.r, otherReq)
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: f.clock.Now(), Reason: 1})
	gen.bump(serial)
	f.clock.Advance(29 * time.Second)
	if status() != xocsp.Good {
		t.Fatal("the cached answer was dropped before the interval: the generation was read per request")
	}
	f.clock.Advance(2 * time.Second)
	if status() != xocsp.Revoked {
		t.Fatal("still good one interval after a revocation elsewhere")
	}
	if n := gen.reads.Load(); n != 2 {
		t.Errorf("generation reads = %d, want 2", n)
	}
	if n := f.src.calls.Load(); n != lookups+2 {
		t.Errorf("status lookups = %d, want 2 (the other serial once, the revoked one after the bump)", n-lookups)
	}
	// Only the revoked serial was dropped: the other one is still answered from the cache.
	lookups = f.src.calls.Load()
	mustRespond(t, f.r, otherReq)
	if f.src.calls.Load() != lookups {
		t.Error("a revocation elsewhere dropped the cached answer of another serial")
	}
	if f.r.Stats().GenerationReads != 2 {
		t.Errorf("Stats().GenerationReads = %d", f.r.Stats().GenerationReads)
	}

	// An unchanged generation keeps the cache.
	f.clock.Advance(31 * time.Second)
	lookups = f.src.calls.Load()
	status()
	if f.src.calls.Load() != lookups {
		t.Error("an unchanged generation dropped the cache")
	}
}

// TestGenerationTooFarBehind: when more serials were revoked than the generation's history names, the whole cache
// is dropped.
func TestGenerationTooFarBehind(t *testing.T) {
	gen := &memGeneration{history: 2}
	f := newFixture(t, Options{Generation: gen, GenerationInterval: 30 * time.Second})
	serial := big.NewInt(0x5C03)
	f.src.set(serial, Status{Known: true})
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	mustRespond(t, f.r, req)
	for i := range 3 {
		gen.bump(big.NewInt(int64(0x7000 + i)))
	}
	f.clock.Advance(31 * time.Second)
	lookups := f.src.calls.Load()
	mustRespond(t, f.r, req)
	// Two reads: the responder's own certificate (it may be among the revocations no longer named), and the
	// request's serial, whose cached answer was dropped.
	if f.src.calls.Load() != lookups+2 {
		t.Errorf("%d status reads, want 2: the cache survived a generation gap larger than the history", f.src.calls.Load()-lookups)
	}
}

// TestGenerationTooFarBehindDropsARevokedResponder: this instance's responder certificate was revoked elsewhere,
// and so many revocations followed that the generation no longer names it. The responder asks the store about its
// own certificate and stops signing with it (nocheck: relying parties never see that revocation).
func TestGenerationTooFarBehindDropsARevokedResponder(t *testing.T) {
	gen := &memGeneration{history: 2}
	f := newFixture(t, Options{Generation: gen, GenerationInterval: 30 * time.Second})
	serial := big.NewInt(0x5C04)
	f.src.set(serial, Status{Known: true})
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	first := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	responder := first.Certificate.SerialNumber
	f.src.set(responder, Status{Known: true, Revoked: true, RevokedAt: f.clock.Now(), Reason: 1})
	gen.bump(responder)
	for i := range 3 {
		gen.bump(big.NewInt(int64(0x7100 + i)))
	}
	f.clock.Advance(31 * time.Second)
	next := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	if next.Certificate == nil || next.Certificate.SerialNumber.Cmp(responder) == 0 {
		t.Fatalf("still signed by the revoked responder %X", responder)
	}
}

// TestGenerationUnreadableBypassesCache: while the generation cannot be read, cached answers are not served
// (they could be older than the bound); answers come from the status source, and the cache is used again once
// the generation reads.
func TestGenerationUnreadableBypassesCache(t *testing.T) {
	gen := &memGeneration{}
	f := newFixture(t, Options{Generation: gen, GenerationInterval: 30 * time.Second})
	serial := big.NewInt(0x5C02)
	f.src.set(serial, Status{Known: true})
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	mustRespond(t, f.r, req)

	gen.setErr(errStoreDown)
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: f.clock.Now(), Reason: 1})
	f.clock.Advance(31 * time.Second)
	if st := mustParse(t, mustRespond(t, f.r, req), f.ca.cert).Status; st != xocsp.Revoked {
		t.Fatalf("status with an unreadable generation = %d, want the store's answer (revoked)", st)
	}
	f.src.setErr(errStoreDown)
	if _, err := f.r.Respond(context.Background(), req); err == nil {
		t.Fatal("store and generation down: a cached answer was served")
	}
	// Back: the answer read from the store during the outage is the one cached.
	gen.setErr(nil)
	f.src.setErr(nil)
	lookups := f.src.calls.Load()
	if st := mustParse(t, mustRespond(t, f.r, req), f.ca.cert).Status; st != xocsp.Revoked {
		t.Errorf("status after recovery = %d, want revoked", st)
	}
	if n := f.src.calls.Load() - lookups; n != 0 {
		t.Errorf("lookups after recovery = %d, want 0 (cached)", n)
	}
}

// BenchmarkRespondCachedWithGeneration is BenchmarkRespondCached with the revocation generation followed: the
// hot path adds one atomic load; the generation is read once per interval.
func BenchmarkRespondCachedWithGeneration(b *testing.B) {
	r, reqs := benchResponderWith(b, Options{Generation: &memGeneration{}})
	respondParallel(b, r, reqs)
}

// BenchmarkFreshnessCost simulates one hour of one instance answering benchSerials certificates, each asked for
// every 10 s (360,000 requests), under the two ways of bounding staleness to five minutes: the revocation
// generation (1 h responses, generation read every 30 s) or a 5-minute response validity (re-signed one minute
// before nextUpdate, no generation). It reports store reads and signatures per hour; one variant has another
// instance revoke one of the serials every minute.
func BenchmarkFreshnessCost(b *testing.B) {
	for _, c := range []struct {
		name    string
		opts    func() Options
		revokes bool // another instance revokes one of the serials every minute
	}{
		{"generation-30s", func() Options { return Options{Generation: &memGeneration{}, GenerationInterval: 30 * time.Second} }, false},
		{"generation-30s-60-revocations", func() Options { return Options{Generation: &memGeneration{}, GenerationInterval: 30 * time.Second} }, true},
		{"validity-5m", func() Options {
			return Options{ResponseValidity: 5 * time.Minute, CacheMargin: time.Minute, ResponderCertValidity: 48 * time.Hour}
		}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				opts := c.opts()
				f := newFixture(b, opts)
				reqs := make([][]byte, benchSerials)
				for i := range reqs {
					serial := new(big.Int).Lsh(big.NewInt(int64(i+1)), 100)
					f.src.set(serial, Status{Known: true})
					reqs[i] = makeRequest(b, f.ca.cert, serial, crypto.SHA1, nil)
				}
				const step = 10 * time.Second
				for tick := time.Duration(0); tick < time.Hour; tick += step {
					for i := range reqs {
						if _, err := f.r.Respond(context.Background(), reqs[i]); err != nil {
							b.Fatal(err)
						}
					}
					f.clock.Advance(step)
					if g, ok := opts.Generation.(*memGeneration); ok && c.revokes && f.clock.Now().Second() == 0 {
						g.bump(new(big.Int).Lsh(big.NewInt(int64(len(g.revoked)+1)), 100))
					}
				}
				st := f.r.Stats()
				b.ReportMetric(float64(f.src.calls.Load()+st.GenerationReads), "store-reads/h")
				b.ReportMetric(float64(st.ResponsesSigned), "signatures/h")
			}
		})
	}
}

// TestGenerationAfterClockStepsBack: the age of the last generation read is a duration, not a comparison of wall
// clock readings. When the wall clock steps back (an NTP correction, a resumed VM), the last read is not "younger
// than the interval" for as long as the step: a revocation elsewhere must still be answered once the interval has
// passed, not the step later. A clock that reads earlier than the last read cannot tell its age, so it is read again.
func TestGenerationAfterClockStepsBack(t *testing.T) {
	f, gen, serial, status := goodUnderGeneration(t, big.NewInt(0x5C11))

	// Another instance revokes; this instance's wall clock is stepped back two minutes meanwhile.
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: f.clock.Now(), Reason: 1})
	gen.bump(serial)
	f.clock.Advance(-2 * time.Minute)
	f.clock.Advance(31 * time.Second)
	if got := status(); got != xocsp.Revoked {
		t.Fatalf("status %d after a revocation elsewhere and a clock stepped back: the cached good answer was served "+
			"without reading the generation (reads %d)", got, gen.reads.Load())
	}
}

// goodUnderGeneration is a responder whose revocation generation (gen) is read at most every 30 s, answering good
// for serial; status asks it about serial again.
func goodUnderGeneration(t *testing.T, serial *big.Int) (f *fixture, gen *memGeneration, _ *big.Int, status func() int) {
	t.Helper()
	gen = &memGeneration{}
	f = newFixture(t, Options{Generation: gen, GenerationInterval: 30 * time.Second})
	f.src.set(serial, Status{Known: true})
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	status = func() int { return mustParse(t, mustRespond(t, f.r, req), f.ca.cert).Status }
	if status() != xocsp.Good {
		t.Fatal("not good before the revocation")
	}
	return f, gen, serial, status
}
