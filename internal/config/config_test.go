package config

import (
	"errors"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func localEnv(extra ...string) []string {
	return append([]string{"AZSCEP_MODE=local", "AZSCEP_TABLES_CONNECTION=DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a;TableEndpoint=http://127.0.0.1:10002/a;"}, extra...)
}

func azureEnv(extra ...string) []string {
	return append([]string{"AZSCEP_MODE=azure", "AZSCEP_BASE_URL=https://ca.example.net",
		"AZSCEP_TABLES_ENDPOINT=https://acct.table.core.windows.net", "AZSCEP_KEYVAULT_URL=https://kv.vault.azure.net",
		"AZURE_CLIENT_ID=00000000-0000-0000-0000-000000000001", "AZSCEP_INTUNE_TENANT_ID=contoso.onmicrosoft.com",
		"AZSCEP_SCEP_STATIC_SECRET=a-long-static-secret", "REVOCATION_SCHEDULE=0 0 * * * *"}, extra...)
}

func TestLocalDefaults(t *testing.T) {
	c, err := Load(localEnv())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 7071 || c.BaseURL.String() != "http://127.0.0.1:7071" || c.Mode != ModeLocal {
		t.Fatalf("defaults wrong: %+v", c)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].Name != "static" || c.Endpoints[0].Secret != LocalStaticChallenge {
		t.Fatalf("local default endpoint wrong: %+v", c.Endpoints)
	}
	if c.URL("/api/crl") != "http://127.0.0.1:7071/api/crl" {
		t.Fatalf("URL = %s", c.URL("/api/crl"))
	}
	for _, name := range []string{"device", "intune", "api"} {
		if c.Profiles[name] == nil {
			t.Errorf("built-in profile %s missing", name)
		}
	}
	// `make run PORT=…` (README): the local base URL, and so every URL in certificates and the printed commands,
	// follows the port rather than staying on 7071.
	c, err = Load(localEnv("FUNCTIONS_CUSTOMHANDLER_PORT=8071"))
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL.String() != "http://127.0.0.1:8071" {
		t.Fatalf("local base URL on port 8071 = %s", c.BaseURL)
	}
}

func TestAzureDefaults(t *testing.T) {
	c, err := Load(azureEnv())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Endpoints) != 2 || c.Endpoints[1].Name != "intune" || c.Endpoints[1].Challenge != "intune" ||
		c.Endpoints[1].Profile != "intune" || !c.Intune.Enabled {
		t.Fatalf("azure default endpoints wrong: %+v", c.Endpoints)
	}
	if err := c.CheckServe(); err != nil {
		t.Fatal(err)
	}
	if c.RAMode != "envelope" || c.KEKName != "azscep-kek" || c.CAKeyName != "azscep-ca" {
		t.Fatalf("key defaults wrong: %+v", c)
	}
	// The vault and table URLs as the template's outputs write them, with a trailing slash.
	if _, err := Load(azureEnv("AZSCEP_KEYVAULT_URL=https://kv-contoso.vault.azure.net/",
		"AZSCEP_TABLES_ENDPOINT=https://stcontoso.table.core.windows.net/")); err != nil {
		t.Fatalf("vault and table URLs with a trailing slash: %v", err)
	}
	// Locally an emulator's endpoint names the account in its path.
	if _, err := Load([]string{"AZSCEP_MODE=local", "AZSCEP_TABLES_ENDPOINT=http://127.0.0.1:10002/devstoreaccount1"}); err != nil {
		t.Fatalf("Azurite's path-style endpoint in local mode: %v", err)
	}
	c, err = Load(azureEnv("AZSCEP_CA_KEY_NAME=Contoso-CA-2", "AZSCEP_KEK_NAME=contoso-kek-2",
		"AZSCEP_CA_KEY_VERSION=0f1e2d3c4b5a69788796a5b4c3d2e1f0"))
	if err != nil {
		t.Fatalf("Key Vault names and a version as Key Vault makes them: %v", err)
	}
	if c.CAKeyName != "Contoso-CA-2" || c.KEKName != "contoso-kek-2" || c.CAKeyVersion != "0f1e2d3c4b5a69788796a5b4c3d2e1f0" {
		t.Fatalf("key settings wrong: %+v", c)
	}
}

