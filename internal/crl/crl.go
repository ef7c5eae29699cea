// Package crl builds, caches and serves the CA's full certificate revocation list (RFC 5280 §5).
//
// The package is pure: it reads revocations through Source, allocates CRL numbers through Counter and signs
// through a crypto.Signer (in production a Key Vault key), so it can be tested without storage or network.
// A Publisher makes exactly one signature per generation and shares each generation between concurrent
// callers, so a burst of CRL downloads costs at most one Key Vault operation.
package crl

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"golang.org/x/sync/singleflight"
)

// Defaults for Options. A 24 h CRL regenerated at half-life means relying parties never hold a CRL that is more
// than 12 h older than the newest one, and Key Vault is asked for at most a few signatures a day when nothing is
// revoked.
const (
	DefaultValidity        = 24 * time.Hour
	DefaultRetryBackoff    = 30 * time.Second
	DefaultGenerateTimeout = 2 * time.Minute
	// MinValidity keeps the half-life refresh from degenerating into a generation per request.
	MinValidity = 10 * time.Minute
	// DefaultGenerationInterval is how often a Publisher reads the shared revocation generation (see
	// Options.Generation): a revocation on another instance reaches this instance's CRL within it.
	DefaultGenerationInterval = 30 * time.Second
	// DefaultStaleWait is how long a caller waits for a regeneration when a still-valid CRL is cached (see
	// Options.StaleWait): far beyond a healthy generation, far below a relying party's patience.
	DefaultStaleWait = 5 * time.Second
)

// GenerationSource reads the revocation generation that every revocation, on any instance, increments.
type GenerationSource interface {
	RevocationGeneration(ctx context.Context) (uint64, error)
}

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrUnavailable means no CRL can be served: none was ever generated, or the last one expired and
	// regeneration fails. The HTTP handler maps it to 503.
	ErrUnavailable = errors.New("crl: no valid CRL available")
	// ErrInvalidEntry means Source returned an entry the CRL cannot represent (nil or non-positive serial,
	// zero revocation time, reason code not allowed in a full CRL). It is a storage contract violation; the
	// generation fails rather than publish a CRL that silently drops or misstates a revocation.
	ErrInvalidEntry = errors.New("crl: invalid revocation entry")
	// ErrInvalidIssuer means the CA certificate cannot sign CRLs (no cRLSign key usage or no subject key
	// identifier) or its key is of an unsupported type.
	ErrInvalidIssuer = errors.New("crl: CA certificate cannot issue CRLs")
	// ErrKeyMismatch means the signer's public key is not the CA certificate's key.
	ErrKeyMismatch = errors.New("crl: signer key does not match CA certificate")
	// ErrInvalidNumber means the Counter returned a CRL number RFC 5280 §5.2.3 does not allow
	// (nil, negative or longer than 20 octets), or reported a current number below one it had just handed out.
	ErrInvalidNumber = errors.New("crl: invalid CRL number")
)

// errSuperseded means a higher CRL number was handed out while a generation attempt read the revocation index;
// generate starts over rather than sign it.
var errSuperseded = errors.New("crl: CRL number superseded")

// Entry is one revoked certificate as the storage layer reports it.
type Entry struct {
	Serial    *big.Int
	RevokedAt time.Time
	// Reason is the RFC 5280 §5.3.1 CRLReason code; 0 (unspecified) is encoded by omitting the extension.
	Reason int
	// NotAfter is the certificate's notAfter; zero when unknown, and then the entry is always listed.
	NotAfter time.Time
}

// Source lists revocations. It is implemented by the storage layer over its revocation index.
type Source interface {
	// RevokedEntries returns every revoked certificate, expired ones included (the complete list, not a delta):
	// the publisher decides when an entry leaves the CRL. The order does not matter and duplicates are tolerated.
	RevokedEntries(ctx context.Context) ([]Entry, error)
}

// Counter allocates CRL numbers. RFC 5280 §5.2.3 requires them to increase strictly for a given CA, and several
// function instances generate CRLs independently, so the storage layer implements it with an ETag-protected
// counter shared by all instances.
type Counter interface {
	// NextCRLNumber returns a number greater than every number it returned before, to any caller.
	NextCRLNumber(ctx context.Context) (*big.Int, error)
	// CurrentCRLNumber returns the last number NextCRLNumber handed out to any caller (0 if none) without
	// allocating one. A Publisher reads it after the revocation index to learn whether a higher number was
	// allocated meanwhile (see Publisher.generate).
	CurrentCRLNumber(ctx context.Context) (*big.Int, error)
}

