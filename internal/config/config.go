// Package config turns the process environment (Azure Functions app settings) into one typed, validated
// Config. No other package reads the environment.
//
// Two kinds of setting problems, both an *Error naming the setting:
//
//   - A core setting (mode, base URL, Table Storage, Key Vault, CRL/OCSP) that is bad fails Load; the handler
//     prints it as one line and exits 2. Without these nothing can be served.
//   - A setting that only one optional feature needs (a SCEP endpoint and its challenge secret, a profile, Intune,
//     the REST API) disables that feature only: Load succeeds and records the problem in Config.Faults. The
//     service serves everything else (CA certificate, CRL, OCSP, the other endpoints), the disabled feature answers
//     503 problem+json naming the setting, and /api/health reports it as degraded. The commonest cause is a Key
//     Vault reference App Service could not resolve yet (a role assignment seconds old at first deploy); the
//     platform re-reads references only when the app restarts, so one bad secret must not stop the whole CA.
//
// A third kind loads and serves but weakens authorization or does not do what it says (two static endpoints sharing
// one challenge, a profile pattern no name can match): Config.Warnings, which the service logs at start and
// `azscep config check` prints. A later release refuses them; this one only warns, so an upgrade takes nothing down.
//
// Adding a setting: list it in Settings (and the README table), read it with the parser's helpers (p.str, p.int,
// p.duration, ...) and report problems with p.fail. If the setting belongs to one optional feature, read it inside
// that feature's p.feature(...) block (the endpoint, profile, Intune and API blocks in load): p.fail there records
// a fault of that feature instead of failing Load; nothing else is needed. A new optional feature gets its own
// p.feature block and a Feature constant, and the handler checks Config.Fault for it where it builds the feature.
package config

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/policy"
)

// Mode selects where keys and tokens come from.
type Mode string

// Modes. Local mode uses key files and may enable the development token issuer; Azure mode uses Key Vault and
// managed identity and never enables anything for development.
const (
	ModeLocal Mode = "local"
	ModeAzure Mode = "azure"
)

// Config is every setting, parsed.
type Config struct {
	Mode    Mode
	Port    int
	BaseURL *url.URL // public base URL of the service, e.g. https://ca.example.net
	// PublicationURL is the base of the AIA (OCSP, caIssuers) and CDP URLs written into certificates. RFC 5280
	// asks for http there (no TLS dependency loop); it defaults to BaseURL.
	PublicationURL *url.URL
	LogLevel       string

	// Table Storage: a connection string (Azurite, local) or an endpoint reached with managed identity.
	TablesConnection string
	TablesEndpoint   string
	TablesPrefix     string

	// ManagedIdentityClientID is the user-assigned identity (AZURE_CLIENT_ID); empty means the developer's credential.
	ManagedIdentityClientID string

	// Local keys.
	LocalKeyDir string

	// Key Vault keys.
	KeyVaultURL  string
	CAKeyName    string
	CAKeyVersion string
	KEKName      string // key-encryption key for the RA envelope
	RAMode       string // "envelope" (software RA key, wrapped by Key Vault) or "ca" (the CA key decrypts and signs)

	Backdate   time.Duration
	StaleAfter time.Duration

	Profiles  map[string]*policy.Profile
	Endpoints []Endpoint

	// SCEP PKIOperation rate limits (per instance), checked before any Key Vault or Intune call.
	SCEPRatePerClient Rate
	SCEPRateGlobal    Rate

	Intune IntuneConfig
	API    APIConfig

	RevocationBatch int
	CRLValidity     time.Duration
	// RevocationSchedule is REVOCATION_SCHEDULE as written: the timer's NCRONTAB schedule, which only the Functions
	// host reads; the configuration checks it (WarnTimerSchedule).
	RevocationSchedule string
	OCSPValidity       time.Duration

	// DevIssuer enables the local development token issuer (local mode only).
	DevIssuer bool

	// Faults maps each optional feature a setting problem disabled (FeatureIntune, FeatureAPI,
	// EndpointFeature(name), ProfileFeature(name)) to the first problem found. Disabled endpoints are left out of
	// Endpoints, a disabled Intune or API has Enabled false. Admin commands ignore faults they do not need.
	Faults map[string]*Error
	// References are the settings App Service left as Key Vault references (it could not read them when the app
	// started), by name: each also disabled its feature (or failed Load, for a core setting). Serve resolves them
	// with the app's identity and loads the configuration again (handler: references).
	References map[string]string
	// Warnings are the settings that load but weaken authorization or do not do what they say (warnings.go), in
	// a stable order; they disable nothing.
	Warnings []Warning
}

// Optional features a setting problem can disable on its own (see the package comment).
const (
	// FeatureIntune is the Intune client: the intune challenge and the revocation sync.
	FeatureIntune = "intune"
	// FeatureAPI is REST enrollment (/api/csr) and the admin API (/api/certificates).
	FeatureAPI = "api"
)

// EndpointFeature names the feature of SCEP endpoint name (its settings, challenge secret and profile).
func EndpointFeature(name string) string { return "scep/" + strings.ToLower(name) }

// ProfileFeature names the feature of profile name; the endpoints and API using it are disabled with it.
func ProfileFeature(name string) string { return "profile/" + strings.ToLower(name) }

// Fault returns the problem that disabled feature, or nil when it is not disabled.
func (c *Config) Fault(feature string) *Error { return c.Faults[feature] }

// DisableIntune disables Intune for a problem of its settings found after Load: the handler reading the file of the
// certificate credential, say. As for one Load finds, the endpoints that use the intune challenge go down with it,
// naming the setting, and everything else goes on serving. A fault Intune already has is kept.
func (c *Config) DisableIntune(e *Error) {
	if c.Faults == nil {
		c.Faults = map[string]*Error{}
	}
	if f := c.Faults[FeatureIntune]; f != nil {
		e = f
	}
	c.Faults[FeatureIntune] = e
	c.dropIntune(c.Faults, e)
}

// dropIntune turns Intune and the endpoints that use the intune challenge off, recording f as each endpoint's fault.
func (c *Config) dropIntune(faults map[string]*Error, f *Error) {
	c.Intune.Enabled, c.Intune.RevocationSync = false, false
	kept := c.Endpoints[:0]
	for _, e := range c.Endpoints {
		if e.Challenge == "intune" {
			faults[EndpointFeature(e.Name)] = f
			continue
		}
		kept = append(kept, e)
	}
	c.Endpoints = kept
}

// FaultList returns the faults sorted by feature, for health reports and startup logs.
func (c *Config) FaultList() []FeatureFault {
	out := make([]FeatureFault, 0, len(c.Faults))
	for f, e := range c.Faults {
		out = append(out, FeatureFault{Feature: f, Err: e})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Feature < out[j].Feature })
	return out
}

// FeatureFault is one disabled feature and the setting problem that disabled it.
type FeatureFault struct {
	Feature string
	Err     *Error
}

