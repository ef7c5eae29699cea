package scep

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/lint"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
)

// handle decides one PKIOperation whose outer signature verified (pkiOperation answers 400 otherwise). The
// order follows reliability.md §4: message check, decrypt, CSR policy, renewal or challenge, replay, Intune,
// issuance — no Key Vault or Intune call for input that fails local checks.
func (s *Server) handle(ctx context.Context, e *Endpoint, msg *PKIMessage, client string) outcome {
	switch msg.MessageType {
	case PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL:
	default:
		return fail(BadRequest, fmt.Errorf("message type %q is not supported", clip(string(msg.MessageType))))
	}
	if !msg.SignatureValid {
		return fail(BadMessageCheck, errors.New("outer signature does not verify"))
	}
	if _, ok := msg.SignerCert.PublicKey.(*rsa.PublicKey); !ok {
		// A SUCCESS is encrypted to the signer certificate with RSA key transport. Refuse before issuing, or a
		// certificate would be signed, recorded and reported to Intune that no CertRep can carry.
		return fail(BadAlg, fmt.Errorf("signer key %T cannot receive an encrypted CertRep", msg.SignerCert.PublicKey))
	}
	cert, key, err := s.identity(e)
	if err != nil {
		return fail(BadRequest, err)
	}
	plain, err := msg.Decrypt(cert, key)
	if err != nil && !e.UseCA {
		// After an RA rotation, clients that cached GetCACert still encrypt to the previous RA during its overlap.
		// An envelope not addressed to it fails without a key operation, and every failure stays the same error.
		if pc, pk := s.keys.PreviousRA(s.now()); pc != nil {
			if p, perr := msg.Decrypt(pc, pk); perr == nil {
				// Only while it is not revoked (an admin may revoke it inside the overlap, keyCompromise say): a
				// revoked RA neither opens envelopes nor signs CertReps. One read, on this rare path alone.
				rec, gerr := s.store.Get(ctx, store.SerialString(pc.SerialNumber))
				switch {
				case gerr != nil && !errors.Is(gerr, store.ErrNotFound):
					return s.issued(nil, fmt.Errorf("reading the previous RA's record: %w", gerr))
				case gerr == nil && rec.Status == store.StatusRevoked:
					err = errors.New("scep: envelope to the previous RA, which is revoked")
				default:
					plain, err = p, nil
					msg.previousRA = &raIdentity{cert: pc, key: pk}
				}
			}
		}
	}
	if err != nil && !e.UseCA && s.refreshRA != nil {
		// Another instance may have rotated the RA and given this client its certificate: read the stored RA
		// again (one store read; an unwrap only if it changed; at most once per raRefreshGap) instead of failing
		// until the next periodic re-read. Whoever installed it — this read, another request's, or the periodic
		// one — the envelope is tried again whenever the RA in memory is not the one it was first tried with.
		if s.mayRefreshRA() {
			if _, rerr := s.refreshRA(ctx); rerr != nil {
				s.log.WarnContext(ctx, "re-reading the RA after an envelope no RA opened failed", "err", rerr)
			}
		}
		if cur, ckey, ierr := s.identity(e); ierr == nil && !cur.Equal(cert) {
			if p, perr := msg.Decrypt(cur, ckey); perr == nil {
				plain, err = p, nil
			}
		}
	}
	if err != nil {
		if d, ok := httpx.Unavailable(err); ok { // a remote decrypter that is down is not the client's fault
			return outcome{unavailable: d, err: err}
		}
		return fail(BadMessageCheck, err)
	}
	switch msg.MessageType {
	case CertPoll:
		return s.certPoll(ctx, e, msg)
	case GetCert:
		return s.getCert(ctx, msg.SignerCert, plain)
	case GetCRL:
		return s.getCRL(ctx)
	}
	return s.enroll(ctx, e, msg, plain, client)
}

