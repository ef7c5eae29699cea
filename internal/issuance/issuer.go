// Package issuance is the CA's issuance cycle, in the order reliability.md §5.1 prescribes (Boulder's
// ca.IssueCertificate, adapted to one binary and Table Storage):
//
//  1. build the certificate from the profile and the policy-checked request, with a fresh 128-bit serial;
//  2. lint its to-be-signed bytes, built exactly as the CA's signature will build them but never signed (the
//     planned certificate);
//  3. claim the idempotency key (SCEP transaction ID or REST retry key) for the serial and
//  4. insert a pending record carrying the planned certificate, both in one atomic store write (one Table
//     Storage entity-group transaction) — replays and concurrent duplicates stop here, and a serial collision
//     fails the insert;
//  5. sign the linted to-be-signed bytes themselves with the CA key (one Key Vault operation), so what was linted
//     is by construction what is signed, and verify the signature once (sign.go);
//  6. move the record to issued (ETag-conditioned), with the certificate — tried again while the store is
//     unavailable (throttled), within writeTimeout, so that a burst of throttling does not waste the signature
//     (durableUpdate);
//  7. deliver (the Intune success notification, when there is one); if delivery fails the record is marked
//     withheld and the certificate never leaves — for good, and when the gate got no verdict (ErrUndecided) the
//     record says so too, and a retry with the same key is authorized again and, for the same CSR, passes this
//     certificate through the gate once more instead of signing another (redeliver) —, and if it succeeds the
//     record says so (IntuneNotified) before the certificate leaves;
//  8. for a renewal, point the renewed certificate's record at the new one (RenewedTo) before the certificate
//     leaves: bookkeeping whose failure is logged, not returned, as the certificate is issued and durable.
//
// Before step 1 a gated request (Request.Gated) reserves its serial in its key's durable backlog, which bounds the
// certificates per key awaiting Intune's verdict across instances (backlog.go); other requests never touch it.
//
// A signature therefore always has a committed pending record, and a certificate a client or Intune sees always
// has a committed issued record. A certificate issued behind a delivery gate (Request.Gated) leaves — in Issue's
// answer or in any later one (Releasable) — only once its record shows the gate passed.
package issuance

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/azscep/azscep/internal/ctxtime"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/lint"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
)

// Errors callers map to protocol answers.
var (
	// ErrKeyMismatch: the idempotency key is bound to a certificate for another public key (SCEP badRequest).
	ErrKeyMismatch = errors.New("issuance: transaction is bound to another key")
	// ErrInProgress: another request with the same idempotency key is being signed right now (SCEP PENDING).
	ErrInProgress = errors.New("issuance: request with the same key is in progress")
	// ErrWithheld: the certificate was signed and recorded but delivery was refused, so it is never returned.
	ErrWithheld = errors.New("issuance: certificate withheld")
	// ErrUndecided: a delivery gate (Request.Deliver) got no verdict — Intune down, throttling, refusing this CA's
	// identity — rather than a refusal. Deliver wraps its error with it; Issue then withholds the certificate as for
	// a refusal (its error wraps ErrWithheld too) but marks the record GateUndecided, so that a retry with the same
	// idempotency key is authorized again instead of being refused with ErrWithheld: for the same CSR Issue passes
	// the same certificate through the gate again (no new signature), for another it signs afresh.
	ErrUndecided = errors.New("issuance: delivery gate undecided")
	// ErrRevoked: a replay found the earlier certificate revoked (unless the request says ReissueRevoked).
	ErrRevoked = errors.New("issuance: earlier certificate is revoked")
	// ErrSigner: the CA key failed; the pending record was abandoned.
	ErrSigner = errors.New("issuance: CA signer failed")
)

// CA is the issuing certificate and its key. The key is any crypto.Signer: a local key or Key Vault.
type CA struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// URLs are the locations embedded in every certificate (AIA and CDP).
type URLs struct {
	OCSP      []string
	CAIssuers []string
	CRL       []string
}

// Config configures an Issuer.
type Config struct {
	CA       CA
	Store    store.Store
	URLs     URLs
	Backdate time.Duration // notBefore skew allowance, ≤ 1 h
	// StaleAfter is how old a pending record must be before a new request with the same idempotency key may
	// take over its key (the earlier request crashed or gave up).
	StaleAfter time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
	// Sleep waits d, or until ctx ends (then it returns ctx's error): the pause between the tries of a write made
	// once the certificate is signed (durableUpdate). Nil: a timer. Tests replace it so as not to wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// CompromisedKeys, when set, refuses a key marked compromised before anything is recorded or signed, at every
	// door (revocation.CompromisedKeys answers from memory).
	CompromisedKeys KeyMarks
}

// KeyMarks says whether a key, by its store.SPKIHash, is marked compromised.
type KeyMarks interface {
	Compromised(ctx context.Context, keyHash string) (store.CompromisedKey, bool, error)
}

// deliverTimeout bounds the delivery gate (the Intune success notification and its one retry).
const deliverTimeout = 75 * time.Second

// writeTimeout bounds each store write made once the certificate is signed (the issued record, the gate's
// outcome), its tries included (durableUpdate): the request's own context may be gone by then.
const writeTimeout = 15 * time.Second

// The pause before the next try of a write the store refused as unavailable (durableUpdate): retryFirst doubling up
// to retryMax, each drawn between half of it and all of it. With the store client's own quick retries (about 1 s
// per call) that is some five calls within writeTimeout.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = 4 * time.Second
)

// deliverWindow is how long after its issued write a gated record whose gate has not been recorded as passed may
// still be in the middle of it: the rest of the issued write, the gate itself and the write recording its outcome,
// each at its own deadline; a store call already sent when a deadline passes, which the Tables client lets finish
// (up to its call timeout, storeCallOverrun); and some clock skew between the instance that wrote the record and
// the one reading it. Within it a replay is told "in progress"; after it the gate is taken as failed (Releasable).
const deliverWindow = writeTimeout + deliverTimeout + writeTimeout + storeCallOverrun + 10*time.Second

