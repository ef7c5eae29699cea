package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/memstore"
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
	resp, body := testca.Do(t, http.DefaultClient, req)
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

	// Everything else serves, each body with its length (never chunked: older SCEP clients cannot read that).
	for _, path := range []string{"/api/ca", "/api/ca?format=pem", "/api/crl", "/api/scep/gear?operation=GetCACert",
		"/api/scep/gear?operation=GetCACaps"} {
		resp, body := svc.get(t, path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d %s", path, resp.StatusCode, body)
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("%s: Content-Length %d, Transfer-Encoding %v for a %d-byte body", path, resp.ContentLength,
				resp.TransferEncoding, len(body))
		}
	}
	// The revocation sync timer reports Intune as disabled, naming the setting.
	req, _ = http.NewRequest(http.MethodPost, svc.base+"/revocation-sync", strings.NewReader(`{"Data":{},"Metadata":{}}`))
	req.Header.Set("Content-Type", "application/json")
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

// runCLI runs the real binary with args and env, and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(buildBinary(t), args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("azscep %v: %v", args, err)
	return 0, "", ""
}

// TestCLIExplainsItself (issue 12.6): help for every command and subcommand, version and settings work without any
// setting (an empty environment would fail config.Load), exit 0 and write to stdout only; a wrong command line
// exits 2 with the usage on stderr.
func TestCLIExplainsItself(t *testing.T) {
	noSettings := []string{}
	commands := []string{"ca", "revocation-sync", "revoke", "backup", "restore", "local-help", "config", "settings", "version", "help"}
	for _, tc := range []struct {
		args []string
		want []string // substrings of stdout
	}{
		{[]string{"help"}, commands},
		{[]string{"--help"}, commands},
		{[]string{"-h"}, commands},
		{[]string{"ca", "--help"}, []string{"init", "import", "rotate-ra", "show", "-subject", "-cert"}},
		{[]string{"ca", "-h"}, []string{"rotate-ra", "-key-type"}},
		{[]string{"help", "ca"}, []string{"rotate-ra", "-key-type"}},
		{[]string{"ca", "init", "--help"}, []string{"Usage: azscep ca init", "-subject", "-subordinate", "-validity"}},
		{[]string{"ca", "import", "-h"}, []string{"Usage: azscep ca import", "-cert"}},
		{[]string{"ca", "rotate-ra", "--help"}, []string{"Usage: azscep ca rotate-ra", "-compromised"}},
		{[]string{"help", "ca", "show"}, []string{"Usage: azscep ca show", "No flags"}},
		{[]string{"revocation-sync", "--help"}, []string{"Usage: azscep revocation-sync"}},
		{[]string{"revoke", "-h"}, []string{"Usage: azscep revoke", "-serial", "keyCompromise"}},
		{[]string{"local-help", "-h"}, []string{"Usage: azscep local-help"}},
		{[]string{"backup", "-h"}, []string{"Usage: azscep backup -out FILE", "Edm.DateTime"}},
		{[]string{"help", "restore"}, []string{"Usage: azscep restore -in FILE"}},
		{[]string{"settings", "--help"}, []string{"Usage: azscep settings"}},
		{[]string{"help", "version"}, []string{"Usage: azscep version"}},
		// Both kinds of warning `config check` prints: weakened authorization and a timer that would not run.
		{[]string{"help", "config"}, []string{"Usage: azscep config check", "weaken authorization", "REVOCATION_SCHEDULE"}},
		{[]string{"settings"}, []string{config.SettingsTable()}},
	} {
		code, stdout, stderr := runCLI(t, noSettings, tc.args...)
		if code != 0 || stderr != "" {
			t.Errorf("azscep %s: exit %d, stderr %q", strings.Join(tc.args, " "), code, stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("azscep %s: stdout lacks %q:\n%s", strings.Join(tc.args, " "), w, stdout)
			}
		}
	}
	if _, stdout, _ := runCLI(t, noSettings, "settings"); stdout != config.SettingsTable() {
		t.Errorf("azscep settings is not exactly config.SettingsTable():\n%s", stdout)
	}

	// Wrong command lines: exit 2, the reason and the usage on stderr, nothing on stdout.
	local := []string{"AZSCEP_MODE=local", "AZSCEP_TABLES_CONNECTION=unused", "AZSCEP_LOCAL_KEY_DIR=" + t.TempDir()}
	azure := []string{"AZSCEP_MODE=azure", "AZSCEP_BASE_URL=https://ca.example.test",
		"AZSCEP_TABLES_ENDPOINT=https://tables.example.invalid", "AZSCEP_KEYVAULT_URL=https://kv.vault.invalid"}
	for _, tc := range []struct {
		env  []string
		args []string
		want []string
	}{
		{noSettings, []string{"bogus"}, []string{`unknown command "bogus"`, "Usage:", "azscep ca <command>"}},
		{noSettings, []string{"bogus", "--help"}, []string{`unknown command "bogus"`, "Usage:"}},
		{noSettings, []string{"ca"}, []string{"ca needs a command", "rotate-ra"}},
		{noSettings, []string{"ca", "bogus"}, []string{`unknown ca command "bogus"`, "rotate-ra"}},
		{noSettings, []string{"help", "bogus"}, []string{"no help", "Usage:"}},
		{local, []string{"ca", "init", "-bogus"}, []string{"-bogus", "Usage: azscep ca init", "-subject"}},
		{local, []string{"ca", "show", "extra"}, []string{`unexpected argument "extra"`, "Usage: azscep ca show"}},
		// Bad values are configuration errors too: exit 2, which the postprovision hook does not retry.
		{local, []string{"ca", "init", "-subject", "not a name"}, []string{"-subject", `bad subject part "not a name"`, "Usage: azscep ca init"}},
		{local, []string{"ca", "init", "-validity", "12x"}, []string{`bad -validity "12x"`, "Usage: azscep ca init"}},
		// Local mode makes only what was asked for: no root in place of a subordinate CSR, no default key in place
		// of the size or curve given.
		{local, []string{"ca", "init", "-subordinate", "-subject", "CN=Issuing CA"}, []string{"-subordinate: local mode makes self-signed roots only", "Usage: azscep ca init"}},
		{local, []string{"ca", "init", "-key-type", "DSA"}, []string{`-key-type "DSA" is not`, "Usage: azscep ca init"}},
		{local, []string{"ca", "init", "-key-size", "2048"}, []string{"RSA key size 2048 is not 3072 or 4096", "Usage: azscep ca init"}},
		{local, []string{"ca", "init", "-key-type", "EC-HSM", "-curve", "P-521"}, []string{`curve "P-521" is not P-256 or P-384`, "Usage: azscep ca init"}},
		{local, []string{"ca", "import", "-cert", "chain.pem"}, []string{"nothing to import", "Usage: azscep ca import"}},
		{local, []string{"revoke"}, []string{"revoke needs -serial", "Usage: azscep revoke"}},
		// A missing -cert is told before signing in (azure mode: the host below does not exist).
		{azure, []string{"ca", "import"}, []string{"import needs -cert", "Usage: azscep ca import"}},
		{local, []string{"backup"}, []string{"backup needs -out FILE", "Usage: azscep backup"}},
		{local, []string{"restore", "-in"}, []string{"flag needs an argument", "Usage: azscep restore"}},
		{local, []string{"revoke", "-serial", "0A", "-reason", "stolen"}, []string{"-reason", "Usage: azscep revoke"}},
	} {
		code, stdout, stderr := runCLI(t, tc.env, tc.args...)
		if code != 2 || stdout != "" {
			t.Errorf("azscep %s: exit %d, stdout %q; want 2 and nothing on stdout", strings.Join(tc.args, " "), code, stdout)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("azscep %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), w, stderr)
			}
		}
	}
}

