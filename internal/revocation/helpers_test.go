package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
	"github.com/azscep/azscep/internal/testca"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// tracker remembers the last successfully written version of every revocation work item, so tests can see the
// states (uploaded, foreign) that store.RevocationQueue only writes and never lists.
type tracker struct {
	store.Store
	mu    sync.Mutex
	items map[string]store.RevocationRequest
}

func (t *tracker) EnqueueRevocation(ctx context.Context, r *store.RevocationRequest) error {
	err := t.Store.EnqueueRevocation(ctx, r)
	if err == nil {
		t.remember(r)
	}
	return err
}

func (t *tracker) EnqueueRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	err := t.Store.EnqueueRevocations(ctx, rs)
	if err == nil {
		for _, r := range rs {
			t.remember(r)
		}
	}
	return err
}

func (t *tracker) UpdateRevocation(ctx context.Context, r *store.RevocationRequest) error {
	err := t.Store.UpdateRevocation(ctx, r)
	if err == nil {
		t.remember(r)
	}
	return err
}

func (t *tracker) UpdateRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	err := t.Store.UpdateRevocations(ctx, rs)
	if err == nil {
		for _, r := range rs {
			t.remember(r)
		}
	}
	return err
}

func (t *tracker) remember(r *store.RevocationRequest) {
	t.mu.Lock()
	t.items[r.RequestContext] = *r
	t.mu.Unlock()
}

func (t *tracker) item(requestContext string) (store.RevocationRequest, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	it, ok := t.items[requestContext]
	return it, ok
}

type fixtureOptions struct {
	tables        bool          // Azurite tables instead of memstore
	coolDown      time.Duration // the fake's cool-down; default one hour
	callTimeout   time.Duration // the Intune client's per-attempt timeout; default 5 s
	rejectUnknown bool          // the fake answers 400 to an upload naming a requestContext it does not hold
}

// fixture is one CA's store, the strict Intune fake, and the real Intune client wired to it.
type fixture struct {
	ca       *testca.CA
	caConfig string
	leafKey  *ecdsa.PrivateKey
	backend  store.Store // memstore or tables
	faults   *storetest.FaultStore
	st       *tracker // what the syncer uses: tracker → faults → backend
	fake     *intunefake.Server
	client   *intune.Client
	clock    *testca.Clock
	logs     *testca.LogBuffer

	mu       sync.Mutex
	notified []string // serials passed to OnRevoked
}

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	if o.coolDown == 0 {
		o.coolDown = time.Hour
	}
	if o.callTimeout == 0 {
		o.callTimeout = 5 * time.Second
	}
	ca := testca.New(t, testca.Options{})
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var backend store.Store
	if o.tables {
		ts, err := tables.NewFromConnectionString(azuritetest.ConnectionString(t), "")
		if err != nil {
			t.Fatal(err)
		}
		if err := ts.EnsureTables(context.Background()); err != nil {
			t.Fatalf("EnsureTables: %v", err)
		}
		backend = ts
	} else {
		backend = memstore.New()
	}
	faults := storetest.NewFaultStore(backend)
	fake, err := intunefake.NewServer(intunefake.Options{CoolDown: o.coolDown, RejectUnknownRequestContext: o.rejectUnknown})
	if err != nil {
		t.Fatalf("starting the Intune fake: %v", err)
	}
	t.Cleanup(fake.Close)
	cred, err := intune.NewCredential(intune.CredentialConfig{
		Kind:                     intune.CredentialClientSecret,
		TenantID:                 fake.TenantID(),
		ClientID:                 fake.ClientID(),
		ClientSecret:             fake.ClientSecret(),
		AuthorityHost:            fake.AuthorityHost(),
		DisableInstanceDiscovery: true,
		HTTPClient:               fake.Client(),
		Retry:                    policy.RetryOptions{MaxRetries: -1},
	})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	client, err := intune.New(intune.Config{
		Credential:             cred,
		TenantID:               fake.TenantID(),
		ProviderNameAndVersion: "azscep-test/1.0",
		GraphBase:              fake.GraphBase(),
		HTTPClient:             fake.Client(),
		CallTimeout:            o.callTimeout,
		RetryBackoff:           time.Millisecond,
	})
	if err != nil {
		t.Fatalf("intune.New: %v", err)
	}
	return &fixture{
		ca:       ca,
		caConfig: intune.CAConfiguration(ca.Cert),
		leafKey:  leafKey,
		backend:  backend,
		faults:   faults,
		st:       &tracker{Store: faults, items: map[string]store.RevocationRequest{}},
		fake:     fake,
		client:   client,
		clock:    testca.NewClock(time.Now()),
		logs:     &testca.LogBuffer{},
	}
}

