package keyvault_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

func TestParseReference(t *testing.T) {
	for in, want := range map[string]keyvault.Reference{
		"@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/static-challenge/)":       {VaultURL: "https://kv-x.vault.azure.net/", Name: "static-challenge"},
		"@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/static-challenge/abc123)": {VaultURL: "https://kv-x.vault.azure.net/", Name: "static-challenge", Version: "abc123"},
		" @Microsoft.KeyVault(VaultName=kv-x;SecretName=s;SecretVersion=v1)":                          {VaultURL: "https://kv-x.vault.azure.net/", Name: "s", Version: "v1", ByName: true},
		"@microsoft.keyvault (VaultName=kv-x;SecretName=s)":                                           {VaultURL: "https://kv-x.vault.azure.net/", Name: "s", ByName: true},
	} {
		got, err := keyvault.ParseReference(in)
		if err != nil || got != want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"plain", "@Microsoft.KeyVault(SecretUri=http://kv.vault.azure.net/secrets/s/)",
		"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/keys/s/)", "@Microsoft.KeyVault(VaultName=kv)",
		"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/s/?x=1)", "@Microsoft.KeyVault(VaultName=evil.example/x;SecretName=s)",
		"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/s/"} {
		if _, err := keyvault.ParseReference(bad); !errors.Is(err, keyvault.ErrInvalidInput) {
			t.Errorf("ParseReference(%q) = %v, want ErrInvalidInput", bad, err)
		}
	}
}

// TestResolveReference reads a secret through the real azsecrets client from the fake (bearer challenge,
// api-version, body shape), and classifies the answers the service waits on (forbidden: a role still spreading)
// apart from those it does not (no such secret, a host that is no Key Vault).
func TestResolveReference(t *testing.T) {
	kv := kvfake.New(t)
	kv.SetSecret("static-challenge", "old-value")
	kv.SetSecret("static-challenge", "a-long-static-secret")
	o := kv.ClientOptions()
	opts := &azsecrets.ClientOptions{ClientOptions: o.ClientOptions, DisableChallengeResourceVerification: true}
	ref := keyvault.Reference{VaultURL: kv.URL() + "/", Name: "static-challenge"}

	v, err := keyvault.Resolve(t.Context(), ref, kv.URL(), kv.Credential(), opts)
	if err != nil || v != "a-long-static-secret" {
		t.Fatalf("Resolve = %q, %v; want the current version", v, err)
	}
	kv.Fail(kvfake.OpGetSecret, 1, http.StatusForbidden)
	if _, err := keyvault.Resolve(t.Context(), ref, kv.URL(), kv.Credential(), opts); !errors.Is(err, keyvault.ErrForbidden) {
		t.Errorf("403: %v, want ErrForbidden", err)
	}
	missing := ref
	missing.Name = "nope"
	if _, err := keyvault.Resolve(t.Context(), missing, kv.URL(), kv.Credential(), opts); !errors.Is(err, keyvault.ErrNotFound) {
		t.Errorf("missing secret: %v, want ErrNotFound", err)
	}
	// The token goes to the configured vault or an Azure Key Vault host only.
	if _, err := keyvault.Resolve(t.Context(), ref, "https://kv-other.vault.azure.net/", kv.Credential(), opts); !errors.Is(err, keyvault.ErrInvalidInput) {
		t.Errorf("a host that is neither the configured vault nor Key Vault: %v, want ErrInvalidInput", err)
	}
	if n := kv.Count(kvfake.OpGetSecret); n != 3 {
		t.Errorf("%d secret reads, want 3 (the refused host is never asked)", n)
	}
}

// hostRecorder fails every request, as an unreachable network does, and records the hosts asked.
type hostRecorder struct {
	mu    sync.Mutex
	hosts []string
}

func (h *hostRecorder) Do(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts = append(h.hosts, r.URL.Host)
	h.mu.Unlock()
	return nil, errors.New("offline")
}

// TestResolveVaultNameInSovereignCloud: App Service finds a VaultName reference's vault in the app's own cloud. In
// Azure China or US Government the service's own vault (AZSCEP_KEYVAULT_URL) is under that cloud's suffix, and the
// reference must be read there, not from a public-cloud vault of that name (which does not resolve, or is someone
// else's): otherwise the reference stays "unavailable" and its feature disabled until a restart.
func TestResolveVaultNameInSovereignCloud(t *testing.T) {
	for vaultURL, want := range map[string]string{
		"https://kv-ca.vault.azure.cn/":          "kv-x.vault.azure.cn",
		"https://kv-ca.vault.usgovcloudapi.net/": "kv-x.vault.usgovcloudapi.net",
		"https://kv-ca.vault.azure.net/":         "kv-x.vault.azure.net",
		"https://kv-ca.VAULT.AZURE.CN:443/":      "kv-x.vault.azure.cn",
		"https://kv-ca.vault.microsoftazure.de/": "kv-x.vault.microsoftazure.de",
	} {
		ref, err := keyvault.ParseReference("@Microsoft.KeyVault(VaultName=kv-x;SecretName=s)")
		if err != nil {
			t.Fatal(err)
		}
		hosts, err := resolvedHosts(t, ref, vaultURL)
		if !errors.Is(err, keyvault.ErrUnavailable) {
			t.Errorf("%s: Resolve = %v, want ErrUnavailable from the offline transport", vaultURL, err)
		}
		if len(hosts) == 0 || hosts[0] != want {
			t.Errorf("AZSCEP_KEYVAULT_URL %s: asked %v, want %s", vaultURL, hosts, want)
		}
	}
	// The SecretUri form names its host: kept as written.
	ref, err := keyvault.ParseReference("@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/s/)")
	if err != nil {
		t.Fatal(err)
	}
	if hosts, _ := resolvedHosts(t, ref, "https://kv-ca.vault.azure.cn/"); len(hosts) == 0 || hosts[0] != "kv-x.vault.azure.net" {
		t.Errorf("SecretUri form: asked %v, want kv-x.vault.azure.net", hosts)
	}
}

// resolvedHosts resolves ref with the service's vault at vaultURL through a transport that records the hosts asked
// and answers nothing.
func resolvedHosts(t *testing.T, ref keyvault.Reference, vaultURL string) ([]string, error) {
	t.Helper()
	rec := &hostRecorder{}
	opts := &azsecrets.ClientOptions{}
	opts.Transport = rec
	opts.Retry.MaxRetries = -1
	_, err := keyvault.Resolve(t.Context(), ref, vaultURL, kvfake.New(t).Credential(), opts)
	return rec.hosts, err
}