// Endpoint is one SCEP endpoint's settings.
type Endpoint struct {
	Name          string
	Challenge     string // static | intune
	Secret        string
	Profile       string
	CACert        string // chain (RA + CA) | single (CA only; the CA key decrypts)
	CertRepChain  bool
	RenewalWindow time.Duration
	// ReplayWindow: a PKCSReq repeating a transaction ID and key within it gets the stored certificate back.
	ReplayWindow time.Duration
	// RenewFrom names the other endpoints whose certificates this endpoint renews (its own always).
	RenewFrom []string
	// RenewalMax bounds a renewal chain from its first issuance; 0 means 3 × the profile's validity.
	RenewalMax time.Duration
}

// Rate is a token bucket: Count requests at once, refilled at Count per Per.
type Rate struct {
	Count int
	Per   time.Duration
}

// DefaultReplayWindow is how long a SCEP PKCSReq replay returns the stored certificate.
const DefaultReplayWindow = 24 * time.Hour

// IntuneConfig configures the Intune client; Enabled is false when no endpoint needs it and no tenant is set.
type IntuneConfig struct {
	Enabled        bool
	TenantID       string
	ClientID       string
	Credential     string // managedidentity | secret | certificate
	ClientSecret   string
	CertPath       string
	AuthorityHost  string
	GraphURL       string
	ResourceURL    string
	CABundle       string // extra trust roots (tests and the local fake)
	Provider       string
	RevocationSync bool
}

// APIConfig configures /api/csr and the admin API.
type APIConfig struct {
	Enabled       bool
	TenantID      string
	Audiences     []string
	AuthorityHost string
	GraphURL      string
	Profile       string
	// Profiles are further profiles CSR.Request.Db callers may choose with /api/csr?profile=NAME.
	Profiles    []string
	RetryWindow time.Duration
	// ClientApps, when set, are the only client applications (azp/appid) whose tokens /api/csr accepts.
	ClientApps []string
	// AllowGuests lets guest (B2B, external) accounts use /api/csr; they are refused by default.
	AllowGuests bool
	// AdminAllowGuests lets guest accounts use the admin API; apart from AllowGuests, so that letting guests enrol
	// does not make guests holding Certificates.Manage (or Certificates.Read) administrators.
	AdminAllowGuests bool
	// RevokeDisabled has the hourly timer revoke the /api/csr certificates of Entra accounts that were disabled or
	// deleted and of Entra devices that were disabled or deleted (revocation.RevokeDisabledAccounts,
	// RevokeDisabledDevices); it needs the Graph directory, so the development issuer alone never does.
	RevokeDisabled bool
	// AdminClientApps are client applications (azp/appid) whose user tokens the admin API accepts besides the
	// console's (the API's own app registration); AdminAnyClientApp ("*") accepts every client.
	AdminClientApps   []string
	AdminAnyClientApp bool
}

// AppID is the API's application (client) ID: the GUID among the token audiences, bare or in an api:// App ID URI,
// lower-case; "" when a custom App ID URI is the only audience. Graph re-reads app roles only with it.
func (a APIConfig) AppID() string {
	for _, aud := range a.Audiences {
		if id := strings.TrimPrefix(aud, "api://"); entra.IsGUID(id) {
			return strings.ToLower(id)
		}
	}
	return ""
}

// Setting describes one app setting: the single list the README table, local.settings.sample.json and the
// deployment checks are compared with.
type Setting struct {
	Name     string
	Default  string
	Azure    string // "required", "optional" or "local-only"
	Doc      string
	Prefixed bool // a family: Name is a prefix followed by an endpoint or profile name
}

// The range AZSCEP_OCSP_VALIDITY accepts: every value in it starts the OCSP responder (internal/ocsp refreshes a
// cached response 10 minutes before its nextUpdate, so a validity must exceed that margin, and renews its 48-hour
// certificate at half-life, which must hold four validities). A test there checks both ends.
const (
	MinOCSPValidity = 15 * time.Minute
	MaxOCSPValidity = 12 * time.Hour
)

