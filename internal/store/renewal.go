package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrRenewalWalkTooLong means a walk along renewal links met more than MaxRenewalWalk records.
var ErrRenewalWalkTooLong = errors.New("store: renewal chain longer than MaxRenewalWalk")

// RevokedSuccessor follows renewal links forward (RenewedTo) from the record serial, inclusive, and returns the
// first revoked record on the way, or nil when none is: the renewal check (a revoked successor cuts its signer off)
// and the issuer keeping a signer's link on such a successor ask the same question. A link to a record that does
// not exist ends the walk (a link is written only after its record is issued); more than MaxRenewalWalk records
// give ErrRenewalWalkTooLong.
func RevokedSuccessor(ctx context.Context, st Certificates, serial string) (*Record, error) {
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
		if rec.Status == StatusRevoked {
			return rec, nil
		}
		serial = rec.RenewedTo
	}
	return nil, nil
}