func TestEndpointAndProfileSettings(t *testing.T) {
	c, err := Load(localEnv("AZSCEP_SCEP_ENDPOINTS=routers,static",
		"AZSCEP_SCEP_ROUTERS=challenge=static;profile=net;cacert=single;certrep_chain=true;renewal=14d",
		"AZSCEP_SCEP_ROUTERS_SECRET=router-secret-1",
		"AZSCEP_PROFILE_NET=validity=90d;ku=digitalSignature,keyEncipherment;eku=clientAuth,serverAuth;dns=*.corp.example.com;ip=10.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Endpoints[0]
	if e.Name != "routers" || e.Profile != "net" || e.CACert != "single" || !e.CertRepChain ||
		e.RenewalWindow != 14*24*time.Hour || e.Secret != "router-secret-1" {
		t.Fatalf("endpoint = %+v", e)
	}
	if p := c.Profiles["net"]; p == nil || p.MaxValidity != 90*24*time.Hour || len(p.ExtKeyUsage) != 2 {
		t.Fatalf("profile = %+v", p)
	}
	if s := c.Endpoints[1]; s.ReplayWindow != DefaultReplayWindow || len(s.RenewFrom) != 0 || s.RenewalMax != 0 {
		t.Fatalf("static endpoint defaults: replay %s, renew_from %v, renewal_max %s", s.ReplayWindow, s.RenewFrom, s.RenewalMax)
	}
	if c.SCEPRatePerClient != (Rate{Count: 120, Per: time.Minute}) || c.SCEPRateGlobal != (Rate{Count: 3000, Per: time.Minute}) {
		t.Fatalf("rate defaults: %+v %+v", c.SCEPRatePerClient, c.SCEPRateGlobal)
	}

	c, err = Load(localEnv("AZSCEP_SCEP_ENDPOINTS=routers,static",
		"AZSCEP_SCEP_ROUTERS=replay=1h;renew_from=Static;renewal_max=730d", "AZSCEP_SCEP_ROUTERS_SECRET=router-secret-1",
		"AZSCEP_SCEP_RATE_PER_CLIENT=10/1s", "AZSCEP_SCEP_RATE_GLOBAL=500/30s"))
	if err != nil {
		t.Fatal(err)
	}
	if e := c.Endpoints[0]; e.ReplayWindow != time.Hour || len(e.RenewFrom) != 1 || e.RenewFrom[0] != "static" ||
		e.RenewalMax != 730*24*time.Hour {
		t.Fatalf("renewal settings: %+v", e)
	}
	if c.SCEPRatePerClient != (Rate{Count: 10, Per: time.Second}) || c.SCEPRateGlobal != (Rate{Count: 500, Per: 30 * time.Second}) {
		t.Fatalf("rates: %+v %+v", c.SCEPRatePerClient, c.SCEPRateGlobal)
	}
}

// TestDefaultIntuneProfileNeedsIntunesChallenge: an endpoint without a profile gets the intune profile only when it
// is the intune endpoint and Intune vouches for each request. Switched to a static challenge (say while Intune is
// down) it must not keep a profile that lets whoever holds the shared secret name any UPN or SID; other endpoints
// keep the narrow device default. Named explicitly, the built-in intune and api profiles (any UPN, e-mail name,
// and for intune SID and device URIs, because Intune or an Entra role authorizes each request) are refused behind
// a static challenge: the endpoint is disabled, naming its setting. A profile the operator wrote is kept.
func TestDefaultIntuneProfileNeedsIntunesChallenge(t *testing.T) {
	for _, tc := range []struct {
		name, setting, profile, want string
	}{
		{"intune", "", "", "intune"},
		{"intune", "challenge=static", "", "device"},
		{"branch", "challenge=intune", "", "device"},
		{"branch", "", "", "device"},
		{"intune", "challenge=static;profile=intune", "", ""},
		{"branch", "profile=api", "", ""},
		{"branch", "profile=INTUNE", "", ""},
		{"branch", "profile=device", "", "device"},
		{"intune", "challenge=static;profile=intune", "validity=90d;ku=digitalSignature;eku=clientAuth;upn=*@contoso.com", "intune"},
	} {
		key := "AZSCEP_SCEP_" + strings.ToUpper(tc.name)
		env := localEnv("AZSCEP_SCEP_ENDPOINTS=static,"+tc.name, key+"="+tc.setting, key+"_SECRET=a-long-static-secret",
			"AZSCEP_INTUNE_TENANT_ID=contoso.onmicrosoft.com")
		if tc.profile != "" {
			env = append(env, "AZSCEP_PROFILE_INTUNE="+tc.profile)
		}
		c, err := Load(env)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(c.Endpoints, func(e Endpoint) bool { return e.Name == tc.name })
		if tc.want == "" {
			f := c.Fault(EndpointFeature(tc.name))
			if i >= 0 || f == nil || f.Setting != key || !strings.Contains(f.Error(), "built-in profile") {
				t.Errorf("endpoint %s with %q: served (%v), fault %v; want disabled naming %s", tc.name, tc.setting, i >= 0, f, key)
			}
			continue
		}
		if i < 0 {
			t.Fatalf("endpoint %s with %q disabled: %v", tc.name, tc.setting, c.Fault(EndpointFeature(tc.name)))
		}
		if e := c.Endpoints[i]; e.Profile != tc.want {
			t.Errorf("endpoint %s with %q: profile %q, want %q", tc.name, tc.setting, e.Profile, tc.want)
		}
	}
}

// TestBadSettings: every bad or missing setting names itself in one error. A core setting fails Load; a setting
// of one optional feature disables that feature only (feature names it), and everything else still loads.
func TestBadSettings(t *testing.T) {
	cases := []struct {
		name    string
		env     []string
		setting string
		feature string // empty: Load (or CheckServe) fails
	}{
		{"mode", []string{"AZSCEP_MODE=cloud"}, "AZSCEP_MODE", ""},
		{"port", localEnv("FUNCTIONS_CUSTOMHANDLER_PORT=99999"), "FUNCTIONS_CUSTOMHANDLER_PORT", ""},
		{"base url http in azure", azureEnv("AZSCEP_BASE_URL=http://ca.example.net"), "AZSCEP_BASE_URL", ""},
		{"no base url in azure", []string{"AZSCEP_MODE=azure"}, "AZSCEP_BASE_URL", ""},
		// The OCSP, caIssuers and CRL URLs are the base plus a path, written into every certificate for its whole
		// life: a query, fragment or user info in the base would put that path where no client sends it (or a
		// password into the certificates).
		{"base url with query", azureEnv("AZSCEP_BASE_URL=https://ca.example.net/?tenant=1"), "AZSCEP_BASE_URL", ""},
		{"base url with fragment", azureEnv("AZSCEP_BASE_URL=https://ca.example.net#ca"), "AZSCEP_BASE_URL", ""},
		{"base url with user info", azureEnv("AZSCEP_BASE_URL=https://ops:secret@ca.example.net"), "AZSCEP_BASE_URL", ""},
		{"publication url with query", azureEnv("AZSCEP_PUBLICATION_URL=http://pki.example.net?x=1"), "AZSCEP_PUBLICATION_URL", ""},
		{"publication url with fragment", azureEnv("AZSCEP_PUBLICATION_URL=http://pki.example.net/#top"), "AZSCEP_PUBLICATION_URL", ""},
		{"publication url with user info", azureEnv("AZSCEP_PUBLICATION_URL=http://ops@pki.example.net"), "AZSCEP_PUBLICATION_URL", ""},
		{"no tables", []string{"AZSCEP_MODE=local"}, "AZSCEP_TABLES_ENDPOINT", ""},
		{"connection string in azure", azureEnv("AZSCEP_TABLES_CONNECTION=x"), "AZSCEP_TABLES_CONNECTION", ""},
		{"no key vault", []string{"AZSCEP_MODE=azure", "AZSCEP_BASE_URL=https://x", "AZSCEP_TABLES_ENDPOINT=https://t"}, "AZSCEP_KEYVAULT_URL", ""},
		{"ra mode", localEnv("AZSCEP_RA_MODE=hsm"), "AZSCEP_RA_MODE", ""},
		{"backdate", localEnv("AZSCEP_BACKDATE=2h"), "AZSCEP_BACKDATE", ""},
		{"endpoint name", localEnv("AZSCEP_SCEP_ENDPOINTS=static,bad-name"), "AZSCEP_SCEP_ENDPOINTS", "scep/bad-name"},
		{"dev issuer in azure", azureEnv("AZSCEP_DEV_ISSUER=true"), "AZSCEP_DEV_ISSUER", ""},
		{"batch", localEnv("AZSCEP_REVOCATION_BATCH=501"), "AZSCEP_REVOCATION_BATCH", ""},
		// Shorter than an issuance can stay pending: a retry would take over a running one.
		{"pending stale after short", localEnv("AZSCEP_PENDING_STALE_AFTER=2m"), "AZSCEP_PENDING_STALE_AFTER", ""},
		// Below the OCSP cache margin, or too long for the responder certificate: refused here, by name, rather
		// than by the responder after the process has started listening.
		{"ocsp validity short", localEnv("AZSCEP_OCSP_VALIDITY=10m"), "AZSCEP_OCSP_VALIDITY", ""},
		{"ocsp validity long", localEnv("AZSCEP_OCSP_VALIDITY=13h"), "AZSCEP_OCSP_VALIDITY", ""},
		{"prefix", localEnv("AZSCEP_TABLES_PREFIX=9x"), "AZSCEP_TABLES_PREFIX", ""},
		// Names Key Vault cannot have: its 400 would be an error `ca init` exits 1 on (the postprovision hook
		// retries that for 12 minutes) and that the service stops on without naming the setting.
		{"table url as the endpoint", azureEnv("AZSCEP_TABLES_ENDPOINT=https://acct.table.core.windows.net/azscepcerts"), "AZSCEP_TABLES_ENDPOINT", ""},
		{"table endpoint with a SAS", azureEnv("AZSCEP_TABLES_ENDPOINT=https://acct.table.core.windows.net/?sv=2022-11-02&sig=x"), "AZSCEP_TABLES_ENDPOINT", ""},
		{"key vault url of a key", azureEnv("AZSCEP_KEYVAULT_URL=https://kv.vault.azure.net/keys/azscep-ca/0f1e2d3c4b5a69788796a5b4c3d2e1f0"), "AZSCEP_KEYVAULT_URL", ""},
		{"key vault url with query", azureEnv("AZSCEP_KEYVAULT_URL=https://kv.vault.azure.net/?api-version=7.5"), "AZSCEP_KEYVAULT_URL", ""},
		{"client id not a GUID", azureEnv("AZURE_CLIENT_ID=id-azscep-prod"), "AZURE_CLIENT_ID", ""},
		{"ca key name", azureEnv("AZSCEP_CA_KEY_NAME=contoso_ca"), "AZSCEP_CA_KEY_NAME", ""},
		{"kek name", azureEnv("AZSCEP_KEK_NAME=keys/kek"), "AZSCEP_KEK_NAME", ""},
		{"ca key version", azureEnv("AZSCEP_CA_KEY_VERSION=https://kv.vault.azure.net/keys/azscep-ca/0123"), "AZSCEP_CA_KEY_VERSION", ""},
		// One key cannot be both the CA key (sign only) and the KEK (wrap only); Key Vault names ignore case.
		{"kek is the ca key", azureEnv("AZSCEP_CA_KEY_NAME=Contoso-CA", "AZSCEP_KEK_NAME=contoso-ca"), "AZSCEP_KEK_NAME", ""},
		{"unresolved core reference", azureEnv("AZSCEP_KEYVAULT_URL=@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/u/)"), "AZSCEP_KEYVAULT_URL", ""},

		{"endpoint key", localEnv("AZSCEP_SCEP_STATIC=colour=blue"), "AZSCEP_SCEP_STATIC", "scep/static"},
		{"endpoint profile", localEnv("AZSCEP_SCEP_STATIC=profile=nope"), "AZSCEP_SCEP_STATIC", "scep/static"},
		// A stale copy of a key further on must not win over the one just edited.
		{"endpoint key twice", localEnv("AZSCEP_PROFILE_NARROW=dns=a.example.com", "AZSCEP_PROFILE_WIDE=dns=*",
			"AZSCEP_SCEP_STATIC=profile=narrow;renewal=30d;profile=wide"), "AZSCEP_SCEP_STATIC", "scep/static"},
		// renewal=0 read as "not set" would allow renewals through the last half of the validity.
		{"endpoint renewal zero", localEnv("AZSCEP_SCEP_STATIC=renewal=0d"), "AZSCEP_SCEP_STATIC", "scep/static"},
		{"endpoint renewal under an hour", localEnv("AZSCEP_SCEP_STATIC=renewal=30m"), "AZSCEP_SCEP_STATIC", "scep/static"},
		// Which of two spellings of one profile would win is an accident of sorting.
		{"profile set twice in different case", localEnv("AZSCEP_PROFILE_NET=dns=a.example.com",
			"AZSCEP_PROFILE_Net=dns=*"), "AZSCEP_PROFILE_NET", "profile/net"},
		{"short secret", localEnv("AZSCEP_SCEP_ENDPOINTS=gear,static", "AZSCEP_SCEP_GEAR_SECRET=short"), "AZSCEP_SCEP_GEAR_SECRET", "scep/gear"},
		{"azure static needs secret", azureEnv("AZSCEP_SCEP_STATIC_SECRET="), "AZSCEP_SCEP_STATIC_SECRET", "scep/static"},
		{"unresolved key vault reference", azureEnv("AZSCEP_SCEP_STATIC_SECRET=@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x)"), "AZSCEP_SCEP_STATIC_SECRET", "scep/static"},
		// Spelled otherwise, a reference is still never the secret (it would pass the 8-character check).
		{"unresolved reference, lower case", azureEnv("AZSCEP_SCEP_STATIC_SECRET=@microsoft.keyvault(SecretUri=https://kv.vault.azure.net/secrets/x)"), "AZSCEP_SCEP_STATIC_SECRET", "scep/static"},
		{"unresolved reference, space before (", azureEnv("AZSCEP_SCEP_STATIC_SECRET=@Microsoft.KeyVault (SecretUri=https://kv.vault.azure.net/secrets/x)"), "AZSCEP_SCEP_STATIC_SECRET", "scep/static"},
		{"unresolved App Configuration reference", azureEnv("AZSCEP_SCEP_STATIC_SECRET=@Microsoft.AppConfiguration(Endpoint=https://ac.azconfig.io; Key=challenge)"), "AZSCEP_SCEP_STATIC_SECRET", "scep/static"},
		{"profile", localEnv("AZSCEP_PROFILE_X=eku=codeSigning"), "AZSCEP_PROFILE_X", "profile/x"},
		{"profile disables its endpoint", localEnv("AZSCEP_PROFILE_DEVICE=eku=codeSigning"), "AZSCEP_PROFILE_DEVICE", "scep/static"},
		// Allow-lists that would match everything without saying "*" (issue 11).
		{"profile san= old form", localEnv("AZSCEP_PROFILE_DEVICE=san=dns,upn"), "AZSCEP_PROFILE_DEVICE", "scep/static"},
		{"profile empty dns list", localEnv("AZSCEP_PROFILE_DEVICE=dns="), "AZSCEP_PROFILE_DEVICE", "scep/static"},
		{"profile every IPv4 address", localEnv("AZSCEP_PROFILE_NET=ip=0.0.0.0/0"), "AZSCEP_PROFILE_NET", "profile/net"},
		{"profile match-all DNS pattern", localEnv("AZSCEP_PROFILE_NET=dns=**"), "AZSCEP_PROFILE_NET", "profile/net"},
		{"profile match-all UPN pattern", localEnv("AZSCEP_PROFILE_NET=upn=*@*"), "AZSCEP_PROFILE_NET", "profile/net"},
		{"api client app not a GUID", localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_API_CLIENT_APPS=my-app"), "AZSCEP_API_CLIENT_APPS", "api"},
		{"profile validity within the back-date", localEnv("AZSCEP_BACKDATE=1h", "AZSCEP_PROFILE_SHORT=validity=1h;eku=clientAuth;dns=*"), "AZSCEP_PROFILE_SHORT", "profile/short"},
		{"admin client app not a GUID", localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_ADMIN_CLIENT_APPS=az-cli"), "AZSCEP_ADMIN_CLIENT_APPS", "api"},
		{"admin any client beside a list", localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_ADMIN_CLIENT_APPS=*,0a1b2c3d-0000-4000-8000-000000000001"), "AZSCEP_ADMIN_CLIENT_APPS", "api"},
		{"api allow guests", localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_API_ALLOW_GUESTS=maybe"), "AZSCEP_API_ALLOW_GUESTS", "api"},
		{"intune tenant", localEnv("AZSCEP_SCEP_ENDPOINTS=intune,static"), "AZSCEP_INTUNE_TENANT_ID", "intune"},
		{"intune endpoint goes with intune", localEnv("AZSCEP_SCEP_ENDPOINTS=intune,static"), "AZSCEP_INTUNE_TENANT_ID", "scep/intune"},
		{"intune secret", azureEnv("AZSCEP_INTUNE_CREDENTIAL=secret"), "AZSCEP_INTUNE_CLIENT_SECRET", "intune"},
		{"intune unresolved secret", azureEnv("AZSCEP_INTUNE_CREDENTIAL=secret", "AZSCEP_INTUNE_CLIENT_SECRET=@Microsoft.KeyVault(VaultName=kv;SecretName=s)"), "AZSCEP_INTUNE_CLIENT_SECRET", "intune"},
		{"intune bundle in azure", azureEnv("AZSCEP_INTUNE_CA_BUNDLE=/x.pem"), "AZSCEP_INTUNE_CA_BUNDLE", "intune"},
		// A domain name instead of the tenant's GUID: only the API goes down, naming the setting, rather than the
		// token verifier failing the whole start-up.
		{"api tenant is a domain", azureEnv("AZSCEP_API_TENANT_ID=contoso.onmicrosoft.com", "AZSCEP_API_AUDIENCES=api://x"), "AZSCEP_API_TENANT_ID", "api"},
		{"api authority without scheme", azureEnv("AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000", "AZSCEP_API_AUDIENCES=api://x",
			"AZSCEP_API_AUTHORITY=login.microsoftonline.us"), "AZSCEP_API_AUTHORITY", "api"},
		{"api graph url over http", azureEnv("AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000", "AZSCEP_API_AUDIENCES=api://x",
			"AZSCEP_API_GRAPH_URL=http://graph.microsoft.us/"), "AZSCEP_API_GRAPH_URL", "api"},
		{"api audiences", localEnv("AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000"), "AZSCEP_API_AUDIENCES", "api"},
		{"api unresolved audiences", azureEnv("AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000", "AZSCEP_API_AUDIENCES=@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/a)"), "AZSCEP_API_AUDIENCES", "api"},
		{"api profile", localEnv("AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000", "AZSCEP_API_AUDIENCES=a", "AZSCEP_API_PROFILE=nope"), "AZSCEP_API_PROFILE", "api"},
		{"api inherits its profile's fault", localEnv("AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000", "AZSCEP_API_AUDIENCES=a", "AZSCEP_PROFILE_API=ku=bogus"), "AZSCEP_PROFILE_API", "api"},
		{"replay window", localEnv("AZSCEP_SCEP_STATIC=replay=40d"), "AZSCEP_SCEP_STATIC", "scep/static"},
		{"renewal maximum", localEnv("AZSCEP_SCEP_STATIC=renewal_max=10m"), "AZSCEP_SCEP_STATIC", "scep/static"},
		{"renew from an unknown endpoint", localEnv("AZSCEP_SCEP_STATIC=renew_from=nowhere"), "AZSCEP_SCEP_STATIC", "scep/static"},
		{"static renews intune", azureEnv("AZSCEP_SCEP_STATIC=renew_from=intune"), "AZSCEP_SCEP_STATIC", "scep/static"},
		{"client rate", localEnv("AZSCEP_SCEP_RATE_PER_CLIENT=fast"), "AZSCEP_SCEP_RATE_PER_CLIENT", ""},
		{"global rate", localEnv("AZSCEP_SCEP_RATE_GLOBAL=0/1m"), "AZSCEP_SCEP_RATE_GLOBAL", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.env)
			if tc.feature != "" {
				if err != nil {
					t.Fatalf("a feature setting failed Load: %v", err)
				}
				checkFault(t, c, tc.feature, tc.setting)
				return
			}
			if err == nil {
				// Problems that only concern the running service surface in CheckServe.
				err = c.CheckServe()
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Setting != tc.setting {
				t.Fatalf("err = %v, want an error naming %s", err, tc.setting)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
	c, err := Load(azureEnv("AZURE_CLIENT_ID="))
	if err != nil {
		t.Fatal(err)
	}
	var ce *Error
	if err := c.CheckServe(); !errors.As(err, &ce) || ce.Setting != "AZURE_CLIENT_ID" {
		t.Fatalf("serving in azure without a managed identity: %v", err)
	}
}

// checkFault asserts that feature is disabled by a one-line problem naming setting, and gone from the Config.
func checkFault(t *testing.T, c *Config, feature, setting string) {
	t.Helper()
	f := c.Fault(feature)
	if f == nil || f.Setting != setting {
		t.Fatalf("fault of %s = %v, want one naming %s (faults: %v)", feature, f, setting, c.Faults)
	}
	if strings.Contains(f.Error(), "\n") || strings.Contains(f.Error(), "@Microsoft.KeyVault") {
		t.Fatalf("fault is not one clean line: %q", f)
	}
	for _, e := range c.Endpoints {
		if EndpointFeature(e.Name) == feature {
			t.Fatalf("disabled endpoint %s is still configured", e.Name)
		}
	}
	if (feature == FeatureIntune && c.Intune.Enabled) || (feature == FeatureAPI && c.API.Enabled) {
		t.Fatalf("disabled feature %s is still enabled", feature)
	}
}

// TestOneFaultDisablesOnlyItsFeature: one unreadable secret leaves every other feature configured.
func TestOneFaultDisablesOnlyItsFeature(t *testing.T) {
	ref := "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/static-challenge/)"
	c, err := Load(azureEnv("AZSCEP_SCEP_STATIC_SECRET="+ref, "AZSCEP_SCEP_ENDPOINTS=static,intune,gear",
		"AZSCEP_SCEP_GEAR_SECRET=gear-secret-123", "AZSCEP_API_TENANT_ID=66666666-7777-4888-9999-000000000000", "AZSCEP_API_AUDIENCES=api://x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckServe(); err != nil {
		t.Fatal(err)
	}
	checkFault(t, c, "scep/static", "AZSCEP_SCEP_STATIC_SECRET")
	if len(c.Faults) != 1 {
		t.Fatalf("faults = %v, want only the static endpoint", c.Faults)
	}
	if len(c.Endpoints) != 2 || c.Endpoints[0].Name != "intune" || c.Endpoints[1].Name != "gear" ||
		!c.Intune.Enabled || !c.API.Enabled {
		t.Fatalf("the other features must stay: %+v intune=%t api=%t", c.Endpoints, c.Intune.Enabled, c.API.Enabled)
	}
	if l := c.FaultList(); len(l) != 1 || l[0].Feature != "scep/static" {
		t.Fatalf("FaultList = %+v", l)
	}
}

// TestUnlistedEndpointSetting: AZSCEP_SCEP_<NAME> is read only for the endpoints AZSCEP_SCEP_ENDPOINTS lists, so
// an endpoint added by its setting alone (as the deployment guide once said to) silently did not exist. Such a
// setting disables that endpoint's feature, naming the setting, so that /api/health and the start-up log show it;
// the settings of listed endpoints (in any case) and the rate settings are not faults. An endpoint configured by
// its secret alone is an endpoint setting too; a name listed twice is one endpoint.
func TestUnlistedEndpointSetting(t *testing.T) {
	c, err := Load(azureEnv("AZSCEP_SCEP_ROUTERS=profile=net", "AZSCEP_PROFILE_NET=eku=clientAuth;dns=*.corp.example.com",
		"AZSCEP_SCEP_INTUNE=renewal=30d", "AZSCEP_SCEP_GEAR_SECRET=gear-secret-123", "AZSCEP_SCEP_RATE_GLOBAL=10/1s",
		"AZSCEP_SCEP_EMPTY="))
	if err != nil {
		t.Fatal(err)
	}
	checkFault(t, c, "scep/routers", "AZSCEP_SCEP_ROUTERS")
	if f := c.Fault("scep/routers"); !strings.Contains(f.Problem, "endpoint routers is not listed in AZSCEP_SCEP_ENDPOINTS") {
		t.Errorf("problem = %q", f.Problem)
	}
	checkFault(t, c, "scep/gear", "AZSCEP_SCEP_GEAR_SECRET")
	if l := c.FaultList(); len(l) != 2 {
		t.Errorf("faults = %v, want scep/routers and scep/gear", c.Faults)
	}
	noTenant, err := Load(localEnv("AZSCEP_SCEP_INTUNE=renewal=30d"))
	if err != nil {
		t.Fatal(err)
	}
	if f := noTenant.Fault("scep/intune"); f == nil || !strings.Contains(f.Problem, "AZSCEP_INTUNE_TENANT_ID") {
		t.Errorf("intune without a tenant: fault %v, want one pointing at AZSCEP_INTUNE_TENANT_ID", f)
	}
	mixed, err := Load(azureEnv("AZSCEP_SCEP_Gear_SECRET=gear-secret-123"))
	if err != nil {
		t.Fatal(err)
	}
	if f := mixed.Fault("scep/gear"); f == nil || !strings.Contains(f.Problem, "upper case, AZSCEP_SCEP_GEAR_SECRET") {
		t.Errorf("a mixed-case endpoint setting: fault %v, want one asking for AZSCEP_SCEP_GEAR_SECRET", f)
	}
	explicit, err := Load(localEnv("AZSCEP_SCEP_ENDPOINTS=static", "AZSCEP_SCEP_INTUNE=renewal=30d"))
	if err != nil {
		t.Fatal(err)
	}
	if f := explicit.Fault("scep/intune"); f == nil || !strings.Contains(f.Problem, "add intune to AZSCEP_SCEP_ENDPOINTS") {
		t.Errorf("intune left out of an explicit list: fault %v, want one saying to add it there", f)
	}
	twice, err := Load(azureEnv("AZSCEP_SCEP_ENDPOINTS=static,intune,INTUNE"))
	if err != nil || len(twice.Endpoints) != 2 {
		t.Errorf("a name listed twice: %v, %v; want 2 endpoints", twice, err)
	}
	if len(c.Endpoints) != 2 || c.Endpoints[0].Name != "static" || c.Endpoints[1].Name != "intune" ||
		c.Endpoints[1].RenewalWindow != 30*24*time.Hour {
		t.Errorf("the listed endpoints must stay as configured: %+v", c.Endpoints)
	}

	c, err = Load(azureEnv("AZSCEP_SCEP_ENDPOINTS=static, intune,Routers", "AZSCEP_SCEP_ROUTERS=profile=net",
		"AZSCEP_PROFILE_NET=eku=clientAuth;dns=*.corp.example.com", "AZSCEP_SCEP_ROUTERS_SECRET=router-secret-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Faults) != 0 || len(c.Endpoints) != 3 || c.Endpoints[2].Profile != "net" {
		t.Errorf("a listed endpoint: faults %v, endpoints %+v", c.Faults, c.Endpoints)
	}
}

// TestSettingsListCoversParser: every setting name the parser reads is in Settings (the list README, the
// sample settings file and the Bicep checks are compared with).
func TestSettingsListCoversParser(t *testing.T) {
	seen := map[string]bool{}
	for _, env := range [][]string{azureEnv(), localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_API_AUDIENCES=x",
		"AZSCEP_SCEP_ENDPOINTS=static,intune", "AZSCEP_INTUNE_TENANT_ID=t")} {
		if _, err := load(env, seen); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) < 30 {
		t.Fatalf("only %d settings recorded; the recorder is broken", len(seen))
	}
	known := map[string]bool{}
	for _, s := range Settings {
		known[s.Name] = true
	}
	for name := range seen {
		if known[name] {
			continue
		}
		prefixed := false
		for _, s := range Settings {
			if s.Prefixed && strings.HasPrefix(name, strings.SplitN(s.Name, "<", 2)[0]) {
				prefixed = true
			}
		}
		if !prefixed {
			t.Errorf("setting %s is read but not listed in config.Settings", name)
		}
	}
}

// TestReadmeSettingsTableIsGenerated: README.md's settings table is exactly what `azscep settings` prints
// (SettingsTable over Settings), so the documented list, the parser and the binary's own help cannot drift apart.
func TestReadmeSettingsTableIsGenerated(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.ReplaceAll(string(data), "\r\n", "\n")
	want := SettingsTable()
	header := want[:strings.Index(want, "\n")+1]
	start := strings.Index(readme, header)
	if start < 0 {
		t.Fatalf("README.md has no settings table starting with %q", header)
	}
	got := readme[start:]
	if end := strings.Index(got, "\n\n"); end >= 0 {
		got = got[:end+1]
	}
	if got != want {
		gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := 0; i < len(gotLines) || i < len(wantLines); i++ {
			g, w := "", ""
			if i < len(gotLines) {
				g = gotLines[i]
			}
			if i < len(wantLines) {
				w = wantLines[i]
			}
			if g != w {
				t.Errorf("README.md settings table line %d:\n got: %s\nwant: %s", i+1, g, w)
				break
			}
		}
		t.Fatalf("README.md's settings table is not the generated one; replace it with the output of "+
			"`go run ./handler settings`:\n%s", want)
	}
	for _, s := range Settings {
		if s.Azure != "required" && s.Azure != "optional" && s.Azure != "local-only" {
			t.Errorf("setting %s: Azure is %q, want required, optional or local-only", s.Name, s.Azure)
		}
	}
}

// TestAdminCommandsLoadWithoutServiceSecrets: admin commands run on an administrator's machine without the app's
// secrets; only serving needs them.
func TestAdminCommandsLoadWithoutServiceSecrets(t *testing.T) {
	c, err := Load([]string{"AZSCEP_MODE=azure", "AZSCEP_BASE_URL=https://ca.example.net",
		"AZSCEP_TABLES_ENDPOINT=https://acct.table.core.windows.net", "AZSCEP_KEYVAULT_URL=https://kv.vault.azure.net"})
	if err != nil {
		t.Fatalf("admin configuration refused: %v", err)
	}
	// Serving without the secret disables the static endpoint only.
	checkFault(t, c, "scep/static", "AZSCEP_SCEP_STATIC_SECRET")
}

// TestBuiltInProfileNames pins which names each built-in profile yields (README "Profiles").
func TestBuiltInProfileNames(t *testing.T) {
	c, err := Load(localEnv())
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := url.Parse("tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-500")
	dev, _ := url.Parse("IntuneDeviceId://5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f")
	web, _ := url.Parse("https://app.example.net/")
	for _, tc := range []struct {
		profile                          string
		dns, email, upn, uri, ip, sid, d bool
	}{
		{"device", true, false, false, false, false, false, false},
		{"intune", true, true, true, true, false, true, true},
		{"api", true, true, true, true, false, false, false},
	} {
		p := c.Profiles[tc.profile]
		got := []bool{p.AllowsDNS("host.example.net"), p.AllowsEmail("a@example.net"), p.AllowsUPN("a@example.net"),
			p.AllowsURI(web), p.AllowsIP(net.ParseIP("10.0.0.1")), p.AllowsURI(sid), p.AllowsURI(dev)}
		want := []bool{tc.dns, tc.email, tc.upn, tc.uri, tc.ip, tc.sid, tc.d}
		if !slices.Equal(got, want) {
			t.Errorf("profile %s allows dns,email,upn,uri,ip,sid,deviceid = %v, want %v", tc.profile, got, want)
		}
	}
}

func TestAPIClientAppsAndGuests(t *testing.T) {
	c, err := Load(localEnv("AZSCEP_DEV_ISSUER=true",
		"AZSCEP_API_CLIENT_APPS=0A1B2C3D-0000-4000-8000-000000000001, 0a1b2c3d-0000-4000-8000-000000000002",
		"AZSCEP_API_ALLOW_GUESTS=true"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002"}
	if !slices.Equal(c.API.ClientApps, want) || !c.API.AllowGuests {
		t.Fatalf("API = %+v", c.API)
	}
	if c, err = Load(localEnv("AZSCEP_DEV_ISSUER=true")); err != nil || len(c.API.ClientApps) != 0 || c.API.AllowGuests ||
		len(c.API.AdminClientApps) != 0 || c.API.AdminAnyClientApp {
		t.Fatalf("defaults: %+v, %v", c.API, err)
	}
	if c, err = Load(localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_ADMIN_CLIENT_APPS=04B07795-8DDB-461A-BBEE-02F9E1BF7B46")); err != nil ||
		!slices.Equal(c.API.AdminClientApps, []string{"04b07795-8ddb-461a-bbee-02f9e1bf7b46"}) || c.API.AdminAnyClientApp {
		t.Fatalf("admin client apps: %+v, %v", c.API, err)
	}
	if c, err = Load(localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_ADMIN_CLIENT_APPS= * ")); err != nil || !c.API.AdminAnyClientApp {
		t.Fatalf("admin any client: %+v, %v", c.API, err)
	}
}

// TestRenewFromDisabledEndpoint: an endpoint that renews the certificates of an endpoint disabled for its own
// renew_from goes down with it, naming its own setting, down a chain of any length; the others stay. Every renew_from
// left in the configuration names an endpoint that is in it (scep.New refuses anything else, and with it every door).
func TestRenewFromDisabledEndpoint(t *testing.T) {
	c, err := Load(localEnv("AZSCEP_SCEP_ENDPOINTS=static,routers,gear,lab",
		"AZSCEP_SCEP_STATIC=renew_from=routers",
		"AZSCEP_SCEP_ROUTERS=renew_from=gear", "AZSCEP_SCEP_ROUTERS_SECRET=router-secret-1",
		"AZSCEP_SCEP_GEAR=renew_from=nowhere", "AZSCEP_SCEP_GEAR_SECRET=gear-secret-1",
		"AZSCEP_SCEP_LAB=renew_from=lab", "AZSCEP_SCEP_LAB_SECRET=lab-secret-01"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"static", "routers", "gear"} {
		checkFault(t, c, EndpointFeature(name), "AZSCEP_SCEP_"+strings.ToUpper(name))
	}
	names := map[string]bool{}
	for _, e := range c.Endpoints {
		names[e.Name] = true
	}
	if !names["lab"] || len(names) != 1 {
		t.Fatalf("endpoints %v, want lab alone", names)
	}
	for _, e := range c.Endpoints {
		for _, from := range e.RenewFrom {
			if !names[from] {
				t.Errorf("endpoint %s renews %s, which is not configured", e.Name, from)
			}
		}
	}
}

// TestAPIRevokeDisabledDefault: the hourly sweep of disabled or deleted accounts is on in Azure with an API tenant,
// off locally unless asked for, off when turned off, and never on without a tenant (the development issuer has no
// Graph directory).
func TestAPIRevokeDisabledDefault(t *testing.T) {
	api := []string{"AZSCEP_API_TENANT_ID=11111111-2222-3333-4444-555555555555", "AZSCEP_API_AUDIENCES=api://x"}
	for _, tc := range []struct {
		name string
		env  []string
		want bool
	}{
		{"azure with a tenant", azureEnv(api...), true},
		{"azure, turned off", azureEnv(append(api, "AZSCEP_API_REVOKE_DISABLED=false")...), false},
		{"azure without the API", azureEnv(), false},
		{"local with a tenant", localEnv(api...), false},
		{"local, asked for", localEnv(append(api, "AZSCEP_API_REVOKE_DISABLED=true")...), true},
		{"development issuer, asked for", localEnv("AZSCEP_DEV_ISSUER=true", "AZSCEP_API_REVOKE_DISABLED=true"), false},
	} {
		c, err := Load(tc.env)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.API.RevokeDisabled != tc.want {
			t.Errorf("%s: RevokeDisabled = %t, want %t", tc.name, c.API.RevokeDisabled, tc.want)
		}
	}
}
