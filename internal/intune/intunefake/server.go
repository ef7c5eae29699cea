// Package intunefake is a strict, in-process fake of the three services an
// Intune SCEP CA talks to: the Entra ID token endpoint (plus the metadata
// azidentity/MSAL read), Microsoft Graph service discovery, and Intune's
// ScepRequestValidationFEService and PkiConnectorFEService
// (intune-protocol.md §11).
//
// It is strict on purpose: every header, api-version and body member the
// protocol defines is checked, anything off is answered with HTTP 400 (or
// 401/403 for token problems) and the reason is recorded in the journal, so
// a client bug shows up as a failing test rather than as an interop surprise
// in production. Tests drive it through Go methods (RegisterChallenge,
// EnqueueRevocation, InjectFault, Journal, ...); the standalone mode
// (ListenAndServe) exposes the same state over small JSON admin routes.
//
// Everything is served over TLS because azidentity refuses non-https
// authorities; Client returns an *http.Client that trusts the fake.
package intunefake

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Identities and well-known values the fake uses by default.
const (
	DefaultTenantID     = "8c6b7a3e-0f1d-4b1e-9d7a-2f3c4b5a6d7e"
	DefaultClientID     = "5f0e6c2a-9b8d-4e7f-a1b2-c3d4e5f60718"
	DefaultClientSecret = "intunefake-client-secret"
	// IntuneAppID is the "Microsoft Intune" appId whose endpoints Graph lists.
	IntuneAppID = "0000000a-0000-0000-c000-000000000000"
	// GraphAudience and IntuneAudience are the token audiences minted for the
	// Graph and Intune scopes.
	GraphAudience  = "https://graph.microsoft.com"
	IntuneAudience = "https://api.manage.microsoft.com/"
	// RoleScepChallengeProvider is required for every Intune call.
	RoleScepChallengeProvider = "scep_challenge_provider"
	// RoleApplicationReadAll is required for Graph discovery.
	RoleApplicationReadAll = "Application.Read.All"
	// ScepServicePath and PkiServicePath are the service base paths the
	// default discovery answer advertises, mimicking production.
	ScepServicePath = "/RACerts/ScepRequestValidationFEService/Gateway/StatelessScepRequestValidationService"
	PkiServicePath  = "/RACerts/StatelessPkiConnectorService/Gateway/StatelessPkiConnectorService"
	// ScepAPIVersion and PkiAPIVersion are the api-version headers required
	// in strict mode.
	ScepAPIVersion = "2018-02-20"
	PkiAPIVersion  = "5019-05-05"
)

// Route names one endpoint of the fake, for journal filtering, counters and
// fault injection.
type Route string

// Routes served by the fake.
const (
	RouteToken             Route = "token"
	RouteOpenIDConfig      Route = "openid-configuration"
	RouteInstanceDiscovery Route = "instance-discovery"
	RouteDiscovery         Route = "graph-discovery"
	RouteValidate          Route = "validateRequest"
	RouteSuccess           Route = "successNotification"
	RouteFailure           Route = "failureNotification"
	RouteDownload          Route = "downloadRevocationRequests"
	RouteUpload            Route = "uploadRevocationResults"
	RouteAdmin             Route = "admin"
	RouteUnknown           Route = "unknown"
)

// FilterMode selects how downloadRevocationRequests applies issuerName.
type FilterMode int

const (
	// FilterIntuneCompatible truncates to maxRequests first and then keeps
	// items whose caConfiguration equals issuerName (observed behaviour,
	// issue #133).
	FilterIntuneCompatible FilterMode = iota
	// FilterIdeal filters first, then truncates.
	FilterIdeal
)

