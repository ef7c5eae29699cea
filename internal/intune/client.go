// Package intune is the client for Microsoft Intune's third-party SCEP CA
// APIs: challenge validation (ScepActions/validateRequest), issuance
// reporting (successNotification / failureNotification) and the revocation
// queue (downloadRevocationRequests / uploadRevocationResults).
//
// The wire protocol is specified in intune-protocol.md; the section numbers
// quoted in comments refer to it. Create one Client per process and reuse it:
// tokens (cached by the azidentity credential) and the Graph service
// discovery result are kept across calls.
//
// Fail closed: every method returns nil only when Intune positively
// answered Success. Any other outcome — a rejection (*ValidationError), an
// HTTP error, a timeout, a token problem, a malformed answer — is an error,
// and the SCEP path must not release a certificate on error.
package intune

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"

	"github.com/azscep/azscep/internal/ctxtime"
	"github.com/azscep/azscep/internal/transport"
)

// Defaults for Config (intune-protocol.md §2).
const (
	DefaultGraphBase      = "https://graph.microsoft.com/"
	DefaultGraphVersion   = "v1.0"
	DefaultIntuneResource = "https://api.manage.microsoft.com/"
	DefaultIntuneAppID    = "0000000a-0000-0000-c000-000000000000"
	// ScepAPIVersion is the api-version header of the ScepActions calls.
	ScepAPIVersion = "2018-02-20"
	// PkiAPIVersion is the api-version header of the revocation calls. It is
	// not a typo on our side: Microsoft's libraries send exactly this (§5.1).
	PkiAPIVersion = "5019-05-05"
	// DefaultCallTimeout bounds one HTTP attempt (token + discovery + POST).
	DefaultCallTimeout = 30 * time.Second
	// DefaultMaxResponseBytes caps how much of an answer is read.
	DefaultMaxResponseBytes = 4 << 20
)

// Names of the Intune services in the Graph endpoints list (§4.3).
const (
	ServiceScepValidation = "ScepRequestValidationFEService"
	ServicePkiConnector   = "PkiConnectorFEService"
)

