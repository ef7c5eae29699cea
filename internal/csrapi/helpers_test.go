package csrapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/testca"
)

// apiProfile is config's built-in "api" profile, spelled out so that a change there is a visible diff here.
const apiProfile = "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*;email=*;upn=*;uri=*"

// retryWindow is the window every env uses unless a test overrides it.
const retryWindow = 10 * time.Minute

// newClock is one settable clock shared by the fake tenant (token times), the verifier, the issuer and the
// store, so a test can move past the retry window without sleeping. It starts at the real time (whole seconds, as
// certificates carry them) so that `openssl verify`, which uses the real clock, agrees with it.
func newClock() *testca.Clock { return testca.NewClock(time.Now().Truncate(time.Second)) }

// env is a complete /api/csr stack on loopback: a fake Entra tenant and Microsoft Graph, the real verifier and
// ownership client pointed at them, a throwaway CA, a real issuer over memstore, and the handler behind the same
// edge middleware production uses.
type env struct {
	t       *testing.T
	clock   *testca.Clock
	tenant  *entrafake.Server
	graph   *entrafake.Graph
	store   *memstore.Store
	ca      *testca.CA
	profile *policy.Profile
	srv     *httptest.Server
}

// deps lets a test put faults between the issuer and its store or CA key.
type deps struct {
	store  func(store.Store) store.Store
	signer func(crypto.Signer) crypto.Signer
}

func newEnv(t *testing.T, mutate ...func(*csrapi.Config)) *env {
	t.Helper()
	return newEnvWith(t, deps{}, mutate...)
}

func newEnvWith(t *testing.T, d deps, mutate ...func(*csrapi.Config)) *env {
	t.Helper()
	c := newClock()
	// The tenant's API registration asks for the optional claims create-api-app.sh configures.
	graph := entrafake.NewGraph(t)
	tenant := entrafake.New(t, entrafake.WithClock(c.Now), entrafake.WithOptionalClaims("idtyp", "upn", "acct"),
		entrafake.WithGraph(graph))

	verifier, err := entra.NewVerifier(entra.Config{
		TenantID:      tenant.TenantID,
		Audiences:     []string{tenant.ClientID, tenant.AppIDURI},
		AuthorityHost: tenant.Authority(),
		HTTPClient:    tenant.Client(),
		Clock:         c.Now,
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	owners, err := entra.NewDirectory(entra.GraphConfig{
		Credential: graph.Credential(),
		BaseURL:    graph.URL(),
		Scope:      entrafake.GraphScope,
		HTTPClient: graph.Client(),
		Clock:      c.Now,
		APIAppID:   tenant.ClientID,
	})
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}

	ca := testca.New(t, testca.Options{Now: c.Now().Add(-time.Hour), Validity: 5 * 365 * 24 * time.Hour})
	st := memstore.New(memstore.WithClock(c.Now))
	var issuerStore store.Store = st
	if d.store != nil {
		issuerStore = d.store(st)
	}
	var signer crypto.Signer = ca.Key
	if d.signer != nil {
		signer = d.signer(ca.Key)
	}
	iss, err := issuance.New(issuance.Config{
		CA:       issuance.CA{Cert: ca.Cert, Signer: signer},
		Store:    issuerStore,
		Backdate: 5 * time.Minute,
		URLs: issuance.URLs{
			OCSP:      []string{"http://ca.test/api/ocsp"},
			CAIssuers: []string{"http://ca.test/api/ca"},
			CRL:       []string{"http://ca.test/api/crl"},
		},
		Now: c.Now,
	})
	if err != nil {
		t.Fatalf("issuance.New: %v", err)
	}
	prof, err := policy.ParseProfile("api", apiProfile)
	if err != nil {
		t.Fatalf("ParseProfile: %v", err)
	}
	cfg := csrapi.Config{
		Verifier:    verifier,
		Ownership:   owners,
		Accounts:    owners,
		Issuer:      iss,
		Chain:       ca.Keys.Chain,
		Profile:     prof,
		RetryWindow: retryWindow,
		// High enough that no functional test trips it; the rate-limit test sets its own.
		RatePerCaller: 1000,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	h, err := csrapi.New(cfg)
	if err != nil {
		t.Fatalf("csrapi.New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/csr", h)
	srv := httptest.NewServer(httpx.Edge(testLogger(t), mux))
	t.Cleanup(srv.Close)
	return &env{t: t, clock: c, tenant: tenant, graph: graph, store: st, ca: ca, profile: cfg.Profile, srv: srv}
}

// appToken is an app-only token with CSR.Request.Db.
func (e *env) appToken(opts ...entrafake.MintOption) string {
	return e.tenant.MintApp([]string{entra.RoleCSRRequestDb}, opts...)
}

// userToken is a user token with the given roles.
func (e *env) userToken(u user, roles []string, opts ...entrafake.MintOption) string {
	return e.tenant.MintUser(u.oid, u.upn, roles, opts...)
}

type user struct{ oid, upn string }

func newUser(name string) user {
	return user{oid: entrafake.NewGUID(), upn: name + "@contoso.test"}
}

// request is one POST /api/csr.
type request struct {
	body        []byte
	bodyReader  io.Reader // overrides body; sent chunked (no Content-Length)
	contentType string    // "" sends none
	accept      string
	auth        []string // Authorization header values; nil sends none
	method      string
	query       string // appended to the URL, e.g. "?profile=server"
}

func bearer(tok string) []string { return []string{"Bearer " + tok} }

// response is a finished exchange with the body read.
type response struct {
	*http.Response
	body []byte
}

func (e *env) do(r request) *response {
	e.t.Helper()
	var body io.Reader = bytes.NewReader(r.body)
	if r.bodyReader != nil {
		body = r.bodyReader
	}
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+"/api/csr"+r.query, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.bodyReader != nil {
		req.ContentLength = -1
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	}
	for _, a := range r.auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("POST /api/csr: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("reading response: %v", err)
	}
	return &response{Response: resp, body: b}
}

// post sends a DER CSR as application/pkcs10 with tok.
func (e *env) post(tok string, der []byte) *response {
	e.t.Helper()
	return e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok)})
}

