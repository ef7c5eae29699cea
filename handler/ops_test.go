package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/testca"
)

// binaryService is the real binary serving in local mode against Azurite, as a child process.
type binaryService struct {
	base   string
	stdout *testca.LogBuffer
}

// binaryEnv is a local-mode environment for the real binary with its own port, key directory and tables.
func binaryEnv(t *testing.T, extra ...string) ([]string, int) {
	t.Helper()
	port := freePort(t)
	return append([]string{"AZSCEP_MODE=local", fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port),
		"AZSCEP_TABLES_CONNECTION=" + azuritetest.ConnectionString(t), "AZSCEP_TABLES_PREFIX=" + azuritetest.FreshPrefix(),
		"AZSCEP_LOCAL_KEY_DIR=" + filepath.Join(t.TempDir(), "ca")}, extra...), port
}

// startBinary runs `azscep ca init` and then `azscep` with env, and waits until the CA certificate is served (not
// /api/health, which may rightly answer 503 here). The process is stopped with SIGTERM when the test ends.
func startBinary(t *testing.T, env []string, port int) *binaryService {
	t.Helper()
	bin := buildBinary(t)
	initCmd := exec.Command(bin, "ca", "init")
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("ca init: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	svc := &binaryService{base: fmt.Sprintf("http://127.0.0.1:%d", port), stdout: &testca.LogBuffer{}}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = svc.stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("azscep exited with %v; stderr: %s", err, stderr.String())
			}
		case <-time.After(25 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("azscep did not stop after SIGTERM")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(svc.base + "/api/ca")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return svc
			}
		}
		select {
		case err := <-done:
			t.Fatalf("azscep exited before serving: %v; stderr: %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("azscep did not serve /api/ca: %v; stderr: %s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *binaryService) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func (s *binaryService) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.do(t, req)
}

