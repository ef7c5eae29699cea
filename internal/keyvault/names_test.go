package keyvault_test

import (
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestKeyNamesAreCaseInsensitive: Key Vault tells objects apart by case-insensitive identifiers and answers with the
// name as the key was created; a key configured as "ca-signing" loads the key created as "CA-Signing" (and its
// version spelled in upper case), and reports the identifier Key Vault gave.
func TestKeyNamesAreCaseInsensitive(t *testing.T) {
	testKeys(t)
	f := kvfake.New(t)
	kid := f.MustImportKey(t, "CA-Signing", rsaKey, kvfake.KeyOptions{})
	c, err := keyvault.NewClient(f.URL(), f.Credential(), f.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyvault.New(t.Context(), c, "ca-signing", "", keyvault.Options{})
	if err != nil {
		t.Fatalf("loading ca-signing: %v", err)
	}
	if k.KID() != kid {
		t.Errorf("KID %s, want the one Key Vault gave: %s", k.KID(), kid)
	}
	version := kid[strings.LastIndex(kid, "/")+1:]
	if _, err := keyvault.New(t.Context(), c, "CA-SIGNING", strings.ToUpper(version), keyvault.Options{}); err != nil {
		t.Errorf("loading CA-SIGNING/%s: %v", strings.ToUpper(version), err)
	}
}
