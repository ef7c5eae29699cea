package admin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

const (
	aliceOID = "11111111-2222-3333-4444-555555555555"
	aliceUPN = "alice@contoso.example"
)

// stubSyncer stands in for revocation.Syncer, which has its own tests.
type stubSyncer struct {
	mu       sync.Mutex
	triggers []string
	run      store.SyncRun
	err      error
}

func (s *stubSyncer) Start(ctx context.Context, trigger string) (store.SyncRun, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.triggers = append(s.triggers, trigger)
	done := make(chan struct{})
	close(done)
	return s.run, done, s.err
}

func (s *stubSyncer) Limit() time.Duration { return 5 * time.Minute }

type env struct {
	fake   *entrafake.Server
	graph  *entrafake.Graph
	ca     *testca.CA
	st     *memstore.Store
	faults *storetest.FaultStore
	srv    *httptest.Server
	logs   *testca.LogBuffer
	sync   *stubSyncer
	admin  string // token with Certificates.Manage
	// graphClock is the directory's clock: it moves only when a test advances it past Graph answers' cache lifetime.
	graphClock *testca.Clock

	mu      sync.Mutex
	revoked []string
}

func newEnv(t *testing.T, mutate func(*admin.Config)) *env {
	t.Helper()
	graph := entrafake.NewGraph(t)
	fake := entrafake.New(t, entrafake.WithGraph(graph))
	graphClock := testca.NewClock(time.Now())
	dir, err := entra.NewDirectory(entra.GraphConfig{Credential: graph.Credential(), BaseURL: graph.URL(),
		Scope: entrafake.GraphScope, HTTPClient: graph.Client(), APIAppID: fake.ClientID, Clock: graphClock.Now})
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	v, err := entra.NewVerifier(entra.Config{
		TenantID:      fake.TenantID,
		Audiences:     []string{fake.ClientID, fake.AppIDURI},
		AuthorityHost: fake.Authority(),
		HTTPClient:    fake.Client(),
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	e := &env{fake: fake, graph: graph, ca: testca.New(t, testca.Options{}), st: memstore.New(), logs: &testca.LogBuffer{},
		sync: &stubSyncer{}, graphClock: graphClock}
	e.faults = storetest.NewFaultStore(e.st)
	cfg := admin.Config{
		Verifier: v,
		Store:    e.faults,
		Sync:     e.sync,
		OnRevoked: func(serials []string) {
			e.mu.Lock()
			e.revoked = append(e.revoked, serials...)
			e.mu.Unlock()
		},
		Logger:         slog.New(slog.NewJSONHandler(e.logs, nil)),
		UserClientApps: []string{strings.ToLower(fake.ClientAppID)},
		Accounts:       dir,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := admin.New(cfg)
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	e.admin = fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage})
	return e
}

func (e *env) notified() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.revoked)
}

func (e *env) do(t *testing.T, method, path, token, body string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return testca.Do(t, e.srv.Client(), req)
}

type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// wantProblem checks an RFC 9457 answer with status and code.
func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, code string) problem {
	t.Helper()
	var p problem
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/problem+json" ||
		json.Unmarshal(body, &p) != nil || p.Code != code || p.Status != status {
		t.Errorf("%s %s: %d %s %s; want %d problem+json with code %q", resp.Request.Method, resp.Request.URL.Path,
			resp.StatusCode, resp.Header.Get("Content-Type"), body, status, code)
	}
	return p
}

// insert stores a record; withCert attaches a real certificate signed by the env's CA.
func (e *env) insert(t *testing.T, r store.Record, withCert bool) *store.Record {
	t.Helper()
	if r.Serial == "" || withCert {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cert := e.ca.Issue(t, key.Public(), testca.LeafOptions{Subject: pkix.Name{CommonName: "leaf"}})
		r.Serial = store.SerialString(cert.SerialNumber)
		if withCert {
			r.CertDER = cert.Raw
			r.Subject = cert.Subject.String()
			r.NotBefore, r.NotAfter = cert.NotBefore, cert.NotAfter
		}
	}
	if r.Status == "" {
		r.Status = store.StatusIssued
	}
	if r.Source == "" {
		r.Source = store.SourceAPI
	}
	if err := e.st.Insert(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

type page struct {
	Items        []admin.CertificateView `json:"items"`
	Continuation string                  `json:"continuation"`
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Subject: "CN=x"}, true)
	paths := []struct{ method, path string }{
		{http.MethodGet, "/api/certificates"},
		{http.MethodGet, "/api/certificates/" + rec.Serial},
		{http.MethodPost, "/api/certificates/" + rec.Serial + "/revoke"},
		{http.MethodPost, "/api/certificates/revocation-sync"},
	}
	for _, p := range paths {
		resp, body := e.do(t, p.method, p.path, "", "")
		wantProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
		if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("%s %s without a token: WWW-Authenticate %q, want Bearer", p.method, p.path, got)
		}

		resp, body = e.do(t, p.method, p.path, "not.a.token", "")
		wantProblem(t, resp, body, http.StatusUnauthorized, entra.CodeInvalidToken)
		if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
			t.Errorf("bad token: WWW-Authenticate %q", got)
		}

		resp, body = e.do(t, p.method, p.path, e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCSRSelfService}), "")
		wantProblem(t, resp, body, http.StatusForbidden, entra.CodeInsufficientScope)
		if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
			t.Errorf("missing role: WWW-Authenticate %q", got)
		}

		resp, body = e.do(t, p.method, p.path, e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage}, entrafake.Expired()), "")
		wantProblem(t, resp, body, http.StatusUnauthorized, entra.CodeInvalidToken)
	}
	if r, _ := e.st.Get(t.Context(), rec.Serial); r.Status != store.StatusIssued {
		t.Error("an unauthenticated request revoked a certificate")
	}
	if len(e.sync.triggers) != 0 {
		t.Error("an unauthenticated request ran the sync")
	}
}

