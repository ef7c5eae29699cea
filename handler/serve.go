package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/crl"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/ocsp"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/timer"
)

// serve listens first, so the host's readiness probe on GET / succeeds at once, then builds the dependencies
// (Table Storage, keys) in the background. Until they are ready the routes answer 503 with Retry-After; a
// configuration fault found then (a CA key that does not match its certificate) ends the process with one line.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, opts buildOptions) error {
	scep.Init()
	// What a request logs with its context carries its ID, like its access log line.
	log = slog.New(httpx.LogHandler(log.Handler()))
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Port))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	a := &app{cfg: cfg, log: log, opts: opts, ready: make(chan struct{})}
	srv := &http.Server{
		Handler:           httpx.Edge(log, a),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      240 * time.Second, // the host's own limit for forwarded requests is 230 s
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "mode", string(cfg.Mode))
	for _, f := range cfg.FaultList() {
		if readsReference(cfg, f.Err.Setting) {
			// The service reads the reference itself while it starts (references); app.init logs the fault if
			// that does not work either.
			log.Warn("Key Vault reference left unresolved by App Service; reading it", "feature", f.Feature, "setting", f.Err.Setting)
			continue
		}
		logFault(log, f)
	}
	for _, w := range cfg.Warnings {
		logWarning(log, w)
	}

	fatal := make(chan error, 1)
	background := make(chan struct{}) // closed when init, and readLater after it, have returned
	go func() {
		defer close(background)
		refs, resolved, err := a.init(ctx)
		if err != nil {
			fatal <- err
			return
		}
		a.readLater(ctx, refs, resolved)
	}()
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-fatal:
		shutdown(srv, opts.drain)
		return err
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	}
	shutdown(srv, opts.drain, a.stopDetachedSync)
	a.waitHandOver()
	// Dependencies being built (or rebuilt) when the shutdown came must be closed too: wait for them, briefly.
	select {
	case <-background:
	case <-time.After(20 * time.Second):
	}
	a.close()
	return nil
}

// defaultDrain is how long a stopping process lets requests in flight finish.
const defaultDrain = 20 * time.Second

// handOverWait bounds the wait for a revocation download caught in flight by the stop: the download at its slowest
// and the persist after it (revocation's DownloadWorstCase and PersistTimeout defaults).
const handOverWait = 4 * time.Minute

// waitHandOver keeps a stopping process alive while the revocation sync holds requests Intune has handed over but
// our store does not yet: they would otherwise be lost for an hour at least (reliability.md §5.2). It returns at
// once when no download is running; the platform may still kill the process first, which no wait can prevent.
func (a *app) waitHandOver() {
	cur := a.current.Load()
	if cur == nil || cur.deps.sync == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), handOverWait)
	defer cancel()
	start := time.Now()
	if err := cur.deps.sync.HandedOver(ctx); err != nil {
		a.log.Error("stopping before the revocation requests Intune handed over were stored", "err", err)
		return
	}
	if d := time.Since(start); d > time.Second {
		a.log.Info("waited for the revocation requests Intune handed over to be stored", "duration_ms", d.Milliseconds())
	}
}

// shutdown stops srv, letting requests in flight finish within drain, and gives each of also the same drain.
func shutdown(srv *http.Server, drain time.Duration, also ...func(ctx context.Context)) {
	if drain <= 0 {
		drain = defaultDrain
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	_ = srv.Shutdown(ctx)
	for _, f := range also {
		f(ctx)
	}
}

// stopDetachedSync gives a manual revocation sync run, which goes on detached from the request that started it (no
// request the drain waits for), the drain too, and ends it when the drain ends first, so that it records itself and
// gives the sync lease back rather than being cut by the exit (revocation.Syncer.StopDetached).
func (a *app) stopDetachedSync(ctx context.Context) {
	cur := a.current.Load()
	if cur == nil || cur.deps.sync == nil {
		return
	}
	if err := cur.deps.sync.StopDetached(ctx); err != nil {
		a.log.Warn("a manual revocation sync run was ended by the stop; the next run takes up what it left", "err", err)
	}
}

// app is the running service: the routes are swapped in once the dependencies are ready, and again when a Key
// Vault reference still unreadable then is read later (readLater).
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	opts    buildOptions
	ready   chan struct{}
	current atomic.Pointer[served]
	// waitingFor says why the last start-up attempt failed, for the 503 "starting" answer (startupReason): the
	// first requests after a deployment, and /api/health, tell the operator what the start waits for.
	waitingFor atomic.Pointer[string]

	closeOnce sync.Once
}

// served is one set of dependencies and the routes over them.
type served struct {
	deps *deps
	mux  http.Handler
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" {
		// The host polls GET / for readiness and latency: answer at once, whatever state we are in.
		w.WriteHeader(http.StatusOK)
		return
	}
	select {
	case <-a.ready:
		a.current.Load().mux.ServeHTTP(w, r)
		return
	default:
	}
	wait := a.opts.startWait
	if wait <= 0 {
		wait = defaultStartWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-a.ready:
		a.current.Load().mux.ServeHTTP(w, r)
	case <-t.C:
		detail := "the service is starting"
		if why := a.waitingFor.Load(); why != nil {
			detail += "; it is waiting for " + *why
		}
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusServiceUnavailable, Code: "starting",
			Detail: detail, RetryAfter: 5 * time.Second})
	case <-r.Context().Done():
	}
}