// storeCallOverrun is how long a store write already on the wire may outlast the deadline of the write it serves:
// the Table Storage client's call timeout.
const storeCallOverrun = 10 * time.Second

// Issuer runs the issuance cycle.
type Issuer struct {
	ca       CA
	caName   string           // the CA certificate's subject as records name it, formatted once
	caRDNs   pkix.RDNSequence // the CA certificate's subject, parsed once for namesIssuer
	sigAlg   x509.SignatureAlgorithm
	store    store.Store
	urls     URLs
	backdate time.Duration
	stale    time.Duration
	log      *slog.Logger
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) error
	marks    KeyMarks

	linter    *lint.Linter
	linterErr error // reported by Issue, so that New accepts any CA (as before)
	// signerVerifies: the CA signer verifies its own signatures under the CA certificate's key, so issuance does
	// not verify them again (custody.SignerVerifiesItself).
	signerVerifies bool

	flight singleflight.Group
}

// New validates the configuration and returns an Issuer.
func New(cfg Config) (*Issuer, error) {
	if cfg.CA.Cert == nil || cfg.CA.Signer == nil || cfg.Store == nil {
		return nil, errors.New("issuance: CA certificate, signer and store are required")
	}
	alg, err := custody.SignatureAlgorithmFor(cfg.CA.Cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issuance: %w", err)
	}
	if cfg.Backdate < 0 || cfg.Backdate > time.Hour {
		return nil, fmt.Errorf("issuance: back-date %s must be between 0 and 1h", cfg.Backdate)
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = ctxtime.Sleep
	}
	i := &Issuer{ca: cfg.CA, caName: cfg.CA.Cert.Subject.String(), sigAlg: alg, store: cfg.Store, urls: cfg.URLs, backdate: cfg.Backdate,
		stale: cfg.StaleAfter, log: cfg.Logger, now: cfg.Now, sleep: cfg.Sleep, marks: cfg.CompromisedKeys}
	// A CA subject that does not parse leaves caRDNs empty, which no leaf's subject matches.
	_, _ = asn1.Unmarshal(cfg.CA.Cert.RawSubject, &i.caRDNs)
	i.linter, i.linterErr = lint.New(cfg.CA.Cert)
	i.signerVerifies = custody.SignerVerifiesItself(cfg.CA.Signer, cfg.CA.Cert)
	return i, nil
}

// CACert returns the issuing certificate.
func (i *Issuer) CACert() *x509.Certificate { return i.ca.Cert }

// Request is one issuance.
type Request struct {
	Checked  *policy.Request
	Profile  *policy.Profile
	Source   string // store.SourceSCEP or store.SourceAPI
	Endpoint string
	// Requester identifies who asked: an Entra object/app ID or UPN for REST, the challenge type for SCEP.
	Requester string
	DeviceID  string
	// DeviceObjectID is the directory object ID of the Entra device a self-service certificate is for, when Graph
	// named it (store.Record.DeviceObjectID).
	DeviceObjectID string
	// TxID is the SCEP transaction ID, or "" for REST.
	TxID string
	// Key is the idempotency key ("" for none). A second request with the same key and public key gets the
	// stored certificate; with another key, ErrKeyMismatch.
	Key string
	// ReplayWindow limits how old a stored certificate may be to count as a replay (0: no limit).
	ReplayWindow time.Duration
	// ReissueRevoked makes a replay whose earlier certificate is revoked a new enrollment instead of ErrRevoked
	// (SCEP: clients that derive the transaction ID from the key must be able to enroll again).
	ReissueRevoked bool
	// RenewedFrom, ChainStarted and ChainEnds link a renewal to the certificate it replaces and carry its chain's
	// bounds (copied to the record).
	RenewedFrom  string
	ChainStarted time.Time
	ChainEnds    time.Time
	// Renews is the record of the certificate a renewal replaces (RenewedFrom's), as the caller read it when it
	// authorized the renewal. Once the new certificate is durably issued, and before Issue returns it, Renews's
	// RenewedTo is set to the new serial (renewLink): the forward link that lets a later revocation of the new
	// certificate stop renewals from the old one. Nil for first issuances, which so pay no extra write.
	Renews *store.Record
	// Reauthorize, when set, runs once the pending record is durable and before the signature, to read again what
	// authorized the request: a revocation written while the request waited (for Intune's validation, for its
	// claim) is then seen, and one written later comes after the signature was authorized. An error abandons the
	// record and is returned as it is. A renewal sets it: its signer must still be unrevoked when the CA signs.
	Reauthorize func(ctx context.Context) error
	// NotAfterCap, when set, ends the certificate no later than this instant (a renewal chain's maximum).
	NotAfterCap time.Time
	// Deliver runs after the issued record is durable and before the certificate is returned (the Intune success
	// notification). An error withholds the certificate: for good, or, when it wraps ErrUndecided, until a retry
	// with the same key issues another one. It sets rec.IntuneNotified when it succeeds (a nil error without it
	// withholds the certificate too) and may set the other Intune fields; they are saved.
	Deliver func(ctx context.Context, rec *store.Record, cert *x509.Certificate) error
	// Gated marks a request whose certificate may leave only through Deliver (the SCEP Intune endpoints): its
	// certificate is handed out, by Issue or by any later replay, only once the record shows IntuneNotified
	// (Releasable). Set it with Deliver, and already for ReplayRequest, which runs before Deliver is known; Issue
	// refuses Gated without Deliver, and treats Deliver without Gated as gated.
	Gated bool
	// Signed, when set, is given a new certificate once its signature has been checked and before its record
	// is durable, so that the caller can build its answer while the issued update is on the wire. Nothing built
	// from it may leave the service unless Issue returns that certificate. Issue calls it before that update and
	// waits for it, so it must return at once (start any work in a goroutine) and must not panic.
	Signed func(cert *x509.Certificate)
}

// Result is an issued (or replayed) certificate with its record.
type Result struct {
	Cert     *x509.Certificate
	Record   *store.Record
	Replayed bool

	// undelivered marks, inside pend, the earlier attempt's certificate whose delivery gate got no verdict and which
	// this request may deliver instead of signing another (redeliverable); never set on a Result Issue returns.
	undelivered bool
}

