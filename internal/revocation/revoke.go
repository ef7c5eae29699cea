// Package revocation revokes certificates — by an admin's request or by Intune's hourly revocation queue — and
// keeps the CRL and OCSP caches told. The Intune sync follows reliability.md §5.2: every request Intune hands
// over is persisted before it is acted on, results are persisted before they are uploaded, and anything not
// accepted by Intune stays for the next run.
package revocation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/ctxtime"
	"github.com/azscep/azscep/internal/store"
)

// RFC 5280 §5.3.1 CRLReason codes accepted for revocation (7 is unused; removeFromCRL (8) only applies to delta
// CRLs, which this CA does not publish).
var reasonNames = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 6: "certificateHold", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ReasonCode parses an RFC 5280 reason by name (any case) or decimal number. Hold and the CA-level reasons are
// refused: this CA does not suspend certificates and leaves are not CAs.
func ReasonCode(v string) (int, error) {
	v = strings.TrimSpace(v)
	for code, name := range reasonNames {
		if strings.EqualFold(v, name) || v == strconv.Itoa(code) {
			if code == 2 || code == 6 || code == 10 {
				return 0, fmt.Errorf("reason %s is not used for leaf certificates", name)
			}
			return code, nil
		}
	}
	return 0, fmt.Errorf("unknown revocation reason %q", v)
}

// ReasonName is the RFC 5280 name of a reason code.
func ReasonName(code int) string { return reasonNames[code] }

// IntuneReason is the reason recorded for revocations Intune requests: the device was retired or wiped, or the
// profile no longer targets it — the certificate is no longer needed, nothing was compromised.
const IntuneReason = 5 // cessationOfOperation

// ErrNotRevocable means the record cannot move to revoked (it does not exist, or it never had a signature).
var ErrNotRevocable = errors.New("revocation: certificate cannot be revoked")

// Outcome says what Revoke did.
type Outcome int

// Revoke outcomes.
const (
	Revoked Outcome = iota
	AlreadyRevoked
)

// generationDoc is the meta document holding the revocation generation: a counter every revocation increments,
// with the serials of the most recent revocations, which each instance reads at most once per check interval to
// learn which of its cached OCSP answers (and whether its CRL) another instance made stale.
const generationDoc = "revocation-generation"

// generationHistory is how many recent revocations the generation document names. An instance that fell further
// behind drops its whole OCSP cache instead of single serials.
const generationHistory = 256

// generation is the generationDoc's JSON.
type generation struct {
	N      uint64            `json:"n"`
	Recent []generationEntry `json:"recent,omitempty"` // oldest first, at most generationHistory
}

// generationEntry names one revocation: N is the generation of its latest bump, First of its first (omitted, in
// documents written before revocations bumped twice, it is N).
type generationEntry struct {
	N      uint64 `json:"n"`
	First  uint64 `json:"first,omitempty"`
	Serial string `json:"serial"`
}

// BumpGeneration records that serial was revoked: the generation is incremented and serial appended to the
// recent history, with an ETag-conditioned write retried on a concurrent bump after a jittered pause
// (contentionPause), so that concurrent revocations on several instances all get through instead of the slowest
// losing every race.
func BumpGeneration(ctx context.Context, st store.Meta, serial string) error {
	_, err := bumpGeneration(ctx, st, serial, nil)
	return err
}

// writtenGeneration is the generation document as a bump wrote it, with the ETag it got.
type writtenGeneration struct {
	g    generation
	etag string
}

// bumpChain carries the generation document from one revocation's bumps to the next one's, for a caller that
// revokes one certificate after another (the sync): each bump then starts from what the previous one wrote rather
// than from a read. It is not safe for concurrent use.
type bumpChain struct {
	last *writtenGeneration // nil before the first bump, or after one that failed
}

// bump is bumpGeneration from the chain's last write (c may be nil: no chain), which it then remembers.
func (c *bumpChain) bump(ctx context.Context, st store.Meta, serial string, last *writtenGeneration) (*writtenGeneration, error) {
	if last == nil && c != nil {
		last = c.last
	}
	w, err := bumpGeneration(ctx, st, serial, last)
	if c != nil {
		c.last = w
	}
	return w, err
}

