// Package csrapi is the REST enrollment endpoint POST /api/csr (SPEC §4.5): an Entra ID bearer token, a PKCS#10
// request in DER, PEM, base64 or a CMS SignedData wrapper, and the certificate back as DER, a PEM chain or a
// certs-only PKCS#7. Authorisation is by app role; self-service callers may only get certificates bound to
// themselves or to devices they own. Certificates come from the same issuance cycle and records as SCEP.
package csrapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mozpkcs7 "go.mozilla.org/pkcs7"
	"golang.org/x/time/rate"

	"github.com/azscep/azscep/internal/ber"
	"github.com/azscep/azscep/internal/cms"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
)

// Verifier authenticates a caller from the Authorization header values.
type Verifier interface {
	Verify(ctx context.Context, authorization []string) (*entra.Caller, error)
}

// Ownership answers whether a user owns a device, and if so whether it may be certified (an *entra.Directory in
// production): only entra.DeviceOwned grants; the other verdicts say why not. The answer also names the Entra
// device object it read, which the record keeps so that the device's deletion revokes the certificate.
type Ownership interface {
	// Answer answers for a device ID that may be an Entra device ID or an Intune managed-device ID (Entra
	// device first): the question for a device certificate named by its CN alone.
	Answer(ctx context.Context, userObjectID, deviceID string) (entra.DeviceAnswer, error)
	// AnswerManaged answers for the Intune managed device with this ID only, never an Entra device whose
	// deviceId is the same GUID: the question for a certificate carrying IntuneDeviceId://<id>, which relying
	// parties read as an Intune managed-device ID.
	AnswerManaged(ctx context.Context, userObjectID, managedDeviceID string) (entra.DeviceAnswer, error)
}

// Config wires a Handler.
type Config struct {
	// Verifier authenticates every request before anything else is read (an *entra.Verifier in production).
	Verifier Verifier
	// Ownership answers self-service device questions; nil refuses device self-service (fail closed).
	Ownership Ownership
	// Accounts re-reads every caller's account before a certificate is issued, so a token issued before an
	// administrator deleted or disabled the account (a user, or an application's service principal), revoked its
	// sessions or changed its UPN binds nothing.
	// Required unless NoDirectory.
	Accounts entra.AccountReader
	// NoDirectory trusts a token's account for the token's lifetime instead: only for the local development
	// issuer, which has no directory to ask.
	NoDirectory bool
	// Issuer runs the same issuance cycle and records as SCEP.
	Issuer *issuance.Issuer
	// Chain is sent after the leaf in PEM and PKCS#7 answers, issuing CA first.
	Chain []*x509.Certificate
	// Profile is what certificates from this endpoint are built from unless the caller chooses another.
	Profile *policy.Profile
	// Choices are further profiles a CSR.Request.Db caller may choose with ?profile=NAME (self-service callers
	// always get Profile), e.g. a serverAuth profile for the certificate console's server certificates.
	Choices map[string]*policy.Profile
	// RetryWindow is how long the same CSR from the same caller is answered with the stored certificate instead
	// of a new one, so a client that lost the response does not mint duplicates. 0 means no limit.
	RetryWindow time.Duration
	// ClientApps, when not empty, are the only client applications (the token's azp/appid, lower-case) whose
	// tokens are accepted; others get 403 client_app_not_allowed.
	ClientApps []string
	// AllowGuests admits guest (B2B, external) user accounts; by default they get 403 guest_not_allowed.
	AllowGuests bool
	// RatePerCaller limits requests per caller (per second, with a burst of 4×); 0 means 5/s.
	RatePerCaller float64
	// Logger gets one line per refusal and per issuance (never token or key material); nil discards.
	Logger *slog.Logger
}

// Handler serves POST /api/csr.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// New validates cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Verifier == nil || cfg.Issuer == nil || cfg.Profile == nil || len(cfg.Chain) == 0 {
		return nil, errors.New("csrapi: verifier, issuer, profile and chain are required")
	}
	if cfg.Accounts == nil && !cfg.NoDirectory {
		return nil, errors.New("csrapi: an account reader is required (NoDirectory only for the development issuer)")
	}
	if cfg.RatePerCaller <= 0 {
		cfg.RatePerCaller = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger, buckets: map[string]*rate.Limiter{}}, nil
}

