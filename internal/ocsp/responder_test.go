package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
)

func TestRespond_Statuses(t *testing.T) {
	t.Parallel()
	revokedAt := time.Date(2026, 2, 20, 10, 11, 12, 0, time.UTC)
	tests := []struct {
		name       string
		status     *Status // nil: not in the source
		hash       crypto.Hash
		wantStatus int
		wantReason int
	}{
		{"ok/good sha1", &Status{Known: true}, crypto.SHA1, xocsp.Good, 0},
		{"ok/good sha256", &Status{Known: true}, crypto.SHA256, xocsp.Good, 0},
		{"ok/revoked keyCompromise", &Status{Known: true, Revoked: true, RevokedAt: revokedAt, Reason: xocsp.KeyCompromise}, crypto.SHA1, xocsp.Revoked, xocsp.KeyCompromise},
		{"ok/revoked cessation sha384", &Status{Known: true, Revoked: true, RevokedAt: revokedAt, Reason: xocsp.CessationOfOperation}, crypto.SHA384, xocsp.Revoked, xocsp.CessationOfOperation},
		{"ok/revoked unspecified", &Status{Known: true, Revoked: true, RevokedAt: revokedAt}, crypto.SHA512, xocsp.Revoked, xocsp.Unspecified},
		{"ok/unknown", nil, crypto.SHA1, xocsp.Unknown, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Options{})
			serial := big.NewInt(0x1234567890)
			if tt.status != nil {
				f.src.set(serial, *tt.status)
			}
			der := mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, tt.hash, nil))
			resp := mustParse(t, der, f.ca.cert)

			if resp.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.Status, tt.wantStatus)
			}
			if resp.SerialNumber.Cmp(serial) != 0 {
				t.Errorf("serial = %x", resp.SerialNumber)
			}
			if resp.IssuerHash != tt.hash {
				t.Errorf("CertID hash = %v, want the request's %v", resp.IssuerHash, tt.hash)
			}
			if tt.wantStatus == xocsp.Revoked {
				if !resp.RevokedAt.Equal(revokedAt) || resp.RevocationReason != tt.wantReason {
					t.Errorf("revoked at %v reason %d, want %v %d", resp.RevokedAt, resp.RevocationReason, revokedAt, tt.wantReason)
				}
			}
			now := f.clock.Now()
			if !resp.ThisUpdate.Equal(now.Add(-DefaultBackdate)) || !resp.NextUpdate.Equal(now.Add(DefaultResponseValidity)) || !resp.ProducedAt.Equal(now) {
				t.Errorf("times = produced %v this %v next %v; want %v, −5m and +1h", resp.ProducedAt, resp.ThisUpdate, resp.NextUpdate, now)
			}
			if resp.Certificate == nil {
				t.Fatal("responder certificate not included")
			}
			if err := resp.Certificate.CheckSignatureFrom(f.ca.cert); err != nil {
				t.Errorf("responder certificate not signed by the CA: %v", err)
			}
			// ResponderID byKey: SHA-1 of the responder's public key bits.
			if want := sha1.Sum(issuerKeyBits(t, resp.Certificate)); !bytes.Equal(resp.ResponderKeyHash, want[:]) {
				t.Errorf("ResponderKeyHash = %x, want %x", resp.ResponderKeyHash, want)
			}
			if resp.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("signature algorithm = %v", resp.SignatureAlgorithm)
			}
			if len(responseExtensions(t, der)) != 0 {
				t.Error("response without a nonce request carries response extensions")
			}
		})
	}
}