// Clock is the time source, injected so tests can move time.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// MemoryCounter is an in-process Counter for tests and single-instance local runs. The zero value is ready and
// returns 1 first.
type MemoryCounter struct {
	mu   sync.Mutex
	last big.Int
}

// NextCRLNumber returns the previous number plus one.
func (c *MemoryCounter) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("allocating CRL number: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last.Add(&c.last, big.NewInt(1))
	return new(big.Int).Set(&c.last), nil
}

// CurrentCRLNumber returns the last number NextCRLNumber returned, or 0 before the first.
func (c *MemoryCounter) CurrentCRLNumber(ctx context.Context) (*big.Int, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("reading CRL number: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return new(big.Int).Set(&c.last), nil
}

// CRL is one signed CRL and the metadata needed to serve it. It is immutable once returned.
type CRL struct {
	DER        []byte
	PEM        []byte
	Number     *big.Int
	ThisUpdate time.Time // Options.Backdate before Signed
	NextUpdate time.Time
	// Signed is when the CRL was made: its validity and refresh run from here.
	Signed time.Time
	// ETag is a strong entity tag of DER (quoted, ready for the ETag header).
	ETag string
	// Entries is the number of revoked certificates listed.
	Entries int
}

// RefreshAt is when the Publisher stops serving this CRL as fresh: half-way through its validity.
func (c *CRL) RefreshAt() time.Time {
	return c.Signed.Add(c.NextUpdate.Sub(c.Signed) / 2)
}

// Options tune a Publisher. Zero values select the defaults.
type Options struct {
	// Validity is NextUpdate − the signing time (thisUpdate is Backdate earlier). Default
	// DefaultValidity; at least MinValidity.
	Validity time.Duration
	// Backdate is how far thisUpdate lies before the signing: the certificates' back-date (AZSCEP_BACKDATE), so
	// that a relying party whose clock runs behind accepts the CRL as it accepts the certificates. Default
	// ThisUpdateBackdate.
	Backdate time.Duration
	// RetryBackoff is the pause after a failed generation before another is attempted while a still-valid
	// CRL is being served (or an error returned); it keeps an outage of the store or Key Vault from turning
	// every download into a retry. Default DefaultRetryBackoff.
	RetryBackoff time.Duration
	// GenerateTimeout bounds one generation (store read + counter + signature, and any restarts when another
	// instance took a higher CRL number meanwhile; see Publisher.generate) and one read of Generation.
	// Default DefaultGenerateTimeout.
	GenerateTimeout time.Duration
	// Generation, when set, is read at most once per GenerationInterval (by the Current call that finds the last
	// read too old; concurrent callers share that one read); a new value invalidates the CRL as a local revocation
	// would, so revocations made by other instances are published here within the interval. The read is bounded by
	// GenerateTimeout, but a caller waits for it only until its own context ends and then serves what is cached. A
	// failed read is logged once and retried one GenerationInterval after it failed.
	Generation GenerationSource
	// GenerationInterval defaults to DefaultGenerationInterval.
	GenerationInterval time.Duration
	// StaleWait bounds how long a caller waits for a regeneration in flight while the cached CRL is still valid
	// (before its NextUpdate) and no revocation has invalidated it (the half-life refresh); then it gets the cached
	// one, and the regeneration replaces it when it finishes. A store or Key Vault in trouble thus slows no routine
	// download beyond it; after a revocation the caller waits for the CRL that lists it. Default DefaultStaleWait.
	StaleWait time.Duration
	// Clock defaults to the system clock.
	Clock Clock
	// Logger receives generation failures. Default slog.Default().
	Logger *slog.Logger
}

// ThisUpdateBackdate is how far a CRL's thisUpdate lies before its signing by default (Options.Backdate), as
// certificates' notBefore does.
const ThisUpdateBackdate = 5 * time.Minute

// Publisher keeps the current CRL and regenerates it when it is missing, past half its validity, or
// invalidated by a revocation. It is safe for concurrent use.
type Publisher struct {
	issuer   *x509.Certificate
	signer   crypto.Signer
	sigAlg   x509.SignatureAlgorithm
	source   Source
	counter  Counter
	validity time.Duration
	backdate time.Duration // Options.Backdate
	backoff  time.Duration
	timeout  time.Duration
	stale    time.Duration
	clock    Clock
	log      *slog.Logger

	gen         GenerationSource
	genInterval time.Duration
	genFlight   singleflight.Group // the generation read in progress, shared by every caller that finds one due
	genMu       sync.Mutex         // guards the fields below; never held across a store call
	genNext     time.Time          // when the generation is next due to be read; zero: now
	genSeen     uint64
	genInit     bool

	mu       sync.Mutex
	cur      *CRL
	curEpoch uint64 // epoch at which cur's flight started
	epoch    uint64 // incremented by Invalidate
	flight   *flight
	failErr  error
	failedAt time.Time

	waiters atomic.Int32 // callers blocked on a flight; lets tests line up races deterministically
}

// flight is one in-progress generation that concurrent callers wait on.
type flight struct {
	done  chan struct{}
	epoch uint64
	crl   *CRL
	err   error
}

// NewPublisher checks that signer holds the CA certificate's key and that the certificate may sign CRLs, so
// a misconfiguration fails at start-up rather than at the first download.
func NewPublisher(caCert *x509.Certificate, signer crypto.Signer, source Source, counter Counter, opts Options) (*Publisher, error) {
	switch {
	case caCert == nil:
		return nil, fmt.Errorf("%w: nil CA certificate", ErrInvalidIssuer)
	case signer == nil || source == nil || counter == nil:
		return nil, errors.New("crl: signer, source and counter are required")
	case caCert.KeyUsage != 0 && caCert.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, fmt.Errorf("%w: key usage lacks cRLSign", ErrInvalidIssuer)
	case len(caCert.SubjectKeyId) == 0:
		return nil, fmt.Errorf("%w: no subject key identifier", ErrInvalidIssuer)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(caCert.PublicKey) {
		return nil, ErrKeyMismatch
	}
	sigAlg, err := custody.SignatureAlgorithmFor(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidIssuer, err)
	}
	p := &Publisher{
		issuer:   caCert,
		signer:   signer,
		sigAlg:   sigAlg,
		source:   source,
		counter:  counter,
		validity: cmp.Or(opts.Validity, DefaultValidity),
		backdate: cmp.Or(opts.Backdate, ThisUpdateBackdate),
		backoff:  cmp.Or(opts.RetryBackoff, DefaultRetryBackoff),
		timeout:  cmp.Or(opts.GenerateTimeout, DefaultGenerateTimeout),
		stale:    cmp.Or(opts.StaleWait, DefaultStaleWait),
		clock:    opts.Clock,
		log:      opts.Logger,

		gen:         opts.Generation,
		genInterval: cmp.Or(opts.GenerationInterval, DefaultGenerationInterval),
	}
	if p.validity < MinValidity {
		return nil, fmt.Errorf("crl: validity %v is below the minimum %v", p.validity, MinValidity)
	}
	if p.backoff < 0 || p.timeout < 0 || p.stale < 0 {
		return nil, errors.New("crl: negative retry backoff, timeout or stale wait")
	}
	if p.clock == nil {
		p.clock = systemClock{}
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	return p, nil
}

// Invalidate marks the current CRL as outdated after a revocation, so the next Current call regenerates it.
// A generation already running when Invalidate is called may have read the revocation index before the
// revocation; its result is kept only until a new generation succeeds.
func (p *Publisher) Invalidate() {
	p.mu.Lock()
	p.epoch++
	p.failErr = nil // a new revocation deserves an immediate attempt, not the failure backoff
	p.mu.Unlock()
}

// Current returns the CRL to serve. It regenerates when there is none, when more than half of its validity has
// passed, or after Invalidate; concurrent callers wait for the same generation. If regeneration fails, or (for the
// half-life refresh, not after Invalidate) is still running after StaleWait, while the cached CRL has not reached
// NextUpdate, the cached CRL is returned (a failure is logged); otherwise the error wraps ErrUnavailable.
func (p *Publisher) Current(ctx context.Context) (*CRL, error) {
	p.followGeneration(ctx)
	p.mu.Lock()
	myEpoch := p.epoch
	p.mu.Unlock()
	var staleTimer *time.Timer
	var stale <-chan time.Time
	for {
		p.mu.Lock()
		now := p.clock.Now()
		if p.freshLocked(now) {
			c := p.cur
			p.mu.Unlock()
			return c, nil
		}
		if p.flight == nil && p.failErr != nil && now.Before(p.failedAt.Add(p.backoff)) {
			c, err := p.staleOrErrLocked(now, p.failErr)
			p.mu.Unlock()
			return c, err
		}
		f := p.flight
		if f == nil {
			f = p.startFlightLocked(ctx)
		}
		// Only a CRL that is merely old may stand in for a slow regeneration: one that a revocation invalidated
		// would be served without that revocation, and cached by relying parties until its half-life.
		if staleTimer == nil && p.cur != nil && now.Before(p.cur.NextUpdate) && p.curEpoch == p.epoch {
			staleTimer = time.NewTimer(p.stale) // once per call: going round again does not extend the wait
			defer staleTimer.Stop()
			stale = staleTimer.C
		}
		p.mu.Unlock()

		p.waiters.Add(1)
		select {
		case <-f.done:
		case <-stale:
			// The regeneration is slow (the store or Key Vault in trouble) and the cached CRL is still valid:
			// serve it rather than hold the relying party; the flight replaces it when it finishes.
			p.waiters.Add(-1)
			p.mu.Lock()
			c, now := p.cur, p.clock.Now()
			p.mu.Unlock()
			if now.Before(c.NextUpdate) {
				return c, nil
			}
			// It was valid when the wait began and has expired since: relying parties reject it, so wait for the
			// regeneration after all (the timer fired once; going round sets no new one).
			stale = nil
			continue
		case <-ctx.Done():
			p.waiters.Add(-1)
			return nil, fmt.Errorf("waiting for CRL generation: %w", ctx.Err())
		}
		p.waiters.Add(-1)
		p.mu.Lock()
		if f.err != nil {
			c, err := p.staleOrErrLocked(p.clock.Now(), f.err)
			p.mu.Unlock()
			return c, err
		}
		if f.epoch >= myEpoch {
			// The generation read the revocation index after every Invalidate this caller could have
			// observed. Serve the newest CRL we have (cur is never older than f.crl).
			c := p.cur
			p.mu.Unlock()
			return c, nil
		}
		p.mu.Unlock()
		// We joined a generation that started before an Invalidate we must honour: go round once more.
	}
}

// followGeneration reads the revocation generation when it is due (see Options.Generation), and invalidates the
// CRL when it changed since the last read (another instance revoked something).
//
// Concurrent callers share one read, detached from their cancellation and bounded by GenerateTimeout. Each waits
// for it only as long as its own context allows and then goes on to Current's usual logic (a fresh or, after a
// failed regeneration, still valid cached CRL is served), so a hanging generation read never holds a download
// past its own deadline. A caller whose context has already ended starts no read. A failed read is logged once
// (not per caller) and moves the next read one interval on, so a burst of downloads during an outage costs one
// store read per interval.
func (p *Publisher) followGeneration(ctx context.Context) {
	if p.gen == nil || ctx.Err() != nil || !p.generationDue() {
		return
	}
	ch := p.genFlight.DoChan("generation", func() (any, error) {
		if !p.generationDue() {
			return nil, nil // a read that finished since our caller looked is recent enough
		}
		started := p.clock.Now()
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		defer cancel()
		g, err := p.gen.RevocationGeneration(gctx)

		p.genMu.Lock()
		defer p.genMu.Unlock()
		if err != nil {
			p.log.WarnContext(ctx, "CRL: reading the revocation generation failed; serving the cached CRL",
				"error", err, "retry_in", p.genInterval)
			p.genNext = p.clock.Now().Add(p.genInterval)
			return nil, err
		}
		if !p.genInit || g != p.genSeen {
			// Before genNext moves on: a caller that skips the read must see the new epoch. The first successful
			// read has no baseline: a CRL built before it (an earlier read failed) may predate revocations.
			p.Invalidate()
		}
		p.genSeen, p.genInit, p.genNext = g, true, started.Add(p.genInterval)
		return nil, nil
	})
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// generationDue reports whether the revocation generation should be read now.
func (p *Publisher) generationDue() bool {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	return !p.clock.Now().Before(p.genNext)
}

// servedFresh reports whether c is still the CRL Current serves without regenerating: the newest, no revocation
// known since it was made, before its refresh point. A CRL Current returns otherwise stands in for one it could not
// make (yet): the handler lets no cache keep it.
func (p *Publisher) servedFresh(c *CRL) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return c == p.cur && p.freshLocked(p.clock.Now())
}

func (p *Publisher) freshLocked(now time.Time) bool {
	return p.cur != nil && p.curEpoch == p.epoch && now.Before(p.cur.RefreshAt())
}

func (p *Publisher) staleOrErrLocked(now time.Time, cause error) (*CRL, error) {
	if p.cur != nil && now.Before(p.cur.NextUpdate) {
		return p.cur, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, cause)
}

// startFlightLocked runs a generation detached from the caller's cancellation (other callers may be waiting on
// it) but bounded by GenerateTimeout; it keeps the caller's context values for tracing.
func (p *Publisher) startFlightLocked(ctx context.Context) *flight {
	f := &flight{done: make(chan struct{}), epoch: p.epoch}
	p.flight = f
	go func() {
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		defer cancel()
		c, err := p.generate(gctx)

		p.mu.Lock()
		now := p.clock.Now()
		if err != nil {
			p.failErr, p.failedAt = err, now
			if p.cur != nil && now.Before(p.cur.NextUpdate) {
				p.log.WarnContext(ctx, "CRL regeneration failed; serving cached CRL",
					"error", err, "crl_number", p.cur.Number.String(), "next_update", p.cur.NextUpdate)
			} else {
				p.log.ErrorContext(ctx, "CRL generation failed; no valid CRL to serve", "error", err)
			}
		} else {
			p.failErr = nil
			// Never replace a CRL with one carrying a lower number (RFC 5280 §5.2.3).
			if p.cur == nil || c.Number.Cmp(p.cur.Number) > 0 {
				p.cur, p.curEpoch = c, f.epoch
			}
		}
		f.crl, f.err = c, err
		p.flight = nil
		p.mu.Unlock()
		close(f.done)
	}()
	return f
}

// generate builds and signs one CRL, starting over with a new number until an attempt is not superseded or ctx
// (GenerateTimeout) ends.
//
// Allocating the number before reading the revocation index is not enough on its own: instances share the
// counter and the index, and reading the index takes seconds at 100k entries. If instance A takes N and is still
// reading when B takes N+1, reads and publishes, and a revocation commits before A's read reaches it, CRL N lists
// the revocation and the later CRL N+1 does not, while relying parties take N+1 to supersede N (RFC 5280
// §5.2.3). So each attempt reads the counter again after reading the index (attempt) and signs only if no higher
// number was handed out meanwhile; otherwise it signs nothing and starts over after a jittered pause of one to two
// times its attempt (retryPause), so instances regenerating at once do not keep superseding one another.
//
// Invariant: for any two published CRLs X < Y, Y's number was allocated after X's check (at the check the counter
// still stood at X), and Y's read began after its number was allocated, so after X's read ended; the index only
// grows, so CRL Y lists every revocation CRL X lists. A superseded attempt costs store reads, never a signature.
func (p *Publisher) generate(ctx context.Context) (*CRL, error) {
	for n := 1; ; n++ {
		started := time.Now()
		c, err := p.attempt(ctx)
		if !errors.Is(err, errSuperseded) {
			return c, err
		}
		pause := retryPause(time.Since(started))
		p.log.DebugContext(ctx, "CRL generation superseded by another instance; starting over",
			"error", err, "attempt", n, "pause", pause)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("generating CRL: gave up after %d superseded attempts (%w): %w", n, err, ctx.Err())
		}
	}
}

// minRetryPause is the shortest pause before a superseded generation starts over.
const minRetryPause = 10 * time.Millisecond

// retryPause is the jittered pause before a superseded generation starts over: between one and two times the last
// attempt's duration. The instance that superseded this one took its number before this one's check, so it is at
// most one read from its own check; a pause shorter than a read would take the next number under it and supersede
// it in turn, and instances doing that to each other would never publish. The generation's deadline bounds the sum.
func retryPause(took time.Duration) time.Duration {
	d := max(took, minRetryPause)
	return d + mrand.N(d)
}

// attempt allocates a CRL number, reads the revocation index, checks that the counter has not moved past the
// number and only then signs. It returns an error wrapping errSuperseded, having signed nothing, if it has.
func (p *Publisher) attempt(ctx context.Context) (*CRL, error) {
	num, err := p.counter.NextCRLNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocating CRL number: %w", err)
	}
	if num == nil || num.Sign() < 0 || len(num.Bytes()) > 20 || (len(num.Bytes()) == 20 && num.Bytes()[0]&0x80 != 0) {
		return nil, ErrInvalidNumber
	}
	entries, err := p.source.RevokedEntries(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading revoked certificates: %w", err)
	}
	now := p.clock.Now().UTC().Truncate(time.Second)
	list, err := revocationEntries(current(entries, now, p.validity))
	if err != nil {
		return nil, err
	}
	cur, err := p.counter.CurrentCRLNumber(ctx)
	switch {
	case err != nil:
		return nil, fmt.Errorf("re-reading CRL number: %w", err)
	case cur == nil || cur.Cmp(num) < 0:
		return nil, fmt.Errorf("%w: counter reports %v after handing out %v", ErrInvalidNumber, cur, num)
	case cur.Cmp(num) > 0:
		return nil, fmt.Errorf("%w: number %v, counter at %v", errSuperseded, num, cur)
	}
	tmpl := &x509.RevocationList{
		SignatureAlgorithm: p.sigAlg,
		Number:             num,
		// Backdated like the certificates: OpenSSL's chain check allows no skew for a CRL's thisUpdate, so a
		// relying party whose clock runs seconds slow would otherwise find the CRL published after a revocation
		// "not yet valid" and fail the whole chain.
		ThisUpdate:                now.Add(-p.backdate),
		NextUpdate:                now.Add(p.validity),
		RevokedCertificateEntries: list,
	}
	der, err := create(tmpl, p.issuer, p.signer)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &CRL{
		DER:        der,
		PEM:        pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}),
		Number:     num,
		ThisUpdate: tmpl.ThisUpdate,
		NextUpdate: tmpl.NextUpdate,
		Signed:     now,
		ETag:       `"` + hex.EncodeToString(sum[:16]) + `"`,
		Entries:    len(list),
	}, nil
}