// When the tenant's keys cannot be fetched the API answers 503 with Retry-After, never 401 and never success.
func TestIdentityUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetFault(http.StatusInternalServerError)
	resp, body := e.do(t, http.MethodGet, "/api/certificates", e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, nil)
	base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	var laptops []string
	for i := range 7 {
		r := e.insert(t, store.Record{Subject: fmt.Sprintf("CN=Laptop-%d,O=Contoso", i), Requester: "alice",
			DeviceID: fmt.Sprintf("dev-%d", i), Created: base.Add(time.Duration(i) * time.Hour)}, false)
		laptops = append(laptops, r.Serial)
	}
	phone := e.insert(t, store.Record{Subject: "CN=phone", Requester: "bob", DeviceID: "dev-p", Created: base.Add(24 * time.Hour),
		Status: store.StatusPending}, false)
	tablet := e.insert(t, store.Record{Subject: "CN=tablet", Requester: "bob", DeviceID: "dev-t", Created: base.Add(25 * time.Hour)}, true)
	if _, _, err := revocation.Revoke(t.Context(), e.st, tablet.Serial, 1, "admin:x", "", base.Add(26*time.Hour)); err != nil {
		t.Fatal(err)
	}

	search := func(query string) []string {
		t.Helper()
		resp, body := e.do(t, http.MethodGet, "/api/certificates?"+query, e.admin, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("search %q: %d %s", query, resp.StatusCode, body)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range p.Items {
			out = append(out, it.Serial)
			if it.PEM != "" {
				t.Errorf("search result carries a PEM")
			}
		}
		if p.Continuation != "" {
			t.Fatalf("search %q returned a continuation on a small result", query)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { s = slices.Clone(s); slices.Sort(s); return s }

	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"subject=laptop", sorted(laptops...)},
		{"subject=" + url.QueryEscape("laptop-3,o=contoso"), sorted(laptops[3])},
		{"device=dev-2", sorted(laptops[2])},
		{"requester=bob", sorted(phone.Serial, tablet.Serial)},
		{"status=pending", sorted(phone.Serial)},
		{"status=revoked", sorted(tablet.Serial)},
		{"requester=alice&since=" + base.Add(2*time.Hour).Format(time.RFC3339) + "&until=" + base.Add(5*time.Hour).Format(time.RFC3339),
			sorted(laptops[2:5]...)},
		{"requester=nobody", nil},
	} {
		if got := search(tt.query); !slices.Equal(got, tt.want) {
			t.Errorf("search %q = %v, want %v", tt.query, got, tt.want)
		}
	}

	// The revoked record's view says why and by whom.
	resp, body := e.do(t, http.MethodGet, "/api/certificates?status=revoked", e.admin, "")
	var p page
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &p) != nil || len(p.Items) != 1 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if v := p.Items[0]; v.Status != "revoked" || v.RevocationReason != "keyCompromise" || v.RevokedBy != "admin:x" || v.RevokedAt.IsZero() {
		t.Errorf("revoked view %+v", v)
	}
}

// More matches than one page: the continuation walks every match exactly once.
func TestSearchPagination(t *testing.T) {
	e := newEnv(t, nil)
	want := map[string]bool{}
	for i := range 8 {
		r := e.insert(t, store.Record{Subject: fmt.Sprintf("CN=host-%d", i), Requester: "svc"}, false)
		want[r.Serial] = true
	}
	e.insert(t, store.Record{Subject: "CN=other", Requester: "someone-else"}, false)
	seen := map[string]bool{}
	pages := 0
	q := "requester=svc&limit=3"
	for {
		resp, body := e.do(t, http.MethodGet, "/api/certificates?"+q, e.admin, "")
		var p page
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &p) != nil {
			t.Fatalf("page %d: %d %s", pages, resp.StatusCode, body)
		}
		pages++
		if len(p.Items) > 3 {
			t.Errorf("page of %d items with limit 3", len(p.Items))
		}
		for _, it := range p.Items {
			if seen[it.Serial] || !want[it.Serial] {
				t.Errorf("page %d returned %s (seen before: %t, expected at all: %t)", pages, it.Serial, seen[it.Serial], want[it.Serial])
			}
			seen[it.Serial] = true
		}
		if p.Continuation == "" {
			break
		}
		if pages > 10 {
			t.Fatal("continuation never ends")
		}
		q = "requester=svc&limit=3&continuation=" + url.QueryEscape(p.Continuation)
	}
	if pages != 3 || len(seen) != 8 {
		t.Errorf("%d pages, %d records; want 3 pages covering 8", pages, len(seen))
	}
}

func TestSearchBadQueries(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct{ query, code string }{
		{"status=active", "bad_status"},
		{"status=REVOKED", "bad_status"},
		{"limit=0", "bad_limit"},
		{"limit=201", "bad_limit"},
		{"limit=ten", "bad_limit"},
		{"since=yesterday", "bad_time"},
		{"until=2026-13-01T00:00:00Z", "bad_time"},
		{"since=2026-04-01", "bad_time"},
		{"since=0000-01-01T00:00:00%2B01:00", "bad_time"},
		{"until=9999-12-31T23:00:00-02:00", "bad_time"},
		{"until=1600-12-31T23:59:59Z", "bad_time"},
		{"continuation=%21%21%21", "bad_continuation"},
		{"continuation=eyJhIjoiIn0", "bad_continuation"},
	} {
		resp, body := e.do(t, http.MethodGet, "/api/certificates?"+tt.query, e.admin, "")
		wantProblem(t, resp, body, http.StatusBadRequest, tt.code)
	}
	// Limit bounds are inclusive, and so are the times Table Storage holds.
	for _, q := range []string{"limit=1", "limit=200", "since=1601-01-01T00:00:00Z", "until=9999-12-31T23:59:59Z"} {
		if resp, body := e.do(t, http.MethodGet, "/api/certificates?"+q, e.admin, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", q, resp.StatusCode, body)
		}
	}
}