func TestRespond_ResponderCertificate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	resp := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, big.NewInt(7), crypto.SHA1, nil)), f.ca.cert)
	c := resp.Certificate
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
		t.Errorf("EKU = %v, want exactly OCSPSigning", c.ExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage = %v", c.KeyUsage)
	}
	if c.IsCA || !c.BasicConstraintsValid {
		t.Error("responder certificate must be a non-CA certificate")
	}
	var nocheck bool
	for _, ext := range c.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}) {
			nocheck = true
			if !bytes.Equal(ext.Value, []byte{0x05, 0x00}) || ext.Critical {
				t.Errorf("nocheck extension = %x critical=%v, want non-critical NULL", ext.Value, ext.Critical)
			}
		}
	}
	if !nocheck {
		t.Error("id-pkix-ocsp-nocheck missing")
	}
	now := f.clock.Now()
	if !c.NotBefore.Before(now) || !c.NotAfter.Equal(now.Add(DefaultResponderCertValidity)) {
		t.Errorf("validity %v – %v, want around %v + 48h", c.NotBefore, c.NotAfter, now)
	}
	if !bytes.Equal(c.AuthorityKeyId, f.ca.cert.SubjectKeyId) || c.Subject.CommonName != "azscep test CA OCSP Responder" {
		t.Errorf("AKI %x / subject %q", c.AuthorityKeyId, c.Subject.CommonName)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 128 {
		t.Errorf("serial %x too small", c.SerialNumber)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("responder key %T, want ECDSA by default", c.PublicKey)
	}
	// The responder certificate chains to the CA for OCSP signing.
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}}); err != nil {
		t.Errorf("responder certificate does not verify for OCSPSigning: %v", err)
	}
}

// TestRespond_NonceEchoedAndNotCached: each request with a nonce gets a response of its own, echoing its nonce and
// never cached or shared; its status comes from the answer a request without a nonce gets, read from the store once
// and cached, so that nonces are no way past the cache to the store; a revocation reaches the next nonce answer.
func TestRespond_NonceEchoedAndNotCached(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(42)
	f.src.set(serial, Status{Known: true})
	seen := map[string]bool{}
	for i, nonce := range [][]byte{bytes.Repeat([]byte{0xA5}, 16), {0x01}, bytes.Repeat([]byte{0x5A}, 32)} {
		ext := nonceExt(t, nonce)
		der := mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA1, ext))
		resp := mustParse(t, der, f.ca.cert)
		if resp.Status != xocsp.Good {
			t.Fatalf("status %d", resp.Status)
		}
		exts := responseExtensions(t, der)
		if len(exts) != 1 || !exts[0].Id.Equal(oidNonce) || !bytes.Equal(exts[0].Value, ext) || exts[0].Critical {
			t.Fatalf("nonce %d: responseExtensions = %+v, want the request's nonce %x", i, exts, ext)
		}
		if len(resp.Extensions) != 0 {
			t.Error("nonce placed in singleExtensions")
		}
		seen[string(der)] = true
	}
	// Three nonce answers and the shared one they took their status from; one store read.
	st := f.r.Stats()
	if len(seen) != 3 || st.ResponsesSigned != 4 || st.CacheEntries != 1 || f.src.calls.Load() != 1 {
		t.Errorf("nonce answers: %d distinct, %+v, lookups %d; want 3, 4 signed, 1 cached, 1 lookup", len(seen), st, f.src.calls.Load())
	}
	// What is cached is the shared answer, without a nonce.
	if exts := responseExtensions(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil))); len(exts) != 0 ||
		f.r.Stats().ResponsesSigned != 4 {
		t.Errorf("the request without a nonce: responseExtensions %+v, %d signed; want the cached answer", exts, f.r.Stats().ResponsesSigned)
	}
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: time.Now().Add(-time.Minute), Reason: xocsp.KeyCompromise})
	f.r.Invalidate(serial)
	if r := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nonceExt(t, []byte{0x02}))), f.ca.cert); r.Status != xocsp.Revoked {
		t.Errorf("nonce answer after a revocation: status %d, want revoked", r.Status)
	}
}

func TestRespond_BadNonceIsMalformed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	for name, ext := range map[string][]byte{
		"too long":         nonceExt(t, make([]byte, 33)),
		"empty":            nonceExt(t, []byte{}),
		"not octet string": {0x02, 0x01, 0x05},
		"trailing":         append(nonceExt(t, []byte{1, 2, 3}), 0x00),
	} {
		resp, err := f.r.Respond(t.Context(), makeRequest(t, f.ca.cert, big.NewInt(1), crypto.SHA1, ext))
		if !errors.Is(err, ErrMalformedRequest) || !bytes.Equal(resp, xocsp.MalformedRequestErrorResponse) {
			t.Errorf("%s: err = %v, resp %x; want malformedRequest", name, err, resp)
		}
	}
}