// init builds the dependencies. Outages of the store and of Key Vault — Key Vault's 403 included, which a role
// assignment still spreading gives for minutes, and its throttling during a scale-out — are retried, the service
// staying up and answering 503, instead of exiting into the host's restart limit; faults in the key material are
// fatal.
//
// Key Vault references App Service left verbatim are read again before each attempt (references): at a new
// deployment's first start they wait for their role as long as the keys wait for theirs, and later, when the keys
// are ready at once, a reference that still cannot be read costs one request, not a wait. It returns the references
// still to read, and the values read so far, for readLater.
func (a *app) init(ctx context.Context) ([]string, map[string]string, error) {
	start := time.Now()
	var d *deps
	refs, resolved := pendingReferences(a.cfg), map[string]string{}
	var logged time.Time
	for attempt := 0; ; attempt++ {
		var err error
		a.cfg, refs = references(ctx, a.cfg, refs, resolved, a.log, a.opts)
		d, err = build(ctx, a.cfg, a.log, a.opts)
		if err == nil {
			break
		}
		if !transientAtStart(err) || ctx.Err() != nil {
			return nil, nil, err
		}
		why := startupReason(err)
		// A wait can last days (a subordinate CA awaiting its import): the log says what it waits for when that
		// changes and every ten minutes, not at every 10-second attempt.
		if last := a.waitingFor.Load(); last == nil || *last != why || time.Since(logged) >= 10*time.Minute {
			a.log.Warn("dependencies not reachable yet; retrying", "err", err, "attempt", attempt, "waiting_for", why)
			logged = time.Now()
		}
		a.waitingFor.Store(&why)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(startRetryWait(attempt, err)):
		}
	}
	for _, f := range a.cfg.FaultList() {
		if readsReference(a.cfg, f.Err.Setting) {
			logFault(a.log, f)
		}
	}
	renewExpiredRA(ctx, d, a.log)
	a.current.Store(&served{deps: d, mux: d.unclean(routes(d))})
	close(a.ready)
	a.log.Info("ready", "duration_ms", time.Since(start).Milliseconds(), "ca", d.keys.CA().Subject.String(),
		"ca_sha256", custody.Fingerprint(d.keys.CA()))
	return refs, resolved, nil
}

// renewExpiredRA renews an RA certificate that expired while no instance ran (the hourly timer renews it 30 days
// before its end, but only a running app runs the timer), before the first SCEP client is handed it: the RA
// maintenance the timer would have run, with the app's own identity. Instances starting together may each try;
// the stored RA's ETag lets one store its RA, and the others pick that one up. A renewal that fails leaves the
// expired RA serving and the hourly timer to try again: the CA's other routes need no RA.
func renewExpiredRA(ctx context.Context, d *deps, log *slog.Logger) {
	if d.ra == nil {
		return
	}
	now := time.Now
	if d.ra.Now != nil {
		now = d.ra.Now // the tests' clock
	}
	if !d.keys.RAExpired(now()) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, raMaintenanceTimeout)
	defer cancel()
	lines, err := d.ra.Maintain(ctx)
	for _, l := range lines {
		log.Info("RA maintenance at start", "result", l)
	}
	if err == nil {
		_, err = d.ra.Refresh(ctx) // another instance's RA, when it stored one first
	}
	if err != nil || d.keys.RAExpired(now()) {
		cert, _ := d.keys.RA()
		log.Error("the RA certificate has expired and was not renewed at start; SCEP clients may refuse it until the "+
			"hourly timer renews it (or run `azscep ca rotate-ra`)", "err", err,
			"not_after", cert.NotAfter.UTC().Format(time.RFC3339))
	}
}

// readLater keeps reading the Key Vault references that were still refused (or unreachable) when the service
// became ready: the identity's Key Vault Secrets User role can spread after its key roles, and App Service reads
// a reference again only at a restart or after 24 hours. Once one reads, the dependencies are built again with it
// and swapped in, so its feature (e.g. the static SCEP endpoint) comes up without a restart. The wait doubles from
// referenceRetry up to ten minutes; a try costs one request per reference, and the rebuild after a read what a
// start costs (the CA key read and the RA unwrap; a new CRL and OCSP responder certificate on first use).
func (a *app) readLater(ctx context.Context, refs []string, resolved map[string]string) {
	wait := a.opts.referenceRetry
	if wait <= 0 {
		wait = defaultReferenceRetry
	}
	for len(refs) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Minute)
		// Names read before a rebuild that failed are still in refs: they are read again, and the reload differs.
		cfg, left := references(ctx, a.cfg, refs, resolved, a.log, a.opts)
		if cfg == a.cfg {
			refs = left // nothing new read
			continue
		}
		opts := a.opts
		if cur := a.current.Load(); cur.deps.directory != nil && sameGraph(a.cfg, cfg) {
			opts.directory = cur.deps.directory
		}
		d, err := build(ctx, cfg, a.log, opts)
		if ctx.Err() != nil {
			if err == nil && d.close != nil {
				d.close()
			}
			return
		}
		if err != nil {
			if !transientAtStart(err) {
				a.log.Error("the configuration with the Key Vault references read cannot be served; keeping the running one",
					"err", err)
				return
			}
			a.log.Warn("rebuilding with the Key Vault references read failed; retrying", "err", err)
			continue
		}
		prev := a.cfg
		a.cfg, refs = cfg, left
		old := a.current.Swap(&served{deps: d, mux: d.unclean(routes(d))})
		if old.deps.close != nil {
			old.deps.close() // requests still on the old routes need none of what it stops
		}
		for _, f := range prev.FaultList() {
			if cfg.Fault(f.Feature) == nil {
				a.log.Info("feature enabled by a Key Vault reference read", "feature", f.Feature, "setting", f.Err.Setting)
			}
		}
		a.log.Info("features reloaded with the Key Vault references read", "still_unread", len(left))
	}
}

// sameGraph reports whether two configurations ask Graph the same questions (tenant, Graph URL, the API's
// audiences), so that a rebuild can keep the directory, its caches and its report of refusals.
func sameGraph(a, b *config.Config) bool {
	return a.API.TenantID == b.API.TenantID && a.API.GraphURL == b.API.GraphURL && slices.Equal(a.API.Audiences, b.API.Audiences)
}

// defaultReferenceRetry is readLater's first wait.
const defaultReferenceRetry = 30 * time.Second

// defaultStartWait is how long a request that arrives during start-up waits for it before the 503 "starting":
// a cold start loads the keys in about a second, so the first requests are served rather than refused.
const defaultStartWait = 20 * time.Second

// maxStartRetryAfter bounds the Retry-After a throttling Key Vault can make a start wait between two attempts.
const maxStartRetryAfter = time.Minute

