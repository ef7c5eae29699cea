// Package admin is the certificate administration API under /api/certificates: search, get one certificate,
// revoke with an RFC 5280 reason, start the Intune revocation sync by hand and follow it, and list the certificates
// the Entra sweeps passed over. Every call needs an Entra bearer token with the Certificates.Read or
// Certificates.Manage app role; every change (any method but GET) needs Certificates.Manage. Every revocation and
// sync is audited with the caller's identity.
package admin

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// Verifier authenticates callers.
type Verifier interface {
	Verify(ctx context.Context, authorization []string) (*entra.Caller, error)
}

// Syncer starts revocation sync runs (revocation.Syncer).
type Syncer interface {
	// Start takes the sync's lease and records the run as started, then runs it in the background, detached from
	// ctx; done is closed when it has ended and its outcome is recorded. revocation.ErrRunning when another run
	// holds the lease; any other error means the run did not start and nothing was done.
	Start(ctx context.Context, trigger string) (run store.SyncRun, done <-chan struct{}, err error)
	// Limit is the longest a run takes from its start to its final record.
	Limit() time.Duration
}

// Config wires a Handler.
type Config struct {
	Verifier  Verifier
	Store     store.Store
	Sync      Syncer // nil when Intune is not configured
	OnRevoked func(serials []string)
	// Overview builds GET /api/certificates/overview (overview.go); nil answers 404.
	Overview OverviewFunc
	// UserClientApps are the client applications (azp/appid, lower-case) whose delegated (user) tokens are
	// accepted; AnyUserClientApp accepts every client. Entra puts a user's app roles into the token of any client
	// the user or the tenant consented to, so without this list a third-party app an admin once signed in to
	// could revoke certificates as that admin. App-only tokens are not limited: their role was assigned to that
	// very application.
	UserClientApps   []string
	AnyUserClientApp bool
	// AllowGuests admits guest (B2B, external) users (AZSCEP_ADMIN_ALLOW_GUESTS); by default they get 403
	// guest_not_allowed.
	AllowGuests bool
	// Accounts re-reads every caller's account and app roles (entra.RecheckCaller), so an administrator whose
	// account was disabled, or whose sessions were revoked, or a user or application an administrator disabled or
	// took Certificates.Manage from (directly or through a group), cannot revoke certificates with the token it still
	// holds.
	// Required unless NoDirectory.
	Accounts entra.AccountReader
	// NoDirectory trusts a token's account for the token's lifetime instead: only for the local development
	// issuer, which has no directory to ask.
	NoDirectory bool
	Logger      *slog.Logger
	Now         func() time.Time
}

// Problem codes of callers the deployment's restrictions refuse whatever their role.
const (
	// CodeClientApp: a user token obtained by a client application the admin API does not accept.
	CodeClientApp = "client_app_not_allowed"
	// CodeGuest: a guest (B2B, external) account, without AZSCEP_ADMIN_ALLOW_GUESTS.
	CodeGuest = httpx.CodeGuest
	// CodeManageRequired: a change (revoke, sync) by a caller who holds Certificates.Read but not
	// Certificates.Manage (or no longer, as Graph has it now).
	CodeManageRequired = "manage_role_required"
)

// Handler serves /api/certificates.
type Handler struct{ cfg Config }