func TestRespond_CachedResponsesAreNotResigned(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(1001)
	f.src.set(serial, Status{Known: true})
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	first := mustRespond(t, f.r, req)
	for range 100 {
		f.clock.Advance(10 * time.Second)
		if got := mustRespond(t, f.r, req); !bytes.Equal(got, first) {
			t.Fatal("cached response changed")
		}
	}
	st := f.r.Stats()
	if st.ResponsesSigned != 1 || st.CacheHits != 100 || st.CacheMisses != 1 {
		t.Errorf("stats = %+v, want 1 signature, 100 hits", st)
	}
	if got := f.src.calls.Load(); got != 1 {
		t.Errorf("status lookups = %d, want 1", got)
	}
	if got := f.ca.signer.Calls(); got != 1 {
		t.Errorf("CA signer calls = %d, want 1 (the responder certificate)", got)
	}

	// A different CertID hash is a different cached response (CertIDs must match byte for byte).
	resp256 := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA256, nil)), f.ca.cert)
	if resp256.IssuerHash != crypto.SHA256 {
		t.Error("SHA-256 request answered from the SHA-1 cache entry")
	}
}

func TestRespond_CacheRefreshedBeforeNextUpdate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{ResponseValidity: time.Hour, CacheMargin: 10 * time.Minute})
	serial := big.NewInt(5)
	f.src.set(serial, Status{Known: true})
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	first := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)

	f.clock.Advance(50*time.Minute - time.Second)
	if r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert); !r.ThisUpdate.Equal(first.ThisUpdate) {
		t.Fatal("refreshed before the cache margin")
	}
	f.clock.Advance(time.Second)
	second := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	if !second.ProducedAt.Equal(f.clock.Now()) {
		t.Fatalf("not refreshed %v before nextUpdate: producedAt %v", 10*time.Minute, second.ProducedAt)
	}
	if f.r.Stats().ResponsesSigned != 2 {
		t.Errorf("signatures = %d, want 2", f.r.Stats().ResponsesSigned)
	}
}

func TestRespond_InvalidateAfterRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(99)
	f.src.set(serial, Status{Known: true})
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	if r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert); r.Status != xocsp.Good {
		t.Fatal("not good")
	}
	revokedAt := f.clock.Now().Add(time.Minute).Truncate(time.Second)
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: revokedAt, Reason: xocsp.Superseded})
	// Still cached until invalidated.
	if r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert); r.Status != xocsp.Good {
		t.Fatal("cache not used")
	}
	f.r.Invalidate(serial)
	r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	if r.Status != xocsp.Revoked || r.RevocationReason != xocsp.Superseded || !r.RevokedAt.Equal(revokedAt) {
		t.Fatalf("after Invalidate: status %d reason %d at %v", r.Status, r.RevocationReason, r.RevokedAt)
	}
	f.r.Invalidate(nil) // tolerated
}

func TestRespond_InvalidateDuringLookupIsNotCachedStale(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(123)
	f.src.set(serial, Status{Known: true})
	f.src.gate = make(chan struct{})
	f.src.started = make(chan struct{}, 4)
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)

	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := f.r.Respond(context.Background(), req); err != nil {
			t.Error(err)
		}
	}()
	await(t, f.src.started) // lookup read "good"
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: f.clock.Now(), Reason: 1})
	f.r.Invalidate(serial)
	close(f.src.gate)
	<-done

	if r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert); r.Status != xocsp.Revoked {
		t.Fatal("a lookup that raced Invalidate left a stale good response in the cache")
	}
}