// Problem codes specific to this endpoint (policy codes are used as they are).
const (
	// CodeUnauthorized answers a request that carried no bearer credentials at all (RFC 6750 §3.1 sends no
	// error code in the challenge then); rejected tokens carry the RFC 6750 code (invalid_token, …) instead.
	CodeUnauthorized  = "unauthorized"
	CodeMethod        = "method_not_allowed"
	CodeTooLarge      = "request_too_large"
	CodeMediaType     = "unsupported_media_type"
	CodeBadEncoding   = "bad_encoding"
	CodeForbidden     = "forbidden"
	CodeRateLimited   = "rate_limited"
	CodeUnavailable   = "unavailable"
	CodeInProgress    = "in_progress"
	CodeInternal      = "internal_error"
	CodeNotSelf       = "not_bound_to_caller"
	CodeNotOwner      = "device_not_owned"
	CodeNotClientAuth = "self_service_client_auth_only"
	CodeClientApp     = "client_app_not_allowed"
	CodeGuest         = httpx.CodeGuest
	CodeProfile       = "unknown_profile"
	// CodeAccountDisabled: the token's account has been disabled or deleted since the token was issued.
	CodeAccountDisabled = httpx.CodeAccountDisabled
	// CodeSessionsRevoked: the account's sessions were revoked after the token was issued (401: get a new token).
	CodeSessionsRevoked = httpx.CodeSessionsRevoked
	// CodeRoleRemoved: the user or application no longer holds the role its token carries and the request acts on.
	CodeRoleRemoved = httpx.CodeRoleRemoved
	// CodeDeviceRetiring: the caller owns the device, but an administrator has told Intune to retire, wipe or delete
	// it.
	CodeDeviceRetiring = "device_retiring"
)

// ServeHTTP rejects before spending: method, token, role and rate limit come before the body is read, and
// every local check comes before the CA key is used.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		httpx.MethodNotAllowed(w, r, http.MethodPost)
		return
	}
	start := time.Now()
	caller, err := h.cfg.Verifier.Verify(r.Context(), r.Header.Values("Authorization"))
	if err != nil {
		h.authFailure(w, r, err)
		return
	}
	if err := entra.RequireRole(caller, entra.RoleCSRRequestDb, entra.RoleCSRSelfService); err != nil {
		h.authFailure(w, r, err)
		return
	}
	if p := h.admit(caller); p != nil {
		h.log.InfoContext(r.Context(), "csr refused", "caller", callerID(caller), "status", p.Status, "code", p.Code,
			"detail", p.Detail)
		httpx.WriteProblem(w, r, p)
		return
	}
	if ok, wait := h.allow(callerID(caller)); !ok {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
			Detail: "too many requests from this caller", RetryAfter: max(wait, time.Second)})
		return
	}
	der, p := h.readCSR(w, r)
	if p != nil {
		httpx.WriteProblem(w, r, p)
		return
	}
	res, p := h.enroll(r.Context(), caller, der, r.URL.Query().Get("profile"))
	if p != nil {
		h.log.InfoContext(r.Context(), "csr refused", "caller", callerID(caller), "status", p.Status, "code", p.Code,
			"detail", p.Detail)
		httpx.WriteProblem(w, r, p)
		return
	}
	h.log.InfoContext(r.Context(), "csr issued", "caller", callerID(caller), "serial", res.Record.Serial, "replayed", res.Replayed,
		"duration_ms", time.Since(start).Milliseconds())
	h.write(w, r, res)
}

// admit applies the deployment's caller restrictions that hold whatever the role: the client application
// allow-list and the refusal of guest accounts.
func (h *Handler) admit(caller *entra.Caller) *httpx.Problem {
	if len(h.cfg.ClientApps) > 0 && !slices.Contains(h.cfg.ClientApps, strings.ToLower(caller.AppID)) {
		return &httpx.Problem{Status: http.StatusForbidden, Code: CodeClientApp,
			Detail: "the client application is not allowed to request certificates"}
	}
	if caller.Guest && !h.cfg.AllowGuests {
		return &httpx.Problem{Status: http.StatusForbidden, Code: CodeGuest,
			Detail: "guest accounts may not request certificates"}
	}
	return nil
}

