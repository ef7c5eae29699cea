package keyvault_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/keyvault"
)

// FuzzParseReference checks Key Vault references read from settings. A refusal is ErrInvalidInput. Whatever is
// accepted also reads as a platform reference (so config never uses it as a secret); its VaultURL is exactly
// "https://<host>/" (no user, port-free for the VaultName form, no path, query or fragment) and, for the
// VaultName form, that host is "<VaultName>.vault.azure.net"; its secret name is set, and neither name nor
// version is a dot segment or holds a "/", so the secret read stays at /secrets/<name>[/<version>] of that vault.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/static-challenge/)",
		"@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/static-challenge/abc123)",
		" @Microsoft.KeyVault(VaultName=kv-x;SecretName=s;SecretVersion=v1)",
		"@microsoft.keyvault (VaultName=kv-x;SecretName=s)",
		"@Microsoft.KeyVault(SecretUri=http://kv.vault.azure.net/secrets/s/)",
		"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/keys/s/)",
		"@Microsoft.KeyVault(VaultName=kv)",
		"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/s/?x=1)",
		"@Microsoft.KeyVault(VaultName=evil.example/x;SecretName=s)",
		"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/s/",
		"plain",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ref, err := keyvault.ParseReference(v)
		if err != nil {
			if !errors.Is(err, keyvault.ErrInvalidInput) {
				t.Fatalf("refusal %v is not ErrInvalidInput", err)
			}
			return
		}
		if !keyvault.IsPlatformReference(v) {
			t.Fatalf("%q parses as %+v but is not recognised as a platform reference", v, ref)
		}
		u, err := url.Parse(ref.VaultURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Path != "/" || u.RawPath != "" ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" || ref.VaultURL != "https://"+u.Host+"/" {
			t.Fatalf("%q: vault URL %q (%v)", v, ref.VaultURL, err)
		}
		if !strings.Contains(strings.ToLower(v), "secreturi") {
			if u.Port() != "" || !strings.HasSuffix(u.Host, ".vault.azure.net") || strings.Count(u.Host, ".") != 3 {
				t.Fatalf("%q: VaultName form names host %q", v, u.Host)
			}
		}
		for _, s := range []string{ref.Name, ref.Version} {
			if s == "." || s == ".." || strings.Contains(s, "/") {
				t.Fatalf("%q: name %q version %q", v, ref.Name, ref.Version)
			}
		}
		if ref.Name == "" {
			t.Fatalf("%q: no secret name", v)
		}
	})
}
