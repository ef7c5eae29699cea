package revocation

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/store"
)

// passedOverDoc is the meta document listing the records the Entra sweeps' scans passed over (MaxRecordTries): a
// scan's cursor, which also names them, is replaced by the next round, pass or cycle, so without this list a record
// passed over would never be asked about again.
const passedOverDoc = "entra-passed-over"

// MaxReasks bounds the passed-over records one RevokeDisabled call asks about again (ReaskSweep), the ones due the
// longest first: each costs a point read, up to two Graph questions and a revocation's writes, so that a long list
// takes a few seconds of the sweep's minute and the rest are asked in the next runs.
const MaxReasks = 100

// maxPassedOver bounds the list (some 250 bytes an entry, well under the store's meta document limit). A scan that
// would pass over a record beyond it does not: the record holds its scan as it did before MaxRecordTries, since a
// record is passed over only once it is durably listed.
const maxPassedOver = 1500

// ReaskAfter is how long after a record was passed over, or after a re-ask of it failed for the failed-th time,
// its next re-ask is due: the next hourly run, then 4 hours, a day, and daily after that. A fault that passes is
// retried soon; one that does not costs a question a day.
func ReaskAfter(failed int) time.Duration {
	switch failed {
	case 0:
		// Not the run that passed it over, which has just failed it: the next one.
		return 30 * time.Minute
	case 1:
		return 4 * time.Hour
	}
	return 24 * time.Hour
}

// passedOverList is the content of passedOverDoc.
type passedOverList struct {
	Records []passedOverRecord `json:"records"`
	// Adopted says the records the builds before the list passed over, named only in the scan cursors' Skipped, were
	// listed (adoptSkipped): once, since a record that left the list since may still be in a cursor's Skipped.
	Adopted bool `json:"adopted,omitempty"`
}

// passedOverRecord is one record a scan passed over: what is left to ask or do about it, and when.
type passedOverRecord struct {
	Serial string `json:"serial"`
	// Scan is the scan that passed it over: "round" (a delta round), "pass" (a verifying pass) or "owners" (the
	// owner check).
	Scan string `json:"scan"`
	// Reason, By and Ref are the revocation the scan decided, when it was the revocation that failed: the question
	// was answered, and a re-ask revokes. By is "" when the question itself went unanswered (the lookup of the
	// holder): a re-ask asks Graph again.
	Reason int    `json:"reason,omitempty"`
	By     string `json:"by,omitempty"`
	Ref    string `json:"ref,omitempty"`
	// Since is when it was passed over; Failed how many re-asks failed since (an outage's excepted), and Next when
	// the next one is due (ReaskAfter).
	Since  time.Time `json:"since"`
	Failed int       `json:"failed,omitempty"`
	Next   time.Time `json:"next"`
}

// PassedOver is one record the Entra sweeps passed over and ask about again (ListPassedOver).
type PassedOver struct {
	Serial string
	// Scan is the scan that passed it over: "round", "pass" or "owners".
	Scan string
	// Since is when it was passed over, Failed how many re-asks failed since, and Next when the next is due.
	Since  time.Time
	Failed int
	Next   time.Time
}

// ListPassedOver returns the records the Entra sweeps passed over and have not yet settled, the longest listed
// first: one point read, for /api/health and the logs.
func ListPassedOver(ctx context.Context, st store.Meta) ([]PassedOver, error) {
	list, _, err := readPassedOver(ctx, st)
	if err != nil {
		return nil, err
	}
	out := make([]PassedOver, 0, len(list.Records))
	for _, r := range list.Records {
		out = append(out, PassedOver{Serial: r.Serial, Scan: r.Scan, Since: r.Since, Failed: r.Failed, Next: r.Next})
	}
	slices.SortFunc(out, func(a, b PassedOver) int {
		return cmp.Or(a.Since.Compare(b.Since), strings.Compare(a.Serial, b.Serial))
	})
	return out, nil
}

// readPassedOver reads the list and its ETag ("" and an empty list when there is none). A document that does not
// decode is an error, never an empty list: the records it names must not be forgotten by the next write.
func readPassedOver(ctx context.Context, st store.Meta) (passedOverList, string, error) {
	var list passedOverList
	raw, etag, err := st.GetMeta(ctx, passedOverDoc)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return list, "", nil
	case err != nil:
		return list, "", fmt.Errorf("reading the list of passed-over records: %w", err)
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return list, "", fmt.Errorf("decoding the list of passed-over records: %w", err)
	}
	return list, etag, nil
}

