package main

// Shared helpers for the integration tests that run the real handler (serve) in this process against the fakes:
// the Key Vault fake (keyvault_test.go) and the Entra/Graph/Intune fake (intune_test.go).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/tables"
	"github.com/azscep/azscep/internal/testca"
)

// running is one in-process run of serve.
type running struct {
	base string
	cfg  *config.Config
	logs *testca.LogBuffer
	// stop ends serve and waits for it; the test's cleanup calls it too.
	stop func()
}

// getHealth asks the service at base for /api/health and returns the status and body.
func getHealth(t *testing.T, base string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/api/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := testca.Do(t, http.DefaultClient, req)
	return resp.StatusCode, string(body)
}

// scepURL is the SCEP URL of an endpoint.
func (r *running) scepURL(endpoint string) string { return r.base + "/api/scep/" + endpoint }

// logText returns everything the service logged so far.
func (r *running) logText() string {
	return r.logs.String()
}

// logLines returns the service's log lines, parsed.
func (r *running) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.logText()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// loadConfig parses env plus a free port, as the process would.
func loadConfig(t *testing.T, env []string) *config.Config {
	t.Helper()
	env = append([]string{fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", freePort(t))}, env...)
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if err := cfg.CheckServe(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(cfg.Faults) != 0 {
		t.Fatalf("config disables features: %v", cfg.Faults)
	}
	return cfg
}

// startServe runs serve with env and opts until the test ends, and waits until it answers /api/health.
func startServe(t *testing.T, env []string, opts buildOptions) *running {
	t.Helper()
	return startServeConfig(t, loadConfig(t, env), opts, true)
}

// startServeReferences is startServe for a configuration with Key Vault references App Service left verbatim
// (features disabled by them): opts.environ is what serve loads again once it has read them, and it is ready when
// /api/health answers 200, or, unless healthy, "degraded".
func startServeReferences(t *testing.T, env []string, opts buildOptions, healthy bool) *running {
	t.Helper()
	env = append([]string{fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", freePort(t))}, env...)
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(cfg.References) == 0 {
		t.Fatal("the configuration has no unresolved Key Vault reference")
	}
	opts.environ = env
	return startServeConfig(t, cfg, opts, healthy)
}

func startServeConfig(t *testing.T, cfg *config.Config, opts buildOptions, healthy bool) *running {
	t.Helper()
	logs := &testca.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, opts) }()
	var once sync.Once
	r := &running{base: fmt.Sprintf("http://127.0.0.1:%d", cfg.Port), cfg: cfg, logs: logs}
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			once.Do(func() { cancel() }) // already stopped: the cleanup must not wait again
			t.Fatalf("serve stopped during start-up: %v\n%s", err, r.logText())
		default:
		}
		resp, err := http.Get(r.base + "/api/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || !healthy && bytes.Contains(body, []byte(`"status":"degraded"`)) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not become healthy: %v\n%s", err, r.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveUntilExit runs serve and returns what it logged and the error it stopped with; start-up faults must end it
// on their own.
func serveUntilExit(t *testing.T, env []string, opts buildOptions) (string, error) {
	t.Helper()
	cfg := loadConfig(t, env)
	logs := &testca.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, opts) }()
	select {
	case err := <-done:
		return logs.String(), err
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("serve did not stop on a fatal start-up fault")
		return "", nil
	}
}

// localCA is one local CA (RSA root + RA), generated once per test binary and copied into each test's key
// directory: RSA key generation would otherwise dominate the suite's run time.
var localCA struct {
	once  sync.Once
	files map[string][]byte
	err   error
}

// newLocalKeyDir returns a fresh directory holding a copy of the shared local CA.
func newLocalKeyDir(t testing.TB) string {
	t.Helper()
	localCA.once.Do(func() {
		dir, err := os.MkdirTemp("", "azscep-localca")
		if err != nil {
			localCA.err = err
			return
		}
		defer os.RemoveAll(dir)
		if _, err := custody.InitLocal(dir, custody.LocalInitOptions{KeyType: "RSA"}, time.Now()); err != nil {
			localCA.err = err
			return
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			localCA.err = err
			return
		}
		localCA.files = map[string][]byte{}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				localCA.err = err
				return
			}
			localCA.files[e.Name()] = b
		}
	})
	if localCA.err != nil {
		t.Fatalf("local CA: %v", localCA.err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range localCA.files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// azuriteStore is a Table Storage store on the shared Azurite with fresh tables, and its settings.
func azuriteStore(t *testing.T) (*tables.Store, []string) {
	t.Helper()
	conn := azuritetest.ConnectionString(t)
	prefix := azuritetest.FreshPrefix()
	st, err := tables.NewFromConnectionString(conn, prefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.EnsureTables(ctx); err != nil {
		t.Fatalf("creating tables: %v", err)
	}
	return st, []string{"AZSCEP_TABLES_CONNECTION=" + conn, "AZSCEP_TABLES_PREFIX=" + prefix}
}

// deviceKeys hands out the fixture device keys in turn. smallstep/scep derives the transaction ID from the
// CSR key, so enrollments against one service need distinct keys; tests run one after another and no service
// sees more than testca.DeviceKeys enrollments.
var deviceKeys atomic.Int64

func nextDeviceKey(t *testing.T) int {
	t.Helper()
	return int(deviceKeys.Add(1)-1) % testca.DeviceKeys
}

// getCACert fetches GetCACert and returns the certificates and the content type.
func getCACert(t *testing.T, scepURL string) ([]*x509.Certificate, string) {
	t.Helper()
	resp, err := http.Get(scepURL + "?operation=GetCACert")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GetCACert = %d %s", resp.StatusCode, body)
	}
	ct := resp.Header.Get("Content-Type")
	switch ct {
	case "application/x-x509-ca-cert":
		c, err := x509.ParseCertificate(body)
		if err != nil {
			t.Fatalf("GetCACert single certificate: %v", err)
		}
		return []*x509.Certificate{c}, ct
	case "application/x-x509-ca-ra-cert":
		p7, err := pkcs7.Parse(body)
		if err != nil {
			t.Fatalf("GetCACert degenerate PKCS#7: %v", err)
		}
		return p7.Certificates, ct
	}
	t.Fatalf("GetCACert content type %q", ct)
	return nil, ""
}

// recipients selects the certificates a careful SCEP client encrypts to: those allowing keyEncipherment
// (RFC 8894 §3.5.2), falling back to the single CA certificate.
func recipients(t *testing.T, certs []*x509.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, c := range certs {
		if c.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
			out = append(out, c)
		}
	}
	if len(out) == 0 && len(certs) == 1 {
		return certs
	}
	if len(out) != 1 {
		t.Fatalf("GetCACert offers %d encryption certificates, want 1", len(out))
	}
	return out
}

// exchange is one PKIOperation and its answer.
type exchange struct {
	req  *testca.Request
	resp *http.Response
	body []byte
}

// post sends req to the endpoint.
func post(t *testing.T, scepURL string, req *testca.Request) *exchange {
	t.Helper()
	resp, body := testca.Post(t, scepURL, req.Raw)
	return &exchange{req: req, resp: resp, body: body}
}

// certRep checks the answer is a CertRep signed by signer and parses it.
func (x *exchange) certRep(t *testing.T, signer *x509.Certificate) *testca.CertRep {
	t.Helper()
	if x.resp.StatusCode != http.StatusOK || x.resp.Header.Get("Content-Type") != "application/x-pki-message" {
		t.Fatalf("PKIOperation = %d %s: %q", x.resp.StatusCode, x.resp.Header.Get("Content-Type"), x.body)
	}
	return x.req.ParseCertRep(t, x.body, signer)
}

// mustSucceed parses a SUCCESS CertRep and returns the issued certificate.
func (x *exchange) mustSucceed(t *testing.T, signer *x509.Certificate) *x509.Certificate {
	t.Helper()
	rep := x.certRep(t, signer)
	if rep.Status != testca.StatusSuccess || rep.Certificate() == nil {
		t.Fatalf("CertRep status %s failInfo %q, want SUCCESS with a certificate", rep.Status, rep.FailInfo)
	}
	return rep.Certificate()
}

// mustFail parses a FAILURE CertRep with the given failInfo.
func (x *exchange) mustFail(t *testing.T, signer *x509.Certificate, failInfo string) {
	t.Helper()
	rep := x.certRep(t, signer)
	if rep.Status != testca.StatusFailure || rep.FailInfo != failInfo {
		t.Fatalf("CertRep status %s failInfo %q, want FAILURE %q", rep.Status, rep.FailInfo, failInfo)
	}
	if len(rep.Certificates) != 0 {
		t.Fatal("a FAILURE CertRep carries a certificate")
	}
}

// recordFor reads the record bound to a SCEP transaction of an endpoint.
func recordFor(t *testing.T, st store.Store, endpoint, txID string) *store.Record {
	t.Helper()
	ctx := context.Background()
	b, err := st.Lookup(ctx, "scep|"+endpoint+"|"+txID)
	if err != nil {
		t.Fatalf("no record bound to transaction %s: %v", txID, err)
	}
	rec, err := st.Get(ctx, b.Serial)
	if err != nil {
		t.Fatalf("record %s: %v", b.Serial, err)
	}
	return rec
}

// noRecordFor asserts that no certificate record exists for a transaction. (A binding without its record is
// tolerated: older versions wrote the claim before the record, and issuance takes such a binding over.)
func noRecordFor(t *testing.T, st store.Store, endpoint, txID string) {
	t.Helper()
	b, err := st.Lookup(context.Background(), "scep|"+endpoint+"|"+txID)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := st.Get(context.Background(), b.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("transaction %s has record %v (err %v), want none", txID, rec, err)
	}
}

var (
	oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

// sanNames returns a certificate's URIs exactly as encoded (Go's parser lower-cases URI schemes) and its UPN
// otherNames (Go does not parse otherName).
func sanNames(t *testing.T, c *x509.Certificate) (uris, upns []string) {
	t.Helper()
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSAN) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			t.Fatalf("subjectAltName does not parse: %v", err)
		}
		for _, n := range names {
			switch {
			case n.Class == asn1.ClassContextSpecific && n.Tag == 6:
				uris = append(uris, string(n.Bytes))
			case n.Class == asn1.ClassContextSpecific && n.Tag == 0:
				var on struct {
					Type  asn1.ObjectIdentifier
					Value asn1.RawValue // [0] EXPLICIT UTF8String
				}
				seq := append([]byte{0x30}, n.FullBytes[1:]...)
				if _, err := asn1.Unmarshal(seq, &on); err != nil {
					t.Fatalf("otherName does not parse: %v", err)
				}
				if !on.Type.Equal(oidUPN) {
					continue
				}
				var upn string
				if on.Value.Class != asn1.ClassContextSpecific || on.Value.Tag != 0 {
					t.Fatalf("UPN otherName value is not [0] EXPLICIT")
				}
				if _, err := asn1.UnmarshalWithParams(on.Value.Bytes, &upn, "utf8"); err != nil {
					t.Fatalf("UPN does not parse: %v", err)
				}
				upns = append(upns, upn)
			}
		}
	}
	return uris, upns
}