// New validates cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Verifier == nil || cfg.Store == nil {
		return nil, errors.New("admin: verifier and store are required")
	}
	if cfg.Accounts == nil && !cfg.NoDirectory {
		return nil, errors.New("admin: an account reader is required (NoDirectory only for the development issuer)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{cfg: cfg}, nil
}

// CertificateView is the JSON form of a record (no planned DER; the PEM only for single gets).
type CertificateView struct {
	Serial           string    `json:"serial"`
	Status           string    `json:"status"`
	Subject          string    `json:"subject"`
	SANs             []string  `json:"sans,omitempty"`
	Issuer           string    `json:"issuer"`
	NotBefore        time.Time `json:"notBefore"`
	NotAfter         time.Time `json:"notAfter"`
	SHA1             string    `json:"sha1,omitempty"`
	SHA256           string    `json:"sha256,omitempty"`
	Source           string    `json:"source"`
	Endpoint         string    `json:"endpoint"`
	Profile          string    `json:"profile"`
	Requester        string    `json:"requester,omitempty"`
	DeviceID         string    `json:"deviceId,omitempty"`
	TransactionID    string    `json:"transactionId,omitempty"`
	IntuneNotified   bool      `json:"intuneNotified,omitempty"`
	Withheld         bool      `json:"withheld,omitempty"`
	RevokedAt        time.Time `json:"revokedAt,omitzero"`
	RevocationReason string    `json:"revocationReason,omitempty"`
	RevokedBy        string    `json:"revokedBy,omitempty"`
	// RevocationRef is what the revocation was given to remember it by: the comment of a person's revocation
	// (admin API, CLI), Intune's request context, or why the hourly sweep completed it.
	RevocationRef string    `json:"revocationRef,omitempty"`
	Note          string    `json:"note,omitempty"`
	RenewedFrom   string    `json:"renewedFrom,omitempty"` // serial of the certificate a SCEP renewal was signed with
	RenewedTo     string    `json:"renewedTo,omitempty"`   // serial of the latest renewal this certificate signed
	ChainStarted  time.Time `json:"chainStarted,omitzero"` // first issuance of the renewal chain
	Created       time.Time `json:"created"`
	PEM           string    `json:"pem,omitempty"`
	// AlreadyRevoked is set in a revoke answer when the certificate was revoked before this call, so a client
	// retrying a revoke can tell that its reason was not the one recorded.
	AlreadyRevoked bool `json:"alreadyRevoked,omitempty"`
	// KeyCompromised is set (in a single get and a revoke answer) when the certificate's key is marked compromised:
	// by its own keyCompromise revocation, one asked after another reason was published, or the revocation of
	// another certificate for the same key, which leaves this one valid until it is revoked too.
	KeyCompromised *KeyCompromiseView `json:"keyCompromised,omitempty"`
}

// KeyCompromiseView is the mark of a key reported compromised (store.CompromisedKey): what it changed, from when
// and at whose request.
type KeyCompromiseView struct {
	// Serial is the certificate whose keyCompromise revocation marked the key.
	Serial   string    `json:"serial"`
	By       string    `json:"by,omitempty"`
	MarkedAt time.Time `json:"markedAt"`
}

// keyMark reads the compromise mark of rec's key: nil when it has none, or no key a mark could name.
func (h *Handler) keyMark(ctx context.Context, rec *store.Record) (*KeyCompromiseView, error) {
	key := rec.PublicKey
	if key == "" { // records written without it (RA certificates recorded at start-up): the certificate's
		for _, der := range [][]byte{rec.CertDER, rec.PlannedDER} {
			if c, err := x509.ParseCertificate(der); err == nil {
				key = store.KeyHash(c.PublicKey)
				break
			}
		}
	}
	if !store.ValidKeyHash(key) {
		return nil, nil
	}
	k, err := h.cfg.Store.Compromised(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the compromise mark of %s's key: %w", rec.Serial, err)
	}
	return &KeyCompromiseView{Serial: k.Serial, By: k.By, MarkedAt: k.MarkedAt}, nil
}

// SyncRunView is the JSON form of one revocation sync run: the list of runs, a started run and its status.
type SyncRunView struct {
	ID string `json:"id"`
	// State is running, finished (ran to its end; Errors may name items that failed), failed (stopped short on
	// Error) or interrupted (never finished: its process stopped).
	State      string    `json:"state"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished,omitzero"`
	Trigger    string    `json:"trigger"`
	Resumed    int       `json:"resumed"`
	Downloaded int       `json:"downloaded"`
	Foreign    int       `json:"foreign"`
	Revoked    int       `json:"revoked"`
	NotFound   int       `json:"notFound"`
	Failed     int       `json:"failed"`
	Uploaded   int       `json:"uploaded"`
	Errors     []string  `json:"errors,omitempty"`
	// Error says why a failed run stopped short.
	Error string `json:"error,omitempty"`
}

// The states of a sync run (SyncRunView.State).
const (
	RunRunning     = "running"
	RunFinished    = "finished"
	RunFailed      = "failed"
	RunInterrupted = "interrupted"
)

// runClockSkew allows for the clocks of the instance that started a run and of the one asked about it.
const runClockSkew = time.Minute

func (h *Handler) runView(r store.SyncRun) SyncRunView {
	// Without Intune (any more) no Syncer says how long a run takes: none outlives the sync lease's default lifetime.
	limit := revocation.DefaultLeaseTTL
	if h.cfg.Sync != nil {
		limit = h.cfg.Sync.Limit()
	}
	state := RunFinished
	switch {
	case r.Finished.IsZero() && h.cfg.Now().Before(r.Started.Add(limit+runClockSkew)):
		state = RunRunning
	case r.Finished.IsZero():
		state = RunInterrupted
	case r.Error != "":
		state = RunFailed
	}
	return SyncRunView{ID: r.ID, State: state, Started: r.Started, Finished: r.Finished, Trigger: r.Trigger,
		Resumed: r.Resumed, Downloaded: r.Downloaded, Foreign: r.Foreign, Revoked: r.Revoked, NotFound: r.NotFound,
		Failed: r.Failed, Uploaded: r.Uploaded, Errors: r.Errors, Error: r.Error}
}

func view(r *store.Record, withPEM bool) CertificateView {
	v := CertificateView{Serial: r.Serial, Status: string(r.Status), Subject: r.Subject, SANs: r.SANs, Issuer: r.Issuer,
		NotBefore: r.NotBefore, NotAfter: r.NotAfter, SHA1: r.SHA1, SHA256: r.SHA256, Source: r.Source,
		Endpoint: r.Endpoint, Profile: r.Profile, Requester: r.Requester, DeviceID: r.DeviceID, TransactionID: r.TxID,
		IntuneNotified: r.IntuneNotified, Withheld: r.Withheld, RevokedBy: r.RevokedBy, Note: r.Note, Created: r.Created,
		RenewedFrom: r.RenewedFrom, RenewedTo: r.RenewedTo, ChainStarted: r.ChainStarted}
	if r.Status == store.StatusRevoked {
		v.RevokedAt = r.RevokedAt
		v.RevocationReason = revocation.ReasonName(r.RevocationReason)
		v.RevocationRef = r.RevocationRef
	}
	if withPEM && len(r.CertDER) > 0 {
		v.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.CertDER}))
	}
	return v
}