func TestGet(t *testing.T) {
	e := newEnv(t, nil)
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := e.insert(t, store.Record{Requester: "alice", DeviceID: "dev-1", Profile: "device", Endpoint: "api",
		RenewedFrom: "0A1B", ChainStarted: started}, true)
	for _, spelling := range []string{rec.Serial, strings.ToLower(rec.Serial), "00" + rec.Serial} {
		resp, body := e.do(t, http.MethodGet, "/api/certificates/"+spelling, e.admin, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s", spelling, resp.StatusCode, body)
		}
		var v admin.CertificateView
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		if v.Serial != rec.Serial || v.Status != "issued" || v.Subject != rec.Subject || v.DeviceID != "dev-1" ||
			v.Requester != "alice" || !v.NotAfter.Equal(rec.NotAfter) || v.RevocationReason != "" ||
			v.RenewedFrom != "0A1B" || !v.ChainStarted.Equal(started) {
			t.Errorf("view %+v", v)
		}
		block, _ := pem.Decode([]byte(v.PEM))
		if block == nil || block.Type != "CERTIFICATE" {
			t.Fatalf("PEM %q", v.PEM)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil || store.SerialString(cert.SerialNumber) != rec.Serial {
			t.Errorf("PEM certificate: %v", err)
		}
		if strings.Contains(string(body), "plannedDer") || strings.Contains(string(body), "PlannedDER") {
			t.Error("the planned certificate leaks into the view")
		}
	}

	resp, body := e.do(t, http.MethodGet, "/api/certificates/0ABCDEF0123", e.admin, "")
	wantProblem(t, resp, body, http.StatusNotFound, "certificate_not_found")
	resp, body = e.do(t, http.MethodGet, "/api/certificates/not-hex", e.admin, "")
	wantProblem(t, resp, body, http.StatusBadRequest, "bad_serial")

	// A store outage is a 503 with Retry-After, not a 404.
	e.faults.FailMethod(storetest.MethodGet, nil)
	resp, body = e.do(t, http.MethodGet, "/api/certificates/"+rec.Serial, e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on 503")
	}
}

// keyHash is the Record.PublicKey of the certificate rec carries.
func keyHash(t *testing.T, rec *store.Record) string {
	t.Helper()
	cert, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	return store.KeyHash(cert.PublicKey)
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Requester: "alice"}, true)
	rec.PublicKey = keyHash(t, rec) // as the issuer records it
	if err := e.st.Update(t.Context(), rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	path := "/api/certificates/" + strings.ToLower(rec.Serial) + "/revoke"
	before := time.Now().Truncate(time.Second)

	resp, body := e.do(t, http.MethodPost, path, e.admin, `{"reason":"keyCompromise","comment":"laptop stolen"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	wantBy := "admin:" + aliceUPN + " (" + aliceOID + ")"
	var v admin.CertificateView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if v.Serial != rec.Serial || v.Status != "revoked" || v.RevocationReason != "keyCompromise" || v.RevokedBy != wantBy ||
		v.RevocationRef != "laptop stolen" || v.AlreadyRevoked || v.PEM != "" {
		t.Errorf("answer %+v", v)
	}
	stored, _ := e.st.Get(t.Context(), rec.Serial)
	if stored.Status != store.StatusRevoked || stored.RevocationReason != 1 || stored.RevokedBy != wantBy ||
		stored.RevocationRef != "laptop stolen" || stored.RevokedAt.Before(before) || stored.RevokedAt.After(time.Now()) {
		t.Errorf("stored %+v", stored)
	}
	list, _ := e.st.ListRevoked(t.Context())
	if len(list) != 1 || list[0].Serial != rec.Serial || list[0].Reason != 1 {
		t.Errorf("index %+v", list)
	}
	// keyCompromise marks the key, so that no other certificate for it renews, nor does a renewal get it.
	if mark, err := e.st.Compromised(t.Context(), rec.PublicKey); err != nil || mark.Serial != rec.Serial {
		t.Errorf("compromised-key mark %+v, %v; want one naming %s", mark, err, rec.Serial)
	}
	if got := e.notified(); !slices.Equal(got, []string{rec.Serial}) {
		t.Errorf("OnRevoked got %v", got)
	}
	audit := e.logs.Records("audit: certificate revoked")
	if len(audit) != 1 || audit[0]["by"] != wantBy || audit[0]["serial"] != rec.Serial || audit[0]["reason"] != "keyCompromise" ||
		audit[0]["already_revoked"] != false {
		t.Errorf("audit lines %v", audit)
	}

	// Again, with another reason: 200, already revoked, the record does not change; this instance's caches are told
	// again, as the call bumped the generation (and may have marked the key).
	resp, body = e.do(t, http.MethodPost, path, e.admin, `{"reason":"superseded"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("second revoke: %d %s", resp.StatusCode, body)
	}
	v = admin.CertificateView{}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if !v.AlreadyRevoked || v.RevocationReason != "keyCompromise" || v.RevokedBy != wantBy {
		t.Errorf("second answer %+v, want alreadyRevoked with the first revocation", v)
	}
	if again, _ := e.st.Get(t.Context(), rec.Serial); again.ETag != stored.ETag {
		t.Error("the second revoke rewrote the record")
	}
	if got := e.notified(); !slices.Equal(got, []string{rec.Serial, rec.Serial}) {
		t.Errorf("OnRevoked got %v, want the serial once per call", got)
	}
	audit = e.logs.Records("audit: certificate revoked")
	if len(audit) != 2 || audit[1]["already_revoked"] != true || audit[1]["by"] != wantBy {
		t.Errorf("audit lines %v", audit)
	}
}

// TestRevokeWhenTheGenerationBumpFails: the index, the first generation bump and the record are written, then the
// final bump (telling the other instances' OCSP caches) fails. The admin gets a 503 to retry, but the revocation is
// durable, so this instance's caches are told and the audit line is written now; the retry completes the bump and
// tells them again.
func TestRevokeWhenTheGenerationBumpFails(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Requester: "alice"}, true)
	path := "/api/certificates/" + rec.Serial + "/revoke"
	e.faults.Inject(storetest.Fault{Method: storetest.MethodPutMeta, Nth: 2})

	resp, body := e.do(t, http.MethodPost, path, e.admin, `{"reason":"keyCompromise"}`)
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusRevoked {
		t.Fatalf("record %s after the failed bump, want revoked", stored.Status)
	}
	if got := e.notified(); !slices.Equal(got, []string{rec.Serial}) {
		t.Errorf("OnRevoked got %v after a durable revocation whose bump failed, want the serial", got)
	}
	if audit := e.logs.Records("audit: certificate revoked"); len(audit) != 1 || audit[0]["already_revoked"] != false {
		t.Errorf("audit lines %v", audit)
	}

	resp, body = e.do(t, http.MethodPost, path, e.admin, `{"reason":"keyCompromise"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("retry: %d %s", resp.StatusCode, body)
	}
	if got := e.notified(); !slices.Equal(got, []string{rec.Serial, rec.Serial}) {
		t.Errorf("OnRevoked got %v, want the serial once per call", got)
	}
	if raw, _, err := e.st.GetMeta(t.Context(), "revocation-generation"); err != nil || !strings.Contains(string(raw), rec.Serial) {
		t.Errorf("the retry did not bump the revocation generation: %s %v", raw, err)
	}
}

func TestRevokeVariants(t *testing.T) {
	e := newEnv(t, nil)

	// No body: reason unspecified.
	rec := e.insert(t, store.Record{}, true)
	resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if r, _ := e.st.Get(t.Context(), rec.Serial); r.Status != store.StatusRevoked || r.RevocationReason != 0 {
		t.Errorf("no-body revoke stored %s reason %d", r.Status, r.RevocationReason)
	}

	// Numeric reason; an app caller is audited by its app ID.
	rec = e.insert(t, store.Record{}, true)
	app := e.fake.MintApp([]string{entra.RoleCertificatesManage})
	resp, body = e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", app, `{"reason":"5"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if r, _ := e.st.Get(t.Context(), rec.Serial); r.RevocationReason != 5 || r.RevokedBy != "admin:app:"+e.fake.ClientAppID {
		t.Errorf("app revoke stored reason %d by %q", r.RevocationReason, r.RevokedBy)
	}
	// Any reason but keyCompromise leaves the key unmarked (the record has none: the certificate's key is used).
	if mark, err := e.st.Compromised(t.Context(), keyHash(t, rec)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cessationOfOperation marked the key: %+v, %v", mark, err)
	}

	// A pending record with a planned certificate can be revoked; one without cannot.
	planned := e.insert(t, store.Record{Status: store.StatusPending, PlannedDER: []byte{0x30, 0x00}}, false)
	resp, body = e.do(t, http.MethodPost, "/api/certificates/"+planned.Serial+"/revoke", e.admin, `{"reason":"superseded"}`)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("planned: %d %s", resp.StatusCode, body)
	}
	bare := e.insert(t, store.Record{Status: store.StatusPending}, false)
	resp, body = e.do(t, http.MethodPost, "/api/certificates/"+bare.Serial+"/revoke", e.admin, `{"reason":"superseded"}`)
	wantProblem(t, resp, body, http.StatusNotFound, "certificate_not_found")

	target := e.insert(t, store.Record{}, true)
	revokePath := "/api/certificates/" + target.Serial + "/revoke"
	for _, tt := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"reason":"certificateHold"}`, http.StatusBadRequest, "bad_reason"},
		{`{"reason":"cACompromise"}`, http.StatusBadRequest, "bad_reason"},
		{`{"reason":"8"}`, http.StatusBadRequest, "bad_reason"},
		{`{"reason":"lost"}`, http.StatusBadRequest, "bad_reason"},
		{`{"reason":`, http.StatusBadRequest, "bad_json"},
		{`{"reason":1}`, http.StatusBadRequest, "bad_json"},
		{`{"reason":"keyCompromise","why":"x"}`, http.StatusBadRequest, "bad_json"},
		{`[]`, http.StatusBadRequest, "bad_json"},
		{`{"comment":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge, "request_too_large"},
	} {
		resp, body := e.do(t, http.MethodPost, revokePath, e.admin, tt.body)
		wantProblem(t, resp, body, tt.status, tt.code)
	}
	if r, _ := e.st.Get(t.Context(), target.Serial); r.Status != store.StatusIssued {
		t.Errorf("a refused revoke changed the record to %s", r.Status)
	}

	resp, body = e.do(t, http.MethodPost, "/api/certificates/0ABCDEF0123/revoke", e.admin, `{"reason":"superseded"}`)
	wantProblem(t, resp, body, http.StatusNotFound, "certificate_not_found")
	resp, body = e.do(t, http.MethodPost, "/api/certificates/xyz/revoke", e.admin, `{"reason":"superseded"}`)
	wantProblem(t, resp, body, http.StatusBadRequest, "bad_serial")

	// Store outage: 503, the record unchanged.
	e.faults.FailMethod(storetest.MethodAddRevoked, nil)
	resp, body = e.do(t, http.MethodPost, revokePath, e.admin, `{"reason":"superseded"}`)
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if r, _ := e.st.Get(t.Context(), target.Serial); r.Status != store.StatusIssued {
		t.Errorf("record is %s after a failed revoke", r.Status)
	}
}