// TestUnreadableSecretsDisableOnlyTheirFeature (issue 12.1): Key Vault references App Service could not resolve
// (left verbatim in the setting) disable only the features that need them. The CA certificate, CRL, OCSP and the
// other SCEP endpoint keep serving, /api/health reports the disabled features as degraded, and each disabled
// feature answers 503 problem+json naming its setting. Admin commands (`ca init`) run regardless.
func TestUnreadableSecretsDisableOnlyTheirFeature(t *testing.T) {
	ref := func(name string) string {
		return "@Microsoft.KeyVault(SecretUri=https://kv-test.vault.azure.net/secrets/" + name + "/)"
	}
	env, port := binaryEnv(t,
		"AZSCEP_SCEP_ENDPOINTS=static,gear,routers",
		"AZSCEP_SCEP_STATIC_SECRET="+ref("static-challenge"),
		"AZSCEP_SCEP_GEAR_SECRET=gear-secret-0123",
		"AZSCEP_SCEP_ROUTERS=profile=net", "AZSCEP_SCEP_ROUTERS_SECRET=router-secret-0123",
		"AZSCEP_PROFILE_NET="+ref("net-profile"),
		"AZSCEP_INTUNE_TENANT_ID="+ref("tenant"),
		"AZSCEP_API_TENANT_ID=11111111-1111-1111-1111-111111111111", "AZSCEP_API_AUDIENCES="+ref("audiences"))
	svc := startBinary(t, env, port)

	want := map[string]string{ // disabled feature -> the setting it must name
		"scep/static":  "AZSCEP_SCEP_STATIC_SECRET",
		"scep/routers": "AZSCEP_PROFILE_NET",
		"profile/net":  "AZSCEP_PROFILE_NET",
		"intune":       "AZSCEP_INTUNE_TENANT_ID",
		"api":          "AZSCEP_API_AUDIENCES",
	}
	resp, body := svc.get(t, "/api/health")
	var health struct {
		Status string `json:"status"`
		Checks map[string]struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &health); err != nil {
		t.Fatalf("health: %v: %s", err, body)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || health.Status != "degraded" ||
		health.Checks["store"].Status != "ok" || health.Checks["ca"].Status != "ok" {
		t.Fatalf("health = %d %s", resp.StatusCode, body)
	}
	for feature, setting := range want {
		c := health.Checks[feature]
		if c.Status != "disabled" || !strings.Contains(c.Error, setting) {
			t.Errorf("health check %s = %+v, want disabled naming %s", feature, c, setting)
		}
	}
	if strings.Contains(body, "@Microsoft.KeyVault") {
		t.Errorf("health echoes a setting value: %s", body)
	}

	// Each disabled feature answers 503 problem+json naming its setting.
	for path, setting := range map[string]string{
		"/api/scep/static?operation=GetCACaps":  "AZSCEP_SCEP_STATIC_SECRET",
		"/api/scep/ROUTERS?operation=GetCACert": "AZSCEP_PROFILE_NET",
		"/api/certificates":                     "AZSCEP_API_AUDIENCES",
	} {
		resp, body := svc.get(t, path)
		if resp.StatusCode != http.StatusServiceUnavailable ||
			resp.Header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(body, `"feature_disabled"`) || !strings.Contains(body, setting) {
			t.Errorf("%s = %d %s %s, want 503 problem+json naming %s", path, resp.StatusCode,
				resp.Header.Get("Content-Type"), body, setting)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, svc.base+"/api/csr", strings.NewReader("csr"))
	req.Header.Set("Content-Type", "application/pkcs10")
	if resp, body := svc.do(t, req); resp.StatusCode != http.StatusServiceUnavailable ||
		!strings.Contains(body, "AZSCEP_API_AUDIENCES") {
		t.Errorf("/api/csr = %d %s", resp.StatusCode, body)
	}

	// Everything else serves.
	for _, path := range []string{"/api/ca", "/api/crl", "/api/scep/gear?operation=GetCACert",
		"/api/scep/gear?operation=GetCACaps"} {
		if resp, body := svc.get(t, path); resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d %s", path, resp.StatusCode, body)
		}
	}
	// The revocation sync timer reports Intune as disabled, naming the setting.
	req, _ = http.NewRequest(http.MethodPost, svc.base+"/revocation-sync", strings.NewReader(`{"Data":{},"Metadata":{}}`))
	if resp, body := svc.do(t, req); resp.StatusCode != http.StatusOK || !strings.Contains(body, "AZSCEP_INTUNE_TENANT_ID") {
		t.Errorf("/revocation-sync = %d %s", resp.StatusCode, body)
	}

	// The startup log names each disabled feature once, as an error, without the value.
	logged := map[string]bool{}
	for _, l := range svc.stdout.Records("feature disabled by a setting") {
		if l["level"] == "ERROR" {
			logged[fmt.Sprint(l["feature"])] = true
			if l["setting"] != want[fmt.Sprint(l["feature"])] {
				t.Errorf("log line %v names the wrong setting", l)
			}
		}
	}
	if len(logged) != len(want) || strings.Contains(svc.stdout.String(), "@Microsoft.KeyVault") {
		t.Errorf("startup log: disabled features %v, want %d; log:\n%s", logged, len(want), svc.stdout.String())
	}
}

// TestChunkedBodiesAnswered411 (issue 12.4): behind the Functions host a chunked POST body arrives empty, so the
// binary answers a POST without a declared length 411 with the reason (problem+json for /api/csr, plain text for
// SCEP and OCSP clients), instead of a misleading parse error. Shown with chunked requests, and with a raw POST that
// has no Content-Length at all (what the host forwards when it dropped the body).
func TestChunkedBodiesAnswered411(t *testing.T) {
	env, port := binaryEnv(t, "AZSCEP_DEV_ISSUER=true")
	svc := startBinary(t, env, port)
	for _, tc := range []struct {
		path, contentType string
		problem           bool
	}{
		{"/api/scep/static?operation=PKIOperation", "application/x-pki-message", false},
		{"/api/csr", "application/pkcs10", true},
		{"/api/ocsp", "application/ocsp-request", false},
	} {
		// io.MultiReader hides the length: net/http sends the body chunked.
		req, err := http.NewRequest(http.MethodPost, svc.base+tc.path, io.MultiReader(strings.NewReader("MIIB-not-really")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", tc.contentType)
		resp, body := svc.do(t, req)
		checkLengthRequired(t, tc.path+" (chunked)", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.problem)

		status, ct, body := rawPost(t, port, tc.path)
		checkLengthRequired(t, tc.path+" (no Content-Length)", status, ct, body, tc.problem)
	}
	// A body with a declared length still reaches the handler (a real parse error here, not 411).
	req, _ := http.NewRequest(http.MethodPost, svc.base+"/api/ocsp", strings.NewReader("not DER"))
	req.Header.Set("Content-Type", "application/ocsp-request")
	if resp, body := svc.do(t, req); resp.StatusCode == http.StatusLengthRequired {
		t.Fatalf("a POST with Content-Length was refused: %s", body)
	}
}

func checkLengthRequired(t *testing.T, what string, status int, contentType, body string, problem bool) {
	t.Helper()
	if status != http.StatusLengthRequired || !strings.Contains(body, "Content-Length") ||
		!strings.Contains(body, "chunked") {
		t.Errorf("%s = %d %q, want 411 explaining Content-Length", what, status, body)
	}
	if problem != (contentType == "application/problem+json") || (problem && !strings.Contains(body, `"length_required"`)) {
		t.Errorf("%s: Content-Type %s, problem+json wanted: %t", what, contentType, problem)
	}
}

// rawPost sends a POST with neither Content-Length nor Transfer-Encoding and returns status, type and body.
func rawPost(t *testing.T, port int, path string) (int, string, string) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}
