package main

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/console"
	"github.com/azscep/azscep/internal/crl"
	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/ocsp"
	"github.com/azscep/azscep/internal/ratelimit"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/tables"
)

// openStore connects to Table Storage: Azurite through a connection string locally, the managed identity in Azure.
func openStore(ctx context.Context, cfg *config.Config, o ...tables.Option) (store.Store, error) {
	var st *tables.Store
	var err error
	if cfg.TablesConnection != "" {
		st, err = tables.NewFromConnectionString(cfg.TablesConnection, cfg.TablesPrefix, o...)
	} else {
		cred, cerr := azureCredential(cfg)
		if cerr != nil {
			return nil, cerr
		}
		st, err = tables.NewWithCredential(cfg.TablesEndpoint, cred, cfg.TablesPrefix, o...)
	}
	if err != nil {
		return nil, fmt.Errorf("opening table storage: %w", err)
	}
	if err := st.EnsureTables(ctx); err != nil {
		return nil, fmt.Errorf("creating tables: %w", err)
	}
	return st, nil
}

// buildOptions are what tests inject: an HTTP client that trusts their fakes' TLS certificates, and Key Vault
// client options pointing at the fake vault. Production passes the zero value.
type buildOptions struct {
	httpClient *http.Client
	kvOptions  *azkeys.ClientOptions
	credential azcore.TokenCredential
	// graphCredential replaces the credential for Microsoft Graph (tests point Graph at a fake with its own token).
	graphCredential azcore.TokenCredential
	// directory is a Graph directory to keep instead of making one: readLater passes the one serving, so that its
	// caches and its report of Graph's refusals (/api/health) survive the rebuild.
	directory *entra.Directory
	store     store.Store // replaces Table Storage (fault injection, azure-mode tests)
	// tablesTransport carries the Table Storage calls of the stores the CLI opens (a slow link, in tests).
	tablesTransport policy.Transporter
	// clock replaces the system clock of the OCSP responder, the CRL publisher, the RA renewal, issuance and
	// SCEP (renewal and replay windows, rate limits): tests move time instead of waiting.
	clock interface{ Now() time.Time }
	// sleep replaces the timer issuance waits on between the tries of a write after the signature (issuance.Config
	// Sleep): the fault tests run through a store outage of the whole write deadline without waiting it out.
	sleep func(ctx context.Context, d time.Duration) error
	// environ is what the configuration was loaded from (nil: the process environment), loaded again once the
	// service has read the Key Vault references App Service could not (references).
	environ []string
	// startWait is how long a request waits for start-up before the 503 "starting" (0: defaultStartWait).
	startWait time.Duration
	// drain is how long a stopping process lets requests in flight finish (0: defaultDrain).
	drain time.Duration
	// referenceRetry is readLater's first wait (0: defaultReferenceRetry).
	referenceRetry time.Duration
	// closed, if set, is called each time a set of dependencies is closed (tests count them).
	closed func()
}

