package keyvault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/azscep/azscep/internal/transport"
)

// Reference is an App Service Key Vault reference, "@Microsoft.KeyVault(SecretUri=…)" or
// "@Microsoft.KeyVault(VaultName=…;SecretName=…[;SecretVersion=…])": a setting whose value the platform fetches
// from Key Vault with the app's identity when the app starts, and leaves verbatim when it cannot.
type Reference struct {
	VaultURL string // https://<vault>.vault.azure.net/
	Name     string
	Version  string // "" = the current version
	// ByName is true for the VaultName form: App Service finds that vault in the app's own cloud, so Resolve takes
	// the vault's DNS suffix from AZSCEP_KEYVAULT_URL (vault.azure.cn, vault.usgovcloudapi.net, …); VaultURL holds
	// the public cloud's.
	ByName bool
}

// referenceName is how App Service spells a Key Vault reference, before its parenthesis.
const referenceName = "@Microsoft.KeyVault"

// IsPlatformReference reports whether a setting's value is a reference App Service resolves (a Key Vault or an App
// Configuration reference, "@Microsoft.<Name>(…)"), in any case and spacing, also inside the quotes a paste from JSON
// leaves: whether or not the platform resolved such a spelling, a value that still reads like one is never the
// secret it names, and anyone who knows the vault's name could send it. A secret that merely begins "@Microsoft."
// is not one.
func IsPlatformReference(v string) bool {
	return platformReference.MatchString(strings.TrimSpace(strings.Trim(strings.TrimSpace(v), "\"'")))
}

// platformReference is "@Microsoft.<Name>(" in any case, with any spacing between its parts: App Service resolves
// none of the spaced spellings, so an operator's stray space would leave the reference's guessable text in place.
var platformReference = regexp.MustCompile(`(?i)^@\s*microsoft\s*\.\s*[a-z]+\s*\(`)

// ParseReference reads a Key Vault reference in either of App Service's forms, its name in any case and with any
// spacing before the parenthesis.
func ParseReference(v string) (Reference, error) {
	t := strings.TrimSpace(v)
	if len(t) < len(referenceName) || !strings.EqualFold(t[:len(referenceName)], referenceName) {
		return Reference{}, fmt.Errorf("%w: not a Key Vault reference", ErrInvalidInput)
	}
	body, ok := strings.CutPrefix(strings.TrimLeft(t[len(referenceName):], " \t"), "(")
	if !ok || !strings.HasSuffix(body, ")") {
		return Reference{}, fmt.Errorf("%w: not a Key Vault reference", ErrInvalidInput)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimSuffix(body, ")"), ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return Reference{}, fmt.Errorf("%w: Key Vault reference part %q has no value", ErrInvalidInput, part)
		}
		fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
	}
	if uri, ok := fields["secreturi"]; ok {
		u, err := url.Parse(uri)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return Reference{}, fmt.Errorf("%w: SecretUri %q is not an https Key Vault secret URI", ErrInvalidInput, uri)
		}
		seg := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(seg) < 2 || len(seg) > 3 || seg[0] != "secrets" || seg[1] == "" {
			return Reference{}, fmt.Errorf("%w: SecretUri %q does not name a secret", ErrInvalidInput, uri)
		}
		r := Reference{VaultURL: "https://" + u.Host + "/", Name: seg[1]}
		if len(seg) == 3 {
			r.Version = seg[2]
		}
		return r.checkNames()
	}
	vault, name := fields["vaultname"], fields["secretname"]
	if vault == "" || name == "" {
		return Reference{}, fmt.Errorf("%w: a Key Vault reference needs SecretUri, or VaultName and SecretName", ErrInvalidInput)
	}
	// The vault name becomes the first label of the vault's host: anything but a DNS label ("#", "?", "@", "%" …)
	// would make a URL whose host is something else, or none.
	if !vaultNameRE.MatchString(vault) {
		return Reference{}, fmt.Errorf("%w: VaultName %q is not a Key Vault name", ErrInvalidInput, vault)
	}
	return Reference{VaultURL: "https://" + vault + ".vault.azure.net/", Name: name, Version: fields["secretversion"],
		ByName: true}.checkNames()
}

// Key Vault's names: a vault name is a DNS label; a secret name is 1–127 letters, digits and hyphens; a version
// is letters and digits (32 hexadecimal digits in practice).
var (
	vaultNameRE     = regexp.MustCompile(`^[0-9A-Za-z](?:[0-9A-Za-z-]{0,61}[0-9A-Za-z])?$`)
	secretNameRE    = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	secretVersionRE = regexp.MustCompile(`^[0-9A-Za-z]{0,64}$`)
)