// enroll decides a PKCSReq or RenewalReq from client (ratelimit.ClientKey: whose wrong static challenges count).
func (s *Server) enroll(ctx context.Context, e *Endpoint, msg *PKIMessage, csrDER []byte, client string) outcome {
	csr, err := policy.ParseCSR(csrDER)
	if err != nil {
		// Same answer as a failed decrypt: an attacker learns nothing about which step failed.
		return fail(BadMessageCheck, err)
	}
	prof := e.Profile
	if e.Challenge == ChallengeIntune {
		// Intune validates this exact CSR before anything is signed (below, fail closed): a device-ID common name
		// there is Intune's to vouch for, also under an operator's profile without identity_uris=devicecn.
		prof = prof.WithIdentityURIs(policy.IdentityDeviceCN)
	}
	req, err := policy.Check(csr, prof)
	if err != nil {
		return rejection(err)
	}
	renewal := msg.MessageType == RenewalReq
	var prev *store.Record // the certificate being renewed
	var notRenewal error   // why a RenewalReq decided as an enrollment (below) is not a renewal
	if renewal {
		ku, eku := req.KeyUsage, slices.Clone(req.ExtKeyUsage) // checkRenewal narrows them to the old certificate's
		if prev, err = s.checkRenewal(ctx, e, msg.SignerCert, req); err != nil {
			// A refusal; or a store that did not answer the check's reads, which is Table Storage down before any
			// signing (reliability.md §4.2): 503 and Retry-After for the client to come back, not a final FAILURE.
			if !enrollInstead(e, req, err) {
				return s.issued(nil, err)
			}
			renewal, notRenewal = false, err
			req.KeyUsage, req.ExtKeyUsage = ku, eku
		}
	}
	if e.Challenge == ChallengeStatic && !renewal {
		if err := s.checkStaticChallenge(e, client, req.ChallengePassword); err != nil {
			if notRenewal != nil {
				err = fmt.Errorf("%w; and as an enrollment: %w", notRenewal, err)
			}
			return fail(BadRequest, err)
		}
	}

	// A replay within the endpoint's window of a certificate still valid and unrevoked returns it; anything else
	// with the same transaction ID is a new enrollment (a revoked one included: it is authorized afresh).
	key := "scep|" + e.Name + "|" + msg.TransactionID
	// On an Intune endpoint the certificate leaves only after Intune accepted its successNotification (Gated): a
	// replay, too, gets it only once the record shows that, and is told PENDING while the notification may still be
	// in flight.
	ireq := &issuance.Request{Checked: req, Profile: e.Profile, Source: store.SourceSCEP, Endpoint: e.Name,
		Requester: "scep:" + e.Challenge, TxID: msg.TransactionID, Key: key, DeviceID: deviceID(req),
		ReplayWindow: e.ReplayWindow, ReissueRevoked: true, Gated: e.gated()}
	if prev != nil {
		// A renewal is the old certificate's holder asking again: whoever was authorized for it stays on record,
		// and the chain's start and the ends set by the endpoints it passed through carry over.
		start, end, passed := s.chainBounds(e, prev)
		ireq.Requester, ireq.RenewedFrom = prev.Requester, prev.Serial
		ireq.ChainStarted, ireq.ChainEnds = start, passed
		ireq.Renews = prev // its forward link (RenewedTo) is set once the new certificate is issued
		// The chain was live when checkRenewal read it; an admin may have revoked the signer or a successor, or a
		// key may have been reported compromised, since (while Intune validated, while the claim was written).
		// Read once more after the pending record exists: a revocation written before that read stops the
		// renewal, one written after it comes after the renewal.
		newKey := store.KeyHash(req.PublicKey)
		ireq.Reauthorize = func(ctx context.Context) error {
			rec, why, err := s.liveRecord(ctx, msg.SignerCert, s.now())
			if err != nil {
				return fmt.Errorf("reading renewal signer record again: %w", err)
			}
			if rec == nil {
				why = "renewal signer certificate " + why
			} else if why, err = s.renewalCutOff(ctx, rec, newKey); err != nil {
				return err
			}
			if why != "" {
				return &policy.Rejection{Code: policy.CodeNotAuthorized, Detail: why + " (since the renewal was checked)"}
			}
			return nil
		}
		ireq.NotAfterCap = end
		if ireq.DeviceID == "" {
			ireq.DeviceID = prev.DeviceID
		}
	}
	if e.Challenge == ChallengeIntune {
		// A replay must not reach Intune a second time, so look it up before validating (with RenewedFrom set: a
		// key bound to the certificate being renewed is a renewal, not a replay). Other endpoints let the issuer's
		// key claim find replays: one store round trip fewer on every fresh enrollment.
		if res, err := s.issuer.ReplayRequest(ctx, ireq); err != nil || res != nil {
			return s.issued(res, err)
		}
		// Fail closed: anything but an explicit Success from Intune means no certificate.
		if err := s.intune.Validate(ctx, msg.TransactionID, csr.Raw); err != nil {
			err = fmt.Errorf("intune validation: %w", err)
			if d, ok := intuneUndecided(err); ok {
				// Intune did not decide (down, throttling, refusing our identity): no certificate either, but the
				// answer a device retries, not a FAILURE that blames its request and ends the enrollment.
				return outcome{unavailable: d, err: err}
			}
			return fail(BadRequest, err)
		}
		ireq.Deliver = func(ctx context.Context, rec *store.Record, c *x509.Certificate) error {
			err := s.intune.NotifySuccess(ctx, msg.TransactionID, csr.Raw, rec, c)
			if _, undecided := notificationUndecided(err); err != nil && undecided {
				// No verdict on the notification, as on a validation: the certificate is withheld all the same,
				// but the device is answered 503 (issued) and its retry is validated again and, for the same CSR,
				// notified with this same certificate instead of a new signature (issuance.Issuer.Issue).
				return fmt.Errorf("%w: %w", issuance.ErrUndecided, err)
			}
			return err
		}
	}
	var early *earlyCertRep
	if !e.UseCA {
		// The RA key is local (unwrapped at start), so building the answer early costs no Key Vault operation
		// even when the issued update then fails and the answer is thrown away.
		ireq.Signed = func(c *x509.Certificate) { early = s.buildEarly(e, msg, c) }
	}
	res, err := s.issuer.Issue(ctx, ireq)
	if err != nil && e.Challenge == ChallengeIntune && !errors.Is(err, issuance.ErrWithheld) &&
		!errors.Is(err, issuance.ErrInProgress) && !errors.Is(err, issuance.ErrUndecided) {
		// Issuance failed after a successful validation: tell Intune (its console shows the reason).
		if nerr := s.intune.NotifyFailure(context.WithoutCancel(ctx), msg.TransactionID, csr.Raw, err); nerr != nil {
			s.log.WarnContext(ctx, "intune failure notification failed", "transaction_id", msg.TransactionID, "err", nerr)
		}
	}
	out := s.issued(res, err)
	if early != nil && out.status == StatusSuccess && out.cert == early.cert {
		out.early = early
	}
	return out
}