// create signs tmpl with exactly one call to signer and verifies the result against the issuer certificate
// before returning it, so a faulty remote signer cannot make us publish a CRL nobody can verify.
func create(tmpl *x509.RevocationList, issuer *x509.Certificate, signer crypto.Signer) ([]byte, error) {
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, signer)
	if err != nil {
		return nil, fmt.Errorf("signing CRL: %w", err)
	}
	parsed, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parsing signed CRL: %w", err)
	}
	if err := parsed.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("verifying signed CRL: %w", err)
	}
	return der, nil
}

// validReason reports whether code may appear in a full CRL: RFC 5280 §5.3.1 codes except 7 (unused) and
// 8 (removeFromCRL, delta CRLs only).
func validReason(code int) bool {
	return code >= 0 && code <= 10 && code != 7 && code != 8
}

// current drops the entries a CRL signed at now no longer needs to list. RFC 5280 §3.3 lets an entry leave once
// the certificate has expired, but not before it "appears on one regularly scheduled CRL issued beyond the revoked
// certificate's validity period": a relying party checking a signature made before the expiry, or one whose clock
// runs slow, must find the revocation on a CRL issued after it. The CRL in force at notAfter is re-signed within
// validity, so an entry listed until notAfter + validity is on at least one CRL signed after notAfter. Without
// dropping entries at all the CRL would grow for the CA's whole life.
func current(entries []Entry, now time.Time, validity time.Duration) []Entry {
	return slices.DeleteFunc(slices.Clone(entries), func(e Entry) bool {
		return !e.NotAfter.IsZero() && !now.Before(e.NotAfter.Add(validity))
	})
}