// A request that arrives after Invalidate does not join a lookup that started before it: that lookup may have read
// the certificate good, and sharing its answer would tell this request good after the revocation.
func TestRespond_RequestAfterInvalidateDoesNotJoinEarlierLookup(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(321)
	f.src.set(serial, Status{Known: true})
	f.src.gate = make(chan struct{})
	f.src.started = make(chan struct{}, 4)
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)

	first := make(chan struct{})
	go func() {
		defer close(first)
		if _, err := f.r.Respond(context.Background(), req); err != nil {
			t.Error(err)
		}
	}()
	await(t, f.src.started) // the first lookup read "good"
	f.src.set(serial, Status{Known: true, Revoked: true, RevokedAt: f.clock.Now(), Reason: 1})
	f.r.Invalidate(serial)
	var second []byte
	secondDone := make(chan struct{})
	go func() {
		defer close(secondDone)
		var err error
		if second, err = f.r.Respond(context.Background(), req); err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.r.Stats().CacheMisses < 2 { // the second request is past the cache, at the lookup
		if time.Now().After(deadline) {
			t.Fatal("the second request never reached the lookup")
		}
		runtime.Gosched()
	}
	close(f.src.gate)
	<-first
	<-secondDone
	if r := mustParse(t, second, f.ca.cert); r.Status != xocsp.Revoked {
		t.Fatal("a request made after Invalidate got the answer of a lookup started before it: good")
	}
}

func TestRespond_ConcurrentMissesShareOneLookup(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(555)
	f.src.set(serial, Status{Known: true})
	f.src.gate = make(chan struct{})
	f.src.started = make(chan struct{}, 64)
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)

	var wg sync.WaitGroup
	results := make([][]byte, 32)
	for i := range results {
		wg.Go(func() {
			resp, err := f.r.Respond(t.Context(), req)
			if err != nil {
				t.Error(err)
			}
			results[i] = resp
		})
	}
	await(t, f.src.started)
	deadline := time.Now().Add(10 * time.Second)
	for f.r.Stats().CacheMisses < int64(len(results)) { // let every caller reach the shared lookup
		if time.Now().After(deadline) {
			t.Fatal("callers never reached the lookup")
		}
		time.Sleep(time.Millisecond)
	}
	close(f.src.gate)
	wg.Wait()
	for _, r := range results {
		if !bytes.Equal(r, results[0]) {
			t.Fatal("concurrent callers got different responses")
		}
	}
	if got := f.src.calls.Load(); got != 1 {
		t.Errorf("lookups = %d, want 1", got)
	}
	if st := f.r.Stats(); st.ResponsesSigned != 1 || f.ca.signer.Calls() != 1 {
		t.Errorf("signatures = %d, CA signatures = %d; want 1 and 1", st.ResponsesSigned, f.ca.signer.Calls())
	}
}

func TestRespond_ImpossibleSerialsAreUnknownWithoutLookup(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	tooLong := new(big.Int).Lsh(big.NewInt(1), 8*21)
	for _, serial := range []*big.Int{big.NewInt(0), big.NewInt(-7), tooLong} {
		f.src.set(serial, Status{Known: true}) // must not be consulted
		r := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)), f.ca.cert)
		if r.Status != xocsp.Unknown || r.SerialNumber.Cmp(serial) != 0 {
			t.Errorf("serial %v: status %d for %v", serial, r.Status, r.SerialNumber)
		}
	}
	if f.src.calls.Load() != 0 {
		t.Errorf("source consulted %d times", f.src.calls.Load())
	}
}

func TestRespond_UnknownNotCached(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	req := makeRequest(t, f.ca.cert, big.NewInt(404), crypto.SHA1, nil)
	mustRespond(t, f.r, req)
	mustRespond(t, f.r, req)
	if st := f.r.Stats(); st.CacheEntries != 0 || f.src.calls.Load() != 2 {
		t.Errorf("unknown serial cached: %+v", st)
	}
}

