package keyvault

import (
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/transport"
)

// NewClient builds the azkeys client a Key should use. It turns azcore's own
// retry policy off (MaxRetries = -1): Key retries 429/5xx itself, within a
// bounded budget, and must see every throttling answer to report
// Retry-After. Leaving azcore's policy on would multiply attempts (4 × 4) and
// hide throttling behind minutes of invisible waiting. opts may be nil; it is
// copied, not modified.
func NewClient(vaultURL string, cred azcore.TokenCredential, opts *azkeys.ClientOptions) (*azkeys.Client, error) {
	if cred == nil {
		return nil, fmt.Errorf("keyvault: nil credential: %w", ErrInvalidInput)
	}
	var o azkeys.ClientOptions
	if opts != nil {
		o = *opts
	}
	o.Retry.MaxRetries = -1
	o.Transport = transport.LimitAnswers(o.Transport, MaxAnswerBytes)
	c, err := azkeys.NewClient(vaultURL, cred, &o)
	if err != nil {
		return nil, fmt.Errorf("keyvault: creating client for %s: %w", vaultURL, err)
	}
	return c, nil
}

// MaxAnswerBytes caps one Key Vault answer: a key or a secret (at most 25 KB) is a few KB of JSON.
const MaxAnswerBytes = 1 << 20

// Credential returns the Entra ID credential for Key Vault.
//
// With a clientID (the Function App's app setting for its user-assigned
// managed identity) it is exactly that managed identity: in Azure nothing else
// should be able to reach the CA key, and a fixed identity avoids
// DefaultAzureCredential silently picking up something else (environment
// variables, a system-assigned identity) and failing in confusing ways.
//
// With clientID == "" it is azidentity.DefaultAzureCredential, which tries
// environment variables, workload identity, managed identity, then developer
// logins (Azure CLI, Azure Developer CLI, Azure PowerShell). That is meant for
// admin commands such as `ca init` run from a workstation after `az login`.
func Credential(clientID string) (azcore.TokenCredential, error) {
	if clientID != "" {
		c, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ID: azidentity.ClientID(clientID),
		})
		if err != nil {
			return nil, fmt.Errorf("keyvault: managed identity credential: %w", err)
		}
		return c, nil
	}
	c, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("keyvault: default Azure credential: %w", err)
	}
	return c, nil
}
