package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/store"
)

// OwnersBy is the revoker recorded on a self-service device certificate revoked because its requester no longer
// owns the device it names (CheckDeviceOwners).
const OwnersBy = "entra-device-owner"

// MaxOwnerChecks bounds the ownership questions one call of the owner check asks Graph (LookupConcurrency at a
// time): at one call an hour, 24 000 self-service device certificates are each asked about at least once a day, and
// a tenant with more has them asked about every MaxOwnerChecks-th of its count hours. A question costs one to three
// Graph GETs (some 150 ms each), so a call's questions take some 20 to 50 s when nothing else has used the sweep's
// time; a call with less time left asks fewer and the cycle goes on from its cursor.
const MaxOwnerChecks = 1000

// ownerCursorDoc holds how far the current cycle of the owner check got (a scanCursor whose Round is
// "owners:<cycle ID>"): a cycle ended (Done) has the next call begin another.
const ownerCursorDoc = "entra-owner-cursor"

// OwnerLookup asks Graph whether a user still owns a device by the rule issuance applied (entra.Directory.DeviceOwner).
type OwnerLookup interface {
	DeviceOwner(ctx context.Context, userObjectID, deviceID string, managed bool) (entra.Ownership, error)
}

// The directory the sweep runs with in production checks owners.
var _ OwnerLookup = (*entra.Directory)(nil)

// OwnerSweep is what one call of the owner check did.
type OwnerSweep struct {
	// Revoked are the certificates this call revoked: their requester no longer owns the device.
	Revoked []*store.Record
	// Checked counts the questions Graph was asked, NotOwned those it answered "not an owner", Unknown those of a
	// device Graph no longer has (the device sweep's to act on) and Failed those it did not answer (a refusal,
	// throttling, an outage), which revoke nothing: those certificates are asked about again in the next cycle.
	Checked, NotOwned, Unknown, Failed int
	// FirstFailure is the first question Graph did not answer, for the Logs.
	FirstFailure error
	// Pages is how many search pages of the REST certificates the call read; Left says the cycle stopped before
	// its end (the questions spent, the call's time, an error) and the next call goes on from its cursor; Cycled
	// that it reached the end, and the next call begins another.
	Pages        int
	Left, Cycled bool
	// Skipped are the records the scan passed over, their revocation failing MaxRecordTries calls in a row: listed,
	// and asked about again by RevokeDisabled (ListPassedOver).
	Skipped []string
}

// CheckDeviceOwners re-checks, for each self-service device certificate (source api, issued, unexpired, with a
// device ID and a user as requester), that its requester still owns the device by the rule issuance applied: the
// managed-device rule for a certificate carrying an IntuneDeviceId:// URI, else the Entra device first. A user who
// gave a device to someone else (its registered owner or Intune primary user changed) is no longer entitled to a
// certificate naming it, which relying parties take for that device. Graph answering definitely that the requester
// is not an owner revokes the certificate for affiliationChanged, recording OwnersBy; anything else (an owner, a
// device Graph does not have, a refusal, throttling, an outage) revokes nothing.
//
// It goes round the REST certificates in cycles, each over as many calls as it takes, from a cursor of its own
// (ownerCursorDoc) saved after each search page whose revocations are durable: a call asks at most MaxOwnerChecks
// questions (LookupConcurrency at a time, each answer kept for the call, so one user's certificates for the same
// device cost one), and the next call goes on where it stopped. A cycle that reached the end has the next call begin
// another, never the same call, so a small tenant is asked about once a call, not more. A record created less than
// lookupGrace before now is not asked about (its owner was read at issuance, and a Graph replica that has not yet
// seen a new owner must not revoke it): the next cycle asks. A question Graph does not answer does not stop the
// cycle, whose other certificates are still checked; the time ending does, before the page it was in.
func CheckDeviceOwners(ctx context.Context, st store.Store, dir OwnerLookup, now time.Time) (OwnerSweep, error) {
	var sw OwnerSweep
	id, err := ownerCycle(ctx, st)
	if err != nil {
		sw.Left = true
		return sw, err
	}
	set := &ownerSet{dir: dir, sw: &sw}
	ask := &lookups{left: MaxOwnerChecks, answers: map[lookupKey]lookupAnswer{}}
	sc := recordScan{doc: ownerCursorDoc, limit: verifyPage, ids: []string{"owners:" + id},
		match: ownerMatch(ctx, set, ask, now),
		prepare: func(page []*store.Record) {
			var keys []lookupKey
			for _, rec := range page {
				if k, ok := ownerQuestion(set, rec, now); ok {
					keys = append(keys, k)
				}
			}
			ask.prefetch(ctx, keys)
		}}
	sw.Pages, err = sc.run(ctx, st, now)
	sw.Revoked, sw.Skipped = sc.revoked, sc.skipped
	set.mu.Lock()
	sw.Unknown = set.unknown
	set.mu.Unlock()
	switch {
	case errors.Is(err, errLookupsSpent):
		// Stopped where it should: the next call goes on from the cursor with new questions.
		sw.Left = true
		return sw, nil
	case err != nil:
		sw.Left = true
		return sw, fmt.Errorf("checking the owners of self-service device certificates: %w", err)
	}
	sw.Cycled = true
	return sw, nil
}