func TestManualSync(t *testing.T) {
	e := newEnv(t, nil)
	started := time.Now().UTC().Truncate(time.Second)
	e.sync.run = store.SyncRun{ID: "abc123", Started: started, Trigger: "admin"}
	resp, body := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/certificates/revocation-sync/abc123" {
		t.Errorf("Location %q", loc)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"id": "abc123", "trigger": "admin", "state": "running", "started": started.Format(time.RFC3339)} {
		if got[k] != want {
			t.Errorf("answer[%q] = %v, want %v (%s)", k, got[k], want, body)
		}
	}
	if !slices.Equal(e.sync.triggers, []string{"admin"}) {
		t.Errorf("syncer triggers %v", e.sync.triggers)
	}
	if audit := e.logs.Records("audit: manual revocation sync"); len(audit) != 1 || audit[0]["by"] != aliceUPN+" ("+aliceOID+")" ||
		audit[0]["run"] != "abc123" {
		t.Errorf("audit lines %v", audit)
	}

	e.sync.err = revocation.ErrRunning
	resp, body = e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
	wantProblem(t, resp, body, http.StatusConflict, "sync_running")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("409 without Retry-After")
	}

	// A run that never started (its lease could not be read: the store is down) did nothing and recorded nothing:
	// 503 with Retry-After, like any other store outage.
	e.sync.run, e.sync.err = store.SyncRun{ID: "never", Started: started}, fmt.Errorf("reading sync lease: %w", store.ErrUnavailable)
	resp, body = e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Location") != "" {
		t.Errorf("503: Retry-After %q, Location %q; want a Retry-After and no Location", resp.Header.Get("Retry-After"), resp.Header.Get("Location"))
	}
	if audit := e.logs.Records("audit: manual revocation sync"); len(audit) != 3 || audit[2]["started"] != false {
		t.Errorf("audit lines %v, want the refused attempts too", audit)
	}

	off := newEnv(t, func(c *admin.Config) { c.Sync = nil })
	resp, body = off.do(t, http.MethodPost, "/api/certificates/revocation-sync", off.admin, "")
	wantProblem(t, resp, body, http.StatusNotFound, "sync_disabled")
}

// TestManualSyncLocationIsTheStatusPath: the 202's Location is the run's status resource whatever spelling of the
// route the POST used: the route is matched with its slashes trimmed, so a Location built from the request path
// ("…/revocation-sync//abc123", "/api/certificates//revocation-sync/abc123") would point where GET answers 404.
func TestManualSyncLocationIsTheStatusPath(t *testing.T) {
	e := newEnv(t, nil)
	e.sync.run = store.SyncRun{ID: "abc123", Started: time.Now().UTC(), Trigger: "admin"}
	for _, path := range []string{"/api/certificates/revocation-sync/", "/api/certificates/revocation-sync%2F%2F",
		"/api/certificates/%2Frevocation-sync", "/api/certificates/revocation-sync%2F"} {
		resp, body := e.do(t, http.MethodPost, path, e.admin, "")
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, body)
		}
		if loc := resp.Header.Get("Location"); loc != "/api/certificates/revocation-sync/abc123" {
			t.Errorf("POST %s: Location %q, want /api/certificates/revocation-sync/abc123", path, loc)
		}
	}
}

// gatedIntune is an Intune whose download waits until the test opens the gate, and then offers one request for a
// serial this CA never issued.
type gatedIntune struct {
	entered, gate chan struct{}
	once          sync.Once
	mu            sync.Mutex
	uploaded      []intune.RevocationResult
}

func (g *gatedIntune) DownloadRevocationRequests(ctx context.Context, max int) ([]intune.RevocationRequest, error) {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []intune.RevocationRequest{{RequestContext: "rc-1", SerialNumber: "7ABCDEF012345678", CAConfiguration: "ca-config"}}, nil
}

func (g *gatedIntune) UploadRevocationResults(ctx context.Context, results []intune.RevocationResult) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.uploaded = append(g.uploaded, results...)
	return nil
}

// doneSyncer keeps the done channel of each run it starts, so a test can wait for the run's end.
type doneSyncer struct {
	*revocation.Syncer
	done chan (<-chan struct{})
}

func (d *doneSyncer) Start(ctx context.Context, trigger string) (store.SyncRun, <-chan struct{}, error) {
	run, done, err := d.Syncer.Start(ctx, trigger)
	if err == nil {
		d.done <- done
	}
	return run, done, err
}

