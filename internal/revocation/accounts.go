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
	"unicode"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/store"
)

// AccountsBy is the revoker recorded on a certificate revoked because its Entra account was disabled or deleted.
const AccountsBy = "entra-account"

// AffiliationChanged is the RFC 5280 CRLReason for a certificate whose subject left the organisation or lost the
// standing it was certified for: its Entra account was disabled or deleted.
const AffiliationChanged = 3

// accountsDeltaDoc and devicesDeltaDoc are the meta documents holding where the users and devices delta go on: the
// next link of a round in progress, or the delta link of the last complete round.
const (
	accountsDeltaDoc = "entra-users-delta"
	devicesDeltaDoc  = "entra-devices-delta"
)

// DevicesBy is the revoker recorded on a certificate revoked because its Entra device was disabled or deleted.
const DevicesBy = "entra-device"

// CessationOfOperation is the RFC 5280 CRLReason for a certificate whose device is no longer in service: its Entra
// device was disabled (lost, stolen, retired) or deleted.
const CessationOfOperation = 5

// MaxAccountPages bounds the delta pages one RevokeDisabledAccounts or RevokeDisabledDevices call reads (each up to
// 999 objects): a tenant's first enumeration, longer than that, goes on in the next call from the persisted next
// link.
const MaxAccountPages = 50

// accountsPage is how many records one search page of the REST certificates asks for.
const accountsPage = 200

// UsersDelta reads one page of Microsoft Graph's users delta query (entra.Directory.UsersDelta).
type UsersDelta interface {
	UsersDelta(ctx context.Context, link string) (*entra.DeltaPage, error)
}

// DevicesDelta reads one page of Microsoft Graph's devices delta query (entra.Directory.DevicesDelta).
type DevicesDelta interface {
	DevicesDelta(ctx context.Context, link string) (*entra.DeltaPage, error)
}

type deltaDoc struct {
	Link string    `json:"link"`
	At   time.Time `json:"at"`
	// Recent are the accounts (or devices) found gone less than RecheckWindow ago: every call looks for their
	// certificates again, to catch those issued after an earlier call's scan (RecheckWindow).
	Recent []recentGone `json:"recent,omitempty"`
}

// recentGone is one entry of deltaDoc.Recent: the object ID (and a device's deviceId, when its entry carried one),
// why it went, and when a call first found it gone.
type recentGone struct {
	Key      string    `json:"key"`
	DeviceID string    `json:"deviceId,omitempty"`
	Why      string    `json:"why"`
	At       time.Time `json:"at"`
}

// change is the delta entry r stands for, as the revocations read it.
func (r recentGone) change() entra.DirectoryChange {
	c := entra.DirectoryChange{ID: r.Key, DeviceID: r.DeviceID}
	if r.Why == "deleted" {
		c.Removed = "deleted"
	} else {
		disabled := false
		c.Enabled = &disabled
	}
	return c
}

// RecheckWindow is how long after a call first found an account (or device) gone the following calls still look for
// its certificates. The delta may name an account before issuance stops for it: /api/csr trusts an "enabled" answer
// from Graph for 5 minutes (entra.DefaultPositiveTTL), and a request admitted just before may still be signing. A
// certificate issued in that time, after the call's scan, would otherwise stay valid, since later rounds of the delta
// do not name the account again. The first call to start RecheckWindow or more after the account was found looks
// once more and lets it go.
const RecheckWindow = 30 * time.Minute

// maxRecent bounds deltaDoc.Recent (some 100 bytes each, well under the store's meta document limit): beyond it, as
// in a tenant's first enumeration with thousands of accounts disabled long ago, the rest are not looked for again.
const maxRecent = 2000

// AccountSweep is what one RevokeDisabledAccounts or RevokeDisabledDevices call did.
type AccountSweep struct {
	// Revoked are the records this call revoked.
	Revoked []*store.Record
	// Pages is how many delta pages were read whole; Accounts how many accounts (or devices) their entries said were
	// disabled or deleted.
	Pages, Accounts int
	// Rechecked counts the accounts (or devices) found gone by earlier calls, within RecheckWindow, whose
	// certificates this call looked for again.
	Rechecked int
	// Unmapped counts the deleted devices among them whose entries carry only the object ID and that no issued,
	// unexpired REST certificate's record names by it: devices without such a certificate, or whose certificates
	// were issued before records kept the device's object ID (store.Record.DeviceObjectID), which stay valid. It is
	// not counted when the revocations fail.
	Unmapped int
	// Complete says the delta round reached its delta link: the tenant's changes are read up to now. Saved says the
	// link to go on from was persisted.
	Complete, Saved bool
	// Restarted says Graph had forgotten the persisted link and the call enumerated the tenant again.
	Restarted bool
}