// updatePassedOver applies change to the list and writes it with the ETag read, reading and applying it again when
// another writer came first. Detached, as what it records is durable (a revocation made, a record passed over).
func updatePassedOver(ctx context.Context, st store.Meta, change func(*passedOverList) error) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metaWriteTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		list, etag, err := readPassedOver(wctx, st)
		if err != nil {
			return err
		}
		if err := change(&list); err != nil {
			return err
		}
		raw, err := json.Marshal(list)
		if err != nil {
			return fmt.Errorf("encoding the list of passed-over records: %w", err)
		}
		_, err = st.PutMeta(wctx, passedOverDoc, raw, etag)
		if err == nil {
			return nil
		}
		if attempt < 3 && (errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists)) {
			continue
		}
		return fmt.Errorf("saving the list of passed-over records: %w", err)
	}
}

// isPassedOver says serial is on the list. A list that cannot be read says no: the scan then counts the record's
// failures as before.
func isPassedOver(ctx context.Context, st store.Meta, serial string) bool {
	list, _, err := readPassedOver(ctx, st)
	return err == nil && slices.ContainsFunc(list.Records, func(r passedOverRecord) bool { return r.Serial == serial })
}

// listPassedOver adds e to the list, durably, before its scan passes over it. A record listed already (an owner
// check's next cycle stopping at it again) keeps its place in the backoff, and takes e's decided revocation.
func listPassedOver(ctx context.Context, st store.Meta, e passedOverRecord) error {
	return updatePassedOver(ctx, st, func(list *passedOverList) error {
		if i := slices.IndexFunc(list.Records, func(r passedOverRecord) bool { return r.Serial == e.Serial }); i >= 0 {
			if e.By != "" {
				list.Records[i].Reason, list.Records[i].By, list.Records[i].Ref = e.Reason, e.By, e.Ref
			}
			return nil
		}
		if len(list.Records) >= maxPassedOver {
			return fmt.Errorf("the list of passed-over records is full (%d)", maxPassedOver)
		}
		list.Records = append(list.Records, e)
		return nil
	})
}

// skippedCursors are the scan cursors whose Skipped builds before the list kept alone, and the scan each is.
var skippedCursors = []struct{ doc, scan string }{
	// A record in more than one is listed for the first that names it: a pass or an owner check asks a question
	// again, a round kept no question to ask (only the revocation it decided, which was not kept).
	{verifyCursorDoc, "pass"}, {ownerCursorDoc, "owners"}, {scanCursorDoc, "round"},
}

// adoptSkipped lists, once, the records the builds before the list passed over: they are named only in the Skipped
// of the scan cursors (scanCursor), which the next round, pass or cycle replaces, and would never be asked about
// again. Each one still issued and unexpired, and not listed already, is listed as a question to ask again (By "":
// the revocation its scan decided was not kept), due at once, its Since the time it was found. The records and the
// Adopted mark go in one write of the list, so that a crash before it loses nothing (the cursors are untouched and
// the next call adopts them) and a call after it adds nothing. A cursor that does not decode names nothing: the
// scan replaces it.
func adoptSkipped(ctx context.Context, st store.Store, now time.Time) error {
	list, _, err := readPassedOver(ctx, st)
	if err != nil || list.Adopted {
		return err
	}
	var found []passedOverRecord
	for _, c := range skippedCursors {
		raw, _, err := st.GetMeta(ctx, c.doc)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return fmt.Errorf("reading the scan cursor %s for the records it passed over: %w", c.doc, err)
		}
		var cur scanCursor
		if json.Unmarshal(raw, &cur) != nil {
			continue
		}
		for _, serial := range cur.Skipped {
			if slices.ContainsFunc(found, func(r passedOverRecord) bool { return r.Serial == serial }) {
				continue
			}
			rec, err := st.Get(ctx, serial)
			switch {
			case errors.Is(err, store.ErrNotFound):
				continue
			case err != nil:
				return fmt.Errorf("reading passed-over record %s: %w", serial, err)
			}
			if rec.Status != store.StatusIssued || !rec.NotAfter.After(now) {
				// Revoked since, or expired: nothing left to ask.
				continue
			}
			found = append(found, passedOverRecord{Serial: serial, Scan: c.scan, Since: now, Next: now})
		}
	}
	return updatePassedOver(ctx, st, func(list *passedOverList) error {
		if list.Adopted {
			return nil
		}
		for _, e := range found {
			if slices.ContainsFunc(list.Records, func(r passedOverRecord) bool { return r.Serial == e.Serial }) {
				continue
			}
			if len(list.Records) >= maxPassedOver {
				return fmt.Errorf("the list of passed-over records is full (%d) for those earlier builds passed over",
					maxPassedOver)
			}
			list.Records = append(list.Records, e)
		}
		list.Adopted = true
		return nil
	})
}