// startRetryWait is the wait before start-up attempt attempt+1 after err: one second more per attempt, up to ten,
// but never shorter than the Retry-After of a Key Vault that throttles the start. Many instances cold-starting
// together (a scale-out) are what gets throttled, and retrying sooner than asked would keep it going.
func startRetryWait(attempt int, err error) time.Duration {
	wait := min(time.Duration(attempt+1)*time.Second, 10*time.Second)
	var throttled *keyvault.ThrottledError
	if errors.As(err, &throttled) {
		wait = max(wait, min(throttled.RetryAfter, maxStartRetryAfter))
	}
	return wait
}

// startupReason names what a failed start-up attempt waits for, for clients and the operator's health probe. It
// is a classification, never the error's text: Key Vault's and Table Storage's messages name the identity, the
// vault and the keys, which an anonymous caller has no business learning. The log line has the error itself.
func startupReason(err error) string {
	var re *azcore.ResponseError
	refused := errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden)
	var credErr *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &credErr):
		return "a token for the app's managed identity, which the platform's identity endpoint refuses (if that lasts, " +
			"AZURE_CLIENT_ID is not the client ID of an identity assigned to the app)"
	case errors.Is(err, custody.ErrNotInitialized):
		return "the CA, which is not initialised (run `azscep ca init`, or `azscep ca import` for a subordinate CA)"
	case errors.Is(err, keyvault.ErrFirewall):
		// Before ErrForbidden, which it also matches: a role assignment the operator waits for would never fix it.
		return "Key Vault, whose firewall refuses the app's network address (no role assignment fixes that: allow " +
			"the app's outbound addresses, its virtual network or a private endpoint in the vault's networking settings)"
	case errors.Is(err, keyvault.ErrForbidden):
		return "Key Vault, which refuses the app's identity (a role assignment can take 10 minutes to apply)"
	case errors.Is(err, keyvault.ErrThrottled):
		return "Key Vault, which is throttling the app"
	case errors.Is(err, keyvault.ErrUnavailable):
		return "Key Vault, which does not answer"
	case errors.Is(err, store.ErrUnavailable) && refused:
		return "Table Storage, which refuses the app's identity (a role assignment can take 10 minutes to apply)"
	case errors.Is(err, store.ErrUnavailable):
		return "Table Storage, which does not answer"
	}
	return "its dependencies"
}

// transientAtStart reports whether a start-up failure may pass by itself: the store or Key Vault unreachable,
// throttled, or refusing a role that is still being applied.
//
// A CA not initialised yet waits too: a deployment with AZSCEP_SKIP_CA_INIT, or a subordinate CA, is provisioned
// before the operator runs `ca init` or `ca import`, and the service should come up once they have, not exit into
// the host's restart limit and need a restart after it.
func transientAtStart(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, keyvault.ErrUnavailable) ||
		errors.Is(err, keyvault.ErrThrottled) || errors.Is(err, keyvault.ErrForbidden) ||
		errors.Is(err, custody.ErrNotInitialized)
}

func (a *app) close() {
	a.closeOnce.Do(func() {
		if cur := a.current.Load(); cur != nil && cur.deps.close != nil {
			cur.deps.close()
		}
	})
}

// deps is everything the routes use.
type deps struct {
	cfg    *config.Config
	log    *slog.Logger
	store  store.Store
	keys   *custody.Keys
	issuer *issuance.Issuer
	scep   *scep.Server
	crl    *crl.Publisher
	ocsp   *ocsp.Responder
	ra     *custody.RAKeeper  // nil in CA-decrypt mode
	sync   *revocation.Syncer // nil when Intune is not configured
	intune *intune.Client     // nil when Intune is not configured
	admin  http.Handler       // nil when the API is not configured
	csr    http.Handler       // nil when the API is not configured
	dev    http.Handler       // the local development token issuer (local mode only)
	// onRevoked tells this instance's CRL and OCSP caches about revocations it made.
	onRevoked func(serials []string)
	// verifier authenticates Entra bearer tokens for /api/csr and the admin API.
	verifier *entra.Verifier
	// directory re-reads callers' accounts (users, service principals) and device ownership in Graph; nil with
	// the development issuer.
	directory  *entra.Directory
	httpClient *http.Client // tests: trust a fake's TLS certificate
	close      func()
}

func routes(d *deps) *http.ServeMux {
	mux := http.NewServeMux()
	// The POST routes whose body is the message answer 411 to a body the host would drop (httpx.RequireLength).
	mux.Handle("/api/scep/", httpx.RequireLength(false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/api/scep/"), "/")
		if f := d.cfg.Fault(config.EndpointFeature(name)); f != nil {
			featureDisabled(w, r, "SCEP endpoint "+strings.ToLower(name), f)
			return
		}
		d.scep.ServeHTTP(w, r)
	})))
	mux.HandleFunc("/api/ca", d.serveCA)
	mux.HandleFunc("/api/health", d.serveHealth)
	mux.Handle("/api/csr", httpx.RequireLength(true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.csr == nil {
			if f := d.cfg.Fault(config.FeatureAPI); f != nil {
				featureDisabled(w, r, "REST enrollment", f)
				return
			}
			httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "api_disabled",
				Detail: "REST enrollment is not configured (set AZSCEP_API_TENANT_ID)"})
			return
		}
		d.csr.ServeHTTP(w, r)
	})))
	mux.Handle("/api/crl", d.crlHandler())
	mux.Handle("/api/ocsp", d.ocspHandler())
	mux.Handle("/api/ocsp/", d.ocspHandler())
	admin := func(w http.ResponseWriter, r *http.Request) {
		if d.admin == nil {
			if f := d.cfg.Fault(config.FeatureAPI); f != nil {
				featureDisabled(w, r, "the admin API", f)
				return
			}
			httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "api_disabled",
				Detail: "the admin API is not configured (set AZSCEP_API_TENANT_ID)"})
			return
		}
		d.admin.ServeHTTP(w, r)
	}
	mux.HandleFunc("/api/certificates", admin)
	mux.HandleFunc("/api/certificates/", admin)
	mux.Handle("/api/console/", consoleHandler(d)) // the certificate console (internal/console)
	mux.Handle("/revocation-sync", hostInvocation(timer.Handler("timer", d.log, d.runSync)))
	if d.dev != nil && d.cfg.Mode == config.ModeLocal {
		mux.Handle("/api/dev/", d.dev)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "not_found", Detail: "no such route"})
	})
	return mux
}

