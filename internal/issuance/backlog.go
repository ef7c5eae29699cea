package issuance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// A device whose Intune notifications get no verdict retries, and a retry that is not the same transaction with the
// same CSR (redeliverable) — a new transaction ID, a CSR signed again — is a new signature and one more withheld
// record. These bound that per key, across instances: a gated request reserves its serial in the key's backlog
// (store.Backlogs, one ETag-conditioned write, before its pending record and its signature), and once maxUndecided
// reservations of the key within undecidedWindow may still await a verdict — in flight, or withheld undecided — a
// further gated request for that key is not signed (503, as the outage itself) until one is delivered or its hour
// passes; the retry that redelivers a withheld certificate costs no signature and still goes through.
//
// A reservation whose request committed its pending record is never removed on the enrollment path: from then on
// that record says whether it may still await a verdict (awaiting), so a delivered, refused or abandoned one stops
// counting by itself, and a fresh key's enrollment costs one backlog call (the create). The hourly timer deletes
// the backlogs whose reservations all expired (PruneBacklogs). A request that recorded nothing under its serial
// releases its reservation before it answers (release): its record would never settle it.
const (
	maxUndecided    = 3
	undecidedWindow = time.Hour
	// reserveTries bounds the reads and writes of one reservation that meets other writers: each conflict means
	// another request's reservation landed, so after maxUndecided of them the backlog is full.
	reserveTries = 2*maxUndecided + 2
)

// ErrUndecidedBacklog: too many certificates for the request's key await an undecided delivery gate (see
// maxUndecided); nothing was recorded or signed. It wraps ErrUndecided, so callers answer it as Intune's outage.
var ErrUndecidedBacklog = fmt.Errorf("%w: certificates for this key already await Intune's verdict", ErrUndecided)

// errBacklogFull: the key's backlog holds maxUndecided reservations that may still await a verdict.
var errBacklogFull = errors.New("issuance: the key's backlog is full")

// reservation is a gated request's place in its key's backlog.
type reservation struct {
	key, serial string
	// etag is the version this request's write left when that version held its reservation alone: released, the
	// backlog is then deleted at it, one call. "" when others shared it.
	etag string
}

// reserve writes serial into the key's backlog, unless maxUndecided reservations there may still await a verdict
// (errBacklogFull). The first try is a create, which a fresh key answers in one call; a backlog that exists is read,
// its expired and settled reservations dropped (counting), and replaced at the ETag read, so that of requests
// racing for the last place exactly one gets it. A store error is returned: the request is not signed.
func (i *Issuer) reserve(ctx context.Context, key, serial string) (*reservation, error) {
	now := i.now()
	mine := store.Reservation{Serial: serial, At: now}
	b := &store.Backlog{PublicKey: key, Reservations: []store.Reservation{mine}}
	for try := 0; try < reserveTries; try++ {
		if try > 0 {
			cur, err := i.store.GetBacklog(ctx, key)
			switch {
			case errors.Is(err, store.ErrNotFound):
				b = &store.Backlog{PublicKey: key, Reservations: []store.Reservation{mine}}
			case err != nil:
				return nil, fmt.Errorf("reading the key's backlog: %w", err)
			default:
				live, err := i.counting(ctx, cur.Reservations, now)
				if err != nil {
					return nil, err
				}
				if len(live) >= maxUndecided {
					return nil, errBacklogFull
				}
				b = cur
				b.Reservations = append(live, mine)
			}
		}
		err := i.store.PutBacklog(ctx, b)
		switch {
		case err == nil:
			r := &reservation{key: key, serial: serial}
			if len(b.Reservations) == 1 {
				r.etag = b.ETag
			}
			return r, nil
		case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			// Another request's reservation (or a release, a prune) landed first: read again.
		default:
			return nil, fmt.Errorf("writing the key's backlog: %w", err)
		}
	}
	return nil, errBacklogFull // that many requests for the key at once: as many as the bound, and more
}