func (h *Handler) authFailure(w http.ResponseWriter, r *http.Request, err error) {
	var ae *entra.AuthError
	if errors.As(err, &ae) {
		h.log.InfoContext(r.Context(), "csr auth refused", "status", ae.Status, "err", err)
		p := &httpx.Problem{Status: ae.Status, Code: CodeUnauthorized, Detail: ae.Description}
		if ae.Status == http.StatusForbidden {
			p.Code = CodeForbidden
		}
		if ae.Code != "" {
			p.Code = ae.Code
		}
		p.Header = http.Header{"WWW-Authenticate": {ae.WWWAuthenticate()}}
		httpx.WriteProblem(w, r, p)
		return
	}
	if errors.Is(err, entra.ErrUnavailable) {
		h.log.WarnContext(r.Context(), "csr auth dependency unavailable", "err", err)
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Detail: "token keys cannot be fetched right now", RetryAfter: 30 * time.Second})
		return
	}
	h.log.ErrorContext(r.Context(), "csr auth failed", "err", err)
	httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusInternalServerError, Code: CodeInternal, Detail: "internal error"})
}

// allow takes a token from the caller's bucket, or reports how long until one is available (the Retry-After a
// well-behaved client should honour, rather than a fixed guess).
func (h *Handler) allow(id string) (bool, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, ok := h.buckets[id]
	if !ok {
		if len(h.buckets) > 10000 { // bounded: drop state rather than grow without limit
			h.buckets = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(rate.Limit(h.cfg.RatePerCaller), int(4*h.cfg.RatePerCaller)+1)
		h.buckets[id] = l
	}
	now := time.Now()
	res := l.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now) // a refused request must not consume the token it was refused for
		return false, wait
	}
	return true, 0
}

// readCSR reads the body under the cap and decodes it by content type: DER (application/pkcs10,
// application/octet-stream or none), PEM or base64 text, or CMS SignedData (application/pkcs7-mime) around a CSR.
func (h *Handler) readCSR(w http.ResponseWriter, r *http.Request) ([]byte, *httpx.Problem) {
	mt := ""
	if ct := r.Header.Get("Content-Type"); ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, &httpx.Problem{Status: http.StatusUnsupportedMediaType, Code: CodeMediaType, Detail: "malformed Content-Type"}
		}
	}
	switch mt {
	case "", "application/pkcs10", "application/octet-stream", "application/x-pem-file", "text/plain",
		"application/pkcs7-mime", "application/pkcs7":
	default:
		return nil, &httpx.Problem{Status: http.StatusUnsupportedMediaType, Code: CodeMediaType,
			Detail: "send application/pkcs10 (DER, PEM or base64) or application/pkcs7-mime"}
	}
	body, err := httpx.ReadBody(w, r, httpx.MaxBody)
	if errors.Is(err, httpx.ErrTooLarge) {
		return nil, &httpx.Problem{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Detail: "request body over 64 KiB"}
	}
	if err != nil {
		return nil, &httpx.Problem{Status: http.StatusBadRequest, Code: CodeBadEncoding, Detail: "cannot read body"}
	}
	der, err := DecodeCSR(body, mt == "application/pkcs7-mime" || mt == "application/pkcs7")
	if err != nil {
		return nil, &httpx.Problem{Status: http.StatusBadRequest, Code: CodeBadEncoding, Detail: err.Error()}
	}
	return der, nil
}