// bumpGeneration is BumpGeneration, starting from last, the document as this caller's previous bump wrote it, when
// there is one: a revocation bumps twice in a row (after its index entry, then after its record), and the second
// bump then costs one write instead of a read and a write. A document moved since (another revocation's bump) fails
// that write, and the bump goes on as BumpGeneration, from a fresh read. It returns what it wrote.
func bumpGeneration(ctx context.Context, st store.Meta, serial string, last *writtenGeneration) (*writtenGeneration, error) {
	for attempt := 0; attempt < contentionAttempts; attempt++ {
		var g *generation
		var etag string
		if last != nil {
			g, etag = last.g.clone(), last.etag
		} else {
			if err := contentionPause(ctx, attempt); err != nil {
				return nil, fmt.Errorf("bumping revocation generation: %w", err)
			}
			var err error
			if g, etag, err = readGeneration(ctx, st); err != nil {
				return nil, err
			}
		}
		g.N++
		if n := len(g.Recent); n > 0 && g.Recent[n-1].Serial == serial {
			// The same revocation's second bump (after the index entry, then after the record): one entry each,
			// so the history still names generationHistory revocations. since reads it the same way.
			g.Recent[n-1].N = g.N
		} else {
			g.Recent = append(g.Recent, generationEntry{N: g.N, First: g.N, Serial: serial})
		}
		if len(g.Recent) > generationHistory {
			g.Recent = g.Recent[len(g.Recent)-generationHistory:]
		}
		raw, err := json.Marshal(g)
		if err != nil {
			return nil, fmt.Errorf("encoding revocation generation: %w", err)
		}
		written, err := st.PutMeta(ctx, generationDoc, raw, etag)
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
			if last != nil {
				// The copy this caller wrote is no longer the document: read it, at once, and try again; that
				// is no lost race, so it neither waits nor counts as an attempt.
				last = nil
				attempt--
			}
			continue // another revocation bumped it meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("bumping revocation generation: %w", err)
		}
		return &writtenGeneration{g: *g, etag: written}, nil
	}
	return nil, fmt.Errorf("bumping revocation generation: %w", store.ErrConflict)
}

// clone is a copy of g that shares nothing with it.
func (g generation) clone() *generation {
	g.Recent = slices.Clone(g.Recent)
	return &g
}

// contentionAttempts bounds the read-modify-write attempts on a shared meta document (the revocation generation,
// the CRL number). With contentionPause between them they span about 10 s at the most, inside every caller's
// deadline (an admin revocation's minute, a sync chunk's).
const contentionAttempts = 25

// The bounds of contentionPause. With contentionAttempts they make the pauses of a writer that keeps losing sum to
// under 10 s (10+20+…+320 ms, then 500 ms for each later attempt).
const (
	contentionPauseFirst = 10 * time.Millisecond
	contentionPauseMax   = 500 * time.Millisecond
)

// contentionPause waits before attempt (0-based) of an ETag-conditioned read-modify-write of a document every
// instance writes: not at all before the first, then a random wait of up to contentionPauseFirst doubling per
// attempt to at most contentionPauseMax (full jitter), plus a millisecond. Retrying at once, as many writers of one
// document do after the same lost race, makes them collide again, so that with a few dozen concurrent writers some
// lose every attempt. It returns ctx's error if ctx ends first.
func contentionPause(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	ceiling := contentionPauseFirst << min(attempt-1, 6) // 6 doublings pass the cap: no shift overflows
	ceiling = min(ceiling, contentionPauseMax)
	return ctxtime.Sleep(ctx, rand.N(ceiling)+time.Millisecond)
}

