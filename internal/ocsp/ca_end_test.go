package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// issueRecorder counts the responder certificates the CA planned and issued, as the store would record them.
type issueRecorder struct {
	mu      sync.Mutex
	planned []*x509.Certificate
	issued  []*x509.Certificate
}

func (r *issueRecorder) Planned(_ context.Context, tmpl *x509.Certificate) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.planned = append(r.planned, tmpl)
	return nil
}

func (r *issueRecorder) Issued(_ context.Context, cert *x509.Certificate) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.issued = append(r.issued, cert)
	return nil
}

func (r *issueRecorder) counts() (planned, issued []*x509.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*x509.Certificate(nil), r.planned...), append([]*x509.Certificate(nil), r.issued...)
}

// TestResponderCert_EndsWithTheCA: a CA that ends sooner than the responder certificate validity gets a responder
// certificate that ends with it, not after it (a certificate that outlives its issuer fails path validation).
func TestResponderCert_EndsWithTheCA(t *testing.T) {
	t.Parallel()
	caEnd := fixtureStart.Add(10 * time.Hour) // well inside the 48 h responder validity
	rec := &issueRecorder{}
	f := newFixtureWithCA(t, newTestCAUntil(t, nil, "azscep test CA", caEnd), Options{Recorder: rec})
	serial := big.NewInt(0x77)
	f.src.set(serial, Status{Known: true})

	resp := mustParse(t, mustRespond(t, f.r, makeRequest(t, f.ca.cert, serial, crypto.SHA256, nil)), f.ca.cert)
	c := resp.Certificate
	if c.NotAfter.After(f.ca.cert.NotAfter) {
		t.Errorf("responder certificate notAfter %v is after the CA's %v", c.NotAfter, f.ca.cert.NotAfter)
	}
	planned, issued := rec.counts()
	if len(planned) != 1 || len(issued) != 1 {
		t.Fatalf("recorded %d planned / %d issued responder certificates, want 1 / 1", len(planned), len(issued))
	}
	if planned[0].NotAfter.After(f.ca.cert.NotAfter) || !issued[0].Equal(c) {
		t.Errorf("recorded template notAfter %v (CA %v); recorded certificate is the one in the response: %v",
			planned[0].NotAfter, f.ca.cert.NotAfter, issued[0].Equal(c))
	}
	if resp.NextUpdate.After(c.NotAfter) {
		t.Errorf("nextUpdate %v after the responder certificate's notAfter %v", resp.NextUpdate, c.NotAfter)
	}
	// Valid as a chain up to the CA's last second.
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: caEnd.Add(-time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}}); err != nil {
		t.Errorf("responder certificate does not verify before the CA ends: %v", err)
	}
}