// earlyCertRep is a successful CertRep built while the issued record is being made durable: the envelope and
// the RA's signature (a private-key operation) then cost no time on the client's clock. It is sent only when the
// issuance succeeds with the same certificate (outcome.early); otherwise it is dropped unread.
type earlyCertRep struct {
	cert *x509.Certificate
	done chan struct{}
	body []byte
	err  error
}

func (s *Server) buildEarly(e *Endpoint, msg *PKIMessage, cert *x509.Certificate) *earlyCertRep {
	r := &earlyCertRep{cert: cert, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		// Outside the request's goroutine the edge's recovery does not reach: a panic here would stop the
		// process with other enrollments signed and not yet recorded.
		defer func() {
			if p := recover(); p != nil {
				r.body, r.err = nil, fmt.Errorf("building CertRep: panic: %v", p)
			}
		}()
		r.body, r.err = s.certRep(e, msg, outcome{status: StatusSuccess, cert: cert})
	}()
	return r
}

// issued turns an issuance result into a CertRep outcome.
func (s *Server) issued(res *issuance.Result, err error) outcome {
	switch {
	case err == nil:
		return outcome{status: StatusSuccess, cert: res.Cert, serial: res.Record.Serial, replayed: res.Replayed}
	case errors.Is(err, issuance.ErrInProgress):
		return outcome{status: StatusPending, err: err}
	case errors.Is(err, issuance.ErrUndecided):
		// Intune gave no verdict on the successNotification: the certificate is withheld, and the device, at no
		// fault, is told to come back (Intune's own Retry-After when it sent one), not FAILURE.
		d, _ := intuneUndecided(err)
		return outcome{unavailable: d, err: err}
	case errors.Is(err, issuance.ErrKeyMismatch), errors.Is(err, issuance.ErrRevoked),
		errors.Is(err, issuance.ErrWithheld):
		return fail(BadRequest, err)
	}
	if d, ok := httpx.Unavailable(err); ok {
		return outcome{unavailable: d, err: err}
	}
	if errors.Is(err, issuance.ErrSigner) {
		return serverFailed(err)
	}
	if _, refused := policy.AsRejection(err); refused || errors.Is(err, lint.ErrLint) {
		return rejection(err) // the request's names, key or validity: a CertRep FAILURE tells the device so
	}
	// The server's own failure (a store error it does not know as an outage, a signed certificate that does not
	// parse, a stored one that does not): 500, never a FAILURE that tells the device its request was wrong.
	return outcome{internal: true, err: err}
}