// readGeneration returns the current generation (zero before the first revocation) and its ETag.
func readGeneration(ctx context.Context, st store.Meta) (*generation, string, error) {
	raw, etag, err := st.GetMeta(ctx, generationDoc)
	if errors.Is(err, store.ErrNotFound) {
		return &generation{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading revocation generation: %w", err)
	}
	var g generation
	if err := json.Unmarshal(raw, &g); err != nil {
		return nil, "", fmt.Errorf("stored revocation generation is malformed: %w", err)
	}
	return &g, etag, nil
}

// since lists the serials revoked after generation after; complete is false when the history no longer reaches
// back that far (the caller must assume anything changed).
func (g *generation) since(after uint64) (serials []string, complete bool) {
	if after >= g.N {
		return nil, true
	}
	if len(g.Recent) == 0 {
		return nil, false
	}
	if first := g.Recent[0].First; first > after+1 || first == 0 && g.Recent[0].N > after+1 {
		return nil, false
	}
	for _, e := range g.Recent {
		if e.N > after {
			serials = append(serials, e.Serial)
		}
	}
	return serials, true
}

// NewlyRevoked reports whether Revoke's answer means this call revoked the certificate — also when only the final
// generation bump failed and Revoke returned an error with it — so that the caller tells its own instance's CRL and
// OCSP caches at once; the other instances follow the generation once a retry has bumped it.
func NewlyRevoked(outcome Outcome, rec *store.Record) bool {
	return outcome == Revoked && rec != nil && rec.Status == store.StatusRevoked
}

// Revoke moves the record for serial to revoked. A keyCompromise's key mark is written first (markCompromisedFor),
// then the revocation index entry (what the CRL is built from), then the record, so a crash between the writes
// still publishes the revocation with its key marked; a retry, or CompleteInterrupted, completes the record with
// the index entry's time and reason. The revocation generation (BumpGeneration) is bumped after the index entry,
// for the other instances' CRLs, and again after the record, for their OCSP caches; last, the renewal ancestors'
// forward links are pointed at the revoked certificate (linkAncestors). When only those last writes fail, the
// error comes with Revoked and the revoked record, and a retry completes them.
// Revoking a revoked certificate reports AlreadyRevoked and writes only what an interrupted revocation may have
// left out. ErrConflict from a concurrent update is retried.
func Revoke(ctx context.Context, st store.Store, serial string, reason int, by, ref string, now time.Time) (Outcome, *store.Record, error) {
	outcome, rec, _, err := revoke(ctx, st, serial, nil, nil, reason, by, ref, now)
	return outcome, rec, err
}

// revokeRead is Revoke for a caller that has just read the record (read, from st.Get) and revokes one certificate
// after another (chain): the first attempt starts from the record read instead of reading it again, and the
// generation bumps from the document the chain's previous bump wrote. The ETags guard both writes as fresh reads'
// would: a record or document moved since fails its write, which is then read and tried again.
func revokeRead(ctx context.Context, st store.Store, read *store.Record, chain *bumpChain, reason int, by, ref string, now time.Time) (Outcome, *store.Record, error) {
	outcome, rec, _, err := revoke(ctx, st, read.Serial, read, chain, reason, by, ref, now)
	return outcome, rec, err
}

// revoke is Revoke, also returning the key mark this call wrote (nil when it wrote none: no keyCompromise, or the
// key was marked already), also when the revocation then failed, so that RevokeAudited can say so. read, when not
// nil, is the record as the caller just read it, which the first attempt starts from, and chain, when not nil,
// carries the generation document between the caller's revocations (revokeRead).
func revoke(ctx context.Context, st store.Store, serial string, read *store.Record, chain *bumpChain, reason int, by, ref string, now time.Time) (_ Outcome, _ *store.Record, marked *store.CompromisedKey, _ error) {
	canonical := store.NormalizeSerial(serial)
	if canonical == "" {
		return 0, nil, nil, fmt.Errorf("%w: %q is not a serial number", store.ErrNotFound, serial)
	}
	// One revocation time for every attempt, so the index entry (first write wins) and the record agree.
	at := now.UTC().Truncate(time.Second)
	// mark calls markCompromisedFor and keeps the mark it wrote, if any, across the attempts.
	mark := func(rec *store.Record, reasons ...int) error {
		k, err := markCompromisedFor(ctx, st, rec, by, at, reasons...)
		if k != nil {
			marked = k
		}
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		rec := read
		if attempt > 0 || rec == nil || rec.Serial != canonical {
			var err error
			if rec, err = st.Get(ctx, canonical); err != nil {
				return 0, nil, marked, err
			}
		}
		switch rec.Status {
		case store.StatusRevoked:
			// Complete a revocation whose index write succeeded but whose record write did not, or vice versa, and
			// whose generation bump may have failed: a retry must leave every instance told. Its renewal cut-off
			// too, which also completes it for revocations from before the cut-off was written.
			// A keyCompromise asked of a certificate revoked for another reason (Intune's cessationOfOperation)
			// cannot change the published reason, but its key must still be marked.
			if err := mark(rec, rec.RevocationReason, reason); err != nil {
				return 0, nil, marked, err
			}
			// The record is revoked whatever fails from here: the caller gets it with the error, as after any
			// durable revocation whose last writes failed, and a retry completes them.
			if _, err := st.AddRevoked(ctx, store.Revoked{Serial: rec.Serial, RevokedAt: rec.RevokedAt, Reason: rec.RevocationReason,
				NotAfter: rec.NotAfter}); err != nil {
				return AlreadyRevoked, rec, marked, fmt.Errorf("indexing revocation: %w", err)
			}
			if _, err := chain.bump(ctx, st, rec.Serial, nil); err != nil {
				return AlreadyRevoked, rec, marked, err
			}
			if err := linkAncestors(ctx, st, rec, at); err != nil {
				return AlreadyRevoked, rec, marked, err
			}
			return AlreadyRevoked, rec, marked, nil
		case store.StatusPending, store.StatusAbandoned:
			if len(rec.PlannedDER) == 0 {
				return 0, rec, marked, fmt.Errorf("%w: record %s has no planned certificate", ErrNotRevocable, rec.Serial)
			}
		}
		from := rec.Status
		// Before anything publishes the revocation, so that no crash leaves it published with the key unmarked.
		if err := mark(rec, reason); err != nil {
			return 0, nil, marked, err
		}
		kept, err := st.AddRevoked(ctx, store.Revoked{Serial: rec.Serial, RevokedAt: at, Reason: reason, NotAfter: rec.NotAfter})
		if err != nil {
			return 0, nil, marked, fmt.Errorf("indexing revocation: %w", err)
		}
		// The index may have kept an earlier, interrupted revocation's reason, which the record takes.
		if err := mark(rec, kept.Reason); err != nil {
			return 0, nil, marked, err
		}
		// Tell the other instances' CRLs now, before the record: the index is what they publish. If this bump is
		// lost the record is not revoked yet, so the sweep (CompleteInterrupted) redoes the whole revocation.
		bumped, err := chain.bump(ctx, st, rec.Serial, nil)
		if err != nil {
			return 0, nil, marked, err
		}
		// An entry kept from an earlier revocation interrupted between its two writes is what the CRL already
		// publishes: the record takes its time and reason, so that the CRL and OCSP say the same.
		rec.Status = store.StatusRevoked
		rec.RevokedAt = kept.RevokedAt
		rec.RevocationReason = kept.Reason
		rec.RevokedBy = by
		rec.RevocationRef = ref
		rec.Updated = now
		err = st.Update(ctx, rec, from)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, nil, marked, fmt.Errorf("recording revocation: %w", err)
		}
		// The revocation is durable; tell the other instances' OCSP and CRL caches. If this fails the caller
		// still gets the outcome and the revoked record with the error, so that it can tell its own caches, and
		// its retry (AlreadyRevoked) bumps again.
		if _, err := chain.bump(ctx, st, rec.Serial, bumped); err != nil {
			return Revoked, rec, marked, err
		}
		if err := linkAncestors(ctx, st, rec, at); err != nil {
			return Revoked, rec, marked, err
		}
		return Revoked, rec, marked, nil
	}
	return 0, nil, marked, fmt.Errorf("revoking %s: %w", canonical, store.ErrConflict)
}