// Config configures a Client. Zero values take the documented defaults, so
// only Credential and ProviderNameAndVersion are normally set; the URLs are
// configurable for national clouds and for tests against intunefake.
type Config struct {
	// Credential issues the Graph and Intune access tokens. Build it with
	// NewCredential (managed identity, client secret or certificate); it is
	// expected to cache tokens, as every azidentity credential does.
	Credential azcore.TokenCredential
	// TenantID is only used to label log lines; the credential owns the tenant.
	TenantID string
	// ProviderNameAndVersion identifies this CA to Intune (callerInfo and
	// the UserAgent header), e.g. "azscep/1.2.3". Required.
	ProviderNameAndVersion string

	// GraphBase is the Microsoft Graph base URL. Default DefaultGraphBase.
	GraphBase string
	// GraphVersion is the Graph URL version segment. Default "v1.0".
	GraphVersion string
	// GraphScope overrides the Graph token scope (default GraphBase + ".default").
	GraphScope string
	// IntuneResource is the Intune App ID URI. Default DefaultIntuneResource.
	IntuneResource string
	// IntuneScope overrides the Intune token scope. The default is
	// IntuneResource + "/.default", i.e. the double-slash form
	// "https://api.manage.microsoft.com//.default" Microsoft's libraries send.
	IntuneScope string
	// IntuneAppID is the appId whose Graph endpoints list names the services.
	IntuneAppID string

	// HTTPClient sends Graph and Intune requests. Default: a client with
	// TLS ≥ 1.2 and no overall timeout (CallTimeout bounds each attempt).
	HTTPClient *http.Client
	// CallTimeout bounds one attempt (token, discovery and POST). Default 30 s.
	CallTimeout time.Duration
	// MaxAttempts bounds attempts of the idempotent calls (validateRequest,
	// download) on transport errors, 5xx, 429 and a stale-location 404.
	// Default 3. Notifications and uploads are attempted at most twice: a
	// repeat after a lost answer may double-report, which Intune tolerates.
	MaxAttempts int
	// RetryBackoff is the first pause between attempts; it doubles with
	// jitter and is capped at 2 s. Default 200 ms.
	RetryBackoff time.Duration
	// DiscoveryTTL forces a Graph re-discovery after this long. Default 24 h.
	DiscoveryTTL time.Duration
	// DiscoveryMissRefresh is the minimum interval between re-discoveries
	// triggered by a service missing from the list. Default 5 min.
	DiscoveryMissRefresh time.Duration
	// MaxResponseBytes caps the bytes read from one answer. Default 4 MiB.
	MaxResponseBytes int64

	// Logger receives one line per Graph/Intune HTTP call. Default: discard.
	Logger *slog.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// Client talks to Graph discovery and the two Intune services. It is safe
// for concurrent use; create it once.
type Client struct {
	cred         azcore.TokenCredential
	provider     string
	graphScope   string
	intuneScope  string
	discoveryURL string
	http         *http.Client
	callTimeout  time.Duration
	maxAttempts  int
	backoff      time.Duration
	maxBody      int64
	log          *slog.Logger
	now          func() time.Time
	disco        *discovery
	// serviceDomain and graphHost bound where discovery may send the Intune token (discovery.parse).
	serviceDomain string
	graphHost     string

	refusedMu sync.Mutex
	refused   map[string]Refusal // the refusals in force (Refused), by Refusal.Service
}

// Refusal is Intune, or Graph at discovery, refusing the identity's token: 401 or 403 to every call to that service
// since Since, none answered 2xx. It is what a missing permission (scep_challenge_provider for Intune,
// Application.Read.All for discovery), or a grant that has not reached the token yet, looks like from here.
type Refusal struct {
	Service   string // "intune" or "graph" (discovery)
	Operation string // the last call refused
	Status    int    // its status, 401 or 403
	Since     time.Time
}

// Refused returns the refusals in force, Graph's first: each set by a 401/403 from its service and ended by any 2xx
// answer from it. They reflect only calls the service made; nothing is sent to find out.
func (c *Client) Refused() []Refusal {
	c.refusedMu.Lock()
	defer c.refusedMu.Unlock()
	var out []Refusal
	for _, svc := range []string{"graph", "intune"} {
		if r, ok := c.refused[svc]; ok {
			out = append(out, r)
		}
	}
	return out
}

// noteAnswer keeps Refused's state from an HTTP answer to operation: 401/403 starts (or continues) its service's
// refusal, 2xx ends it, anything else says nothing about the identity's permissions.
func (c *Client) noteAnswer(operation string, status int) {
	svc := "intune"
	if operation == "discovery" {
		svc = "graph"
	}
	c.refusedMu.Lock()
	defer c.refusedMu.Unlock()
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		since := c.now()
		if r, ok := c.refused[svc]; ok {
			since = r.Since
		}
		if c.refused == nil {
			c.refused = map[string]Refusal{}
		}
		c.refused[svc] = Refusal{Service: svc, Operation: operation, Status: status, Since: since}
	case status >= 200 && status <= 299:
		delete(c.refused, svc)
	}
}

