package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/revocation"
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

// loadKeyVaultKeys loads the CA key (pinned version) and unwraps the RA key: once per instance. The vault is
// returned as the RA's store (renewals, periodic re-reads).
func loadKeyVaultKeys(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger, opts buildOptions) (*custody.Keys, *custody.Vault, error) {
	cred := opts.credential
	if cred == nil {
		var err error
		if cred, err = azureCredential(cfg); err != nil {
			return nil, nil, err
		}
	}
	v, err := vault(cfg, cred, st, opts.kvOptions)
	if err != nil {
		return nil, nil, err
	}
	v.Recorder = revocation.RARecords(st)
	keys, err := v.Load(ctx, time.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("loading keys from Key Vault: %w", err)
	}
	log.Info("keys loaded from Key Vault", "ca_key", cfg.CAKeyName, "ra_mode", cfg.RAMode)
	warnCAKeyExpiry(keys, log)
	return keys, v, nil
}

// warnCAKeyExpiry warns, at each start, when the CA key version expires before the CA certificate: a rotation
// policy's expiryTime puts such an expiry on every version it makes. From then on Key Vault refuses the version's
// signatures, every enrollment is answered 503 and the next start stops, and no other version can take over: it would
// be another key pair.
func warnCAKeyExpiry(keys *custody.Keys, log *slog.Logger) {
	k, ok := keys.CASigner.(*keyvault.Key)
	if !ok {
		return
	}
	if exp := k.Expires(); !exp.IsZero() && exp.Before(keys.CA().NotAfter) {
		log.Warn("the CA key version expires before the CA certificate, and the CA stops signing then: extend the "+
			"version's expiry (az keyvault key set-attributes --expires)", "kid", k.KID(),
			"key_expires", exp.UTC().Format(time.RFC3339), "ca_not_after", keys.CA().NotAfter.UTC().Format(time.RFC3339))
	}
}

// describeIdentity gets a Key Vault token with cred and says whose it is, from the token's claims: the user (upn)
// or application (appid), object ID and tenant. The token is decoded for display only (it is not verified here;
// Key Vault verifies it) and is never printed or logged. Getting it first also makes a missing or wrong sign-in
// fail at once with the credential's own message rather than as a 403 later.
func describeIdentity(ctx context.Context, vaultURL string, cred azcore.TokenCredential) (string, error) {
	u, err := url.Parse(vaultURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bad Key Vault URL %q", vaultURL)
	}
	// kv-name.vault.azure.net → https://vault.azure.net/.default (the same rule holds in national clouds).
	_, suffix, _ := strings.Cut(u.Hostname(), ".")
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://" + suffix + "/.default"}})
	if err != nil {
		return "", fmt.Errorf("signing in for Key Vault: %w", err)
	}
	return identityFromToken(tok.Token), nil
}

// identityFromToken renders the identity claims of a JWT access token; an unreadable token gives "unknown".
func identityFromToken(token string) string {
	var claims struct {
		OID               string `json:"oid"`
		TID               string `json:"tid"`
		UPN               string `json:"upn"`
		UniqueName        string `json:"unique_name"`
		PreferredUsername string `json:"preferred_username"`
		AppID             string `json:"appid"`
		AZP               string `json:"azp"`
		IDType            string `json:"idtyp"`
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "an identity whose token is not a JWT"
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil || json.Unmarshal(payload, &claims) != nil {
		return "an identity whose token claims are unreadable"
	}
	name := cmp.Or(claims.UPN, claims.UniqueName, claims.PreferredUsername)
	kind := "user " + name
	if name == "" || claims.IDType == "app" {
		kind = "application " + cmp.Or(claims.AppID, claims.AZP, "(no appid)")
	}
	return fmt.Sprintf("%s (object ID %s, tenant %s)", kind, cmp.Or(claims.OID, "unknown"), cmp.Or(claims.TID, "unknown"))
}