// TestResponderCert_CAFinalWindowOneIssuance walks a responder through the CA's last days, asking every few minutes
// (with a nonce, so each request signs anew and looks at the responder certificate, and without, through the
// cache). Once a responder certificate's full validity no longer fits before the CA ends, the responder makes one
// certificate that ends with the CA and keeps it: no renewal per request (a Key Vault signature and a store record
// each), and no response whose nextUpdate outlives its signer's certificate or the CA.
func TestResponderCert_CAFinalWindowOneIssuance(t *testing.T) {
	t.Parallel()
	caEnd := fixtureStart.Add(60 * time.Hour)
	rec := &issueRecorder{}
	f := newFixtureWithCA(t, newTestCAUntil(t, nil, "azscep test CA", caEnd), Options{Recorder: rec})
	serial := big.NewInt(0xC0FFEE)
	f.src.set(serial, Status{Known: true})
	plain := makeRequest(t, f.ca.cert, serial, crypto.SHA256, nil)
	withNonce := makeRequest(t, f.ca.cert, serial, crypto.SHA256, nonceExt(t, []byte("0123456789abcdef")))

	check := func(der []byte) {
		t.Helper()
		r := mustParse(t, der, f.ca.cert)
		now := f.clock.Now()
		switch {
		case !r.NextUpdate.After(r.ThisUpdate):
			t.Fatalf("at %v: nextUpdate %v not after thisUpdate %v", now, r.NextUpdate, r.ThisUpdate)
		case r.NextUpdate.After(r.Certificate.NotAfter):
			t.Fatalf("at %v: nextUpdate %v after the responder certificate's notAfter %v", now, r.NextUpdate, r.Certificate.NotAfter)
		case r.NextUpdate.After(caEnd):
			t.Fatalf("at %v: nextUpdate %v after the CA's notAfter %v", now, r.NextUpdate, caEnd)
		case r.Certificate.NotAfter.After(caEnd):
			t.Fatalf("at %v: responder certificate notAfter %v after the CA's %v", now, r.Certificate.NotAfter, caEnd)
		case now.Before(r.Certificate.NotBefore) || now.After(r.Certificate.NotAfter):
			t.Fatalf("at %v: signed with a responder certificate valid %v – %v", now, r.Certificate.NotBefore, r.Certificate.NotAfter)
		}
	}

	// The last window starts where a full responder validity no longer fits before the CA ends.
	window := caEnd.Add(-DefaultResponderCertValidity)
	var certsAtWindow int64 = -1
	for f.clock.Now().Before(caEnd) {
		if certsAtWindow < 0 && !f.clock.Now().Before(window) {
			certsAtWindow = f.r.Stats().ResponderCerts
		}
		check(mustRespond(t, f.r, withNonce))
		check(mustRespond(t, f.r, plain))
		step := 7 * time.Minute
		if left := caEnd.Sub(f.clock.Now()); left <= 2*time.Hour {
			step = time.Minute // the last response validities, where nextUpdate has to be cut
			if left <= 2*time.Minute {
				step = 10 * time.Second
			}
		}
		f.clock.Advance(step)
	}

	// A burst of concurrent requests in the CA's last minute: still no new responder certificate.
	f.clock.Set(caEnd.Add(-45 * time.Second))
	before := f.ca.signer.Calls()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			der, err := f.r.Respond(t.Context(), withNonce)
			if err != nil {
				t.Error(err)
				return
			}
			r, err := xocsp.ParseResponse(der, f.ca.cert)
			if err != nil {
				t.Error(err)
				return
			}
			if !r.NextUpdate.Equal(caEnd) {
				t.Errorf("nextUpdate %v in the CA's last minute, want the CA's notAfter %v", r.NextUpdate, caEnd)
			}
		})
	}
	wg.Wait()
	if got := f.ca.signer.Calls(); got != before {
		t.Errorf("the CA's last minute made %d CA signatures, want 0", got-before)
	}

	st := f.r.Stats()
	if certsAtWindow < 0 {
		t.Fatal("the walk never reached the CA's last window")
	}
	if n := st.ResponderCerts - certsAtWindow; n > 1 {
		t.Errorf("%d responder certificates issued in the CA's last %v, want at most 1", n, DefaultResponderCertValidity)
	}
	// One certificate at start, ending before the CA; its half-life renewal is the one that ends with the CA.
	if st.ResponderCerts != 2 || f.ca.signer.Calls() != 2 {
		t.Errorf("ResponderCerts = %d, CA signatures = %d over %d responses; want 2 and 2", st.ResponderCerts, f.ca.signer.Calls(), st.ResponsesSigned)
	}
	planned, issued := rec.counts()
	if len(planned) != 2 || len(issued) != 2 {
		t.Errorf("recorded %d planned / %d issued responder certificates, want 2 / 2", len(planned), len(issued))
	}
	for _, c := range issued {
		if c.NotAfter.After(caEnd) {
			t.Errorf("recorded responder certificate %x ends %v, after the CA's %v", c.SerialNumber, c.NotAfter, caEnd)
		}
	}
}

// TestRespond_AfterCAExpiryIsTryLaterWithoutSigning: once the CA has expired no response can be valid (its signer
// would have to outlive the CA), so the responder answers tryLater and never asks the CA key for a new responder
// certificate, however many requests come.
func TestRespond_AfterCAExpiryIsTryLaterWithoutSigning(t *testing.T) {
	t.Parallel()
	caEnd := fixtureStart.Add(2 * time.Hour)
	rec := &issueRecorder{}
	f := newFixtureWithCA(t, newTestCAUntil(t, nil, "azscep test CA", caEnd), Options{Recorder: rec, RetryBackoff: time.Second})
	serial := big.NewInt(0xE0F)
	f.src.set(serial, Status{Known: true})
	plain := makeRequest(t, f.ca.cert, serial, crypto.SHA256, nil)
	mustRespond(t, f.r, plain)

	f.clock.Set(caEnd)
	for i := range 20 {
		resp, err := f.r.Respond(t.Context(), plain)
		if !errors.Is(err, ErrTryLater) || !bytes.Equal(resp, xocsp.TryLaterErrorResponse) {
			t.Fatalf("request %d after the CA expired: err = %v; want tryLater", i, err)
		}
		f.clock.Advance(time.Minute) // past any retry backoff
	}
	if got := f.ca.signer.Calls(); got != 1 {
		t.Errorf("CA signatures = %d, want 1 (the responder certificate made before expiry)", got)
	}
	if planned, issued := rec.counts(); len(planned) != 1 || len(issued) != 1 {
		t.Errorf("recorded %d planned / %d issued responder certificates, want 1 / 1", len(planned), len(issued))
	}
}