// featureDisabled answers for a feature a setting problem disabled (config.Config.Faults): 503, naming the
// setting, so that the operator sees the cause from the client side too. The problem text never holds a value.
func featureDisabled(w http.ResponseWriter, r *http.Request, what string, f *config.Error) {
	httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusServiceUnavailable, Code: "feature_disabled",
		Detail: what + " is disabled until its setting is fixed: " + f.Error()})
}

// serveCA answers /api/ca: the CA certificate in DER (the AIA caIssuers URL), or the chain as PEM on request.
func (d *deps) serveCA(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		httpx.MethodNotAllowed(w, r, http.MethodGet)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	// The answer depends on Accept and caches may keep it: say so, or a shared cache that stored a PEM answer
	// hands it to the AIA fetches of relying parties, which read DER (RFC 5280 §4.2.2.1).
	w.Header().Set("Vary", "Accept")
	if httpx.Prefers(r.Header.Values("Accept"), "application/x-pem-file", "application/pkix-cert") ||
		r.URL.Query().Get("format") == "pem" {
		httpx.WriteBody(w, "application/x-pem-file", custody.EncodePEM(d.keys.Chain...))
		return
	}
	httpx.WriteBody(w, "application/pkix-cert", d.keys.CA().Raw)
}

// serveHealth reports liveness and dependency status without secrets.
func (d *deps) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		httpx.MethodNotAllowed(w, r, http.MethodGet)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	type check struct {
		Status string `json:"status"`
		Error  string `json:"error,omitempty"`
	}
	body := struct {
		Status string           `json:"status"`
		Checks map[string]check `json:"checks"`
		CA     string           `json:"ca"`
		Mode   string           `json:"mode"`
		// Revocation lists what the Entra sweeps passed over (revocation.ListPassedOver), when they have: no
		// degradation of the service (enrollment, the CRL and OCSP answer as ever, and later runs ask about them
		// again), so it makes no 503 a probe would pull the instance for, but an operator sees it.
		Revocation *passedOverHealth `json:"revocation,omitempty"`
	}{Status: "ok", Checks: map[string]check{}, CA: d.keys.CA().Subject.String(), Mode: string(d.cfg.Mode)}
	body.Checks["ca"] = check{Status: "ok"}
	for _, f := range d.cfg.FaultList() {
		body.Status = "degraded"
		body.Checks[f.Feature] = check{Status: "disabled", Error: f.Err.Error()}
	}
	if d.directory != nil {
		// Graph refuses the managed identity calls that a permission allows, and has allowed none since: the tokens
		// those calls check get 503 until the permission is granted (and a token with it is served).
		if err := d.directory.WrongTenant(); err != nil {
			body.Status = "degraded"
			body.Checks["graph"] = check{Status: "wrong_tenant", Error: err.Error() + ": the managed identity reads " +
				"Graph in its own tenant, so AZSCEP_API_TENANT_ID must be the app's tenant"}
		} else if refused := d.directory.Refused(); len(refused) > 0 {
			var what []string
			for _, r := range refused {
				what = append(what, refusal(r.Permission, r.Status, r.Since))
			}
			body.Status = "degraded"
			body.Checks["graph"] = check{Status: "refused", Error: "Microsoft Graph refuses the managed identity: " +
				strings.Join(what, ", ") + "; grant the permissions with infra/scripts/grant-intune.sh (the platform " +
				"may serve a token without them for up to 24 hours)"}
		}
	}
	if d.intune != nil {
		// Intune (or Graph, at its discovery) refuses the identity, and has answered nothing since: every Intune
		// enrollment fails (a SCEP FAILURE) until the permission is granted.
		if refused := d.intune.Refused(); len(refused) > 0 {
			var what []string
			for _, r := range refused {
				what = append(what, refusal(r.Service+" "+r.Operation, r.Status, r.Since))
			}
			body.Status = "degraded"
			body.Checks["intune"] = check{Status: "refused", Error: "Intune refuses the managed identity: " +
				strings.Join(what, ", ") + "; grant scep_challenge_provider (and Application.Read.All for the " +
				"service discovery) with infra/scripts/grant-intune.sh"}
		}
	}
	if k, ok := d.keys.CASigner.(interface{ Refused() *keyvault.Refusal }); ok {
		// Key Vault refuses the CA key's operations, and has carried out none since: every enrollment is answered
		// 503 until an operator acts, which nothing else that a probe sees would say. Only the codes: Key Vault's
		// messages name the identity and the caller's address.
		if r := k.Refused(); r != nil {
			body.Status = "degraded"
			body.Checks["keyvault"] = check{Status: "refused", Error: "Key Vault refuses the CA key: " +
				refusal(r.Op+" "+r.Code, r.Status, r.Since) + "; " + refusalRemedy(r)}
		}
	}
	if err := d.store.Ping(ctx); err != nil {
		body.Status = "degraded"
		body.Checks["store"] = check{Status: "unavailable", Error: "table storage did not answer"}
		d.log.Warn("health: store unavailable", "err", err)
	} else {
		body.Checks["store"] = check{Status: "ok"}
		body.Revocation = d.passedOverHealth(ctx)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if body.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}

// passedOverHealth is /api/health's account of the certificates the Entra sweeps passed over and ask about again:
// how many, since when the oldest, and the next re-ask. Serials only in the logs: the probe needs no role.
type passedOverHealth struct {
	PassedOver int       `json:"passedOver"`
	Oldest     time.Time `json:"oldest"`
	NextTry    time.Time `json:"nextTry"`
}

