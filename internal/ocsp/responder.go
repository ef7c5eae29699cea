// Package ocsp is the CA's OCSP responder (RFC 6960, with the RFC 5019 lightweight profile for GET and
// caching).
//
// Responses are signed by a delegated responder: each instance generates an in-memory key and has the CA sign a
// short-lived certificate for it (EKU OCSPSigning, id-pkix-ocsp-nocheck, never past the CA's notAfter), renewed
// lazily at half-life. The CA key (in Key Vault) is therefore used once per renewal and never per response, and
// signed nonce-less responses are cached per serial until shortly before their nextUpdate.
//
// The package is pure: certificate status comes from a StatusSource the storage layer implements.
package ocsp

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azscep/azscep/internal/custody"
	xocsp "golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"
)

// Defaults for Options.
const (
	// DefaultResponseValidity is nextUpdate − the signing time. An hour bounds how long a relying party may keep
	// trusting a "good" answer after a revocation.
	DefaultResponseValidity = time.Hour
	// DefaultCacheMargin: a cached response is replaced this long before its nextUpdate, so clients and HTTP
	// caches never receive a response that is about to expire.
	DefaultCacheMargin = 10 * time.Minute
	// DefaultResponderCertValidity is the responder certificate lifetime; it is renewed at half-life.
	DefaultResponderCertValidity = 48 * time.Hour
	// DefaultCacheSize bounds the number of cached responses (about 1 KiB each with an ECDSA responder, 1.4 KiB
	// with an RSA-2048 one).
	DefaultCacheSize = 10_000
	// AbsentTTL is how long an instance keeps answering "unknown" from memory for a serial the store holds no record
	// of (see Status.Absent): a relying party, scanner or attacker repeating one such request costs one store read
	// and one signature per AbsentTTL instead of one each time.
	AbsentTTL = 5 * time.Minute
	// DefaultLookupTimeout bounds a status lookup and signing when the caller's context has no deadline.
	DefaultLookupTimeout = 10 * time.Second
	// DefaultRetryBackoff is the pause after a failed responder-certificate renewal before the next attempt.
	DefaultRetryBackoff = 30 * time.Second
	// DefaultGenerationInterval is how often an instance reads the shared revocation generation (one store read,
	// made by the first request after the interval). A revocation made on another instance is answered within
	// this interval plus one read: well inside the five-minute bound, at 120 reads an hour per instance.
	DefaultGenerationInterval = 30 * time.Second
)

// GenerationSource reads the revocation generation that every revocation, on any instance, increments, with the
// serials revoked recently.
type GenerationSource interface {
	// RevokedSince returns the current generation and the serials revoked after generation after; complete is
	// false when they are no longer all known (the responder then drops its whole cache).
	RevokedSince(ctx context.Context, after uint64) (gen uint64, serials []*big.Int, complete bool, err error)
}

// Sentinel errors. Respond wraps one of them whenever it returns a non-successful OCSP response.
var (
	// ErrMalformedRequest: the request could not be parsed (answered with malformedRequest).
	ErrMalformedRequest = errors.New("ocsp: malformed request")
	// ErrUnauthorized: the request names an issuer other than our CA (answered with unauthorized).
	ErrUnauthorized = errors.New("ocsp: request for a certificate of another issuer")
	// ErrTryLater: the status source or the CA signer is unavailable (answered with tryLater).
	ErrTryLater = errors.New("ocsp: status temporarily unavailable")
	// ErrInvalidStatus: the source returned a status that cannot be encoded, such as a revocation without a
	// time or with a reason code outside RFC 5280 (answered with internalError).
	ErrInvalidStatus = errors.New("ocsp: invalid certificate status from source")
	// ErrInvalidIssuer: the CA certificate or key cannot be used for OCSP delegation.
	ErrInvalidIssuer = errors.New("ocsp: unusable CA certificate")
	// ErrKeyMismatch: the CA signer's public key is not the CA certificate's.
	ErrKeyMismatch = errors.New("ocsp: signer key does not match CA certificate")
)

