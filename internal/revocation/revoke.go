// Package revocation revokes certificates — by an admin's request or by Intune's hourly revocation queue — and
// keeps the CRL and OCSP caches told. The Intune sync follows reliability.md §5.2: every request Intune hands
// over is persisted before it is acted on, results are persisted before they are uploaded, and anything not
// accepted by Intune stays for the next run.
package revocation

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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

// Revoke moves the record for serial to revoked. The revocation index entry (what the CRL is built from) is
// written first, so a crash between the two writes still publishes the revocation; a retry completes the record.
// Revoking a revoked certificate reports AlreadyRevoked and changes nothing. ErrConflict from a concurrent update
// is retried.
func Revoke(ctx context.Context, st store.Store, serial string, reason int, by, ref string, now time.Time) (Outcome, *store.Record, error) {
	canonical := store.NormalizeSerial(serial)
	if canonical == "" {
		return 0, nil, fmt.Errorf("%w: %q is not a serial number", store.ErrNotFound, serial)
	}
	// One revocation time for every attempt, so the index entry (first write wins) and the record agree.
	at := now.UTC().Truncate(time.Second)
	for attempt := 0; attempt < 5; attempt++ {
		rec, err := st.Get(ctx, canonical)
		if err != nil {
			return 0, nil, err
		}
		switch rec.Status {
		case store.StatusRevoked:
			// Complete a revocation whose index write succeeded but whose record write did not, or vice versa.
			if err := st.AddRevoked(ctx, store.Revoked{Serial: rec.Serial, RevokedAt: rec.RevokedAt, Reason: rec.RevocationReason}); err != nil {
				return 0, nil, fmt.Errorf("indexing revocation: %w", err)
			}
			return AlreadyRevoked, rec, nil
		case store.StatusPending, store.StatusAbandoned:
			if len(rec.PlannedDER) == 0 {
				return 0, rec, fmt.Errorf("%w: record %s has no planned certificate", ErrNotRevocable, rec.Serial)
			}
		}
		from := rec.Status
		if err := st.AddRevoked(ctx, store.Revoked{Serial: rec.Serial, RevokedAt: at, Reason: reason}); err != nil {
			return 0, nil, fmt.Errorf("indexing revocation: %w", err)
		}
		rec.Status = store.StatusRevoked
		rec.RevokedAt = at
		rec.RevocationReason = reason
		rec.RevokedBy = by
		rec.RevocationRef = ref
		rec.Updated = now
		err = st.Update(ctx, rec, from)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("recording revocation: %w", err)
		}
		return Revoked, rec, nil
	}
	return 0, nil, fmt.Errorf("revoking %s: %w", canonical, store.ErrConflict)
}
