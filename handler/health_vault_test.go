package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestKeyVaultHealthNamesARefusedCAKey: the CA key disabled after start-up (or its role removed, its key_ops
// narrowed, the firewall closed) makes every enrollment a 503, and /api/health, the operator's probe, says so with
// Key Vault's code and no message text; the first signature Key Vault carries out again clears it.
func TestKeyVaultHealthNamesARefusedCAKey(t *testing.T) {
	caKey, _, _ := vaultKeys(t)
	v := newVaultCA(t, caKey, "", nil)
	svc := v.start(t)
	certs, _ := getCACert(t, svc.scepURL("static"))
	to := recipients(t, certs)
	if code, body := getHealth(t, svc.base); code != http.StatusOK {
		t.Fatalf("/api/health before = %d %s", code, body)
	}

	v.kv.SetEnabled(kvCAKeyName, false)
	x := staticEnroll(t, svc, to, "kv-disabled-key-device")
	if x.resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("enrollment with the CA key disabled = %d, want 503", x.resp.StatusCode)
	}
	code, body := getHealth(t, svc.base)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"keyvault":{"status":"refused"`) ||
		!strings.Contains(body, "sign KeyDisabled (403 since") || strings.Contains(body, "not allowed on a disabled key") {
		t.Fatalf("/api/health while Key Vault refuses the CA key = %d %s", code, body)
	}

	v.kv.Forbid(kvfake.OpSign, 1, kvfake.ForbiddenByFirewall)
	v.kv.SetEnabled(kvCAKeyName, true)
	staticEnroll(t, svc, to, "kv-firewall-device")
	if _, body := getHealth(t, svc.base); !strings.Contains(body, "ForbiddenByFirewall") || !strings.Contains(body, "networking settings") ||
		strings.Contains(body, "203.0.113.7") {
		t.Fatalf("/api/health while the firewall refuses = %s", body)
	}

	post(t, svc.scepURL("static"), x.req).mustSucceed(t, to[0])
	if code, body := getHealth(t, svc.base); code != http.StatusOK || strings.Contains(body, "keyvault") {
		t.Fatalf("/api/health once Key Vault signs again = %d %s", code, body)
	}
}