// passedOverHealth reads the list of passed-over records, nil when it is empty or cannot be read (the store's own
// check says when it is down).
func (d *deps) passedOverHealth(ctx context.Context) *passedOverHealth {
	list, err := revocation.ListPassedOver(ctx, d.store)
	if err != nil {
		d.log.Warn("health: reading the Entra sweeps' passed-over certificates", "err", err)
		return nil
	}
	if len(list) == 0 {
		return nil
	}
	h := &passedOverHealth{PassedOver: len(list), Oldest: list[0].Since.UTC(), NextTry: list[0].Next.UTC()}
	for _, p := range list {
		if p.Next.Before(h.NextTry) {
			h.NextTry = p.Next.UTC()
		}
	}
	return h
}

// refusalRemedy is what an operator does about Key Vault's refusal r, by its code.
func refusalRemedy(r *keyvault.Refusal) string {
	switch {
	case r.Code == "ForbiddenByFirewall":
		return "allow the app's outbound addresses, its virtual network or a private endpoint in the vault's networking settings"
	case r.Status == http.StatusNotFound:
		return "the key was deleted: recover it (az keyvault key recover)"
	}
	return "check the app identity's role on the vault, and that the CA key version is enabled, unexpired and permits the operation"
}

// refusal is how /api/health names one refusal of the identity: what is refused, its status and since when.
func refusal(what string, status int, since time.Time) string {
	return fmt.Sprintf("%s (%d since %s)", what, status, since.UTC().Format(time.RFC3339))
}

// unclean sends OCSP GET requests straight to the responder: their base64 path may contain "//", which
// http.ServeMux would clean and redirect. In local mode every route answers only requests addressed to a
// loopback name: the development token issuer mints any role to whoever asks from this machine, and a web page
// in the developer's browser must not become such a caller by DNS rebinding.
func (d *deps) unclean(mux *http.ServeMux) http.Handler {
	ocspGET := d.ocspHandler()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/ocsp/") {
			ocspGET.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	if d.cfg.Mode == config.ModeLocal {
		h = httpx.LoopbackHostOnly(h)
	}
	return h
}

// hostInvocation admits to a non-HTTP function's route only what the Functions host sends there: its JSON envelope
// from a plain HTTP client. The timer route runs RA maintenance, an Intune revocation cycle and a CRL signature for
// whoever reaches the port, and in local mode that includes every web page open in the developer's browser: its
// form posts and no-cors fetches reach 127.0.0.1 with a loopback Host, which LoopbackHostOnly admits. Browsers mark
// their requests (Origin on every POST, Sec-Fetch-Site) and cannot send a JSON content type across origins without
// a preflight, which this route never grants; the host sends neither mark and always JSON (azure-functions.md §1.5).
func hostInvocation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
			httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusForbidden, Code: "browser_request",
				Detail: "this route is for the Functions host's invocations, not for browsers"})
			return
		}
		if r.Method == http.MethodPost {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
					Detail: "the invocation must be application/json"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (d *deps) crlHandler() http.Handler {
	if d.crl == nil {
		return http.NotFoundHandler()
	}
	return crl.Handler(d.crl)
}

func (d *deps) ocspHandler() http.Handler {
	if d.ocsp == nil {
		return http.NotFoundHandler()
	}
	return httpx.RequireLength(false, ocsp.Handler(d.ocsp))
}

// The hourly timer's plan inside host.json's functionTimeout (timer.FunctionTimeout): each step has a bound, and
// the sync gets what is left (syncBudget). RA maintenance comes first: it is short, and a sync slowed down by
// Intune must not keep the RA from being renewed hour after hour.
const (
	// timerMargin is kept free for the host: starting the invocation, our answer, clock differences.
	timerMargin = time.Minute
	// raMaintenanceTimeout bounds RA maintenance (a renewal is one Key Vault key, one signature, a few store
	// writes); a renewal cut short is completed by the next run, as after a crash.
	raMaintenanceTimeout = time.Minute
	// interruptedSweepTimeout bounds the sweep for interrupted revocations; the next one goes on where it stopped.
	interruptedSweepTimeout = time.Minute
	// compromisedSweepTimeout bounds the revocation of the other certificates of keys reported compromised; the
	// next run goes on with what is left.
	compromisedSweepTimeout = 30 * time.Second
	// accountSweepTimeout bounds the revocation of the certificates of Entra accounts disabled or deleted: Graph's
	// users delta pages and one scan of the REST certificates. A sweep cut short keeps its link and is read again.
	// Only accountSweepReserve of it is set aside in the plan: the rest is what the sync, which mostly ends long
	// before its budget, leaves (accountSweepLimit).
	accountSweepTimeout = time.Minute
	accountSweepReserve = 10 * time.Second
	// crlRefreshTimeout bounds the CRL refresh: one read of the revocation index and at most one Key Vault
	// signature.
	crlRefreshTimeout = 30 * time.Second
	// pendingSweepReserve is kept for the stale-pending report, the last step, which may also use whatever the
	// steps before it left: its query scans the certs partition, which a large table takes a while to do.
	pendingSweepReserve = 30 * time.Second
	// backlogPruneTimeout bounds the deletion of expired per-key backlogs (issuance.Issuer.PruneBacklogs), taken from
	// what the steps before it left over pendingSweepReserve, as the account sweep's extra time is: none of it is
	// set aside in the plan, whose sync budget a download and its persist just fit. The enrollment path leaves one
	// backlog per key enrolled through Intune, so a fleet of 20,000 Intune enrollments an hour leaves some 20,000 a
	// run: 200 transactions of 100 deletes, some 10 to 20 s in Azure (a partition serves 2,000 entities a second),
	// which the minute leaves room for, and for catching up after a run the sync left no time. Leftovers wait for
	// the next run; an expired backlog counts for nothing meanwhile.
	backlogPruneTimeout = time.Minute
	// backlogPruneMax is how many expired backlogs one run deletes at most: two and a half hours of such a fleet,
	// so that a run after one the sync left no time catches up, and a bound on what one run lists and deletes.
	backlogPruneMax = 50_000
)

// syncBudget is the revocation sync's Budget: what the timer's other steps and the run's own overrun
// (revocation.Syncer.Overrun with the default Intune client) leave of functionTimeout.
const syncBudget = timer.FunctionTimeout - timerMargin - raMaintenanceTimeout - interruptedSweepTimeout -
	compromisedSweepTimeout - accountSweepReserve - crlRefreshTimeout - pendingSweepReserve - revocation.DefaultUploadWorstCase - revocation.SyncStoreReserve

// runSync is the hourly timer: RA maintenance, one Intune revocation cycle, the interrupted-revocation sweep, the
// revocation of compromised keys' other certificates and of the certificates of Entra accounts and devices that
// left, the CRL refresh, the pruning of expired key backlogs and the pending-record report, all under one
// deadline short of functionTimeout, so that the host never kills the invocation (which would lose its Logs) and
// each step ends by its own bound rather than at the kill.
func (d *deps) runSync(ctx context.Context, info timer.Info) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timer.FunctionTimeout-timerMargin)
	defer cancel()
	var lines []string
	if d.ra != nil {
		// Renew 30 days before expiry, retire the previous RA after its overlap.
		rctx, cancel := context.WithTimeout(ctx, raMaintenanceTimeout)
		raLines, raErr := d.ra.Maintain(rctx)
		cancel()
		lines = append(lines, raLines...)
		if raErr != nil {
			d.log.Warn("RA maintenance failed", "err", raErr)
			lines = append(lines, "RA maintenance failed: "+raErr.Error())
		}
	}
	var err error
	switch {
	case d.sync == nil && d.cfg.Fault(config.FeatureIntune) != nil:
		err = fmt.Errorf("Intune is disabled, no revocation sync: %w", d.cfg.Fault(config.FeatureIntune))
	case d.sync == nil:
		lines = append(lines, "Intune is not configured; no revocation sync")
	default:
		// A hard end for the sync too: its own clock keeps it within Budget + Overrun, this cuts what a slow
		// store would drag past it. A download and its persist end within Budget, so this never cuts one.
		sctx, cancel := context.WithTimeout(ctx, d.sync.Budget()+d.sync.Overrun())
		var run store.SyncRun
		run, err = d.sync.Run(sctx, "timer")
		cancel()
		if errors.Is(err, revocation.ErrRunning) {
			lines, err = append(lines, "another revocation sync run holds the lease; skipped"), nil
			break
		}
		if err != nil && run.Finished.IsZero() {
			// It did not start (the lease or its start record could not be written): no counts to report, and no
			// run of that ID to look up.
			lines = append(lines, "revocation sync not started: "+err.Error())
			break
		}
		lines = append(lines, fmt.Sprintf("revocation sync %s: resumed=%d downloaded=%d foreign=%d revoked=%d not_found=%d failed=%d uploaded=%d past_due=%t",
			run.ID, run.Resumed, run.Downloaded, run.Foreign, run.Revoked, run.NotFound, run.Failed, run.Uploaded, info.IsPastDue))
		lines = append(lines, run.Errors...)
	}
	lines = append(lines, d.completeInterrupted(ctx)...)
	lines = append(lines, d.revokeSiblings(ctx)...)
	lines = append(lines, d.revokeDisabledAccounts(ctx)...)
	lines = append(lines, d.refreshCRL(ctx)...)
	lines = append(lines, d.pruneBacklogs(ctx)...)
	return append(lines, d.sweepPending(ctx)...), err
}