// ownerCycle is the ID of the cycle the owner check goes on with: the one its cursor holds, or a new one when there
// is none, the cursor's reached its end, or it does not decode (recordScan.run then begins it from the start).
func ownerCycle(ctx context.Context, st store.Store) (string, error) {
	raw, _, err := st.GetMeta(ctx, ownerCursorDoc)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return newRoundID(), nil
	case err != nil:
		return "", fmt.Errorf("reading the owner check's cursor: %w", err)
	}
	var cur scanCursor
	if json.Unmarshal(raw, &cur) != nil || cur.Done {
		return newRoundID(), nil
	}
	if id, ok := strings.CutPrefix(cur.Round, "owners:"); ok && id != "" && !strings.Contains(id, "+") {
		return id, nil
	}
	return newRoundID(), nil
}

// ownerSet is the owner check's questions, for lookups: an id is "<user object ID> <device ID> <m|e>" (m: the
// managed-device rule).
type ownerSet struct {
	dir OwnerLookup
	sw  *OwnerSweep
	// mu guards unknown, counted by lookups running at once.
	mu      sync.Mutex
	unknown int
}

// lookup asks whether the requester still owns the device: false only for Graph's definite "not an owner".
func (o *ownerSet) lookup(ctx context.Context, id string) (bool, error) {
	f := strings.Fields(id)
	if len(f) != 3 {
		return true, fmt.Errorf("owner question %q: malformed", id)
	}
	got, err := o.dir.DeviceOwner(ctx, f[0], f[1], f[2] == "m")
	if err != nil {
		return true, fmt.Errorf("asking Graph whether account %s owns device %s: %w", f[0], f[1], err)
	}
	if got == entra.OwnershipUnknown {
		o.mu.Lock()
		o.unknown++
		o.mu.Unlock()
	}
	return got != entra.OwnershipNotOwner, nil
}

// tally counts the answer in the check's report (lookups holds its lock).
func (o *ownerSet) tally(there bool, err error) {
	o.sw.Checked++
	switch {
	case err != nil:
		o.sw.Failed++
		if o.sw.FirstFailure == nil {
			o.sw.FirstFailure = err
		}
	case !there:
		o.sw.NotOwned++
	}
}

// ownerQuestion is the question the owner check asks about rec, if any: whether its requester still owns its device,
// for an issued, unexpired self-service device certificate (csrapi records a device ID only for a device the user
// requesting it owned) created lookupGrace or more before now.
func ownerQuestion(set *ownerSet, rec *store.Record, now time.Time) (lookupKey, bool) {
	if rec.Status != store.StatusIssued || rec.Source != store.SourceAPI || !rec.NotAfter.After(now) ||
		!rec.Created.Before(now.Add(-lookupGrace)) || !entra.IsGUID(rec.DeviceID) {
		return lookupKey{}, false
	}
	oid, _ := requesterAccount(rec.Requester)
	if oid == "" {
		return lookupKey{}, false
	}
	rule := "e"
	if slices.ContainsFunc(rec.SANs, func(san string) bool {
		return len(san) > len("uri:intunedeviceid:") && strings.EqualFold(san[:len("uri:intunedeviceid:")], "uri:intunedeviceid:")
	}) {
		// Issued on the managed device's answer alone (csrapi: AnswerManaged): relying parties read the URI as an
		// Intune managed-device ID.
		rule = "m"
	}
	return lookupKey{set: set, id: oid + " " + strings.ToLower(rec.DeviceID) + " " + rule}, true
}

// ownerMatch picks the records whose requester Graph says no longer owns the device, for affiliationChanged. A
// question Graph did not answer picks nothing and the scan goes on (the next cycle asks again); the call's questions
// spent, or its time ending, stop the scan before the record's page, for the next call to go on from.
func ownerMatch(ctx context.Context, set *ownerSet, ask *lookups, now time.Time) func(*store.Record) (int, string, string, bool, error) {
	return func(rec *store.Record) (int, string, string, bool, error) {
		k, ok := ownerQuestion(set, rec, now)
		if !ok {
			return 0, "", "", false, nil
		}
		there, err := ask.answer(ctx, k)
		switch {
		case errors.Is(err, errLookupsSpent) || (err != nil && ctx.Err() != nil):
			return 0, "", "", false, err
		case err != nil || there:
			return 0, "", "", false, nil
		}
		f := strings.Fields(k.id)
		return AffiliationChanged, OwnersBy, fmt.Sprintf("Entra account %s no longer owns device %s", f[0], f[1]), true, nil
	}
}