func TestRespond_CacheIsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{CacheSize: 64})
	for i := range 500 {
		serial := big.NewInt(int64(i + 1))
		f.src.set(serial, Status{Known: true})
		mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil))
	}
	if n := f.r.Stats().CacheEntries; n > 64 || n < 32 {
		t.Errorf("cache holds %d entries, want at most 64 (and not empty)", n)
	}
}

func TestRespond_Malformed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	good := makeRequest(t, f.ca.cert, big.NewInt(1), crypto.SHA1, nil)
	twoRequests := func() []byte {
		type tbs struct{ RequestList []asn1.RawValue }
		var one struct {
			TBSRequest struct{ RequestList []asn1.RawValue }
		}
		if _, err := asn1.Unmarshal(good, &one); err != nil {
			t.Fatal(err)
		}
		der, err := asn1.Marshal(struct{ TBSRequest tbs }{tbs{append(one.TBSRequest.RequestList, one.TBSRequest.RequestList[0])}})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}()
	tests := map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("hello, responder"),
		"truncated":      good[:len(good)-3],
		"trailing data":  append(bytes.Clone(good), 0x00),
		"two requests":   twoRequests,
		"an OCSP resp":   xocsp.UnauthorizedErrorResponse,
		"unknown hashes": bytes.Replace(bytes.Clone(good), []byte{0x2b, 0x0e, 0x03, 0x02, 0x1a}, []byte{0x2b, 0x0e, 0x03, 0x02, 0x1b}, 1),
	}
	for name, der := range tests {
		resp, err := f.r.Respond(t.Context(), der)
		if !errors.Is(err, ErrMalformedRequest) {
			t.Errorf("%s: err = %v, want ErrMalformedRequest", name, err)
		}
		var re xocsp.ResponseError
		if _, perr := xocsp.ParseResponse(resp, nil); !errors.As(perr, &re) || re.Status != xocsp.Malformed {
			t.Errorf("%s: response %x is not malformedRequest (%v)", name, resp, perr)
		}
	}
	if f.src.calls.Load() != 0 || f.ca.signer.Calls() != 0 {
		t.Error("malformed requests reached the source or the CA signer")
	}
}

func TestRespond_WrongIssuerIsUnauthorized(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	otherCA := newTestCA(t, nil, "some other CA")
	sameNameOtherKey := newTestCA(t, nil, "azscep test CA")
	for name, issuer := range map[string]*x509.Certificate{"other CA": otherCA.cert, "same name, other key": sameNameOtherKey.cert} {
		resp, err := f.r.Respond(t.Context(), makeRequest(t, issuer, big.NewInt(1), crypto.SHA256, nil))
		if !errors.Is(err, ErrUnauthorized) || !bytes.Equal(resp, xocsp.UnauthorizedErrorResponse) {
			t.Errorf("%s: err = %v, resp = %x; want unauthorized", name, err, resp)
		}
	}
	if f.src.calls.Load() != 0 {
		t.Error("foreign-issuer request reached the status source")
	}
}

func TestRespond_SourceErrorIsTryLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(8)
	f.src.set(serial, Status{Known: true})
	f.src.setErr(errStoreDown)
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)
	resp, err := f.r.Respond(t.Context(), req)
	if !errors.Is(err, ErrTryLater) || !errors.Is(err, errStoreDown) || !bytes.Equal(resp, xocsp.TryLaterErrorResponse) {
		t.Fatalf("err = %v, resp %x; want tryLater", err, resp)
	}
	f.src.setErr(nil)
	if r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert); r.Status != xocsp.Good {
		t.Fatal("error response was cached")
	}
}

func TestRespond_InvalidStatusIsInternalError(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	for i, st := range []Status{
		{Known: true, Revoked: true},                                   // no time
		{Known: true, Revoked: true, RevokedAt: time.Now(), Reason: 7}, // unassigned
		{Known: true, Revoked: true, RevokedAt: time.Now(), Reason: 8}, // removeFromCRL
		{Known: true, Revoked: true, RevokedAt: time.Now(), Reason: 11},
	} {
		serial := big.NewInt(int64(100 + i))
		f.src.set(serial, st)
		resp, err := f.r.Respond(t.Context(), makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil))
		if !errors.Is(err, ErrInvalidStatus) || !bytes.Equal(resp, xocsp.InternalErrorErrorResponse) {
			t.Errorf("status %+v: err = %v resp %x", st, err, resp)
		}
	}
}

