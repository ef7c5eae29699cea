package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/store"
)

// AccountsBy is the revoker recorded on a certificate revoked because its Entra account was disabled or deleted.
const AccountsBy = "entra-account"

// AffiliationChanged is the RFC 5280 CRLReason for a certificate whose subject left the organisation or lost the
// standing it was certified for: its Entra account was disabled or deleted.
const AffiliationChanged = 3

// accountsDeltaDoc is the meta document holding where the users delta goes on: the next link of a round in progress,
// or the delta link of the last complete round.
const accountsDeltaDoc = "entra-users-delta"

// MaxAccountPages bounds the users delta pages one RevokeDisabledAccounts call reads (each up to 999 users): a
// tenant's first enumeration, longer than that, goes on in the next call from the persisted next link.
const MaxAccountPages = 50

// accountsPage is how many records one search page of the REST certificates asks for.
const accountsPage = 200

// UsersDelta reads one page of Microsoft Graph's users delta query (entra.Directory.UsersDelta).
type UsersDelta interface {
	UsersDelta(ctx context.Context, link string) (*entra.UsersDeltaPage, error)
}

type accountsDelta struct {
	Link string    `json:"link"`
	At   time.Time `json:"at"`
}

// AccountSweep is what one RevokeDisabledAccounts call did.
type AccountSweep struct {
	// Revoked are the records this call revoked.
	Revoked []*store.Record
	// Pages is how many delta pages were read whole; Accounts how many of their entries were a disabled or deleted
	// account.
	Pages, Accounts int
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
// revocations.
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
	var sw AccountSweep
	var state accountsDelta
	raw, etag, err := st.GetMeta(ctx, accountsDeltaDoc)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return sw, fmt.Errorf("reading the users delta link: %w", err)
	default:
		if err := json.Unmarshal(raw, &state); err != nil {
			// Enumerate again rather than never again; the write below replaces it.
			state = accountsDelta{}
		}
	}
	gone := map[string]string{} // why, by account object ID
	link, readErr := state.Link, error(nil)
	for sw.Pages < MaxAccountPages {
		page, err := dir.UsersDelta(ctx, link)
		if errors.Is(err, entra.ErrDeltaExpired) && link != "" && !sw.Restarted {
			sw.Restarted, link = true, ""
			continue
		}
		if err != nil {
			readErr = fmt.Errorf("reading the users delta (page %d of this run): %w", sw.Pages+1, err)
			break
		}
		sw.Pages++
		for _, c := range page.Changes {
			if !c.Gone() {
				// Re-enabled or restored since an earlier page said otherwise: its certificates were revoked then or
				// will not be now; a revocation is not undone.
				delete(gone, c.ID)
				continue
			}
			why := "disabled"
			if c.Removed != "" {
				why = "deleted"
			}
			gone[c.ID] = why
		}
		if page.Delta != "" {
			link, sw.Complete = page.Delta, true
			break
		}
		link = page.Next
	}
	sw.Accounts = len(gone)
	if len(gone) > 0 {
		if err := revokeAccounts(ctx, st, gone, now, &sw.Revoked); err != nil {
			// The link stays where it was: the next call reads these pages again and finishes their revocations.
			return sw, errors.Join(readErr, err)
		}
	}
	if sw.Pages == 0 || link == state.Link {
		return sw, readErr
	}
	rawNew, err := json.Marshal(accountsDelta{Link: link, At: now})
	if err != nil {
		return sw, errors.Join(readErr, fmt.Errorf("encoding the users delta link: %w", err))
	}
	// Detached: the revocations are durable, so the progress made is not lost with a ctx that has just ended.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := st.PutMeta(wctx, accountsDeltaDoc, rawNew, etag); err != nil {
		// A conflict is another call that moved the link meanwhile from where this one started: its link is as good.
		return sw, errors.Join(readErr, fmt.Errorf("saving the users delta link: %w", err))
	}
	sw.Saved = true
	return sw, readErr
}

// revokeAccounts scans the issued REST certificates once and revokes those of the accounts in gone (why, by object
// ID) that have not expired, appending them to done.
func revokeAccounts(ctx context.Context, st store.Store, gone map[string]string, now time.Time, done *[]*store.Record) error {
	q := store.Query{Source: store.SourceAPI, Status: store.StatusIssued, Limit: accountsPage}
	for {
		page, next, err := st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("searching the REST certificates of disabled or deleted accounts: %w", err)
		}
		for _, rec := range page {
			oid, upn := requesterAccount(rec.Requester)
			why, ok := gone[oid]
			if !ok || rec.Status != store.StatusIssued || rec.Source != store.SourceAPI || !rec.NotAfter.After(now) ||
				!boundTo(rec, upn) {
				continue
			}
			ref := fmt.Sprintf("Entra account %s %s", oid, why)
			outcome, got, err := Revoke(ctx, st, rec.Serial, AffiliationChanged, AccountsBy, ref, now)
			if err != nil {
				return fmt.Errorf("revoking %s of Entra account %s (%s): %w", rec.Serial, oid, why, err)
			}
			if NewlyRevoked(outcome, got) {
				*done = append(*done, got)
			}
		}
		if next == "" {
			return nil
		}
		q.Continuation = next
	}
}

// requesterAccount reads the user object ID (lower case) and UPN from a REST record's Requester, as csrapi writes it
// for a user ("oid:<id> upn:<upn>" or "oid:<id> username:<name>"); "" for an application ("app:<id> oid:<id>") and
// anything else.
func requesterAccount(requester string) (oid, upn string) {
	fields := strings.Fields(requester)
	if len(fields) == 0 {
		return "", ""
	}
	id, ok := strings.CutPrefix(fields[0], "oid:")
	if !ok || !entra.IsGUID(id) {
		return "", ""
	}
	for _, f := range fields[1:] {
		if v, ok := strings.CutPrefix(f, "upn:"); ok {
			upn = v
		}
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
