package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIntuneCredentialFileUnusableDisablesOnlyIntune: an operator who chooses the certificate credential and points
// AZSCEP_INTUNE_CERT_PATH at a file the app cannot read, or at one that holds no certificate and key, gets Intune and
// its endpoint disabled, naming the setting, in /api/health and in the intune endpoint's 503, while the static
// endpoint enrolls as before. The file used to be read while the service was built, and the error stopped the whole
// CA (SCEP, OCSP and the CRL) into the host's restart loop over a setting of Intune alone.
func TestIntuneCredentialFileUnusableDisablesOnlyIntune(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "intune.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"missing file", filepath.Join(t.TempDir(), "absent.pem")},
		{"no certificate and key", garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, stEnv := azuriteStore(t)
			env := append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t),
				"AZSCEP_SCEP_ENDPOINTS=static,intune", "AZSCEP_SCEP_STATIC_SECRET=" + kvStaticSecret,
				"AZSCEP_INTUNE_TENANT_ID=11111111-2222-4333-8444-555555555555",
				"AZSCEP_INTUNE_CLIENT_ID=22222222-3333-4444-8555-666666666666", "AZSCEP_INTUNE_CREDENTIAL=certificate",
				"AZSCEP_INTUNE_CERT_PATH=" + tc.path}, stEnv...)
			svc := startServeConfig(t, loadConfig(t, env), buildOptions{store: st}, false)
			get := func(path string) (int, string) {
				t.Helper()
				resp, err := http.Get(svc.base + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := get("/api/health"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"degraded"`) ||
				!strings.Contains(body, "AZSCEP_INTUNE_CERT_PATH") {
				t.Errorf("health = %d %s, want degraded naming AZSCEP_INTUNE_CERT_PATH", code, body)
			}
			if code, body := get("/api/scep/intune?operation=GetCACaps"); code != http.StatusServiceUnavailable ||
				!strings.Contains(body, `"feature_disabled"`) || !strings.Contains(body, "AZSCEP_INTUNE_CERT_PATH") {
				t.Errorf("intune endpoint = %d %s, want 503 feature_disabled naming AZSCEP_INTUNE_CERT_PATH", code, body)
			}
			if logs := svc.logText(); !strings.Contains(logs, "feature disabled by a setting") {
				t.Errorf("no fault logged:\n%s", logs)
			}
			certs, _ := getCACert(t, svc.scepURL("static"))
			to := recipients(t, certs)
			staticEnroll(t, svc, to, "intune-credential-unusable").mustSucceed(t, to[0])
		})
	}
}