// subjectKey is what an issuance derives from the request's public key, from one marshalling of its
// SubjectPublicKeyInfo: the record's binding (store.KeyHash) and the subject key identifier.
type subjectKey struct {
	hash string
	id   []byte
}

func newSubjectKey(pub crypto.PublicKey) (subjectKey, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return subjectKey{}, fmt.Errorf("computing subject key identifier: %w", err)
	}
	id, err := custody.SPKIKeyID(spki)
	if err != nil {
		return subjectKey{}, fmt.Errorf("computing subject key identifier: %w", err)
	}
	return subjectKey{hash: store.SPKIHash(spki), id: id}, nil
}

// Replay looks up an earlier result for key. It returns (nil, nil) when there is nothing to replay and a new
// issuance should run; a Result for an issued certificate bound to the same key; or ErrKeyMismatch,
// ErrInProgress, ErrRevoked or ErrWithheld. Replays touch only the store: no signature, no Intune call.
//
// Only a certificate that is still valid and created within window (0: no limit) is replayed; an expired one, one
// older than the window, or one withheld because its delivery gate got no verdict (GateUndecided), makes the
// request a new enrollment (which runs every authorization check afresh, and whose key claim takes the key over).
// Clients that derive the transaction ID from their key (sscep, certmonger, smallstep) could otherwise never enroll
// that key again.
//
// Replay is for requests without a delivery gate; a gated request's look-up is ReplayRequest.
func (i *Issuer) Replay(ctx context.Context, key string, pub crypto.PublicKey, window time.Duration) (*Result, error) {
	return i.replay(ctx, key, pub, replayRules{window: window})
}

// ReplayRequest is Replay with req's key, public key, window, ReissueRevoked rule and delivery gate (Gated): the
// look-up a caller makes before work that must not run twice (Intune validation), with the rules Issue will apply.
func (i *Issuer) ReplayRequest(ctx context.Context, req *Request) (*Result, error) {
	res, err := i.replay(ctx, req.Key, req.Checked.PublicKey, req.replayRules())
	if res == nil || err != nil {
		return res, err
	}
	// Issue refuses a marked key before it looks for a replay; a replay looked up on its own is refused the same,
	// or the certificate of a key marked since (through a sibling certificate) would be handed back.
	if err := i.checkMark(ctx, store.KeyHash(req.Checked.PublicKey)); err != nil {
		return nil, err
	}
	return res, nil
}

// checkMark refuses a key marked compromised (CompromisedKeys): a policy refusal, key_compromised.
func (i *Issuer) checkMark(ctx context.Context, keyHash string) error {
	if i.marks == nil {
		return nil
	}
	mark, found, err := i.marks.Compromised(ctx, keyHash)
	if err != nil {
		return err
	}
	if found {
		return &policy.Rejection{Code: policy.CodeKeyCompromised,
			Detail: fmt.Sprintf("the key was reported compromised (certificate %s revoked for keyCompromise)", mark.Serial)}
	}
	return nil
}

// gated reports whether req's certificate may leave only through its delivery gate.
func (r *Request) gated() bool { return r.Gated || r.Deliver != nil }

// replayRules are req's rules for deciding about an earlier attempt with its key.
func (r *Request) replayRules() replayRules {
	return replayRules{window: r.ReplayWindow, reissueRevoked: r.ReissueRevoked, gated: r.gated(), renews: r.RenewedFrom}
}

// replayRules are what a replay decision depends on besides the earlier record and the request's key.
type replayRules struct {
	window         time.Duration // a record created longer ago is not replayed (0: no limit)
	reissueRevoked bool          // a revoked record makes a new enrollment instead of ErrRevoked
	gated          bool          // the request has a delivery gate (Request.Gated)
	// renews is the serial a renewal replaces (Request.RenewedFrom): a key bound to that certificate is not replayed
	// but taken over. Clients that derive the transaction ID from the key (scepclient, smallstep, sscep) renew with
	// the same key under their PKCSReq's ID, signed with the certificate that PKCSReq got; replaying it would hand
	// them back their own, expiring, certificate as the renewal.
	renews string
}

func (i *Issuer) replay(ctx context.Context, key string, pub crypto.PublicKey, rules replayRules) (*Result, error) {
	if key == "" {
		return nil, nil
	}
	b, err := i.store.Lookup(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up idempotency key: %w", err)
	}
	rec, err := i.store.Get(ctx, b.Serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // a binding without its record (older versions wrote them apart): Issue takes it over
	}
	if err != nil {
		return nil, fmt.Errorf("reading record %s: %w", b.Serial, err)
	}
	return i.replayRecord(ctx, rec, store.KeyHash(pub), rules)
}

// replayRecord decides about the earlier attempt rec for a request whose public key hashes to pubHash.
func (i *Issuer) replayRecord(ctx context.Context, rec *store.Record, pubHash string, rules replayRules) (*Result, error) {
	if rules.window > 0 && i.now().Sub(rec.Created) > rules.window {
		return nil, nil
	}
	if rules.renews != "" && rec.Serial == rules.renews {
		return nil, nil // the certificate being renewed: a new issuance, not a replay
	}
	if rec.PublicKey != pubHash {
		return nil, ErrKeyMismatch
	}
	switch rec.Status {
	case store.StatusIssued:
		if rec.Withheld && rec.GateUndecided {
			// The gate got no verdict, so nobody refused the request: its retry is a new enrollment, authorized
			// afresh (Intune's validation included). Issue then delivers this certificate for the same CSR
			// (redeliverable) and signs anew for another; until delivered it stays withheld (Releasable).
			return nil, nil
		}
		if rec.Withheld {
			return nil, ErrWithheld
		}
		if !i.now().Before(rec.NotAfter) {
			return nil, nil // expired: a new enrollment
		}
		if err := i.Releasable(rec, rules.gated); err != nil {
			return nil, err
		}
		// A certificate the CRL lists is revoked for every relying party, also before its record says so
		// (store.Published): not handed out as this request's. One point read, on replays and retries only.
		switch _, revoked, err := store.Published(ctx, i.store, rec); {
		case err != nil:
			return nil, err
		case revoked && !rules.reissueRevoked:
			return nil, ErrRevoked
		case revoked:
			return nil, nil
		}
		cert, err := x509.ParseCertificate(rec.CertDER)
		if err != nil {
			return nil, fmt.Errorf("stored certificate %s does not parse: %w", rec.Serial, err)
		}
		return &Result{Cert: cert, Record: rec, Replayed: true}, nil
	case store.StatusPending:
		if i.now().Sub(rec.Created) < i.stale {
			return nil, ErrInProgress
		}
		return nil, nil
	case store.StatusRevoked:
		if !rules.reissueRevoked {
			return nil, ErrRevoked
		}
	}
	return nil, nil // abandoned (or revoked, when the caller re-issues): issue afresh
}

