package ocsp

import (
	"crypto"
	"encoding/base64"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

const benchSerials = 1000

func benchResponder(b *testing.B) (*Responder, [][]byte) { return benchResponderWith(b, Options{}) }

func benchResponderWith(b *testing.B, opts Options) (*Responder, [][]byte) {
	ca := newTestCA(b, nil, "bench CA")
	src := newMemStatus()
	opts.Logger = slog.New(slog.DiscardHandler)
	r, err := NewResponder(ca.cert, ca.signer, src, opts) // system clock
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([][]byte, benchSerials)
	for i := range reqs {
		serial := new(big.Int).Lsh(big.NewInt(int64(i+1)), 100) // realistic 13-octet serials
		src.set(serial, Status{Known: true})
		reqs[i] = makeRequest(b, ca.cert, serial, crypto.SHA1, nil)
		if _, err := r.Respond(b.Context(), reqs[i]); err != nil { // warm the cache
			b.Fatal(err)
		}
	}
	return r, reqs
}

// BenchmarkRespondCached measures cached answers for known serials (SPEC §6 target: ≥ 5,000/s on 2 cores),
// from request parsing to response bytes.
func BenchmarkRespondCached(b *testing.B) {
	r, reqs := benchResponder(b)
	signed := r.Stats().ResponsesSigned
	respondParallel(b, r, reqs)
	if r.Stats().ResponsesSigned != signed {
		b.Fatal("benchmark signed responses: cache not hit")
	}
}

// BenchmarkHandlerCachedGET adds the HTTP layer (RFC 5019 GET decoding and caching headers), without sockets.
func BenchmarkHandlerCachedGET(b *testing.B) {
	r, reqs := benchResponder(b)
	h := Handler(r)
	targets := make([]string, len(reqs))
	for i, der := range reqs {
		targets[i] = "/api/ocsp/" + url.QueryEscape(base64.StdEncoding.EncodeToString(der))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, targets[next.Add(1)%benchSerials], nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("HTTP %d", rec.Code)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "responses/s")
}

// respondParallel answers the pre-built requests round-robin from every benchmark goroutine and reports the rate.
func respondParallel(b *testing.B, r *Responder, reqs [][]byte) {
	b.Helper()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Respond(b.Context(), reqs[next.Add(1)%benchSerials]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "responses/s")
}

// BenchmarkRespondNonce measures answers to requests with a nonce, which are signed per request (never cached):
// with the P-256 responder key (under an EC CA) and the RSA-2048 one (under an RSA CA, for RSA-only relying
// parties).
func BenchmarkRespondNonce(b *testing.B) {
	for _, kt := range []struct {
		name string
		key  KeyType
	}{{"p256", KeyP256}, {"rsa2048", KeyRSA2048}} {
		b.Run(kt.name, func(b *testing.B) {
			r, plain := benchResponderWith(b, Options{KeyType: kt.key})
			ca := r.ca
			reqs := make([][]byte, len(plain))
			for i := range reqs {
				serial := new(big.Int).Lsh(big.NewInt(int64(i+1)), 100)
				reqs[i] = makeRequest(b, ca, serial, crypto.SHA1, nonceExt(b, []byte{byte(i), byte(i >> 8), 0x5a}))
			}
			signed := r.Stats().ResponsesSigned
			respondParallel(b, r, reqs)
			if got := r.Stats().ResponsesSigned - signed; got < int64(b.N) {
				b.Fatalf("%d responses signed for %d requests: nonce answers were cached", got, b.N)
			}
		})
	}
}