// RevokeDisabledAccounts revokes, for affiliationChanged, the /api/csr certificates of Entra accounts that were
// disabled or deleted: a user the organisation has shut out must not keep a certificate relying parties accept for an
// account that can no longer sign in (SCEPman and EJBCA with Intune revoke them too). It asks Graph what changed with
// the users delta query (dir), from the link persisted by the previous call: the first call enumerates the tenant
// (an account already disabled then is acted on as well), later calls read only the changes. It reads at most
// MaxAccountPages pages, then scans the REST certificates once for all the accounts those pages named, and only when
// every revocation is durable persists the link it reached, so that a call that stops before (ctx ending, the store,
// a crash) leaves the old link and the next call reads the same pages again: idempotent, it ends with the same
// revocations. An account found gone is looked for again by the calls of the next RecheckWindow, which catch a
// certificate /api/csr issued after this call's scan, on an "enabled" answer it had cached.
//
// A certificate is the account's when its record (source api, issued, not expired) names the account as requester
// and is bound to it: a self-service device certificate (the device was the account's), or one that names the
// account's UPN (its subject CN, a UPN or e-mail SAN). A certificate a CSR.Request.Db user had issued for another
// name (a server, a device enrolled by an operator) is not the operator's and stays valid when the operator leaves.
// Each revocation records AccountsBy and, as its reference, the account and whether it was disabled or deleted.
//
// Only a definite answer revokes (accountEnabled false, an @removed entry): a page Graph refuses (403: the identity
// lacks User.Read.All), throttles (429), fails or answers malformed revokes nothing of its own and ends the reading;
// the pages read before it are acted on and the link after them kept. A link Graph has forgotten (410) makes the call
// enumerate again from the start. It returns what it did, also when it stopped on an error.
func RevokeDisabledAccounts(ctx context.Context, st store.Store, dir UsersDelta, now time.Time) (AccountSweep, error) {
	return sweepDelta(ctx, st, now, deltaSweep{doc: accountsDeltaDoc, what: "users", read: dir.UsersDelta,
		revoke: revokeAccounts})
}

// RevokeDisabledDevices is RevokeDisabledAccounts for Entra devices (the devices delta query, Device.Read.All): the
// self-service device certificates (source api, issued, not expired) of a device disabled or deleted in Entra are
// revoked for cessationOfOperation, recording DevicesBy and the device. A record is the device's when it carries the
// device's object ID (DeviceObjectID: csrapi records the Entra device Graph read, also the one behind an Intune
// managed device), or, for a disabled device, names its deviceId. A deleted device's entry carries only its object
// ID, so the certificates whose records were written before the object ID was kept are not found for it: such an
// entry is counted in Unmapped, never guessed at (organisations that disable devices before deleting them,
// Microsoft's guidance for stale devices, have them revoked when disabled, and a device's certificates also go with
// its owner's account).
func RevokeDisabledDevices(ctx context.Context, st store.Store, dir DevicesDelta, now time.Time) (AccountSweep, error) {
	return sweepDelta(ctx, st, now, deltaSweep{doc: devicesDeltaDoc, what: "devices", read: dir.DevicesDelta,
		devices: true, revoke: revokeDevices})
}

// deltaSweep is what RevokeDisabledAccounts and RevokeDisabledDevices differ in.
type deltaSweep struct {
	doc, what string
	read      func(ctx context.Context, link string) (*entra.DeltaPage, error)
	// devices says the entries are devices, whose deleted entries may match no record (Unmapped).
	devices bool
	// revoke scans the REST certificates once and revokes those of gone (the entries saying so, by object ID),
	// appending them to done, and returns the object IDs of gone that some record it scanned named.
	revoke func(ctx context.Context, st store.Store, gone map[string]entra.DirectoryChange, now time.Time,
		done *[]*store.Record) (map[string]bool, error)
}

