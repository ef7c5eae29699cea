package crl

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/testca"
)

type testError string

func (e testError) Error() string { return string(e) }

const (
	errSignerDown = testError("signer unavailable")
	errStoreDown  = testError("store unavailable")
)

// memSource is an in-memory Source with failure injection and an optional gate that blocks reads.
type memSource struct {
	mu      sync.Mutex
	entries []Entry
	err     error
	calls   atomic.Int64
	gate    chan struct{} // if non-nil, each read waits for a value or close
	started chan struct{} // if non-nil, receives one value per call before waiting on gate
}

func (s *memSource) RevokedEntries(ctx context.Context) ([]Entry, error) {
	s.calls.Add(1)
	// Snapshot first, so a read that is held at the gate reflects the index as it was when it started.
	s.mu.Lock()
	entries, err := slices.Clone(s.entries), s.err
	s.mu.Unlock()
	if s.started != nil {
		s.started <- struct{}{}
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return entries, nil
}

func (s *memSource) add(e Entry) {
	s.mu.Lock()
	s.entries = append(s.entries, e)
	s.mu.Unlock()
}

func (s *memSource) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	signer *testca.CountingSigner
}

func newTestCA(t testing.TB, key crypto.Signer) *testCA {
	t.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "azscep test CA", Organization: []string{"azscep"}},
		NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, signer: &testca.CountingSigner{Signer: key}}
}

type fixture struct {
	ca      *testCA
	src     *memSource
	counter *MemoryCounter
	clock   *testca.Clock
	logs    *testca.LogBuffer
	pub     *Publisher
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	f := &fixture{
		ca:      newTestCA(t, nil),
		src:     &memSource{},
		counter: &MemoryCounter{},
		clock:   testca.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		logs:    &testca.LogBuffer{},
	}
	f.pub = f.newPublisher(t, opts)
	return f
}

func (f *fixture) newPublisher(t testing.TB, opts Options) *Publisher {
	t.Helper()
	if opts.Clock == nil {
		opts.Clock = f.clock
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	}
	p, err := NewPublisher(f.ca.cert, f.ca.signer, f.src, f.counter, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t testing.TB, c *CRL, issuer *x509.Certificate) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("CheckSignatureFrom: %v", err)
	}
	return rl
}

// await receives from ch or fails the test, so a broken synchronisation shows up as a failure, not a hang.
func await(t testing.TB, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the source to be called")
	}
}
