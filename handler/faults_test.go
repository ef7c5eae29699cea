package main

// The durability fault suite (reliability.md §5.1) through the real handler: build() in azure mode with the
// Key Vault fake, the Intune fake and the Entra fake, and a storetest.FaultStore over a journaling memstore. Every
// scenario breaks one thing (a store write, the CA signature, an Intune call, the request context, or sends the
// same request 16 times at once) and then checks the invariants:
//
//   - no signature without a committed pending record for exactly that TBS (audited at the Key Vault boundary:
//     the SHA-256 of a pending record's planned TBS must equal the digest sent to the sign operation);
//   - no certificate returned to a client and no Intune success notification without a committed issued record
//     holding that certificate;
//   - no certificate of the Intune endpoint returned to a client (first answer, replay, CertPoll or GetCert) before
//     Intune accepted its successNotification and the record shows it (IntuneNotified);
//   - serials unique; no record lost or overwritten (every committed insert is still there with its planned
//     certificate, a stored certificate never changes, only state-machine transitions);
//   - duplicates signed once; no handler panic; and the service keeps working afterwards.
//
// The last test stops Azurite (through a proxy) under load: requests get 503 within their own deadline, the
// process stays up, and it recovers by itself when Azurite is back.

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/loadgen"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
	"github.com/azscep/azscep/internal/testca"
)

const (
	fxStaticSecret   = "fault-suite-static-challenge"
	fxIntuneSecret   = "fault-suite-intune-challenge"
	fxManagedID      = "3f1d6c0e-2b7a-4e55-9a1c-5d0e8b7f2a10"
	fxCAKeyName      = "azscep-ca"  // the AZSCEP_CA_KEY_NAME default
	fxKEKName        = "azscep-kek" // the AZSCEP_KEK_NAME default
	fxEndpointStatic = "static"
	fxEndpointIntune = "intune"
)

// fxMetaNames are custody's store documents (the public chain and the wrapped RA key) that make a store hold an
// initialised CA. Copying them gives each scenario a fresh store without a fresh `ca init`; if custody renames
// them, every scenario fails at start-up with ErrNotInitialized rather than passing silently.
var fxMetaNames = []string{"ca", "ra"}

// fxVault is a CA whose keys live in a Key Vault fake, initialised with custody.Vault.Init (what `azscep ca
// init` runs) into a template store.
type fxVault struct {
	kv       *kvfake.Server
	template *memstore.Store
}

// newFxVault makes the vault. Realistic vaults let the fake create a 3072-bit CA key and KEK, as `ca init` does in
// Azure (benchmarks); otherwise fixture keys are imported, which costs no key generation (the fault suite).
func newFxVault(tb testing.TB, kv *kvfake.Server, realistic bool) (*fxVault, error) {
	v := &fxVault{kv: kv, template: memstore.New()}
	client, err := kv.NewAzkeysClient()
	if err != nil {
		return nil, err
	}
	opts := custody.VaultInitOptions{KeyType: "RSA", KeySize: 3072, RACommon: "azscep fault-suite RA",
		Root: custody.RootOptions{Subject: pkix.Name{CommonName: "azscep fault-suite CA", Organization: []string{"azscep tests"}},
			Validity: 365 * 24 * time.Hour}}
	if !realistic {
		ca := testca.New(tb, testca.Options{KeyType: testca.KeyRSA, NoRA: true}).Key
		kek := testca.New(tb, testca.Options{KeyType: testca.KeyRSA, NoRA: true}).Key
		if _, err := kv.ImportKey(fxCAKeyName, ca, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpSign, kvfake.KeyOpVerify}, HSM: true}); err != nil {
			return nil, err
		}
		if _, err := kv.ImportKey(fxKEKName, kek, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpWrapKey, kvfake.KeyOpUnwrapKey}, HSM: true}); err != nil {
			return nil, err
		}
		opts.KeyType = "RSA-HSM"
	}
	cv := &custody.Vault{Client: client, Meta: v.template, CAKeyName: fxCAKeyName, KEKName: fxKEKName}
	if _, err := cv.Init(context.Background(), opts, time.Now()); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	return v, nil
}

// copyTo puts the initialised CA's documents into st.
func (v *fxVault) copyTo(ctx context.Context, st store.Meta) error {
	for _, name := range fxMetaNames {
		val, _, err := v.template.GetMeta(ctx, name)
		if err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		if _, err := st.PutMeta(ctx, name, val, ""); err != nil {
			return fmt.Errorf("copying %s: %w", name, err)
		}
	}
	return nil
}

// The fault suite shares one vault (and fake) for the whole test binary: the fake is never closed, which only
// matters to the process that ends with the tests.
var fxShared struct {
	once  sync.Once
	vault *fxVault
	err   error
}

func sharedFxVault(t testing.TB) *fxVault {
	t.Helper()
	fxShared.once.Do(func() { fxShared.vault, fxShared.err = newFxVault(t, kvfake.NewServer(), false) })
	if fxShared.err != nil {
		t.Fatalf("fault-suite vault: %v", fxShared.err)
	}
	return fxShared.vault
}

var fxKeys struct {
	once sync.Once
	keys []*rsa.PrivateKey
	err  error
}

// fxDeviceKeys are the device keys of the SCEP requests (each request still gets its own transaction ID).
func fxDeviceKeys(t testing.TB) []*rsa.PrivateKey {
	t.Helper()
	fxKeys.once.Do(func() { fxKeys.keys, fxKeys.err = loadgen.GenerateRSAKeys(4, 2048) })
	if fxKeys.err != nil {
		t.Fatal(fxKeys.err)
	}
	return fxKeys.keys
}

// fxOptions shape an environment.
type fxOptions struct {
	vault   *fxVault
	backing store.Store                   // the records; nil = a new memstore
	wrap    func(store.Store) store.Store // outermost store layer (benchmarks time the store here)
	// httpWrap wraps the transport to Intune and Entra (benchmarks time Intune here).
	httpWrap func(http.RoundTripper) http.RoundTripper
	quiet    bool // discard logs (benchmarks)
}