// New validates cfg, applies defaults and returns a Client. It performs no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.Credential == nil {
		return nil, fmt.Errorf("%w: Config.Credential is required", ErrInvalidArgument)
	}
	if strings.TrimSpace(cfg.ProviderNameAndVersion) == "" {
		return nil, fmt.Errorf("%w: Config.ProviderNameAndVersion is required", ErrInvalidArgument)
	}
	graphBase := orDefault(cfg.GraphBase, DefaultGraphBase)
	if err := checkHTTPSURL("GraphBase", graphBase); err != nil {
		return nil, err
	}
	if !strings.HasSuffix(graphBase, "/") {
		graphBase += "/"
	}
	resource := orDefault(cfg.IntuneResource, DefaultIntuneResource)
	appID := orDefault(cfg.IntuneAppID, DefaultIntuneAppID)
	if strings.ContainsAny(appID, "/?#'") {
		return nil, fmt.Errorf("%w: IntuneAppID %q", ErrInvalidArgument, appID)
	}
	version := orDefault(cfg.GraphVersion, DefaultGraphVersion)
	c := &Client{
		cred:         cfg.Credential,
		provider:     cfg.ProviderNameAndVersion,
		graphScope:   orDefault(cfg.GraphScope, graphBase+".default"),
		intuneScope:  orDefault(cfg.IntuneScope, resource+"/.default"),
		discoveryURL: graphBase + version + "/servicePrincipals/appId=" + url.PathEscape(appID) + "/endpoints",
		http:         cfg.HTTPClient,
		callTimeout:  orDefaultDuration(cfg.CallTimeout, DefaultCallTimeout),
		maxAttempts:  cfg.MaxAttempts,
		backoff:      orDefaultDuration(cfg.RetryBackoff, 200*time.Millisecond),
		maxBody:      cfg.MaxResponseBytes,
		log:          cfg.Logger,
		now:          cfg.Now,
	}
	if c.http == nil {
		c.http = &http.Client{Transport: defaultTransport()}
	}
	// Never follow a redirect: Go would re-send the POST (the CSR with its challenge) to the new location, with the
	// bearer token when only the scheme or port changes, and take that server's verdict as Intune's. A 3xx is an
	// HTTP error like any other. The copy leaves the caller's client (and the credential's) as it was.
	hc := *c.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = &hc
	c.serviceDomain, c.graphHost = serviceDomain(resource), hostOf(graphBase)
	if c.maxAttempts <= 0 {
		c.maxAttempts = 3
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxResponseBytes
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With(slog.String("component", "intune"))
	if cfg.TenantID != "" {
		c.log = c.log.With(slog.String("tenantId", cfg.TenantID))
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.disco = &discovery{
		c:           c,
		ttl:         orDefaultDuration(cfg.DiscoveryTTL, 24*time.Hour),
		missRefresh: orDefaultDuration(cfg.DiscoveryMissRefresh, 5*time.Minute),
	}
	return c, nil
}

// serviceDomain is the domain the Intune services live under: the resource's host without its "api." label
// ("api.manage.microsoft.com" → "manage.microsoft.com"; the services are "fef.msubNN.manage.microsoft.com"). A
// resource written without it is the domain itself: stripping another label would widen it (to microsoft.com).
func serviceDomain(resource string) string {
	h := strings.TrimSuffix(strings.ToLower(hostOf(resource)), ".")
	if d, ok := strings.CutPrefix(h, "api."); ok && strings.Contains(d, ".") {
		return d
	}
	return h
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func defaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return t
}

func orDefault(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return v
}

func orDefaultDuration(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

func checkHTTPSURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: %s must be an absolute https URL, got %q", ErrInvalidArgument, name, raw)
	}
	return nil
}

// operation describes one of the five Intune actions.
type operation struct {
	name       string // for errors and logs, e.g. "validateRequest"
	service    string // ServiceScepValidation or ServicePkiConnector
	suffix     string // appended to the discovered URI after "/"
	apiVersion string // api-version header
	// idempotent operations may use Config.MaxAttempts; the others
	// (notifications, upload) get at most one extra attempt.
	idempotent bool
}

// OpSuccessNotification is the Operation of an HTTPError or Rejection from NotifySuccess: what the CA tells apart
// when Intune answers the notification itself rather than the request behind it.
const OpSuccessNotification = "successNotification"

var (
	opValidate = operation{"validateRequest", ServiceScepValidation, "ScepActions/validateRequest", ScepAPIVersion, true}
	opSuccess  = operation{OpSuccessNotification, ServiceScepValidation, "ScepActions/successNotification", ScepAPIVersion, false}
	opFailure  = operation{"failureNotification", ServiceScepValidation, "ScepActions/failureNotification", ScepAPIVersion, false}
	opDownload = operation{"downloadRevocationRequests", ServicePkiConnector, "CertificateAuthorityRequests/downloadRevocationRequests", PkiAPIVersion, true}
	opUpload   = operation{"uploadRevocationResults", ServicePkiConnector, "CertificateAuthorityRequests/uploadRevocationResults", PkiAPIVersion, false}
)