// TestManualSyncDetached: POST answers 202 with the status resource as soon as the run has started, while the run
// is still waiting on Intune; the status says running (from the store, as any instance would read it), a second
// POST is 409, and once Intune answers the run finishes on its own, not cut by the end of the request that
// started it, and the status gives its outcome. A reader may follow the run but not start one.
func TestManualSyncDetached(t *testing.T) {
	in := &gatedIntune{entered: make(chan struct{}), gate: make(chan struct{})}
	ds := &doneSyncer{done: make(chan (<-chan struct{}), 1)}
	e := newEnv(t, func(c *admin.Config) {
		s, err := revocation.NewSyncer(revocation.SyncConfig{Store: c.Store, Intune: in, CAConfiguration: "ca-config",
			IssuerName: "CN=Test CA"})
		if err != nil {
			t.Fatal(err)
		}
		ds.Syncer = s
		c.Sync = ds
	})
	t.Cleanup(func() {
		select {
		case <-in.gate:
		default:
			close(in.gate) // a failed test must not leave the run waiting
		}
	})
	resp, body := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST while the run waits on Intune: %d %s, want 202", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	var started admin.SyncRunView
	if err := json.Unmarshal(body, &started); err != nil || started.ID == "" || started.State != admin.RunRunning ||
		started.Trigger != "admin" || loc != "/api/certificates/revocation-sync/"+started.ID {
		t.Fatalf("202 answer %s (Location %q)", body, loc)
	}
	done := <-ds.done
	<-in.entered // the run is past its start and waits on the download, the request long answered

	status := func(tok string) admin.SyncRunView {
		t.Helper()
		resp, body := e.do(t, http.MethodGet, loc, tok, "")
		var v admin.SyncRunView
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
			t.Fatalf("GET %s: %d %s", loc, resp.StatusCode, body)
		}
		return v
	}
	if v := status(e.admin); v.State != admin.RunRunning || v.ID != started.ID || !v.Finished.IsZero() {
		t.Errorf("status while running = %+v", v)
	}
	if r, err := e.st.RunByID(t.Context(), started.ID); err != nil || !r.Finished.IsZero() {
		t.Errorf("the started run's record = %+v, %v; want it recorded, unfinished", r, err)
	}
	resp, body = e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
	wantProblem(t, resp, body, http.StatusConflict, "sync_running")

	reader := e.fake.MintUser("66666666-7777-8888-9999-000000000000", "bob@contoso.example", []string{entra.RoleCertificatesRead})
	if v := status(reader); v.State != admin.RunRunning {
		t.Errorf("reader's status = %+v", v)
	}
	resp, body = e.do(t, http.MethodPost, "/api/certificates/revocation-sync", reader, "")
	wantProblem(t, resp, body, http.StatusForbidden, admin.CodeManageRequired)
	resp, body = e.do(t, http.MethodPost, loc, e.admin, "")
	wantProblem(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")

	close(in.gate)
	<-done
	v := status(reader)
	if v.State != admin.RunFinished || v.Finished.IsZero() || v.Downloaded != 1 || v.NotFound != 1 || v.Uploaded != 1 ||
		len(v.Errors) != 0 || v.Error != "" {
		t.Errorf("status after the run = %+v, want finished: 1 downloaded, not found and uploaded, no errors", v)
	}
	if len(in.uploaded) != 1 {
		t.Errorf("uploaded %v", in.uploaded)
	}
	// The lease is free again.
	resp, body = e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST after the run: %d %s", resp.StatusCode, body)
	}
	<-<-ds.done

	resp, body = e.do(t, http.MethodGet, "/api/certificates/revocation-sync/0123456789abcdef", e.admin, "")
	wantProblem(t, resp, body, http.StatusNotFound, "sync_run_not_found")
}

// TestManualSyncNotStarted: a lease that cannot be read, or a start that cannot be recorded, is 503: the run never
// started, nothing is recorded, and the lease is free for the next attempt.
func TestManualSyncNotStarted(t *testing.T) {
	in := &gatedIntune{entered: make(chan struct{}), gate: make(chan struct{})}
	close(in.gate)
	ds := &doneSyncer{done: make(chan (<-chan struct{}), 1)}
	e := newEnv(t, func(c *admin.Config) {
		s, err := revocation.NewSyncer(revocation.SyncConfig{Store: c.Store, Intune: in, CAConfiguration: "ca-config"})
		if err != nil {
			t.Fatal(err)
		}
		ds.Syncer = s
		c.Sync = ds
	})
	for _, method := range []string{storetest.MethodGetMeta, storetest.MethodRecordRun} {
		e.faults.FailMethod(method, store.ErrUnavailable)
		resp, body := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
		e.faults.Clear()
		wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
		if runs, err := e.st.Runs(t.Context(), 0); err != nil || len(runs) != 0 {
			t.Errorf("%s failing: runs recorded %+v (%v)", method, runs, err)
		}
		select {
		case <-in.entered:
			t.Fatalf("%s failing: the run went on to Intune", method)
		default:
		}
	}
	resp, body := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST once the store answers: %d %s (the lease was left taken?)", resp.StatusCode, body)
	}
	<-<-ds.done
}