// ReaskSweep is what one call's re-asks of the passed-over records did.
type ReaskSweep struct {
	// Asked counts the records asked about again; Revoked are those this call revoked, Settled the serials that
	// left the list (revoked now or since, their holder still entitled, expired, gone from the store).
	Asked   int
	Revoked []*store.Record
	Settled []string
	// Failed are the records whose re-ask failed again, with their next try; their first error is FirstFailure.
	// A re-ask an outage cut short (Graph answered nothing this call, the store, the call's time) is in neither:
	// it is asked again in the next run, its backoff unchanged.
	Failed       []PassedOver
	FirstFailure error
	// Listed is how many records the list holds after the call (when it was written).
	Listed int
}

// reaskOutcome is what one re-ask came to: settled (leaves the list), failed (its own failure: backoff), or neither.
type reaskOutcome struct {
	entry   passedOverRecord
	settled bool
	err     error
	lookup  bool // err is a question Graph did not answer
}

// reaskPassedOver asks again about the passed-over records that are due, at most MaxReasks, the longest due first,
// without touching any scan's cursor: a record that was to be revoked (its revocation failed) is revoked now; one
// whose holder Graph did not answer about is asked about again (users and devices lookups, or the owner question),
// and revoked if Graph now says definitely that it must be. A record leaves the list only when its question was
// answered: revoked (now, or since by anyone), its holder still entitled, expired, or gone from the store. A re-ask
// that fails moves the record's next try later (ReaskAfter); one an outage cut short does not (the same rule as
// MaxRecordTries): the call's time ending, a lookup failing while Graph answered no question of the re-asks, the
// store not taking the list's write.
func reaskPassedOver(ctx context.Context, st store.Store, dir Directory, now time.Time) (ReaskSweep, error) {
	var rs ReaskSweep
	list, _, err := readPassedOver(ctx, st)
	if err != nil || len(list.Records) == 0 {
		return rs, err
	}
	rs.Listed = len(list.Records)
	var due []passedOverRecord
	for _, r := range list.Records {
		if !r.Next.After(now) {
			due = append(due, r)
		}
	}
	slices.SortFunc(due, func(a, b passedOverRecord) int {
		return cmp.Or(a.Next.Compare(b.Next), strings.Compare(a.Serial, b.Serial))
	})
	due = due[:min(len(due), MaxReasks)]
	if len(due) == 0 {
		return rs, nil
	}
	users, devices := usersSet(dir), devicesSet(dir)
	owners := &ownerSet{sw: &OwnerSweep{}}
	if o, ok := dir.(OwnerLookup); ok {
		owners.dir = o
	}
	ask := &lookups{left: 2 * MaxReasks, answers: map[lookupKey]lookupAnswer{}}
	var outcomes []reaskOutcome
	var storeErr error
	for _, e := range due {
		if ctx.Err() != nil {
			break
		}
		rec, err := st.Get(ctx, e.Serial)
		switch {
		case errors.Is(err, store.ErrNotFound):
			outcomes = append(outcomes, reaskOutcome{entry: e, settled: true})
			continue
		case err != nil:
			// The store, not the record: nothing is counted, the rest wait for the next run.
			storeErr = fmt.Errorf("reading passed-over record %s: %w", e.Serial, err)
		}
		if storeErr != nil {
			break
		}
		rs.Asked++
		o := reaskOne(ctx, st, users, devices, owners, ask, e, rec, now, &rs.Revoked)
		outcomes = append(outcomes, o)
	}
	answered := ask.answeredAny()
	settled := map[string]bool{}
	failed := map[string]bool{}
	for _, o := range outcomes {
		switch {
		case o.settled:
			settled[o.entry.Serial] = true
		case o.err == nil:
		case ctx.Err() != nil || (o.lookup && !answered):
			// An outage, not the record's failure: asked again next run, its backoff unchanged.
			if rs.FirstFailure == nil {
				rs.FirstFailure = o.err
			}
		default:
			failed[o.entry.Serial] = true
			if rs.FirstFailure == nil {
				rs.FirstFailure = o.err
			}
		}
	}
	if len(settled) == 0 && len(failed) == 0 {
		return rs, storeErr
	}
	var listed int
	werr := updatePassedOver(ctx, st, func(list *passedOverList) error {
		kept := list.Records[:0]
		rs.Failed = nil
		for _, r := range list.Records {
			if settled[r.Serial] {
				continue
			}
			if failed[r.Serial] {
				r.Failed++
				r.Next = now.Add(ReaskAfter(r.Failed))
				rs.Failed = append(rs.Failed, PassedOver{Serial: r.Serial, Scan: r.Scan, Since: r.Since, Failed: r.Failed,
					Next: r.Next})
			}
			kept = append(kept, r)
		}
		list.Records, listed = kept, len(kept)
		return nil
	})
	if werr != nil {
		// Nothing settled is forgotten (the list still names it, and the next re-ask finds it revoked), nor any
		// failure counted.
		rs.Failed = nil
		return rs, errors.Join(storeErr, werr)
	}
	for s := range settled {
		rs.Settled = append(rs.Settled, s)
	}
	slices.Sort(rs.Settled)
	rs.Listed = listed
	return rs, storeErr
}