// Options configures a fake. The zero value is a strict fake with the
// default tenant/client/secret, both roles granted and no cool-down.
type Options struct {
	// TenantID, ClientID and ClientSecret are the only accepted credentials.
	TenantID     string
	ClientID     string
	ClientSecret string
	// ClientCertificate, when set, also accepts client_assertion JWTs
	// (RS256 or PS256) signed by its key.
	ClientCertificate *x509.Certificate
	// Roles granted to the client. nil means both RoleScepChallengeProvider
	// and RoleApplicationReadAll; use an empty non-nil slice for none.
	Roles []string
	// TokenLifetime of minted tokens (expires_in). Default 3599 s. MSAL does
	// not cache tokens with less than 5 minutes left, so a short lifetime
	// makes every call fetch a new token.
	TokenLifetime time.Duration
	// JWTTokens mints HS256 JWT-shaped tokens (aud, tid, appid, roles, exp)
	// instead of opaque random strings.
	JWTTokens bool
	// AcceptSingleSlashScope also accepts https://api.manage.microsoft.com/.default.
	AcceptSingleSlashScope bool
	// Lenient turns off the strict checks that real clients sometimes fail
	// (api-version value, UserAgent, lower-case client-request-id, unknown
	// or wrongly-cased body members, query strings). Values are still recorded.
	Lenient bool
	// MissingRoleStatus is the status for a valid token lacking the role:
	// 401 (default) or 403.
	MissingRoleStatus int
	// RequireValidatedTransaction makes successNotification answer
	// BadCertificateRequestIdInChallenge unless the transaction was
	// validated Success with the same CSR.
	RequireValidatedTransaction bool
	// RejectUnknownRequestContext makes upload answer 400 for a
	// requestContext the fake never handed out (default: record and ignore).
	RejectUnknownRequestContext bool
	// IssuerNameMaxLength, if positive, rejects longer issuerName filters with 400.
	IssuerNameMaxLength int
	// FilterMode selects the issuerName filter semantics.
	FilterMode FilterMode
	// CoolDown: after a download, further downloads return an empty list
	// until it has elapsed, and unacknowledged items are offered again only
	// after it. Zero disables it (real Intune reportedly uses ~60 min).
	CoolDown time.Duration
	// Now is the clock for challenge expiry and the cool-down. Default
	// time.Now; Server.Advance moves it forward. Tokens use the wall clock
	// because MSAL does.
	Now func() time.Time
}

// Server is a running fake. All methods are safe for concurrent use.
type Server struct {
	opts    Options
	tlsCert tls.Certificate
	pool    *x509.CertPool
	client  *http.Client

	mu            sync.Mutex
	base          string // public base URL, no trailing '/'
	ts            *httptest.Server
	extra         []*httptest.Server
	clockOffset   time.Duration
	journal       []*Entry
	counts        map[Route]int
	faults        map[Route][]*Fault
	endpoints     []Endpoint // nil = default answer
	tokens        map[string]tokenInfo
	hmacKey       []byte
	challenges    map[string]Challenge
	validations   map[string]Validation
	issued        []Issued
	failures      []FailureReport
	queue         []*RevocationItem
	byContext     map[string]*RevocationItem
	uploads       []UploadedResult
	lastDownload  time.Time
	downloadedAny bool
}

// NewServer starts a fake on a loopback TLS listener. Close it when done
// (tests: t.Cleanup(s.Close)).
func NewServer(opts Options) (*Server, error) {
	s, err := newServer(opts, nil)
	if err != nil {
		return nil, err
	}
	ts := s.startListener()
	s.mu.Lock()
	s.ts = ts
	s.base = ts.URL
	s.mu.Unlock()
	return s, nil
}

// newServer builds the state; the caller attaches a listener and sets base.
func newServer(opts Options, hostnames []string) (*Server, error) {
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = DefaultClientSecret
	}
	if opts.Roles == nil {
		opts.Roles = []string{RoleScepChallengeProvider, RoleApplicationReadAll}
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = 3599 * time.Second
	}
	if opts.MissingRoleStatus == 0 {
		opts.MissingRoleStatus = http.StatusUnauthorized
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cert, pool, err := generateTLSCert(hostnames)
	if err != nil {
		return nil, err
	}
	key, err := randomBytes(32)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:        opts,
		tlsCert:     cert,
		pool:        pool,
		counts:      map[Route]int{},
		faults:      map[Route][]*Fault{},
		tokens:      map[string]tokenInfo{},
		hmacKey:     key,
		challenges:  map[string]Challenge{},
		validations: map[string]Validation{},
		byContext:   map[string]*RevocationItem{},
	}
	s.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: false,
	}}
	return s, nil
}