// Releasable decides whether the certificate on rec, an issued (or revoked) record, may be handed out again: by a
// replay, a SCEP CertPoll or GetCert, or anything else that answers with a stored certificate. It is gated when the
// record says it was issued behind a delivery gate (store.Record.Gated) or gated says the caller's endpoint has one
// (Request.Gated; known from the endpoint, never from names). It returns nil when it may; ErrWithheld when the
// delivery was refused; and for a gated record whose gate is not recorded as passed (IntuneNotified false),
// ErrInProgress while the gate may still be running (deliverWindow after the record's last write) and ErrWithheld
// after that. So a gated certificate leaves only once Intune has accepted
// it; a gate whose outcome was lost (a failed write, a crash, an issued write whose answer was lost) never turns into
// a delivery, and nothing here calls Intune again.
func (i *Issuer) Releasable(rec *store.Record, gated bool) error {
	if rec.Withheld {
		return ErrWithheld
	}
	// The record's own mark decides even when the endpoint is no longer configured as gated (switched to a static
	// challenge, say): a certificate issued behind the gate never leaves without it.
	if !(gated || rec.Gated) || rec.IntuneNotified {
		return nil
	}
	if i.now().Sub(rec.Updated) < deliverWindow {
		return ErrInProgress
	}
	return fmt.Errorf("%w: Intune's acceptance of certificate %s was never recorded", ErrWithheld, rec.Serial)
}

// AwaitsRedelivery reports whether rec, read for a request under its idempotency key, is a certificate withheld only
// because its delivery gate got no verdict (GateUndecided) that a retry of that request with the same CSR could still
// have (redeliverable): issued, within window (0: no limit), not expired. Whether the CRL lists it is the caller's
// read (store.Published), as for any other answer from a record.
func (i *Issuer) AwaitsRedelivery(rec *store.Record, window time.Duration) bool {
	now := i.now()
	return rec.Status == store.StatusIssued && rec.Withheld && rec.GateUndecided && !rec.IntuneNotified &&
		(window <= 0 || now.Sub(rec.Created) <= window) && now.Before(rec.NotAfter)
}

// Issue runs the cycle for one request. Concurrent requests with the same key in this process share one run;
// across processes the key claim in the store decides.
func (i *Issuer) Issue(ctx context.Context, req *Request) (*Result, error) {
	// Once per request: the flight key, the replay checks, the record and the certificate's key identifier.
	sk, err := newSubjectKey(req.Checked.PublicKey)
	if err != nil {
		return nil, err
	}
	if req.Key == "" {
		return i.issue(ctx, req, sk)
	}
	v, err, _ := i.flight.Do(req.Key+"\x00"+sk.hash, func() (any, error) { return i.issue(ctx, req, sk) })
	if err != nil {
		return nil, err
	}
	return v.(*Result), nil
}