// DecodeCSR turns a request body into PKCS#10 DER. PEM must hold exactly one CERTIFICATE REQUEST block and
// nothing else; base64 may be wrapped; CMS is a SignedData whose content is the CSR and whose signature verifies.
func DecodeCSR(body []byte, cms bool) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("empty body")
	}
	var der []byte
	switch {
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN")):
		// pem.Decode skips a block it cannot decode (one stray byte OpenSSL reads as whitespace will do) and returns
		// the next: with more than one BEGIN line the request signed could be one other readers never show.
		if bytes.Count(trimmed, []byte("-----BEGIN")) != 1 {
			return nil, errors.New("more than one PEM block")
		}
		block, rest := pem.Decode(trimmed)
		if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" && block.Type != "PKCS7") {
			return nil, errors.New("PEM block is not a CERTIFICATE REQUEST")
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, errors.New("data after the PEM block")
		}
		der, cms = block.Bytes, cms || block.Type == "PKCS7"
	case body[0] == 0x30:
		der = body
	default:
		clean := strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, string(trimmed))
		b, err := base64.StdEncoding.DecodeString(clean)
		if err != nil {
			return nil, errors.New("body is neither DER, PEM nor base64")
		}
		der = b
	}
	if len(der) == 0 {
		return nil, errors.New("the body holds no request")
	}
	if cms {
		// The pkcs7 parser converts BER to DER recursively: a body of under 200 bytes can nest or overrun its way
		// to gigabytes and minutes of CPU, so its shape is checked first, as at the SCEP door.
		if err := ber.Check(der); err != nil {
			return nil, fmt.Errorf("CMS body is not well-formed BER: %w", err)
		}
		p7, err := mozpkcs7.Parse(der)
		if err != nil {
			return nil, errors.New("CMS body does not parse")
		}
		// The wrapper is only accepted signed, as documented: an unsigned SignedData is a malformed request,
		// not a shortcut around the signature check.
		if len(p7.Signers) == 0 {
			return nil, errors.New("CMS body has no signer")
		}
		if err := p7.Verify(); err != nil {
			return nil, errors.New("CMS signature does not verify")
		}
		der = p7.Content
		if len(der) == 0 {
			return nil, errors.New("CMS body carries no content")
		}
	}
	return der, nil
}

// enroll applies policy, the self-service rules and issues (or replays within the retry window).
func (h *Handler) enroll(ctx context.Context, caller *entra.Caller, der []byte, choice string) (*issuance.Result, *httpx.Problem) {
	// The profile's allow-lists bind every caller. A self-service caller may also carry an IntuneDeviceId URI,
	// which the profile does not need to allow: selfService authorizes it by the device's ownership in Graph.
	selfService := !caller.HasRole(entra.RoleCSRRequestDb)
	prof := h.cfg.Profile
	if choice != "" && choice != prof.Name {
		alt, ok := h.cfg.Choices[choice]
		if !ok {
			return nil, &httpx.Problem{Status: http.StatusBadRequest, Code: CodeProfile,
				Detail: "profile " + strconv.Quote(choice) + " cannot be chosen on this endpoint"}
		}
		if selfService {
			return nil, &httpx.Problem{Status: http.StatusForbidden, Code: CodeForbidden,
				Detail: "choosing a profile needs the role " + entra.RoleCSRRequestDb}
		}
		prof = alt
	}
	csr, err := policy.ParseCSR(der)
	if err != nil {
		return nil, rejectionProblem(err)
	}
	chosen := prof != h.cfg.Profile // decided before WithIdentityURIs makes a copy
	if selfService {
		prof = prof.WithIdentityURIs(policy.IdentityIntuneDeviceID | policy.IdentityDeviceCN)
	}
	req, err := policy.Check(csr, prof)
	if err != nil {
		return nil, rejectionProblem(err)
	}
	acct, p := h.account(ctx, caller)
	if p != nil {
		return nil, p
	}
	var device deviceGrant
	if selfService {
		if device, err = h.selfService(ctx, caller, acct, req); err != nil {
			var p *httpx.Problem
			if errors.As(err, &p) {
				return nil, p
			}
			// The caller is told only "retry later": the operator needs the Graph call and answer that failed
			// (an Intune refusal, a permission /api/health may not name yet, a Graph outage) to act on it.
			h.log.WarnContext(ctx, "csr device check failed", "caller", callerID(caller), "err", err)
			return nil, &httpx.Problem{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
				Detail: "device ownership cannot be checked right now", RetryAfter: 30 * time.Second}
		}
	}
	sum := sha256.Sum256(csr.Raw)
	key := "api|" + callerID(caller) + "|" + hex.EncodeToString(sum[:])
	endpoint := "api" // the endpoint's own profile, as before choices existed
	if chosen {
		// The same CSR under another profile is another certificate, not a retry.
		key += "|" + prof.Name
		endpoint = prof.Name
	}
	// Retries inside the window are found by the issuer's key claim, with no extra lookup on fresh requests.
	res, err := h.cfg.Issuer.Issue(ctx, &issuance.Request{Checked: req, Profile: prof,
		Source: store.SourceAPI, Endpoint: endpoint, Requester: requester(caller), DeviceID: device.ID,
		DeviceObjectID: device.ObjectID, Key: key, ReplayWindow: h.cfg.RetryWindow})
	if err != nil {
		return nil, issuanceProblem(err)
	}
	return res, nil
}