// TestLocalCAInitHonoursKeyFlags: in local mode `ca init` makes the key the flags ask for (the README's bootstrap
// commands work there too), not its default RSA 3072 or P-256 key whatever was asked.
func TestLocalCAInitHonoursKeyFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-key-type", "EC-HSM", "-curve", "P-384"}, "P-384"},
		{[]string{"-key-type", "RSA", "-key-size", "4096"}, "RSA 4096"},
	} {
		dir := filepath.Join(t.TempDir(), "ca")
		env, _ := binaryEnv(t, "AZSCEP_LOCAL_KEY_DIR="+dir) // the last value of a setting counts
		code, stdout, stderr := runCLI(t, env, append([]string{"ca", "init"}, tc.args...)...)
		if code != 0 || !strings.Contains(stdout, "(created: true)") {
			t.Fatalf("ca init %v: exit %d\n%s%s", tc.args, code, stdout, stderr)
		}
		keys, err := custody.LoadLocal(dir, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var got string
		switch pub := keys.Chain[0].PublicKey.(type) {
		case *ecdsa.PublicKey:
			got = pub.Curve.Params().Name
		case *rsa.PublicKey:
			got = fmt.Sprintf("RSA %d", pub.N.BitLen())
		}
		if got != tc.want {
			t.Errorf("ca init %v made a %s CA key, want %s", tc.args, got, tc.want)
		}
	}
}

