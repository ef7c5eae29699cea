package ocsp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"log/slog"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/testca"
)

type testError string

func (e testError) Error() string { return string(e) }

const (
	errSignerDown = testError("CA signer unavailable")
	errStoreDown  = testError("store unavailable")
)

// memStatus is an in-memory StatusSource.
type memStatus struct {
	mu      sync.Mutex
	status  map[string]Status
	err     error
	calls   atomic.Int64
	gate    chan struct{}
	started chan struct{}
}

func newMemStatus() *memStatus { return &memStatus{status: map[string]Status{}} }

func (m *memStatus) set(serial *big.Int, st Status) {
	m.mu.Lock()
	m.status[serial.String()] = st
	m.mu.Unlock()
}

func (m *memStatus) setErr(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}

func (m *memStatus) CertificateStatus(ctx context.Context, serial *big.Int) (Status, error) {
	m.calls.Add(1)
	m.mu.Lock()
	st, err := m.status[serial.String()], m.err
	m.mu.Unlock()
	if m.started != nil {
		m.started <- struct{}{}
	}
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return Status{}, ctx.Err()
		}
	}
	return st, err
}

type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	signer *testca.CountingSigner
}

func newTestCA(t testing.TB, key crypto.Signer, cn string) *testCA {
	t.Helper()
	return newTestCAUntil(t, key, cn, time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC))
}

// newTestCAUntil is newTestCA with a CA certificate that ends at notAfter.
func newTestCAUntil(t testing.TB, key crypto.Signer, cn string, notAfter time.Time) *testCA {
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
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"azscep"}},
		NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              notAfter,
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

// issue makes a leaf certificate (signed directly with the CA key, not through the counting signer).
func (ca *testCA) issue(t testing.TB, serial *big.Int) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "device-" + serial.Text(16)},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		OCSPServer:   []string{"http://127.0.0.1/api/ocsp"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

type fixture struct {
	ca    *testCA
	src   *memStatus
	clock *testca.Clock
	logs  *testca.LogBuffer
	r     *Responder
}

// fixtureStart is the fixture clock's starting time.
var fixtureStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	return newFixtureWithCA(t, newTestCA(t, nil, "azscep test CA"), opts)
}

func newFixtureWithCA(t testing.TB, ca *testCA, opts Options) *fixture {
	t.Helper()
	f := &fixture{ca: ca, src: newMemStatus(), clock: testca.NewClock(fixtureStart), logs: &testca.LogBuffer{}}
	if opts.Clock == nil {
		opts.Clock = f.clock
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := NewResponder(f.ca.cert, f.ca.signer, f.src, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	return f
}

// makeRequest builds a DER OCSP request for serial under issuer, hashed with h, with an optional nonce
// extension (extnValue given raw so tests can send malformed ones).
func makeRequest(t testing.TB, issuer *x509.Certificate, serial *big.Int, h crypto.Hash, nonceExtnValue []byte) []byte {
	t.Helper()
	if nonceExtnValue == nil {
		der, err := (&xocsp.Request{
			HashAlgorithm:  h,
			IssuerNameHash: hashOf(h, issuer.RawSubject),
			IssuerKeyHash:  hashOf(h, issuerKeyBits(t, issuer)),
			SerialNumber:   serial,
		}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	return makeRequestWith(t, issuer, serial, h, []pkix.Extension{{Id: oidNonce, Value: nonceExtnValue}}, nil)
}

// makeRequestWith builds a DER OCSP request for serial under issuer with the given request extensions and
// extensions of its one request entry (singleRequestExtensions).
func makeRequestWith(t testing.TB, issuer *x509.Certificate, serial *big.Int, h crypto.Hash, exts, singleExts []pkix.Extension) []byte {
	t.Helper()
	type entry struct {
		Cert       certID
		Extensions []pkix.Extension `asn1:"explicit,tag:0,optional"`
	}
	type tbs struct {
		RequestList []entry
		Extensions  []pkix.Extension `asn1:"explicit,tag:2,optional"`
	}
	type req struct{ TBSRequest tbs }
	der, err := asn1.Marshal(req{TBSRequest: tbs{
		RequestList: []entry{{Cert: certID{
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: hashOIDs[h], Parameters: asn1.NullRawValue},
			NameHash:      hashOf(h, issuer.RawSubject),
			IssuerKeyHash: hashOf(h, issuerKeyBits(t, issuer)),
			SerialNumber:  serial,
		}, Extensions: singleExts}},
		Extensions: exts,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func nonceExt(t testing.TB, nonce []byte) []byte {
	t.Helper()
	v, err := asn1.Marshal(nonce)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func hashOf(h crypto.Hash, b []byte) []byte {
	hh := h.New()
	hh.Write(b)
	return hh.Sum(nil)
}

func issuerKeyBits(t testing.TB, c *x509.Certificate) []byte {
	t.Helper()
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	return spki.PublicKey.RightAlign()
}

// responseExtensions digs the responseExtensions out of a successful response.
func responseExtensions(t testing.TB, der []byte) []pkix.Extension {
	t.Helper()
	var outer ocspResponseASN1
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var basic basicOCSPResponse
	if _, err := asn1.Unmarshal(outer.Response.Response, &basic); err != nil {
		t.Fatal(err)
	}
	var rd struct {
		ResponderID        asn1.RawValue
		ProducedAt         time.Time `asn1:"generalized"`
		Responses          []asn1.RawValue
		ResponseExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
	}
	if _, err := asn1.Unmarshal(basic.TBSResponseData.FullBytes, &rd); err != nil {
		t.Fatal(err)
	}
	return rd.ResponseExtensions
}

func mustRespond(t testing.TB, r *Responder, der []byte) []byte {
	t.Helper()
	resp, err := r.Respond(t.Context(), der)
	if err != nil {
		t.Fatalf("Respond: %v", err)
	}
	return resp
}

func mustParse(t testing.TB, der []byte, issuer *x509.Certificate) *xocsp.Response {
	t.Helper()
	resp, err := xocsp.ParseResponse(der, issuer)
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	return resp
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