func TestResponderCert_RenewedAtHalfLifeWithOneCASignature(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	serial := big.NewInt(77)
	f.src.set(serial, Status{Known: true})
	first := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)), f.ca.cert).Certificate

	f.clock.Advance(23 * time.Hour)
	f.r.Invalidate(serial)
	if c := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA1, nil)), f.ca.cert).Certificate; !c.Equal(first) {
		t.Fatal("responder certificate renewed before half-life")
	}

	f.clock.Advance(2 * time.Hour) // past 24 h (+5 min backdate)
	var wg sync.WaitGroup
	certs := make([]*x509.Certificate, 16)
	for i := range certs {
		wg.Go(func() {
			s := big.NewInt(int64(1000 + i))
			f.src.set(s, Status{Known: true})
			resp, err := f.r.Respond(t.Context(), makeRequest(t, f.ca.cert, s, crypto.SHA1, nil))
			if err != nil {
				t.Error(err)
				return
			}
			r, err := xocsp.ParseResponse(resp, f.ca.cert)
			if err != nil {
				t.Error(err)
				return
			}
			certs[i] = r.Certificate
		})
	}
	wg.Wait()
	for _, c := range certs {
		if c == nil || c.Equal(first) || !c.Equal(certs[0]) {
			t.Fatal("concurrent requests after half-life did not share one renewed certificate")
		}
	}
	if got := f.ca.signer.Calls(); got != 2 {
		t.Errorf("CA signer calls = %d, want 2 (one per responder certificate)", got)
	}
	if f.r.Stats().ResponderCerts != 2 {
		t.Errorf("ResponderCerts = %d", f.r.Stats().ResponderCerts)
	}
}

func TestResponderCert_RenewalFailureFallsBackThenFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{RetryBackoff: time.Minute})
	serial := big.NewInt(3)
	f.src.set(serial, Status{Known: true})
	nonce := nonceExt(t, []byte("0123456789abcdef")) // nonce requests always sign anew
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA1, nonce)
	first := mustParse(t, mustRespond(t, f.r, req), f.ca.cert).Certificate

	f.ca.signer.Fail(errSignerDown)
	f.clock.Advance(30 * time.Hour) // past renewal, cert still valid for 18 h
	r := mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	if !r.Certificate.Equal(first) {
		t.Fatal("expected the current certificate while renewal fails")
	}
	if !strings.Contains(f.logs.String(), "renewal failed") {
		t.Errorf("renewal failure not logged: %s", f.logs.String())
	}
	calls := f.ca.signer.Calls()
	mustRespond(t, f.r, req)
	if f.ca.signer.Calls() != calls {
		t.Error("renewal retried within the backoff")
	}

	f.clock.Advance(17*time.Hour + 30*time.Minute) // a response would now outlive the certificate
	resp, err := f.r.Respond(t.Context(), req)
	if !errors.Is(err, ErrTryLater) || !errors.Is(err, errSignerDown) || !bytes.Equal(resp, xocsp.TryLaterErrorResponse) {
		t.Fatalf("err = %v; want tryLater wrapping the signer failure", err)
	}

	f.ca.signer.Fail(nil)
	f.clock.Advance(time.Minute)
	r = mustParse(t, mustRespond(t, f.r, req), f.ca.cert)
	if r.Certificate.Equal(first) {
		t.Error("not renewed after the CA signer recovered")
	}
}