// pruneBacklogs deletes the per-key backlogs whose reservations all expired (issuance's bound on certificates
// awaiting Intune's verdict), within backlogPruneTimeout and what the timer's deadline (ctx) leaves over
// pendingSweepReserve.
func (d *deps) pruneBacklogs(ctx context.Context) []string {
	if d.issuer == nil {
		return nil
	}
	limit := backlogPruneTimeout
	if deadline, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(deadline)-pendingSweepReserve)
	}
	if limit <= 0 {
		return []string{"expired key backlogs left for the next run: no time left"}
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	n, err := d.issuer.PruneBacklogs(ctx, backlogPruneMax)
	if err != nil {
		d.log.Warn("pruning expired key backlogs failed", "pruned", n, "err", err)
		return []string{fmt.Sprintf("pruned %d expired key backlogs, then failed: %v", n, err)}
	}
	if n == 0 {
		return nil
	}
	return []string{fmt.Sprintf("pruned %d expired key backlogs", n)}
}

// refreshCRL keeps a CRL signed at least every half of its validity (and an hour) even when no relying party asks
// for one. RFC 5280 §3.3 wants a revoked certificate's entry on a CRL issued after the certificate expired, and the
// entry leaves the CRL one validity after notAfter: without the timer, a deployment whose relying parties fetch
// the CRL once a day or less could sign none in that window. A CRL still fresh costs nothing here: Current serves
// it from memory, so an idle deployment pays at most two Key Vault signatures a day (24 h validity).
func (d *deps) refreshCRL(ctx context.Context) []string {
	if d.crl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, crlRefreshTimeout)
	defer cancel()
	c, err := d.crl.Current(ctx)
	if err != nil {
		d.log.Warn("CRL refresh failed", "err", err)
		return []string{"CRL refresh failed: " + err.Error()}
	}
	return []string{fmt.Sprintf("CRL #%s signed %s, next update %s", c.Number,
		c.Signed.UTC().Format(time.RFC3339), c.NextUpdate.UTC().Format(time.RFC3339))}
}

// firstSerials lists the first 20 serials for an invocation's Logs line; the log lines name every one.
func firstSerials(serials []string) string {
	return strings.Join(serials[:min(len(serials), 20)], " ")
}