// account re-reads the caller's account and the role the request acts on (entra.RecheckCaller: a user's
// assignments too, directly or through a group), and answers a token it no longer stands behind: a user an
// administrator took CSR.Request.Db from must not go on naming certificates for the hour the token has left.
func (h *Handler) account(ctx context.Context, caller *entra.Caller) (*entra.Account, *httpx.Problem) {
	if h.cfg.NoDirectory {
		return nil, nil
	}
	role := entra.RoleCSRSelfService // the role the request acts on: enroll's choice
	if caller.HasRole(entra.RoleCSRRequestDb) {
		role = entra.RoleCSRRequestDb
	}
	a, _, err := entra.RecheckCaller(ctx, h.cfg.Accounts, caller, h.cfg.AllowGuests, role)
	if err == nil {
		return a, nil
	}
	p := httpx.AccountProblem(err)
	if p == nil || p.Status == http.StatusServiceUnavailable {
		h.log.WarnContext(ctx, "csr account check failed", "caller", callerID(caller), "err", err)
	}
	if p == nil {
		p = &httpx.Problem{Status: http.StatusInternalServerError, Code: CodeInternal, Detail: "internal error"}
	}
	return nil, p
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// deviceGrant is the device a self-service certificate is for: its ID as the certificate names it (lower case),
// and the object ID of the Entra device Graph read for it, which its deletion names ("" when none was read).
// Zero for a user certificate.
type deviceGrant struct {
	ID, ObjectID string
}

// selfService enforces SPEC §4.5 for CSR.SelfService callers: a user (never an app) may get a clientAuth
// certificate for their own UPN, or for a device they own. It returns, for the record, the device a device
// certificate is for.
//
// Every name that identifies someone must be bound to the caller, because relying parties differ in which one
// they read: the subject is at most one common name and nothing else (no O, OU, DC, e-mail, user ID, serial
// number, title…: relying parties map certificates by subject attributes the caller could otherwise choose;
// pkix.Name keeps only the last CN, a relying party may read the first); IntuneDeviceId URIs must be exactly
// IntuneDeviceId://<GUID>, so that no parser can read another device out of user info or a path. The caller's
// UPN is the token's upn claim only (entra.Caller.UPN), never the mutable preferred_username, and only while acct,
// the account as Graph has it now, still carries it.
func (h *Handler) selfService(ctx context.Context, caller *entra.Caller, acct *entra.Account, req *policy.Request) (deviceGrant, error) {
	forbid := func(code, detail string) error {
		return &httpx.Problem{Status: http.StatusForbidden, Code: code, Detail: detail}
	}
	if caller.IsApp {
		return deviceGrant{}, forbid(CodeForbidden, "self-service is for signed-in users; applications need CSR.Request.Db")
	}
	if !slices.Equal(req.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		return deviceGrant{}, forbid(CodeNotClientAuth, "self-service certificates are clientAuth only")
	}
	if len(req.DNSNames)+len(req.Emails)+len(req.IPs) > 0 {
		return deviceGrant{}, forbid(CodeNotSelf, "self-service certificates carry only your UPN or your device ID")
	}
	cns := 0
	for _, atv := range req.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			return deviceGrant{}, forbid(CodeNotSelf, "a self-service subject is a common name only")
		}
		cns++
	}
	if cns > 1 {
		return deviceGrant{}, forbid(CodeNotSelf, "the subject has more than one common name")
	}
	cn := req.Subject.CommonName
	if acct != nil && caller.UPN != "" && !policy.SameName(acct.UPN, caller.UPN) {
		// An administrator renamed the account since the token was issued: the token's UPN may be someone
		// else's now, so it binds nothing, in a user certificate or beside a device.
		named := cn != "" && policy.SameName(cn, caller.UPN)
		for _, upn := range req.UPNs {
			named = named || policy.SameName(upn, caller.UPN)
		}
		if named {
			return deviceGrant{}, forbid(CodeNotSelf, "your UPN has changed since you signed in; get a new token")
		}
	}
	// A device certificate: CN is a device ID, and/or one IntuneDeviceId:// URI naming the same device. With the
	// URI, relying parties read the ID as an Intune managed-device ID, so only that managed device decides
	// (managed); a CN alone may be an Entra or an Intune device ID.
	var device string
	managed := false
	for _, u := range req.URIs {
		if !strings.EqualFold(u.Scheme, "IntuneDeviceId") {
			return deviceGrant{}, forbid(CodeNotSelf, "only IntuneDeviceId:// URIs are allowed in self-service")
		}
		bare := u.Host != "" && u.Port() == "" && u.Opaque == "" && u.User == nil && u.Path == "" &&
			u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""
		if !bare {
			return deviceGrant{}, forbid(CodeNotSelf, "an IntuneDeviceId URI must be IntuneDeviceId://<device ID>")
		}
		if device != "" && !policy.SameName(device, u.Host) {
			return deviceGrant{}, forbid(CodeNotSelf, "more than one device named")
		}
		device = u.Host
		managed = true
	}
	if entra.IsGUID(cn) {
		if device != "" && !policy.SameName(device, cn) {
			return deviceGrant{}, forbid(CodeNotSelf, "the subject and the IntuneDeviceId URI name different devices")
		}
		device = cn
	}
	if device != "" {
		if len(req.UPNs) > 0 {
			return deviceGrant{}, forbid(CodeNotSelf, "a device certificate does not carry a UPN")
		}
		// The CN, if any, is the device (checked above) or the caller.
		if cn != "" && !policy.SameName(cn, device) && (caller.UPN == "" || !policy.SameName(cn, caller.UPN)) {
			return deviceGrant{}, forbid(CodeNotSelf, "the subject must be the device ID or your UPN")
		}
		if !entra.IsGUID(device) || h.cfg.Ownership == nil {
			return deviceGrant{}, forbid(CodeNotOwner, "the device is not one you own")
		}
		var a entra.DeviceAnswer
		var err error
		if managed {
			a, err = h.cfg.Ownership.AnswerManaged(ctx, caller.ObjectID, device)
		} else {
			a, err = h.cfg.Ownership.Answer(ctx, caller.ObjectID, device)
		}
		if errors.Is(err, entra.ErrInvalidID) {
			return deviceGrant{}, forbid(CodeNotOwner, "the device is not one you own")
		}
		var budget *entra.LookupBudgetError
		if errors.As(err, &budget) {
			// This caller's own device lookups, not Graph, are the limit: a 503 would tell them Graph is down.
			return deviceGrant{}, &httpx.Problem{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
				Detail: "too many device lookups from this caller", RetryAfter: max(budget.RetryAfter, time.Second)}
		}
		if err != nil {
			return deviceGrant{}, fmt.Errorf("checking device ownership: %w", err)
		}
		switch a.Verdict {
		case entra.DeviceOwned:
		case entra.DeviceRetiring:
			return deviceGrant{}, forbid(CodeDeviceRetiring, "the device is being retired, wiped or deleted in Intune")
		default:
			return deviceGrant{}, forbid(CodeNotOwner, "the device is not one you own")
		}
		return deviceGrant{ID: strings.ToLower(device), ObjectID: a.ObjectID}, nil
	}
	// A user certificate: every UPN SAN and the subject CN, if present, are the caller's UPN, and at least one
	// of them is present.
	if caller.UPN == "" {
		// preferred_username and unique_name are mutable by the user and never bind a certificate.
		return deviceGrant{}, forbid(CodeNotSelf, "your token carries no upn claim (the API registration must request it)")
	}
	if len(req.UPNs) == 0 && cn == "" {
		return deviceGrant{}, forbid(CodeNotSelf, "the certificate must name your UPN")
	}
	if cn != "" && !policy.SameName(cn, caller.UPN) {
		return deviceGrant{}, forbid(CodeNotSelf, "the subject must be your UPN")
	}
	for _, upn := range req.UPNs {
		if !policy.SameName(upn, caller.UPN) {
			return deviceGrant{}, forbid(CodeNotSelf, "the UPN is not yours")
		}
	}
	return deviceGrant{}, nil
}