// Status is a certificate's revocation status as the storage layer knows it.
type Status struct {
	// Known is false when the serial was never issued by this CA (answered "unknown").
	Known bool
	// Absent (with Known false) says the store holds no record of the serial at all, not even a pending one. Every
	// certificate has its pending record before the CA signs it and serials are random, so no certificate with this
	// serial exists and none will be issued: the "unknown" answer may be remembered (for AbsentTTL). A serial with a
	// record that is not delivered (pending, withheld) is not Absent: it may become good at any moment.
	Absent    bool
	Revoked   bool
	RevokedAt time.Time
	// Reason is the RFC 5280 §5.3.1 CRLReason code.
	Reason int
}

// StatusSource looks up certificate status. It is implemented by the storage layer (one point read).
type StatusSource interface {
	// CertificateStatus returns the status of serial; an unknown serial is Status{Known: false} with a nil
	// error. Errors are treated as transient.
	CertificateStatus(ctx context.Context, serial *big.Int) (Status, error)
}

// Clock is the time source, injected so tests can move time.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// KeyType selects the responder key algorithm.
type KeyType int

// Responder key types. P-256 signs in microseconds; RSA-2048 exists for relying parties that cannot verify
// ECDSA under an RSA CA.
const (
	KeyP256 KeyType = iota
	KeyRSA2048
)

// Recorder makes each responder certificate durable like every other certificate the CA signs: Planned runs
// before the CA key is used (an error stops the signature) and Issued before the certificate is used (an error
// discards it).
type Recorder interface {
	Planned(ctx context.Context, tmpl *x509.Certificate) error
	Issued(ctx context.Context, cert *x509.Certificate) error
}