// serverFailed answers a request the server failed for a reason of its own that httpx.Unavailable does not cover (a
// dependency down, or refusing the service): a CA key that did not sign (issuance.ErrSigner; nothing was issued and
// the pending record is abandoned), a CRL that could not be had. Never a CertRep FAILURE, which tells the client its
// request was wrong and makes gear give up or wait for someone to re-enroll it by hand. A signature that did not
// verify (a corrupted answer) is answered 503 and Retry-After: the next try is a new signature, checked again.
// Anything else (Key Vault refusing the request as invalid, a hash it has no algorithm for, a local signer that
// refused) fails alike until an operator acts: 500.
func serverFailed(err error) outcome {
	if errors.Is(err, keyvault.ErrInvalidResponse) {
		return outcome{unavailable: httpx.DefaultRetryAfter, err: err}
	}
	return outcome{internal: true, err: err}
}

// rejection maps a refusal of the request to its failInfo: a policy.Rejection by its code, and anything else (a
// lint failure; an error policy.Check returns, which is always about the CSR) badRequest. Errors of the server's own
// go through issued, which answers them 500 or 503 instead.
func rejection(err error) outcome {
	r, ok := policy.AsRejection(err)
	if !ok {
		return fail(BadRequest, err)
	}
	switch r.Code {
	case policy.CodeBadSignatureAlg:
		return fail(BadAlg, err)
	case policy.CodeMalformedCSR, policy.CodeBadCSRSignature:
		return fail(BadMessageCheck, err)
	case policy.CodeValidity:
		return fail(BadTime, err)
	}
	return fail(BadRequest, err)
}

// enrollInstead reports whether a RenewalReq that checkRenewal refused with err is decided by its challenge, as the
// enrollment it then is. Clients such as micromdm's scepclient send a RenewalReq whenever they hold a certificate,
// with the challenge in the CSR too: a device whose certificate authorizes no renewal (revoked, from another CA,
// past its chain's maximum) would repeat the refusal forever. At a static endpoint the challenge authorizes what it
// does at a PKCSReq, so this gives nobody more; a renewal that is only early is refused still, and comes back in
// its window.
func enrollInstead(e *Endpoint, req *policy.Request, err error) bool {
	_, refused := policy.AsRejection(err)
	return refused && !errors.Is(err, errRenewalEarly) && e.Challenge == ChallengeStatic && req.ChallengePassword != ""
}

// errRenewalEarly marks the refusal of a renewal before its window.
var errRenewalEarly = errors.New("renewal before its window")