// completeInterrupted finishes revocations interrupted between their index entry and their record
// (revocation.CompleteInterrupted) from the last revocation.InterruptedWindow.
func (d *deps) completeInterrupted(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, interruptedSweepTimeout)
	defer cancel()
	now := time.Now()
	done, err := revocation.CompleteInterrupted(ctx, d.store, now.Add(-revocation.InterruptedWindow), now)
	for _, rec := range done {
		d.log.Warn("completed an interrupted revocation", "serial", rec.Serial, "revoked_at",
			rec.RevokedAt.UTC().Format(time.RFC3339), "reason", revocation.ReasonName(rec.RevocationReason))
	}
	return d.sweepReport(done, err, "completed %d interrupted revocations", "interrupted-revocation sweep")
}

// revokeSiblings revokes, for keyCompromise, the other certificates of the keys reported compromised in the last
// revocation.SiblingWindow: the report came with one certificate, the key is stolen for all of them.
func (d *deps) revokeSiblings(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, compromisedSweepTimeout)
	defer cancel()
	now := time.Now()
	done, err := revocation.RevokeSiblings(ctx, d.store, now.Add(-revocation.SiblingWindow), now)
	for _, rec := range done {
		d.log.Warn("revoked a certificate whose key was reported compromised", "serial", rec.Serial,
			"subject", rec.Subject, "reference", rec.RevocationRef)
	}
	return d.sweepReport(done, err, "revoked %d certificates whose key was reported compromised", "compromised-key sweep")
}

// revokeDisabledAccounts revokes the /api/csr certificates of Entra accounts disabled or deleted, and of Entra
// devices disabled or deleted, since the last run (revocation.RevokeDisabled: one scan of the certificates for both),
// when the API reads a Graph directory and AZSCEP_API_REVOKE_DISABLED allows it, within accountSweepLimit.
func (d *deps) revokeDisabledAccounts(ctx context.Context) []string {
	if d.directory == nil || !d.cfg.API.RevokeDisabled {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, accountSweepLimit(ctx))
	defer cancel()
	sw := revocation.RevokeDisabled(ctx, d.store, d.directory, time.Now())
	lines := d.deltaSweepReport(sw.Accounts, sw.AccountsErr, "Entra account sweep", "users", "accounts disabled or deleted",
		"revoked a certificate whose Entra account was disabled or deleted")
	lines = append(lines, d.deltaSweepReport(sw.Devices, sw.DevicesErr, "Entra device sweep", "devices",
		"devices disabled or deleted", "revoked a certificate whose Entra device was disabled or deleted")...)
	if sw.ScanLeft {
		lines = append(lines, fmt.Sprintf("Entra sweep: scanned %d pages of /api/csr certificates; the next run goes on where it stopped, reading no delta pages until the scan is done",
			sw.Scanned))
	}
	for _, serial := range sw.Skipped {
		d.log.Error("Entra sweep passed over a certificate: its revocation, or the lookup of its holder, failed in every one of the last runs; later runs ask about it again (/api/health counts them)",
			"serial", serial, "runs", revocation.MaxRecordTries)
	}
	if len(sw.Skipped) > 0 {
		lines = append(lines, fmt.Sprintf("Entra sweep: passed over %d certificates whose revocation or lookup failed %d runs in a row, to be asked about again (see the log): %s",
			len(sw.Skipped), revocation.MaxRecordTries, strings.Join(sw.Skipped, ", ")))
	}
	lines = append(lines, d.reaskReport(sw.Reasked, sw.ReaskErr)...)
	if sw.CheckLeft {
		lines = append(lines, fmt.Sprintf("Entra sweep: asked Graph about the holders of %d pages of /api/csr certificates; the next run goes on with that check where it stopped, reading the delta meanwhile",
			sw.Checked))
	}
	return append(lines, d.ownerCheckReport(sw.Owners, sw.OwnersErr)...)
}

// reaskReport logs what the re-asks of the records passed over in earlier runs did and returns the invocation's
// lines about it: what they revoked, what left the list, and what failed again and when it is asked next.
func (d *deps) reaskReport(rs revocation.ReaskSweep, err error) []string {
	if rs.Asked == 0 && len(rs.Settled) == 0 && err == nil {
		return nil
	}
	for _, rec := range rs.Revoked {
		d.log.Warn("revoked a certificate an Entra sweep had passed over", "serial", rec.Serial, "subject", rec.Subject,
			"requester", rec.Requester, "reference", rec.RevocationRef)
	}
	for _, f := range rs.Failed {
		d.log.Error("Entra sweep: a passed-over certificate failed again; revoke it by serial if its account or device is gone",
			"serial", f.Serial, "scan", f.Scan, "since", f.Since, "failed", f.Failed, "next", f.Next)
	}
	line := fmt.Sprintf("Entra sweep: asked again about %d passed-over certificates, %d settled, %d failed again; %d still listed",
		rs.Asked, len(rs.Settled), len(rs.Failed), rs.Listed)
	if rs.FirstFailure != nil {
		line += fmt.Sprintf(" (first failure: %v)", rs.FirstFailure)
	}
	return append([]string{line}, d.sweepReport(rs.Revoked, err,
		"revoked %d certificates an Entra sweep had passed over", "Entra sweep re-asks")...)
}

// ownerCheckReport logs the self-service device certificates the owner check revoked and returns the invocation's
// lines about it: what it asked, what Graph did not answer, where the cycle stands, and what it revoked or how it
// failed (sweepReport).
func (d *deps) ownerCheckReport(sw revocation.OwnerSweep, err error) []string {
	if sw.Checked == 0 && sw.Pages == 0 && err == nil && !sw.Left {
		return nil
	}
	for _, rec := range sw.Revoked {
		d.log.Warn("revoked a self-service device certificate whose requester no longer owns the device", "serial",
			rec.Serial, "subject", rec.Subject, "requester", rec.Requester, "reference", rec.RevocationRef)
	}
	cycle := "the next run goes on where it stopped"
	if sw.Cycled {
		cycle = "cycle done, the next run begins another"
	}
	line := fmt.Sprintf("Entra device owner check: %d pages of /api/csr certificates, %d owners asked about, %d no longer owners, %d devices Graph no longer has; %s",
		sw.Pages, sw.Checked, sw.NotOwned, sw.Unknown, cycle)
	if sw.Failed > 0 {
		// Nothing is revoked for these: they are asked about again in the next cycle.
		d.log.Warn("Entra device owner check: Graph did not answer", "questions", sw.Failed, "first", sw.FirstFailure)
		line += fmt.Sprintf("; %d questions Graph did not answer revoked nothing (asked again next cycle): %v", sw.Failed,
			sw.FirstFailure)
	}
	for _, serial := range sw.Skipped {
		d.log.Error("Entra device owner check passed over a certificate: its revocation failed in every one of the last runs",
			"serial", serial, "runs", revocation.MaxRecordTries)
	}
	if len(sw.Skipped) > 0 {
		line += fmt.Sprintf("; passed over %d certificates whose revocation failed %d runs in a row: %s", len(sw.Skipped),
			revocation.MaxRecordTries, strings.Join(sw.Skipped, ", "))
	}
	return append([]string{line}, d.sweepReport(sw.Revoked, err,
		"revoked %d self-service device certificates whose requester no longer owns the device", "Entra device owner check")...)
}