func TestMethodsAndRoutes(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{}, true)
	for _, tt := range []struct {
		method, path, allow string
	}{
		{http.MethodPost, "/api/certificates", "GET"},
		{http.MethodDelete, "/api/certificates", "GET"},
		{http.MethodDelete, "/api/certificates/revocation-sync", "GET, POST"},
		{http.MethodPut, "/api/certificates/" + rec.Serial, "GET"},
		{http.MethodPost, "/api/certificates/" + rec.Serial, "GET"},
		{http.MethodGet, "/api/certificates/" + rec.Serial + "/revoke", "POST"},
		{http.MethodDelete, "/api/certificates/" + rec.Serial + "/revoke", "POST"},
	} {
		resp, body := e.do(t, tt.method, tt.path, e.admin, "")
		wantProblem(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := resp.Header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
	for _, p := range []string{"/api/certificates/" + rec.Serial + "/unrevoke", "/api/certificates/a/b/c"} {
		resp, body := e.do(t, http.MethodPost, p, e.admin, "")
		wantProblem(t, resp, body, http.StatusNotFound, "not_found")
	}
	if r, _ := e.st.Get(t.Context(), rec.Serial); r.Status != store.StatusIssued {
		t.Error("a refused method changed the record")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := admin.New(admin.Config{Store: memstore.New()}); err == nil {
		t.Error("New accepted a config without a verifier")
	}
	if _, err := admin.New(admin.Config{Verifier: fakeVerifier{}}); err == nil {
		t.Error("New accepted a config without a store")
	}
	// Forgetting the account reader fails closed: trusting tokens' accounts must be asked for.
	if _, err := admin.New(admin.Config{Verifier: fakeVerifier{}, Store: memstore.New()}); err == nil {
		t.Error("New accepted a config without an account reader")
	}
	if _, err := admin.New(admin.Config{Verifier: fakeVerifier{}, Store: memstore.New(), NoDirectory: true}); err != nil {
		t.Errorf("New refused NoDirectory: %v", err)
	}
}

type fakeVerifier struct{}

func (fakeVerifier) Verify(context.Context, []string) (*entra.Caller, error) {
	return nil, errors.New("no")
}

// hangUpStore makes the admin's client hang up right after the revocation's index entry is written, and gives
// the server time to notice before the record is written.
type hangUpStore struct {
	store.Store
	hangUp func()
}

func (s hangUpStore) AddRevoked(ctx context.Context, e store.Revoked) (store.Revoked, error) {
	kept, err := s.Store.AddRevoked(ctx, e)
	s.hangUp()
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	return kept, err
}

// A revocation that has started finishes although the admin's client hangs up between its two writes: otherwise
// the CRL lists the certificate while OCSP and the console still say issued.
func TestRevokeOutlivesTheClient(t *testing.T) {
	ctx, hangUp := context.WithCancel(t.Context())
	e := newEnv(t, func(c *admin.Config) { c.Store = hangUpStore{Store: c.Store, hangUp: hangUp} })
	rec := e.insert(t, store.Record{Requester: "alice"}, true)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/api/certificates/"+rec.Serial+"/revoke",
		strings.NewReader(`{"reason":"keyCompromise"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the client's request did not end when it hung up")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stored, err := e.st.Get(t.Context(), rec.Serial)
		if err == nil && stored.Status == store.StatusRevoked {
			if stored.RevocationReason != 1 {
				t.Errorf("reason %d, want keyCompromise", stored.RevocationReason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("record %s after the client hung up, want revoked like the CRL index", stored.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An admin revocation interrupted after its index entry (keyCompromise) and retried with another reason
// (superseded) keeps the first reason, which the CRL publishes; the answer and the audit line say that one too.
func TestRevokeRetryAfterAnInterruptionAuditsTheKeptReason(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Requester: "alice"}, true)
	path := "/api/certificates/" + rec.Serial + "/revoke"
	e.faults.Inject(storetest.Fault{Method: storetest.MethodUpdate, Err: store.ErrUnavailable})
	if resp, body := e.do(t, http.MethodPost, path, e.admin, `{"reason":"keyCompromise"}`); resp.StatusCode == http.StatusOK {
		t.Fatalf("first revoke answered %s through a failing record write", body)
	}
	e.faults.Clear()
	resp, body := e.do(t, http.MethodPost, path, e.admin, `{"reason":"superseded"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"keyCompromise"`) {
		t.Fatalf("retry: %d %s, want 200 naming keyCompromise", resp.StatusCode, body)
	}
	audit := e.logs.Records("audit: certificate revoked")
	if len(audit) != 1 || audit[0]["reason"] != "keyCompromise" {
		t.Errorf("audit lines %v, want one naming keyCompromise", audit)
	}
}

// The revoke body says its reason once and plainly, and a body whose length was not given (which the Functions
// host may have dropped) is refused rather than read as "no reason": the reason is published and cannot change.
func TestRevokeBodyIsStrict(t *testing.T) {
	e := newEnv(t, nil)
	for _, body := range []string{
		`{"reason":"keyCompromise"} trailing`,
		`{"reason":"superseded"}{"reason":"keyCompromise"}`,
		`{"REASON":"keyCompromise"}`,
		`{"reason":"superseded","reason":"keyCompromise"}`,
		`{"reason":1}`,
		`{"reason":null}`,
		`null`,
		`["keyCompromise"]`,
		`{"reason":"keyCompromise","note":"x"}`,
	} {
		rec := e.insert(t, store.Record{Requester: "alice"}, true)
		resp, got := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin, body)
		wantProblem(t, resp, got, http.StatusBadRequest, "bad_json")
		if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued {
			t.Errorf("body %s revoked the certificate", body)
		}
	}

	// Length not given: chunked over the wire, or a POST without Content-Length (what the host forwards when it
	// dropped a chunked body), served directly.
	rec := e.insert(t, store.Record{Requester: "alice"}, true)
	path := "/api/certificates/" + rec.Serial + "/revoke"
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+path,
		io.MultiReader(strings.NewReader(`{"reason":"keyCompromise"}`))) // unknown length: sent chunked
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, got := testca.Do(t, e.srv.Client(), req)
	wantProblem(t, resp, got, http.StatusLengthRequired, "length_required")
	bare := httptest.NewRequest(http.MethodPost, path, nil)
	bare.Header.Set("Authorization", "Bearer "+e.admin)
	w := httptest.NewRecorder()
	e.srv.Config.Handler.ServeHTTP(w, bare)
	if w.Code != http.StatusLengthRequired {
		t.Errorf("POST without Content-Length: %d %s, want 411", w.Code, w.Body)
	}
	if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued {
		t.Error("revoked without a body of known length")
	}

	// The comment is audited, cut at whole characters.
	rec = e.insert(t, store.Record{Requester: "alice"}, true)
	resp, got = e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin,
		`{"reason":"keyCompromise","comment":"`+strings.Repeat("é", 200)+`"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, got)
	}
	audit := e.logs.Records("audit: certificate revoked")
	if len(audit) == 0 {
		t.Fatal("no audit line")
	}
	comment, _ := audit[len(audit)-1]["comment"].(string)
	if len(comment) != 256 || comment != strings.Repeat("é", 128) {
		t.Errorf("audited comment %q (%d bytes), want the first 128 characters", comment, len(comment))
	}
}

// Search values become literals in the store's filter; over-long ones are the caller's error (400), not an
// internal error from the service refusing the filter.
func TestSearchValueBounded(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.do(t, http.MethodGet, "/api/certificates?subject="+strings.Repeat("%27", 2000), e.admin, "")
	wantProblem(t, resp, body, http.StatusBadRequest, "bad_query")
}

// TestUserTokensOnlyFromAllowedClientApps: Entra puts an admin's Certificates.Manage role into the token of any
// client application the admin (or the tenant) consented to. A user token obtained by a client that is not on the
// list is refused before anything is read or revoked; app-only tokens carry a role assigned to that very
// application and stay accepted; "*" accepts every client.
func TestUserTokensOnlyFromAllowedClientApps(t *testing.T) {
	e := newEnv(t, nil)
	serial := e.insert(t, store.Record{Subject: "CN=x"}, true).Serial
	other := entrafake.NewGUID()
	stranger := e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage}, entrafake.WithClaim("azp", other))
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/certificates", ""},
		{http.MethodGet, "/api/certificates/" + serial, ""},
		{http.MethodPost, "/api/certificates/" + serial + "/revoke", `{"reason":"keyCompromise"}`},
		{http.MethodPost, "/api/certificates/revocation-sync", ""},
	} {
		resp, body := e.do(t, c.method, c.path, stranger, c.body)
		wantProblem(t, resp, body, http.StatusForbidden, admin.CodeClientApp)
	}
	if got := e.notified(); len(got) != 0 {
		t.Fatalf("revoked %v for a client that is not allowed", got)
	}
	if rec, err := e.st.Get(t.Context(), serial); err != nil || rec.Status != store.StatusIssued {
		t.Fatalf("record after refused revoke: %+v, %v; want still issued", rec, err)
	}
	if len(e.sync.triggers) != 0 {
		t.Fatalf("sync ran for a client that is not allowed: %v", e.sync.triggers)
	}
	// The listed client (the console's) and app-only tokens get through.
	if resp, body := e.do(t, http.MethodGet, "/api/certificates/"+serial, e.admin, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("listed client: %d %s", resp.StatusCode, body)
	}
	app := e.fake.MintApp([]string{entra.RoleCertificatesManage}, entrafake.WithClaim("azp", other))
	if resp, body := e.do(t, http.MethodGet, "/api/certificates/"+serial, app, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("app-only token of another client: %d %s", resp.StatusCode, body)
	}

	anyClient := newEnv(t, func(c *admin.Config) { c.UserClientApps, c.AnyUserClientApp = nil, true })
	serial = anyClient.insert(t, store.Record{Subject: "CN=y"}, true).Serial
	stranger = anyClient.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage}, entrafake.WithClaim("azp", other))
	if resp, body := anyClient.do(t, http.MethodGet, "/api/certificates/"+serial, stranger, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("any client allowed: %d %s", resp.StatusCode, body)
	}
}