// TestVersionFromBuildInfo (issue 12.6): `azscep version` prints the module version and the VCS revision the Go
// toolchain stamped into the binary (what `go version -m` reads), without settings.
func TestVersionFromBuildInfo(t *testing.T) {
	bin := buildBinary(t)
	code, stdout, stderr := runCLI(t, []string{}, "version")
	if code != 0 || stderr != "" {
		t.Fatalf("azscep version: exit %d, stderr %q", code, stderr)
	}
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	modVersion, revision := "", ""
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/azscep/azscep":
			modVersion = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			revision = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	lines := strings.Split(stdout, "\n")
	if modVersion == "" || lines[0] != "azscep "+modVersion {
		t.Errorf("first line %q, want azscep %s", lines[0], modVersion)
	}
	if revision == "" {
		revision = "unknown (built without VCS information)"
	}
	if !strings.Contains(stdout, "revision: "+revision) || !strings.Contains(stdout, "go: go1.") {
		t.Errorf("version output %q lacks revision %s or the Go version", stdout, revision)
	}
}

// TestVersionText covers the stamped case the test binary cannot show when the tree has no VCS stamp (a git
// worktree, -buildvcs=false).
func TestVersionText(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/azscep/azscep",
		Version: "v0.0.0-20261205130000-0123456789ab+dirty"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "true"},
		{Key: "vcs.time", Value: "2026-12-05T13:00:00Z"}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"}}}
	want := "azscep v0.0.0-20261205130000-0123456789ab+dirty\nrevision: 0123456789abcdef0123456789abcdef01234567 " +
		"(modified)\ncommit time: 2026-12-05T13:00:00Z\ngo: go1.26.8 linux/amd64\n"
	if got := versionText(info, true); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := versionText(nil, false); !strings.Contains(got, "no build information") {
		t.Fatalf("got %q", got)
	}
}

// tokenCredential hands out a fixed token and records the scopes asked for.
type tokenCredential struct {
	token  string
	scopes []string
}

func (c *tokenCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.scopes = append(c.scopes, o.Scopes...)
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func fakeJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(claims)) + ".c2lnbmF0dXJl"
}