// build wires every dependency of the routes. What it started (the RA keeper) is stopped again when it fails: a
// failed rebuild (readLater) must not leave it running beside the dependencies that serve.
func build(ctx context.Context, cfg *config.Config, log *slog.Logger, opts buildOptions) (_ *deps, err error) {
	var started func()
	defer func() {
		if err != nil && started != nil {
			started()
		}
	}()
	st := opts.store
	var now func() time.Time // nil: the system clock
	if opts.clock != nil {
		now = opts.clock.Now
	}
	if st == nil {
		var err error
		if st, err = openStore(ctx, cfg); err != nil {
			return nil, err
		}
	}
	keys, raStore, err := loadKeys(ctx, cfg, st, log, opts)
	if err != nil {
		return nil, err
	}
	urls := issuance.URLs{
		OCSP:      []string{cfg.PublishedURL("/api/ocsp")},
		CAIssuers: []string{cfg.PublishedURL("/api/ca")},
		CRL:       []string{cfg.PublishedURL("/api/crl")},
	}
	// Read at start, so that the first enrollment does not wait for the listing.
	marks := &revocation.CompromisedKeys{Store: st, Now: now}
	if err := marks.Refresh(ctx); err != nil {
		return nil, err
	}
	iss, err := issuance.New(issuance.Config{CA: issuance.CA{Cert: keys.CA(), Signer: keys.CASigner}, Store: st,
		URLs: urls, Backdate: cfg.Backdate, StaleAfter: cfg.StaleAfter, Logger: log, Now: now, Sleep: opts.sleep,
		CompromisedKeys: marks})
	if err != nil {
		return nil, err
	}
	// Intune's client first, before the endpoints: its credential's file is read here, not by config.Load, and one
	// that cannot be read or parsed disables Intune and the endpoints that use it (config.DisableIntune), as a
	// setting Load refuses does, instead of stopping the other endpoints, OCSP and the CRL with it.
	var intuneAPI *intune.Client
	if cfg.Intune.Enabled {
		if intuneAPI, err = intuneClient(cfg, log, opts); err != nil {
			var bad *config.Error
			if !errors.As(err, &bad) {
				return nil, err
			}
			cfg.DisableIntune(bad)
			logFault(log, config.FeatureFault{Feature: config.FeatureIntune, Err: bad})
		}
	}
	var endpoints []*scep.Endpoint
	for _, e := range cfg.Endpoints {
		endpoints = append(endpoints, &scep.Endpoint{Name: e.Name, Challenge: e.Challenge, Secret: []byte(e.Secret),
			Profile: cfg.Profiles[e.Profile], UseCA: e.CACert == "single" || cfg.RAMode == "ca",
			CertRepChain: e.CertRepChain, RenewalWindow: e.RenewalWindow, ReplayWindow: e.ReplayWindow,
			RenewFrom: e.RenewFrom, RenewalMax: e.RenewalMax})
	}
	limiter := ratelimit.New(ratelimit.Bucket{Burst: cfg.SCEPRatePerClient.Count, Per: cfg.SCEPRatePerClient.Per},
		ratelimit.Bucket{Burst: cfg.SCEPRateGlobal.Count, Per: cfg.SCEPRateGlobal.Per}, now)
	d := &deps{cfg: cfg, log: log, store: st, keys: keys, issuer: iss, httpClient: opts.httpClient}

	// Revocation status: the CRL (one CA signature per generation) and OCSP (a delegated responder; no CA-key
	// operation per response), both told about every revocation.
	// Revocations made by other instances reach both through the shared revocation generation (one store read per
	// instance every 30 s at most), so every instance answers within the five-minute bound.
	status := revocation.Status{Store: st}
	// Revocation information lies back as far as the certificates do (AZSCEP_BACKDATE, raised for relying parties
	// whose clocks run behind): a CRL or OCSP response such a party finds "not yet valid" fails the whole check.
	crlOpts := crl.Options{Validity: cfg.CRLValidity, Backdate: cfg.Backdate, Generation: status, Logger: log}
	ocspOpts := ocsp.Options{ResponseValidity: cfg.OCSPValidity, Backdate: cfg.Backdate, Generation: status,
		Recorder: &revocation.ResponderRecords{Store: st}, Logger: log}
	if _, ok := keys.CA().PublicKey.(*rsa.PublicKey); ok {
		// Under an RSA CA the responses are RSA-signed too: relying parties with an RSA-only stack (some network
		// gear) could verify none signed with ECDSA.
		ocspOpts.KeyType = ocsp.KeyRSA2048
	}
	if opts.clock != nil {
		crlOpts.Clock, ocspOpts.Clock = opts.clock, opts.clock
	}
	if d.crl, err = crl.NewPublisher(keys.CA(), keys.CASigner, status, status, crlOpts); err != nil {
		return nil, fmt.Errorf("CRL publisher: %w", err)
	}
	if d.ocsp, err = ocsp.NewResponder(keys.CA(), keys.CASigner, status, ocspOpts); err != nil {
		return nil, fmt.Errorf("OCSP responder: %w", err)
	}
	onRevoked := func(serials []string) {
		d.crl.Invalidate()
		marks.Invalidate()
		for _, s := range serials {
			if n, err := store.ParseSerial(s); err == nil {
				d.ocsp.Invalidate(n)
			}
		}
		if d.ra != nil && revokesCurrentRA(keys, serials) {
			// Not in this call: a revocation the keeper makes itself calls back here with its lock held.
			go replaceRevokedRA(ctx, d.ra, log)
		}
	}
	d.onRevoked = onRevoked

	if raStore != nil {
		var stop func()
		if d.ra, stop, err = raKeeper(ctx, st, raStore, keys, onRevoked, log, opts); err != nil {
			return nil, err
		}
		d.close, started = stop, stop
		if opts.closed != nil {
			d.close = func() { stop(); opts.closed() }
		}
	}

	var challenge scep.Intune
	if cfg.Intune.Enabled {
		d.intune = intuneAPI
		caConfig := intune.CAConfiguration(keys.CA())
		challenge = &scep.IntuneChallenge{Client: intuneAPI, CAConfiguration: caConfig}
		if cfg.Intune.RevocationSync {
			d.sync, err = revocation.NewSyncer(revocation.SyncConfig{Store: st, Intune: intuneAPI, CAConfiguration: caConfig,
				IssuerName: keys.CA().Subject.String(), Batch: cfg.RevocationBatch, Budget: syncBudget,
				OnRevoked: onRevoked, Logger: log,
				// ctx is serve's: it ends with SIGTERM, when no new download may start.
				Stopping: ctx.Done()})
			if err != nil {
				return nil, err
			}
		}
	}
	var refreshRA func(context.Context) (bool, error)
	if d.ra != nil {
		refreshRA = d.ra.Refresh
	}
	sc, err := scep.New(scep.Config{Keys: keys, Issuer: iss, Store: st, Endpoints: endpoints, Intune: challenge,
		CRL: revocation.CRLDER{Publisher: d.crl}, Limiter: limiter, Logger: log, Now: now, RefreshRA: refreshRA})
	if err != nil {
		return nil, err
	}
	d.scep = sc
	if cfg.API.Enabled {
		if err := buildAPI(ctx, cfg, d, opts); err != nil {
			return nil, err
		}
		var syncer admin.Syncer
		if d.sync != nil {
			syncer = d.sync
		}
		// The console signs users in as the API's own app registration (or, locally, as the dev issuer's client).
		userApps := cfg.API.AdminClientApps
		if c := consoleConfig(cfg); c.Mode != console.ModeDisabled {
			userApps = append([]string{strings.ToLower(c.ClientID)}, userApps...)
		}
		acfg := admin.Config{Verifier: d.verifier, Store: st, Sync: syncer, OnRevoked: onRevoked,
			Overview: d.overview, Logger: log, UserClientApps: userApps, AnyUserClientApp: cfg.API.AdminAnyClientApp,
			AllowGuests: cfg.API.AdminAllowGuests, NoDirectory: cfg.DevIssuer}
		if d.directory != nil {
			acfg.Accounts = d.directory
		}
		if d.admin, err = admin.New(acfg); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// intuneClient builds the Intune client with the credential the settings choose. A setting it cannot use (a file
// that cannot be read, a certificate that does not parse) is a *config.Error naming it.
func intuneClient(cfg *config.Config, log *slog.Logger, opts buildOptions) (*intune.Client, error) {
	bad := func(setting string, err error) error { return &config.Error{Setting: setting, Problem: err.Error()} }
	httpClient := opts.httpClient
	if cfg.Intune.CABundle != "" {
		pemData, err := os.ReadFile(cfg.Intune.CABundle)
		if err != nil {
			return nil, bad("AZSCEP_INTUNE_CA_BUNDLE", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, bad("AZSCEP_INTUNE_CA_BUNDLE", errors.New("holds no PEM certificate"))
		}
		httpClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	kind := map[string]intune.CredentialKind{"managedidentity": intune.CredentialManagedIdentity,
		"secret": intune.CredentialClientSecret, "certificate": intune.CredentialClientCertificate}[cfg.Intune.Credential]
	cc := intune.CredentialConfig{Kind: kind, TenantID: cfg.Intune.TenantID, ClientID: cfg.Intune.ClientID,
		ClientSecret: cfg.Intune.ClientSecret, AuthorityHost: cfg.Intune.AuthorityHost, HTTPClient: httpClient,
		DisableInstanceDiscovery: cfg.Intune.AuthorityHost != intune.DefaultAuthorityHost}
	credSetting := "AZSCEP_INTUNE_CREDENTIAL"
	if cfg.Intune.CertPath != "" {
		data, err := os.ReadFile(cfg.Intune.CertPath)
		if err != nil {
			return nil, bad("AZSCEP_INTUNE_CERT_PATH", err)
		}
		cc.Certificate, credSetting = data, "AZSCEP_INTUNE_CERT_PATH"
	}
	cred, err := intune.NewCredential(cc)
	if err != nil {
		return nil, bad(credSetting, err)
	}
	client, err := intune.New(intune.Config{Credential: cred, TenantID: cfg.Intune.TenantID,
		ProviderNameAndVersion: cfg.Intune.Provider + " " + version, GraphBase: cfg.Intune.GraphURL,
		IntuneResource: cfg.Intune.ResourceURL, HTTPClient: httpClient, Logger: log})
	if err != nil {
		return nil, bad("AZSCEP_INTUNE_CREDENTIAL", err)
	}
	return client, nil
}

// buildAPI wires /api/csr: Entra tokens in Azure, the development issuer locally when enabled.
func buildAPI(ctx context.Context, cfg *config.Config, d *deps, opts buildOptions) error {
	var vcfg entra.Config
	var dir *entra.Directory // nil with the development issuer, which has no directory
	if cfg.DevIssuer {
		dev, err := entra.NewDevIssuer(entra.DevIssuerConfig{Dir: filepath.Join(cfg.LocalKeyDir, "dev-issuer"),
			BaseURL: cfg.URL("/api/dev")})
		if err != nil {
			return fmt.Errorf("starting the development token issuer: %w", err)
		}
		d.dev = dev.Handler()
		vcfg = dev.VerifierConfig()
	} else {
		vcfg = entra.Config{TenantID: cfg.API.TenantID, Audiences: cfg.API.Audiences, AuthorityHost: cfg.API.AuthorityHost}
		if dir = opts.directory; dir == nil {
			var err error
			if dir, err = graphDirectory(cfg, opts.graphCredential); err != nil {
				return err
			}
		}
	}
	if d.httpClient != nil {
		vcfg.HTTPClient = d.httpClient
	}
	v, err := entra.NewVerifier(vcfg)
	if err != nil {
		return fmt.Errorf("token verifier: %w", err)
	}
	d.verifier = v
	acfg := csrapi.Config{Verifier: v, Issuer: d.issuer, Chain: d.keys.Chain,
		Profile: cfg.Profiles[cfg.API.Profile], Choices: apiChoices(cfg), RetryWindow: cfg.API.RetryWindow, Logger: d.log,
		ClientApps: cfg.API.ClientApps, AllowGuests: cfg.API.AllowGuests}
	if cfg.DevIssuer {
		acfg.NoDirectory = true
	} else {
		acfg.Ownership, acfg.Accounts, d.directory = dir, dir, dir
	}
	h, err := csrapi.New(acfg)
	if err != nil {
		return err
	}
	d.csr = h
	return nil
}

// loadKeys loads the CA and RA from files (local mode) or from Key Vault and the store (azure mode), and returns
// where the RA is kept (nil in CA-decrypt mode).
func loadKeys(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger, opts buildOptions) (*custody.Keys, custody.RAStore, error) {
	if cfg.Mode == config.ModeLocal {
		keys, err := custody.LoadLocal(cfg.LocalKeyDir, time.Now())
		if err != nil || keys.RACert == nil {
			return keys, nil, err
		}
		return keys, custody.LocalRA{Dir: cfg.LocalKeyDir}, nil
	}
	keys, v, err := loadKeyVaultKeys(ctx, cfg, st, log, opts)
	if err != nil || keys.RACert == nil {
		return keys, nil, err
	}
	return keys, v, nil
}

// raKeeper keeps this instance's RA current: it installs the stored RA and re-reads it every
// custody.RARefreshInterval in the background (one store read; one unwrap only when it changed) until stop is
// called. The hourly timer's Maintain records RA certificates signed before they were recorded (one point read),
// renews and retires RA certificates.
func raKeeper(ctx context.Context, st store.Store, raStore custody.RAStore, keys *custody.Keys, onRevoked func([]string),
	log *slog.Logger, opts buildOptions) (keeper *custody.RAKeeper, stop func(), err error) {
	now := time.Now
	if opts.clock != nil {
		now = opts.clock.Now
	}
	rv := revocation.RARevoker{Store: st, OnRevoked: onRevoked, Now: now}
	keeper = &custody.RAKeeper{Store: raStore, Keys: keys, Recorder: revocation.RARecords(st), Revoke: rv.Revoke,
		Revoked: rv.Revoked, Now: now, Logger: log,
		RecordExisting: func(ctx context.Context, c *x509.Certificate) error {
			return revocation.RecordExisting(ctx, st, c, now())
		}}
	if _, err := keeper.Refresh(ctx); err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		keeper.Run(rctx, custody.RARefreshInterval)
	}()
	return keeper, func() { cancel(); <-done }, nil
}

// revokesCurrentRA reports whether serials name the RA certificate keys serves now.
func revokesCurrentRA(keys *custody.Keys, serials []string) bool {
	cur, _ := keys.RA()
	if cur == nil {
		return false
	}
	for _, s := range serials {
		if n, err := store.ParseSerial(s); err == nil && n.Cmp(cur.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// raReplaceTimeout bounds the replacement of a revoked RA: a certificate signed with the CA key (Key Vault) and the
// stored envelope.
const raReplaceTimeout = 2 * time.Minute

// replaceRevokedRA runs the RA maintenance at once after an admin revoked the current RA certificate, rather than
// at the next hourly timer: a revoked RA (a compromised key, say) would otherwise keep being offered by GetCACert
// and opening envelopes for up to an hour. This instance installs the new RA when it is stored; the others pick it
// up at their next refresh (custody.RARefreshInterval). If it fails, the timer's run replaces it.
func replaceRevokedRA(ctx context.Context, ra *custody.RAKeeper, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, raReplaceTimeout)
	defer cancel()
	lines, err := ra.Maintain(ctx)
	for _, l := range lines {
		log.Info("RA maintenance after a revocation", "result", l)
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("replacing the revoked RA failed; the hourly timer tries again", "err", err)
	}
}

// graphDirectory makes the API's Graph directory: the app's identity (or cred, in tests), the API's tenant, and the
// API's application ID for the app-role re-read.
func graphDirectory(cfg *config.Config, cred azcore.TokenCredential) (*entra.Directory, error) {
	if cred == nil {
		var err error
		if cred, err = azureCredential(cfg); err != nil {
			return nil, err
		}
	}
	// Without the API's client ID no role is re-read: config.WarnRolesNotReread says so at start.
	dir, err := entra.NewDirectory(entra.GraphConfig{Credential: cred, BaseURL: cfg.API.GraphURL,
		TenantID: cfg.API.TenantID, APIAppID: cfg.API.AppID()})
	if err != nil {
		return nil, fmt.Errorf("Graph directory client: %w", err)
	}
	return dir, nil
}
