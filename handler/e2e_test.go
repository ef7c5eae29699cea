package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/tables"
	"github.com/azscep/azscep/internal/testca"
)

func TestMain(m *testing.M) {
	if benchChildMain() { // the benchmarks' in-memory server process (bench_peers_test.go)
		return
	}
	azuritetest.Main(m)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// localService is the real handler (serve) in local mode against Azurite, in this process.
type localService struct {
	base  string
	cfg   *config.Config
	store store.Store
	logs  *testca.LogBuffer
}

func startLocal(t *testing.T, extra ...string) *localService {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	prefix := azuritetest.FreshPrefix()
	conn := azuritetest.ConnectionString(t)
	env := append([]string{"AZSCEP_MODE=local", fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port),
		"AZSCEP_TABLES_CONNECTION=" + conn, "AZSCEP_TABLES_PREFIX=" + prefix,
		"AZSCEP_LOCAL_KEY_DIR=" + filepath.Join(dir, "ca")}, extra...)
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := custody.InitLocal(cfg.LocalKeyDir, custody.LocalInitOptions{KeyType: "RSA"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	logs := &testca.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, buildOptions{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not become healthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := tables.NewFromConnectionString(conn, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return &localService{base: base, cfg: cfg, store: st, logs: logs}
}

func scepclientPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SCEPCLIENT"); p != "" {
		return p
	}
	p, err := exec.LookPath("scepclient")
	if err != nil {
		t.Fatal("Debian's scepclient is not installed: run `make test`, which installs the scep package")
	}
	return p
}

// scepclientEnroll runs scepclient against base's static endpoint with the local challenge, keeping the key and
// certificate in dir (d.key, d.pem: a d.pem already there makes it a RenewalReq signed with it), and returns the
// certificate it stored.
func scepclientEnroll(t *testing.T, base, dir, cn string) *x509.Certificate {
	t.Helper()
	cmd := exec.Command(scepclientPath(t), "-server-url", base+"/api/scep/static", "-private-key",
		filepath.Join(dir, "d.key"), "-certificate", filepath.Join(dir, "d.pem"), "-challenge",
		config.LocalStaticChallenge, "-cn", cn)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scepclient: %v\n%s", err, out)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, "d.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := custody.ParsePEMCertificates(pemBytes)
	if err != nil || len(certs) == 0 {
		t.Fatalf("scepclient's certificate: %v (%d certificates)", err, len(certs))
	}
	return certs[0]
}

// TestScepclientEnrollment is the README's promise: a real SCEP client gets a certificate from the running
// service, and the certificate is durably recorded.
func TestScepclientEnrollment(t *testing.T) {
	svc := startLocal(t)
	dir := t.TempDir()
	keyPath, certPath := filepath.Join(dir, "device.key"), filepath.Join(dir, "device.pem")
	cmd := exec.Command(scepclientPath(t), "-server-url", svc.base+"/api/scep/static", "-private-key", keyPath,
		"-certificate", certPath, "-challenge", config.LocalStaticChallenge, "-cn", "device-0001")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scepclient failed: %v\n%s", err, out)
	}
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := custody.ParsePEMCertificates(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	leaf := certs[0]
	if leaf.Subject.CommonName != "device-0001" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}

	// The issuer is the CA /api/ca publishes.
	resp, err := http.Get(svc.base + "/api/ca")
	if err != nil {
		t.Fatal(err)
	}
	caDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/pkix-cert" {
		t.Errorf("/api/ca content type %q", ct)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("leaf not signed by the published CA: %v", err)
	}
	rec, err := svc.store.Get(context.Background(), store.SerialString(leaf.SerialNumber))
	if err != nil {
		t.Fatalf("no record for the issued certificate: %v", err)
	}
	if rec.Status != store.StatusIssued || !bytes.Equal(rec.CertDER, leaf.Raw) || rec.Endpoint != "static" ||
		rec.Source != store.SourceSCEP || rec.TxID == "" {
		t.Fatalf("record wrong: status=%s endpoint=%s source=%s", rec.Status, rec.Endpoint, rec.Source)
	}
	lintIssued(t, leaf)

	// The challenge password never reaches the logs.
	logged := svc.logs.String()
	if strings.Contains(logged, config.LocalStaticChallenge) {
		t.Fatal("the static challenge appears in the logs")
	}
	if !strings.Contains(logged, `"msg":"certificate issued"`) {
		t.Fatalf("no issuance log line in:\n%s", logged)
	}

	// A wrong challenge gets nothing. (scepclient keeps csr.pem beside the certificate and re-uses it, so the
	// second client needs its own directory.)
	dir = t.TempDir()
	bad := exec.Command(scepclientPath(t), "-server-url", svc.base+"/api/scep/static", "-private-key",
		filepath.Join(dir, "other.key"), "-certificate", filepath.Join(dir, "other.pem"), "-challenge", "wrong-challenge",
		"-cn", "device-0002")
	bad.Dir = dir
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("scepclient with a wrong challenge succeeded:\n%s\n%s", out, svc.logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "other.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a certificate was written for a wrong challenge")
	}
}