func (i *Issuer) issue(ctx context.Context, req *Request, sk subjectKey) (*Result, error) {
	if err := i.refuse(ctx, req, sk); err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	var held *reservation // this request's place in its key's backlog (gated requests)
	recorded := false     // this request's own pending record committed
	defer func() {
		// Once its record is committed, the record tells the bound whether the reservation still counts (counting),
		// whatever the request's outcome, so the enrollment pays no call to take it out: the timer prunes it. A
		// reservation naming a serial never recorded would count until StaleAfter (a replay, a refusal, an in-progress
		// answer, a store error), which repeated retries would turn into a refusal of their own: those release it.
		if held != nil && !recorded {
			i.release(ctx, held)
		}
	}()
	if req.gated() {
		// The key's bound on certificates awaiting Intune's verdict (backlog.go): this request's place is durable
		// before anything is recorded or signed, and every instance counts it. Requests without a gate never read
		// or write the backlog. A serial collision in pend (2^-120) would leave the reservation naming a serial
		// never recorded, counted only for StaleAfter.
		held, err = i.reserve(ctx, sk.hash, store.SerialString(serial))
		if errors.Is(err, errBacklogFull) {
			return i.backlogged(ctx, req, sk)
		}
		if err != nil {
			return nil, err
		}
	}
	// Steps 1–4: the linted plan and its pending record, committed before the signature.
	plan, rec, res, err := i.pend(ctx, req, sk, serial)
	recorded = err == nil && res == nil
	if res != nil && res.undelivered {
		return i.redeliver(ctx, req, res)
	}
	if res != nil || err != nil {
		return res, err
	}

	if req.Reauthorize != nil {
		// Detached, like the signature that follows: a client that hung up (the first of several sharing this run)
		// must not turn an authorized request into an abandoned one; its retry replays the certificate.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		err := req.Reauthorize(actx)
		cancel()
		if err != nil {
			i.abandon(rec, "authorization read again before the signature: "+err.Error())
			return nil, err
		}
	}

	// Step 5: the one CA-key operation, over the linted TBS itself, and the one verification of its signature.
	der, err := i.sign(plan)
	if err != nil {
		// No signature, or a wrong one: the record turns abandoned with the note, nothing is delivered.
		i.abandon(rec, "signature failed: "+err.Error())
		return nil, fmt.Errorf("%w: %w", ErrSigner, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		i.abandon(rec, "signed certificate does not parse: "+err.Error())
		return nil, fmt.Errorf("signed certificate does not parse: %w", err)
	}
	if req.Signed != nil {
		req.Signed(cert)
	}

	// Step 6: make the certificate durable. From here on the request context may be gone (the client hung up),
	// but the signature exists, so the writes get their own deadline.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	rec.Status = store.StatusIssued
	rec.CertDER = der
	rec.SHA1, rec.SHA256 = thumbprints(der)
	rec.Updated = i.now()
	// Tried again while the store is unavailable, until writeTimeout: giving up here wastes the signature, and the
	// device's retries wait for the record to turn stale and then cost a second one.
	if _, err := i.durableUpdate(wctx, rec, store.StatusPending, issuedWith(der)); err != nil {
		// The record stays pending; the sweeper reports it and it stays revocable by serial. Or a write committed
		// and only its answer was lost: the record is issued with a certificate nobody has seen. Without a gate its
		// replay hands it out, as this answer would have. With a gate that is safe too: the gate never ran, so the
		// record's IntuneNotified is false and Releasable (above) refuses it to every later request — in
		// progress for deliverWindow, then withheld — while the caller reports the failure (Intune's
		// failureNotification) and no successNotification is ever sent for it.
		return nil, fmt.Errorf("recording issued certificate %s: %w", rec.Serial, err)
	}
	i.log.InfoContext(ctx, "certificate issued", "serial", rec.Serial, "endpoint", rec.Endpoint, "source", rec.Source,
		"subject", rec.Subject, "not_after", rec.NotAfter.UTC().Format(time.RFC3339), "sha256", rec.SHA256)

	// Step 7: delivery gate. A renewal's forward link (renewLink) is written once the certificate may leave: here
	// without a gate, after an accepted delivery with one, never for a withheld certificate, which never leaves.
	if req.Deliver == nil {
		i.renewLink(ctx, req, rec)
	} else {
		if err := i.gate(ctx, req, rec, cert); err != nil {
			return nil, err // the record says whether the reservation counts: undecided, one more awaits a verdict
		}
	}
	return &Result{Cert: cert, Record: rec}, nil
}

// refuse answers the refusals that need no record: a request no door should have built, a subject that is the CA's
// name, a key known to be out.
func (i *Issuer) refuse(ctx context.Context, req *Request, sk subjectKey) error {
	if i.linterErr != nil {
		return fmt.Errorf("preparing linter: %w", i.linterErr)
	}
	if req.Gated && req.Deliver == nil {
		// The certificate would leave ungated while every replay of it waits for a gate that never runs.
		return errors.New("issuance: a gated request needs its delivery gate (Deliver)")
	}
	if req.Checked.KeyUsage == 0 || len(req.Checked.ExtKeyUsage) == 0 {
		// An empty set is not the narrowest but the widest: without the keyUsage or extendedKeyUsage extension a
		// certificate is good for every usage. Every profile has both, so a door that narrowed them to nothing has a
		// bug; refuse before anything is recorded or signed.
		return fmt.Errorf("issuance: refusing a certificate without key usage (%b) or extended key usage (%v)",
			req.Checked.KeyUsage, req.Checked.ExtKeyUsage)
	}
	if namesIssuer(req.Checked.RawSubject, i.caRDNs) {
		// The CA's name is the admin door's (ca init / ca import). A leaf bearing it is taken for the CA by the
		// relying parties that build chains by name (RFC 5280 §7.1 compares names without case or extra white
		// space), whichever door's policy let the subject through.
		return &policy.Rejection{Code: policy.CodeSubject, Detail: "the subject is the CA's own name"}
	}
	// A key known to be out is certified by no door: a policy refusal, before any record or claim.
	return i.checkMark(ctx, sk.hash)
}

// pend plans the certificate (steps 1–2: template from the profile, its to-be-signed bytes linted) and commits its
// pending record (steps 3–4), an insert, never an upsert. With an idempotency key, the key's claim commits in the
// same write, so replays and concurrent duplicates stop here, before anything is signed, and no claim is ever
// without its record. A request the key's earlier attempt answers returns that answer (res or err) instead.
func (i *Issuer) pend(ctx context.Context, req *Request, sk subjectKey, serial *big.Int) (*lint.Planned, *store.Record, *Result, error) {
	now := i.now()
	var err error
	var plan *lint.Planned
	var rec *store.Record
	var prev *store.Binding // the earlier attempt's binding this request takes the key over from
	for attempt := 0; attempt < 5; attempt++ {
		if rec == nil || rec.Serial != store.SerialString(serial) {
			if plan, rec, err = i.prepare(ctx, req, serial, sk, now); err != nil {
				return nil, nil, nil, err
			}
		}
		var b store.Binding
		if req.Key == "" {
			err = i.store.Insert(ctx, rec)
		} else {
			b, err = i.store.InsertBound(ctx, req.Key, prev, rec)
		}
		switch {
		case err == nil:
			return plan, rec, nil, nil
		case errors.Is(err, store.ErrExists) && b.Serial == "":
			// A 2^-120 serial collision: nothing was written, try another serial.
			if serial, err = newSerial(); err != nil {
				return nil, nil, nil, err
			}
		case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict) && b.Serial != "":
			// The key is bound to an earlier attempt: replay it, refuse, or take the key over from it.
			res, err := i.resolve(ctx, req, b, sk.hash)
			if res != nil || err != nil {
				return nil, nil, res, err
			}
			prev = &b
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound) && prev != nil:
			prev = nil // the binding moved under us: look again
		default:
			return nil, nil, nil, fmt.Errorf("inserting pending record: %w", err)
		}
	}
	return nil, nil, nil, ErrInProgress // the key keeps moving under us: other requests are working on it
}