// fxEnv is one running service in azure mode against the fakes.
type fxEnv struct {
	cfg     *config.Config
	base    store.Store // the records behind every fault
	journal *fxJournal
	fs      *storetest.FaultStore
	tap     *fxKVTap
	kv      *kvfake.Server
	intune  *intunefake.Server
	entra   *apiTenant
	d       *deps
	h       http.Handler
	srv     *httptest.Server
	logs    *testca.LogBuffer
	ca      *x509.Certificate
	rcpts   []*x509.Certificate
	// sleep is the issuer's pause between tries of a write after the signature: taken at once, counted against
	// the write's deadline.
	sleep *testca.InstantSleep

	cancelMu sync.Mutex
	cancel   context.CancelFunc

	mu        sync.Mutex
	delivered []*x509.Certificate
	n         atomic.Int64
}

func newFxEnv(t testing.TB, o fxOptions) *fxEnv {
	t.Helper()
	if o.vault == nil {
		o.vault = sharedFxVault(t)
	}
	ctx := context.Background()
	e := &fxEnv{kv: o.vault.kv, base: o.backing, logs: &testca.LogBuffer{}, sleep: &testca.InstantSleep{}}
	if e.base == nil {
		e.base = memstore.New()
	}
	if err := o.vault.copyTo(ctx, e.base); err != nil {
		t.Fatal(err)
	}
	e.journal = newFxJournal(e.base)
	e.fs = storetest.NewFaultStore(e.journal)
	var st store.Store = e.fs
	if o.wrap != nil {
		st = o.wrap(st)
	}

	in, err := intunefake.NewServer(intunefake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	if err := in.RegisterChallenge(intunefake.Challenge{Password: fxIntuneSecret}); err != nil {
		t.Fatal(err)
	}
	e.intune, e.entra = in, newAPITenant(t)

	env := []string{"AZSCEP_MODE=azure", "AZSCEP_BASE_URL=https://ca.fault.test",
		"AZSCEP_TABLES_ENDPOINT=https://tables.fault.test", "AZURE_CLIENT_ID=" + fxManagedID,
		"AZSCEP_KEYVAULT_URL=" + e.kv.URL(), "AZSCEP_SCEP_ENDPOINTS=static,intune",
		"AZSCEP_SCEP_STATIC_SECRET=" + fxStaticSecret,
		"AZSCEP_INTUNE_TENANT_ID=" + in.TenantID(), "AZSCEP_INTUNE_CLIENT_ID=" + in.ClientID(),
		"AZSCEP_INTUNE_CLIENT_SECRET=" + in.ClientSecret(), "AZSCEP_INTUNE_CREDENTIAL=secret",
		"AZSCEP_INTUNE_AUTHORITY=" + in.AuthorityHost(), "AZSCEP_INTUNE_GRAPH_URL=" + in.GraphBase(),
		"AZSCEP_API_TENANT_ID=" + e.entra.TenantID, "AZSCEP_API_AUDIENCES=" + e.entra.ClientID,
		"AZSCEP_API_AUTHORITY=" + e.entra.Authority(), "AZSCEP_API_GRAPH_URL=" + e.entra.graph.URL(),
		// The scenarios and the benchmarks built on them send everything from one address.
		benchRatePerClient, benchRateGlobal}
	if e.cfg, err = config.Load(env); err != nil {
		t.Fatalf("config: %v", err)
	}

	kvOpts := *e.kv.ClientOptions()
	e.tap = &fxKVTap{next: kvOpts.Transport, env: e}
	kvOpts.Transport = e.tap
	client := in.Client()
	if o.httpWrap != nil {
		client = &http.Client{Transport: o.httpWrap(in.Transport())}
	}
	var logOut io.Writer = e.logs
	if o.quiet {
		logOut = io.Discard
	}
	log := slog.New(slog.NewJSONHandler(logOut, nil))
	scep.Init()
	if e.d, err = build(ctx, e.cfg, log, buildOptions{httpClient: client, kvOptions: &kvOpts,
		credential: e.kv.Credential(), graphCredential: e.entra.graphCredential(), store: st, sleep: e.sleep.Sleep}); err != nil {
		t.Fatalf("build: %v", err)
	}
	e.h = httpx.Edge(log, routes(e.d))
	e.srv = httptest.NewServer(http.HandlerFunc(e.serveHTTP))
	t.Cleanup(func() {
		e.srv.Close()
		if e.d.close != nil {
			e.d.close()
		}
	})
	e.ca = e.d.keys.CA()
	if e.rcpts, err = loadgen.FetchCACerts(ctx, e.srv.Client(), e.srv.URL+"/api/scep/"+fxEndpointStatic); err != nil {
		t.Fatal(err)
	}
	e.tap.audit.Store(true)
	return e
}

// serveHTTP gives each request a context the scenario can cancel (cancelRequest), as a client that hangs up or
// a host that times out would.
func (e *fxEnv) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	e.cancelMu.Lock()
	e.cancel = cancel
	e.cancelMu.Unlock()
	e.h.ServeHTTP(w, r.WithContext(ctx))
}

// cancelRequest cancels the context of the request being served (scenarios send one at a time).
func (e *fxEnv) cancelRequest() {
	e.cancelMu.Lock()
	defer e.cancelMu.Unlock()
	if e.cancel != nil {
		e.cancel()
	}
}

// ---- requests ---------------------------------------------------------------------------------------------

// fxOutcome is what a client got.
type fxOutcome struct {
	http     int
	status   string // CertRep pkiStatus for SCEP; "" for /api/csr
	failInfo string
	cert     *x509.Certificate // only when the client got a certificate
}

func (o fxOutcome) ok() bool { return o.cert != nil }

func (o fxOutcome) String() string {
	return fmt.Sprintf("HTTP %d %s %s cert=%v", o.http, o.status, o.failInfo, o.cert != nil)
}

// fxFlow is one way to enroll.
type fxFlow struct {
	name string
	new  func(e *fxEnv, t testing.TB) fxReq
}

// fxReq is a pre-built request and how its client reads a certificate out of a successful answer.
type fxReq struct {
	loadgen.Request
	certOf func(body []byte) (*x509.Certificate, error)
}