// deltaSweepReport logs the records a delta sweep revoked and returns the invocation's lines about it: its pages,
// what it found, the round's state, and what it revoked or how it failed (sweepReport).
func (d *deps) deltaSweepReport(sw revocation.AccountSweep, err error, sweep, set, found, logMsg string) []string {
	for _, rec := range sw.Revoked {
		d.log.Warn(logMsg, "serial", rec.Serial, "subject", rec.Subject, "requester", rec.Requester,
			"reference", rec.RevocationRef)
	}
	round := "enumeration in progress"
	switch {
	case sw.Resumed:
		round = "went on with the scan for the pages an earlier run read"
	case sw.Complete:
		round = "up to date"
	case sw.Pages == 0:
		round = "nothing read"
	}
	if sw.Restarted {
		round += " (Graph had forgotten the saved link: enumerated again)"
	}
	line := fmt.Sprintf("%s: %d %s delta pages, %d %s, %s, link advanced=%t", sweep, sw.Pages, set, sw.Accounts, found,
		round, sw.Saved)
	if sw.Rechecked > 0 {
		line += fmt.Sprintf("; %d %s found gone by an earlier run looked for again", sw.Rechecked, set)
	}
	if sw.LookedUp > 0 {
		line += fmt.Sprintf("; %d %s of certificates the enumeration from scratch did not name asked about one by one, %d no longer in Entra",
			sw.LookedUp, set, sw.Missing)
	}
	if sw.Unmapped > 0 {
		line += fmt.Sprintf("; %d deleted that no record names by object ID (certificates issued before records kept it are not revoked)",
			sw.Unmapped)
	}
	return append([]string{line}, d.sweepReport(sw.Revoked, err, "revoked %d certificates of Entra "+found, sweep)...)
}

// accountSweepLimit is how long the account sweep may run: accountSweepTimeout, cut to what the timer's deadline
// (ctx) leaves after the CRL refresh and the pending report, and never below accountSweepReserve, which the plan
// keeps for it.
func accountSweepLimit(ctx context.Context) time.Duration {
	limit := accountSweepTimeout
	if deadline, ok := ctx.Deadline(); ok {
		limit = min(limit, max(time.Until(deadline)-crlRefreshTimeout-pendingSweepReserve, accountSweepReserve))
	}
	return limit
}

// sweepReport tells this instance's caches of the records a timer sweep revoked, and returns the invocation's lines
// about it: what it did (done, a format with their count), followed by the first serials, and how it failed.
func (d *deps) sweepReport(done []*store.Record, err error, did, sweep string) []string {
	var lines []string
	if len(done) > 0 {
		serials := make([]string, 0, len(done))
		for _, rec := range done {
			serials = append(serials, rec.Serial)
		}
		if d.onRevoked != nil {
			d.onRevoked(serials)
		}
		lines = append(lines, fmt.Sprintf(did, len(done))+": "+firstSerials(serials))
	}
	if err != nil {
		d.log.Warn(sweep+" failed", "err", err)
		lines = append(lines, sweep+" failed: "+err.Error())
	}
	return lines
}

// pendingReportAge is how old a pending record must be before the sweep reports it (the console's "stale").
const pendingReportAge = admin.StalePendingAge

// sweepPending reports pending records older than pendingReportAge (reliability.md §5.1): the request that wrote
// each died between its pending record and the issued update, so a certificate may have been signed. They are
// never dropped; an operator revokes them by serial (POST /api/certificates/{serial}/revoke) if in doubt. A record
// without a planned certificate is an OCSP responder or RA certificate the CA was making for itself: its signature
// is discarded unless the record is completed, so nothing of it can be in use, and it is reported apart (revocation
// refuses it).
func (d *deps) sweepPending(ctx context.Context) []string {
	recs, err := d.store.Pending(ctx, time.Now().Add(-pendingReportAge))
	if err != nil {
		d.log.Warn("pending sweep failed", "err", err)
		return []string{"pending sweep failed: " + err.Error()}
	}
	var revocable, unused []string
	for _, rec := range recs {
		if len(rec.PlannedDER) == 0 {
			unused = append(unused, rec.Serial)
			d.log.Info("stale pending record without a planned certificate: never used", "serial", rec.Serial,
				"source", rec.Source, "created", rec.Created.UTC().Format(time.RFC3339))
			continue
		}
		revocable = append(revocable, rec.Serial)
		d.log.Warn("stale pending record: signature outcome unknown, revocable by serial", "serial", rec.Serial,
			"endpoint", rec.Endpoint, "created", rec.Created.UTC().Format(time.RFC3339))
	}
	var lines []string
	if len(revocable) > 0 {
		lines = append(lines, fmt.Sprintf("%d pending records older than %s (revocable by serial): %s", len(revocable),
			pendingReportAge, firstSerials(revocable)))
	}
	if len(unused) > 0 {
		lines = append(lines, fmt.Sprintf("%d pending records older than %s without a planned certificate (OCSP or RA "+
			"certificates never used; nothing to revoke): %s", len(unused), pendingReportAge,
			firstSerials(unused)))
	}
	return lines
}