// gate passes an issued certificate through its delivery gate (req.Deliver, Intune's successNotification) and
// records the outcome: delivered, or withheld (for good, or GateUndecided when the gate got no verdict, so that the
// request's retry is authorized again rather than refused, and for the same CSR brings this certificate back here:
// redeliver). A client that hung up after the signature must not turn a good certificate into a withheld one (its retry replays the delivered certificate), so the gate and its outcome
// run on detached contexts with deadlines of their own.
func (i *Issuer) gate(ctx context.Context, req *Request, rec *store.Record, cert *x509.Certificate) error {
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), deliverTimeout) // covers Intune's retries
	derr := req.Deliver(dctx, rec, cert)
	dcancel()
	if derr == nil && !rec.IntuneNotified {
		derr = errors.New("the delivery gate passed without recording it")
	}
	// The gate's outcome gets a deadline of its own: the gate may have used up the issued write's.
	octx, ocancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer ocancel()
	if derr != nil {
		rec.Withheld = true
		rec.GateUndecided = errors.Is(derr, ErrUndecided)
		rec.Note = truncate("withheld: "+derr.Error(), 512)
		rec.Updated = i.now()
		der, undecided := cert.Raw, rec.GateUndecided
		withheld := func(cur *store.Record) bool {
			return issuedWith(der)(cur) && cur.Withheld && cur.GateUndecided == undecided
		}
		if _, err := i.durableUpdate(octx, rec, store.StatusIssued, withheld); err != nil {
			// Still never delivered: the record's IntuneNotified is false, so Releasable refuses it.
			i.log.ErrorContext(ctx, "marking withheld certificate failed", "serial", rec.Serial, "err", err)
		}
		return fmt.Errorf("%w: %w", ErrWithheld, derr)
	}
	err := i.recordDelivered(octx, rec)
	// Also when that write failed: a replay may still hand the certificate out once the store shows it.
	i.renewLink(ctx, req, rec)
	if err != nil {
		// Intune accepted the certificate but the record does not say so, so it does not leave: a replay would
		// refuse it (Releasable), and this answer must not give what a replay would refuse. Not a failure to
		// report to Intune, which has the certificate: the caller answers "in progress", and the replay decides
		// from whatever the store holds by then.
		i.log.ErrorContext(ctx, "recording accepted delivery failed; certificate not returned", "serial", rec.Serial, "err", err)
		return fmt.Errorf("%w: recording the accepted delivery of %s: %w", ErrInProgress, rec.Serial, err)
	}
	return nil
}

// renewLink sets the forward link of the certificate req renews (req.Renews) to rec, its issued successor: one
// ETag-conditioned in-state update of the old record, with the version the caller read moments ago, so a renewal
// costs one store round trip more and a first issuance none. It runs before the certificate is returned, so a
// certificate that has left always had its link attempted; a failure only logs, since the certificate is issued
// and durable and failing the answer would only make the client retry into a replay. What a lost link costs is
// bounded: the revocation of rec repoints the old record's link itself (revocation.Revoke walks RenewedFrom
// backwards), so the renewal check still finds it.
//
// A conflict means the old record changed since it was read: it is read again and written only if its link is
// still what the caller saw. Otherwise someone else moved it — a concurrent renewal from the same certificate, or
// a revocation pointing it at a revoked successor — and overwriting that could hide the revoked one.
func (i *Issuer) renewLink(ctx context.Context, req *Request, rec *store.Record) {
	if req.Renews == nil {
		return
	}
	// Its own deadline: the issued write (and the delivery gate) may have used up theirs.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	seen := req.Renews.RenewedTo
	old := *req.Renews // the caller's record stays as it read it
	if old.RenewedTo == rec.Serial {
		return
	}
	linked := func(cur *store.Record) bool { return cur.RenewedTo == rec.Serial }
	for attempt := 0; ; attempt++ {
		old.RenewedTo = rec.Serial
		old.Updated = i.now()
		// Tried again while the store is unavailable; a conflict comes back with the record as it is now.
		cur, err := i.durableUpdate(lctx, &old, old.Status, linked)
		if err == nil {
			i.keepRevokedLink(lctx, &old, seen)
			return
		}
		if cur == nil || attempt == 2 {
			i.log.ErrorContext(ctx, "recording the renewal's forward link failed; the renewal stands", "serial", rec.Serial,
				"renewed_from", old.Serial, "err", err)
			return
		}
		if cur.RenewedTo != seen {
			i.log.WarnContext(ctx, "renewal's forward link moved meanwhile; left as it is", "serial", rec.Serial,
				"renewed_from", old.Serial, "renewed_to", cur.RenewedTo)
			return
		}
		old = *cur
	}
}

// keepRevokedLink points old back at seen, the successor it linked to before this renewal, when seen, or one
// renewed from it further down (store.RevokedSuccessor, as the renewal check asks), turns out revoked. The renewal check found seen unrevoked, but its revocation may have been written since: it then left
// old's link alone (it pointed at seen already), and renewLink moved the link past it, which would let old renew
// again. A revocation written after this read is safe without it: Revoke links the ancestors after its record
// write, and finds old pointing elsewhere. One read, only for a signer that had renewed before.
func (i *Issuer) keepRevokedLink(ctx context.Context, old *store.Record, seen string) {
	if seen == "" || seen == old.RenewedTo {
		return
	}
	revoked, err := store.RevokedSuccessor(ctx, i.store, seen)
	if err != nil && !errors.Is(err, store.ErrRenewalWalkTooLong) {
		i.log.ErrorContext(ctx, "checking the renewed certificate's earlier successor failed", "serial", old.Serial,
			"successor", seen, "err", err)
	}
	if revoked == nil {
		return
	}
	old.RenewedTo = seen
	old.Updated = i.now()
	if err := i.store.Update(ctx, old, old.Status); err != nil {
		// A conflict means someone else wrote old meanwhile: Revoke's linkAncestors, pointing it at a revoked one.
		i.log.ErrorContext(ctx, "pointing the renewed certificate back at its revoked successor failed", "serial", old.Serial,
			"successor", seen, "err", err)
	}
}