// ServeHTTP authenticates and authorizes every call before routing it, so an unauthenticated caller learns
// nothing about which serials or routes exist.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	caller, err := h.cfg.Verifier.Verify(r.Context(), r.Header.Values("Authorization"))
	if err == nil {
		err = entra.RequireRole(caller, entra.RoleCertificatesManage, entra.RoleCertificatesRead)
	}
	if err != nil {
		h.authFailure(w, r, err)
		return
	}
	// A guest's sign-in, MFA and offboarding are their home tenant's: a Certificates.Manage role that reaches a
	// group's B2B members must not make them this CA's administrators unless the operator says so.
	if caller.Guest && !h.cfg.AllowGuests {
		h.refuse(w, r, caller, &httpx.Problem{Status: http.StatusForbidden, Code: CodeGuest,
			Detail: "guest accounts may not use the admin API (AZSCEP_ADMIN_ALLOW_GUESTS)"})
		return
	}
	if !caller.IsApp && !h.cfg.AnyUserClientApp && !slices.Contains(h.cfg.UserClientApps, strings.ToLower(caller.AppID)) {
		h.refuse(w, r, caller, &httpx.Problem{Status: http.StatusForbidden, Code: CodeClientApp,
			Detail: "the client application is not allowed to use the admin API for a user (AZSCEP_ADMIN_CLIENT_APPS)"})
		return
	}
	held := heldRoles(caller)
	if !h.cfg.NoDirectory {
		var err error
		if _, held, err = entra.RecheckCaller(r.Context(), h.cfg.Accounts, caller, h.cfg.AllowGuests, adminRoles...); err != nil {
			p := httpx.AccountProblem(err)
			if p == nil {
				h.unavailable(w, r, err)
				return
			}
			msg := "admin caller refused by its account"
			if p.Status == http.StatusServiceUnavailable {
				msg = "admin account check unavailable"
			}
			h.cfg.Logger.WarnContext(r.Context(), msg, "caller", caller.ObjectID, "client_app", caller.AppID, "status", p.Status,
				"code", p.Code, "err", err)
			httpx.WriteProblem(w, r, p)
			return
		}
	}
	canManage := slices.Contains(held, entra.RoleCertificatesManage)
	// Before routing: whatever a route does with a method other than GET, a reader may not do it.
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !canManage {
		h.cfg.Logger.WarnContext(r.Context(), "admin change refused: Certificates.Manage required", "by", who(caller),
			"client_app", caller.AppID, "method", r.Method, "path", r.URL.Path, "roles", held)
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusForbidden, Code: CodeManageRequired,
			Detail: "this change needs the app role " + entra.RoleCertificatesManage + "; " + entra.RoleCertificatesRead + " only reads"})
		return
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/certificates"), "/")
	if rest == "me" {
		if r.Method != http.MethodGet {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return
		}
		writeJSON(w, http.StatusOK, meView(caller, held))
		return
	}
	if h.serveConsoleRoutes(w, r, rest) {
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case rest == "":
		if r.Method != http.MethodGet {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return
		}
		h.search(w, r)
	case rest == "passed-over":
		if r.Method != http.MethodGet {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return
		}
		h.passedOver(w, r)
	case rest == "revocation-sync":
		if r.Method != http.MethodPost {
			httpx.MethodNotAllowed(w, r, http.MethodPost)
			return
		}
		h.sync(w, r, caller)
	case len(parts) == 1:
		if r.Method != http.MethodGet {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return
		}
		h.get(w, r, parts[0])
	case len(parts) == 2 && parts[1] == "revoke":
		if r.Method != http.MethodPost {
			httpx.MethodNotAllowed(w, r, http.MethodPost)
			return
		}
		h.revoke(w, r, caller, parts[0])
	default:
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "not_found", Detail: "no such route"})
	}
}