// Options tune a Responder. Zero values select the defaults.
type Options struct {
	// Recorder, when set, records responder certificates (see Recorder).
	Recorder Recorder
	// KeyType of the in-memory responder key; default KeyP256.
	KeyType KeyType
	// ResponseValidity is nextUpdate − the signing time (thisUpdate lies Backdate before the signing, for relying
	// parties whose clocks run behind); default DefaultResponseValidity.
	ResponseValidity time.Duration
	// Backdate is how far a response's thisUpdate and the responder certificate's notBefore lie before their
	// signing: the certificates' back-date (AZSCEP_BACKDATE), so that a relying party whose clock runs behind
	// accepts the responses as it accepts the certificates. Default DefaultBackdate.
	Backdate time.Duration
	// CacheMargin: cached responses are re-signed this long before nextUpdate; default DefaultCacheMargin.
	CacheMargin time.Duration
	// ResponderCertValidity of each responder certificate; default DefaultResponderCertValidity, at least
	// 4 × ResponseValidity. A certificate never ends after the CA certificate: in the CA's last
	// ResponderCertValidity it ends with the CA and responses' nextUpdate is cut to it.
	ResponderCertValidity time.Duration
	// CacheSize bounds the cached responses, and an eighth of it the remembered "unknown" answers (Status.Absent);
	// default DefaultCacheSize.
	CacheSize int
	// LookupTimeout bounds a shared status lookup and signature; default DefaultLookupTimeout.
	LookupTimeout time.Duration
	// RetryBackoff after a failed responder-certificate renewal; default DefaultRetryBackoff.
	RetryBackoff time.Duration
	// Generation, when set, makes cached responses follow revocations made by other instances: it is read at
	// most once per GenerationInterval (by the request that finds the last read too old; concurrent ones share
	// it) and a new value drops the cached responses of the serials revoked since. While it cannot be read the cache is bypassed, so a
	// status is never served from memory older than the interval (fail closed: misses go to the store).
	Generation GenerationSource
	// GenerationInterval bounds how stale a cached response may be after a revocation elsewhere; default
	// DefaultGenerationInterval.
	GenerationInterval time.Duration
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Stats are counters for metrics and tests.
type Stats struct {
	CacheHits       int64
	CacheMisses     int64
	ResponsesSigned int64
	// ResponderCerts counts responder certificates signed by the CA key.
	ResponderCerts int64
	CacheEntries   int
	// AbsentEntries counts the remembered "unknown" answers for serials without a record.
	AbsentEntries int
	// GenerationReads counts reads of the revocation generation.
	GenerationReads int64
}

// Responder answers OCSP requests for one CA. It is safe for concurrent use.
type Responder struct {
	ca       *x509.Certificate
	caSigner crypto.Signer
	caSigAlg x509.SignatureAlgorithm
	source   StatusSource
	opts     Options
	clock    Clock
	log      *slog.Logger

	// issuerHashes holds our CA's issuerNameHash and issuerKeyHash per CertID hash algorithm.
	issuerHashes map[crypto.Hash][2][]byte

	cache         *responseCache
	absent        *responseCache // "unknown" answers for Absent serials, apart so that they never evict cache's
	invalidations atomic.Uint64  // bumped by Invalidate; a miss computed across a bump is not cached
	misses        singleflight.Group

	delegate      atomic.Pointer[delegate]
	renewals      singleflight.Group
	renewMu       sync.Mutex
	renewErr      error
	renewFailedAt time.Time

	hits, missCount, signed, certs atomic.Int64

	// The revocation generation last read (genSeen, valid once genInit) and when the read started: the clock's
	// reading itself, not its Unix time, so that with the system clock its age is measured on the monotonic clock.
	genCheckedAt atomic.Pointer[time.Time]
	genMu        sync.Mutex
	genSeen      uint64
	genInit      bool
	genFlight    singleflight.Group
	genReads     atomic.Int64
}

// NewResponder checks the CA certificate and signer and prepares the responder. It makes no CA-key call: the
// responder certificate is created on the first request, so start-up stays fast and offline.
func NewResponder(caCert *x509.Certificate, caSigner crypto.Signer, source StatusSource, opts Options) (*Responder, error) {
	if caCert == nil {
		return nil, fmt.Errorf("%w: nil CA certificate", ErrInvalidIssuer)
	}
	if caSigner == nil || source == nil {
		return nil, errors.New("ocsp: CA signer and status source are required")
	}
	if caCert.KeyUsage != 0 && caCert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: key usage lacks keyCertSign", ErrInvalidIssuer)
	}
	pub, ok := caSigner.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(caCert.PublicKey) {
		return nil, ErrKeyMismatch
	}
	sigAlg, err := custody.SignatureAlgorithmFor(caSigner.Public())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidIssuer, err)
	}
	opts.ResponseValidity = cmp.Or(opts.ResponseValidity, DefaultResponseValidity)
	opts.Backdate = cmp.Or(opts.Backdate, DefaultBackdate)
	opts.CacheMargin = cmp.Or(opts.CacheMargin, DefaultCacheMargin)
	opts.ResponderCertValidity = cmp.Or(opts.ResponderCertValidity, DefaultResponderCertValidity)
	opts.CacheSize = cmp.Or(opts.CacheSize, DefaultCacheSize)
	opts.LookupTimeout = cmp.Or(opts.LookupTimeout, DefaultLookupTimeout)
	opts.RetryBackoff = cmp.Or(opts.RetryBackoff, DefaultRetryBackoff)
	opts.GenerationInterval = cmp.Or(opts.GenerationInterval, DefaultGenerationInterval)
	switch {
	case opts.GenerationInterval < 0:
		return nil, errors.New("ocsp: negative generation interval")
	case opts.KeyType != KeyP256 && opts.KeyType != KeyRSA2048:
		return nil, fmt.Errorf("ocsp: unknown responder key type %d", opts.KeyType)
	case opts.ResponseValidity < time.Minute:
		return nil, errors.New("ocsp: response validity below one minute")
	case opts.CacheMargin < 0 || opts.CacheMargin >= opts.ResponseValidity:
		return nil, errors.New("ocsp: cache margin must be within the response validity")
	case opts.ResponderCertValidity < 4*opts.ResponseValidity:
		// Renewal at half-life must leave room for responses (and a failed renewal) to fit inside the cert.
		return nil, errors.New("ocsp: responder certificate validity must be at least 4× the response validity")
	case opts.CacheSize < 0 || opts.LookupTimeout < 0 || opts.RetryBackoff < 0:
		return nil, errors.New("ocsp: negative cache size, timeout or backoff")
	}

	r := &Responder{
		ca:           caCert,
		caSigner:     caSigner,
		caSigAlg:     sigAlg,
		source:       source,
		opts:         opts,
		clock:        opts.Clock,
		log:          opts.Logger,
		issuerHashes: make(map[crypto.Hash][2][]byte, len(hashOIDs)),
		cache:        newResponseCache(opts.CacheSize),
		absent:       newResponseCache(max(opts.CacheSize/8, 1)),
	}
	if r.clock == nil {
		r.clock = systemClock{}
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(caCert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("%w: decoding public key: %w", ErrInvalidIssuer, err)
	}
	for h := range hashOIDs {
		nh, kh := h.New(), h.New()
		nh.Write(caCert.RawSubject)
		kh.Write(spki.PublicKey.RightAlign())
		r.issuerHashes[h] = [2][]byte{nh.Sum(nil), kh.Sum(nil)}
	}
	return r, nil
}