// markCompromisedFor marks rec's key compromised when one of reasons is keyCompromise: any other certificate with
// that key (an earlier enrollment, a renewal that kept the key) must no longer sign renewals, and no renewal may ask
// for it. Revoke writes it before the revocation index entry, the first write that publishes a revocation, so no
// crash leaves a key compromise published with the key still free to sign renewals. The ancestors' forward links
// (linkAncestors), which cut off the renewal chain for any reason, are written after the record instead: they are a
// repair of the links each renewal already wrote, reading and writing other records, and must not stand between an
// admin and a published revocation. A failure there comes back with the outcome, and the retry (AlreadyRevoked)
// writes them.
//
// The mark names rec and by, who asked for the revocation; it is returned when this call wrote it, nil when the key
// was marked already (the first mark is kept) or nothing was marked.
//
// The key is rec's PublicKey; records written without one (the RA certificates recorded at start-up) have it
// derived from their certificate. A record with neither has no key a renewal could name, and is revoked unmarked.
func markCompromisedFor(ctx context.Context, st store.Store, rec *store.Record, by string, now time.Time, reasons ...int) (*store.CompromisedKey, error) {
	if !slices.Contains(reasons, store.KeyCompromise) {
		return nil, nil
	}
	h := keyHash(rec)
	if !store.ValidKeyHash(h) {
		return nil, nil
	}
	k := store.CompromisedKey{PublicKey: h, Serial: rec.Serial, By: by, MarkedAt: now}
	kept, created, err := st.MarkCompromised(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("marking the key of %s compromised: %w", rec.Serial, err)
	}
	if !created {
		return nil, nil // an earlier mark, kept
	}
	return &kept, nil
}