// problemBody is what every error answer must carry.
type problemBody struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// wantProblem asserts an RFC 9457 answer with status and stable code, and returns it.
func wantProblem(t *testing.T, r *response, status int, code string) problemBody {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", r.StatusCode, status, r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problemBody
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != status || p.Code != code {
		t.Fatalf("problem = %+v, want status %d code %q", p, status, code)
	}
	if p.Title == "" || p.Type == "" {
		t.Fatalf("problem %+v lacks type or title", p)
	}
	return p
}

// wantRetryAfter asserts a Retry-After of at least min seconds.
func wantRetryAfter(t *testing.T, r *response, min int) {
	t.Helper()
	v := r.Header.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		t.Fatalf("Retry-After = %q, want an integer ≥ %d", v, min)
	}
}

// wantCert asserts a 200 DER answer and returns the certificate, checked against the CA.
func (e *env) wantCert(r *response) *x509.Certificate {
	e.t.Helper()
	if r.StatusCode != http.StatusOK {
		e.t.Fatalf("status = %d, want 200; body %s", r.StatusCode, r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/pkix-cert" {
		e.t.Fatalf("Content-Type = %q, want application/pkix-cert", ct)
	}
	wantLength(e.t, r)
	cert, err := x509.ParseCertificate(r.body)
	if err != nil {
		e.t.Fatalf("response is not a DER certificate: %v", err)
	}
	e.checkCert(cert)
	if got := r.Header.Get("X-Certificate-Serial"); got != store.SerialString(cert.SerialNumber) {
		e.t.Fatalf("X-Certificate-Serial = %q, want %s", got, store.SerialString(cert.SerialNumber))
	}
	return cert
}

// checkCert verifies the certificate chains to the CA (EKUs are each test's business).
func (e *env) checkCert(cert *x509.Certificate) {
	e.t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	// A certificate with an empty subject must mark its subjectAltName critical (RFC 5280 §4.2.1.6); when that
	// SAN holds only UPN otherNames crypto/x509 calls it unhandled. Verify the chain without that one complaint.
	if len(cert.UnhandledCriticalExtensions) > 0 {
		c := *cert
		c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(c.UnhandledCriticalExtensions),
			func(id asn1.ObjectIdentifier) bool {
				return id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) && len(c.RawSubject) <= 2
			})
		cert = &c
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: e.clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		e.t.Fatalf("issued certificate does not verify against the CA: %v", err)
	}
}

