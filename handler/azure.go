package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/store"
)

// azureCredential is the managed identity when AZURE_CLIENT_ID is set (the service in Azure) and the developer's
// own credential otherwise (admin commands on a workstation).
func azureCredential(cfg *config.Config) (azcore.TokenCredential, error) {
	return keyvault.Credential(cfg.ManagedIdentityClientID)
}

// vault builds the Key Vault custody backend over the store.
func vault(cfg *config.Config, cred azcore.TokenCredential, st store.Meta, kvOptions *azkeys.ClientOptions) (*custody.Vault, error) {
	client, err := keyvault.NewClient(cfg.KeyVaultURL, cred, kvOptions)
	if err != nil {
		return nil, err
	}
	return &custody.Vault{Client: client, Meta: st, CAKeyName: cfg.CAKeyName, CAKeyVer: cfg.CAKeyVersion,
		KEKName: cfg.KEKName, CADecrypts: cfg.RAMode == "ca"}, nil
}

// loadKeyVaultKeys loads the CA key (pinned version) and unwraps the RA key: once per instance.
func loadKeyVaultKeys(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger, opts buildOptions) (*custody.Keys, error) {
	cred := opts.credential
	if cred == nil {
		var err error
		if cred, err = azureCredential(cfg); err != nil {
			return nil, err
		}
	}
	v, err := vault(cfg, cred, st, opts.kvOptions)
	if err != nil {
		return nil, err
	}
	keys, err := v.Load(ctx, time.Now())
	if err != nil {
		return nil, fmt.Errorf("loading keys from Key Vault: %w", err)
	}
	log.Info("keys loaded from Key Vault", "ca_key", cfg.CAKeyName, "ra_mode", cfg.RAMode)
	return keys, nil
}
