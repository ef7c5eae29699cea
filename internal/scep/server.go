// Package scep is the SCEP server (RFC 8894): the HTTP operations GetCACaps, GetCACert and PKIOperation, the
// PKIMessage wire format (on smallstep/pkcs7, which accepts a remote crypto.Signer/Decrypter), and the
// per-endpoint enrollment rules: static or Intune challenges, renewal, replay, polling. Certificates come from the
// issuance package; this package never touches the CA key.
package scep

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/ratelimit"
	"github.com/azscep/azscep/internal/store"
)

// Init sets smallstep/pkcs7's process-wide algorithms once, before any request: envelopes the library builds in
// this process (the load generator's requests) are AES-256-CBC, not its default DES-CBC — CertReps take the
// request's algorithm instead (CertRep) — and SignedData digests SHA-256 (the default SHA-1 has no Key Vault
// signature algorithm). It also enables the legacy certificate parser so Windows clients, whose signer
// certificates mark the AKI critical, can enroll (reliability.md §3.4).
func Init() {
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
	_ = pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	pkcs7.SetFallbackLegacyX509CertificateParserEnabled(true)
}

// Challenge types of an endpoint.
const (
	ChallengeStatic = "static"
	ChallengeIntune = "intune"
)

// Endpoint is one named SCEP URL, /api/scep/{Name}.
type Endpoint struct {
	Name          string
	Challenge     string // ChallengeStatic or ChallengeIntune
	Secret        []byte // the static challenge
	Profile       *policy.Profile
	UseCA         bool // GetCACert returns only the CA certificate and the CA key decrypts and signs CertReps
	CertRepChain  bool // CertRep carries the CA chain after the issued certificate
	RenewalWindow time.Duration
	// ReplayWindow: a PKCSReq repeating a transaction ID and key within it gets the stored certificate back (if
	// still valid and unrevoked); later it is a new enrollment. 0 means DefaultReplayWindow.
	ReplayWindow time.Duration
	// RenewFrom names the other endpoints whose certificates this endpoint renews; its own it always renews.
	RenewFrom []string
	// RenewalMax bounds a renewal chain, counted from the chain's first issuance; 0 means 3 × the profile's
	// validity.
	RenewalMax time.Duration
}

// DefaultReplayWindow is the replay window of an endpoint that sets none.
const DefaultReplayWindow = 24 * time.Hour

// renewalMax is the endpoint's renewal chain maximum.
func (e *Endpoint) renewalMax() time.Duration {
	if e.RenewalMax > 0 {
		return e.RenewalMax
	}
	return 3 * e.Profile.MaxValidity
}

// renews reports whether e may renew a certificate issued by the endpoint named from.
func (e *Endpoint) renews(from string) bool {
	if strings.EqualFold(from, e.Name) {
		return true
	}
	for _, n := range e.RenewFrom {
		if strings.EqualFold(n, from) {
			return true
		}
	}
	return false
}

// gated reports whether e's certificates may leave only after Intune accepted their successNotification (the
// delivery gate of issuance.Request.Gated): the Intune-challenge endpoints.
func (e *Endpoint) gated() bool { return e.Challenge == ChallengeIntune }

// gatedRecord reports whether rec's certificate was issued behind a delivery gate, from the configuration of the
// endpoint that issued it (GetCert may ask any endpoint for any serial). A SCEP record of an endpoint this server no
// longer has counts as gated: whether it was cannot be known, and refusing it is the safe side.
func (s *Server) gatedRecord(rec *store.Record) bool {
	if rec.Source != store.SourceSCEP {
		return false
	}
	e, ok := s.endpoints[strings.ToLower(rec.Endpoint)]
	return !ok || e.gated()
}

// Intune is the part of the Intune client the SCEP flow needs (validate before signing, notify after).
type Intune interface {
	Validate(ctx context.Context, transactionID string, csrDER []byte) error
	NotifySuccess(ctx context.Context, transactionID string, csrDER []byte, rec *store.Record, cert *x509.Certificate) error
	NotifyFailure(ctx context.Context, transactionID string, csrDER []byte, cause error) error
}