// Respond answers one DER-encoded OCSP request with a DER-encoded OCSP response. The returned bytes are always
// a response to send: when it is not "successful" (malformedRequest, unauthorized, tryLater, internalError) the
// error says why and wraps ErrMalformedRequest, ErrUnauthorized, ErrTryLater or ErrInvalidStatus.
func (r *Responder) Respond(ctx context.Context, reqDER []byte) ([]byte, error) {
	res, err := r.respond(ctx, reqDER)
	return res.der, err
}

// Invalidate drops cached responses for serial after a revocation, so this instance answers "revoked" at once.
// Other instances learn of it through the revocation generation (Options.Generation) within GenerationInterval;
// relying parties may cache a response until its nextUpdate anyway.
func (r *Responder) Invalidate(serial *big.Int) {
	if serial == nil {
		return
	}
	r.invalidations.Add(1)
	r.cache.remove(serial)
	r.absent.remove(serial)
	// The responder's own certificate revoked (an admin suspects its key): stop signing with it. Its responses
	// carry id-pkix-ocsp-nocheck, so relying parties never see the revocation; only replacing it helps.
	if d := r.delegate.Load(); d != nil && d.cert.SerialNumber.Cmp(serial) == 0 && r.delegate.CompareAndSwap(d, nil) {
		r.clearCaches()
	}
}

// cacheCurrent reports whether cached responses may be served: always without a GenerationSource; otherwise when
// the revocation generation was read less than GenerationInterval ago, reading it now if not (one read shared by
// concurrent callers). A new generation drops the serials revoked since (or the whole cache when they are not all
// known); a failed read bypasses the cache for this request.
func (r *Responder) cacheCurrent(ctx context.Context) bool {
	if r.opts.Generation == nil {
		return true
	}
	// A wall clock stepped back would otherwise keep the last read young for the length of the step; a reading
	// earlier than the last read's has no known age, and is read again.
	if at := r.genCheckedAt.Load(); at != nil {
		if age := r.clock.Now().Sub(*at); age >= 0 && age < r.opts.GenerationInterval {
			return true
		}
	}
	ch := r.genFlight.DoChan("generation", func() (any, error) {
		started := r.clock.Now()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.LookupTimeout)
		defer cancel()
		r.genReads.Add(1)
		r.genMu.Lock()
		after, init := r.genSeen, r.genInit
		r.genMu.Unlock()
		g, serials, complete, err := r.opts.Generation.RevokedSince(fctx, after)
		if err != nil {
			return nil, err
		}
		switch {
		case !init || !complete:
			// First read, or too far behind to know which serials changed: drop everything. The responder's own
			// certificate may be among them (revoked on another instance): ask the store, one read.
			r.invalidations.Add(1)
			r.clearCaches()
			if d := r.delegate.Load(); d != nil && init {
				if st, err := r.source.CertificateStatus(fctx, d.cert.SerialNumber); err == nil && st.Revoked {
					r.Invalidate(d.cert.SerialNumber)
				}
			}
		case g != after:
			for _, s := range serials {
				r.Invalidate(s) // also keeps responses computed before the bump out of the cache
			}
		}
		r.genMu.Lock()
		r.genSeen, r.genInit = g, true
		r.genMu.Unlock()
		r.genCheckedAt.Store(&started)
		return nil, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			r.log.WarnContext(ctx, "OCSP: reading the revocation generation failed; answering from the store", "error", res.Err)
			return false
		}
		return true
	case <-ctx.Done():
		return false
	}
}