// checkRenewal decides whether a RenewalReq may skip the endpoint's challenge (RFC 8894 §3.3.1.2). A renewal
// re-certifies what was authorized before, nothing more: the signer certificate must be one this CA issued
// through SCEP on this endpoint (or one it lists in RenewFrom), valid, issued and unrevoked, and not the RA or an
// OCSP responder certificate; the request must keep its subject and ask for the same names or fewer (compared
// as encoded) and gets no usage the old certificate did not have; it must come inside the renewal window and before
// the chain's maximum. Last, once everything local passed, the store is asked whether the chain was cut off
// (renewalCutOff): a revoked successor, or a key reported compromised. It returns the old record.
func (s *Server) checkRenewal(ctx context.Context, e *Endpoint, old *x509.Certificate, req *policy.Request) (*store.Record, error) {
	deny := func(format string, args ...any) error {
		return &policy.Rejection{Code: policy.CodeNotAuthorized, Detail: fmt.Sprintf(format, args...)}
	}
	if err := old.CheckSignatureFrom(s.keys.CA()); err != nil {
		return nil, deny("renewal signer certificate was not issued by this CA")
	}
	if old.IsCA || slices.Contains(old.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) || s.isRA(old) {
		return nil, deny("renewal signer is a CA, RA or OCSP responder certificate")
	}
	now := s.now()
	rec, why, err := s.liveRecord(ctx, old, now)
	if err != nil {
		return nil, fmt.Errorf("reading renewal signer record: %w", err)
	}
	if rec == nil {
		return nil, deny("renewal signer certificate %s", why)
	}
	// Only SCEP certificates of this endpoint (or one it renews for): an /api/csr certificate was authorized by an
	// Entra token for its caller, an Intune one by Intune for one device; neither authorizes a static endpoint.
	if rec.Source != store.SourceSCEP || !e.renews(rec.Endpoint) {
		return nil, deny("endpoint %s does not renew certificates issued by %s/%s", e.Name, rec.Source, rec.Endpoint)
	}
	// Intune vouched for that certificate for one device; a shared secret does not stand in for Intune, also when
	// the endpoint that issued it has since been switched to a static challenge (the record, not the settings,
	// says who authorized it).
	if e.Challenge == ChallengeStatic && intuneAuthorized(rec) {
		return nil, deny("endpoint %s has a static challenge and does not renew certificates Intune authorized", e.Name)
	}
	if !bytes.Equal(old.RawSubject, req.RawSubject) {
		return nil, deny("renewal must keep the subject")
	}
	if err := namesSubset(old, req.SANExtension); err != nil {
		return nil, deny("renewal may only ask for the old certificate's names: %v", err)
	}
	// The usages too: the renewed certificate gets the key usage and extended key usages the request would get
	// that the old certificate had, so a renewal never widens them (a clientAuth-only certificate does not come
	// back with serverAuth because the profile allows it).
	req.KeyUsage &= old.KeyUsage
	req.ExtKeyUsage = slices.DeleteFunc(req.ExtKeyUsage, func(u x509.ExtKeyUsage) bool {
		return !slices.Contains(old.ExtKeyUsage, u)
	})
	// No EKU at all is not the narrowest set but the widest: relying parties read a certificate without the
	// extension as valid for every purpose. Every profile has one, so an old certificate that shares none with the
	// request (one carrying only EKUs no profile issues, as RA certificates do) renews into nothing.
	if req.KeyUsage == 0 || len(req.ExtKeyUsage) == 0 {
		return nil, deny("renewal asks for no usage the old certificate had")
	}
	window := e.RenewalWindow
	if window <= 0 {
		window = old.NotAfter.Sub(old.NotBefore) / 2
	}
	if now.Before(old.NotAfter.Add(-window)) {
		return nil, fmt.Errorf("%w: %w", errRenewalEarly,
			deny("renewal is allowed only in the last %s of the certificate's validity", window))
	}
	if start, end, _ := s.chainBounds(e, rec); !now.Before(end) {
		return nil, deny("the renewal chain started %s and may not be renewed past %s",
			start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
	}
	why, err = s.renewalCutOff(ctx, rec, store.KeyHash(req.PublicKey))
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, deny("%s", why)
	}
	return rec, nil
}