// revocationEntries validates, sorts by serial and de-duplicates (keeping the earliest revocation) the
// source's entries. Sorting makes the CRL deterministic for a given index.
func revocationEntries(entries []Entry) ([]x509.RevocationListEntry, error) {
	for i, e := range entries {
		switch {
		case e.Serial == nil || e.Serial.Sign() <= 0:
			return nil, fmt.Errorf("%w: entry %d has no positive serial", ErrInvalidEntry, i)
		case e.RevokedAt.IsZero():
			return nil, fmt.Errorf("%w: serial %x has no revocation time", ErrInvalidEntry, e.Serial)
		case !validReason(e.Reason):
			return nil, fmt.Errorf("%w: serial %x has reason code %d", ErrInvalidEntry, e.Serial, e.Reason)
		}
	}
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int {
		if c := a.Serial.Cmp(b.Serial); c != 0 {
			return c
		}
		return a.RevokedAt.Compare(b.RevokedAt)
	})
	out := make([]x509.RevocationListEntry, 0, len(sorted))
	for i, e := range sorted {
		if i > 0 && sorted[i-1].Serial.Cmp(e.Serial) == 0 {
			continue
		}
		out = append(out, x509.RevocationListEntry{
			SerialNumber:   e.Serial,
			RevocationTime: e.RevokedAt.UTC(),
			ReasonCode:     e.Reason,
		})
	}
	return out, nil
}