// apiTenant is a fake Entra tenant for /api/csr and the admin API, with its directory in a Graph fake: every user
// it mints a token for exists there (enabled), and a test disables, renames or deletes one through graph.
type apiTenant struct {
	*entrafake.Server
	graph *entrafake.Graph
}

func newAPITenant(t testing.TB, opts ...entrafake.Option) *apiTenant {
	t.Helper()
	g := entrafake.NewGraph(t)
	return &apiTenant{Server: entrafake.New(t, append(opts, entrafake.WithGraph(g))...), graph: g}
}

// env points the API at the tenant and its Graph.
func (a *apiTenant) env() []string {
	return []string{"AZSCEP_API_TENANT_ID=" + a.TenantID, "AZSCEP_API_AUDIENCES=" + a.ClientID,
		"AZSCEP_API_AUTHORITY=" + a.Authority(), "AZSCEP_API_GRAPH_URL=" + a.graph.URL()}
}

// graphCredential is the managed identity's credential as the Graph fake accepts it: for the scope the service
// derives from its Graph URL (in Azure, https://graph.microsoft.com/.default).
func (a *apiTenant) graphCredential() *entrafake.Credential {
	return &entrafake.Credential{Token: a.graph.Token, Scope: strings.TrimSuffix(a.graph.URL(), "/") + "/.default"}
}