// CRLSource provides the current CRL for GetCRL.
type CRLSource interface {
	CurrentDER(ctx context.Context) ([]byte, error)
}

// Config wires a Server.
type Config struct {
	Keys      *custody.Keys
	Issuer    *issuance.Issuer
	Store     store.Store
	Endpoints []*Endpoint
	Intune    Intune    // required when an endpoint uses the intune challenge
	CRL       CRLSource // optional: GetCRL answers badRequest without it
	// Limiter admits PKIOperations before any work (optional; the handler always sets one).
	Limiter *ratelimit.Limiter
	// RefreshRA re-reads the stored RA (custody.RAKeeper.Refresh) and reports whether it changed; nil in CA-decrypt
	// mode. It is called when an envelope opens with neither the current nor the previous RA, at most once per
	// raRefreshGap: another instance may have rotated the RA and handed its certificate to this client.
	RefreshRA func(ctx context.Context) (bool, error)
	Logger    *slog.Logger
	Now       func() time.Time
}

// raRefreshGap bounds the RA re-reads an envelope no RA opens can cause: junk envelopes cost one store read per
// gap, and a client that encrypted to an RA rotated on another instance waits at most this long.
const raRefreshGap = 10 * time.Second

// Server answers /api/scep/{endpoint}.
type Server struct {
	keys      *custody.Keys
	issuer    *issuance.Issuer
	store     store.Store
	endpoints map[string]*Endpoint
	intune    Intune
	crl       CRLSource
	limit     *ratelimit.Limiter
	strikes   *ratelimit.Strikes // wrong static challenges, per endpoint and client
	log       *slog.Logger
	now       func() time.Time

	refreshRA     func(ctx context.Context) (bool, error)
	raRefreshMu   sync.Mutex
	raRefreshedAt time.Time
}

// New checks the configuration: every endpoint has a profile and what its challenge and identity need.
func New(cfg Config) (*Server, error) {
	if cfg.Keys == nil || cfg.Issuer == nil || cfg.Store == nil {
		return nil, errors.New("scep: keys, issuer and store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{keys: cfg.Keys, issuer: cfg.Issuer, store: cfg.Store, endpoints: map[string]*Endpoint{},
		intune: cfg.Intune, crl: cfg.CRL, limit: cfg.Limiter, strikes: ratelimit.NewStrikes(challengeStrikes, cfg.Now),
		log: cfg.Logger, now: cfg.Now, refreshRA: cfg.RefreshRA}
	for _, ep := range cfg.Endpoints {
		e := *ep // the server keeps its own copy, with defaults filled in
		if e.ReplayWindow <= 0 {
			e.ReplayWindow = DefaultReplayWindow
		}
		if e.Profile == nil {
			return nil, fmt.Errorf("scep: endpoint %s has no profile", e.Name)
		}
		switch e.Challenge {
		case ChallengeStatic:
			if len(e.Secret) < 8 {
				return nil, fmt.Errorf("scep: endpoint %s: static challenge must be at least 8 characters", e.Name)
			}
		case ChallengeIntune:
			if cfg.Intune == nil {
				return nil, fmt.Errorf("scep: endpoint %s uses the intune challenge but Intune is not configured", e.Name)
			}
		default:
			return nil, fmt.Errorf("scep: endpoint %s: unknown challenge type %q", e.Name, e.Challenge)
		}
		if _, _, err := s.identity(&e); err != nil {
			return nil, fmt.Errorf("scep: endpoint %s: %w", e.Name, err)
		}
		s.endpoints[strings.ToLower(e.Name)] = &e
	}
	for _, e := range s.endpoints {
		for _, from := range e.RenewFrom {
			f, ok := s.endpoints[strings.ToLower(from)]
			if !ok {
				return nil, fmt.Errorf("scep: endpoint %s renews certificates of %q, which is not an endpoint", e.Name, from)
			}
			if e.Challenge == ChallengeStatic && f.Challenge == ChallengeIntune {
				return nil, fmt.Errorf("scep: static endpoint %s cannot renew certificates of the intune endpoint %s", e.Name, f.Name)
			}
		}
	}
	return s, nil
}

// identity is the certificate clients encrypt to and the key that opens envelopes and signs CertReps.
func (s *Server) identity(e *Endpoint) (*x509.Certificate, custody.RAKey, error) {
	if e.UseCA {
		// The same checks as CA-decrypt mode: clients encrypt to the CA itself.
		d, err := s.keys.CADecrypter()
		if err != nil {
			return nil, nil, fmt.Errorf("GetCACert cannot return the CA alone: %w", err)
		}
		return s.keys.CA(), d, nil
	}
	// RA() is the live RA: a renewal installed while running (custody.RAKeeper) is used from the next request on.
	cert, key := s.keys.RA()
	if cert == nil {
		return nil, nil, errors.New("no RA certificate; run `azscep ca init` or set the endpoint to cacert=single")
	}
	return cert, key, nil
}

// ServeHTTP routes /api/scep/{endpoint}[/anything] by the `operation` query parameter.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/api/scep/")
	name, _, _ := strings.Cut(rest, "/")
	e, ok := s.endpoints[strings.ToLower(name)]
	if !ok {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "unknown_endpoint",
			Detail: "no SCEP endpoint of that name"})
		return
	}
	op := r.URL.Query().Get("operation")
	switch op {
	case "GetCACaps":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return
		}
		httpx.WriteBody(w, "text/plain", []byte(caps))
	case "GetCACert":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return
		}
		s.getCACert(w, r, e)
	case "PKIOperation":
		s.pkiOperation(w, r, e)
	case "":
		plainError(w, http.StatusBadRequest, "missing operation")
	default:
		plainError(w, http.StatusBadRequest, "unknown operation")
	}
}