// TestAdminCommandsSayWhoTheyAre (issue 12.2): the admin commands print whose credential they use, from the
// token's claims, never the token itself; the Key Vault scope follows the vault's cloud.
func TestAdminCommandsSayWhoTheyAre(t *testing.T) {
	for _, tc := range []struct {
		vault, claims, want, scope string
	}{
		{"https://kv-az.vault.azure.net/", `{"upn":"alice@contoso.com","oid":"o-1","tid":"t-1","idtyp":"user"}`,
			"user alice@contoso.com (object ID o-1, tenant t-1)", "https://vault.azure.net/.default"},
		{"https://kv-cn.vault.azure.cn", `{"appid":"a-2","oid":"o-2","tid":"t-2","idtyp":"app"}`,
			"application a-2 (object ID o-2, tenant t-2)", "https://vault.azure.cn/.default"},
		{"https://kv-az.vault.azure.net", `{"unique_name":"live.com#bob@example.com","oid":"o-3","tid":"t-3"}`,
			"user live.com#bob@example.com (object ID o-3, tenant t-3)", "https://vault.azure.net/.default"},
	} {
		cred := &tokenCredential{token: fakeJWT(tc.claims)}
		got, err := describeIdentity(context.Background(), tc.vault, cred)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want || strings.Contains(got, cred.token) || len(cred.scopes) != 1 || cred.scopes[0] != tc.scope {
			t.Errorf("got %q with scopes %v, want %q with %s", got, cred.scopes, tc.want, tc.scope)
		}
	}
	if got := identityFromToken("opaque"); strings.Contains(got, "opaque") {
		t.Errorf("an opaque token is echoed: %q", got)
	}
}

// failingDial is a Key Vault transport whose every connection fails with dnsErr, the way net.Dialer reports a
// failed lookup; dials counts the attempts.
func failingDial(dnsErr net.DNSError, dials *atomic.Int32) *azkeys.ClientOptions {
	return &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			e := dnsErr
			e.Name, _, _ = net.SplitHostPort(addr)
			return nil, &net.OpError{Op: "dial", Net: network, Err: &e}
		},
	}}}}
}

// runCAInit runs `azscep ca init` in azure mode against vaultURL with kvOptions as the Key Vault transport, a fake
// sign-in and an in-memory store, and returns the exit status, what the operator sees on stderr and the error.
func runCAInit(t *testing.T, vaultURL string, kvOptions *azkeys.ClientOptions) (int, string, error) {
	t.Helper()
	cfg, err := config.Load([]string{"AZSCEP_MODE=azure", "AZSCEP_BASE_URL=https://ca.example.test",
		"AZSCEP_TABLES_ENDPOINT=https://tables.example.test", "AZSCEP_KEYVAULT_URL=" + vaultURL})
	if err != nil {
		t.Fatal(err)
	}
	opts := buildOptions{store: memstore.New(), kvOptions: kvOptions,
		credential: &tokenCredential{token: fakeJWT(`{"upn":"alice@contoso.com","oid":"o-1","tid":"t-1"}`)}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"ca", "init"}
	err = caCommand(ctx, cfg, "init", nil, io.Discard, opts)
	if err == nil {
		t.Fatal("ca init succeeded against a vault that does not resolve")
	}
	var stderr bytes.Buffer
	code := commandFailed(cfg, args, err, &stderr)
	return code, stderr.String(), err
}

// TestCAInitUnresolvableVaultFailsFast: a Key Vault URL whose host does not exist (NXDOMAIN: a typo in the vault
// name) makes `ca init` a configuration error at once — exit 2, one line naming the host and the setting — instead
// of exit 1, which the postprovision hook retried for 12 minutes (36 tries, 20 s apart); the hook gives this exit 2
// only about 3 minutes (a name new to DNS), recognising it by the words "does not resolve" this test pins. The host
// is under .invalid (RFC 6761: never resolves). Serving keeps waiting such a failure out, as before.
func TestCAInitUnresolvableVaultFailsFast(t *testing.T) {
	const host = "kv-azscep-typo.vault.invalid"
	var dials atomic.Int32
	code, stderr, err := runCAInit(t, "https://"+host+"/", failingDial(net.DNSError{Err: "no such host", IsNotFound: true}, &dials))
	if code != 2 || !strings.HasPrefix(stderr, "azscep: configuration error: Key Vault host "+host+" does not resolve") ||
		!strings.Contains(stderr, "AZSCEP_KEYVAULT_URL") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q; want exit 2 and one line naming %s and AZSCEP_KEYVAULT_URL (err: %v)", code, stderr, host, err)
	}
	if dials.Load() == 0 {
		t.Error("the vault was never dialled")
	}
	if !transientAtStart(err) {
		t.Errorf("serving would stop on %v; it should keep waiting it out", err)
	}
}