// TestGuestsRefusedUnlessAllowed: a guest (B2B) account holding Certificates.Manage — say through a group that
// includes B2B members — neither reads nor revokes, as on /api/csr, unless AZSCEP_ADMIN_ALLOW_GUESTS admits guests.
func TestGuestsRefusedUnlessAllowed(t *testing.T) {
	roles := []string{entra.RoleCertificatesManage}
	for _, allow := range []bool{false, true} {
		e := newEnv(t, func(c *admin.Config) { c.AllowGuests = allow })
		rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
		guest := e.fake.MintUser(aliceOID, "mallory_evil.example#EXT#@contoso.example", roles, entrafake.Guest(entrafake.NewGUID()))
		resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", guest, `{"reason":"keyCompromise"}`)
		stored, _ := e.st.Get(t.Context(), rec.Serial)
		if !allow {
			wantProblem(t, resp, body, http.StatusForbidden, admin.CodeGuest)
			if stored.Status != store.StatusIssued {
				t.Errorf("a refused guest revoked %s", rec.Serial)
			}
			resp, body = e.do(t, http.MethodGet, "/api/certificates", guest, "")
			wantProblem(t, resp, body, http.StatusForbidden, admin.CodeGuest)
			continue
		}
		if resp.StatusCode != http.StatusOK || stored.Status != store.StatusRevoked {
			t.Errorf("guests allowed: revoke %d %s, record %s", resp.StatusCode, body, stored.Status)
		}
	}
}

// TestAdminAccountReread: an administrator's token is only as good as the account behind it now: once the account is
// disabled, or its sessions revoked, the token they still hold neither reads nor revokes; so with an application an
// administrator disabled.
func TestAdminAccountReread(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*entrafake.User)
		status int
		code   string
	}{
		{"disabled", func(u *entrafake.User) { u.Enabled = false }, http.StatusForbidden, httpx.CodeAccountDisabled},
		{"sessions revoked", func(u *entrafake.User) { u.SessionsValidFrom = time.Now().Add(time.Minute) },
			http.StatusUnauthorized, httpx.CodeSessionsRevoked},
		// A guest by Graph's userType although the token carries no guest signal (acct not configured, no idp).
		{"guest in the directory", func(u *entrafake.User) { u.Guest = true }, http.StatusForbidden, httpx.CodeGuest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
			e.graph.UpdateUser(aliceOID, tc.change)
			resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin, `{"reason":"keyCompromise"}`)
			wantProblem(t, resp, body, tc.status, tc.code)
			resp, body = e.do(t, http.MethodGet, "/api/certificates", e.admin, "")
			wantProblem(t, resp, body, tc.status, tc.code)
			if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued || len(e.notified()) != 0 {
				t.Fatalf("a refused administrator revoked %s", rec.Serial)
			}
			// An app-only token is compared with its service principal, which is enabled.
			app := e.fake.MintApp([]string{entra.RoleCertificatesManage})
			if resp, body := e.do(t, http.MethodGet, "/api/certificates/"+rec.Serial, app, ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("app-only token: %d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("application whose role was removed", func(t *testing.T) {
		e := newEnv(t, nil)
		rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
		app := e.fake.MintApp([]string{entra.RoleCertificatesManage})
		e.graph.RemoveAppRole(e.fake.AppObjectID, entra.RoleCertificatesManage)
		resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", app, `{"reason":"keyCompromise"}`)
		wantProblem(t, resp, body, http.StatusForbidden, httpx.CodeRoleRemoved)
		if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued {
			t.Fatalf("an application without the role revoked %s", rec.Serial)
		}
	})
	t.Run("disabled application", func(t *testing.T) {
		e := newEnv(t, nil)
		rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
		app := e.fake.MintApp([]string{entra.RoleCertificatesManage})
		e.graph.PutServicePrincipal(e.fake.AppObjectID, false)
		resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", app, `{"reason":"keyCompromise"}`)
		wantProblem(t, resp, body, http.StatusForbidden, httpx.CodeAccountDisabled)
		if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued {
			t.Fatalf("a disabled application revoked %s", rec.Serial)
		}
	})
}

// TestUserRoleReread: a user's app role is re-read like an application's. Once an administrator takes
// Certificates.Manage from a user, the token the user still holds (it carries the role for up to an hour) is refused
// when the cached answer expires, for reads and revocations alike; while the answer is cached, admin requests cost
// no Graph call; and when Graph cannot answer, nothing is allowed.
func TestUserRoleReread(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
	if resp, body := e.do(t, http.MethodGet, "/api/certificates", e.admin, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}
	calls := len(e.graph.Requests())
	if resp, body := e.do(t, http.MethodGet, "/api/certificates/"+rec.Serial, e.admin, ""); resp.StatusCode != http.StatusOK ||
		len(e.graph.Requests()) != calls {
		t.Fatalf("get: %d %s, Graph calls %d → %d; want the cached answers", resp.StatusCode, body, calls, len(e.graph.Requests()))
	}
	var asked bool
	for _, r := range e.graph.Requests() {
		asked = asked || r.Path == "/v1.0/users/"+aliceOID+"/appRoleAssignments"
	}
	if !asked {
		t.Fatalf("the user's app role assignments were not read: %v", e.graph.Requests())
	}

	e.graph.RemoveAppRole(aliceOID, entra.RoleCertificatesManage)
	e.graphClock.Advance(entra.DefaultPositiveTTL)
	resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin, `{"reason":"keyCompromise"}`)
	wantProblem(t, resp, body, http.StatusForbidden, httpx.CodeRoleRemoved)
	resp, body = e.do(t, http.MethodGet, "/api/certificates", e.admin, "")
	wantProblem(t, resp, body, http.StatusForbidden, httpx.CodeRoleRemoved)
	if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued || len(e.notified()) != 0 {
		t.Fatalf("a user whose role was removed revoked %s", rec.Serial)
	}

	// The role given back through a group the user is a direct member of counts (a new token is read again at once).
	group := entrafake.NewGUID()
	e.graph.AssignAppRole(group, entra.RoleCertificatesManage)
	e.graph.AddGroupMember(group, aliceOID)
	e.graphClock.Advance(entra.DefaultNegativeTTL)
	if resp, body := e.do(t, http.MethodGet, "/api/certificates", e.admin, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("role through a group: %d %s", resp.StatusCode, body)
	}

	// Graph down once the cached answers have expired: refused with 503, never allowed.
	e.graphClock.Advance(entra.DefaultPositiveTTL)
	e.graph.SetFault(entrafake.Fault{Status: http.StatusInternalServerError})
	resp, body = e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin, `{"reason":"keyCompromise"}`)
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	resp, body = e.do(t, http.MethodGet, "/api/certificates", e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued {
		t.Fatalf("revoked %s while Graph was down", rec.Serial)
	}
}