func TestRespond_RSAResponderKeyAndRSACA(t *testing.T) {
	t.Parallel()
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t, caKey, "RSA CA")
	src := newMemStatus()
	r, err := NewResponder(ca.cert, ca.signer, src, Options{KeyType: KeyRSA2048})
	if err != nil {
		t.Fatal(err)
	}
	src.set(big.NewInt(9), Status{Known: true})
	resp := mustParse(t, mustRespond(t, r, makeRequest(t, ca.cert, big.NewInt(9), crypto.SHA1, nil)), ca.cert)
	if resp.Status != xocsp.Good || resp.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("status %d alg %v", resp.Status, resp.SignatureAlgorithm)
	}
	if _, ok := resp.Certificate.PublicKey.(*rsa.PublicKey); !ok || resp.Certificate.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("responder key %T signed with %v", resp.Certificate.PublicKey, resp.Certificate.SignatureAlgorithm)
	}
}

func TestRespond_P384CASignsResponderCertWithSHA384(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ca := newTestCA(t, key, "P-384 CA")
	r, err := NewResponder(ca.cert, ca.signer, newMemStatus(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	resp := mustParse(t, mustRespond(t, r, makeRequest(t, ca.cert, big.NewInt(9), crypto.SHA1, nil)), ca.cert)
	if resp.Certificate.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("responder certificate signed with %v", resp.Certificate.SignatureAlgorithm)
	}
}

func TestNewResponder_Validation(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, nil, "CA")
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noCertSign := *ca.cert
	noCertSign.KeyUsage = x509.KeyUsageCRLSign
	src := newMemStatus()
	tests := []struct {
		name   string
		cert   *x509.Certificate
		signer crypto.Signer
		opts   Options
		want   error
	}{
		{"fail/key mismatch", ca.cert, other, Options{}, ErrKeyMismatch},
		{"fail/no keyCertSign", &noCertSign, ca.key, Options{}, ErrInvalidIssuer},
		{"fail/nil cert", nil, ca.key, Options{}, ErrInvalidIssuer},
		{"fail/margin >= validity", ca.cert, ca.key, Options{ResponseValidity: time.Hour, CacheMargin: time.Hour}, nil},
		{"fail/cert too short", ca.cert, ca.key, Options{ResponseValidity: time.Hour, ResponderCertValidity: 2 * time.Hour}, nil},
		{"fail/key type", ca.cert, ca.key, Options{KeyType: 9}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewResponder(tt.cert, tt.signer, src, tt.opts)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewResponder(ca.cert, ca.signer, src, Options{}); err != nil {
		t.Fatal(err)
	}
	// Every validity the configuration accepts must start the responder with its other defaults (the handler sets
	// only the validity); a value outside that range would stop the process after it had started listening.
	for _, v := range []time.Duration{config.MinOCSPValidity, config.MaxOCSPValidity} {
		if _, err := NewResponder(ca.cert, ca.signer, src, Options{ResponseValidity: v}); err != nil {
			t.Errorf("AZSCEP_OCSP_VALIDITY=%s is accepted by the configuration but not by the responder: %v", v, err)
		}
	}
	if ca.signer.Calls() != 0 {
		t.Error("NewResponder used the CA key")
	}
}

// RFC 6960 §4.4 with RFC 5280's rule: an unrecognised request extension is ignored, unless it is critical, which
// the responder cannot honour and refuses as malformedRequest.
func TestRespond_UnknownCriticalExtensionIsMalformed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	unknown := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
	for _, inEntry := range []bool{false, true} {
		for _, critical := range []bool{false, true} {
			ext := []pkix.Extension{{Id: unknown, Critical: critical, Value: []byte{0x05, 0x00}}}
			var der []byte
			if inEntry { // singleRequestExtensions
				der = makeRequestWith(t, f.ca.cert, big.NewInt(1), crypto.SHA256, nil, ext)
			} else {
				der = makeRequestWith(t, f.ca.cert, big.NewInt(1), crypto.SHA256, ext, nil)
			}
			resp, err := f.r.Respond(t.Context(), der)
			malformed := errors.Is(err, ErrMalformedRequest) && bytes.Equal(resp, xocsp.MalformedRequestErrorResponse)
			if malformed != critical {
				t.Errorf("in the request entry %v, critical %v: err %v, malformedRequest %v", inEntry, critical, err, malformed)
			}
		}
	}
}
