package revocation

import (
	"context"
	"errors"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/azscep/azscep/internal/store"
)

// maxComment bounds the comment a person gives a revocation (bytes, cut at a character boundary).
const maxComment = 256

// RevokeAudited is Revoke for a person's request — the admin API, the break-glass CLI: the comment is cut to 256
// bytes, and once the revocation is durable (even when only its last writes failed, which a retry completes) one
// audit line says who revoked what, and why. It is the line operators query for manual revocations. reason is the
// reason the CRL publishes, which after an earlier revocation (Intune's, an interrupted one) is not always the one
// asked for: requested_reason is the one asked for, and key_marked_compromised says whether this call marked the
// certificate's key compromised (a keyCompromise, also of a certificate already revoked for another reason), from
// when on renewals signed by or asking for the key are refused. A call that marked the key but then failed before
// the revocation was durable logs "audit: key marked compromised" instead, for the mark stands; one that failed
// otherwise logs "audit: revocation failed" with who asked and why.
//
// clientApp is the client application through which by acted (an admin API token's), empty for the CLI.
func RevokeAudited(ctx context.Context, st store.Store, log *slog.Logger, serial string, reason int, by, clientApp,
	comment string, now time.Time) (Outcome, *store.Record, error) {
	comment = truncate(comment, maxComment)
	outcome, rec, marked, err := revoke(ctx, st, serial, nil, nil, reason, by, comment, now)
	switch {
	case rec != nil && rec.Status == store.StatusRevoked:
		// The record's reason: after an interrupted revocation it is the first request's, which the CRL publishes.
		log.InfoContext(ctx, "audit: certificate revoked", "serial", rec.Serial, "reason", ReasonName(rec.RevocationReason),
			"by", by, "client_app", clientApp, "comment", comment, "already_revoked", outcome == AlreadyRevoked,
			"requested_reason", ReasonName(reason), "key_marked_compromised", marked != nil)
	case marked != nil:
		log.WarnContext(ctx, "audit: key marked compromised", "serial", marked.Serial, "public_key", marked.PublicKey,
			"requested_reason", ReasonName(reason), "by", by, "client_app", clientApp, "comment", comment, "revoked", false, "err", err)
	case err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, ErrNotRevocable):
		// Its index entry, which the CRL publishes, may be written already; the record is then completed by a retry
		// or, if none comes, by the hourly sweep, which records itself as the revoker. Either way this line is what
		// names who asked for a revocation that may be in force, and why.
		log.WarnContext(ctx, "audit: revocation failed", "serial", store.NormalizeSerial(serial), "requested_reason",
			ReasonName(reason), "by", by, "client_app", clientApp, "comment", comment, "err", err)
	}
	return outcome, rec, err
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
