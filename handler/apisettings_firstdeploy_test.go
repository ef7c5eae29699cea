package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/config"
)

// TestAPISettingsTheVerifierRefusesDisableOnlyTheAPI: an operator who sets AZSCEP_API_TENANT_ID to the tenant's
// domain name (contoso.onmicrosoft.com) instead of its GUID, or a national cloud's authority host or Graph URL without
// https, gets the API disabled, naming the setting, in /api/health and in the 503 of /api/csr and /api/certificates,
// while the CA serves SCEP as before. Those settings used to load, then fail the token verifier (or the Graph
// directory) at start-up, which stopped the whole service (SCEP, OCSP and CRL included) into the host's restart loop.
func TestAPISettingsTheVerifierRefusesDisableOnlyTheAPI(t *testing.T) {
	caKey, _, _ := vaultKeys(t)
	const tenant = "AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000"
	for _, tc := range []struct {
		name, setting string
		env           []string
	}{
		{"tenant domain", "AZSCEP_API_TENANT_ID", []string{"AZSCEP_API_TENANT_ID=contoso.onmicrosoft.com"}},
		{"authority without scheme", "AZSCEP_API_AUTHORITY", []string{tenant, "AZSCEP_API_AUTHORITY=login.microsoftonline.us"}},
		{"graph over http", "AZSCEP_API_GRAPH_URL", []string{tenant, "AZSCEP_API_GRAPH_URL=http://graph.microsoft.us/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVaultCA(t, caKey, "", nil)
			env := append([]string{fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", freePort(t))},
				v.env(append(tc.env, "AZSCEP_API_AUDIENCES=api://azscep")...)...)
			cfg, err := config.Load(env)
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			svc := startServeConfig(t, cfg, v.opts(), false)
			do := func(method, path string) (*http.Response, string) {
				t.Helper()
				req, _ := http.NewRequest(method, svc.base+path, strings.NewReader("csr"))
				req.Header.Set("Content-Type", "application/pkcs10")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}

			if resp, body := do(http.MethodGet, "/api/health"); resp.StatusCode != http.StatusServiceUnavailable ||
				!strings.Contains(body, `"degraded"`) || !strings.Contains(body, tc.setting) {
				t.Errorf("health = %d %s, want degraded naming %s", resp.StatusCode, body, tc.setting)
			}
			for _, r := range []struct{ method, path string }{{http.MethodGet, "/api/certificates"}, {http.MethodPost, "/api/csr"}} {
				if resp, body := do(r.method, r.path); resp.StatusCode != http.StatusServiceUnavailable ||
					!strings.Contains(body, `"feature_disabled"`) || !strings.Contains(body, tc.setting) {
					t.Errorf("%s %s = %d %s, want 503 feature_disabled naming %s", r.method, r.path, resp.StatusCode, body, tc.setting)
				}
			}
			certs, _ := getCACert(t, svc.scepURL("static"))
			to := recipients(t, certs)
			staticEnroll(t, svc, to, "api-setting-refused").mustSucceed(t, to[0])
		})
	}
}
