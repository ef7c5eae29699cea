package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/tables"
)

// openStore connects to Table Storage: Azurite through a connection string locally, the managed identity in Azure.
func openStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	var st *tables.Store
	var err error
	if cfg.TablesConnection != "" {
		st, err = tables.NewFromConnectionString(cfg.TablesConnection, cfg.TablesPrefix)
	} else {
		cred, cerr := azureCredential(cfg)
		if cerr != nil {
			return nil, cerr
		}
		st, err = tables.NewWithCredential(cfg.TablesEndpoint, cred, cfg.TablesPrefix)
	}
	if err != nil {
		return nil, fmt.Errorf("opening table storage: %w", err)
	}
	if err := st.EnsureTables(ctx); err != nil {
		return nil, fmt.Errorf("creating tables: %w", err)
	}
	return st, nil
}

// build wires every dependency of the routes.
func build(ctx context.Context, cfg *config.Config, log *slog.Logger) (*deps, error) {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	keys, err := loadKeys(ctx, cfg, st, log)
	if err != nil {
		return nil, err
	}
	urls := issuance.URLs{
		OCSP:      []string{cfg.URL("/api/ocsp")},
		CAIssuers: []string{cfg.URL("/api/ca")},
		CRL:       []string{cfg.URL("/api/crl")},
	}
	iss, err := issuance.New(issuance.Config{CA: issuance.CA{Cert: keys.CA(), Signer: keys.CASigner}, Store: st,
		URLs: urls, Backdate: cfg.Backdate, StaleAfter: cfg.StaleAfter, Logger: log})
	if err != nil {
		return nil, err
	}
	var endpoints []*scep.Endpoint
	for _, e := range cfg.Endpoints {
		endpoints = append(endpoints, &scep.Endpoint{Name: e.Name, Challenge: e.Challenge, Secret: []byte(e.Secret),
			Profile: cfg.Profiles[e.Profile], UseCA: e.CACert == "single" || cfg.RAMode == "ca",
			CertRepChain: e.CertRepChain, RenewalWindow: e.RenewalWindow})
	}
	d := &deps{cfg: cfg, log: log, store: st, keys: keys, issuer: iss}
	sc, err := scep.New(scep.Config{Keys: keys, Issuer: iss, Store: st, Endpoints: endpoints, Logger: log})
	if err != nil {
		return nil, err
	}
	d.scep = sc
	return d, nil
}

// loadKeys loads the CA and RA from files (local mode) or from Key Vault and the store (azure mode).
func loadKeys(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger) (*custody.Keys, error) {
	if cfg.Mode == config.ModeLocal {
		return custody.LoadLocal(cfg.LocalKeyDir, time.Now())
	}
	return loadKeyVaultKeys(ctx, cfg, st, log)
}
