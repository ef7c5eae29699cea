package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrRenewalWalkTooLong means a walk along renewal links met more than MaxRenewalWalk records.
var ErrRenewalWalkTooLong = errors.New("store: renewal chain longer than MaxRenewalWalk")

// RenewalLinks is what a walk along renewal links reads: the records, and the revocation index entries of those not
// recorded as revoked.
type RenewalLinks interface {
	Get(ctx context.Context, serial string) (*Record, error)
	GetRevoked(ctx context.Context, serial string) (Revoked, error)
}

// Published reports whether rec is revoked as relying parties see it, and with which time and reason: its record
// says so, or the revocation index (what the CRL publishes) lists it while the record does not yet. Revoke writes
// the index entry first, and one interrupted between its two writes stays that way until a retry or the sweep
// completes it; whatever authorizes or hands out a certificate asks this, not the record's status alone. The index
// is read (one point read) only when the record is not revoked.
func Published(ctx context.Context, st interface {
	GetRevoked(ctx context.Context, serial string) (Revoked, error)
}, rec *Record) (Revoked, bool, error) {
	if rec.Status == StatusRevoked {
		return Revoked{Serial: rec.Serial, RevokedAt: rec.RevokedAt, Reason: rec.RevocationReason, NotAfter: rec.NotAfter}, true, nil
	}
	e, err := st.GetRevoked(ctx, rec.Serial)
	switch {
	case err == nil:
		return e, true, nil
	case errors.Is(err, ErrNotFound):
		return Revoked{}, false, nil
	}
	return Revoked{}, false, fmt.Errorf("reading the revocation index entry of %s: %w", rec.Serial, err)
}

// RevokedSuccessor follows renewal links forward (RenewedTo) from the record serial, inclusive, and returns the
// first revoked record on the way, or nil when none is: the renewal check (a revoked successor cuts its signer off)
// and the issuer keeping a signer's link on such a successor ask the same question. A link to a record that does
// not exist ends the walk (a link is written only after its record is issued); more than MaxRenewalWalk records
// give ErrRenewalWalkTooLong.
//
// A record the revocation index lists counts as revoked although the record does not say so yet: Revoke writes the
// index entry (what the CRL publishes) first, and the renewal ancestors' links only after the record, so a
// revocation interrupted in between would otherwise leave its superseded certificates free to renew. Such a record
// is returned as read, with the index entry's time and reason.
func RevokedSuccessor(ctx context.Context, st RenewalLinks, serial string) (*Record, error) {
	for hops := 0; serial != ""; hops++ {
		if hops == MaxRenewalWalk {
			return nil, ErrRenewalWalkTooLong
		}
		rec, err := st.Get(ctx, serial)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading renewal successor %s: %w", serial, err)
		}
		e, revoked, err := Published(ctx, st, rec)
		if err != nil {
			return nil, fmt.Errorf("renewal successor %s: %w", serial, err)
		}
		if revoked {
			rec.RevokedAt, rec.RevocationReason = e.RevokedAt, e.Reason
			return rec, nil
		}
		serial = rec.RenewedTo
	}
	return nil, nil
}