// scepRequest builds one PKCSReq for endpoint with the endpoint's challenge.
func (e *fxEnv) scepRequest(t testing.TB, endpoint string) fxReq {
	t.Helper()
	challenge := fxStaticSecret
	if endpoint == fxEndpointIntune {
		challenge = fxIntuneSecret
	}
	built, err := loadgen.BuildSCEP(loadgen.SCEPConfig{Path: "/api/scep/" + endpoint, Recipients: e.rcpts,
		Challenge: challenge, Keys: fxDeviceKeys(t), CommonName: fmt.Sprintf("fault-%s-%d-", endpoint, e.n.Add(1))}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := built[0]
	return fxReq{Request: r.Request, certOf: func(body []byte) (*x509.Certificate, error) {
		return r.VerifyCertRep(body, []*x509.Certificate{e.ca})
	}}
}

// csrRequest builds one /api/csr request for a fresh user holding CSR.Request.Db.
func (e *fxEnv) csrRequest(t testing.TB) fxReq {
	t.Helper()
	n := e.n.Add(1)
	tok := e.entra.MintUser(entrafake.NewGUID(), fmt.Sprintf("user%d@fault.test", n), []string{entra.RoleCSRRequestDb})
	built, err := loadgen.BuildCSR(loadgen.CSRConfig{Path: "/api/csr", CommonName: fmt.Sprintf("fault-api-%d-", n),
		Token: func(int) (string, error) { return tok, nil }}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := built[0]
	return fxReq{Request: r.Request, certOf: func(body []byte) (*x509.Certificate, error) {
		if err := r.CheckCertificate(http.StatusOK, body); err != nil {
			return nil, err
		}
		return x509.ParseCertificate(body)
	}}
}

var fxFlows = []fxFlow{
	{"scep-static", func(e *fxEnv, t testing.TB) fxReq { return e.scepRequest(t, fxEndpointStatic) }},
	{"scep-intune", func(e *fxEnv, t testing.TB) fxReq { return e.scepRequest(t, fxEndpointIntune) }},
	{"api-csr", func(e *fxEnv, t testing.TB) fxReq { return e.csrRequest(t) }},
}

// send sends req and classifies the answer (see sendErr); any error fails the test.
func (e *fxEnv) send(t testing.TB, req fxReq) fxOutcome {
	t.Helper()
	out, err := e.sendErr(req)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sendErr sends req and classifies the answer. A certificate counts as delivered (and is checked against the
// records by check) only when the answer is a success that opens as the client would open it; a success that
// does not open is an error. It is safe to call from any goroutine.
func (e *fxEnv) sendErr(req fxReq) (fxOutcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, req.Method, e.srv.URL+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		return fxOutcome{}, err
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	resp, err := e.srv.Client().Do(hr)
	if err != nil {
		return fxOutcome{}, fmt.Errorf("%s: %w", req.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fxOutcome{}, err
	}
	out := fxOutcome{http: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		return out, nil
	}
	if strings.HasPrefix(req.Path, "/api/scep/") {
		if out.status, out.failInfo, err = loadgen.CertRepStatus(body); err != nil {
			return out, fmt.Errorf("answer is not a CertRep: %w", err)
		}
		if out.status != loadgen.StatusSuccess {
			return out, nil
		}
	}
	if out.cert, err = req.certOf(body); err != nil {
		return out, fmt.Errorf("a successful answer does not give the client its certificate: %w", err)
	}
	e.mu.Lock()
	e.delivered = append(e.delivered, out.cert)
	e.mu.Unlock()
	return out, nil
}

// ---- the Key Vault tap: audit and faults at the signing boundary -----------------------------------------

// fxKVTap sits between the Key Vault client and the fake. At every sign operation it checks the invariant of
// reliability.md §5.1 against the records (not through the faults), counts the signatures, and lets a scenario
// fail the call before it reaches the key or lose its answer after the key signed.
type fxKVTap struct {
	next  policy.Transporter
	env   *fxEnv
	audit atomic.Bool

	mu         sync.Mutex
	signs      int      // signatures the key made
	violations []string // signatures without a committed pending record
	// before runs before a sign is forwarded; a non-nil error answers 403 without signing.
	before func() error
	// after runs after the key signed; true answers 500 as if the answer were lost (the client retries).
	after func() bool
	// corrupt flips a bit of the signature Key Vault answers (a corrupted answer or a KMS signing wrongly).
	corrupt bool

	// Time spent in Key Vault calls, for the benchmarks.
	calls, nanos atomic.Int64
}

func (k *fxKVTap) Do(req *http.Request) (*http.Response, error) {
	isSign := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/sign")
	if isSign && req.Body != nil && k.audit.Load() {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if len(body) > 0 { // the challenge-eliciting first request has no body
			k.check(body)
			k.mu.Lock()
			before := k.before
			k.mu.Unlock()
			if before != nil {
				if err := before(); err != nil {
					return fxKVError(req, http.StatusForbidden, "Forbidden", err.Error()), nil
				}
			}
		}
	}
	start := time.Now()
	resp, err := k.next.Do(req)
	k.calls.Add(1)
	k.nanos.Add(int64(time.Since(start)))
	if err != nil || !isSign || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	if !k.audit.Load() {
		return resp, nil // start-up (before the scenario): not counted, no faults
	}
	k.mu.Lock()
	k.signs++
	after, corrupt := k.after, k.corrupt
	k.mu.Unlock()
	if after != nil && after() {
		_ = resp.Body.Close()
		return fxKVError(req, http.StatusInternalServerError, "InternalServerError", "answer lost after signing"), nil
	}
	if corrupt {
		return fxCorruptSignature(resp)
	}
	return resp, nil
}

// fxCorruptSignature flips the last bit of the signature in a Key Vault sign answer.
func fxCorruptSignature(resp *http.Response) (*http.Response, error) {
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var answer map[string]any
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("sign answer does not parse: %w", err)
	}
	value, _ := answer["value"].(string)
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(value, "="))
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("sign answer value %q is not base64url", value)
	}
	sig[len(sig)-1] ^= 1
	answer["value"] = base64.RawURLEncoding.EncodeToString(sig)
	if body, err = json.Marshal(answer); err != nil {
		return nil, err
	}
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// check is the audit: a pending record whose planned TBS hashes to the digest must be committed already.
func (k *fxKVTap) check(body []byte) {
	var op struct {
		Alg   string `json:"alg"`
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &op); err != nil {
		k.violate("sign request body does not parse: " + err.Error())
		return
	}
	digest, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(op.Value, "="))
	if err != nil {
		k.violate("sign digest is not base64url")
		return
	}
	var h func() hash.Hash
	switch op.Alg[max(len(op.Alg)-3, 0):] {
	case "256":
		h = sha256.New
	case "384":
		h = sha512.New384
	case "512":
		h = sha512.New
	default:
		k.violate("unknown signature algorithm " + op.Alg)
		return
	}
	q := store.Query{Status: store.StatusPending, Limit: 500}
	for {
		page, next, err := k.env.base.Search(context.Background(), q)
		if err != nil {
			k.violate("listing pending records: " + err.Error())
			return
		}
		for _, rec := range page {
			c, err := x509.ParseCertificate(rec.PlannedDER)
			if err != nil {
				continue
			}
			d := h()
			d.Write(c.RawTBSCertificate)
			if bytes.Equal(d.Sum(nil), digest) {
				return
			}
		}
		if next == "" {
			break
		}
		q.Continuation = next
	}
	k.violate(fmt.Sprintf("signature (%s) requested without a committed pending record for this TBS", op.Alg))
}

func (k *fxKVTap) violate(s string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.violations = append(k.violations, s)
}

func (k *fxKVTap) set(before func() error, after func() bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.before, k.after = before, after
}

func (k *fxKVTap) setCorrupt(corrupt bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.corrupt = corrupt
}

func (k *fxKVTap) signatures() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.signs
}

// fxKVError is a Key Vault error answer.
func fxKVError(req *http.Request, status int, code, msg string) *http.Response {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

// ---- the journal: what the store committed ----------------------------------------------------------------

// fxJournal wraps the records and remembers every committed write, so check can prove nothing committed was
// later lost or overwritten.
type fxJournal struct {
	store.Store
	mu          sync.Mutex
	planned     map[string][]byte // serial → planned certificate at insert
	certs       map[string][]byte // serial → certificate at the first update that stored one
	transitions []string          // "serial from→to" of every committed update
	bad         []string
}

func newFxJournal(s store.Store) *fxJournal {
	return &fxJournal{Store: s, planned: map[string][]byte{}, certs: map[string][]byte{}}
}

func (j *fxJournal) Insert(ctx context.Context, r *store.Record) error {
	err := j.Store.Insert(ctx, r)
	if err == nil {
		j.mu.Lock()
		j.planned[r.Serial] = bytes.Clone(r.PlannedDER)
		j.mu.Unlock()
	}
	return err
}

func (j *fxJournal) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	b, err := j.Store.InsertBound(ctx, key, prev, r)
	if err == nil {
		j.mu.Lock()
		j.planned[r.Serial] = bytes.Clone(r.PlannedDER)
		j.mu.Unlock()
	}
	return b, err
}

func (j *fxJournal) Update(ctx context.Context, r *store.Record, from store.Status) error {
	err := j.Store.Update(ctx, r, from)
	if err == nil {
		j.mu.Lock()
		defer j.mu.Unlock()
		if !from.CanMove(r.Status) && from != r.Status {
			j.bad = append(j.bad, fmt.Sprintf("record %s moved %s→%s", r.Serial, from, r.Status))
		}
		j.transitions = append(j.transitions, fmt.Sprintf("%s %s→%s", r.Serial, from, r.Status))
		if r.CertDER != nil {
			if prev, ok := j.certs[r.Serial]; ok && !bytes.Equal(prev, r.CertDER) {
				j.bad = append(j.bad, "record "+r.Serial+": stored certificate replaced")
			} else if !ok {
				j.certs[r.Serial] = bytes.Clone(r.CertDER)
			}
		}
	}
	return err
}

// ---- invariants -------------------------------------------------------------------------------------------

// records lists every record.
func (e *fxEnv) records(t testing.TB) []*store.Record {
	t.Helper()
	return testca.AllRecords(t, e.base, store.Query{Limit: 500})
}

// check asserts the invariants of reliability.md §5.1 over everything this environment did.
func (e *fxEnv) check(t testing.TB) {
	t.Helper()
	for _, p := range e.problems(t) {
		t.Error(p)
	}
}

// problems lists every broken invariant.
func (e *fxEnv) problems(t testing.TB) []string {
	t.Helper()
	var out []string
	errorf := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	ctx := context.Background()
	e.tap.mu.Lock()
	for _, v := range e.tap.violations {
		errorf("audit: %s", v)
	}
	e.tap.mu.Unlock()

	// Every certificate a client got is durable in an issued record.
	e.mu.Lock()
	delivered := append([]*x509.Certificate(nil), e.delivered...)
	e.mu.Unlock()
	bySerial := map[string][]byte{}
	for _, c := range delivered {
		serial := store.SerialString(c.SerialNumber)
		if prev, ok := bySerial[serial]; ok && !bytes.Equal(prev, c.Raw) {
			errorf("two different certificates with serial %s were delivered", serial)
		}
		bySerial[serial] = c.Raw
		rec, err := e.base.Get(ctx, serial)
		if err != nil {
			errorf("certificate %s was delivered without a record: %v", serial, err)
			continue
		}
		if rec.Status != store.StatusIssued && rec.Status != store.StatusRevoked || rec.Withheld || !bytes.Equal(rec.CertDER, c.Raw) {
			errorf("certificate %s was delivered but its record is %s (withheld %v, same DER %v)", serial, rec.Status,
				rec.Withheld, bytes.Equal(rec.CertDER, c.Raw))
		}
		// On the Intune endpoint a certificate leaves only after Intune accepted its successNotification, and the
		// record must say so: the revocation sync revokes only certificates reported to Intune.
		if rec.Source == store.SourceSCEP && strings.EqualFold(rec.Endpoint, fxEndpointIntune) {
			if !rec.IntuneNotified {
				errorf("certificate %s of the Intune endpoint was delivered but its record does not show successNotification accepted", serial)
			}
			if !slices.ContainsFunc(e.intune.IssuedCertificates(), func(n intunefake.Issued) bool {
				return strings.EqualFold(n.SerialNumber, serial)
			}) {
				errorf("certificate %s of the Intune endpoint was delivered but Intune never accepted its successNotification", serial)
			}
		}
	}
	// Every certificate Intune was told about is durable in an issued record.
	for _, n := range e.intune.IssuedCertificates() {
		rec, err := e.base.Get(ctx, n.SerialNumber)
		if err != nil {
			errorf("Intune was notified of %s without a record: %v", n.SerialNumber, err)
			continue
		}
		if rec.Status != store.StatusIssued || rec.CertDER == nil || !strings.EqualFold(rec.SHA1, n.Thumbprint) {
			errorf("Intune was notified of %s but the record is %s (certificate stored %v)", n.SerialNumber, rec.Status, rec.CertDER != nil)
		}
	}
	// Records: unique certificates, certificates only on issued or revoked records, nothing lost or replaced.
	seen := map[[32]byte]string{}
	current := map[string]*store.Record{}
	for _, rec := range e.records(t) {
		current[rec.Serial] = rec
		if rec.CertDER == nil {
			continue
		}
		if rec.Status != store.StatusIssued && rec.Status != store.StatusRevoked {
			errorf("record %s holds a certificate but is %s", rec.Serial, rec.Status)
		}
		c, err := x509.ParseCertificate(rec.CertDER)
		if err != nil || store.SerialString(c.SerialNumber) != rec.Serial {
			errorf("record %s holds a certificate for another serial (%v)", rec.Serial, err)
			continue
		}
		sum := sha256.Sum256(rec.CertDER)
		if other, dup := seen[sum]; dup {
			errorf("records %s and %s hold the same certificate", other, rec.Serial)
		}
		seen[sum] = rec.Serial
	}
	e.journal.mu.Lock()
	defer e.journal.mu.Unlock()
	for _, b := range e.journal.bad {
		errorf("%s", b)
	}
	for serial, planned := range e.journal.planned {
		rec, ok := current[serial]
		if !ok {
			errorf("record %s was committed and is gone", serial)
			continue
		}
		if !bytes.Equal(rec.PlannedDER, planned) {
			errorf("record %s: planned certificate changed after insert", serial)
		}
	}
	for serial, der := range e.journal.certs {
		if rec, ok := current[serial]; !ok || !bytes.Equal(rec.CertDER, der) {
			errorf("record %s: stored certificate lost or replaced", serial)
		}
	}
	if strings.Contains(e.logs.String(), `"msg":"handler panic"`) {
		errorf("the handler panicked:\n%s", e.logs.String())
	}
	return out
}

// mustEnroll is a fresh enrollment that has to succeed: the service is still usable after the fault.
func (e *fxEnv) mustEnroll(t testing.TB, fl fxFlow) *x509.Certificate {
	t.Helper()
	out := e.send(t, fl.new(e, t))
	if !out.ok() {
		t.Fatalf("%s: a fresh enrollment after the fault failed: %s\n%s", fl.name, out, e.logs.String())
	}
	return out.cert
}

// ---- scenarios --------------------------------------------------------------------------------------------

// TestFaultStoreWriteFailures fails each store write of one enrollment in turn, with the write lost and with the
// write committed but its answer lost, then lets the client retry the same request.
func TestFaultStoreWriteFailures(t *testing.T) {
	for _, fl := range fxFlows {
		t.Run(fl.name, func(t *testing.T) {
			clean := newFxEnv(t, fxOptions{})
			before := clean.fs.Writes()
			clean.mustEnroll(t, fl)
			writes := clean.fs.Writes() - before
			clean.check(t)
			if writes < 2 {
				t.Fatalf("an enrollment made %d store writes; want at least the pending record with its claim, and the issued update", writes)
			}
			for n := 1; n <= writes; n++ {
				for _, commit := range []bool{false, true} {
					t.Run(fmt.Sprintf("write%d/commit=%t", n, commit), func(t *testing.T) {
						e := newFxEnv(t, fxOptions{})
						req := fl.new(e, t)
						e.fs.Inject(storetest.Fault{Nth: n, Commit: commit})
						first := e.send(t, req)
						e.fs.Clear()
						again := e.send(t, req)
						t.Logf("first answer %s; retry %s", first, again)
						if first.ok() && again.ok() && !first.cert.Equal(again.cert) {
							t.Errorf("the retry got another certificate than the first answer")
						}
						if first.ok() && !again.ok() {
							t.Errorf("the retry of a delivered enrollment failed: %s", again)
						}
						if n := e.tap.signatures(); n > 1 {
							t.Errorf("one request (and its retry) was signed %d times", n)
						}
						e.mustEnroll(t, fl)
						e.check(t)
					})
				}
			}
		})
	}
}

// TestFaultSigner breaks the CA signature: refused before the key signs, signed and then the next store write
// fails, signed with the answer lost (the Key Vault client retries), and answered with a wrong signature (the one
// verification of the CA signature, in the Key Vault client, refuses it).
func TestFaultSigner(t *testing.T) {
	for _, fl := range fxFlows {
		t.Run(fl.name+"/refused", func(t *testing.T) {
			e := newFxEnv(t, fxOptions{})
			e.tap.set(func() error { return errors.New("the HSM refused") }, nil)
			out := e.send(t, fl.new(e, t))
			e.tap.set(nil, nil)
			if out.ok() || e.tap.signatures() != 0 {
				t.Fatalf("a refused signature gave %s with %d signatures", out, e.tap.signatures())
			}
			recs := e.records(t)
			if len(recs) != 1 || recs[0].Status != store.StatusAbandoned || recs[0].Note == "" {
				t.Fatalf("want one abandoned record with a note, got %d (%v)", len(recs), statuses(recs))
			}
			if fl.name == "scep-intune" && len(e.intune.FailureReports()) != 1 {
				t.Errorf("Intune was not told about the failed issuance: %d failure reports", len(e.intune.FailureReports()))
			}
			e.mustEnroll(t, fl)
			e.check(t)
		})
		t.Run(fl.name+"/wrong-signature", func(t *testing.T) {
			e := newFxEnv(t, fxOptions{})
			e.tap.setCorrupt(true)
			out := e.send(t, fl.new(e, t))
			e.tap.setCorrupt(false)
			if out.ok() || e.tap.signatures() != 1 {
				t.Fatalf("a wrong signature gave %s with %d signatures; want no certificate", out, e.tap.signatures())
			}
			recs := e.records(t)
			if len(recs) != 1 || recs[0].Status != store.StatusAbandoned || recs[0].CertDER != nil ||
				!strings.Contains(recs[0].Note, "does not verify") {
				t.Fatalf("want one abandoned record without a certificate, noting the bad signature; got %v", statuses(recs))
			}
			if len(e.intune.IssuedCertificates()) != 0 {
				t.Fatal("Intune was notified of a certificate with a wrong signature")
			}
			e.mustEnroll(t, fl)
			e.check(t)
		})
		t.Run(fl.name+"/signed-then-write-refused-once", func(t *testing.T) {
			// Throttling (ServerBusy) refuses the issued write once: it is tried again, and the one signature issues.
			e := newFxEnv(t, fxOptions{})
			e.tap.set(nil, func() bool { e.fs.FailNthWrite(1, nil); return false })
			out := e.send(t, fl.new(e, t))
			e.tap.set(nil, nil)
			e.fs.Clear()
			if !out.ok() || e.tap.signatures() != 1 {
				t.Fatalf("got %s with %d signatures; want the certificate of the one signature", out, e.tap.signatures())
			}
			recs := e.records(t)
			if len(recs) != 1 || recs[0].Status != store.StatusIssued || !bytes.Equal(recs[0].CertDER, out.cert.Raw) {
				t.Fatalf("want one issued record with the delivered certificate, got %v", statuses(recs))
			}
			e.mustEnroll(t, fl)
			e.check(t)
		})
		t.Run(fl.name+"/signed-then-store-down", func(t *testing.T) {
			// The store refuses every write from the signature on, for longer than the issued write's deadline.
			e := newFxEnv(t, fxOptions{})
			e.tap.set(nil, func() bool { e.fs.Inject(storetest.Fault{}); return false })
			out := e.send(t, fl.new(e, t))
			e.tap.set(nil, nil)
			e.fs.Clear()
			if out.ok() || e.tap.signatures() != 1 {
				t.Fatalf("got %s with %d signatures; want no certificate after one signature", out, e.tap.signatures())
			}
			// The signed certificate never became durable: its record stays pending (the sweeper reports it and
			// it is revocable by serial), and nobody saw the certificate.
			recs := e.records(t)
			if len(recs) != 1 || recs[0].Status != store.StatusPending || recs[0].CertDER != nil {
				t.Fatalf("want one pending record without a certificate, got %v", statuses(recs))
			}
			if len(e.intune.IssuedCertificates()) != 0 {
				t.Fatal("Intune was notified of a certificate that is not durable")
			}
			e.mustEnroll(t, fl)
			e.check(t)
		})
		t.Run(fl.name+"/answer-lost", func(t *testing.T) {
			e := newFxEnv(t, fxOptions{})
			var lost atomic.Bool
			e.tap.set(nil, func() bool { return lost.CompareAndSwap(false, true) })
			out := e.send(t, fl.new(e, t))
			e.tap.set(nil, nil)
			if !out.ok() || e.tap.signatures() != 2 {
				t.Fatalf("got %s with %d signatures; want the retried signature to issue", out, e.tap.signatures())
			}
			e.check(t)
		})
	}
}

// TestFaultIntune fails each Intune call of a cold client (token, discovery, validateRequest, successNotification)
// with an error answer and, for the two Intune calls, with a dropped connection.
func TestFaultIntune(t *testing.T) {
	intune := fxFlows[1]
	cases := []struct {
		name  string
		route intunefake.Route
		fault intunefake.Fault
	}{
		{"token", intunefake.RouteToken, intunefake.Fault{Status: http.StatusUnauthorized,
			Body: `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`}},
		{"discovery", intunefake.RouteDiscovery, intunefake.Fault{Status: http.StatusForbidden,
			Body: `{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}`}},
		{"validate-500", intunefake.RouteValidate, intunefake.Fault{Status: http.StatusInternalServerError}},
		{"validate-drop", intunefake.RouteValidate, intunefake.Fault{Drop: true}},
		{"success-500", intunefake.RouteSuccess, intunefake.Fault{Status: http.StatusInternalServerError}},
		{"success-drop", intunefake.RouteSuccess, intunefake.Fault{Drop: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newFxEnv(t, fxOptions{})
			req := intune.new(e, t)
			e.intune.InjectFault(tc.route, tc.fault)
			first := e.send(t, req)
			e.intune.ClearFaults()
			if first.ok() {
				t.Fatalf("a certificate was delivered while Intune failed: %s", first)
			}
			recs := e.records(t)
			if tc.route == intunefake.RouteSuccess {
				// Signed and recorded, but Intune never accepted it: withheld and never delivered. Intune gave no
				// verdict, so the device was told 503, and its retry (the same message) is validated again and gets
				// that same certificate, notified and delivered once accepted: no second signature.
				if first.http != http.StatusServiceUnavailable {
					t.Fatalf("got %s, want 503 for a notification Intune did not answer", first)
				}
				if len(recs) != 1 || recs[0].Status != store.StatusIssued || !recs[0].Withheld || !recs[0].GateUndecided {
					t.Fatalf("want one withheld, undecided issued record, got %v", statuses(recs))
				}
				signs := e.tap.signatures()
				again := e.send(t, req)
				if !again.ok() || store.SerialString(again.cert.SerialNumber) != recs[0].Serial || e.tap.signatures() != signs {
					t.Fatalf("the retry after Intune recovered: %s with %d more signatures; want the withheld certificate, none",
						again, e.tap.signatures()-signs)
				}
			} else {
				// Validation failed closed: nothing was planned or signed; the retry goes through.
				if len(recs) != 0 || e.tap.signatures() != 0 {
					t.Fatalf("validation failed but %d records and %d signatures exist", len(recs), e.tap.signatures())
				}
				if again := e.send(t, req); !again.ok() {
					t.Fatalf("the retry after Intune recovered failed: %s", again)
				}
			}
			e.mustEnroll(t, intune)
			e.check(t)
		})
	}
}

// TestFaultContextCancelled cancels the request's context at every store call of an enrollment, and just before
// and just after the CA signature.
func TestFaultContextCancelled(t *testing.T) {
	for _, fl := range fxFlows {
		t.Run(fl.name, func(t *testing.T) {
			clean := newFxEnv(t, fxOptions{})
			var calls atomic.Int32
			clean.fs.OnCall(func(string) { calls.Add(1) })
			clean.mustEnroll(t, fl)
			clean.fs.Clear()
			steps := int(calls.Load())
			if steps < 2 {
				t.Fatalf("an enrollment made %d store calls", steps)
			}
			points := []string{"before-sign", "after-sign"}
			for k := 1; k <= steps; k++ {
				points = append(points, fmt.Sprintf("store-call-%d", k))
			}
			for _, p := range points {
				t.Run(p, func(t *testing.T) {
					e := newFxEnv(t, fxOptions{})
					switch p {
					case "before-sign":
						e.tap.set(func() error { e.cancelRequest(); return nil }, nil)
					case "after-sign":
						e.tap.set(nil, func() bool { e.cancelRequest(); return false })
					default:
						var k int
						fmt.Sscanf(p, "store-call-%d", &k)
						var n atomic.Int32
						e.fs.OnCall(func(string) {
							if int(n.Add(1)) == k {
								e.cancelRequest()
							}
						})
					}
					req := fl.new(e, t)
					first := e.send(t, req)
					e.fs.Clear()
					e.tap.set(nil, nil)
					again := e.send(t, req)
					t.Logf("first answer %s; retry %s", first, again)
					if first.ok() && again.ok() && !first.cert.Equal(again.cert) {
						t.Error("the retry got another certificate than the first answer")
					}
					e.mustEnroll(t, fl)
					e.check(t)
				})
			}
		})
	}
}

// TestFaultConcurrentDuplicates sends one request 16 times at once: it is signed once and every client that
// gets a certificate gets the same one.
func TestFaultConcurrentDuplicates(t *testing.T) {
	for _, fl := range fxFlows {
		t.Run(fl.name, func(t *testing.T) {
			e := newFxEnv(t, fxOptions{})
			req := fl.new(e, t)
			const n = 16
			outs := make([]fxOutcome, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range outs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					var err error
					if outs[i], err = e.sendErr(req); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
			var cert *x509.Certificate
			for _, o := range outs {
				if !o.ok() {
					// The others hear "in progress" (SCEP PENDING, REST 409) or get the replay.
					if o.status != loadgen.StatusPending && o.http != http.StatusConflict {
						t.Errorf("a duplicate got %s, want the certificate or in-progress", o)
					}
					continue
				}
				if cert != nil && !cert.Equal(o.cert) {
					t.Fatal("duplicates got different certificates")
				}
				cert = o.cert
			}
			if cert == nil {
				t.Fatalf("none of %d duplicates got the certificate: %v", n, outs)
			}
			if s := e.tap.signatures(); s != 1 {
				t.Fatalf("16 duplicates were signed %d times", s)
			}
			issued := 0
			for _, rec := range e.records(t) {
				if rec.Status == store.StatusIssued {
					issued++
				}
			}
			if issued != 1 || (fl.name == "scep-intune" && len(e.intune.IssuedCertificates()) != 1) {
				t.Fatalf("%d issued records, %d Intune notifications; want 1", issued, len(e.intune.IssuedCertificates()))
			}
			e.check(t)
		})
	}
}

func statuses(recs []*store.Record) []string {
	var out []string
	for _, r := range recs {
		s := string(r.Status)
		if r.Withheld {
			s += "(withheld)"
		}
		if r.CertDER != nil {
			s += "+cert"
		}
		out = append(out, s)
	}
	return out
}

// TestFaultAzuriteOutage stops Table Storage (a proxy in front of Azurite) while clients enroll: every request
// gets an answer within its own deadline (fxOutageDeadline) — 503 while the store is gone —, the process stays up
// and answers GET /, and enrollments succeed again by themselves once the store is back, with every delivered
// certificate durable.
func TestFaultAzuriteOutage(t *testing.T) {
	proxy := azuritetest.NewProxy(t)
	conn := proxy.ConnectionString()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := custody.InitLocal(dir, custody.LocalInitOptions{KeyType: "EC"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{"AZSCEP_MODE=local", fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", freePort(t)),
		"AZSCEP_TABLES_CONNECTION=" + conn, "AZSCEP_LOCAL_KEY_DIR=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	// The service's own Table Storage client, on the proxy, with a trip wire that stops the proxy in the middle
	// of the load run (at the seventh insert after it is armed), so that the outage hits requests in flight.
	tbl, err := tables.NewFromConnectionString(conn, cfg.TablesPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.EnsureTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	wire := &fxTripWire{Store: tbl, at: 7, trip: proxy.Stop}
	logs := &testca.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)), buildOptions{store: wire}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", cfg.Port)
	fxWaitHealthy(t, base, done)

	recipients, err := loadgen.FetchCACerts(ctx, nil, base+"/api/scep/static")
	if err != nil {
		t.Fatal(err)
	}
	caCert := recipients[len(recipients)-1]
	built, err := loadgen.BuildSCEP(loadgen.SCEPConfig{Path: "/api/scep/static", Recipients: recipients,
		Challenge: config.LocalStaticChallenge, Keys: fxDeviceKeys(t), CommonName: "outage-"}, 40)
	if err != nil {
		t.Fatal(err)
	}
	run := func(reqs []*loadgen.SCEPRequest) *loadgen.Result {
		t.Helper()
		res, err := loadgen.Run(ctx, loadgen.Options{BaseURL: base, Concurrency: 4, RequestTimeout: fxOutageDeadline,
			KeepBodies: true}, loadgen.Requests(reqs))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	var delivered []*x509.Certificate
	collect := func(reqs []*loadgen.SCEPRequest, res *loadgen.Result) {
		for i, body := range res.Bodies {
			if res.Latencies != nil && body != nil {
				if s, _, err := loadgen.CertRepStatus(body); err == nil && s == loadgen.StatusSuccess {
					c, err := reqs[i].VerifyCertRep(body, []*x509.Certificate{caCert})
					if err != nil {
						t.Errorf("SUCCESS answer does not open: %v", err)
						continue
					}
					delivered = append(delivered, c)
				}
			}
		}
	}

	// Before: the store is up.
	res := run(built[:8])
	if res.Errors != 0 {
		t.Fatalf("before the outage: %s %v", res, res.ErrorKinds)
	}
	collect(built[:8], res)

	// During: a load run starts and the store vanishes under it.
	wire.armed.Store(true)
	during := run(built[8:24])
	if !wire.tripped.Load() {
		t.Fatal("the store never went away")
	}
	collect(built[8:24], during)
	t.Logf("load run across the outage: %s, statuses %v", during, during.Statuses)
	if during.Statuses[0] != 0 {
		t.Fatalf("%d requests got no answer within their %s deadline during the outage: %v", during.Statuses[0], fxOutageDeadline, during.ErrorKinds)
	}
	for status, n := range during.Statuses {
		if status != http.StatusOK && status != http.StatusServiceUnavailable {
			t.Errorf("%d requests answered HTTP %d during the outage; want 200 or 503", n, status)
		}
	}
	if during.Statuses[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("no request saw the outage: %v", during.Statuses)
	}
	if resp, err := http.Get(base + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / during the outage: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	outageReq := built[24:28]
	res = run(outageReq)
	if res.Statuses[http.StatusServiceUnavailable] != len(outageReq) {
		t.Fatalf("with the store down: %v, want only 503", res.Statuses)
	}

	// After: the store is back and the service recovers without help.
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	next := 28
	for {
		res = run(built[next : next+1])
		collect(built[next:next+1], res)
		next++
		if res.Errors == 0 {
			break
		}
		if time.Now().After(deadline) || next == len(built) {
			t.Fatalf("the service did not recover after the store came back: %v\n%s", res.ErrorKinds, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The requests refused during the outage go through when retried.
	res = run(outageReq)
	collect(outageReq, res)
	if res.Errors != 0 {
		t.Fatalf("retries of the refused requests: %s %v", res, res.ErrorKinds)
	}

	st := tbl
	serials := map[string]bool{}
	for _, c := range delivered {
		serial := store.SerialString(c.SerialNumber)
		if serials[serial] {
			t.Errorf("serial %s delivered twice", serial)
		}
		serials[serial] = true
		rec, err := st.Get(context.Background(), serial)
		if err != nil || rec.Status != store.StatusIssued || !bytes.Equal(rec.CertDER, c.Raw) {
			t.Errorf("delivered certificate %s is not durable: %v", serial, err)
		}
	}
	if len(delivered) < 8+1+len(outageReq) {
		t.Fatalf("only %d certificates delivered", len(delivered))
	}
	select {
	case err := <-done:
		t.Fatalf("serve stopped during the outage: %v", err)
	default:
	}
	if strings.Contains(logs.String(), `"msg":"handler panic"`) {
		t.Fatalf("the handler panicked:\n%s", logs.String())
	}
}

// fxOutageDeadline is how long a client of TestFaultAzuriteOutage waits for its answer. A request the outage catches
// after its signature tries its issued write again for that write's whole deadline (15 s, issuance's writeTimeout)
// before it answers 503, after its pending record's insert (at most 10 s, the store's call timeout).
const fxOutageDeadline = 30 * time.Second

// fxWaitHealthy waits until GET /api/health answers 200.
func fxWaitHealthy(t testing.TB, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("serve stopped during start-up: %v", err)
		default:
		}
		if resp, err := http.Get(base + "/api/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("service did not become healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fxLyingStore acknowledges writes it never makes: the broken store the invariants exist to catch.
type fxLyingStore struct {
	store.Store
	skipInsert, skipIssued, skipNotified bool
}

func (l *fxLyingStore) Insert(ctx context.Context, r *store.Record) error {
	if l.skipInsert {
		return nil
	}
	return l.Store.Insert(ctx, r)
}

func (l *fxLyingStore) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	if l.skipInsert {
		return store.Binding{Key: key, Serial: r.Serial, ETag: "lie"}, nil
	}
	return l.Store.InsertBound(ctx, key, prev, r)
}

func (l *fxLyingStore) Update(ctx context.Context, r *store.Record, from store.Status) error {
	if l.skipIssued && r.Status == store.StatusIssued {
		return nil
	}
	if l.skipNotified && from == store.StatusIssued && r.IntuneNotified {
		return nil
	}
	return l.Store.Update(ctx, r, from)
}

// TestFaultInvariantsCatchBrokenStores proves the suite's checks are not vacuous: a store that acknowledges the
// pending insert without making it shows up as a signature without a committed pending record, one that
// acknowledges the move to issued without making it as a delivered certificate without an issued record, and one
// that acknowledges Intune's acceptance without recording it as an Intune certificate delivered un-notified.
func TestFaultInvariantsCatchBrokenStores(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lie   fxLyingStore
		want  string
		flow  fxFlow
		enrol bool
	}{
		{"pending-insert-not-made", fxLyingStore{skipInsert: true}, "without a committed pending record", fxFlows[0], false},
		{"issued-update-not-made", fxLyingStore{skipIssued: true}, "was delivered but its record is pending", fxFlows[2], true},
		{"notified-update-not-made", fxLyingStore{skipNotified: true}, "does not show successNotification accepted", fxFlows[1], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lie := tc.lie
			e := newFxEnv(t, fxOptions{wrap: func(s store.Store) store.Store { lie.Store = s; return &lie }})
			out := e.send(t, tc.flow.new(e, t))
			if out.ok() != tc.enrol {
				t.Fatalf("enrollment through the lying store: %s", out)
			}
			problems := strings.Join(e.problems(t), "\n")
			if !strings.Contains(problems, tc.want) {
				t.Fatalf("the invariants did not catch the broken store; problems:\n%s", problems)
			}
		})
	}
}

// fxTripWire calls trip once, during the at-th insert of a pending record (with or without its idempotency
// claim) after it is armed.
type fxTripWire struct {
	store.Store
	at      int32
	trip    func()
	armed   atomic.Bool
	tripped atomic.Bool
	n       atomic.Int32
}

func (w *fxTripWire) Insert(ctx context.Context, r *store.Record) error {
	w.check()
	return w.Store.Insert(ctx, r)
}

func (w *fxTripWire) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	w.check()
	return w.Store.InsertBound(ctx, key, prev, r)
}

func (w *fxTripWire) check() {
	if w.armed.Load() && w.n.Add(1) == w.at && w.tripped.CompareAndSwap(false, true) {
		w.trip()
	}
}