// Settings is every setting the parser reads, and REVOCATION_SCHEDULE, which only the Functions host reads.
var Settings = []Setting{
	{Name: "AZSCEP_MODE", Default: "azure", Azure: "required", Doc: "`local` (key files, Azurite, dev token issuer allowed) or `azure` (Key Vault, managed identity)"},
	{Name: "FUNCTIONS_CUSTOMHANDLER_PORT", Default: "7071", Azure: "optional", Doc: "port to listen on; set by the Functions host"},
	{Name: "AZSCEP_BASE_URL", Default: "`http://127.0.0.1:<FUNCTIONS_CUSTOMHANDLER_PORT>` locally", Azure: "required", Doc: "public base URL; AIA, CDP and OCSP URLs in certificates are built from it"},
	{Name: "AZSCEP_PUBLICATION_URL", Default: "AZSCEP_BASE_URL", Azure: "optional", Doc: "base of the OCSP, caIssuers and CRL URLs in certificates; http allowed (RFC 5280 prefers it), but the app is HTTPS-only: an http URL needs a front end serving `/api/ocsp`, `/api/ca` and `/api/crl` over http (docs/deployment.md section 3)"},
	{Name: "AZSCEP_LOG_LEVEL", Default: "info", Azure: "optional", Doc: "debug, info, warn or error"},
	{Name: "AZSCEP_TABLES_CONNECTION", Azure: "local-only", Doc: "Table Storage connection string (Azurite); wins over AZSCEP_TABLES_ENDPOINT"},
	{Name: "AZSCEP_TABLES_ENDPOINT", Azure: "required", Doc: "Table service URL reached with the managed identity, e.g. https://acct.table.core.windows.net"},
	{Name: "AZSCEP_TABLES_PREFIX", Default: "azscep", Azure: "optional", Doc: "prefix of the table names"},
	{Name: "AZURE_CLIENT_ID", Azure: "required", Doc: "client ID of the user-assigned managed identity"},
	{Name: "AZSCEP_LOCAL_KEY_DIR", Default: ".local/ca", Azure: "local-only", Doc: "directory of the local CA and RA key files"},
	{Name: "AZSCEP_KEYVAULT_URL", Azure: "required", Doc: "Key Vault URL, e.g. https://kv.vault.azure.net"},
	{Name: "AZSCEP_CA_KEY_NAME", Default: "azscep-ca", Azure: "optional", Doc: "name of the CA key in Key Vault"},
	{Name: "AZSCEP_CA_KEY_VERSION", Azure: "optional", Doc: "pins the CA key version; empty = the version `ca init` recorded"},
	{Name: "AZSCEP_KEK_NAME", Default: "azscep-kek", Azure: "optional", Doc: "Key Vault key (RSA, wrapKey/unwrapKey only) that wraps the RA key"},
	{Name: "AZSCEP_RA_MODE", Default: "envelope", Azure: "optional", Doc: "`envelope` (RA key wrapped by Key Vault; 1 Key Vault op per enrollment) or `ca` (CA key decrypts and signs; 3 ops)"},
	{Name: "AZSCEP_BACKDATE", Default: "5m", Azure: "optional", Doc: "back-date for clock skew (≤ 1h): certificates' notBefore, the CRL's and OCSP responses' thisUpdate, the OCSP responder certificate's notBefore (0 leaves those three at 5m)"},
	{Name: "AZSCEP_PENDING_STALE_AFTER", Default: "5m", Azure: "optional", Doc: "age after which a pending request's transaction ID may be re-used: at least 3m, longer than an issuance stays pending (about 95 s at most: the pending record's own write, the renewal re-check, Key Vault's retries and the issued write with its retries), so that a retry never takes over one still running and has a second certificate signed"},
	{Name: "AZSCEP_SCEP_ENDPOINTS", Default: "`static` locally (`static,intune` with AZSCEP_INTUNE_TENANT_ID), `static,intune` in Azure", Azure: "optional", Doc: "comma-separated SCEP endpoint names (alphanumeric); only these exist: an AZSCEP_SCEP_<NAME> for a name not listed disables that endpoint with a fault. In Azure the template computes it; add endpoints with the azd value AZSCEP_EXTRA_SCEP_ENDPOINTS"},
	{Name: "AZSCEP_SCEP_<NAME>", Prefixed: true, Azure: "optional", Doc: "per endpoint `<NAME>` listed in AZSCEP_SCEP_ENDPOINTS: `challenge=static|intune;profile=NAME;cacert=chain|single;certrep_chain=true|false;renewal=30d;replay=24h;renew_from=NAME,…;renewal_max=1095d` (renewal: the renewal window, at least 1h, default the last half of the validity; renew_from: other endpoints whose certificates it renews, default none; renewal_max: a renewal chain's lifetime from its first issuance, default 3 × the profile validity)"},
	{Name: "AZSCEP_SCEP_RATE_PER_CLIENT", Default: "120/1m", Azure: "optional", Doc: "SCEP PKIOperation token bucket per client IP (X-Forwarded-For as the host forwards it; IPv6 per /64), per instance: `COUNT/DURATION`; over it: 429 with Retry-After"},
	{Name: "AZSCEP_SCEP_RATE_GLOBAL", Default: "3000/1m", Azure: "optional", Doc: "SCEP PKIOperation token bucket for all clients of one instance, not of the deployment (each instance the platform adds admits as much again; the default CA key signs about 50 certificates/s: README, Capacity): `COUNT/DURATION`; over it: 503 with Retry-After"},
	{Name: "AZSCEP_SCEP_<NAME>_SECRET", Prefixed: true, Azure: "optional", Doc: "static challenge of endpoint NAME, ≥ 8 characters (use a Key Vault reference); required by static endpoints (locally the endpoint named static defaults to local-static-challenge)"},
	{Name: "AZSCEP_PROFILE_<NAME>", Prefixed: true, Default: "built-ins `device`, `intune`, `api`", Azure: "optional", Doc: "per profile `<NAME>`: `validity=365d;ku=digitalSignature;eku=clientAuth;dns=*.corp.example.com;upn=*@contoso.com;minrsa=2048;curves=P-256,P-384` (name allow-lists: [Profiles](#profiles-and-name-allow-lists))"},
	{Name: "AZSCEP_INTUNE_TENANT_ID", Azure: "optional", Doc: "Entra tenant of Intune; required when an endpoint uses the intune challenge"},
	{Name: "AZSCEP_INTUNE_CLIENT_ID", Azure: "optional", Doc: "app (client) ID used for Intune; defaults to AZURE_CLIENT_ID with managed identity"},
	{Name: "AZSCEP_INTUNE_CREDENTIAL", Default: "managedidentity", Azure: "optional", Doc: "`managedidentity`, `secret` or `certificate`"},
	{Name: "AZSCEP_INTUNE_CLIENT_SECRET", Azure: "optional", Doc: "client secret when the credential is `secret` (use a Key Vault reference)"},
	{Name: "AZSCEP_INTUNE_CERT_PATH", Azure: "optional", Doc: "PEM file with certificate and key when the credential is `certificate`"},
	{Name: "AZSCEP_INTUNE_AUTHORITY", Default: "https://login.microsoftonline.com/", Azure: "optional", Doc: "Entra authority host (national clouds, tests)"},
	{Name: "AZSCEP_INTUNE_GRAPH_URL", Default: "https://graph.microsoft.com/", Azure: "optional", Doc: "Microsoft Graph base URL"},
	{Name: "AZSCEP_INTUNE_RESOURCE_URL", Default: "https://api.manage.microsoft.com/", Azure: "optional", Doc: "Intune resource URL"},
	{Name: "AZSCEP_INTUNE_CA_BUNDLE", Azure: "local-only", Doc: "PEM roots to trust for Entra/Graph/Intune (the local fake)"},
	{Name: "AZSCEP_API_TENANT_ID", Azure: "optional", Doc: "ID (GUID, not a domain name) of the Entra tenant whose tokens `/api/csr` and the admin API accept; empty disables both, except locally with AZSCEP_DEV_ISSUER=true (the development issuer's tokens)"},
	{Name: "AZSCEP_API_AUDIENCES", Azure: "optional", Doc: "comma-separated accepted audiences: the API's client ID and App ID URI; required with the API"},
	{Name: "AZSCEP_API_AUTHORITY", Default: "https://login.microsoftonline.com/", Azure: "optional", Doc: "authority host for token issuers and keys"},
	{Name: "AZSCEP_API_GRAPH_URL", Default: "https://graph.microsoft.com/", Azure: "optional", Doc: "Graph base URL for the account and device ownership checks"},
	{Name: "AZSCEP_API_PROFILE", Default: "api", Azure: "optional", Doc: "profile `/api/csr` issues with"},
	{Name: "AZSCEP_API_CLIENT_APPS", Azure: "optional", Doc: "comma-separated client application IDs (`azp`/`appid`) allowed to call `/api/csr`; empty = any client the tenant lets obtain a token"},
	{Name: "AZSCEP_ADMIN_CLIENT_APPS", Azure: "optional", Doc: "comma-separated client application IDs whose *user* tokens the admin API accepts besides the console's (the API's own app registration), e.g. the Azure CLI's `04b07795-8ddb-461a-bbee-02f9e1bf7b46`; `*` = any; app-only tokens are bound by their own role assignment"},
	{Name: "AZSCEP_API_ALLOW_GUESTS", Default: "false", Azure: "optional", Doc: "let guest (B2B, external) accounts use `/api/csr`"},
	{Name: "AZSCEP_ADMIN_ALLOW_GUESTS", Default: "false", Azure: "optional", Doc: "let guest (B2B, external) accounts holding `Certificates.Manage` or `Certificates.Read` use the admin API"},
	{Name: "AZSCEP_API_REVOKE_DISABLED", Default: "`true` in Azure with AZSCEP_API_TENANT_ID, `false` locally", Azure: "optional", Doc: "the hourly timer revokes the `/api/csr` certificates of Entra accounts disabled or deleted (affiliationChanged) and of Entra devices disabled or deleted (cessationOfOperation) since its last run, read with Graph's users and devices delta queries (`User.Read.All`, `Device.Read.All`), and the self-service device certificates whose requester no longer owns the device (affiliationChanged): [Accounts that leave](#accounts-that-leave)"},
	{Name: "AZSCEP_API_PROFILES", Azure: "optional", Doc: "further profiles `CSR.Request.Db` callers (and the console) may choose with `/api/csr?profile=NAME`, comma-separated"},
	{Name: "AZSCEP_API_RETRY_WINDOW", Default: "10m", Azure: "optional", Doc: "a retry of the same CSR by the same caller within this window returns the same certificate"},
	{Name: "AZSCEP_REVOCATION_BATCH", Default: "100", Azure: "optional", Doc: "revocation requests downloaded per sync run (1–500)"},
	{Name: "REVOCATION_SCHEDULE", Default: "0 0 * * * *", Azure: "optional", Doc: "NCRONTAB schedule of the revocation sync (read by the Functions host, which requires it; checked at start: `timer_schedule`)"},
	{Name: "AZSCEP_CRL_VALIDITY", Default: "24h", Azure: "optional", Doc: "CRL nextUpdate distance; regenerated after half of it"},
	{Name: "AZSCEP_OCSP_VALIDITY", Default: "1h", Azure: "optional", Doc: "OCSP response validity, 15m to 12h (a response is refreshed 10 min before it expires; the 48 h responder certificate holds four validities)"},
	{Name: "AZSCEP_DEV_ISSUER", Default: "false", Azure: "local-only", Doc: "local mode only: serve a development token issuer under `/api/dev/` for `/api/csr` (in local mode every route answers only requests addressed to `localhost` or a loopback address, 421 otherwise, so that a web page cannot mint tokens by DNS rebinding)"},
}