func TestCAAndHealthRoutes(t *testing.T) {
	svc := startLocal(t)
	req, _ := http.NewRequest(http.MethodGet, svc.base+"/api/ca", nil)
	req.Header.Set("Accept", "application/x-pem-file")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if block, _ := pem.Decode(body); block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("PEM chain not returned: %q", body)
	}
	resp, err = http.Post(svc.base+"/api/ca", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Fatalf("POST /api/ca = %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, err = http.Get(svc.base + "/api/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"store":{"status":"ok"}`) {
		t.Fatalf("health = %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(svc.base + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET / = %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(svc.base + "/api/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown route = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestCACertificateNegotiation: /api/ca is the AIA caIssuers URL, which relying parties (Windows, Android, OpenSSL,
// browsers) fetch expecting DER. It answers PEM to an Accept header that prefers it, and the answer is cacheable
// (public), so it must say that it varies with Accept (RFC 9110 §12.5.5), or a shared cache in front of the function
// app that stored a PEM answer hands PEM to every AIA fetch after it; and a client that rules PEM out (q=0) or ranks
// DER above it gets DER, as /api/crl and /api/csr negotiate.
func TestCACertificateNegotiation(t *testing.T) {
	svc := startLocal(t)
	get := func(accept, query string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, svc.base+"/api/ca"+query, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Accept %q: status %d", accept, resp.StatusCode)
		}
		if !strings.Contains(resp.Header.Get("Cache-Control"), "public") {
			t.Fatalf("Accept %q: Cache-Control %q", accept, resp.Header.Get("Cache-Control"))
		}
		if query == "" && !strings.Contains(strings.ToLower(strings.Join(resp.Header.Values("Vary"), ",")), "accept") {
			t.Errorf("Accept %q: a cacheable answer chosen by Accept without Vary: Accept (Vary %q)", accept,
				resp.Header.Values("Vary"))
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp
	}
	for _, tc := range []struct{ accept, query, want string }{
		{"", "", "application/pkix-cert"},
		{"*/*", "", "application/pkix-cert"},
		{"application/pkix-cert", "", "application/pkix-cert"},
		{"application/x-pem-file", "", "application/x-pem-file"},
		{"application/pkix-cert, application/x-pem-file;q=0", "", "application/pkix-cert"},
		{"application/x-pem-file;q=0.2, application/pkix-cert", "", "application/pkix-cert"},
		{"application/pkix-cert;q=0.5, application/x-pem-file", "", "application/x-pem-file"},
		{"", "?format=pem", "application/x-pem-file"},
	} {
		resp := get(tc.accept, tc.query)
		if ct := resp.Header.Get("Content-Type"); ct != tc.want {
			t.Errorf("Accept %q%s: Content-Type %q, want %q", tc.accept, tc.query, ct, tc.want)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if tc.want == "application/pkix-cert" {
			if _, err := x509.ParseCertificate(body); err != nil {
				t.Errorf("Accept %q: DER answer does not parse: %v", tc.accept, err)
			}
		} else if block, _ := pem.Decode(body); block == nil || block.Type != "CERTIFICATE" {
			t.Errorf("Accept %q%s: PEM answer is not a certificate", tc.accept, tc.query)
		}
	}
}

// TestScepclientRenewalWithSameKey: Debian's scepclient renews by running again beside its certificate: it sends a
// RenewalReq signed with that certificate, for a CSR with the same key, under the transaction ID it derives from the
// key — the PKCSReq's. Inside the replay window that must still be a renewal: answering it as a replay of the
// PKCSReq hands the client back the very certificate it signed the request with, as SUCCESS, and the device
// believes it renewed while its certificate runs out.
func TestScepclientRenewalWithSameKey(t *testing.T) {
	// The renewal window covers the whole validity so that the renewal runs now, inside the 24 h replay window.
	svc := startLocal(t, "AZSCEP_SCEP_STATIC=challenge=static;renewal=400d")
	dir := t.TempDir()
	first := scepclientEnroll(t, svc.base, dir, "renewing-device")
	second := scepclientEnroll(t, svc.base, dir, "renewing-device") // d.pem exists now: a RenewalReq signed with it
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("the RenewalReq got back the certificate that signed it (serial %s):\n%s",
			store.SerialString(first.SerialNumber), svc.logs.String())
	}
	rec, err := svc.store.Get(context.Background(), store.SerialString(second.SerialNumber))
	if err != nil || rec.RenewedFrom != store.SerialString(first.SerialNumber) {
		t.Fatalf("renewed record %+v, %v: want renewed_from %s", rec, err, store.SerialString(first.SerialNumber))
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildBinary builds the real binary once per test binary, for process-level behaviour (exit codes, signals) and
// the benchmarks that measure the real process.
func buildBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "azscep-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "azscep")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestBadConfigurationExitsWithOneLine(t *testing.T) {
	bin := buildBinary(t)
	for _, env := range [][]string{
		{"AZSCEP_MODE=cloud"},
		{"AZSCEP_MODE=azure", "AZSCEP_BASE_URL=https://ca.example.net", "AZSCEP_TABLES_ENDPOINT=https://t.example.net",
			"AZSCEP_KEYVAULT_URL=https://kv.vault.azure.net", "AZSCEP_SCEP_ENDPOINTS=static", "AZSCEP_SCEP_STATIC_SECRET=long-enough"},
	} {
		cmd := exec.Command(bin)
		cmd.Env = env
		var stderr, stdout bytes.Buffer
		cmd.Stderr, cmd.Stdout = &stderr, &stdout
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("env %v: exit %v, want 2", env, err)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "setting ") {
			t.Fatalf("want one line naming the setting, got %q", stderr.String())
		}
	}
}

// TestGracefulShutdownAndImmediateReadiness runs the binary, checks GET / answers while dependencies are still
// unreachable, and that SIGTERM ends the process cleanly.
func TestGracefulShutdownAndImmediateReadiness(t *testing.T) {
	bin := buildBinary(t)
	port := freePort(t)
	dir := t.TempDir()
	// Tables point at a closed port: the service must still answer GET / and report 503 elsewhere.
	dead := freePort(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{"AZSCEP_MODE=local", fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port),
		"AZSCEP_LOCAL_KEY_DIR=" + dir,
		fmt.Sprintf("AZSCEP_TABLES_CONNECTION=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:%d/devstoreaccount1;", dead)}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var ok bool
	for i := 0; i < 200 && !ok; i++ {
		if resp, err := http.Get(base + "/"); err == nil {
			resp.Body.Close()
			ok = resp.StatusCode == 200
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatal("GET / never answered")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("process did not stop after SIGTERM")
	}
	// Every stdout line is JSON (the host treats stdout as information logs).
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "{") {
			t.Errorf("non-JSON stdout line: %q", line)
		}
	}
}

// devToken mints a token for admin@azscep.local from the local development issuer the running service exposes.
func devToken(t *testing.T, base string, roles ...string) string {
	t.Helper()
	return devTokenAs(t, base, "admin@azscep.local", roles...)
}

func runOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestRevocationVisibleInOCSPAndCRL: a certificate enrolled over SCEP is good in OCSP; once an admin revokes it
// through the API it is revoked in OCSP and listed in the CRL — checked with the openssl command line.
func TestRevocationVisibleInOCSPAndCRL(t *testing.T) {
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	dir := t.TempDir()
	leaf := scepclientEnroll(t, svc.base, dir, "ocsp-device")
	resp, err := http.Get(svc.base + "/api/ca?format=pem")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ocspArgs := []string{"ocsp", "-issuer", caFile, "-cert", filepath.Join(dir, "d.pem"), "-url", svc.base + "/api/ocsp",
		"-CAfile", caFile}
	if out := runOpenSSL(t, ocspArgs...); !strings.Contains(out, "Response verify OK") || !strings.Contains(out, ": good") {
		t.Fatalf("OCSP before revocation:\n%s", out)
	}

	// Revoke through the admin API; a token without the role is refused first.
	serial := store.SerialString(leaf.SerialNumber)
	revoke := func(token string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, svc.base+"/api/certificates/"+serial+"/revoke",
			strings.NewReader(`{"reason":"keyCompromise"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := revoke(devToken(t, svc.base, "CSR.Request.Db")); r.StatusCode != http.StatusForbidden {
		t.Fatalf("revoke without Certificates.Manage = %d, want 403", r.StatusCode)
	}
	if r := revoke(devToken(t, svc.base, "Certificates.Manage")); r.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d", r.StatusCode)
	}
	out := runOpenSSL(t, ocspArgs...)
	if !strings.Contains(out, ": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Fatalf("OCSP after revocation:\n%s", out)
	}
	resp, err = http.Get(svc.base + "/api/crl")
	if err != nil {
		t.Fatal(err)
	}
	crlDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crlFile := filepath.Join(dir, "ca.crl")
	if err := os.WriteFile(crlFile, crlDER, 0o644); err != nil {
		t.Fatal(err)
	}
	out = runOpenSSL(t, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", caFile, "-noout", "-text")
	if !strings.Contains(out, serial) || !strings.Contains(out, "Key Compromise") {
		t.Fatalf("CRL does not list %s:\n%s", serial, out)
	}
	if out := runOpenSSL(t, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", caFile, "-noout"); !strings.Contains(out, "verify OK") {
		t.Fatalf("CRL does not verify: %s", out)
	}
	rec, err := svc.store.Get(context.Background(), serial)
	if err != nil || rec.Status != store.StatusRevoked || !strings.HasPrefix(rec.RevokedBy, "admin:admin@azscep.local") {
		t.Fatalf("record after revocation: %+v %v", rec, err)
	}
}

// TestTimerReportsStalePendingRecords: the hourly timer reports pending records old enough that their request
// must have died between the pending write and the issued update; they stay in the store, revocable by serial.
func TestTimerReportsStalePendingRecords(t *testing.T) {
	svc := startLocal(t)
	old := time.Now().Add(-2 * time.Hour)
	stale := &store.Record{Serial: "5C00112233445566778899AABBCCDDEEFF", Status: store.StatusPending, Endpoint: "static",
		PlannedDER: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, Created: old, Updated: old}
	// An OCSP responder certificate whose issued write failed: discarded, so nothing to revoke (and Revoke refuses
	// a record without a planned certificate): not in the revocable list.
	responder := &store.Record{Serial: "5C00112233445566778899AABBCCDDEE00", Status: store.StatusPending, Source: "ocsp",
		Endpoint: "ocsp-responder", Created: old, Updated: old}
	for _, r := range []*store.Record{stale, responder} {
		if err := svc.store.Insert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post(svc.base+"/revocation-sync", "application/json",
		strings.NewReader(`{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Logs []string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(out.Logs, "\n")
	if resp.StatusCode != 200 || !strings.Contains(joined, "Intune is not configured") ||
		!strings.Contains(joined, "1 pending records older than 30m0s (revocable by serial): "+stale.Serial+"\n") ||
		!strings.Contains(joined, "1 pending records older than 30m0s without a planned certificate (OCSP or RA certificates never used; nothing to revoke): "+responder.Serial) {
		t.Fatalf("timer answer %d:\n%s", resp.StatusCode, joined)
	}
	rec, err := svc.store.Get(context.Background(), stale.Serial)
	if err != nil || rec.Status != store.StatusPending {
		t.Fatalf("the sweep changed the record: %v %v", rec, err)
	}
}