// PassedOverView is one certificate the Entra sweeps passed over (revocation.ListPassedOver): its revocation, or the
// lookup of its holder, failed revocation.MaxRecordTries runs in a row, and later runs ask about it again.
type PassedOverView struct {
	Serial string `json:"serial"`
	// Scan is the scan that passed it over: round (a delta round), pass (a verifying pass) or owners (the owner
	// check).
	Scan string `json:"scan"`
	// Since is when it was passed over (or, for one an earlier build passed over, when it was listed); Failed how
	// many re-asks failed since, and Next when the next one is due.
	Since  time.Time `json:"since"`
	Failed int       `json:"failed"`
	Next   time.Time `json:"next"`
}

// passedOver answers GET /api/certificates/passed-over: the certificates the Entra sweeps passed over and have not
// settled, the longest listed first, for an operator to look at (and revoke by serial when its account or device is
// gone). One point read; a store that cannot be reached is a 503, a list that does not decode a 500: never an empty list.
func (h *Handler) passedOver(w http.ResponseWriter, r *http.Request) {
	list, err := revocation.ListPassedOver(r.Context(), h.cfg.Store)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	out := struct {
		Items []PassedOverView `json:"items"`
	}{Items: []PassedOverView{}}
	for _, p := range list {
		out.Items = append(out.Items, PassedOverView{Serial: p.Serial, Scan: p.Scan, Since: p.Since.UTC(),
			Failed: p.Failed, Next: p.Next.UTC()})
	}
	writeJSON(w, http.StatusOK, out)
}

// refuse answers p to a caller whose token holds an admin role but whom the deployment's restrictions refuse, and
// logs who it was and through which client application: such a token in a client the operator did not list is what
// a consent-phishing application holding an administrator's roles looks like, and the operator must be able to
// find it (as /api/csr logs its own refusals).
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, caller *entra.Caller, p *httpx.Problem) {
	h.cfg.Logger.WarnContext(r.Context(), "admin caller refused", "by", who(caller), "client_app", caller.AppID, "method", r.Method,
		"path", r.URL.Path, "status", p.Status, "code", p.Code)
	httpx.WriteProblem(w, r, p)
}

