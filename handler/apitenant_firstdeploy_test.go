package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/config"
)

// TestAPITenantDomainDisablesOnlyTheAPI: an operator who sets AZSCEP_API_TENANT_ID to the tenant's domain name
// (contoso.onmicrosoft.com) instead of its GUID gets the API disabled, naming the setting, in /api/health and in
// the 503 of /api/csr and /api/certificates, while the CA serves SCEP as before. The setting used to load, then fail
// the token verifier at start-up, which stopped the whole service (SCEP, OCSP and CRL included) into the host's
// restart loop.
func TestAPITenantDomainDisablesOnlyTheAPI(t *testing.T) {
	caKey, _, _ := vaultKeys(t)
	v := newVaultCA(t, caKey, "", nil)
	env := append([]string{fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", freePort(t))},
		v.env("AZSCEP_API_TENANT_ID=contoso.onmicrosoft.com", "AZSCEP_API_AUDIENCES=api://azscep")...)
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

	resp, body := do(http.MethodGet, "/api/health")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"degraded"`) ||
		!strings.Contains(body, "AZSCEP_API_TENANT_ID") {
		t.Errorf("health = %d %s, want degraded naming AZSCEP_API_TENANT_ID", resp.StatusCode, body)
	}
	if resp, body := do(http.MethodGet, "/api/certificates"); resp.StatusCode != http.StatusServiceUnavailable ||
		!strings.Contains(body, `"feature_disabled"`) || !strings.Contains(body, "AZSCEP_API_TENANT_ID") {
		t.Errorf("/api/certificates = %d %s, want 503 feature_disabled naming AZSCEP_API_TENANT_ID", resp.StatusCode, body)
	}
	if resp, body := do(http.MethodPost, "/api/csr"); resp.StatusCode != http.StatusServiceUnavailable ||
		!strings.Contains(body, "AZSCEP_API_TENANT_ID") {
		t.Errorf("/api/csr = %d %s, want 503 naming AZSCEP_API_TENANT_ID", resp.StatusCode, body)
	}

	certs, _ := getCACert(t, svc.scepURL("static"))
	to := recipients(t, certs)
	staticEnroll(t, svc, to, "api-tenant-domain").mustSucceed(t, to[0])
}
