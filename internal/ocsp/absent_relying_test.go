package ocsp

import (
	"crypto"
	"encoding/base64"
	"math/big"
	"net/url"
	"testing"

	xocsp "golang.org/x/crypto/ocsp"
)

// TestRespond_AbsentSerialRemembered: a request repeated for a serial the store has no record of costs one store
// read and one signature per AbsentTTL, not one each; a serial with a record that is not delivered yet is read every
// time, so its certificate is answered "good" as soon as it is.
func TestRespond_AbsentSerialRemembered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	absent := big.NewInt(0xdead)
	f.src.set(absent, Status{Absent: true})
	req := makeRequest(t, f.ca.cert, absent, crypto.SHA1, nil)
	for range 5 {
		if r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert); r.Status != xocsp.Unknown {
			t.Fatalf("absent serial answered %d, want unknown", r.Status)
		}
	}
	if got, st := f.src.calls.Load(), f.r.Stats(); got != 1 || st.ResponsesSigned != 1 || st.AbsentEntries != 1 || st.CacheEntries != 0 {
		t.Fatalf("5 requests for an absent serial: %d store reads, %+v; want 1 read, 1 signature, kept apart", got, st)
	}
	// Another CertID hash is another response, read for itself; a nonce makes a response of its own, signed from
	// the remembered answer's status without another read.
	mustRespond(t, f.r, makeRequest(t, f.ca.cert, absent, crypto.SHA256, nil))
	mustRespond(t, f.r, makeRequest(t, f.ca.cert, absent, crypto.SHA1, nonceExt(t, []byte("nonce"))))
	if got := f.src.calls.Load(); got != 2 {
		t.Fatalf("store reads = %d, want 2", got)
	}

	f.clock.Advance(AbsentTTL - 1)
	mustRespond(t, f.r, req)
	if got := f.src.calls.Load(); got != 2 {
		t.Fatalf("read again before AbsentTTL: %d reads", got)
	}
	f.clock.Advance(1)
	mustRespond(t, f.r, req)
	if got := f.src.calls.Load(); got != 3 {
		t.Fatalf("not read again after AbsentTTL: %d reads", got)
	}

	// A pending record (not Absent) is unknown now and good the moment its certificate is delivered.
	pending := big.NewInt(0xbeef)
	f.src.set(pending, Status{})
	preq := makeRequest(t, f.ca.cert, pending, crypto.SHA1, nil)
	mustRespond(t, f.r, preq)
	f.src.set(pending, Status{Known: true})
	if r := mustParse(t, mustRespond(t, f.r, preq), f.ca.cert); r.Status != xocsp.Good {
		t.Fatalf("delivered certificate answered %d from a remembered unknown, want good", r.Status)
	}
}

// TestRespond_AbsentSerialsNeverEvictKnown: a flood of distinct serials without records cannot push the cached
// answers for real certificates out.
func TestRespond_AbsentSerialsNeverEvictKnown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{CacheSize: 2048})
	var known []*big.Int
	for i := range 32 {
		s := big.NewInt(int64(1000 + i))
		f.src.set(s, Status{Known: true})
		known = append(known, s)
		mustRespond(t, f.r, makeRequest(t, f.ca.cert, s, crypto.SHA1, nil))
	}
	for i := range 2000 {
		s := big.NewInt(int64(1_000_000 + i))
		f.src.set(s, Status{Absent: true})
		mustRespond(t, f.r, makeRequest(t, f.ca.cert, s, crypto.SHA1, nil))
	}
	reads := f.src.calls.Load()
	for _, s := range known {
		mustRespond(t, f.r, makeRequest(t, f.ca.cert, s, crypto.SHA1, nil))
	}
	if got := f.src.calls.Load() - reads; got != 0 {
		t.Errorf("%d known serials read again after a flood of absent ones", got)
	}
	if n := f.r.Stats().AbsentEntries; n > 2048/8 || n == 0 {
		t.Errorf("absent answers kept: %d, want 1..%d", n, 2048/8)
	}
}

// TestRespond_AbsentDroppedWithResponderKey: a remembered "unknown" is signed by the responder key like every cached
// answer; when that key's certificate is revoked, it is dropped with them.
func TestRespond_AbsentDroppedWithResponderKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	absent := big.NewInt(0xabcdef)
	f.src.set(absent, Status{Absent: true})
	req := makeRequest(t, f.ca.cert, absent, crypto.SHA1, nil)
	first := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	f.r.Invalidate(first.Certificate.SerialNumber)
	second := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	if second.Certificate.SerialNumber.Cmp(first.Certificate.SerialNumber) == 0 {
		t.Fatal("answer signed by the revoked responder certificate served after its revocation")
	}
}

// TestHandler_AbsentAnswerCachedAsLongAsKept: HTTP caches are told to keep an "unknown" for a serial without a
// record no longer than the instance does, from the first answer on.
func TestHandler_AbsentAnswerCachedAsLongAsKept(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	absent := big.NewInt(0x4040)
	f.src.set(absent, Status{Absent: true})
	target := "/api/ocsp/" + url.QueryEscape(base64.StdEncoding.EncodeToString(makeRequest(t, f.ca.cert, absent, crypto.SHA1, nil)))
	h := Handler(f.r)
	for i := range 2 { // signed, then from memory
		if got, want := get(t, h, target, nil).Header().Get("Cache-Control"), "max-age=300, public, no-transform, must-revalidate"; got != want {
			t.Errorf("answer %d: Cache-Control = %q, want %q", i+1, got, want)
		}
	}
	f.clock.Advance(AbsentTTL / 2)
	if got, want := get(t, h, target, nil).Header().Get("Cache-Control"), "max-age=150, public, no-transform, must-revalidate"; got != want {
		t.Errorf("later: Cache-Control = %q, want %q", got, want)
	}
	if f.src.calls.Load() != 1 {
		t.Errorf("store reads = %d, want 1", f.src.calls.Load())
	}
}