func rejectionProblem(err error) *httpx.Problem {
	if r, ok := policy.AsRejection(err); ok {
		return &httpx.Problem{Status: http.StatusBadRequest, Code: string(r.Code), Detail: r.Detail}
	}
	return &httpx.Problem{Status: http.StatusBadRequest, Code: string(policy.CodeMalformedCSR), Detail: "the CSR cannot be used"}
}

func issuanceProblem(err error) *httpx.Problem {
	if d, ok := httpx.Unavailable(err); ok {
		return &httpx.Problem{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Detail: "a dependency is unavailable; retry later", RetryAfter: d}
	}
	switch {
	case errors.Is(err, issuance.ErrInProgress):
		return &httpx.Problem{Status: http.StatusConflict, Code: CodeInProgress,
			Detail: "the same request is being processed", RetryAfter: 2 * time.Second}
	case errors.Is(err, issuance.ErrRevoked):
		return &httpx.Problem{Status: http.StatusConflict, Code: "revoked", Detail: "the earlier certificate for this request is revoked"}
	}
	if r, ok := policy.AsRejection(err); ok {
		return &httpx.Problem{Status: http.StatusBadRequest, Code: string(r.Code), Detail: r.Detail}
	}
	return &httpx.Problem{Status: http.StatusInternalServerError, Code: CodeInternal, Detail: "internal error"}
}