// clearCaches drops every cached response, the remembered "unknown" answers too: they are signed by the same
// responder key.
func (r *Responder) clearCaches() {
	r.cache.clear()
	r.absent.clear()
}

// Stats returns counters since start.
func (r *Responder) Stats() Stats {
	return Stats{
		CacheHits:       r.hits.Load(),
		CacheMisses:     r.missCount.Load(),
		ResponsesSigned: r.signed.Load(),
		ResponderCerts:  r.certs.Load(),
		CacheEntries:    r.cache.len(),
		AbsentEntries:   r.absent.len(),
		GenerationReads: r.genReads.Load(),
	}
}

// Pre-encoded non-successful responses (RFC 6960 §4.2.1). They are unsigned by definition.
var (
	respMalformed    = &cachedResponse{der: xocsp.MalformedRequestErrorResponse}
	respUnauthorized = &cachedResponse{der: xocsp.UnauthorizedErrorResponse}
	respTryLater     = &cachedResponse{der: xocsp.TryLaterErrorResponse}
	respInternal     = &cachedResponse{der: xocsp.InternalErrorErrorResponse}
)

// respond is Respond with the metadata the HTTP handler needs for caching headers. The *cachedResponse is
// never nil; only successful responses carry times and an ETag.
func (r *Responder) respond(ctx context.Context, reqDER []byte) (*cachedResponse, error) {
	req, err := parseRequest(reqDER)
	if err != nil {
		return respMalformed, err
	}
	hashes, ok := r.issuerHashes[req.hash]
	if !ok || !bytes.Equal(req.nameHash, hashes[0]) || !bytes.Equal(req.keyHash, hashes[1]) {
		return respUnauthorized, ErrUnauthorized
	}
	if req.nonceValue == nil {
		return r.shared(ctx, req)
	}
	// A nonce makes the response unique to this request: signed for it alone, never cached, never shared. Its
	// status is the shared answer's, read (and cached) as for a request without a nonce and as current (every
	// revocation drops it): otherwise a nonce, which any client may add, would be a way past the cache to the
	// store, one read per request.
	plain := *req
	plain.nonceValue = nil
	res, err := r.shared(ctx, &plain)
	if err != nil {
		return res, err
	}
	return r.answer(ctx, req, res.status, false, 0)
}

// shared answers a request without a nonce: from the cache when it holds a current answer, else from one lookup
// and signature that concurrent requests for the serial share, cached for the next.
func (r *Responder) shared(ctx context.Context, req *request) (*cachedResponse, error) {
	key := cacheKey(req.hash, req.serial)
	if r.cacheCurrent(ctx) {
		now := r.clock.Now()
		if c := r.cache.get(key, now); c != nil {
			r.hits.Add(1)
			return c, nil
		}
		if c := r.absent.get(key, now); c != nil {
			r.hits.Add(1)
			return c, nil
		}
	}
	r.missCount.Add(1)
	epoch := r.invalidations.Load()
	// Concurrent misses for one serial share a lookup and a signature. The epoch in the key keeps a request
	// that arrives after Invalidate from joining a lookup that started before it.
	ch := r.misses.DoChan(key+"/"+strconv.FormatUint(epoch, 10), func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.LookupTimeout)
		defer cancel()
		res, err := r.build(fctx, req, true, epoch)
		return res, err
	})
	select {
	case res := <-ch:
		return res.Val.(*cachedResponse), res.Err
	case <-ctx.Done():
		return respTryLater, fmt.Errorf("%w: %w", ErrTryLater, ctx.Err())
	}
}