// syncer builds a Syncer over the fixture; mutate adjusts the configuration.
func (f *fixture) syncer(t testing.TB, mutate func(*revocation.SyncConfig)) *revocation.Syncer {
	t.Helper()
	cfg := revocation.SyncConfig{
		Store:           f.st,
		Intune:          f.client,
		CAConfiguration: f.caConfig,
		IssuerName:      f.ca.Cert.Subject.String(),
		OnRevoked: func(serials []string) {
			f.mu.Lock()
			f.notified = append(f.notified, serials...)
			f.mu.Unlock()
		},
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil)),
		Now:    f.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := revocation.NewSyncer(cfg)
	if err != nil {
		t.Fatalf("NewSyncer: %v", err)
	}
	return s
}

func (f *fixture) notifiedSerials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.notified)
}

// issue inserts n issued records whose DER is a real certificate signed by the fixture's CA.
func (f *fixture) issue(t testing.TB, n int) []*store.Record {
	t.Helper()
	out := make([]*store.Record, 0, n)
	for i := range n {
		out = append(out, f.insert(t, store.StatusIssued, true, fmt.Sprintf("device-%d", i)))
	}
	return out
}

// insert stores one record in status st. withDER controls whether a certificate (CertDER for issued records,
// PlannedDER for pending and abandoned ones) is attached.
func (f *fixture) insert(t testing.TB, st store.Status, withDER bool, cn string) *store.Record {
	t.Helper()
	cert := f.ca.Issue(t, f.leafKey.Public(), testca.LeafOptions{Subject: pkix.Name{CommonName: cn}})
	serial := store.SerialString(cert.SerialNumber)
	s1, s256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
	r := &store.Record{
		Serial: serial, Status: st, Issuer: f.ca.Cert.Subject.String(), Subject: cert.Subject.String(),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Source: store.SourceSCEP, Endpoint: "intune",
		Requester: "intune", Profile: "device", DeviceID: cn, IntuneSerial: serial, CAConfiguration: f.caConfig,
	}
	if withDER {
		if st == store.StatusIssued {
			r.CertDER = cert.Raw
			r.SHA1 = strings.ToUpper(hex.EncodeToString(s1[:]))
			r.SHA256 = strings.ToUpper(hex.EncodeToString(s256[:]))
			r.IntuneNotified = true
		} else {
			r.PlannedDER = cert.Raw
		}
	}
	if err := f.backend.Insert(context.Background(), r); err != nil {
		t.Fatalf("inserting record: %v", err)
	}
	return r
}

// queue puts a revocation request for serial in the fake's queue, routed to this CA like a request for a
// certificate we reported at successNotification.
func (f *fixture) queue(t testing.TB, serial string) string {
	t.Helper()
	return f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: serial, IssuerName: f.ca.Cert.Subject.String(),
		CAConfiguration: f.caConfig})
}

func (f *fixture) queueRaw(t testing.TB, req intunefake.RevocationRequest) string {
	t.Helper()
	rc, err := f.fake.EnqueueRevocation(req)
	if err != nil {
		t.Fatalf("queueing a revocation in the fake: %v", err)
	}
	return rc
}

// run performs one sync run and fails the test on a returned error.
func (f *fixture) run(t testing.TB, s *revocation.Syncer) store.SyncRun {
	t.Helper()
	run, err := s.Run(context.Background(), "timer")
	if err != nil {
		t.Fatalf("Run: %v (run %+v)", err, run)
	}
	return run
}

func (f *fixture) record(t testing.TB, serial string) *store.Record {
	t.Helper()
	r, err := f.backend.Get(context.Background(), serial)
	if err != nil {
		t.Fatalf("Get(%s): %v", serial, err)
	}
	return r
}

// uploadsFor lists the results the fake accepted for one request context.
func (f *fixture) uploadsFor(requestContext string) []intunefake.UploadedResult {
	var out []intunefake.UploadedResult
	for _, u := range f.fake.UploadedResults() {
		if u.RequestContext == requestContext {
			out = append(out, u)
		}
	}
	return out
}

// fakeState is the fake's view of one queued request.
func (f *fixture) fakeState(t testing.TB, requestContext string) intunefake.RevocationItem {
	t.Helper()
	it, ok := f.fake.Revocation(requestContext)
	if !ok {
		t.Fatalf("the fake does not know request %.12s…", requestContext)
	}
	return it
}