func (h *Handler) authFailure(w http.ResponseWriter, r *http.Request, err error) {
	var ae *entra.AuthError
	if errors.As(err, &ae) {
		code := ae.Code
		if code == "" {
			code = "unauthorized"
		}
		// A token for another tenant or audience, an expired or forged one, or one without an admin role is someone
		// trying the admin door: say why it was refused (the cause, never the token), as /api/csr does. A request
		// without credentials has nothing to tell beyond the request line.
		if len(r.Header.Values("Authorization")) > 0 {
			h.cfg.Logger.InfoContext(r.Context(), "admin auth refused", "method", r.Method, "path", r.URL.Path, "status", ae.Status,
				"code", code, "err", err)
		}
		httpx.WriteProblem(w, r, &httpx.Problem{Status: ae.Status, Code: code, Detail: ae.Description,
			Header: http.Header{"WWW-Authenticate": {ae.WWWAuthenticate()}}})
		return
	}
	h.unavailable(w, r, err)
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if d, ok := httpx.Unavailable(err); ok || errors.Is(err, entra.ErrUnavailable) {
		if d == 0 {
			d = httpx.DefaultRetryAfter
		}
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusServiceUnavailable, Code: "unavailable",
			Detail: "a dependency is unavailable; retry later", RetryAfter: d})
		return
	}
	h.cfg.Logger.ErrorContext(r.Context(), "admin request failed", "err", err)
	httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusInternalServerError, Code: "internal_error", Detail: "internal error"})
}

func badRequest(w http.ResponseWriter, r *http.Request, code, detail string) {
	httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusBadRequest, Code: code, Detail: detail})
}

// maxSearchValue bounds each search parameter: longer than any subject, name or continuation token a record has.
const maxSearchValue = 1024