// Close stops every listener of the fake.
func (s *Server) Close() {
	s.mu.Lock()
	ts, extra := s.ts, s.extra
	s.extra = nil
	s.mu.Unlock()
	for _, e := range extra {
		e.Close()
	}
	if ts != nil {
		ts.Close()
	}
}

// URL is the fake's base URL (https://127.0.0.1:port), without a trailing slash.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// AuthorityHost is the value for the credential's authority host setting.
func (s *Server) AuthorityHost() string { return s.URL() + "/" }

// GraphBase is the value for the client's Graph base URL setting.
func (s *Server) GraphBase() string { return s.URL() + "/" }

// TenantID, ClientID and ClientSecret return the accepted credentials.
func (s *Server) TenantID() string { return s.opts.TenantID }

// ClientID returns the accepted client_id.
func (s *Server) ClientID() string { return s.opts.ClientID }

// ClientSecret returns the accepted client_secret.
func (s *Server) ClientSecret() string { return s.opts.ClientSecret }

// Client returns an *http.Client that trusts the fake's TLS certificate.
// Use it (or Transport) for both the credential and the Intune client.
func (s *Server) Client() *http.Client { return s.client }

// Transport returns the client's transport, for azcore.ClientOptions.Transport.
func (s *Server) Transport() http.RoundTripper { return s.client.Transport }

// CertPool returns a pool containing the fake's TLS certificate.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// AddListener serves the same fake on another loopback port and returns its
// base URL and a function that closes it. Point discovery at it with
// SetServiceBases and close it to emulate a service moving to another host.
func (s *Server) AddListener() (base string, closeFn func()) {
	ts := s.startListener()
	s.mu.Lock()
	s.extra = append(s.extra, ts)
	s.mu.Unlock()
	var once sync.Once
	return ts.URL, func() { once.Do(ts.Close) }
}

func (s *Server) startListener() *httptest.Server {
	ts := httptest.NewUnstartedServer(s)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{s.tlsCert}, MinVersion: tls.VersionTLS12}
	// Closing a listener under a connected client is a test scenario, not
	// something worth a log line.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	return ts
}

// Now is the fake's clock (Options.Now plus any Advance).
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nowLocked()
}

func (s *Server) nowLocked() time.Time { return s.opts.Now().Add(s.clockOffset) }

// Advance moves the fake's clock forward (challenge expiry, cool-down).
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	s.clockOffset += d
	s.mu.Unlock()
}

// ---- journal ---------------------------------------------------------------

// Entry is one request as the fake saw it.
type Entry struct {
	Seq      int
	Time     time.Time
	Route    Route
	Method   string
	Host     string
	Path     string
	RawQuery string
	Header   http.Header
	// Form holds the token request's form with client_secret and
	// client_assertion replaced by "REDACTED".
	Form url.Values
	// Body is the raw request body (nil for token requests).
	Body []byte
	// JSON is Body parsed with UseNumber, when it is JSON.
	JSON any
	// Status is the HTTP status the fake answered.
	Status int
	// Reject says why the fake refused the request ("" if it did not).
	Reject string
	// Fault is true when an injected fault produced the answer.
	Fault bool
}

// Journal returns a copy of every request recorded so far, in order.
func (s *Server) Journal() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, len(s.journal))
	for i, e := range s.journal {
		out[i] = *e
		out[i].Header = e.Header.Clone()
	}
	return out
}

// Requests returns the journal entries of one route.
func (s *Server) Requests(r Route) []Entry {
	var out []Entry
	for _, e := range s.Journal() {
		if e.Route == r {
			out = append(out, e)
		}
	}
	return out
}

// Count returns how many requests reached route r.
func (s *Server) Count(r Route) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[r]
}