// keyHash is rec's PublicKey, or the same hash (SHA-256 of the DER SubjectPublicKeyInfo) computed from its
// certificate, issued or planned, when the record has none.
func keyHash(rec *store.Record) string {
	if rec.PublicKey != "" {
		return rec.PublicKey
	}
	for _, der := range [][]byte{rec.CertDER, rec.PlannedDER} {
		if c, err := x509.ParseCertificate(der); err == nil {
			return store.KeyHash(c.PublicKey)
		}
	}
	return ""
}

// linkAncestors points the forward link (RenewedTo) of each renewal ancestor of rec, following RenewedFrom back at
// most store.MaxRenewalWalk records, at the branch that leads to rec. The renewal check walks those links forward
// from a renewal's signer and refuses when it reaches a revoked record, so after this no ancestor of a revoked
// certificate renews again: the superseded certificate a thief kept with a stolen device's names is cut off with
// the device's current one. The links are normally written right after each renewal; this repairs one whose write
// failed, and repoints a link at another branch (the ancestor renewed twice) to this one, which only ever refuses
// more.
func linkAncestors(ctx context.Context, st store.Store, rec *store.Record, now time.Time) error {
	child := rec
	for hops := 0; child.RenewedFrom != "" && hops < store.MaxRenewalWalk; hops++ {
		parent, err := pointAt(ctx, st, child.RenewedFrom, child.Serial, now)
		if errors.Is(err, store.ErrNotFound) {
			return nil // nothing recorded before it
		}
		if err != nil {
			return fmt.Errorf("linking %s to its successor %s: %w", child.RenewedFrom, child.Serial, err)
		}
		child = parent
	}
	return nil
}