// TestCAInitTemporaryDNSFailureRetried: a resolver that times out or fails temporarily (SERVFAIL) is not a
// configuration error: Key Vault's calls retry it as before and the command exits 1, which the postprovision hook
// retries.
func TestCAInitTemporaryDNSFailureRetried(t *testing.T) {
	for name, dnsErr := range map[string]net.DNSError{
		"temporary":            {Err: "server misbehaving", IsTemporary: true},
		"timeout":              {Err: "i/o timeout", IsTimeout: true, IsTemporary: true},
		"not found, temporary": {Err: "no such host", IsNotFound: true, IsTemporary: true},
	} {
		t.Run(name, func(t *testing.T) {
			var dials atomic.Int32
			code, stderr, err := runCAInit(t, "https://kv-azscep.vault.azure.net/", failingDial(dnsErr, &dials))
			if code != 1 || strings.Contains(stderr, "configuration error") {
				t.Errorf("exit %d, stderr %q; want exit 1 (retried by the hook)", code, stderr)
			}
			if !errors.Is(err, keyvault.ErrUnavailable) {
				t.Errorf("err = %v, want keyvault.ErrUnavailable", err)
			}
			if n := dials.Load(); n != 4 {
				t.Errorf("%d dials, want 4 (the Key Vault client's default attempts)", n)
			}
		})
	}
}

// TestUnresolvableEndpointOnlyOurs: only a missing name of a configured endpoint is a configuration error; the Table
// Storage endpoint is named with its own setting, and a missing sign-in host (the machine's DNS) is left alone.
func TestUnresolvableEndpointOnlyOurs(t *testing.T) {
	cfg := &config.Config{KeyVaultURL: "https://kv-a.vault.azure.net/", TablesEndpoint: "https://sta.table.core.windows.net"}
	wrap := func(name string) error {
		return fmt.Errorf("creating tables: %w", &net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}})
	}
	if msg, ok := unresolvableEndpoint(cfg, wrap("STA.table.core.windows.net.")); !ok ||
		!strings.Contains(msg, "Table Storage host sta.table.core.windows.net does not resolve") || !strings.Contains(msg, "AZSCEP_TABLES_ENDPOINT") {
		t.Errorf("tables host: %q, %t", msg, ok)
	}
	if msg, ok := unresolvableEndpoint(cfg, wrap("login.microsoftonline.com")); ok {
		t.Errorf("sign-in host reported as a setting: %q", msg)
	}
	if msg, ok := unresolvableEndpoint(cfg, errors.New("lookup kv-a.vault.azure.net: no such host")); ok {
		t.Errorf("a message without a *net.DNSError classified: %q", msg)
	}
}