// parseFunc interprets a 2xx body. It returns attributes describing the
// answer for the call's log line (e.g. the code) and an error that
// classifies the answer.
type parseFunc func(body []byte, activityID string) (logAttrs []slog.Attr, err error)

// call runs op with bounded retries. Each attempt gets a fresh
// client-request-id, token lookup, discovery lookup and CallTimeout.
func (c *Client) call(ctx context.Context, op operation, txID string, reqBody any, parse parseFunc) error {
	payload, err := json.Marshal(reqBody)
	if err != nil {
		return fmt.Errorf("%w: encoding %s body: %v", ErrInvalidArgument, op.name, err)
	}
	attempts := c.maxAttempts
	if !op.idempotent {
		attempts = min(attempts, 2)
	}
	var (
		lastErr error
		seen404 bool
		pause   = c.backoff
	)
	for attempt := 1; attempt <= attempts; attempt++ {
		var retryAfter time.Duration
		retryAfter, lastErr = c.attempt(ctx, op, txID, attempt, payload, parse)
		if lastErr == nil {
			return nil
		}
		if ctx.Err() != nil || !retryable(lastErr) || attempt == attempts {
			break
		}
		var he *HTTPError
		if errors.As(lastErr, &he) && he.Status == http.StatusNotFound {
			// A 404 means a stale service location; one rediscovery is worth
			// a retry, a second 404 is not.
			if seen404 {
				break
			}
			seen404 = true
		}
		wait := pause + rand.N(pause/2+1)
		if retryAfter > wait {
			wait = retryAfter
		}
		if wait > 2*time.Second {
			wait = 2 * time.Second
		}
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			break
		}
		pause *= 2
	}
	if ctx.Err() != nil && !errors.Is(lastErr, ctx.Err()) {
		lastErr = fmt.Errorf("%w: %w", lastErr, ctx.Err())
	}
	return lastErr
}

// attempt performs one HTTP exchange for op and logs exactly one line.
func (c *Client) attempt(parent context.Context, op operation, txID string, n int, payload []byte, parse parseFunc) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(parent, c.callTimeout)
	defer cancel()
	activityID := uuid.NewString()
	start := time.Now()
	status := 0
	var (
		retryAfter time.Duration
		outcome    []slog.Attr
	)

	err := func() error {
		base, err := c.disco.lookup(ctx, op.service)
		if err != nil {
			return fmt.Errorf("%s: %w", op.name, err)
		}
		token, err := c.token(ctx, c.intuneScope)
		if err != nil {
			return fmt.Errorf("%s: %w", op.name, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+op.suffix, bytes.NewReader(payload))
		if err != nil {
			return fmt.Errorf("%w: %s: building request: %v", ErrInvalidArgument, op.name, err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("client-request-id", activityID)
		req.Header.Set("api-version", op.apiVersion)
		// Microsoft's Java library sends the provider in a header literally
		// named "UserAgent" (§5.1); send it verbatim plus the standard one.
		req.Header["UserAgent"] = []string{c.provider}
		req.Header.Set("User-Agent", c.provider)

		resp, err := c.http.Do(req)
		if err != nil {
			c.transportFailed(parent)
			return c.transportError(parent, op.name, activityID, err)
		}
		defer resp.Body.Close()
		status = resp.StatusCode
		c.noteAnswer(op.name, status)
		body, err := readCapped(resp.Body, c.maxBody)
		if err != nil {
			if errors.Is(err, errTooLarge) {
				return fmt.Errorf("%w: %s: %v (client-request-id %s)", ErrMalformedResponse, op.name, err, activityID)
			}
			return c.transportError(parent, op.name, activityID, err)
		}
		if status < 200 || status > 299 {
			if status == http.StatusNotFound {
				c.disco.invalidate()
			}
			retryAfter = transport.RetryAfter(resp.Header, time.Now())
			return &HTTPError{Operation: op.name, Status: status, ActivityID: activityID, Body: errorSummary(body),
				RetryAfter: retryAfter}
		}
		outcome, err = parse(body, activityID)
		return err
	}()

	attrs := []slog.Attr{
		slog.String("operation", op.name),
		slog.String("clientRequestId", activityID),
		slog.Int("attempt", n),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
	}
	if txID != "" {
		attrs = append(attrs, slog.String("transactionId", txID))
	}
	attrs = append(attrs, outcome...)
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		c.log.LogAttrs(parent, slog.LevelWarn, "intune call failed", attrs...)
	} else {
		c.log.LogAttrs(parent, slog.LevelInfo, "intune call", attrs...)
	}
	return retryAfter, err
}

// transportFailed drops the cached service locations after a connection
// level failure (DNS, refused, reset, timeout), so the next attempt
// rediscovers: the service may have moved to another scale unit (§4.5).
func (c *Client) transportFailed(parent context.Context) {
	if parent.Err() != nil {
		return // the caller gave up; that says nothing about the service
	}
	c.disco.invalidate()
}

func (c *Client) transportError(parent context.Context, opName, activityID string, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("%w: %s: %w (client-request-id %s)", ErrUnavailable, opName, parent.Err(), activityID)
	}
	return fmt.Errorf("%w: %s: %w (client-request-id %s)", ErrUnavailable, opName, err, activityID)
}

