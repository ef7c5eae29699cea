package scep_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/testca"
)

func TestMain(m *testing.M) {
	// Process-wide pkcs7 settings, exactly as the handler sets them at start-up.
	scep.Init()
	os.Exit(m.Run())
}

// staticSecret is the static challenge of the test endpoints.
const staticSecret = "correct-horse-battery-staple"

// Endpoint names of the default test server.
const (
	epStatic = "static" // static challenge, CertRep carries only the issued certificate
	epChain  = "chain"  // static challenge, CertRep carries the CA chain too
)

// profileValidity is the test profile's maximum validity; renewal windows are computed from it.
const profileValidity = 30 * 24 * time.Hour

func testProfile(t testing.TB) *policy.Profile {
	t.Helper()
	p, err := policy.ParseProfile("device",
		"validity=30d;ku=digitalSignature,keyEncipherment;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	sharedOnce sync.Once
	sharedCA   *testca.CA
)

// theCA is one EC CA with an RSA RA shared by the tests: every test still gets its own store, issuer and
// server, so nothing recorded leaks between tests.
func theCA(t testing.TB) *testca.CA {
	t.Helper()
	sharedOnce.Do(func() { sharedCA = testca.New(t, testca.Options{}) })
	if sharedCA == nil {
		t.Fatal("shared CA could not be built")
	}
	return sharedCA
}

type envOptions struct {
	ca        *testca.CA
	keys      *custody.Keys // instead of ca.Keys (an instrumented RA)
	endpoints []*scep.Endpoint
	// wrap, when set, wraps the memstore the issuer and server use (fault injection).
	wrap   func(store.Store) store.Store
	crl    scep.CRLSource
	intune scep.Intune
	log    io.Writer
}

// env is one SCEP server under test: the real issuance.Issuer over a memstore, served by httptest.
type env struct {
	ca     *testca.CA
	mem    *memstore.Store
	store  store.Store
	issuer *issuance.Issuer
	srv    *scep.Server
	ts     *httptest.Server
	// offset shifts the SCEP server's clock (renewal windows).
	offset atomic.Int64
	// issuerOffset shifts the issuer's clock (how long ago a record was written, for the delivery gate).
	issuerOffset atomic.Int64
	panics       atomic.Int32
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.ca == nil {
		o.ca = theCA(t)
	}
	if o.endpoints == nil {
		o.endpoints = []*scep.Endpoint{
			{Name: epStatic, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t)},
			{Name: epChain, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t),
				CertRepChain: true},
		}
	}
	e := &env{ca: o.ca, mem: memstore.New()}
	e.store = e.mem
	if o.wrap != nil {
		e.store = o.wrap(e.mem)
	}
	var err error
	e.issuer, err = issuance.New(issuance.Config{
		CA:    issuance.CA{Cert: o.ca.Cert, Signer: o.ca.Key},
		Store: e.store,
		URLs: issuance.URLs{OCSP: []string{"http://ca.test/api/ocsp"}, CAIssuers: []string{"http://ca.test/api/ca"},
			CRL: []string{"http://ca.test/api/crl"}},
		Backdate: 5 * time.Minute,
		Now:      func() time.Time { return time.Now().Add(time.Duration(e.issuerOffset.Load())) },
		// A write after the signature that the store refuses is tried again until its deadline: without waiting.
		Sleep: (&testca.InstantSleep{}).Sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	logOut := io.Discard
	if o.log != nil {
		logOut = o.log
	}
	keys := o.ca.Keys
	if o.keys != nil {
		keys = o.keys
	}
	e.srv, err = scep.New(scep.Config{
		Keys:      keys,
		Issuer:    e.issuer,
		Store:     e.store,
		Endpoints: o.endpoints,
		CRL:       o.crl,
		Intune:    o.intune,
		Logger:    slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:       func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	// The handler must never panic on input: recover here, count, and fail the test at the end.
	e.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				e.panics.Add(1)
				t.Errorf("handler panicked on %s %s: %v", r.Method, r.URL.Path, p)
				w.WriteHeader(http.StatusInternalServerError)
			}
		}()
		e.srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		e.ts.Close()
		if n := e.panics.Load(); n > 0 {
			t.Errorf("%d handler panics", n)
		}
	})
	return e
}

func (e *env) url(endpoint string) string { return e.ts.URL + "/api/scep/" + endpoint }

// do sends a request and returns the response with its body read.
func (e *env) do(t testing.TB, method, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return testca.Do(t, e.ts.Client(), req)
}

// pki posts req to endpoint and returns the verified CertRep; the answer must be a 200 CertRep signed by the RA.
func (e *env) pki(t testing.TB, endpoint string, req *testca.Request) *testca.CertRep {
	t.Helper()
	resp, body := testca.Post(t, e.url(endpoint), req.Raw)
	return e.certRep(t, resp, body, req)
}

func (e *env) certRep(t testing.TB, resp *http.Response, body []byte, req *testca.Request) *testca.CertRep {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PKIOperation: HTTP %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-pki-message" {
		t.Fatalf("PKIOperation Content-Type %q", ct)
	}
	wantLength(t, resp, body)
	return req.ParseCertRep(t, body, e.ca.Recipient())
}

// client is a device with fixture key n, signing with a self-signed certificate and encrypting to the RA.
func (e *env) client(t testing.TB, n int, cn string) *testca.Client {
	t.Helper()
	return testca.NewClient(t, testca.RSAKey(t, n), pkix.Name{CommonName: cn}, e.ca.Recipient())
}

// csr is a well-formed request for c's key with the right challenge.
func csrFor(t testing.TB, c *testca.Client, cn string) *x509.CertificateRequest {
	t.Helper()
	return testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: cn}, ChallengePassword: staticSecret})
}

// records lists every record in the store (behind any fault wrapper).
func (e *env) records(t testing.TB) []*store.Record {
	t.Helper()
	return testca.AllRecords(t, e.mem, store.Query{Limit: 200})
}

func (e *env) countStatus(t testing.TB, st store.Status) int {
	t.Helper()
	n := 0
	for _, r := range e.records(t) {
		if r.Status == st {
			n++
		}
	}
	return n
}

// wantFailure asserts a FAILURE CertRep with the given failInfo and no certificate.
func wantFailure(t testing.TB, rep *testca.CertRep, failInfo string) {
	t.Helper()
	if rep.Status != testca.StatusFailure || rep.FailInfo != failInfo {
		t.Fatalf("CertRep status %q failInfo %q, want FAILURE failInfo %q", rep.Status, rep.FailInfo, failInfo)
	}
	if len(rep.Certificates) != 0 {
		t.Fatal("FAILURE CertRep carries a certificate")
	}
}

func wantSuccess(t testing.TB, rep *testca.CertRep) *x509.Certificate {
	t.Helper()
	if rep.Status != testca.StatusSuccess {
		t.Fatalf("CertRep status %q failInfo %q, want SUCCESS", rep.Status, rep.FailInfo)
	}
	c := rep.Certificate()
	if c == nil {
		t.Fatal("SUCCESS CertRep without a certificate")
	}
	return c
}

func hexSerial(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

// wantLength asserts that an answer declared its length instead of arriving chunked: a CertRep or a chain is over
// net/http's 2 KB buffer, and HTTP/1.1 SCEP clients in older network gear do not all decode chunked bodies.
func wantLength(t testing.TB, resp *http.Response, body []byte) {
	t.Helper()
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Fatalf("Content-Length %d, Transfer-Encoding %v for a %d-byte body", resp.ContentLength, resp.TransferEncoding, len(body))
	}
}