// wantRevokedByIntune checks the record the request named: revoked for cessationOfOperation by Intune, with the
// request context as the reference and a revocation time inside [from, to] (second resolution).
func (f *fixture) wantRevokedByIntune(t testing.TB, serial, requestContext string, from, to time.Time) {
	t.Helper()
	r := f.record(t, serial)
	if r.Status != store.StatusRevoked || r.RevocationReason != 5 || r.RevokedBy != "intune" || r.RevocationRef != requestContext {
		t.Errorf("record %s: status %s reason %d by %q ref %.12q; want revoked, 5 (cessationOfOperation), intune, the request context",
			serial, r.Status, r.RevocationReason, r.RevokedBy, r.RevocationRef)
	}
	if r.RevokedAt.Before(from.Truncate(time.Second)) || r.RevokedAt.After(to) {
		t.Errorf("record %s revoked at %v, want within [%v, %v]", serial, r.RevokedAt, from, to)
	}
}

// wantIndexed checks that the revocation index (what the CRL is built from) lists serial with reason.
func (f *fixture) wantIndexed(t testing.TB, serial string, reason int) {
	t.Helper()
	list, err := f.backend.ListRevoked(context.Background())
	if err != nil {
		t.Fatalf("ListRevoked: %v", err)
	}
	for _, e := range list {
		if e.Serial == serial {
			if e.Reason != reason {
				t.Errorf("index entry %s has reason %d, want %d", serial, e.Reason, reason)
			}
			return
		}
	}
	t.Errorf("revocation index lacks %s", serial)
}

func (f *fixture) workState(t testing.TB, requestContext string) store.WorkState {
	t.Helper()
	it, ok := f.st.item(requestContext)
	if !ok {
		t.Fatalf("request %.12s… was never persisted", requestContext)
	}
	return it.State
}

// wireResult is one element of an uploadRevocationResults body exactly as sent.
type wireResult struct {
	RequestContext string          `json:"requestContext"`
	Succeeded      bool            `json:"succeeded"`
	ErrorCode      json.RawMessage `json:"errorCode"`
	ErrorMessage   json.RawMessage `json:"errorMessage"`
}

// acceptedUploadBodies decodes the bodies of the upload calls the fake answered normally (200, no fault).
func (f *fixture) acceptedUploadBodies(t testing.TB) [][]wireResult {
	t.Helper()
	var out [][]wireResult
	for _, e := range f.fake.Requests(intunefake.RouteUpload) {
		if e.Status != 200 || e.Fault || e.Reject != "" {
			continue
		}
		var body struct {
			Results []wireResult `json:"results"`
		}
		if err := json.Unmarshal(e.Body, &body); err != nil {
			t.Fatalf("upload body %s: %v", e.Body, err)
		}
		out = append(out, body.Results)
	}
	return out
}

// counts is the comparable part of a SyncRun.
type counts struct{ Resumed, Downloaded, Foreign, Revoked, NotFound, Failed, Uploaded int }

func countsOf(r store.SyncRun) counts {
	return counts{r.Resumed, r.Downloaded, r.Foreign, r.Revoked, r.NotFound, r.Failed, r.Uploaded}
}

func wantRun(t testing.TB, got store.SyncRun, want counts) {
	t.Helper()
	if c := countsOf(got); c != want {
		t.Errorf("run counts = %+v, want %+v (errors %q)", c, want, got.Errors)
	}
}

// backends runs fn against memstore and against Table Storage on Azurite.
func backends(t *testing.T, fn func(t *testing.T, tables bool)) {
	t.Run("memstore", func(t *testing.T) { t.Parallel(); fn(t, false) })
	t.Run("tables", func(t *testing.T) { t.Parallel(); fn(t, true) })
}

// crashAtWrite wraps st so that the process dies at its nth write: that write fails (landing first when commit),
// no write lands after it, and ctx ends — the set-up of the crash-at-each-write tests.
func crashAtWrite(st store.Store, n int, commit bool) (*storetest.FaultStore, context.Context, context.CancelFunc) {
	f := storetest.NewFaultStore(st)
	f.Inject(storetest.Fault{Nth: n, Commit: commit})
	ctx, cancel := context.WithCancel(context.Background())
	f.OnCall(func(method string) {
		if slices.Contains(storetest.WriteMethods, method) && f.Writes() == n {
			f.Inject(storetest.Fault{})
			cancel()
		}
	})
	return f, ctx, cancel
}