// recordDelivered writes rec, whose delivery gate passed, with the gate's bookkeeping (IntuneNotified and the other
// Intune fields), tried again while the store is unavailable (durableUpdate, which also recognises the write when
// an earlier try committed and only its answer was lost). When the record changed meanwhile, the bookkeeping is
// written once more onto the stored version, if that still holds this certificate, issued and not withheld.
func (i *Issuer) recordDelivered(ctx context.Context, rec *store.Record) error {
	notified := func(cur *store.Record) bool {
		return issuedWith(rec.CertDER)(cur) && !cur.Withheld && cur.IntuneNotified
	}
	rec.Updated = i.now()
	cur, err := i.durableUpdate(ctx, rec, store.StatusIssued, notified)
	if err == nil || cur == nil {
		return err
	}
	if cur.Status != store.StatusIssued || cur.Withheld || !bytes.Equal(cur.CertDER, rec.CertDER) {
		return fmt.Errorf("%w (the record is now %s, withheld %t)", err, cur.Status, cur.Withheld)
	}
	i.log.WarnContext(ctx, "recording delivery met a changed record; writing it onto the stored version", "serial", rec.Serial, "err", err)
	cur.IntuneSerial, cur.CAConfiguration, cur.IntuneNotified = rec.IntuneSerial, rec.CAConfiguration, true
	cur.Updated = i.now()
	if _, err := i.durableUpdate(ctx, cur, store.StatusIssued, notified); err != nil {
		return err
	}
	*rec = *cur
	return nil
}

// issuedWith reports whether a record is issued with exactly the certificate der: what a write that moved it to
// issued with der, and every later bookkeeping write of that certificate's own issuance, leaves.
func issuedWith(der []byte) func(cur *store.Record) bool {
	return func(cur *store.Record) bool {
		return cur.Status == store.StatusIssued && bytes.Equal(cur.CertDER, der)
	}
}

// durableUpdate is store.Update(ctx, rec, from) for the writes made once the certificate is signed, which must not
// give up at the first refusal of a throttled store: store.ErrUnavailable (503 ServerBusy, 500 OperationTimedOut,
// a timeout, a lost answer) is tried again after a jittered exponential pause (retryFirst to retryMax) until ctx
// ends, with the same record and the same ETag, so a try can only ever replace the version rec was read at.
//
// An unavailable write may have committed. The Tables store recognises its own write in the 412 of a replay within
// one Update call (its WriteID), but not across calls, nor when its read-back fails; so here a conflict is never
// taken as failure blindly: the record is read back, and when landed says it shows this write, the write is done
// and rec becomes the stored version (its ETag included). Anything else — a conflict whose record shows another
// writer's change, ErrTransition, ErrNotFound, ctx ending — is returned as the failure it is, and on a conflict
// with the record as read (cur), for a caller that may write again onto it; nothing here overwrites it.
func (i *Issuer) durableUpdate(ctx context.Context, rec *store.Record, from store.Status, landed func(cur *store.Record) bool) (cur *store.Record, err error) {
	var conflict error // the conflict being checked: the record is read back instead of written
	for try := 0; ; try++ {
		if conflict == nil {
			err = i.store.Update(ctx, rec, from)
			switch {
			case err == nil:
				return nil, nil
			case errors.Is(err, store.ErrConflict):
				conflict = err
				continue // read back at once
			case !errors.Is(err, store.ErrUnavailable):
				return nil, err
			}
		} else {
			got, gerr := i.store.Get(ctx, rec.Serial)
			switch {
			case gerr == nil && landed(got):
				*rec = *got
				return nil, nil
			case gerr == nil:
				return got, fmt.Errorf("%w (the record is %s, with another version than this write's)", conflict, got.Status)
			case !errors.Is(gerr, store.ErrUnavailable):
				return nil, fmt.Errorf("%w (re-reading the record: %w)", conflict, gerr)
			}
			err = fmt.Errorf("%w (re-reading the record: %w)", conflict, gerr)
		}
		i.log.WarnContext(ctx, "store unavailable after the signature; trying again", "serial", rec.Serial, "try", try+1, "err", err)
		if i.sleep(ctx, backoff(try)) != nil {
			return nil, err
		}
	}
}

// backoff is the pause before try+2: retryFirst doubling to retryMax, drawn between half of that and all of it, so
// that instances throttled together do not come back together.
func backoff(try int) time.Duration {
	return ctxtime.Backoff(retryFirst, retryMax, try)
}

// resolve decides what a request does about the earlier attempt its idempotency key is bound to: a replay
// (non-nil Result), ErrKeyMismatch, ErrInProgress, ErrRevoked or ErrWithheld; or (nil, nil) when the earlier
// attempt was abandoned, is stale or outside the replay window, and the key may be taken over.
func (i *Issuer) resolve(ctx context.Context, req *Request, b store.Binding, pubHash string) (*Result, error) {
	prev, err := i.store.Get(ctx, b.Serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// A binding without its record cannot be written any more (they commit together); one left by an
		// older version is taken over, conditioned on its ETag, so only one request proceeds.
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading record bound to the idempotency key: %w", err)
	}
	if res, err := i.redeliverable(ctx, req, prev, pubHash); res != nil || err != nil {
		return res, err
	}
	return i.replayRecord(ctx, prev, pubHash, req.replayRules())
}

// redeliverable returns, marked undelivered, the certificate of prev — the attempt req's idempotency key is bound
// to — when prev was withheld only because its delivery gate got no verdict (GateUndecided) and req may have it
// instead of a new signature: a gated request for the very same CSR (so the notification names the certificate made
// from the CSR Intune just validated again), within the replay window, while the certificate is valid and not
// revoked. Otherwise (nil, nil), and the caller decides as replayRecord does.
//
// Delivering that certificate, rather than signing another, is what keeps the retries of a device that Intune
// validates but never answers the notification for from costing one signature and one withheld record each; and it
// is also the right certificate to report: a notification whose answer was lost may have reached Intune, which then
// holds this one, not a second certificate for the same transaction.
func (i *Issuer) redeliverable(ctx context.Context, req *Request, prev *store.Record, pubHash string) (*Result, error) {
	if req.Deliver == nil || prev.PublicKey != pubHash || prev.Serial == req.RenewedFrom {
		return nil, nil
	}
	if csr := sha256.Sum256(req.Checked.CSR.Raw); prev.CSRHash != hex.EncodeToString(csr[:]) {
		return nil, nil
	}
	if !i.AwaitsRedelivery(prev, req.ReplayWindow) {
		return nil, nil
	}
	// An admin may have revoked the withheld certificate (its record would say so; the revocation index says so
	// first): then it is not this request's to have.
	switch _, revoked, err := store.Published(ctx, i.store, prev); {
	case err != nil:
		return nil, err
	case revoked:
		return nil, nil
	}
	cert, err := x509.ParseCertificate(prev.CertDER)
	if err != nil {
		return nil, fmt.Errorf("stored certificate %s does not parse: %w", prev.Serial, err)
	}
	return &Result{Cert: cert, Record: prev, undelivered: true}, nil
}