// Rejections returns the journal entries the fake refused, with reasons.
func (s *Server) Rejections() []Entry {
	var out []Entry
	for _, e := range s.Journal() {
		if e.Reject != "" {
			out = append(out, e)
		}
	}
	return out
}

// ResetJournal forgets recorded requests and counters (state is kept).
func (s *Server) ResetJournal() {
	s.mu.Lock()
	s.journal = nil
	s.counts = map[Route]int{}
	s.mu.Unlock()
}

// ---- fault injection -------------------------------------------------------

// Fault replaces or delays the fake's normal answer on one route.
type Fault struct {
	// Status and Body are sent instead of the normal answer when either is
	// set (Status defaults to 200 when only Body is set).
	Status int
	Body   string
	// ContentType of Body. Default application/json.
	ContentType string
	// Header is added to the faulty answer (e.g. Retry-After).
	Header http.Header
	// Delay is waited before answering (or before normal processing when no
	// Status/Body/Drop is set). The wait ends early if the client goes away.
	Delay time.Duration
	// Drop closes the connection without answering (connection reset).
	Drop bool
	// Times is how many requests the fault affects; 0 = until ClearFaults.
	Times int
}

// InjectFault queues f for route r. Faults on a route apply in FIFO order.
func (s *Server) InjectFault(r Route, f Fault) {
	s.mu.Lock()
	ff := f
	s.faults[r] = append(s.faults[r], &ff)
	s.mu.Unlock()
}

// ClearFaults removes every pending fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = map[Route][]*Fault{}
	s.mu.Unlock()
}

func (s *Server) takeFault(r Route) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[r]
	if len(q) == 0 {
		return nil
	}
	f := *q[0]
	if q[0].Times > 0 {
		q[0].Times--
		if q[0].Times == 0 {
			s.faults[r] = q[1:]
		}
	}
	return &f
}

// ---- HTTP plumbing ---------------------------------------------------------

const maxRequestBody = 1 << 20

// ServeHTTP routes a request, records it and applies faults.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, handler := s.route(r)
	e := &Entry{
		Time:     time.Now(),
		Route:    route,
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		s.record(e)
		s.reject(w, e, http.StatusRequestEntityTooLarge, "RequestTooLarge", "request body too large or unreadable")
		return
	}
	if route == RouteToken {
		form, _ := url.ParseQuery(string(body))
		redacted := url.Values{}
		for k, v := range form {
			if k == "client_secret" || k == "client_assertion" {
				redacted[k] = []string{"REDACTED"}
				continue
			}
			redacted[k] = append([]string(nil), v...)
		}
		e.Form = redacted
	} else {
		e.Body = body
		if len(bytes.TrimSpace(body)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			var v any
			if dec.Decode(&v) == nil {
				e.JSON = v
			}
		}
	}
	s.record(e)
	r.Body = io.NopCloser(bytes.NewReader(body))

	if f := s.takeFault(route); f != nil {
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				s.finish(e, 0, "client went away during injected delay", true)
				dropConnection(w)
				return
			case <-t.C:
			}
		}
		switch {
		case f.Drop:
			s.finish(e, 0, "", true)
			if !dropConnection(w) {
				s.reject(w, e, http.StatusInternalServerError, "FakeError", "cannot drop a connection that is not hijackable")
			}
			return
		case f.Status != 0 || f.Body != "":
			status := f.Status
			if status == 0 {
				status = http.StatusOK
			}
			ct := f.ContentType
			if ct == "" {
				ct = "application/json"
			}
			for k, vs := range f.Header {
				for _, v := range vs {
					w.Header().Add(k, v)
				}
			}
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, f.Body)
			s.finish(e, status, "", true)
			return
		}
	}
	handler(w, r, e)
}

// dropConnection closes the connection under w without writing a response
// (so a half-finished request never turns into an empty 200).
func dropConnection(w http.ResponseWriter) bool {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, e *Entry)

