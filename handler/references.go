package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/keyvault"
)

// references reads the settings App Service left as Key Vault references with the app's identity, and returns the
// configuration loaded again with their values, and the names still to read. At a new deployment's first start
// the identity's Key Vault Secrets User role is seconds old: the platform leaves the reference verbatim (which
// disables its feature, e.g. the static SCEP endpoint) and re-reads it only on a restart or after 24 hours. The
// service asks again while it waits for its other Key Vault roles (app.init), so the feature comes up with them.
// Only names whose answer may change (forbidden, unavailable) stay pending; a malformed reference or a missing
// secret keeps its feature disabled, as the start-up log says.
func references(ctx context.Context, cfg *config.Config, pending []string, log *slog.Logger, opts buildOptions) (*config.Config, []string) {
	if cfg.Mode != config.ModeAzure || len(pending) == 0 {
		return cfg, nil
	}
	cred := opts.credential
	if cred == nil {
		var err error
		if cred, err = azureCredential(cfg); err != nil {
			log.Error("Key Vault references: no credential", "err", err)
			return cfg, nil
		}
	}
	var sopts *azsecrets.ClientOptions
	if opts.kvOptions != nil {
		sopts = &azsecrets.ClientOptions{ClientOptions: opts.kvOptions.ClientOptions,
			DisableChallengeResourceVerification: opts.kvOptions.DisableChallengeResourceVerification}
	}
	values := map[string]string{}
	var left []string
	for _, name := range pending {
		ref, err := keyvault.ParseReference(cfg.References[name])
		if err == nil {
			var v string
			if v, err = keyvault.Resolve(ctx, ref, cfg.KeyVaultURL, cred, sopts); err == nil {
				values[name] = v
				continue
			}
		}
		if errors.Is(err, keyvault.ErrForbidden) || errors.Is(err, keyvault.ErrUnavailable) {
			left = append(left, name)
			log.Warn("Key Vault reference not readable yet; retrying", "setting", name, "err", err)
			continue
		}
		log.Error("Key Vault reference cannot be read; its feature stays disabled", "setting", name, "err", err)
	}
	if len(values) == 0 {
		return cfg, left
	}
	environ := opts.environ
	if environ == nil {
		environ = os.Environ()
	}
	resolved := slices.Clone(environ)
	for i, kv := range resolved {
		if k, _, ok := strings.Cut(kv, "="); ok {
			if v, ok := values[k]; ok {
				resolved[i] = k + "=" + v
			}
		}
	}
	next, err := config.Load(resolved)
	if err != nil {
		log.Error("configuration with the Key Vault references read does not load", "err", err)
		return cfg, left
	}
	for name := range values {
		log.Info("Key Vault reference read by the service", "setting", name)
	}
	for _, f := range next.FaultList() {
		if f.Err.Setting != "" && values[f.Err.Setting] != "" {
			log.Error("feature disabled by a setting", "feature", f.Feature, "setting", f.Err.Setting, "problem", f.Err.Problem)
		}
	}
	return next, left
}

// pendingReferences lists cfg's Key Vault references in a stable order.
func pendingReferences(cfg *config.Config) []string {
	var names []string
	for name := range cfg.References {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