// SettingsTable renders Settings as the markdown table README.md shows (a test keeps them equal) and
// `azscep settings` prints. Plain defaults are shown as code; a default with prose is written as markdown already
// (it holds a backtick).
func SettingsTable() string {
	var b strings.Builder
	b.WriteString("| Setting | Default | Azure | Meaning |\n|---|---|---|---|\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, s := range Settings {
		def := s.Default
		if def != "" && !strings.Contains(def, "`") {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.Name, cell(def), strings.ReplaceAll(s.Azure, "-", " "), cell(s.Doc))
	}
	return b.String()
}

// Error names the setting that is wrong.
type Error struct {
	Setting string
	Problem string
}

func (e *Error) Error() string { return fmt.Sprintf("setting %s: %s", e.Setting, e.Problem) }

// Load parses an environment in os.Environ form into a Config.
func Load(environ []string) (*Config, error) { return load(environ, nil) }

// load parses environ; when read is non-nil it records every setting name looked up (for the settings-list test).
func load(environ []string, read map[string]bool) (*Config, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	p := parser{env: env, read: read, faults: map[string]*Error{}}
	c := &Config{}
	switch m := strings.ToLower(p.str("AZSCEP_MODE", "azure")); m {
	case "local", "azure":
		c.Mode = Mode(m)
	default:
		return nil, &Error{"AZSCEP_MODE", "must be local or azure"}
	}
	local := c.Mode == ModeLocal
	c.Port = p.int("FUNCTIONS_CUSTOMHANDLER_PORT", 7071, 1, 65535)
	base := p.str("AZSCEP_BASE_URL", "")
	if base == "" && local {
		base = fmt.Sprintf("http://127.0.0.1:%d", c.Port)
	}
	if base == "" {
		p.fail("AZSCEP_BASE_URL", "is required in azure mode")
	} else if u, err := url.Parse(strings.TrimRight(base, "/")); err != nil || u.Host == "" ||
		(u.Scheme != "https" && !(local && u.Scheme == "http")) {
		p.fail("AZSCEP_BASE_URL", "must be an absolute https URL (http allowed in local mode)")
	} else if !joinable(base, u) {
		p.fail("AZSCEP_BASE_URL", "must have no query, fragment or user info (paths are appended to it)")
	} else {
		c.BaseURL = u
	}
	c.PublicationURL = c.BaseURL
	if v := p.str("AZSCEP_PUBLICATION_URL", ""); v != "" {
		if u, err := url.Parse(strings.TrimRight(v, "/")); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			p.fail("AZSCEP_PUBLICATION_URL", "must be an absolute http or https URL")
		} else if !joinable(v, u) {
			p.fail("AZSCEP_PUBLICATION_URL", "must have no query, fragment or user info (the certificates' OCSP, caIssuers and CRL paths are appended to it)")
		} else {
			c.PublicationURL = u
		}
	}
	c.LogLevel = p.oneOf("AZSCEP_LOG_LEVEL", "info", "debug", "info", "warn", "error")

	c.TablesConnection = p.str("AZSCEP_TABLES_CONNECTION", "")
	c.TablesEndpoint = p.str("AZSCEP_TABLES_ENDPOINT", "")
	c.TablesPrefix = p.str("AZSCEP_TABLES_PREFIX", "azscep")
	if !alnum(c.TablesPrefix) || len(c.TablesPrefix) > 50 || (c.TablesPrefix != "" && !isLetter(c.TablesPrefix[0])) {
		p.fail("AZSCEP_TABLES_PREFIX", "must start with a letter and be alphanumeric, at most 50 characters")
	}
	switch {
	case c.TablesConnection != "":
		if !local {
			p.fail("AZSCEP_TABLES_CONNECTION", "is local-only; use AZSCEP_TABLES_ENDPOINT with the managed identity")
		}
	case c.TablesEndpoint != "":
		p.httpsURL("AZSCEP_TABLES_ENDPOINT", c.TablesEndpoint, local)
		// In Azure the account's table service is the host (only an emulator puts the account in the path): a
		// table's URL or a SAS pasted here would send every call elsewhere.
		if u, err := url.Parse(c.TablesEndpoint); err == nil && !local && (strings.Trim(u.Path, "/") != "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
			p.fail("AZSCEP_TABLES_ENDPOINT", "must be the account's table service URL, https://<account>.table.core.windows.net, without a path or query")
		}
	default:
		p.fail("AZSCEP_TABLES_ENDPOINT", "or AZSCEP_TABLES_CONNECTION is required")
	}
	c.ManagedIdentityClientID = p.str("AZURE_CLIENT_ID", "")

	c.LocalKeyDir = p.str("AZSCEP_LOCAL_KEY_DIR", ".local/ca")
	c.KeyVaultURL = p.str("AZSCEP_KEYVAULT_URL", "")
	c.CAKeyName = p.str("AZSCEP_CA_KEY_NAME", "azscep-ca")
	c.CAKeyVersion = p.str("AZSCEP_CA_KEY_VERSION", "")
	c.KEKName = p.str("AZSCEP_KEK_NAME", "azscep-kek")
	c.RAMode = p.oneOf("AZSCEP_RA_MODE", "envelope", "envelope", "ca")
	if !local {
		if c.KeyVaultURL == "" {
			p.fail("AZSCEP_KEYVAULT_URL", "is required in azure mode")
		} else {
			p.httpsURL("AZSCEP_KEYVAULT_URL", c.KeyVaultURL, false)
			// The vault itself: the clients append /keys/… and /secrets/… to it, so a key's or secret's URL
			// pasted here would send every call to a path no vault has.
			if u, err := url.Parse(c.KeyVaultURL); err == nil && (strings.Trim(u.Path, "/") != "" || u.RawQuery != "" ||
				u.Fragment != "" || u.User != nil) {
				p.fail("AZSCEP_KEYVAULT_URL", "must be the vault's URL, https://<vault>.vault.azure.net, without a path or query")
			}
		}
		// A client ID is a GUID; another value makes every token request fail, which start-up waits out (503
		// starting) like an identity endpoint that is not ready yet, instead of naming the setting.
		if id := c.ManagedIdentityClientID; id != "" && !entra.IsGUID(id) {
			p.fail("AZURE_CLIENT_ID", "must be the client ID (a GUID) of the user-assigned managed identity")
		}
		// Refused here rather than by Key Vault: its 400 for a name it cannot have is an error `ca init` exits 1
		// on, which the postprovision hook retries for 12 minutes, and the service stops on it without naming
		// the setting.
		for _, k := range []struct{ setting, name string }{{"AZSCEP_CA_KEY_NAME", c.CAKeyName}, {"AZSCEP_KEK_NAME", c.KEKName}} {
			if !keyVaultName(k.name, 127) {
				p.fail(k.setting, "must be a Key Vault key name: 1 to 127 letters, digits and hyphens")
			}
		}
		if c.CAKeyVersion != "" && (!keyVaultName(c.CAKeyVersion, 64) || strings.Contains(c.CAKeyVersion, "-")) {
			p.fail("AZSCEP_CA_KEY_VERSION", "must be a Key Vault key version (letters and digits, the last part of the key's ID), or empty")
		}
		// Key Vault names are case-insensitive: one key cannot be the CA key (sign only) and the KEK (wrap only).
		if strings.EqualFold(c.CAKeyName, c.KEKName) {
			p.fail("AZSCEP_KEK_NAME", "must name another key than AZSCEP_CA_KEY_NAME")
		}
	}
	c.Backdate = p.duration("AZSCEP_BACKDATE", 5*time.Minute, 0, time.Hour)
	c.StaleAfter = p.duration("AZSCEP_PENDING_STALE_AFTER", 5*time.Minute, 3*time.Minute, 24*time.Hour)

	// Optional features from here on: problems found inside p.feature blocks disable that feature only.
	c.Profiles = defaultProfiles()
	profileSettings := map[string][]string{} // profile name → the settings that spell it
	for _, suffix := range p.prefixed("AZSCEP_PROFILE_") {
		name := strings.ToLower(suffix)
		profileSettings[name] = append(profileSettings[name], "AZSCEP_PROFILE_"+suffix)
	}
	for _, suffix := range p.prefixed("AZSCEP_PROFILE_") {
		name := strings.ToLower(suffix)
		if !p.feature(ProfileFeature(name), func() {
			setting := "AZSCEP_PROFILE_" + suffix
			if others := profileSettings[name]; len(others) > 1 {
				// Settings are case-sensitive where the service runs locally or in a container: which of two
				// spellings would win is an accident of sorting, not the operator's choice.
				p.fail(setting, fmt.Sprintf("profile %q is set by %s; keep one", name, strings.Join(others, " and ")))
				return
			}
			prof, err := policy.ParseProfile(name, p.str(setting, ""))
			if err != nil {
				p.fail(setting, err.Error())
				return
			}
			if prof.MaxValidity <= 2*c.Backdate {
				// The back-date counts in the validity: a certificate must outlive its issuance by more than it
				// predates it, or it is born expired (or at once in its renewal window).
				p.fail(setting, fmt.Sprintf("validity %s must be more than twice AZSCEP_BACKDATE (%s), which it includes", prof.MaxValidity, c.Backdate))
				return
			}
			c.Profiles[prof.Name] = prof
			if p.written == nil {
				p.written = map[string]bool{}
			}
			p.written[prof.Name] = true
		}) {
			// Never fall back to a built-in profile of the same name: it is not the policy the operator wrote.
			delete(c.Profiles, name)
		}
	}

	p.feature(FeatureIntune, func() {
		c.Intune = IntuneConfig{
			TenantID:      p.str("AZSCEP_INTUNE_TENANT_ID", ""),
			ClientID:      p.str("AZSCEP_INTUNE_CLIENT_ID", c.ManagedIdentityClientID),
			Credential:    p.oneOf("AZSCEP_INTUNE_CREDENTIAL", "managedidentity", "managedidentity", "secret", "certificate"),
			ClientSecret:  p.str("AZSCEP_INTUNE_CLIENT_SECRET", ""),
			CertPath:      p.str("AZSCEP_INTUNE_CERT_PATH", ""),
			AuthorityHost: p.str("AZSCEP_INTUNE_AUTHORITY", "https://login.microsoftonline.com/"),
			GraphURL:      p.str("AZSCEP_INTUNE_GRAPH_URL", "https://graph.microsoft.com/"),
			ResourceURL:   p.str("AZSCEP_INTUNE_RESOURCE_URL", "https://api.manage.microsoft.com/"),
			CABundle:      p.str("AZSCEP_INTUNE_CA_BUNDLE", ""),
			Provider:      "azscep/1.0",
		}
		if c.Intune.CABundle != "" && !local {
			p.fail("AZSCEP_INTUNE_CA_BUNDLE", "is local-only")
		}
	})

	defaultEndpoints := "static"
	if !local || c.Intune.TenantID != "" {
		defaultEndpoints = "static,intune"
	}
	var names []string
	for _, name := range splitList(p.str("AZSCEP_SCEP_ENDPOINTS", defaultEndpoints)) {
		// A name given twice (an azd AZSCEP_EXTRA_SCEP_ENDPOINTS repeating a computed one) is one endpoint.
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, name) }) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		if !alnum(name) {
			// That endpoint only: a typo in one name added at deployment must not take the CA down.
			p.feature(EndpointFeature(name), func() {
				p.fail("AZSCEP_SCEP_ENDPOINTS", fmt.Sprintf("endpoint name %q must be alphanumeric", name))
			})
			continue
		}
		var e Endpoint
		if p.feature(EndpointFeature(name), func() { e = p.endpoint(name, local, c.Profiles) }) {
			c.Endpoints = append(c.Endpoints, e)
		}
		if e.Challenge == "intune" {
			c.Intune.Enabled = true
		}
	}
	p.unlistedEndpoints(names)
	c.Endpoints = p.renewFrom(c.Endpoints)
	c.SCEPRatePerClient = p.rate("AZSCEP_SCEP_RATE_PER_CLIENT", Rate{Count: 120, Per: time.Minute})
	c.SCEPRateGlobal = p.rate("AZSCEP_SCEP_RATE_GLOBAL", Rate{Count: 3000, Per: time.Minute})
	if c.Intune.TenantID != "" {
		c.Intune.Enabled = true
		c.Intune.RevocationSync = true
	}
	if c.Intune.Enabled {
		p.feature(FeatureIntune, func() { p.intune(&c.Intune) })
	}
	if f := p.faults[FeatureIntune]; f != nil {
		c.dropIntune(p.faults, f)
	}

	// The development issuer is a safety interlock, not a feature setting: asking for it in Azure stops the process.
	c.DevIssuer = p.bool("AZSCEP_DEV_ISSUER", false)
	if c.DevIssuer && !local {
		p.fail("AZSCEP_DEV_ISSUER", "the development token issuer is never available in azure mode")
	}
	apiOK := p.feature(FeatureAPI, func() {
		c.API = APIConfig{
			TenantID:      p.str("AZSCEP_API_TENANT_ID", ""),
			Audiences:     splitList(p.str("AZSCEP_API_AUDIENCES", "")),
			AuthorityHost: p.str("AZSCEP_API_AUTHORITY", "https://login.microsoftonline.com/"),
			GraphURL:      p.str("AZSCEP_API_GRAPH_URL", "https://graph.microsoft.com/"),
			Profile:       strings.ToLower(p.str("AZSCEP_API_PROFILE", "api")),
			Profiles:      splitList(strings.ToLower(p.str("AZSCEP_API_PROFILES", ""))),
			RetryWindow:   p.duration("AZSCEP_API_RETRY_WINDOW", 10*time.Minute, 0, 24*time.Hour),
			ClientApps:    splitList(p.str("AZSCEP_API_CLIENT_APPS", "")),
			AllowGuests:   p.bool("AZSCEP_API_ALLOW_GUESTS", false),
		}
		c.API.AdminAllowGuests = p.bool("AZSCEP_ADMIN_ALLOW_GUESTS", false)
		// Off locally unless asked for: a developer's tenant is not the CA's to act on.
		c.API.RevokeDisabled = p.bool("AZSCEP_API_REVOKE_DISABLED", !local) && c.API.TenantID != ""
		admins := splitList(p.str("AZSCEP_ADMIN_CLIENT_APPS", ""))
		if c.API.TenantID == "" && !c.DevIssuer {
			return
		}
		if c.API.TenantID != "" && !entra.IsGUID(c.API.TenantID) {
			// A domain name would load, then fail the token verifier at start-up: the whole CA, SCEP included,
			// would exit into the host's restart limit over a setting of the API alone.
			p.fail("AZSCEP_API_TENANT_ID", fmt.Sprintf("%q is not a tenant ID: give the directory's GUID "+
				"(`az account show --query tenantId`, as create-api-app.sh prints it), not a domain name", c.API.TenantID))
		}
		if c.API.TenantID != "" {
			// Checked as the verifier and the directory check them when built, for the same reason.
			for _, s := range []struct{ name, v string }{{"AZSCEP_API_AUTHORITY", c.API.AuthorityHost},
				{"AZSCEP_API_GRAPH_URL", c.API.GraphURL}} {
				if err := entra.CheckServiceURL(s.v); err != nil {
					p.fail(s.name, "must be an absolute https URL (http only for a loopback host): "+err.Error())
				}
			}
		}
		c.API.ClientApps = p.clientApps("AZSCEP_API_CLIENT_APPS", c.API.ClientApps)
		if slices.Equal(admins, []string{"*"}) {
			c.API.AdminAnyClientApp = true
		} else {
			c.API.AdminClientApps = p.clientApps("AZSCEP_ADMIN_CLIENT_APPS", admins)
		}
		if c.API.TenantID != "" && len(c.API.Audiences) == 0 {
			p.fail("AZSCEP_API_AUDIENCES", "is required when the API is enabled")
		}
		p.apiProfile("AZSCEP_API_PROFILE", c.API.Profile, c.Profiles)
		for _, name := range c.API.Profiles {
			p.apiProfile("AZSCEP_API_PROFILES", name, c.Profiles)
		}
	})
	c.API.Enabled = apiOK && (c.API.TenantID != "" || c.DevIssuer)
	c.RevocationBatch = p.int("AZSCEP_REVOCATION_BATCH", 100, 1, 500)
	c.CRLValidity = p.duration("AZSCEP_CRL_VALIDITY", 24*time.Hour, time.Hour, 31*24*time.Hour)
	c.RevocationSchedule = strings.TrimSpace(p.getenv("REVOCATION_SCHEDULE"))
	c.OCSPValidity = p.duration("AZSCEP_OCSP_VALIDITY", time.Hour, MinOCSPValidity, MaxOCSPValidity)
	if p.err != nil {
		return nil, p.err
	}
	c.Faults = p.faults
	c.References = p.refs
	c.Warnings = warnings(c, profileSettings)
	return c, nil
}