// pointAt sets the RenewedTo of the record serial to child unless it says so already, with an in-state update
// retried from a fresh read when the record changed meanwhile, and returns the record.
func pointAt(ctx context.Context, st store.Store, serial, child string, now time.Time) (*store.Record, error) {
	for attempt := 0; attempt < 5; attempt++ {
		r, err := st.Get(ctx, serial)
		if err != nil {
			return nil, err
		}
		if r.RenewedTo == child {
			return r, nil
		}
		r.RenewedTo = child
		r.Updated = now
		err = st.Update(ctx, r, r.Status)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	return nil, fmt.Errorf("record %s keeps changing: %w", serial, store.ErrConflict)
}

// InterruptedWindow is how far back CompleteInterrupted looks: revocations indexed in this window are checked
// against their records. It is far longer than the hourly sweep's interval, so that a record write failing through
// a long store outage is still completed once the store is back.
const InterruptedWindow = 7 * 24 * time.Hour

// InterruptedGrace is how old an index entry must be before CompleteInterrupted takes it for interrupted: a
// revocation between its two writes right now is not, and completing it would record the sweep instead of who
// revoked it and why. Far longer than one Revoke call with its store retries.
const InterruptedGrace = 15 * time.Minute

// sweepCursorDoc is the meta document holding where the interrupted-revocation sweep goes on: the serial of the
// last index entry it checked. A run bounded in time would otherwise start at the same place every hour and never
// reach the entries after what it can read in its bound.
const sweepCursorDoc = "revocation-sweep-cursor"

type sweepCursor struct {
	After string `json:"after"`
}

// CompleteInterrupted finishes revocations interrupted between their two writes: an index entry indexed since
// since and at least InterruptedGrace before now (the CRL already lists the certificate) whose record is not
// revoked (OCSP, the console and renewal would still take it as issued). Each is completed by Revoke, with the
// index entry's time and reason, and returned. Nothing else is read but the index, the cursor and the records of
// the window's entries.
//
// The walk goes round the index in serial order from where the last call stopped (sweepCursorDoc), so when ctx
// ends what is left is where the next call begins: successive bounded calls cover the whole window. The cursor is
// written with the ETag read, so of overlapping calls (several instances) only one moves it, from the position it
// started at: it never skips an entry nobody checked, at worst some are checked twice.
func CompleteInterrupted(ctx context.Context, st store.Store, since, now time.Time) ([]*store.Record, error) {
	var cur sweepCursor
	raw, etag, err := st.GetMeta(ctx, sweepCursorDoc)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("reading the sweep cursor: %w", err)
	default:
		if err := json.Unmarshal(raw, &cur); err != nil {
			// Start from the beginning rather than never sweep again; the write below replaces it.
			cur = sweepCursor{}
		}
	}
	entries, err := st.ListRevoked(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing revocations: %w", err)
	}
	slices.SortFunc(entries, func(a, b store.Revoked) int { return strings.Compare(a.Serial, b.Serial) })
	first, _ := slices.BinarySearchFunc(entries, cur.After, func(e store.Revoked, after string) int {
		if e.Serial <= after {
			return -1
		}
		return 1
	})
	var done []*store.Record
	var errs []error
	checked := ""
	for i := range entries {
		e := entries[(first+i)%len(entries)]
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("stopped before %s, where the next sweep goes on: %w", e.Serial, ctx.Err()))
			break
		}
		if err := completeOne(ctx, st, e, since, now, &done); err != nil {
			if ctx.Err() != nil {
				// Cut short, not checked: the next sweep begins with it.
				errs = append(errs, fmt.Errorf("stopped at %s, where the next sweep goes on: %w", e.Serial, err))
				break
			}
			// Left for the next round of the index: stopping here would let one entry that keeps failing hold
			// every later one back.
			errs = append(errs, err)
		}
		checked = e.Serial
	}
	if checked != "" {
		if err := saveSweepCursor(ctx, st, sweepCursor{After: checked}, etag); err != nil {
			errs = append(errs, err)
		}
	}
	return done, errors.Join(errs...)
}

// completeOne completes e's revocation if it is in the window and its record is not revoked, adding the record to
// done when this call revoked it.
func completeOne(ctx context.Context, st store.Store, e store.Revoked, since, now time.Time, done *[]*store.Record) error {
	if e.RevokedAt.Before(since) || e.RevokedAt.After(now.Add(-InterruptedGrace)) {
		return nil
	}
	rec, err := st.Get(ctx, e.Serial)
	if err != nil {
		return fmt.Errorf("reading %s: %w", e.Serial, err)
	}
	if rec.Status == store.StatusRevoked {
		return nil
	}
	outcome, rec, err := Revoke(ctx, st, e.Serial, e.Reason, "sweep", "completes a revocation interrupted after its index entry", now)
	if NewlyRevoked(outcome, rec) {
		*done = append(*done, rec)
	}
	if err != nil {
		return fmt.Errorf("completing %s: %w", e.Serial, err)
	}
	return nil
}

// saveSweepCursor writes cur if the cursor is still at etag (created when etag is ""). A conflict means another
// sweep moved it meanwhile from where this one started; its position is as good, and is kept. The write is detached
// from ctx, which has usually just ended the walk, so that the progress made is not lost with it.
func saveSweepCursor(ctx context.Context, st store.Meta, cur sweepCursor, etag string) error {
	raw, err := json.Marshal(cur)
	if err != nil {
		return fmt.Errorf("encoding the sweep cursor: %w", err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err = st.PutMeta(wctx, sweepCursorDoc, raw, etag)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("saving the sweep cursor at %s: %w", cur.After, err)
	}
	return nil
}