// redeliver passes res, an earlier attempt's certificate withheld because its gate got no verdict (redeliverable),
// through req's delivery gate again, in place of a new signature: delivered, withheld for good on a refusal, or
// still withheld and undecided. What authorized a renewal is read again first (Reauthorize), as before a signature.
func (i *Issuer) redeliver(ctx context.Context, req *Request, res *Result) (*Result, error) {
	if req.Reauthorize != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		err := req.Reauthorize(actx)
		cancel()
		if err != nil {
			return nil, err // the record stays withheld: it never leaves
		}
	}
	rec := res.Record
	// The gate records its outcome onto this version (ETag-conditioned): delivered (no longer withheld), or withheld
	// again, undecided or for good.
	rec.Withheld, rec.GateUndecided = false, false
	rec.Updated = i.now()
	i.log.InfoContext(ctx, "delivering a certificate withheld for an undecided notification", "serial", rec.Serial,
		"endpoint", rec.Endpoint)
	if err := i.gate(ctx, req, rec, res.Cert); err != nil {
		return nil, err
	}
	return &Result{Cert: res.Cert, Record: rec}, nil
}

func (i *Issuer) abandon(rec *store.Record, note string) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	rec.Status = store.StatusAbandoned
	rec.Note = truncate(note, 512)
	rec.Updated = i.now()
	if err := i.store.Update(ctx, rec, store.StatusPending); err != nil {
		i.log.WarnContext(ctx, "abandoning pending record failed; the sweeper will report it", "serial", rec.Serial, "err", err)
	}
}

// prepare builds and lints the certificate for serial and the pending record that describes it.
func (i *Issuer) prepare(ctx context.Context, req *Request, serial *big.Int, sk subjectKey, now time.Time) (*lint.Planned, *store.Record, error) {
	tmpl, err := i.buildTemplate(req.Checked, req.Profile, serial, sk.id, now, req.NotAfterCap)
	if err != nil {
		return nil, nil, err
	}
	plan, err := i.linter.Check(tmpl, req.Checked.PublicKey, lint.Expect{KeyUsage: tmpl.KeyUsage,
		ExtKeyUsage: tmpl.ExtKeyUsage, MaxValidity: req.Profile.MaxValidity, NotBefore: now.Add(-i.backdate - time.Second)})
	var nc *lint.NameConstraintsError
	if errors.As(err, &nc) {
		// A name the CA certificate may not certify (RFC 5280 §4.2.1.10): the profile is wider than the CA. A
		// refusal like policy's, answered as one (SCEP badRequest, 400 problem+json, Intune "policy rejected"),
		// before any record or key operation.
		i.log.WarnContext(ctx, "lint refused certificate: name constraints", "err", err, "endpoint", req.Endpoint)
		return nil, nil, fmt.Errorf("linting planned certificate: %w", &policy.Rejection{Code: policy.CodeNameConstraints, Detail: nc.Detail})
	}
	if err != nil {
		i.log.ErrorContext(ctx, "lint refused certificate", "err", err, "endpoint", req.Endpoint)
		return nil, nil, fmt.Errorf("linting planned certificate: %w", err)
	}
	return plan, i.newRecord(req, tmpl, plan, sk.hash, now), nil
}

func (i *Issuer) newRecord(req *Request, tmpl *x509.Certificate, plan *lint.Planned, pubHash string, now time.Time) *store.Record {
	csrHash := sha256.Sum256(req.Checked.CSR.Raw)
	return &store.Record{
		Serial:     store.SerialString(tmpl.SerialNumber),
		Status:     store.StatusPending,
		Issuer:     i.caName,
		Subject:    plan.Cert.Subject.String(),
		SANs:       req.Checked.Names(),
		NotBefore:  tmpl.NotBefore,
		NotAfter:   tmpl.NotAfter,
		PublicKey:  pubHash,
		CSRHash:    hex.EncodeToString(csrHash[:]),
		Source:     req.Source,
		Endpoint:   req.Endpoint,
		Requester:  req.Requester,
		Profile:    req.Profile.Name,
		TxID:       req.TxID,
		DeviceID:   req.DeviceID,
		PlannedDER: plan.DER,
		Created:    now,
		Updated:    now,

		RenewedFrom:  req.RenewedFrom,
		ChainStarted: req.ChainStarted,
		ChainEnds:    req.ChainEnds,
		Gated:        req.gated(),

		// Where the device's deletion finds the certificate (revocation.RevokeDisabledDevices).
		DeviceObjectID: req.DeviceObjectID,
	}
}

func thumbprints(der []byte) (string, string) {
	s1 := sha1.Sum(der)
	s256 := sha256.Sum256(der)
	return strings.ToUpper(hex.EncodeToString(s1[:])), strings.ToUpper(hex.EncodeToString(s256[:]))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// namesIssuer reports whether the DER subject names the issuer, compared as RFC 5280 §7.1 compares names for
// chaining: the same attributes in the same RDNs, values equal without regard to case or runs of white space.
func namesIssuer(subject []byte, issuer pkix.RDNSequence) bool {
	var a pkix.RDNSequence
	if rest, err := asn1.Unmarshal(subject, &a); err != nil || len(rest) > 0 || len(a) == 0 || len(a) != len(issuer) {
		return false
	}
	fold := func(v any) string {
		s, _ := v.(string)
		return strings.ToLower(strings.Join(strings.Fields(s), " "))
	}
	for i := range a {
		if len(a[i]) != len(issuer[i]) {
			return false
		}
		for j := range a[i] {
			if !a[i][j].Type.Equal(issuer[i][j].Type) || fold(a[i][j].Value) != fold(issuer[i][j].Value) {
				return false
			}
		}
	}
	return true
}