// isRA reports whether c is an RA certificate: one with the Certificate Request Agent EKU, which every RA
// certificate carries since RAs were restricted to it (custody.HasRAUsage), whether or not this server still holds
// it; or one with the key of an RA this server holds — the RA in use (a rotation installs it while running), the one
// loaded at start-up and the previous one during its overlap — which covers RAs from before that restriction.
func (s *Server) isRA(c *x509.Certificate) bool {
	if slices.ContainsFunc(c.UnknownExtKeyUsage, custody.OIDCertificateRequestAgent.Equal) {
		return true
	}
	cur, _ := s.keys.RA()
	prev, _ := s.keys.PreviousRA(s.now())
	for _, ra := range []*x509.Certificate{cur, s.keys.RACert, prev} {
		if ra != nil && bytes.Equal(c.RawSubjectPublicKeyInfo, ra.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	return false
}

// renewalCutOff says why the certificate recorded as rec may not sign a renewal for the key hashing to newKey
// although it is itself valid and unrevoked, or "" when nothing cuts it off. It asks with point reads, on
// RenewalReqs only, never on a first enrollment:
//
//   - A successor is revoked. A certificate that was renewed stays valid until it expires, and its holder could
//     renew from it again: after an admin revoked the device's current certificate (a stolen device, the shared
//     secret rotated), whoever kept the superseded one with its key would get a fresh certificate with the same
//     names, outliving both. So the forward links (RenewedTo, written after each renewal and repointed by a
//     revocation) are followed, at most store.MaxRenewalWalk records, and any revoked one refuses the renewal. A
//     successor that was merely lost, not revoked, refuses nothing: the device may renew from the older one.
//   - The signer's key, or the key the renewal asks for, is marked compromised: some certificate with that key
//     was revoked for keyCompromise. Another certificate for the same key (an earlier enrollment with it) proves
//     nothing once the key is known to be out, and a new certificate must not be issued for a key that is.
func (s *Server) renewalCutOff(ctx context.Context, rec *store.Record, newKey string) (string, error) {
	succ, err := store.RevokedSuccessor(ctx, s.store, rec.RenewedTo)
	switch {
	case errors.Is(err, store.ErrRenewalWalkTooLong):
		return fmt.Sprintf("renewal signer %s was renewed more than %d times over; renew from the newest certificate",
			rec.Serial, store.MaxRenewalWalk), nil
	case err != nil:
		return "", err
	case succ != nil:
		return fmt.Sprintf("renewal signer %s was superseded by %s, which is revoked (RFC 5280 reason %d)",
			rec.Serial, succ.Serial, succ.RevocationReason), nil
	}
	type key struct{ hash, whose string }
	keys := []key{{rec.PublicKey, "renewal signer's key"}}
	if newKey != rec.PublicKey { // a renewal that keeps its key asks once
		keys = append(keys, key{newKey, "requested key"})
	}
	for _, k := range keys {
		if k.hash == "" {
			continue // no key hash recorded: nothing a mark could be found under
		}
		mark, err := s.store.Compromised(ctx, k.hash)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("reading compromised-key mark: %w", err)
		}
		return fmt.Sprintf("the %s was reported compromised (certificate %s revoked for keyCompromise)", k.whose,
			mark.Serial), nil
	}
	return "", nil
}

// intuneAuthorized reports whether rec was issued behind Intune's validateRequest: gated on its
// successNotification, or reported to Intune by one (records from before the gate was written).
func intuneAuthorized(rec *store.Record) bool {
	return rec.Gated || rec.IntuneNotified || rec.IntuneSerial != ""
}

// liveRecord returns the record of c, a certificate this CA signed, when c is valid at now and recorded as
// exactly c, issued and delivered, and the revocation index does not list it. Otherwise it returns a nil record and why not ("is not valid now", ...), or
// the store's error.
func (s *Server) liveRecord(ctx context.Context, c *x509.Certificate, now time.Time) (*store.Record, string, error) {
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, "is not valid now", nil
	}
	rec, err := s.store.Get(ctx, store.SerialString(c.SerialNumber))
	if errors.Is(err, store.ErrNotFound) {
		return nil, "is not in the records", nil
	}
	if err != nil {
		return nil, "", err
	}
	if rec.Status != store.StatusIssued || rec.Withheld || !bytes.Equal(rec.CertDER, c.Raw) {
		return nil, fmt.Sprintf("is %s", rec.Status), nil
	}
	// A certificate that may not leave (an Intune one Intune has not accepted) authorizes nothing either: whoever
	// shows it did not get it from us.
	if s.issuer.Releasable(rec, s.gatedRecord(rec)) != nil {
		return nil, "was never delivered", nil
	}
	// What the CRL lists as revoked authorizes nothing, also before the record says so (store.Published): one point
	// read, on the paths that call this (renewal, GetCert's same-subject holder), never on a first enrollment.
	switch e, revoked, err := store.Published(ctx, s.store, rec); {
	case err != nil:
		return nil, "", err
	case revoked:
		return nil, fmt.Sprintf("is revoked (RFC 5280 reason %d; its record is not yet updated)", e.Reason), nil
	}
	return rec, "", nil
}

// chainStart is when rec's renewal chain began: its own creation for a first issuance.
func chainStart(rec *store.Record) time.Time {
	if !rec.ChainStarted.IsZero() {
		return rec.ChainStarted
	}
	return rec.Created
}

// chainBounds returns when rec's renewal chain started, the end a renewal of rec at e may not pass, and the end
// set by the endpoints the chain has left (the new record's ChainEnds). The end is the earliest
// of every such endpoint's renewal maximum counted from the chain's start: an endpoint that renews another's
// certificates (renew_from) re-certifies names that endpoint authorized, for no longer than it allowed, and neither
// does a later renewal back at either. An endpoint's maximum is read from the settings while the chain is on it and
// kept on the record once the chain leaves it. A record without ChainEnds (a first issuance, or one written before
// it was kept) is bounded by the endpoint that issued it and e.
func (s *Server) chainBounds(e *Endpoint, rec *store.Record) (start, end, passed time.Time) {
	start = chainStart(rec)
	passed = rec.ChainEnds
	if !strings.EqualFold(rec.Endpoint, e.Name) {
		// e renews rec only when it lists rec's endpoint (checkRenewal), and New checks that each listed one exists.
		if from, ok := s.endpoints[strings.ToLower(rec.Endpoint)]; ok {
			passed = earliest(passed, start.Add(from.renewalMax()))
		}
	}
	return start, earliest(passed, start.Add(e.renewalMax())), passed
}

