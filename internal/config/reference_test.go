package config

import (
	"strings"
	"testing"
)

// TestQuotedReferenceIsNotASecret: a reference pasted with its JSON quotes is left verbatim by App Service (it does not start with "@") and reads
// like a reference all the same: it must not become the static challenge.
func TestQuotedReferenceIsNotASecret(t *testing.T) {
	ref := `"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/azscep-scep-static-challenge/)"`
	c, err := Load(azureEnv("AZSCEP_SCEP_STATIC_SECRET=" + ref))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Endpoints {
		if e.Name == "static" && e.Secret != "" {
			t.Errorf("static challenge = %q: a verbatim reference is the secret", e.Secret)
		}
	}
}

// TestSecretStartingWithAtMicrosoftIsASecret: a static challenge the operator chose (AZSCEP_STATIC_CHALLENGE is any pipeline secret) that merely begins with
// "@Microsoft." is no reference: refusing it disables the endpoint with advice about Key Vault roles.
func TestSecretStartingWithAtMicrosoftIsASecret(t *testing.T) {
	c, err := Load(azureEnv("AZSCEP_SCEP_STATIC_SECRET=@Microsoft.Intune-Wifi-2025!"))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Fault(EndpointFeature("static")); f != nil {
		t.Errorf("static endpoint disabled: %v", f)
	}
}

// TestAppConfigurationReferenceAdvice: an unresolved App Configuration reference is not read by the service, and Key Vault Secrets User does not fix it.
func TestAppConfigurationReferenceAdvice(t *testing.T) {
	c, err := Load(azureEnv("AZSCEP_SCEP_STATIC_SECRET=@Microsoft.AppConfiguration(Endpoint=https://ac.azconfig.io; Key=challenge)"))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Fault(EndpointFeature("static"))
	if f == nil {
		t.Fatal("not disabled")
	}
	if strings.Contains(f.Error(), "Key Vault Secrets User") || strings.Contains(f.Error(), "reads it itself") {
		t.Errorf("advice for an App Configuration reference: %v", f)
	}
}

// TestSpacedReferenceIsNotASecret: a reference spelt with spaces inside its name ("@ Microsoft.KeyVault(",
// "@Microsoft .KeyVault(") is one App Service leaves verbatim, and it still reads like a reference whose text anyone
// who knows the vault and secret names can send: it must not become the static challenge (README: "in any case or
// spacing").
func TestSpacedReferenceIsNotASecret(t *testing.T) {
	for _, ref := range []string{
		"@ Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/azscep-scep-static-challenge/)",
		"@Microsoft .KeyVault(SecretUri=https://kv.vault.azure.net/secrets/azscep-scep-static-challenge/)",
		"@Microsoft. KeyVault(VaultName=kv;SecretName=azscep-scep-static-challenge)",
		"@ microsoft . keyvault ( VaultName=kv;SecretName=azscep-scep-static-challenge )",
	} {
		c, err := Load(azureEnv("AZSCEP_SCEP_STATIC_SECRET=" + ref))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range c.Endpoints {
			if e.Name == "static" && e.Secret != "" {
				t.Errorf("static challenge = %q: a verbatim reference is the secret", e.Secret)
			}
		}
		if c.Fault(EndpointFeature("static")) == nil {
			t.Errorf("%q: the static endpoint serves; want it disabled, naming the setting", ref)
		}
	}
}