// TestUserRoleUnreadable: only the user's role assignments cannot be read (the identity lacks Directory.Read.All):
// refused with 503, never allowed on the account check alone.
func TestUserRoleUnreadable(t *testing.T) {
	e := newEnv(t, nil)
	// The API's service principal and the user's account are read; the assignments are refused.
	assignments := "/v1.0/users/" + aliceOID + "/appRoleAssignments"
	e.graph.SetFault(entrafake.Fault{Status: http.StatusForbidden, Path: assignments})
	resp, body := e.do(t, http.MethodGet, "/api/certificates", e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if reqs := e.graph.Requests(); !slices.ContainsFunc(reqs, func(r entrafake.Request) bool { return r.Path == assignments }) {
		t.Fatalf("Graph calls %v, want the user's appRoleAssignments asked", reqs)
	}
}

// TestReadOnlyRole: Certificates.Read reads everything the admin API shows, and changes nothing: every request that is
// not a GET (revoke, sync, any other method) is 403 manage_role_required before it reaches a route, for users and
// applications alike, and the refusal is logged with who asked. Certificates.Manage implies Read. A token carrying
// both, whose Manage Graph no longer confirms, is a reader.
func TestReadOnlyRole(t *testing.T) {
	const bobOID, bobUPN = "66666666-7777-8888-9999-000000000000", "bob@contoso.example"
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Subject: "CN=x"}, true)
	reader := e.fake.MintUser(bobOID, bobUPN, []string{entra.RoleCertificatesRead})
	me := func(tok string) admin.MeView {
		t.Helper()
		resp, body := e.do(t, http.MethodGet, "/api/certificates/me", tok, "")
		var m admin.MeView
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &m) != nil {
			t.Fatalf("me: %d %s", resp.StatusCode, body)
		}
		return m
	}
	for _, tok := range []string{reader, e.admin, e.fake.MintApp([]string{entra.RoleCertificatesRead})} {
		for _, path := range []string{"/api/certificates", "/api/certificates/" + rec.Serial, "/api/certificates/revocation-sync"} {
			if resp, body := e.do(t, http.MethodGet, path, tok, ""); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
			}
		}
	}
	if m := me(reader); m.CanManage || !slices.Equal(m.Roles, []string{entra.RoleCertificatesRead}) || m.ObjectID != bobOID {
		t.Errorf("reader's me = %+v", m)
	}
	if m := me(e.admin); !m.CanManage || !slices.Equal(m.Roles, []string{entra.RoleCertificatesManage}) {
		t.Errorf("manager's me = %+v", m)
	}

	readerApp := e.fake.MintApp([]string{entra.RoleCertificatesRead})
	for _, tok := range []string{reader, readerApp} {
		for _, c := range []struct{ method, path, body string }{
			{http.MethodPost, "/api/certificates/" + rec.Serial + "/revoke", `{"reason":"keyCompromise"}`},
			{http.MethodPost, "/api/certificates/revocation-sync", ""},
			{http.MethodDelete, "/api/certificates/" + rec.Serial, ""},
			{http.MethodPut, "/api/certificates/" + rec.Serial, `{}`},
			{http.MethodPatch, "/api/certificates", `{}`},
		} {
			resp, body := e.do(t, c.method, c.path, tok, c.body)
			wantProblem(t, resp, body, http.StatusForbidden, admin.CodeManageRequired)
		}
	}
	if stored, _ := e.st.Get(t.Context(), rec.Serial); stored.Status != store.StatusIssued || len(e.notified()) != 0 {
		t.Fatalf("a reader revoked %s", rec.Serial)
	}
	if len(e.sync.triggers) != 0 {
		t.Fatalf("a reader ran the sync: %v", e.sync.triggers)
	}
	refused := e.logs.Records("admin change refused: Certificates.Manage required")
	if len(refused) != 10 || !strings.Contains(fmt.Sprint(refused[0]["by"]), bobOID) ||
		fmt.Sprint(refused[5]["by"]) != "app:"+e.fake.ClientAppID {
		t.Errorf("refusal log lines %v", refused)
	}
	if strings.Contains(e.logs.String(), reader) || strings.Contains(e.logs.String(), readerApp) {
		t.Error("a token was logged")
	}

	// Manage still revokes and syncs, and the audit names the administrator.
	resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin, `{"reason":"keyCompromise"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manager's revoke: %d %s", resp.StatusCode, body)
	}
	if audit := e.logs.Records("audit: certificate revoked"); len(audit) != 1 || !strings.Contains(fmt.Sprint(audit[0]["by"]), aliceOID) {
		t.Errorf("audit lines %v", audit)
	}
	if resp, body := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, ""); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("manager's sync: %d %s", resp.StatusCode, body)
	}

	// Both roles in the token, Manage taken away in Graph: a reader once the cached answer expires.
	both := e.fake.MintUser(bobOID, bobUPN, []string{entra.RoleCertificatesManage, entra.RoleCertificatesRead})
	e.graphClock.Advance(entra.DefaultPositiveTTL)
	if m := me(both); !m.CanManage {
		t.Fatalf("both roles assigned: me = %+v", m)
	}
	e.graph.RemoveAppRole(bobOID, entra.RoleCertificatesManage)
	e.graphClock.Advance(entra.DefaultPositiveTTL)
	if m := me(both); m.CanManage || !slices.Equal(m.Roles, []string{entra.RoleCertificatesRead}) {
		t.Fatalf("Manage removed: me = %+v", m)
	}
	resp, body = e.do(t, http.MethodPost, "/api/certificates/revocation-sync", both, "")
	wantProblem(t, resp, body, http.StatusForbidden, admin.CodeManageRequired)
}