// token obtains an access token for scope from the credential, which caches
// it; only a cache miss costs a round trip to Entra.
func (c *Client) token(ctx context.Context, scope string) (string, error) {
	tk, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return "", fmt.Errorf("%w: acquiring token for %s: %w", ErrAuth, scope, err)
	}
	if tk.Token == "" {
		return "", fmt.Errorf("%w: empty token for %s", ErrAuth, scope)
	}
	return tk.Token, nil
}

var errTooLarge = errors.New("response body exceeds the size limit")

func readCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading response body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// errorSummary is what an error answer says, for errors and logs: the error code and message of a Graph or OData
// error body, or only the answer's size. The raw body is never kept, and runs that look like base64 are cut from
// the message: an answer that echoed the request would otherwise carry the CSR, and its challenge password, into
// the logs.
func errorSummary(b []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) == nil {
		for _, name := range []string{"error", "odata.error"} {
			raw, ok := top[name]
			if !ok {
				continue
			}
			var code string
			if json.Unmarshal(raw, &code) == nil {
				return clean(code)
			}
			var e struct {
				Code    string          `json:"code"`
				Message json.RawMessage `json:"message"`
			}
			if json.Unmarshal(raw, &e) != nil {
				break
			}
			var msg string
			if json.Unmarshal(e.Message, &msg) != nil {
				var v struct {
					Value string `json:"value"`
				}
				_ = json.Unmarshal(e.Message, &v)
				msg = v.Value
			}
			if msg == "" {
				return clean(e.Code)
			}
			return clean(e.Code + ": " + msg)
		}
	}
	return fmt.Sprintf("(a %d-byte answer)", len(b))
}

// base64Run is a run long enough to be encoded data rather than words; guidText is one that is a GUID (an
// activity or request ID, worth keeping).
var (
	base64Run = regexp.MustCompile(`[A-Za-z0-9+/=_-]{32,}`)
	guidText  = regexp.MustCompile(`^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$`)
)

// clean makes s a short single line for a log: valid UTF-8, no control characters, no base64 runs, 200 bytes.
func clean(s string) string {
	s = base64Run.ReplaceAllStringFunc(strings.ToValidUTF8(s, "?"), func(run string) string {
		if guidText.MatchString(run) {
			return run
		}
		return "…"
	})
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return strings.TrimSpace(s)
}
