package revocation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// SiblingWindow is how long after a key is reported compromised the hourly sweep looks for other certificates
// of that key (RevokeSiblings). One sweep after the report is enough for the certificates made before it; the
// window covers sweeps that failed, and a certificate an instance issued in the seconds before it saw the mark.
const SiblingWindow = 7 * 24 * time.Hour

// SiblingsBy is the revoker a sibling revocation records.
const SiblingsBy = "key-compromise"

// siblingPage is how many records one search page of a key's certificates asks for.
const siblingPage = 200

// RevokeSiblings revokes, for keyCompromise, every certificate not yet revoked whose key is one reported
// compromised since since (a mark written by another certificate's keyCompromise revocation): a key reported stolen
// is stolen for all its certificates, not only the one it was reported with, which is what relying parties are
// told (RFC 5280 §5.3.1) and, like Boulder's bad-key revoker, the CA does not wait for each to be reported. Each
// revocation records SiblingsBy and, as its reference, the certificate the key was reported with. It returns the
// records it revoked, also when it stopped on an error (ctx ending, the store); the next call, idempotent, goes on.
func RevokeSiblings(ctx context.Context, st store.Store, since, now time.Time) ([]*store.Record, error) {
	marks, err := st.ListCompromised(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing compromised keys: %w", err)
	}
	var done []*store.Record
	var errs []error
	for _, m := range marks {
		if m.MarkedAt.Before(since) {
			continue
		}
		if err := revokeSiblingsOf(ctx, st, m, now, &done); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return done, errors.Join(errs...)
}

// revokeSiblingsOf revokes the certificates of m's key that are not revoked yet, appending them to done.
func revokeSiblingsOf(ctx context.Context, st store.Store, m store.CompromisedKey, now time.Time, done *[]*store.Record) error {
	ref := fmt.Sprintf("key reported compromised with certificate %s", m.Serial)
	q := store.Query{PublicKey: m.PublicKey, Limit: siblingPage}
	err := revokeWhere(ctx, st, q, now, done, func(rec *store.Record) (int, string, string, bool, error) {
		return store.KeyCompromise, SiblingsBy, ref, rec.Status != store.StatusRevoked && rec.PublicKey == m.PublicKey, nil
	}, nil, nil)
	if err != nil {
		return fmt.Errorf("the certificates of compromised key %s: %w", m.PublicKey, err)
	}
	return nil
}

// revokeWhere pages through the records q selects and revokes those match picks, with the reason, revoker and
// reference it gives, appending those this call revoked to done: the sweeps that revoke by a property of the
// records (a compromised key, an account or device that left). A record nothing was signed for (an abandoned one
// without a planned certificate) is passed over. The query sorts by serial, so revoking while paging skips nothing.
// prepare, when not nil, is told each page before match sees its records (a verifying pass asks Graph its questions
// about the page at once). progress, when not nil, is told the continuation after each page whose revocations are durable ("" after the
// last), so that a scan stopped later can go on from there; an error from it ends the paging. An error from match
// (it could not tell whether a record is to be revoked) ends it too, before progress hears of the record's page, so
// that a later scan reads that page again.
func revokeWhere(ctx context.Context, st store.Store, q store.Query, now time.Time, done *[]*store.Record,
	match func(*store.Record) (reason int, by, ref string, ok bool, err error), prepare func([]*store.Record),
	progress func(next string) error) error {
	for {
		page, next, err := st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("searching: %w", err)
		}
		if prepare != nil {
			prepare(page)
		}
		for _, rec := range page {
			reason, by, ref, ok, err := match(rec)
			if err != nil {
				return &recordError{serial: rec.Serial, matching: true, err: err}
			}
			if !ok {
				continue
			}
			outcome, got, err := Revoke(ctx, st, rec.Serial, reason, by, ref, now)
			switch {
			case errors.Is(err, ErrNotRevocable):
			case err != nil:
				if NewlyRevoked(outcome, got) {
					// Durable before the write that failed (a repair after it): revoked, and reported as such, since
					// no later scan finds the record issued again.
					*done = append(*done, got)
				}
				return &recordError{serial: rec.Serial, reason: reason, by: by, ref: ref,
					err: fmt.Errorf("revoking %s (%s): %w", rec.Serial, ref, err)}
			case NewlyRevoked(outcome, got):
				*done = append(*done, got)
			}
		}
		if progress != nil {
			if err := progress(next); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		q.Continuation = next
	}
}

// recordError is revokeWhere stopping at one record: match could not tell (matching) or its revocation, with the
// reason, revoker and reference match gave, failed.
type recordError struct {
	serial   string
	matching bool
	reason   int
	by, ref  string
	err      error
}

func (e *recordError) Error() string { return e.err.Error() }
func (e *recordError) Unwrap() error { return e.err }
