package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestKeyVaultStartupReasonNamesTheFirewall: a start-up that Key Vault's firewall refuses says so, not that a role
// assignment is still spreading: the operator waiting for a role would wait forever. A refusal for want of a role
// still says that.
func TestKeyVaultStartupReasonNamesTheFirewall(t *testing.T) {
	kv := kvfake.New(t)
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kv.MustImportKey(t, "ca", priv, kvfake.KeyOptions{})
	client, err := keyvault.NewClient(kv.URL(), kv.Credential(), kv.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ inner, want, not string }{
		{kvfake.ForbiddenByFirewall, "Key Vault, whose firewall refuses the app's network address", "role assignment can take"},
		{kvfake.ForbiddenByRbac, "Key Vault, which refuses the app's identity (a role assignment", "firewall"},
	} {
		kv.Forbid(kvfake.OpGet, 1, tc.inner)
		_, err := keyvault.New(context.Background(), client, "ca", "", keyvault.Options{})
		if !transientAtStart(err) {
			t.Errorf("%s: %v is not waited out at start; a firewall rule or a role can be added while it waits", tc.inner, err)
		}
		got := startupReason(err)
		if !strings.HasPrefix(got, tc.want) || strings.Contains(got, tc.not) {
			t.Errorf("%s: startupReason = %q, want %q… without %q", tc.inner, got, tc.want, tc.not)
		}
	}
}