// checkNames refuses a secret name or version Key Vault cannot have, so that the secret read stays at
// /secrets/<name>[/<version>] of the vault (no "/", no dot segments, nothing the client must escape).
func (r Reference) checkNames() (Reference, error) {
	if !secretNameRE.MatchString(r.Name) || !secretVersionRE.MatchString(r.Version) {
		return Reference{}, fmt.Errorf("%w: secret name %q or version %q is not a Key Vault name", ErrInvalidInput, r.Name, r.Version)
	}
	return r, nil
}

// Resolve reads the secret a reference names with cred, as App Service would have: the service does it itself when
// the platform left the reference verbatim, which it does at the first start of a new deployment while the app
// identity's role on the vault is still spreading, and then keeps until a restart or for 24 hours. Only the
// vault the service already trusts (vaultURL, its AZSCEP_KEYVAULT_URL) or another Azure Key Vault host is asked,
// so a setting cannot send the identity's token elsewhere. Errors are ErrForbidden (no access yet), ErrNotFound,
// ErrUnavailable (transport, 429, 5xx) or ErrInvalidInput.
func Resolve(ctx context.Context, ref Reference, vaultURL string, cred azcore.TokenCredential, opts *azsecrets.ClientOptions) (string, error) {
	if ref.ByName {
		ref.VaultURL = inCloudOf(ref.VaultURL, vaultURL)
	}
	if !trustedVault(ref.VaultURL, vaultURL) {
		return "", fmt.Errorf("%w: %s is neither AZSCEP_KEYVAULT_URL's vault nor an Azure Key Vault host", ErrInvalidInput, ref.VaultURL)
	}
	var o azsecrets.ClientOptions
	if opts != nil {
		o = *opts
	}
	o.Transport = transport.LimitAnswers(o.Transport, MaxAnswerBytes)
	c, err := azsecrets.NewClient(ref.VaultURL, cred, &o)
	if err != nil {
		return "", fmt.Errorf("keyvault: creating secrets client for %s: %w", ref.VaultURL, err)
	}
	resp, err := c.GetSecret(ctx, ref.Name, ref.Version, nil)
	if err != nil {
		var re *azcore.ResponseError
		kind := ErrUnavailable
		if errors.As(err, &re) {
			switch {
			case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
				kind = ErrForbidden
			case re.StatusCode == http.StatusNotFound:
				kind = ErrNotFound
			case re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500:
				kind = ErrUnavailable
			default:
				kind = ErrRejected
			}
		}
		return "", fmt.Errorf("%w: reading secret %s from %s: %s", kind, ref.Name, ref.VaultURL, summarize(err))
	}
	if resp.Value == nil {
		return "", fmt.Errorf("%w: secret %s has no value", ErrInvalidResponse, ref.Name)
	}
	return *resp.Value, nil
}

// vaultSuffixes are the Key Vault data-plane DNS suffixes of Azure's clouds.
var vaultSuffixes = []string{".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net", ".vault.microsoftazure.de"}

// inCloudOf moves a VaultName reference's vault URL (https://<name>.vault.azure.net/) into the cloud of vaultURL,
// the service's own vault, when that is another Azure cloud's Key Vault host.
func inCloudOf(refURL, vaultURL string) string {
	vu, err := url.Parse(vaultURL)
	if err != nil {
		return refURL
	}
	h := strings.ToLower(strings.TrimSuffix(vu.Hostname(), "."))
	name, _, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(refURL, "https://"), "/"), ".")
	for _, s := range vaultSuffixes {
		if strings.HasSuffix(h, s) && len(h) > len(s) {
			return "https://" + name + s + "/"
		}
	}
	return refURL
}

func trustedVault(refURL, vaultURL string) bool {
	ru, err := url.Parse(refURL)
	if err != nil || ru.Scheme != "https" {
		return false
	}
	if vu, err := url.Parse(vaultURL); err == nil && vu.Host != "" && strings.EqualFold(vu.Host, ru.Host) {
		return true
	}
	h := strings.ToLower(ru.Hostname())
	for _, s := range vaultSuffixes {
		if strings.HasSuffix(h, s) && len(h) > len(s) && ru.Port() == "" {
			return true
		}
	}
	return false
}