// write answers with the certificate in the format Accept asks for.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, res *issuance.Result) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/api/certificates/"+res.Record.Serial)
	w.Header().Set("X-Certificate-Serial", res.Record.Serial)
	switch negotiate(r.Header.Values("Accept")) {
	case "application/x-pem-file":
		httpx.WriteBody(w, "application/x-pem-file", custody.EncodePEM(append([]*x509.Certificate{res.Cert}, h.cfg.Chain...)...))
	case "application/pkcs7-mime":
		body, err := cms.Degenerate(append([]*x509.Certificate{res.Cert}, h.cfg.Chain...), nil)
		if err != nil {
			httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusInternalServerError, Code: CodeInternal, Detail: "internal error"})
			return
		}
		httpx.WriteBody(w, "application/pkcs7-mime; smime-type=certs-only", body)
	default:
		httpx.WriteBody(w, "application/pkix-cert", res.Cert.Raw)
	}
}

// negotiate picks the answer format from Accept: the explicitly named type with the highest q (the first one
// listed on a tie), never one the client ruled out with q=0. Wildcards and anything else get the DER default,
// which every client can handle, rather than a 406 after a certificate was already issued.
func negotiate(accept []string) string {
	best, bestQ := "application/pkix-cert", 0.0
	for mt, q := range httpx.Accepted(accept) {
		switch mt {
		case "application/pkix-cert", "application/x-pem-file", "application/pkcs7-mime":
			if q > bestQ {
				best, bestQ = mt, q
			}
		}
	}
	return best
}

// callerID is the stable identity a retry key and rate limit are scoped to.
func callerID(c *entra.Caller) string {
	if c.IsApp {
		return "app:" + c.AppID
	}
	return "oid:" + c.ObjectID
}

// requester is what the record stores about who asked.
func requester(c *entra.Caller) string {
	if c.IsApp {
		return "app:" + c.AppID + " oid:" + c.ObjectID
	}
	if c.UPN == "" {
		return "oid:" + c.ObjectID + " username:" + c.Username
	}
	return "oid:" + c.ObjectID + " upn:" + c.UPN
}