// record reads the store's record for cert.
func (e *env) record(cert *x509.Certificate) *store.Record {
	e.t.Helper()
	rec, err := e.store.Get(context.Background(), store.SerialString(cert.SerialNumber))
	if err != nil {
		e.t.Fatalf("record for %s: %v", store.SerialString(cert.SerialNumber), err)
	}
	if rec.Status != store.StatusIssued || !bytes.Equal(rec.CertDER, cert.Raw) {
		e.t.Fatalf("record %s: status %s, certificate stored: %v", rec.Serial, rec.Status, bytes.Equal(rec.CertDER, cert.Raw))
	}
	if rec.Source != store.SourceAPI {
		e.t.Fatalf("record source = %q, want %q", rec.Source, store.SourceAPI)
	}
	return rec
}

// records counts records in the store by status ("" for all).
func (e *env) records(status store.Status) int {
	e.t.Helper()
	n := 0
	cont := ""
	for {
		page, next, err := e.store.Search(context.Background(), store.Query{Status: status, Limit: 100, Continuation: cont})
		if err != nil {
			e.t.Fatalf("Search: %v", err)
		}
		n += len(page)
		if next == "" {
			return n
		}
		cont = next
	}
}

// ---- CSRs ----

var (
	ecKeysMu sync.Mutex
	ecKeys   = map[string]*ecdsa.PrivateKey{}
)

// ecKey returns a P-256 key per name, stable for the process (cheap to make, also under -race).
func ecKey(t testing.TB, name string) *ecdsa.PrivateKey {
	t.Helper()
	ecKeysMu.Lock()
	defer ecKeysMu.Unlock()
	if k, ok := ecKeys[name]; ok {
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKeys[name] = k
	return k
}

// csrDER builds a CSR signed by key.
func csrDER(t testing.TB, key crypto.Signer, o testca.CSROptions) []byte {
	t.Helper()
	return testca.CSR(t, key, o).Raw
}

func cn(s string) pkix.Name { return pkix.Name{CommonName: s} }

var (
	oidValidityAttr = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 13, 2, 1}
	oidSHA256RSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA256ECDSA  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

// csrWithValidity builds a CSR for subject carrying the Microsoft validity attribute (1.3.6.1.4.1.311.13.2.1)
// as Windows writes it: one EnrollmentNameValuePair of BMPStrings per attribute value. Go cannot write that
// attribute, so the request is assembled and signed by hand.
func csrWithValidity(t testing.TB, key crypto.Signer, subject pkix.Name, unit string, units int) []byte {
	t.Helper()
	mustMarshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatalf("asn1.Marshal(%T): %v", v, err)
		}
		return b
	}
	bmp := func(s string) []byte {
		u := utf16.Encode([]rune(s))
		b := make([]byte, 2*len(u))
		for i, c := range u {
			b[2*i], b[2*i+1] = byte(c>>8), byte(c)
		}
		return mustMarshal(asn1.RawValue{Tag: asn1.TagBMPString, Bytes: b})
	}
	pair := func(n, v string) []byte {
		return mustMarshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: append(bmp(n), bmp(v)...)})
	}
	values := append(pair("ValidityPeriod", unit), pair("ValidityPeriodUnits", strconv.Itoa(units))...)
	attr := mustMarshal(struct {
		Type   asn1.ObjectIdentifier
		Values asn1.RawValue
	}{oidValidityAttr, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: values}})
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	tbs := mustMarshal(struct {
		Version int
		Subject asn1.RawValue
		SPKI    asn1.RawValue
		Attrs   asn1.RawValue
	}{0, asn1.RawValue{FullBytes: mustMarshal(subject.ToRDNSequence())}, asn1.RawValue{FullBytes: spki},
		asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: attr}})
	digest := sha256.Sum256(tbs)
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	alg := pkix.AlgorithmIdentifier{Algorithm: oidSHA256ECDSA}
	if _, ok := key.(*rsa.PrivateKey); ok {
		alg = pkix.AlgorithmIdentifier{Algorithm: oidSHA256RSA, Parameters: asn1.NullRawValue}
	}
	der := mustMarshal(struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, alg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		t.Fatalf("hand-built CSR does not parse: %v", err)
	}
	return der
}

func pemCSR(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// testLogger sends the edge's and handler's logs to the test log, so a failure shows why a request was refused.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// wantLength asserts that the answer declared its length instead of arriving chunked (a PEM chain or a PKCS#7 is
// over net/http's 2 KB buffer).
func wantLength(t *testing.T, r *response) {
	t.Helper()
	if r.ContentLength != int64(len(r.body)) || len(r.TransferEncoding) != 0 {
		t.Fatalf("Content-Length %d, Transfer-Encoding %v for a %d-byte body", r.ContentLength, r.TransferEncoding, len(r.body))
	}
}