// reaskOne asks again about one passed-over record, rec its stored state, appending a revocation it makes to done.
func reaskOne(ctx context.Context, st store.Store, users, devices *sweepSet, owners *ownerSet, ask *lookups,
	e passedOverRecord, rec *store.Record, now time.Time, done *[]*store.Record) reaskOutcome {
	out := reaskOutcome{entry: e}
	if rec.Status != store.StatusIssued || !rec.NotAfter.After(now) {
		// Revoked since (by this sweep's re-ask whose list write failed, or an operator), or expired: nothing left.
		out.settled = true
		return out
	}
	reason, by, ref := e.Reason, e.By, e.Ref
	if by == "" {
		var keys []lookupKey
		switch e.Scan {
		case "pass":
			if oid, upn := requesterAccount(rec.Requester); oid != "" && boundTo(rec, upn) && users.exists != nil {
				keys = append(keys, lookupKey{set: users, id: oid})
			}
			if oid := strings.ToLower(rec.DeviceObjectID); entra.IsGUID(oid) && devices.exists != nil {
				keys = append(keys, lookupKey{set: devices, id: oid})
			}
		case "owners":
			if owners.dir != nil {
				if k, ok := ownerQuestion(owners, rec, now); ok {
					keys = append(keys, k)
				}
			}
		}
		if len(keys) == 0 {
			// Nothing this directory can ask about it: kept, listed, for the operator.
			if e.Scan == "round" {
				// Listed from a round's cursor by adoptSkipped: the round decided to revoke it, for an account or
				// device disabled or deleted, but did not keep which; its question is gone with the round.
				out.err = fmt.Errorf("passed-over record %s: a round of an earlier build decided to revoke it and did "+
					"not keep why; revoke it by serial if its account or device is disabled or deleted", e.Serial)
				return out
			}
			out.err = fmt.Errorf("passed-over record %s: no question this directory can ask (scan %q)", e.Serial, e.Scan)
			return out
		}
		ask.prefetch(ctx, keys)
		for _, k := range keys {
			there, err := ask.answer(ctx, k)
			if err != nil {
				out.err, out.lookup = err, true
				return out
			}
			if there {
				continue
			}
			switch {
			case k.set == users:
				reason, by, ref = AffiliationChanged, AccountsBy, fmt.Sprintf("Entra account %s deleted", k.id)
			case k.set == devices:
				reason, by, ref = CessationOfOperation, DevicesBy, fmt.Sprintf("Entra device object %s deleted", k.id)
			default:
				f := strings.Fields(k.id)
				reason, by, ref = AffiliationChanged, OwnersBy, fmt.Sprintf("Entra account %s no longer owns device %s", f[0], f[1])
			}
			break
		}
		if by == "" {
			// Every question answered: the holder is still entitled.
			out.settled = true
			return out
		}
	}
	outcome, got, err := Revoke(ctx, st, rec.Serial, reason, by, ref, now)
	switch {
	case errors.Is(err, ErrNotRevocable):
		out.settled = true
	case err != nil:
		if NewlyRevoked(outcome, got) {
			// Durable before a later write failed (CompleteInterrupted repairs the rest): revoked.
			*done = append(*done, got)
			out.settled = true
			return out
		}
		out.err = fmt.Errorf("revoking passed-over record %s (%s): %w", e.Serial, ref, err)
	default:
		if NewlyRevoked(outcome, got) {
			*done = append(*done, got)
		}
		out.settled = true
	}
	return out
}
