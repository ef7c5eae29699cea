package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

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
//
// resolved holds the values read so far, across attempts: each reload starts from the environment the service
// started with, and a value read on an earlier attempt must not turn back into its reference.
func references(ctx context.Context, cfg *config.Config, pending []string, resolved map[string]string, log *slog.Logger, opts buildOptions) (*config.Config, []string) {
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
	sopts := &azsecrets.ClientOptions{}
	if opts.kvOptions != nil {
		sopts.ClientOptions = opts.kvOptions.ClientOptions
		sopts.DisableChallengeResourceVerification = opts.kvOptions.DisableChallengeResourceVerification
	}
	// One request per reference and attempt: app.init's loop is the retry, and a reference that never reads must
	// not hold a cold start back by azcore's backoff and Retry-After.
	sopts.Retry.MaxRetries = -1
	read := 0
	var left []string
	for _, name := range pending {
		ref, err := keyvault.ParseReference(cfg.References[name])
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, referenceTimeout)
			var v string
			v, err = keyvault.Resolve(rctx, ref, cfg.KeyVaultURL, cred, sopts)
			cancel()
			if err == nil {
				resolved[name] = v
				read++
				continue
			}
		}
		if errors.Is(err, keyvault.ErrForbidden) || errors.Is(err, keyvault.ErrUnavailable) {
			left = append(left, name)
			log.Warn("Key Vault reference not readable yet", "setting", name, "err", err)
			continue
		}
		log.Error("Key Vault reference cannot be read; its feature stays disabled", "setting", name, "err", err)
	}
	if read == 0 {
		return cfg, left
	}
	environ := opts.environ
	if environ == nil {
		environ = os.Environ()
	}
	env := slices.Clone(environ)
	for i, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); ok {
			if v, ok := resolved[k]; ok {
				env[i] = k + "=" + v
			}
		}
	}
	next, err := config.Load(env)
	if err != nil {
		log.Error("configuration with the Key Vault references read does not load", "err", err)
		return cfg, left
	}
	for _, name := range pending {
		if _, ok := resolved[name]; ok {
			log.Info("Key Vault reference read by the service", "setting", name)
		}
	}
	for _, f := range next.FaultList() {
		if _, ok := resolved[f.Err.Setting]; ok {
			logFault(log, f) // a value read that its setting refuses
		}
	}
	// A secret read only now can make a warning (two endpoints whose references name one secret); the ones the
	// running configuration had were logged already.
	for _, w := range next.Warnings {
		if !slices.ContainsFunc(cfg.Warnings, func(o config.Warning) bool { return sameWarning(o, w) }) {
			logWarning(log, w)
		}
	}
	return next, left
}

// readsReference reports whether setting is a Key Vault reference the service reads itself at start (azure mode):
// its fault is logged once that has been tried, not before.
func readsReference(cfg *config.Config, setting string) bool {
	_, ref := cfg.References[setting]
	return ref && cfg.Mode == config.ModeAzure
}

// logFault logs one feature a setting disabled: the line operators query for (docs/deployment.md).
func logFault(log *slog.Logger, f config.FeatureFault) {
	log.Error("feature disabled by a setting", "feature", f.Feature, "setting", f.Err.Setting, "problem", f.Err.Problem)
}

// logWarning logs one setting that loads but weakens authorization (config.Warning), once per start: the line
// operators query for next to "feature disabled by a setting". The message names settings and endpoints, never a
// secret.
func logWarning(log *slog.Logger, w config.Warning) {
	log.Warn("setting weakens authorization or does not work as written", "code", w.Code, "feature", w.Feature,
		"settings", w.Settings, "endpoints", w.Endpoints, "problem", w.Message)
}

// sameWarning reports whether two warnings say the same thing.
func sameWarning(a, b config.Warning) bool {
	return a.Code == b.Code && a.Feature == b.Feature && a.Message == b.Message
}

// referenceTimeout bounds one read of a Key Vault reference.
const referenceTimeout = 5 * time.Second

// pendingReferences lists cfg's Key Vault references in a stable order.
func pendingReferences(cfg *config.Config) []string {
	var names []string
	for name := range cfg.References {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