// CheckServe adds the checks that apply only to the running service, not to admin commands (which run with the
// administrator's own credential): in Azure the service must use its user-assigned managed identity.
func (c *Config) CheckServe() error {
	if c.Mode == ModeAzure && c.ManagedIdentityClientID == "" {
		return &Error{"AZURE_CLIENT_ID", "is required in azure mode (the user-assigned managed identity)"}
	}
	return nil
}

// defaultProfiles are the built-in profiles; AZSCEP_PROFILE_<NAME> overrides or adds.
func defaultProfiles() map[string]*policy.Profile {
	mk := func(name, spec string) *policy.Profile {
		p, err := policy.ParseProfile(name, spec)
		if err != nil {
			panic(err) // built-in specs are constants covered by tests
		}
		return p
	}
	return map[string]*policy.Profile{
		// device: network gear and Linux clients with a shared static challenge. DNS names and a CN only: whoever
		// holds the challenge must not be able to name a user (UPN, e-mail) or an Entra/Intune identity (SID and
		// IntuneDeviceId URIs), which Entra certificate-based auth and AD strong mapping trust. Any DNS name
		// (dns=*), because the CA cannot know the organisation's domains and clientAuth-only DNS certificates
		// authenticate nobody to Entra or (under KB5014754 full enforcement) AD; narrow it with
		// AZSCEP_PROFILE_DEVICE=...;dns=*.corp.example.com.
		"device": mk("device", "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*"),
		// intune: what Intune SCEP profiles request (keyEncipherment for RSA Wi-Fi/VPN key exchange). Every name
		// type with *, and the identity URIs: Intune validates each CSR against the SCEP profile it issued the
		// challenge for, so Intune, not this profile, authorizes the names.
		"intune": mk("intune", "validity=365d;ku=digitalSignature,keyEncipherment;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid"),
		// api: /api/csr. CSR.Request.Db callers get what this allows (no identity URIs); self-service callers
		// additionally only names bound to themselves (internal/csrapi).
		"api": mk("api", "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*;email=*;upn=*;uri=*"),
	}
}

