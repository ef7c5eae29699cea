package ocsp

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// ctxRecorder records responder certificates the way revocation.ResponderRecords does: with store calls made under
// the context it is given, which fail once that context is cancelled. Planned is held until release so the test
// can hang up the client while the responder certificate is being made (a Key Vault signature plus two store
// writes in production).
type ctxRecorder struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (r *ctxRecorder) Planned(ctx context.Context, _ *x509.Certificate) error {
	r.once.Do(func() { close(r.entered) })
	<-r.release
	return ctx.Err()
}

func (r *ctxRecorder) Issued(ctx context.Context, _ *x509.Certificate) error { return ctx.Err() }

// TestRenewalOutlivesTheCallerThatStartedIt: a request with a nonce is built under its client's own context, and
// on a cold instance it starts the shared responder-certificate renewal. The renewal must not end when that client
// hangs up: a failed renewal holds every other client to tryLater for RetryBackoff and leaves a pending
// responder-certificate record behind.
func TestRenewalOutlivesTheCallerThatStartedIt(t *testing.T) {
	rec := &ctxRecorder{entered: make(chan struct{}), release: make(chan struct{})}
	f := newFixture(t, Options{Recorder: rec})
	serial := big.NewInt(0x5EED)
	f.src.set(serial, Status{Known: true})
	nonceReq := makeRequest(t, f.ca.cert, serial, crypto.SHA256, nonceExt(t, []byte("0123456789abcdef")))
	plainReq := makeRequest(t, f.ca.cert, serial, crypto.SHA256, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_, _ = f.r.Respond(ctx, nonceReq)
		close(done)
	}()
	select {
	case <-rec.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the responder certificate was never planned")
	}
	cancel() // the nonce client hangs up mid-renewal
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled request did not return")
	}
	close(rec.release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.r.renewMu.Lock()
		failed := f.r.renewErr != nil
		f.r.renewMu.Unlock()
		if failed || f.r.delegate.Load() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewal flight did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Another relying party, no nonce, its own healthy context.
	der, err := f.r.Respond(context.Background(), plainReq)
	if errors.Is(err, ErrTryLater) {
		t.Fatalf("a client's request got tryLater because an unrelated nonce client hung up during the responder "+
			"certificate renewal: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := xocsp.ParseResponse(der, f.ca.cert)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != xocsp.Good {
		t.Errorf("status %d, want good", resp.Status)
	}
}

// slowRecorder records responder certificates at once until hold is set; then Planned waits for release, as a
// store in a brownout does.
type slowRecorder struct {
	hold    atomic.Bool
	release chan struct{}
}

func (r *slowRecorder) Planned(ctx context.Context, _ *x509.Certificate) error {
	if r.hold.Load() {
		select {
		case <-r.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *slowRecorder) Issued(context.Context, *x509.Certificate) error { return nil }

// TestSlowRenewalDoesNotHoldAnswers: past half-life the responder certificate is renewed, but while the renewal
// hangs, an answer the current certificate still covers waits for it only briefly and is signed with the current
// one; once the renewal finishes the new certificate signs.
func TestSlowRenewalDoesNotHoldAnswers(t *testing.T) {
	rec := &slowRecorder{release: make(chan struct{})}
	f := newFixture(t, Options{Recorder: rec})
	serial := big.NewInt(0x51)
	f.src.set(serial, Status{Known: true})
	nonce := nonceExt(t, []byte("0123456789abcdef")) // never served from the cache
	req := makeRequest(t, f.ca.cert, serial, crypto.SHA256, nonce)
	first := mustParse(t, mustRespond(t, f.r, req), f.ca.cert).Certificate

	rec.hold.Store(true)
	f.clock.Advance(30 * time.Hour) // past renewal; the certificate still covers answers for 18 h
	start := time.Now()
	got := mustParse(t, mustRespond(t, f.r, req), f.ca.cert).Certificate
	if waited := time.Since(start); waited > renewalWait+5*time.Second {
		t.Fatalf("the answer waited %v for a hanging renewal", waited)
	}
	if !got.Equal(first) {
		t.Fatal("the answer was not signed with the current certificate while the renewal hangs")
	}
	close(rec.release)
	deadline := time.Now().Add(10 * time.Second)
	for f.r.Stats().ResponderCerts < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the renewal never finished")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := mustParse(t, mustRespond(t, f.r, req), f.ca.cert).Certificate; c.Equal(first) {
		t.Fatal("the renewed certificate does not sign once the renewal finished")
	}
}