// counting returns the reservations of rs that count against the bound at now: those made within undecidedWindow
// and, once they are maxUndecided or more, only those whose request may still await Intune's verdict (awaiting).
// The records are read only then, so that a key signed for now and then costs no reads.
func (i *Issuer) counting(ctx context.Context, rs []store.Reservation, now time.Time) ([]store.Reservation, error) {
	var live []store.Reservation
	for _, r := range rs {
		if now.Sub(r.At) < undecidedWindow {
			live = append(live, r)
		}
	}
	if len(live) < maxUndecided {
		return live, nil
	}
	kept := live[:0]
	for _, r := range live {
		rec, err := i.store.Get(ctx, r.Serial)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// A request between its reservation and its pending record, or one that recorded nothing and whose
			// release failed: counted for as long as a pending record counts as in progress.
			if now.Sub(r.At) < i.stale {
				kept = append(kept, r)
			}
		case err != nil:
			return nil, fmt.Errorf("reading reserved record %s: %w", r.Serial, err)
		case awaiting(rec):
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// awaiting reports whether rec, a reserved record, may still await Intune's verdict: pending (its signature in
// flight, or its outcome unknown), or issued and neither delivered nor refused for good. Every other outcome of a
// recorded request — delivered (IntuneNotified), refused for good (Withheld, not GateUndecided), abandoned (no
// signature), revoked — is settled, which is what lets a recorded request keep its reservation (backlog.go's doc).
func awaiting(rec *store.Record) bool {
	switch rec.Status {
	case store.StatusPending:
		return true
	case store.StatusIssued:
		return !rec.IntuneNotified && (!rec.Withheld || rec.GateUndecided)
	}
	return false
}

// release removes r from its key's backlog, for a request that recorded nothing under its serial (a replay, a
// refusal, an answer from the key's earlier attempt, a store error): one delete when its own write left it alone
// there, a read and a write (or delete) otherwise. It runs detached with a deadline of its own, and a failure is
// only logged: a reservation left behind counts for StaleAfter at most (counting) and expires within the hour.
func (i *Issuer) release(ctx context.Context, r *reservation) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	etag := r.etag
	for try := 0; try < reserveTries; try++ {
		if etag == "" {
			b, err := i.store.GetBacklog(rctx, r.key)
			if errors.Is(err, store.ErrNotFound) {
				return
			}
			if err != nil {
				i.log.WarnContext(ctx, "releasing a reservation of the key's backlog failed; it expires", "serial", r.serial, "err", err)
				return
			}
			rest := make([]store.Reservation, 0, len(b.Reservations))
			for _, res := range b.Reservations {
				if res.Serial != r.serial && i.now().Sub(res.At) < undecidedWindow {
					rest = append(rest, res)
				}
			}
			if len(rest) == len(b.Reservations) {
				return // not there (any more)
			}
			if len(rest) > 0 {
				b.Reservations = rest
				err := i.store.PutBacklog(rctx, b)
				switch {
				case err == nil:
					return
				case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
					continue
				}
				i.log.WarnContext(ctx, "releasing a reservation of the key's backlog failed; it expires", "serial", r.serial, "err", err)
				return
			}
			etag = b.ETag
		}
		err := i.store.DeleteBacklog(rctx, r.key, etag)
		switch {
		case err == nil, errors.Is(err, store.ErrNotFound):
			return
		case errors.Is(err, store.ErrConflict):
			etag = "" // another request's reservation joined it: read again
			continue
		}
		i.log.WarnContext(ctx, "releasing a reservation of the key's backlog failed; it expires", "serial", r.serial, "err", err)
		return
	}
}

// PruneBacklogs deletes at most limit backlogs whose reservations all expired (undecidedWindow): the hourly timer's
// housekeeping, which keeps the backlog partition to the keys of the last hour or two, since the enrollment path
// leaves every recorded request's reservation behind (one backlog per key enrolled through Intune).
func (i *Issuer) PruneBacklogs(ctx context.Context, limit int) (int, error) {
	n, err := i.store.PruneBacklogs(ctx, i.now().Add(-undecidedWindow), limit)
	if err != nil {
		return n, fmt.Errorf("pruning expired backlogs: %w", err)
	}
	return n, nil
}

// backlogged answers a gated request for a key whose backlog is full: the redelivery of the withheld certificate
// its idempotency key is bound to, when that is possible (no signature), and ErrUndecidedBacklog otherwise, before
// anything is recorded.
func (i *Issuer) backlogged(ctx context.Context, req *Request, sk subjectKey) (*Result, error) {
	if req.Key != "" {
		b, err := i.store.Lookup(ctx, req.Key)
		switch {
		case err == nil:
			prev, err := i.store.Get(ctx, b.Serial)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("reading record bound to the idempotency key: %w", err)
			}
			if err == nil {
				res, err := i.redeliverable(ctx, req, prev, sk.hash)
				if err != nil {
					return nil, err
				}
				if res != nil {
					return i.redeliver(ctx, req, res)
				}
			}
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("looking up idempotency key: %w", err)
		}
	}
	i.log.WarnContext(ctx, "not signing: certificates for this key await Intune's verdict", "endpoint", req.Endpoint,
		"transaction_id", req.TxID, "undecided", maxUndecided)
	return nil, ErrUndecidedBacklog
}