// URL joins the base URL and a path.
func (c *Config) URL(path string) string { return strings.TrimRight(c.BaseURL.String(), "/") + path }

// joinable reports whether a path appended to the base URL raw (parsed as u) is where clients send the request:
// not after a query or fragment, and without user info (which would be a password in every certificate's AIA and
// CDP, for their whole life).
func joinable(raw string, u *url.URL) bool {
	return !strings.ContainsAny(raw, "?#") && u.User == nil
}

// PublishedURL joins the publication base URL (for AIA and CDP) and a path.
func (c *Config) PublishedURL(path string) string {
	return strings.TrimRight(c.PublicationURL.String(), "/") + path
}

type parser struct {
	env  map[string]string
	read map[string]bool
	err  error // the first problem of a core setting: Load fails
	// scope is the optional feature whose settings are being read (empty: core settings); faults holds the first
	// problem of each feature.
	scope  string
	faults map[string]*Error
	// written are the profiles AZSCEP_PROFILE_<NAME> defines (the rest are built-in).
	written map[string]bool
	// refs are the settings read while still Key Vault references.
	refs map[string]string
}

// feature reads the settings of one optional feature: every p.fail inside parse disables that feature (the first
// problem is kept) instead of failing Load. It reports whether the feature is still usable.
func (p *parser) feature(name string, parse func()) bool {
	outer := p.scope
	p.scope = name
	parse()
	p.scope = outer
	return p.faults[name] == nil
}