// build looks up the status and signs a fresh response; when cacheable and no Invalidate happened since epoch
// was read, the response is cached.
func (r *Responder) build(ctx context.Context, req *request, cacheable bool, epoch uint64) (*cachedResponse, error) {
	// RFC 5280 §4.1.2.2 serials are positive and at most 20 octets; we never issued anything else, so the
	// store is not asked about it.
	st := Status{Absent: true}
	if b := req.serial.Bytes(); req.serial.Sign() > 0 && len(b) <= 20 {
		var err error
		if st, err = r.source.CertificateStatus(ctx, req.serial); err != nil {
			return respTryLater, fmt.Errorf("%w: looking up serial %x: %w", ErrTryLater, req.serial, err)
		}
	}
	return r.answer(ctx, req, st, cacheable, epoch)
}

// answer signs a fresh response saying st for req; when cacheable and no Invalidate happened since epoch was
// read, the response is cached.
func (r *Responder) answer(ctx context.Context, req *request, st Status, cacheable bool, epoch uint64) (*cachedResponse, error) {
	single, err := r.singleStatus(st)
	if err != nil {
		return respInternal, fmt.Errorf("serial %x: %w", req.serial, err)
	}
	d, err := r.currentDelegate(ctx)
	if err != nil {
		return respTryLater, fmt.Errorf("%w: %w", ErrTryLater, err)
	}
	now := r.clock.Now()
	signed := now.UTC().Truncate(time.Second)
	single.thisUpdate = signed.Add(-r.opts.Backdate)
	single.nextUpdate = d.nextUpdate(signed, r.opts.ResponseValidity)
	der, err := marshalResponse(d, req, single, now)
	if err != nil {
		return respInternal, err
	}
	r.signed.Add(1)
	sum := sha256.Sum256(der)
	res := &cachedResponse{
		der:        der,
		thisUpdate: single.thisUpdate,
		nextUpdate: single.nextUpdate,
		staleAt:    single.nextUpdate.Add(-r.opts.CacheMargin),
		etag:       `"` + hex.EncodeToString(sum[:16]) + `"`,
		public:     req.nonceValue == nil,
		status:     st,
	}
	if end := now.Add(AbsentTTL); st.Absent && !st.Known && end.Before(res.staleAt) {
		// HTTP caches are told the same lifetime as the instance keeps it.
		res.staleAt = end
	}
	// "Unknown" answers are kept apart, so that random serials cannot evict real entries, and only for serials
	// without any record (see Status.Absent), for AbsentTTL. One with a pending record is not remembered: its
	// certificate may be delivered, on any instance, the next moment.
	switch {
	case !cacheable || r.invalidations.Load() != epoch:
	case st.Known:
		r.cache.put(cacheKey(req.hash, req.serial), res, now)
	case st.Absent:
		r.absent.put(cacheKey(req.hash, req.serial), res, now)
	}
	return res, nil
}

// singleStatus validates a source status and maps it to the wire status.
func (r *Responder) singleStatus(st Status) (singleStatus, error) {
	switch {
	case !st.Known:
		return singleStatus{status: statusUnknown}, nil
	case !st.Revoked:
		return singleStatus{status: statusGood}, nil
	case st.RevokedAt.IsZero():
		return singleStatus{}, fmt.Errorf("%w: revoked without a revocation time", ErrInvalidStatus)
	case st.Reason < 0 || st.Reason > 10 || st.Reason == 7 || st.Reason == 8:
		// 7 is unassigned; 8 (removeFromCRL) only has meaning in delta CRLs.
		return singleStatus{}, fmt.Errorf("%w: reason code %d", ErrInvalidStatus, st.Reason)
	}
	return singleStatus{status: statusRevoked, revokedAt: st.RevokedAt.Truncate(time.Second), reason: st.Reason}, nil
}

// renewalTimeout bounds one renewal of the responder certificate: two store writes and a Key Vault signature, each
// of which may spend its own retries (Key Vault's call timeout alone is 10 s per attempt).
const renewalTimeout = time.Minute