// earliest returns the earlier of a and b, a zero time standing for no bound.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// namesSubset checks that every GeneralName of the requested subjectAltName (policy's re-encoding, nil for none)
// appears byte for byte in old's subjectAltName.
func namesSubset(old *x509.Certificate, requested *pkix.Extension) error {
	if requested == nil {
		return nil
	}
	var had map[string]bool
	for _, ext := range old.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			names, err := policy.GeneralNames(ext.Value)
			if err != nil {
				return fmt.Errorf("old certificate: %w", err)
			}
			had = map[string]bool{}
			for _, n := range names {
				had[string(n.FullBytes)] = true
			}
		}
	}
	names, err := policy.GeneralNames(requested.Value)
	if err != nil {
		return err
	}
	for _, n := range names {
		if !had[string(n.FullBytes)] {
			return errors.New("the request names something the old certificate does not")
		}
	}
	return nil
}

// certPoll answers CertPoll (GetCertInitial) from the records by transaction ID.
func (s *Server) certPoll(ctx context.Context, e *Endpoint, msg *PKIMessage) outcome {
	key := "scep|" + e.Name + "|" + msg.TransactionID
	b, err := s.store.Lookup(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return fail(BadCertID, errors.New("no request with this transaction ID"))
	}
	if err != nil {
		return s.issued(nil, err)
	}
	rec, err := s.store.Get(ctx, b.Serial)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fail(BadCertID, err)
		}
		return s.issued(nil, err)
	}
	if signer := store.KeyHash(msg.SignerCert.PublicKey); rec.PublicKey != signer {
		// CertPoll is signed with the same key as the request it polls for: the new key for a PKCSReq, and for a
		// RenewalReq the old certificate's key, which signed it. Anyone else gets nothing.
		renewing, err := s.renewalSigner(ctx, rec, signer)
		if err != nil {
			return s.issued(nil, err)
		}
		if !renewing {
			return fail(BadCertID, errors.New("poll signed by another key"))
		}
	}
	switch rec.Status {
	case store.StatusPending:
		return outcome{status: StatusPending}
	case store.StatusIssued:
		if e.gated() && s.issuer.AwaitsRedelivery(rec, e.ReplayWindow) {
			// Intune gave no verdict on the notification: nobody refused the request, and the device's PKCSReq for
			// it, re-sent, is notified with this certificate and gets it (issuance.Issuer.Issue). Not a FAILURE,
			// which would end the enrollment of a device at no fault; PENDING keeps it in the transaction. A
			// certificate the CRL lists is no longer this request's to have.
			switch _, revoked, err := store.Published(ctx, s.store, rec); {
			case err != nil:
				return s.issued(nil, err)
			case revoked:
				return fail(BadCertID, errors.New("request is revoked (the revocation index lists it)"))
			}
			return outcome{status: StatusPending, err: errors.New("the certificate awaits Intune's verdict on its notification")}
		}
		// The record was issued through e (the transaction ID is e's), so e says whether it is gated.
		switch err := s.issuer.Releasable(rec, e.gated()); {
		case errors.Is(err, issuance.ErrInProgress):
			return outcome{status: StatusPending, err: err}
		case err != nil:
			return fail(BadCertID, err) // withheld: the answer for a request that has no certificate
		}
		// A revocation interrupted between its index entry and its record is published (the CRL lists it): not
		// handed out as this request's certificate, like a record that says revoked. One point read.
		switch _, revoked, err := store.Published(ctx, s.store, rec); {
		case err != nil:
			return s.issued(nil, err)
		case revoked:
			return fail(BadCertID, errors.New("request is revoked (the revocation index lists it)"))
		}
		c, err := x509.ParseCertificate(rec.CertDER)
		if err != nil {
			// The record is damaged, not the poll (signed by the request's key, above): as a replay answers it.
			return s.issued(nil, fmt.Errorf("stored certificate %s does not parse: %w", rec.Serial, err))
		}
		return outcome{status: StatusSuccess, cert: c, serial: rec.Serial, replayed: true}
	}
	return fail(BadCertID, fmt.Errorf("request is %s", rec.Status))
}