// profile checks that the setting's profile exists and is not disabled; a disabled profile's own problem is
// inherited, so the operator is pointed at AZSCEP_PROFILE_<NAME>, not at the setting that names it.
func (p *parser) profile(setting, name string, profiles map[string]*policy.Profile) {
	if f := p.faults[ProfileFeature(name)]; f != nil {
		p.failWith(f)
	} else if _, ok := profiles[name]; !ok {
		p.fail(setting, fmt.Sprintf("profile %q is not defined", name))
	}
}

// apiProfile is profile for a setting that names a profile /api/csr issues with. The built-in intune profile
// allows every name, the SID and IntuneDeviceId URIs included, only because Intune validates each CSR on the SCEP
// door; /api/csr has no Intune behind it, so there it would let any CSR.Request.Db caller name any user or device.
// A profile the operator wrote under that name is their own opt-in and is kept.
func (p *parser) apiProfile(setting, name string, profiles map[string]*policy.Profile) {
	if name == "intune" && !p.written[name] {
		p.fail(setting, "/api/csr cannot use the built-in profile \"intune\", whose names (any UPN, SID and device "+
			"URIs) Intune authorizes on the SCEP door only; write the names the API may issue in AZSCEP_PROFILE_<NAME>")
		return
	}
	p.profile(setting, name, profiles)
}

// getenv reads a setting. A Key Vault reference ("@Microsoft.KeyVault(…)") is replaced by the platform with the
// secret, and left verbatim when it cannot be (no access, no such secret). A verbatim reference, in whatever case or
// spacing, must never be used as a secret: anyone could guess it from the vault's name.
func (p *parser) getenv(name string) string {
	if p.read != nil {
		p.read[name] = true
	}
	v := p.env[name]
	if keyvault.IsPlatformReference(v) {
		if p.refs == nil {
			p.refs = map[string]string{}
		}
		p.refs[name] = v
		if _, err := keyvault.ParseReference(v); err != nil {
			p.fail(name, "reads like a platform reference (@Microsoft.…) App Service did not resolve, and is not a Key "+
				"Vault reference the service can read: fix the reference (and the identity's access to what it names), then restart")
			return ""
		}
		p.fail(name, "is an unresolved Key Vault reference: give the app's identity Key Vault Secrets User on the "+
			"vault and check the secret URI; the service reads it itself at start and, while it is refused, again "+
			"in the background (App Service re-reads references only on a restart or every 24 hours)")
		return ""
	}
	return v
}

// keyVaultName reports whether s is 1 to max letters, digits and hyphens: what Key Vault allows in an object's name.
func keyVaultName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

// fail records a problem of setting: a fault of the feature being read, or Load's error for a core setting.
func (p *parser) fail(setting, problem string) {
	p.failWith(&Error{Setting: setting, Problem: problem})
}

func (p *parser) failWith(e *Error) {
	switch {
	case p.scope != "":
		if p.faults[p.scope] == nil {
			p.faults[p.scope] = e
		}
	case p.err == nil:
		p.err = e
	}
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) int(name string, def, min, max int) int {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		p.fail(name, fmt.Sprintf("must be an integer from %d to %d", min, max))
		return def
	}
	return n
}

func (p *parser) bool(name string, def bool) bool {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "must be true or false")
	}
	return b
}

func (p *parser) duration(name string, def, min, max time.Duration) time.Duration {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	d, err := policy.ParseDuration(v)
	if err != nil || d < min || d > max {
		p.fail(name, fmt.Sprintf("must be a duration from %s to %s", min, max))
		return def
	}
	return d
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(p.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, "must be one of "+strings.Join(allowed, ", "))
	return def
}

func (p *parser) httpsURL(name, v string, allowHTTP bool) {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(allowHTTP && u.Scheme == "http")) {
		p.fail(name, "must be an absolute https URL")
	}
}

// prefixed returns the suffix of every non-empty setting whose name starts with prefix, sorted; the values are
// read with p.str so that Key Vault references are checked.
func (p *parser) prefixed(prefix string) []string {
	var out []string
	for k, v := range p.env {
		if strings.HasPrefix(k, prefix) && v != "" {
			out = append(out, strings.TrimPrefix(k, prefix))
		}
	}
	sort.Strings(out)
	return out
}

// endpoint reads the settings of SCEP endpoint name; it runs inside the endpoint's p.feature block.
func (p *parser) endpoint(name string, local bool, profiles map[string]*policy.Profile) Endpoint {
	key := "AZSCEP_SCEP_" + strings.ToUpper(name)
	e := Endpoint{Name: strings.ToLower(name), CACert: "chain", ReplayWindow: DefaultReplayWindow}
	e.Challenge = "static"
	if e.Name == "intune" {
		e.Challenge = "intune"
	}
	seen := map[string]bool{} // every key at most once, as in a profile: a stale copy must not silently win
	for _, part := range strings.Split(p.str(key, ""), ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			p.fail(key, fmt.Sprintf("%q is not key=value", part))
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if seen[k] {
			p.fail(key, fmt.Sprintf("%s= is given twice", k))
			continue
		}
		seen[k] = true
		switch k {
		case "challenge":
			e.Challenge = strings.ToLower(strings.TrimSpace(v))
		case "profile":
			e.Profile = strings.ToLower(strings.TrimSpace(v))
		case "cacert":
			e.CACert = strings.ToLower(strings.TrimSpace(v))
		case "certrep_chain":
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				p.fail(key, "certrep_chain must be true or false")
			}
			e.CertRepChain = b
		case "renewal":
			// No zero: the renewal check reads an unset window as the default (the last half of the validity), so
			// "renewal=0", written to allow none, would allow months.
			d, err := policy.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < time.Hour {
				p.fail(key, "renewal must be a duration of at least 1h, such as 30d (leave it out for the last half "+
					"of the validity)")
			}
			e.RenewalWindow = d
		case "replay":
			d, err := policy.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < time.Minute || d > 31*24*time.Hour {
				p.fail(key, "replay must be a duration from 1m to 31d")
			}
			e.ReplayWindow = d
		case "renew_from":
			for _, n := range splitList(v) {
				e.RenewFrom = append(e.RenewFrom, strings.ToLower(n))
			}
		case "renewal_max":
			d, err := policy.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < time.Hour {
				p.fail(key, "renewal_max must be a duration of at least 1h, such as 1095d")
			}
			e.RenewalMax = d
		default:
			p.fail(key, fmt.Sprintf("unknown key %q", k))
		}
	}
	if e.Challenge != "static" && e.Challenge != "intune" {
		p.fail(key, "challenge must be static or intune")
	}
	if e.Profile == "" {
		// The intune profile accepts the names Intune vouches for request by request (any UPN, SID and device
		// URIs). Only the intune endpoint with Intune's challenge gets it by default: behind a shared static
		// secret nobody vouches for them, even on the endpoint named intune, and another endpoint keeps the
		// narrow default it always had unless the operator names a profile.
		e.Profile = "device"
		if e.Name == "intune" && e.Challenge == "intune" {
			e.Profile = "intune"
		}
	}
	if e.CACert != "chain" && e.CACert != "single" {
		p.fail(key, "cacert must be chain or single")
	}
	p.profile(key, e.Profile, profiles)
	if e.Challenge == "static" && e.Profile != "device" && !p.written[e.Profile] {
		// The built-in intune and api profiles allow any UPN and e-mail name (intune also SID and device URIs)
		// because Intune or an Entra role authorizes each request's names; behind a shared static secret nobody
		// does, and a UPN SAN is what Entra certificate-based authentication binds a user by.
		p.fail(key, fmt.Sprintf("a static challenge cannot use the built-in profile %q, which lets anyone with the secret "+
			"name any user; write the names this endpoint may issue in AZSCEP_PROFILE_<NAME>", e.Profile))
	}
	if e.Challenge == "static" {
		e.Secret = p.getenv(key + "_SECRET")
		if e.Secret == "" && local && e.Name == "static" {
			e.Secret = LocalStaticChallenge
		}
		if len(e.Secret) < 8 {
			p.fail(key+"_SECRET", "static challenge of at least 8 characters is required")
		}
	}
	return e
}