// renewalWait is how long an answer the current responder certificate still covers waits for its renewal: far
// beyond a healthy renewal, far below a relying party's patience.
const renewalWait = 2 * time.Second

// currentDelegate returns a responder key and certificate, renewing at half-life. Renewal is shared between
// concurrent callers (one CA signature per renewal); if it fails, the old delegate is used while responses
// still fit inside its certificate, and further attempts wait RetryBackoff.
//
// In the CA's last ResponderCertValidity the certificate ends with the CA and is not renewed: the responder keeps
// signing with it and cuts each response's nextUpdate to its notAfter, which is the CA's (delegate.nextUpdate).
// (In its last CacheMargin a response is already stale when signed, so it is not served from the cache: each
// request signs anew with the in-memory key, still without the CA key.) Signing those last responses with the CA
// key instead would also be valid, but costs a Key Vault signature per response. Once the CA has expired every
// request is tryLater, with no renewal attempt.
func (r *Responder) currentDelegate(ctx context.Context) (*delegate, error) {
	now := r.clock.Now()
	if !now.Before(r.ca.NotAfter) {
		return nil, caExpired(r.ca)
	}
	validity := r.opts.ResponseValidity
	d := r.delegate.Load()
	if d != nil && now.Before(d.renewAt) && d.usableFor(now, validity) {
		return d, nil
	}
	r.renewMu.Lock()
	lastErr := r.renewErr
	inBackoff := lastErr != nil && now.Before(r.renewFailedAt.Add(r.opts.RetryBackoff))
	r.renewMu.Unlock()
	if inBackoff {
		if d.usableFor(now, validity) {
			return d, nil
		}
		return nil, lastErr
	}

	ch := r.renewals.DoChan("renew", func() (any, error) {
		now := r.clock.Now()
		if cur := r.delegate.Load(); cur != nil && now.Before(cur.renewAt) && cur.usableFor(now, validity) {
			return cur, nil // renewed by a flight that finished after our first check
		}
		// The flight is shared: it must not end because the caller that started it hung up (its failure would
		// hold every other caller to RetryBackoff), and it must not outlive its own deadline either.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renewalTimeout)
		defer cancel()
		nd, err := newDelegate(ctx, r.opts.Recorder, r.ca, r.caSigner, r.caSigAlg, r.opts.KeyType, r.opts.ResponderCertValidity, r.opts.Backdate, now)
		r.renewMu.Lock()
		if err != nil {
			r.renewErr, r.renewFailedAt = fmt.Errorf("renewing OCSP responder certificate: %w", err), now
		} else {
			r.renewErr = nil
		}
		r.renewMu.Unlock()
		if err != nil {
			r.log.WarnContext(ctx, "OCSP responder certificate renewal failed", "error", err)
			return nil, err
		}
		r.certs.Add(1)
		r.delegate.Store(nd)
		r.log.InfoContext(ctx, "issued OCSP responder certificate",
			"serial", nd.cert.SerialNumber.Text(16), "not_after", nd.cert.NotAfter)
		return nd, nil
	})
	var stale <-chan time.Time
	if d.usableFor(now, validity) {
		// The current certificate still covers this answer: wait for the renewal only briefly, then sign with the
		// current one and let the renewal finish (or fail, and be retried after RetryBackoff) on its own.
		t := time.NewTimer(renewalWait)
		defer t.Stop()
		stale = t.C
	}
	select {
	case <-stale:
		return d, nil
	case res := <-ch:
		if res.Err == nil {
			return res.Val.(*delegate), nil
		}
		if d.usableFor(r.clock.Now(), validity) {
			r.log.WarnContext(ctx, "OCSP responder certificate renewal failed; using current certificate",
				"error", res.Err, "not_after", d.cert.NotAfter)
			return d, nil
		}
		r.log.ErrorContext(ctx, "OCSP responder certificate unavailable", "error", res.Err)
		return nil, fmt.Errorf("renewing OCSP responder certificate: %w", res.Err)
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for OCSP responder certificate: %w", ctx.Err())
	}
}