// search answers GET /api/certificates?subject=&name=&device=&requester=&endpoint=&source=&status=&since=&until=
// &limit=&continuation=.
func (h *Handler) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	query := store.Query{Subject: q.Get("subject"), Name: q.Get("name"), DeviceID: q.Get("device"),
		Requester: q.Get("requester"), Endpoint: q.Get("endpoint"), Source: q.Get("source"),
		Status: store.Status(q.Get("status")), Continuation: q.Get("continuation")}
	// Every value becomes a quoted literal in the store's filter; a bound keeps the filter inside what the service
	// accepts (an over-long one is the caller's error, not the service's).
	for _, name := range []string{"subject", "name", "device", "requester", "endpoint", "source", "continuation"} {
		if len(q.Get(name)) > maxSearchValue {
			badRequest(w, r, "bad_query", fmt.Sprintf("%s is longer than %d bytes", name, maxSearchValue))
			return
		}
	}
	switch query.Status {
	case "", store.StatusPending, store.StatusIssued, store.StatusAbandoned, store.StatusRevoked:
	default:
		badRequest(w, r, "bad_status", "status must be pending, issued, abandoned or revoked")
		return
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &query.Since}, {"until", &query.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				badRequest(w, r, "bad_time", p.name+" must be an RFC 3339 time")
				return
			}
			// Table Storage's Edm.DateTime holds UTC times from 1601 to 9999; an offset can carry a time that
			// parses outside them (0000-01-01T00:00:00+01:00), which the service would refuse as a 400 of its own,
			// answered here as if the store were down.
			if y := t.UTC().Year(); y < 1601 || y > 9999 {
				badRequest(w, r, "bad_time", p.name+" must fall between the years 1601 and 9999 (UTC)")
				return
			}
			*p.dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			badRequest(w, r, "bad_limit", "limit must be 1–200")
			return
		}
		query.Limit = n
	}
	page, next, err := h.cfg.Store.Search(r.Context(), query)
	if errors.Is(err, store.ErrNotFound) && query.Continuation != "" {
		badRequest(w, r, "bad_continuation", "continuation token is not valid")
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	out := struct {
		Items        []CertificateView `json:"items"`
		Continuation string            `json:"continuation,omitempty"`
	}{Items: []CertificateView{}, Continuation: next}
	for _, rec := range page {
		out.Items = append(out.Items, view(rec, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, serial string) {
	if store.NormalizeSerial(serial) == "" {
		badRequest(w, r, "bad_serial", "serial must be hexadecimal")
		return
	}
	rec, err := h.cfg.Store.Get(r.Context(), serial)
	if errors.Is(err, store.ErrNotFound) {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "certificate_not_found", Detail: "no certificate with that serial"})
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	v := view(rec, true)
	// Never a view that leaves out a reported compromise: the record alone does not show one reported through
	// another certificate for the key, nor one asked after another reason was published.
	if v.KeyCompromised, err = h.keyMark(r.Context(), rec); err != nil {
		h.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// revoke answers POST /api/certificates/{serial}/revoke with {"reason": "keyCompromise"}.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, caller *entra.Caller, serial string) {
	if store.NormalizeSerial(serial) == "" {
		badRequest(w, r, "bad_serial", "serial must be hexadecimal")
		return
	}
	// The reason is what the CRL publishes and cannot be changed once written: a body the host may have dropped on
	// the way (its length not given) must not turn into "unspecified".
	if !httpx.LengthKnown(r) {
		httpx.WriteLengthRequired(w, r)
		return
	}
	body, err := httpx.ReadBody(w, r, 4<<10)
	if errors.Is(err, httpx.ErrTooLarge) {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large", Detail: "body over 4 KiB"})
		return
	}
	if err != nil {
		badRequest(w, r, "bad_body", "the request body could not be read")
		return
	}
	var req revokeBody
	if len(body) > 0 {
		if req, err = parseRevokeBody(body); err != nil {
			badRequest(w, r, "bad_json", "body must be {\"reason\": \"<RFC 5280 reason>\", \"comment\": \"…\"}: "+err.Error())
			return
		}
	}
	if req.Reason == "" {
		req.Reason = "unspecified"
	}
	reason, err := revocation.ReasonCode(req.Reason)
	if err != nil {
		badRequest(w, r, "bad_reason", err.Error())
		return
	}
	by := "admin:" + who(caller)
	// Detached from the admin's connection: a client that hangs up between the index entry and the record must
	// not leave the CRL saying revoked while OCSP still says good.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), revokeTimeout)
	defer cancel()
	// The client application is part of who acted: with several clients listed (or any), a revocation a
	// consent-phished application made with an administrator's roles must be told apart from the administrator's own.
	outcome, rec, err := revocation.RevokeAudited(ctx, h.cfg.Store, h.cfg.Logger, serial, reason, by, caller.AppID,
		req.Comment, h.cfg.Now())
	// Durable, even when only the final generation bump failed: tell this instance's caches now rather than after
	// the admin's retry. Also when it was revoked already (an earlier call, another instance, Intune, the CLI): this
	// call may have marked its key compromised just now, and bumped the generation in any case, and this instance
	// must refuse that key at once, not within the generation interval; a current RA revoked elsewhere, or whose
	// replacement after an earlier call failed, must be replaced now rather than by the next hourly timer. The
	// other instances follow the bump; this one would too, so the CRL costs no more signatures for it.
	if rec != nil && rec.Status == store.StatusRevoked && h.cfg.OnRevoked != nil {
		h.cfg.OnRevoked([]string{rec.Serial})
	}
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, revocation.ErrNotRevocable):
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "certificate_not_found", Detail: "no revocable certificate with that serial"})
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	v := view(rec, false)
	v.AlreadyRevoked = outcome == revocation.AlreadyRevoked
	// The revocation is done whatever this read says: a failure leaves the mark out of the answer, not the answer.
	if v.KeyCompromised, err = h.keyMark(ctx, rec); err != nil {
		h.cfg.Logger.WarnContext(r.Context(), "revoke answer without the key's compromise mark", "serial", rec.Serial, "err", err)
	}
	writeJSON(w, http.StatusOK, v)
}

// revokeTimeout bounds one revocation once it has started: its store calls, each with its own retries, well
// inside the Functions host's HTTP timeout.
const revokeTimeout = time.Minute