// TestBackupRestoreServesTheOldRecords (docs/deployment.md §10, "The tables were lost"): `azscep backup` of one
// CA's tables, `azscep restore` into empty ones, and the CA serving from them answers OCSP for the certificates it
// issued before — revoked as revoked, with the reason, and issued as good — where fresh tables know neither.
func TestBackupRestoreServesTheOldRecords(t *testing.T) {
	api := []string{"AZSCEP_DEV_ISSUER=true", "AZSCEP_PROFILE_SERVER=validity=30d;eku=serverAuth;dns=*", "AZSCEP_API_PROFILES=server"}
	dir := filepath.Join(t.TempDir(), "ca")
	envA, portA := binaryEnv(t, append(api, "AZSCEP_LOCAL_KEY_DIR="+dir)...)
	a := startBinary(t, envA, portA)
	token := devTokenAs(t, a.base, "", "CSR.Request.Db")
	revoked := issueViaAPI(t, a.base, token, pkix.Name{CommonName: "lost.example.test"}, "lost.example.test")
	good := issueViaAPI(t, a.base, token, pkix.Name{CommonName: "kept.example.test"}, "kept.example.test")
	serial := strings.ToUpper(revoked.SerialNumber.Text(16))
	if code, stdout, stderr := runCLI(t, envA, "revoke", "-serial", serial, "-reason", "keyCompromise"); code != 0 {
		t.Fatalf("revoke: exit %d\n%s%s", code, stdout, stderr)
	}
	backup := filepath.Join(t.TempDir(), "backup.jsonl")
	code, stdout, stderr := runCLI(t, envA, "backup", "-out", backup)
	if code != 0 || !strings.Contains(stdout, "backed up to "+backup) {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
	}

	// The same CA (key files) on new, empty tables, as after a lost storage account.
	envB, portB := binaryEnv(t, append(api, "AZSCEP_LOCAL_KEY_DIR="+dir)...)
	if code, stdout, stderr := runCLI(t, envB, "restore", "-in", backup); code != 0 || !strings.Contains(stdout, "restored: certs ") {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	b := startBinary(t, envB, portB)
	caCert, err := custody.LoadLocal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r := ocspStatus(t, b.base, revoked, caCert.Chain[0]); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
		t.Errorf("OCSP for the revoked certificate after the restore: status %d reason %d, want revoked (keyCompromise)",
			r.Status, r.RevocationReason)
	}
	if r := ocspStatus(t, b.base, good, caCert.Chain[0]); r.Status != ocsp.Good {
		t.Errorf("OCSP for the issued certificate after the restore: status %d, want good", r.Status)
	}
	// Restoring again changes nothing: everything is there.
	if code, stdout, stderr := runCLI(t, envB, "restore", "-in", backup); code != 0 || !strings.Contains(stdout, "restored: certs 0,") {
		t.Fatalf("second restore: exit %d\n%s%s", code, stdout, stderr)
	}
}

// vaultAndWho is the Key Vault fake's credential for Key Vault, and a user's token for the identity line the admin
// commands print first (describeIdentity asks without a tenant, for the vault's scope, which the fake would refuse
// for its loopback host).
type vaultAndWho struct{ vault azcore.TokenCredential }

func (c vaultAndWho) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if o.TenantID == "" {
		return azcore.AccessToken{Token: fakeJWT(`{"upn":"alice@contoso.com","oid":"o-1","tid":"t-1"}`),
			ExpiresOn: time.Now().Add(time.Hour)}, nil
	}
	return c.vault.GetToken(ctx, o)
}

// TestCAShowSaysASubordinateAwaitsImport: after `ca init -subordinate`, `ca show` says the CA awaits its import
// (it printed only the key ID, as if nothing were missing), and `ca rotate-ra` says so too rather than "run ca init".
func TestCAShowSaysASubordinateAwaitsImport(t *testing.T) {
	caKey, kek, _ := vaultKeys(t)
	kv := kvfake.New(t)
	kv.MustImportKey(t, kvCAKeyName, caKey, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpSign, kvfake.KeyOpVerify}, HSM: true})
	kv.MustImportKey(t, kvKEKName, kek, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpWrapKey, kvfake.KeyOpUnwrapKey}, HSM: true})
	v := &vaultCA{kv: kv, store: memstore.New()}
	cfg := loadConfig(t, v.env())
	opts := v.opts()
	opts.credential = vaultAndWho{opts.credential}
	run := func(sub string, args ...string) (string, error) {
		var out bytes.Buffer
		err := caCommand(t.Context(), cfg, sub, args, &out, opts)
		return out.String(), err
	}
	if out, err := run("init", "-subordinate", "-subject", "CN=Issuing CA,O=Example"); err != nil || !strings.Contains(out, "BEGIN CERTIFICATE REQUEST") {
		t.Fatalf("ca init -subordinate: %v\n%s", err, out)
	}
	out, err := run("show")
	if err != nil || !strings.Contains(out, "awaits `azscep ca import -cert chain.pem`") || !strings.Contains(out, "CA key: ") {
		t.Errorf("ca show before the import: %v\n%s", err, out)
	}
	if _, err := run("rotate-ra"); err == nil || !strings.Contains(err.Error(), "awaits `azscep ca import`") {
		t.Errorf("ca rotate-ra before the import: %v", err)
	}
}
