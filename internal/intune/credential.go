package intune

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// DefaultAuthorityHost is the Entra ID authority of the public cloud.
const DefaultAuthorityHost = "https://login.microsoftonline.com/"

// CredentialKind selects how the CA authenticates to Entra ID.
type CredentialKind string

// Supported credential kinds (intune-protocol.md §3.4).
const (
	// CredentialManagedIdentity uses the Function App's managed identity;
	// the scep_challenge_provider role is assigned to it directly.
	CredentialManagedIdentity CredentialKind = "managedidentity"
	// CredentialClientSecret uses an app registration and a client secret.
	CredentialClientSecret CredentialKind = "clientsecret"
	// CredentialClientCertificate uses an app registration and a
	// certificate (private_key_jwt client assertion).
	CredentialClientCertificate CredentialKind = "clientcertificate"
)

// CredentialConfig holds the settings NewCredential turns into an
// azidentity credential. Secrets in it must come from Key Vault references
// or similar, never from source.
type CredentialConfig struct {
	// Kind selects the credential. Empty infers it: a client secret selects
	// CredentialClientSecret, certificate data CredentialClientCertificate,
	// otherwise CredentialManagedIdentity.
	Kind CredentialKind
	// TenantID is the Entra tenant (GUID or verified domain). Required for
	// secret and certificate credentials.
	TenantID string
	// ClientID is the app registration's client ID (secret/certificate), or
	// the client ID of a user-assigned managed identity (empty = system-assigned).
	ClientID string
	// ClientSecret is the app registration's secret.
	ClientSecret string
	// Certificate is PEM (certificate and private key) or PKCS#12 data.
	Certificate []byte
	// CertificatePassword decrypts Certificate, if it is encrypted.
	CertificatePassword string
	// SendCertificateChain adds x5c to the assertion (subject-name/issuer auth).
	SendCertificateChain bool
	// AuthorityHost is the Entra authority base. Default DefaultAuthorityHost.
	AuthorityHost string
	// DisableInstanceDiscovery skips Entra instance metadata discovery,
	// which always goes to login.microsoftonline.com and so must be
	// disabled for private clouds and for a fake authority in tests.
	DisableInstanceDiscovery bool
	// HTTPClient sends token requests (e.g. one that trusts a test server).
	HTTPClient *http.Client
	// Retry tunes azidentity's own retry of token requests (zero = defaults).
	Retry policy.RetryOptions
}

// NewCredential builds the azidentity credential described by cfg. The
// result caches tokens in memory, so build it once and pass it to New.
func NewCredential(cfg CredentialConfig) (azcore.TokenCredential, error) {
	kind := CredentialKind(strings.ToLower(strings.TrimSpace(string(cfg.Kind))))
	if kind == "" {
		switch {
		case cfg.ClientSecret != "":
			kind = CredentialClientSecret
		case len(cfg.Certificate) > 0:
			kind = CredentialClientCertificate
		default:
			kind = CredentialManagedIdentity
		}
	}
	host := orDefault(cfg.AuthorityHost, DefaultAuthorityHost)
	if err := checkHTTPSURL("AuthorityHost", host); err != nil {
		return nil, err
	}
	if u, _ := url.Parse(host); u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%w: AuthorityHost %q must not have a path (the tenant is appended)", ErrInvalidArgument, host)
	}
	opts := azcore.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: host},
		Retry: cfg.Retry,
	}
	if cfg.HTTPClient != nil {
		opts.Transport = cfg.HTTPClient
	}
	switch kind {
	case CredentialClientSecret:
		if err := requireAppIdentity(kind, cfg); err != nil {
			return nil, err
		}
		if cfg.ClientSecret == "" {
			return nil, fmt.Errorf("%w: client secret credential needs ClientSecret", ErrInvalidArgument)
		}
		cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cfg.DisableInstanceDiscovery})
		if err != nil {
			return nil, fmt.Errorf("%w: building client secret credential: %w", ErrInvalidArgument, err)
		}
		return cred, nil
	case CredentialClientCertificate:
		if err := requireAppIdentity(kind, cfg); err != nil {
			return nil, err
		}
		certs, key, err := azidentity.ParseCertificates(cfg.Certificate, []byte(cfg.CertificatePassword))
		if err != nil {
			// The parser's message never includes key material.
			return nil, fmt.Errorf("%w: parsing client certificate: %w", ErrInvalidArgument, err)
		}
		cred, err := azidentity.NewClientCertificateCredential(cfg.TenantID, cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{
				ClientOptions:            opts,
				DisableInstanceDiscovery: cfg.DisableInstanceDiscovery,
				SendCertificateChain:     cfg.SendCertificateChain,
			})
		if err != nil {
			return nil, fmt.Errorf("%w: building client certificate credential: %w", ErrInvalidArgument, err)
		}
		return cred, nil
	case CredentialManagedIdentity:
		miOpts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if cfg.ClientID != "" {
			miOpts.ID = azidentity.ClientID(cfg.ClientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(miOpts)
		if err != nil {
			return nil, fmt.Errorf("%w: building managed identity credential: %w", ErrInvalidArgument, err)
		}
		return cred, nil
	default:
		return nil, fmt.Errorf("%w: unknown credential kind %q", ErrInvalidArgument, cfg.Kind)
	}
}

func requireAppIdentity(kind CredentialKind, cfg CredentialConfig) error {
	if strings.TrimSpace(cfg.TenantID) == "" || strings.TrimSpace(cfg.ClientID) == "" {
		return fmt.Errorf("%w: %s credential needs TenantID and ClientID", ErrInvalidArgument, kind)
	}
	return nil
}