// unlistedEndpoints disables the endpoint of every AZSCEP_SCEP_<NAME> setting whose name is not in listed
// (AZSCEP_SCEP_ENDPOINTS): the setting is never read, so the endpoint it describes does not exist, which without a
// fault nobody would see until a client failed. A secret (AZSCEP_SCEP_<NAME>_SECRET) counts for its endpoint; the
// other AZSCEP_SCEP_* settings (AZSCEP_SCEP_ENDPOINTS, AZSCEP_SCEP_RATE_*) are not endpoint settings. A name in
// mixed case is never read either, and says so.
func (p *parser) unlistedEndpoints(listed []string) {
	for _, suffix := range p.prefixed("AZSCEP_SCEP_") {
		if suffix == "ENDPOINTS" || strings.HasPrefix(suffix, "RATE_") {
			continue
		}
		// An endpoint may be configured by its secret alone (a static endpoint with the default profile).
		name := strings.ToLower(strings.TrimSuffix(strings.ToUpper(suffix), "_SECRET"))
		if name == "" {
			continue
		}
		if suffix != strings.ToUpper(suffix) {
			// Only the upper-case name is read: AZSCEP_SCEP_Routers would be ignored without a word.
			p.feature(EndpointFeature(name), func() {
				p.fail("AZSCEP_SCEP_"+suffix, "is not read: write the setting's name in upper case, AZSCEP_SCEP_"+strings.ToUpper(suffix))
			})
			continue
		}
		if slices.ContainsFunc(listed, func(l string) bool { return strings.EqualFold(l, name) }) {
			continue
		}
		hint := "deployed with azd: add it to AZSCEP_EXTRA_SCEP_ENDPOINTS"
		if name == "intune" {
			hint = "it is listed by default once AZSCEP_INTUNE_TENANT_ID is set"
			if p.env["AZSCEP_SCEP_ENDPOINTS"] != "" {
				hint = "add intune to AZSCEP_SCEP_ENDPOINTS, or remove that setting to get the default list"
			}
		}
		p.feature(EndpointFeature(name), func() {
			p.fail("AZSCEP_SCEP_"+suffix, fmt.Sprintf("is set but endpoint %s is not listed in AZSCEP_SCEP_ENDPOINTS (%s)", name, hint))
		})
	}
}

// renewFrom checks every endpoint's renew_from list: it names enabled endpoints, and a static endpoint never
// renews an Intune endpoint's certificates (their names were vouched for by Intune for one device, and a static
// endpoint would renew them without asking Intune). An endpoint whose list fails is disabled; the rest are
// returned. The check runs again until nothing more is disabled: an endpoint that renews one disabled here names an
// endpoint that is gone too, and scep.New refuses such a list, which would take every door down.
func (p *parser) renewFrom(eps []Endpoint) []Endpoint {
	for {
		challenge := map[string]string{}
		for _, e := range eps {
			challenge[e.Name] = e.Challenge
		}
		kept := eps[:0:0]
		for _, e := range eps {
			ok := p.feature(EndpointFeature(e.Name), func() {
				key := "AZSCEP_SCEP_" + strings.ToUpper(e.Name)
				for _, from := range e.RenewFrom {
					c, known := challenge[from]
					switch {
					case !known:
						p.fail(key, fmt.Sprintf("renew_from names %q, which is not an enabled endpoint", from))
					case e.Challenge == "static" && c == "intune":
						p.fail(key, fmt.Sprintf("a static endpoint cannot renew certificates of the intune endpoint %q", from))
					}
				}
			})
			if ok {
				kept = append(kept, e)
			}
		}
		if len(kept) == len(eps) {
			return kept
		}
		eps = kept
	}
}

// rate parses COUNT/DURATION (e.g. 120/1m).
func (p *parser) rate(name string, def Rate) Rate {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	n, per, ok := strings.Cut(v, "/")
	count, err := strconv.Atoi(strings.TrimSpace(n))
	d, derr := policy.ParseDuration(strings.TrimSpace(per))
	if !ok || err != nil || derr != nil || count < 1 || count > 1_000_000 || d < time.Second || d > 24*time.Hour {
		p.fail(name, "must be COUNT/DURATION, e.g. 120/1m (count 1–1000000, duration 1s–24h)")
		return def
	}
	return Rate{Count: count, Per: d}
}

// LocalStaticChallenge is the challenge of the local default `static` endpoint, printed by `make run`. Azure mode
// never defaults a secret.
const LocalStaticChallenge = "local-static-challenge"

func (p *parser) intune(c *IntuneConfig) {
	if c.TenantID == "" {
		p.fail("AZSCEP_INTUNE_TENANT_ID", "is required when an endpoint uses the intune challenge")
	}
	switch c.Credential {
	case "secret":
		if c.ClientSecret == "" {
			p.fail("AZSCEP_INTUNE_CLIENT_SECRET", "is required with AZSCEP_INTUNE_CREDENTIAL=secret")
		}
		if c.ClientID == "" {
			p.fail("AZSCEP_INTUNE_CLIENT_ID", "is required with a secret credential")
		}
	case "certificate":
		if c.CertPath == "" {
			p.fail("AZSCEP_INTUNE_CERT_PATH", "is required with AZSCEP_INTUNE_CREDENTIAL=certificate")
		}
		if c.ClientID == "" {
			p.fail("AZSCEP_INTUNE_CLIENT_ID", "is required with a certificate credential")
		}
	}
	for _, s := range []struct{ name, v string }{{"AZSCEP_INTUNE_AUTHORITY", c.AuthorityHost},
		{"AZSCEP_INTUNE_GRAPH_URL", c.GraphURL}, {"AZSCEP_INTUNE_RESOURCE_URL", c.ResourceURL}} {
		p.httpsURL(s.name, s.v, false)
	}
}

// clientApps checks that every entry of the setting is an application (client) ID and lower-cases it, as tokens'
// azp/appid are compared.
func (p *parser) clientApps(name string, ids []string) []string {
	for i, id := range ids {
		if !entra.IsGUID(id) {
			p.fail(name, fmt.Sprintf("%q is not an application (client) ID", id))
		}
		ids[i] = strings.ToLower(id)
	}
	return ids
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func alnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLetter(s[i]) && !(s[i] >= '0' && s[i] <= '9') {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