// renewalSigner reports whether rec renews a certificate whose key hashes to signer (a RenewalReq is signed with
// the old certificate's key, and so is the CertPoll that follows it).
func (s *Server) renewalSigner(ctx context.Context, rec *store.Record, signer string) (bool, error) {
	if rec.RenewedFrom == "" {
		return false, nil
	}
	old, err := s.store.Get(ctx, rec.RenewedFrom)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return old.PublicKey == signer, nil
}

// issuerAndSerial is the RFC 8894 GetCert/GetCRL content.
type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

// getCert answers GetCert, but only to the certificate's holder: a requester whose signer key is the
// certificate's key (the outer signature proved possession), or whose signer is a valid certificate of ours for
// the same subject (a renewed device fetching its earlier certificate). Everyone else gets badCertID, the same
// answer as for a serial that does not exist, so GetCert tells strangers nothing about which serials exist.
func (s *Server) getCert(ctx context.Context, signer *x509.Certificate, content []byte) outcome {
	var ias issuerAndSerial
	if rest, err := asn1.Unmarshal(content, &ias); err != nil || len(rest) != 0 || ias.Serial == nil {
		return fail(BadRequest, errors.New("GetCert content is not IssuerAndSerialNumber"))
	}
	if !bytes.Equal(ias.Issuer.FullBytes, s.keys.CA().RawSubject) {
		return fail(BadCertID, errors.New("GetCert for another issuer"))
	}
	rec, err := s.store.Get(ctx, store.SerialString(ias.Serial))
	if errors.Is(err, store.ErrNotFound) {
		return fail(BadCertID, err)
	}
	if err != nil {
		return s.issued(nil, err)
	}
	if rec.Status != store.StatusIssued && rec.Status != store.StatusRevoked {
		return fail(BadCertID, fmt.Errorf("certificate is %s", rec.Status))
	}
	if err := s.issuer.Releasable(rec, s.gatedRecord(rec)); err != nil {
		// Withheld, or gated and not yet accepted by Intune: the same answer as for a pending certificate.
		return fail(BadCertID, err)
	}
	c, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return fail(BadCertID, err)
	}
	ok, err := s.holds(ctx, signer, rec, c)
	if err != nil {
		return s.issued(nil, err)
	}
	if !ok {
		return fail(BadCertID, errors.New("GetCert from neither the certificate's key holder nor a holder of its subject"))
	}
	return outcome{status: StatusSuccess, cert: c, serial: rec.Serial}
}

// holds reports whether signer may receive c (recorded as rec): see getCert.
func (s *Server) holds(ctx context.Context, signer *x509.Certificate, rec *store.Record, c *x509.Certificate) (bool, error) {
	if store.KeyHash(signer.PublicKey) == rec.PublicKey {
		return true, nil
	}
	// An empty subject names nobody: every SAN-only certificate has it, so it cannot make two holders one.
	if len(c.Subject.Names) == 0 || !bytes.Equal(signer.RawSubject, c.RawSubject) || signer.CheckSignatureFrom(s.keys.CA()) != nil {
		return false, nil
	}
	srec, _, err := s.liveRecord(ctx, signer, s.now())
	if err != nil {
		return false, fmt.Errorf("reading GetCert signer record: %w", err)
	}
	return srec != nil, nil
}

func (s *Server) getCRL(ctx context.Context) outcome {
	if s.crl == nil {
		return fail(BadRequest, errors.New("no CRL is published"))
	}
	der, err := s.crl.CurrentDER(ctx)
	if err != nil {
		// Nothing in a GetCRL can be wrong once its envelope opened: not having the CRL is the server's failure.
		if d, ok := httpx.Unavailable(err); ok {
			return outcome{unavailable: d, err: err}
		}
		return serverFailed(fmt.Errorf("reading the current CRL: %w", err))
	}
	return outcome{status: StatusSuccess, crl: der}
}

// deviceID is the Intune device ID a device identity URI SAN names, if any: IntuneDeviceId://<id> or the
// ID:<product>:GUID:<id> form of SCEP profiles written for Cisco ISE. Policy lets a certificate carry one of each,
// naming the same device, so the first one found is the device; the record keeps it for the search by device.
func deviceID(req *policy.Request) string {
	for _, u := range req.URIs {
		if policy.IdentityURIKind(u) == policy.IdentityIntuneDeviceID {
			if id := policy.DeviceIDOf(u); id != "" {
				return strings.ToLower(id) // as /api/csr records it, and Intune shows it
			}
		}
	}
	return ""
}

func clip(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}