func sweepDelta(ctx context.Context, st store.Store, now time.Time, ds deltaSweep) (AccountSweep, error) {
	var sw AccountSweep
	var state deltaDoc
	raw, etag, err := st.GetMeta(ctx, ds.doc)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return sw, fmt.Errorf("reading the %s delta link: %w", ds.what, err)
	default:
		if err := json.Unmarshal(raw, &state); err != nil {
			// Enumerate again rather than never again; the write below replaces it.
			state = deltaDoc{}
		}
	}
	gone := map[string]entra.DirectoryChange{} // by object ID
	since := map[string]time.Time{}            // when a call first found each of gone gone
	for _, r := range state.Recent {
		gone[r.Key], since[r.Key] = r.change(), r.At
	}
	paged := map[string]bool{} // the object IDs of gone this call's pages found gone
	link, readErr := state.Link, error(nil)
	for sw.Pages < MaxAccountPages {
		page, err := ds.read(ctx, link)
		if errors.Is(err, entra.ErrDeltaExpired) && link != "" && !sw.Restarted {
			sw.Restarted, link = true, ""
			continue
		}
		if err != nil {
			readErr = fmt.Errorf("reading the %s delta (page %d of this run): %w", ds.what, sw.Pages+1, err)
			break
		}
		sw.Pages++
		for _, c := range page.Changes {
			switch {
			case c.Removed == "" && c.Enabled == nil:
				// Says nothing about signing in (accountEnabled not sent): neither a disable nor a re-enable.
			case !c.Gone():
				// Re-enabled or restored since an earlier page (or call) said otherwise: nothing to revoke now; a
				// revocation made earlier is not undone.
				delete(gone, c.ID)
				delete(since, c.ID)
				delete(paged, c.ID)
			default:
				if c.DeviceID == "" {
					// A device disabled, then deleted within the round: its deviceId, from the earlier entry, still
					// finds the certificates whose records carry no object ID.
					c.DeviceID = gone[c.ID].DeviceID
				}
				gone[c.ID], paged[c.ID] = c, true
				if _, ok := since[c.ID]; !ok {
					since[c.ID] = now
				}
			}
		}
		if page.Delta != "" {
			link, sw.Complete = page.Delta, true
			break
		}
		link = page.Next
	}
	sw.Accounts = len(paged)
	sw.Rechecked = len(gone) - len(paged)
	if len(gone) > 0 {
		named, err := ds.revoke(ctx, st, gone, now, &sw.Revoked)
		if ds.devices && err == nil {
			for id, c := range gone {
				if c.DeviceID == "" && !named[id] && paged[id] {
					sw.Unmapped++
				}
			}
		}
		if err != nil {
			// The link stays where it was: the next call reads these pages again and finishes their revocations.
			return sw, errors.Join(readErr, err)
		}
	}
	if sw.Pages == 0 || link == state.Link {
		return sw, readErr
	}
	next := deltaDoc{Link: link, At: now}
	for id, c := range gone {
		if now.Sub(since[id]) < RecheckWindow {
			next.Recent = append(next.Recent, recentGone{Key: id, DeviceID: c.DeviceID, Why: why(c), At: since[id]})
		}
	}
	// The newest first, so that a cap drops the accounts found longest ago.
	slices.SortFunc(next.Recent, func(a, b recentGone) int {
		return cmp.Or(b.At.Compare(a.At), strings.Compare(a.Key, b.Key))
	})
	next.Recent = next.Recent[:min(len(next.Recent), maxRecent)]
	rawNew, err := json.Marshal(next)
	if err != nil {
		return sw, errors.Join(readErr, fmt.Errorf("encoding the %s delta link: %w", ds.what, err))
	}
	// Detached: the revocations are durable, so the progress made is not lost with a ctx that has just ended.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := st.PutMeta(wctx, ds.doc, rawNew, etag); err != nil {
		// A conflict is another call that moved the link meanwhile from where this one started: its link is as good.
		return sw, errors.Join(readErr, fmt.Errorf("saving the %s delta link: %w", ds.what, err))
	}
	sw.Saved = true
	return sw, readErr
}

// why is what an entry of gone says happened to its account or device.
func why(c entra.DirectoryChange) string {
	if c.Removed != "" {
		return "deleted"
	}
	return "disabled"
}