// sync answers POST /api/certificates/revocation-sync: 202 once the run holds the lease and its start is recorded,
// with the run and its status resource in Location. The run goes on detached from the request: the Functions host
// cuts a request after 230 s, and a run may take its whole budget (minutes), so the caller polls the status
// (runStatus), which any instance answers from the run's record.
func (h *Handler) sync(w http.ResponseWriter, r *http.Request, caller *entra.Caller) {
	if h.cfg.Sync == nil {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "sync_disabled", Detail: "Intune is not configured"})
		return
	}
	run, _, err := h.cfg.Sync.Start(r.Context(), "admin")
	if err != nil {
		h.cfg.Logger.InfoContext(r.Context(), "audit: manual revocation sync", "by", who(caller), "client_app", caller.AppID,
			"started", false, "err", err)
	} else {
		h.cfg.Logger.InfoContext(r.Context(), "audit: manual revocation sync", "by", who(caller), "client_app", caller.AppID,
			"started", true, "run", run.ID)
	}
	if errors.Is(err, revocation.ErrRunning) {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusConflict, Code: "sync_running", Detail: err.Error(), RetryAfter: time.Minute})
		return
	}
	if err != nil {
		// The run never started (its lease or its start record could not be written): nothing was done.
		h.unavailable(w, r, err)
		return
	}
	// Not built from r.URL.Path: the route matches with its slashes trimmed, and the status route must be named
	// the one way runStatus answers it.
	w.Header().Set("Location", syncStatusPath+url.PathEscape(run.ID))
	writeJSON(w, http.StatusAccepted, h.runView(run))
}

// syncStatusPath is the path of a sync run's status resource, the run's ID after it.
const syncStatusPath = "/api/certificates/revocation-sync/"

// runStatus answers GET /api/certificates/revocation-sync/{id}: the run's record as it stands, running or ended.
func (h *Handler) runStatus(w http.ResponseWriter, r *http.Request, id string) {
	run, err := h.cfg.Store.RunByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "sync_run_not_found", Detail: "no sync run with that ID"})
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.runView(run))
}

// adminRoles are the roles that admit a caller, the one that grants most first.
var adminRoles = []string{entra.RoleCertificatesManage, entra.RoleCertificatesRead}

// heldRoles are the admin roles the token carries, which is what counts where no directory is asked.
func heldRoles(c *entra.Caller) []string {
	var out []string
	for _, r := range adminRoles {
		if c.HasRole(r) {
			out = append(out, r)
		}
	}
	return out
}

// MeView is GET /api/certificates/me: who the API takes the caller for, and which admin roles it grants now (the
// token's, as Graph still confirms them), so the console offers only what the caller may do.
type MeView struct {
	ObjectID string `json:"objectId"`
	AppID    string `json:"appId,omitempty"` // the client application (azp/appid)
	IsApp    bool   `json:"isApp,omitempty"`
	Name     string `json:"name,omitempty"`
	// Roles are Certificates.Manage and/or Certificates.Read, as held now.
	Roles     []string `json:"roles"`
	CanManage bool     `json:"canManage"`
}

func meView(c *entra.Caller, held []string) MeView {
	return MeView{ObjectID: c.ObjectID, AppID: c.AppID, IsApp: c.IsApp, Name: c.Username,
		Roles: append([]string{}, held...), CanManage: slices.Contains(held, entra.RoleCertificatesManage)}
}

func who(c *entra.Caller) string {
	if c.IsApp {
		return "app:" + c.AppID
	}
	// Display only: the object ID identifies the admin; the name may be a (mutable) preferred_username.
	if c.Username != "" {
		return c.Username + " (" + c.ObjectID + ")"
	}
	return "oid:" + c.ObjectID
}

// revokeBody is the revoke request's JSON.
type revokeBody struct {
	Reason, Comment string
}

// parseRevokeBody reads {"reason": "…", "comment": "…"} strictly: an object of those two string members, each at
// most once and spelled exactly so, and nothing after it. encoding/json alone would match member names in any
// case, keep the last of two, take null for an empty body and ignore what follows the object; a revocation's
// reason is published and cannot be changed, so the request must say it once and plainly.
func parseRevokeBody(body []byte) (revokeBody, error) {
	var out revokeBody
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return out, errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return out, errors.New("malformed JSON")
		}
		name, _ := t.(string)
		if seen[name] {
			return out, fmt.Errorf("member %q twice", name)
		}
		seen[name] = true
		t, err = dec.Token()
		if err != nil {
			return out, errors.New("malformed JSON")
		}
		v, ok := t.(string)
		if !ok {
			return out, fmt.Errorf("member %q must be a string", name)
		}
		switch name {
		case "reason":
			out.Reason = v
		case "comment":
			out.Comment = v
		default:
			return out, fmt.Errorf("unknown member %q", name)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return out, errors.New("malformed JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return out, errors.New("data after the object")
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