// caps advertises only what the server wants used (RFC 8894 §7: GetCACaps is unauthenticated, so anything
// weaker would invite a downgrade).
const caps = "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nSCEPStandard\nRenewal\n"

func (s *Server) getCACert(w http.ResponseWriter, r *http.Request, e *Endpoint) {
	if e.UseCA && len(s.keys.Chain) == 1 {
		httpx.WriteBody(w, "application/x-x509-ca-cert", s.keys.CA().Raw)
		return
	}
	cert, _, _ := s.identity(e)
	certs := []*x509.Certificate{cert}
	for _, c := range s.keys.Chain {
		if c != cert {
			certs = append(certs, c)
		}
	}
	body, err := Degenerate(certs)
	if err != nil {
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	httpx.WriteBody(w, "application/x-x509-ca-ra-cert", body)
}

func (s *Server) pkiOperation(w http.ResponseWriter, r *http.Request, e *Endpoint) {
	// Admission first: everything after this may cost a Key Vault operation or an Intune call.
	client := ratelimit.ClientKey(r)
	if s.limit != nil {
		if d := s.limit.Allow(client); !d.OK {
			w.Header().Set("Retry-After", fmt.Sprint(d.RetryAfterSeconds()))
			if d.Global {
				s.log.DebugContext(r.Context(), "scep instance over its rate limit", "endpoint", e.Name, "client", client)
				plainError(w, http.StatusServiceUnavailable, "too many requests to this instance, retry later")
				return
			}
			s.log.DebugContext(r.Context(), "scep client over its rate limit", "endpoint", e.Name, "client", client)
			plainError(w, http.StatusTooManyRequests, "too many requests, retry later")
			return
		}
	}
	var der []byte
	switch r.Method {
	case http.MethodPost:
		ct := r.Header.Get("Content-Type")
		if mt, _, _ := strings.Cut(ct, ";"); ct != "" && !strings.EqualFold(strings.TrimSpace(mt), "application/x-pki-message") &&
			!strings.EqualFold(strings.TrimSpace(mt), "application/octet-stream") {
			plainError(w, http.StatusUnsupportedMediaType, "PKIOperation body must be application/x-pki-message")
			return
		}
		b, err := httpx.ReadBody(w, r, httpx.MaxBody)
		if errors.Is(err, httpx.ErrTooLarge) {
			s.log.WarnContext(r.Context(), "scep body over cap", "endpoint", e.Name, "content_length", r.ContentLength)
			plainError(w, http.StatusRequestEntityTooLarge, "message too large")
			return
		}
		if err != nil {
			plainError(w, http.StatusBadRequest, "cannot read body")
			return
		}
		der = b
	case http.MethodGet:
		// The same cap as a POST body, on the decoded message; the query is bounded first, before any decoding, by
		// the longest way a message under the cap can be written.
		if len(r.URL.RawQuery) > maxGETQuery {
			s.log.WarnContext(r.Context(), "scep query over cap", "endpoint", e.Name, "query_length", len(r.URL.RawQuery))
			plainError(w, http.StatusRequestEntityTooLarge, "message too large")
			return
		}
		b, err := DecodeGETMessage(r.URL.RawQuery)
		if err != nil {
			plainError(w, http.StatusBadRequest, "message parameter is missing or not base64")
			return
		}
		if len(b) > httpx.MaxBody {
			s.log.WarnContext(r.Context(), "scep message over cap", "endpoint", e.Name, "message_length", len(b))
			plainError(w, http.StatusRequestEntityTooLarge, "message too large")
			return
		}
		der = b
	default:
		httpx.MethodNotAllowed(w, r, http.MethodGet, http.MethodPost)
		return
	}
	if len(der) == 0 {
		plainError(w, http.StatusBadRequest, "empty message")
		return
	}
	msg, err := ParsePKIMessage(der)
	if err != nil {
		s.log.InfoContext(r.Context(), "scep message rejected", "endpoint", e.Name, "err", err)
		plainError(w, http.StatusBadRequest, "malformed PKIMessage")
		return
	}
	if !msg.SignatureValid {
		// No CertRep: signing one may be a Key Vault operation (the CA key signs CertReps in CA mode and on
		// cacert=single endpoints), and a message nobody signed must cost nothing. Its transaction ID and nonce
		// are unauthenticated anyway.
		s.log.InfoContext(r.Context(), "scep message rejected", "endpoint", e.Name, "err", "outer signature does not verify")
		plainError(w, http.StatusBadRequest, "message signature does not verify")
		return
	}
	start := s.now()
	out := s.handle(r.Context(), e, msg, client)
	attrs := []any{"endpoint", e.Name, "transaction_id", msg.TransactionID, "message_type", string(msg.MessageType),
		"duration_ms", s.now().Sub(start).Milliseconds()}
	if out.unavailable > 0 {
		s.log.WarnContext(r.Context(), "scep dependency unavailable", append(attrs, "err", out.err)...)
		w.Header().Set("Retry-After", retryAfterSeconds(out.unavailable))
		plainError(w, http.StatusServiceUnavailable, "temporarily unavailable, retry later")
		return
	}
	if out.internal {
		s.log.ErrorContext(r.Context(), "scep request failed on the server's side", append(attrs, "err", out.err)...)
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	attrs = append(attrs, "pki_status", string(out.status), "fail_info", string(out.failInfo))
	if out.serial != "" {
		attrs = append(attrs, "serial", out.serial, "replayed", out.replayed)
	}
	if out.err != nil {
		attrs = append(attrs, "reason", out.err.Error())
	}
	s.log.InfoContext(r.Context(), "scep pkioperation", attrs...)
	var body []byte
	if out.early != nil {
		<-out.early.done
		body, err = out.early.body, out.early.err
	} else {
		body, err = s.certRep(e, msg, out)
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "building CertRep failed", "endpoint", e.Name, "transaction_id", msg.TransactionID, "err", err)
		d, ok := httpx.Unavailable(err)
		if !ok && errors.Is(err, keyvault.ErrInvalidResponse) {
			// A CertRep signature that came back wrong (the CA key signs CertReps in CA mode): the retry signs anew,
			// and replays whatever was issued.
			d, ok = httpx.DefaultRetryAfter, true
		}
		if ok {
			w.Header().Set("Retry-After", retryAfterSeconds(d))
			plainError(w, http.StatusServiceUnavailable, "temporarily unavailable, retry later")
			return
		}
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	httpx.WriteBody(w, "application/x-pki-message", body)
}

// maxGETBase64 is the base64 length of the largest message httpx.MaxBody allows (padded).
const maxGETBase64 = (httpx.MaxBody + 2) / 3 * 4

// maxGETQuery bounds the raw query of a GET PKIOperation: that base64 with every character URL-escaped (three
// bytes each, as "%2B"), the CRLF line breaks DecodeGETMessage accepts (escaped, every 64 characters) and room for
// the other parameters.
const maxGETQuery = 3*maxGETBase64 + 6*(maxGETBase64/64+1) + 1024

func (s *Server) certRep(e *Endpoint, msg *PKIMessage, out outcome) ([]byte, error) {
	cert, key, err := s.identity(e)
	if err != nil {
		return nil, err
	}
	if p := msg.previousRA; p != nil {
		// The client encrypted to the RA it has cached from GetCACert and may check the CertRep's signer against it.
		cert, key = p.cert, p.key
	}
	o := CertRepOptions{Status: out.status, FailInfo: out.failInfo, SignerCert: cert, SignerKey: key, CRL: out.crl}
	if out.cert != nil {
		o.Certs = []*x509.Certificate{out.cert}
		if e.CertRepChain {
			o.Certs = append(o.Certs, s.keys.Chain...)
		}
	}
	return msg.CertRep(o)
}

// outcome is what one PKIOperation decided.
type outcome struct {
	status      PKIStatus
	failInfo    FailInfo
	cert        *x509.Certificate
	crl         []byte
	serial      string
	replayed    bool
	early       *earlyCertRep // this outcome's CertRep, built while the record was made durable
	err         error         // why, for the log only
	unavailable time.Duration // > 0: answer 503 with this Retry-After instead of a CertRep
	internal    bool          // answer 500 instead of a CertRep: the server failed in a way a retry alone does not mend
}

// retryAfterSeconds renders d as a Retry-After value: whole seconds, rounded up, at least 1. A dependency may ask
// for less than a second (retry-after-ms), and "0" would tell the client to come back at once.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

func fail(info FailInfo, err error) outcome {
	return outcome{status: StatusFailure, failInfo: info, err: err}
}

func plainError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

// staticChallengeOK compares in constant time (the length of the secret may leak; its content does not).
func staticChallengeOK(secret []byte, got string) bool {
	return len(got) > 0 && subtle.ConstantTimeCompare(secret, []byte(got)) == 1
}

// challengeStrikes bounds the wrong static challenges one client (ratelimit.ClientKey) may send one endpoint: ten,
// then one more every six minutes. The PKIOperation rate limit alone would let a client try 120 a minute on
// every instance, which an operator's guessable secret would not survive.
var challengeStrikes = ratelimit.Bucket{Burst: 10, Per: time.Hour}

// checkStaticChallenge compares the challenge of a PKCSReq from client with e's secret. A client that has spent its
// wrong challenges (challengeStrikes) gets the same refusal without a comparison, so that its answers say nothing
// about the challenges it sends until its bucket refills; a right one sent meanwhile is refused too.
func (s *Server) checkStaticChallenge(e *Endpoint, client, got string) error {
	forgive, ok := s.strikes.Take(strings.ToLower(e.Name) + "|" + client)
	if !ok {
		return &policy.Rejection{Code: policy.CodeChallenge,
			Detail: "too many wrong challenges from client " + client + "; this one was not compared"}
	}
	if !staticChallengeOK(e.Secret, got) {
		return &policy.Rejection{Code: policy.CodeChallenge, Detail: "challenge password is wrong"}
	}
	forgive()
	return nil
}

// mayRefreshRA reports whether an envelope no RA opened may re-read the stored RA now (at most once per
// raRefreshGap), and records the read.
func (s *Server) mayRefreshRA() bool {
	if s.refreshRA == nil {
		return false
	}
	s.raRefreshMu.Lock()
	defer s.raRefreshMu.Unlock()
	now := s.now()
	if !s.raRefreshedAt.IsZero() && now.Sub(s.raRefreshedAt) < raRefreshGap {
		return false
	}
	s.raRefreshedAt = now
	return true
}