// revokeAccounts revokes, for affiliationChanged, the unexpired REST certificates bound to the accounts in gone (by
// object ID), appending them to done.
func revokeAccounts(ctx context.Context, st store.Store, gone map[string]entra.DirectoryChange, now time.Time,
	done *[]*store.Record) (map[string]bool, error) {
	return nil, scanREST(ctx, st, now, done, func(rec *store.Record) (int, string, string, bool) {
		oid, upn := requesterAccount(rec.Requester)
		c, ok := gone[oid]
		if !ok || !boundTo(rec, upn) {
			return 0, "", "", false
		}
		return AffiliationChanged, AccountsBy, fmt.Sprintf("Entra account %s %s", oid, why(c)), true
	})
}

// revokeDevices revokes, for cessationOfOperation, the unexpired REST certificates of the devices in gone (by object
// ID), appending them to done: those whose record carries the device's object ID, and those whose record names the
// deviceId an entry carried (a disabled device; records written before the object ID was kept carry only that).
func revokeDevices(ctx context.Context, st store.Store, gone map[string]entra.DirectoryChange, now time.Time,
	done *[]*store.Record) (map[string]bool, error) {
	byDeviceID := map[string]entra.DirectoryChange{}
	for _, c := range gone {
		if c.DeviceID != "" {
			byDeviceID[c.DeviceID] = c
		}
	}
	named := map[string]bool{}
	err := scanREST(ctx, st, now, done, func(rec *store.Record) (int, string, string, bool) {
		if oid := strings.ToLower(rec.DeviceObjectID); oid != "" {
			if c, ok := gone[oid]; ok {
				named[oid] = true
				return CessationOfOperation, DevicesBy, fmt.Sprintf("Entra device object %s %s", oid, why(c)), true
			}
		}
		dev := strings.ToLower(rec.DeviceID)
		if c, ok := byDeviceID[dev]; ok && dev != "" {
			return CessationOfOperation, DevicesBy, fmt.Sprintf("Entra device %s %s", dev, why(c)), true
		}
		return 0, "", "", false
	})
	return named, err
}

// scanREST reads the issued REST certificates once and revokes the unexpired ones match picks, with the reason,
// revoker and reference it gives, appending those this call revoked to done.
func scanREST(ctx context.Context, st store.Store, now time.Time, done *[]*store.Record,
	match func(*store.Record) (reason int, by, ref string, ok bool)) error {
	q := store.Query{Source: store.SourceAPI, Status: store.StatusIssued, Limit: accountsPage}
	err := revokeWhere(ctx, st, q, now, done, func(rec *store.Record) (int, string, string, bool) {
		if rec.Status != store.StatusIssued || rec.Source != store.SourceAPI || !rec.NotAfter.After(now) {
			return 0, "", "", false
		}
		return match(rec)
	})
	if err != nil {
		return fmt.Errorf("REST certificates: %w", err)
	}
	return nil
}

// requesterAccount reads the user object ID (lower case) and UPN from a REST record's Requester, as csrapi writes it
// for a user: "oid:<id> upn:<upn>", or "oid:<id> username:<name>" for a token without a upn claim, whose name (the
// token's preferred_username or unique_name, which a user may change) binds nothing and is read as no UPN whatever it
// holds ("username:x upn:someone@else" included). An application ("app:<id> oid:<id>") and anything else is "".
func requesterAccount(requester string) (oid, upn string) {
	first, rest, _ := strings.Cut(requester, " ")
	id, ok := strings.CutPrefix(first, "oid:")
	if !ok || !entra.IsGUID(id) {
		return "", ""
	}
	if v, ok := strings.CutPrefix(rest, "upn:"); ok && v != "" && !strings.ContainsFunc(v, unicode.IsSpace) {
		upn = v
	}
	return strings.ToLower(id), upn
}

// boundTo reports whether rec certifies its requester: a self-service device certificate (csrapi records a device
// ID only for a device the requester owned) or one naming upn as its subject CN, UPN or e-mail SAN.
func boundTo(rec *store.Record, upn string) bool {
	if rec.DeviceID != "" {
		return true
	}
	if upn == "" {
		return false
	}
	for _, san := range rec.SANs {
		if strings.EqualFold(san, "upn:"+upn) || strings.EqualFold(san, "email:"+upn) {
			return true
		}
	}
	for _, rdn := range strings.Split(rec.Subject, ",") {
		if strings.EqualFold(strings.TrimSpace(rdn), "CN="+upn) {
			return true
		}
	}
	return false
}