func (s *Server) route(r *http.Request) (Route, handlerFunc) {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/oauth2/v2.0/token"):
		return RouteToken, s.handleToken
	case strings.HasSuffix(p, "/v2.0/.well-known/openid-configuration"):
		return RouteOpenIDConfig, s.handleOpenIDConfig
	case p == "/common/discovery/instance":
		return RouteInstanceDiscovery, s.handleInstanceDiscovery
	case strings.HasPrefix(p, "/v1.0/servicePrincipals"):
		return RouteDiscovery, s.handleDiscovery
	case strings.HasSuffix(p, "/ScepActions/validateRequest"):
		return RouteValidate, s.located(scepService, s.handleValidate)
	case strings.HasSuffix(p, "/ScepActions/successNotification"):
		return RouteSuccess, s.located(scepService, s.handleSuccess)
	case strings.HasSuffix(p, "/ScepActions/failureNotification"):
		return RouteFailure, s.located(scepService, s.handleFailure)
	case strings.HasSuffix(p, "/CertificateAuthorityRequests/downloadRevocationRequests"):
		return RouteDownload, s.located(pkiService, s.handleDownload)
	case strings.HasSuffix(p, "/CertificateAuthorityRequests/uploadRevocationResults"):
		return RouteUpload, s.located(pkiService, s.handleUpload)
	case strings.HasPrefix(p, "/fake/"):
		return RouteAdmin, s.handleAdmin
	}
	return RouteUnknown, func(w http.ResponseWriter, r *http.Request, e *Entry) {
		s.reject(w, e, http.StatusNotFound, "NotFound", "no route for "+r.Method+" "+p)
	}
}

const (
	scepService = "ScepRequestValidationFEService"
	pkiService  = "PkiConnectorFEService"
)

// located serves an Intune action only at a location discovery currently
// advertises for service (scheme, host and path prefix, trailing '/'
// ignored); elsewhere it answers 404, as a moved service would. This also
// catches clients that build URLs wrongly (e.g. "//ScepActions").
func (s *Server) located(service string, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, e *Entry) {
		i := strings.LastIndex(r.URL.Path, "/ScepActions/")
		if j := strings.LastIndex(r.URL.Path, "/CertificateAuthorityRequests/"); j > i {
			i = j
		}
		here := "https://" + r.Host + r.URL.Path[:i]
		s.mu.Lock()
		eps, base := s.endpoints, s.base
		s.mu.Unlock()
		if eps == nil {
			eps = DefaultEndpoints(base, base)
		}
		for _, ep := range eps {
			if strings.EqualFold(ep.ProviderName, service) && strings.TrimRight(ep.URI, "/") == here {
				h(w, r, e)
				return
			}
		}
		s.reject(w, e, http.StatusNotFound, "NotFound", service+" is not served at "+here)
	}
}

func (s *Server) record(e *Entry) {
	s.mu.Lock()
	e.Seq = len(s.journal) + 1
	s.journal = append(s.journal, e)
	s.counts[e.Route]++
	s.mu.Unlock()
}

func (s *Server) finish(e *Entry, status int, reject string, fault bool) {
	s.mu.Lock()
	e.Status = status
	e.Reject = reject
	e.Fault = fault
	s.mu.Unlock()
}

// reject answers with an OData-style error body and records why.
func (s *Server) reject(w http.ResponseWriter, e *Entry, status int, code, msg string) {
	s.writeJSON(w, e, status, map[string]any{"error": map[string]any{
		"code":    code,
		"message": msg,
		"innerError": map[string]any{
			"date":              time.Now().UTC().Format(time.RFC3339),
			"request-id":        newUUID(),
			"client-request-id": e.Header.Get("client-request-id"),
		},
	}})
	s.finish(e, status, fmt.Sprintf("%s: %s", code, msg), false)
}

func (s *Server) writeJSON(w http.ResponseWriter, e *Entry, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"InternalError","message":"encoding answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if id := e.Header.Get("client-request-id"); id != "" {
		w.Header().Set("client-request-id", id)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	s.finish(e, status, "", false)
}
