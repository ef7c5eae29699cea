package revocation

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
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
// next link of a round in progress, or the delta link of the last complete round; and the round of pages read
// whose scan of the REST certificates is not done yet (deltaDoc.Round). scanCursorDoc holds how far that scan got.
const (
	accountsDeltaDoc = "entra-users-delta"
	devicesDeltaDoc  = "entra-devices-delta"
	scanCursorDoc    = "entra-sweep-cursor"
	// verifyCursorDoc holds how far the scan of the verifying passes got (deltaDoc.Pass), a cursor of its own so
	// that the pass goes on beside the rounds.
	verifyCursorDoc = "entra-verify-cursor"
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

// accountsPage is how many records one search page of the REST certificates asks for, and accountsScanPages how
// many pages of its own listing the store reads for one (Query.ScanPages): the cursor moves on after each search
// page, so that on a large table whose REST certificates are few a page cut by the step's time still leaves
// progress.
const (
	accountsPage      = 200
	accountsScanPages = 4
)

// maxRoundGone bounds the accounts (or devices) one round looks for, Recent's included: a call reads no further
// page once it has that many (the first page always), so that the round, up to a page of 999 more, fits in its
// meta document (some 100 bytes each, within maxRoundBytes). A first enumeration finding more goes on in the next
// round, from the link reached.
const maxRoundGone = 2000

// MaxLookups bounds the accounts and devices one call asks Graph about one by one (UserLookup, DeviceLookup) in the
// scan of a verifying pass (verifyPass), LookupConcurrency at a time. A call that reaches it stops the scan after the
// last page it finished, and the next call goes on from there with a new allowance; verifyPage keeps a page's
// lookups (up to two a record) well within it, so that every call finishes pages. At LookupConcurrency questions in
// flight and some 150 ms an answer, 2000 take about 40 s, within the sweep's minute, and Graph's directory limits
// (thousands of requests per 10 s for an application in a tenant) are far off.
const MaxLookups = 2000

// LookupConcurrency bounds the questions a verifying pass has in flight at once: each still waits out Graph's
// Retry-After as entra.Directory does for any GET, and eight keep the pass well under Graph's throttling limits.
const LookupConcurrency = 8

// lookupGrace is how long after a verifying pass's enumeration had been read (verifyPass.AsOf) a record must have
// been created for the pass not to ask about its account or device. /api/csr read the account (device) from Graph
// before it wrote the record, so one created after the enumeration began is of an object Graph had then, whose
// deletion since is in a later delta round: asking again could only hear a 404 from a Graph replica that has not
// yet seen an object created moments before (replication lag), and revoke a new certificate as deleted. The grace
// covers the "enabled" answer issuance may have cached for entra.DefaultPositiveTTL before the enumeration began (an
// account deleted then is in no delta, and its record must still be asked about), and five minutes more for a
// request between its check and its record and for the clocks of two instances. A pass's later calls, an hour or
// more after AsOf, so never ask about a record issued moments before them; only the call that begins it may meet
// one issued in its own minute.
const lookupGrace = entra.DefaultPositiveTTL + 5*time.Minute

// verifyPage is how many records one search page asks for in the scan of a verifying pass.
const verifyPage = 50

// maxRoundBytes is the largest document a round is written in, under the store's meta document limit (512 KiB).
const maxRoundBytes = 480 << 10

// UsersDelta reads one page of Microsoft Graph's users delta query (entra.Directory.UsersDelta).
type UsersDelta interface {
	UsersDelta(ctx context.Context, link string) (*entra.DeltaPage, error)
}

// DevicesDelta reads one page of Microsoft Graph's devices delta query (entra.Directory.DevicesDelta).
type DevicesDelta interface {
	DevicesDelta(ctx context.Context, link string) (*entra.DeltaPage, error)
}

// UserLookup says whether one user is in the directory now (entra.Directory.UserExists): false only for a definite
// "not found". A UsersDelta that is one too has the accounts a delta enumeration from scratch did not name looked up
// (verifyPass).
type UserLookup interface {
	UserExists(ctx context.Context, userObjectID string) (bool, error)
}

// DeviceLookup is UserLookup for an Entra device by object ID (entra.Directory.DeviceObjectExists).
type DeviceLookup interface {
	DeviceObjectExists(ctx context.Context, objectID string) (bool, error)
}

// The directory the sweep runs with in production looks objects up: without it, a deletion before an enumeration
// from scratch would go unnoticed again.
var (
	_ UserLookup   = (*entra.Directory)(nil)
	_ DeviceLookup = (*entra.Directory)(nil)
)

// errLookupsSpent stops the scan of a verifying pass once the call has asked MaxLookups: not a failure, the
// next call goes on from the cursor.
var errLookupsSpent = errors.New("the Graph lookups of this run are spent")

type deltaDoc struct {
	Link string    `json:"link"`
	At   time.Time `json:"at"`
	// Recent are the accounts (or devices) found gone less than RecheckWindow ago: every call looks for their
	// certificates again, to catch those issued after an earlier call's scan (RecheckWindow).
	Recent []recentGone `json:"recent,omitempty"`
	// Round is the round whose pages a call read and whose scan of the REST certificates has not reached its end:
	// until it does, possibly calls later, no call reads the delta further, and Link stays where the round began.
	// Recent is folded into Round.Gone meanwhile.
	Round *deltaRound `json:"round,omitempty"`
	// Verified says a verifying pass (Pass) reached the end of the REST certificates since the enumeration from
	// scratch Link goes on from began: an account deleted before that enumeration (the first call, or one after
	// Graph forgot the link), or while the forgotten link's changes went unread, is in no page of it nor of any
	// later delta, so the accounts (devices) of the records must be asked about once. A document without it (none
	// yet, or one a build before it wrote) has a pass begin.
	Verified bool `json:"verified,omitempty"`
	// Pass is the verifying pass in progress, nil when none.
	Pass *verifyPass `json:"pass,omitempty"`
}

// verifyPass is a scan of the REST certificates, over as many calls as it takes, that asks Graph about the account
// (device object) of each record (UserLookup, DeviceLookup) and revokes, as deleted, the certificates of those Graph
// no longer has. It goes on beside the delta's rounds, from a cursor of its own (verifyCursorDoc), so that a tenant
// whose certificates have more holders than one call may ask about still has the accounts disabled meanwhile
// revoked by the next call. It ends only when every question was answered: one Graph does not answer stops the
// scan there, for the next call to ask again.
type verifyPass struct {
	// ID names the pass in its cursor: a pass begun again (after another enumeration from scratch) scans anew.
	ID string `json:"id"`
	// AsOf is when the enumeration the pass follows had been read: a record created lookupGrace or more after it
	// is not asked about (lookupGrace).
	AsOf time.Time `json:"asOf"`
}

// deltaRound is what a round's pages said, kept until its scan is done so that a call that stops in it loses
// nothing: the scan goes on from its cursor (scanCursor) with the same accounts.
type deltaRound struct {
	// ID names the round in the scan cursor; the sets (accounts, devices) one call reads share it, and their scan.
	ID string `json:"id"`
	// Started is when the call that read the pages started: the accounts they named were found gone then, and
	// RecheckWindow is counted from it.
	Started time.Time `json:"started"`
	// Link is where the delta goes on once the scan is done; Complete says it is a delta link.
	Link     string `json:"link"`
	Complete bool   `json:"complete,omitempty"`
	// Gone are the accounts (or devices) to look for: those the pages named gone and those of Recent.
	Gone []roundGone `json:"gone"`
	// Verify was set by the builds that asked Graph about the records within a round (before verifyPass): such a
	// round is scanned as any other, and a verifying pass begins beside it.
	Verify bool `json:"verify,omitempty"`
}

// roundGone is one entry of deltaRound.Gone, spelt short: thousands of them go in one document (maxRoundGone).
type roundGone struct {
	Key      string `json:"k"`
	DeviceID string `json:"d,omitempty"`
	Deleted  bool   `json:"x,omitempty"`
	// At is when a call first found it gone, in Unix seconds.
	At int64 `json:"t"`
	// Paged says the round's pages named it gone (else it came from Recent, to be looked for again).
	Paged bool `json:"p,omitempty"`
}

// change is the delta entry g stands for, as the revocations read it.
func (g roundGone) change() entra.DirectoryChange {
	why := "disabled"
	if g.Deleted {
		why = "deleted"
	}
	return recentGone{Key: g.Key, DeviceID: g.DeviceID, Why: why}.change()
}

// scanCursor is how far the scan of a round's REST certificates got (scanCursorDoc).
type scanCursor struct {
	// Round names the rounds scanned, each as its set and ID ("users:<id>", "devices:<id>"), sorted and joined by
	// "+", of the sets whose round is durable: another round's cursor, or the same round's scanned for other sets
	// than a call scans for, is not that call's (scannedFor).
	Round string `json:"round"`
	// After is the search continuation after the last page whose revocations are durable ("" at the start); Done
	// says the scan reached the end.
	After string `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"`
	// Named are the devices gone that a record scanned so far names by object ID (AccountSweep.Unmapped).
	Named []string `json:"named,omitempty"`
	// Stuck is the record (serial) the last calls' scans stopped at, its revocation or the lookup of its holder
	// failing, and Tries how many calls in a row did; Skipped are the records the scan passes over since that
	// reached MaxRecordTries, so that one record does not hold the round (and the delta) or the pass forever; each is
	// listed first (passedOverDoc), since this cursor goes with its round, pass or cycle.
	Stuck   string   `json:"stuck,omitempty"`
	Tries   int      `json:"tries,omitempty"`
	Skipped []string `json:"skipped,omitempty"`
}

// MaxRecordTries is how many calls in a row a scan may stop at the same record, its revocation (or the lookup of
// its holder) failing, before it passes over that record (scanCursor.Skipped, DisabledSweep.Skipped): a record
// that can never be revoked would otherwise hold its round, and with it every later delta, forever. A call counts
// only when the failure is the record's: its time had not run out, the store took the cursor's write, and, for a
// lookup, Graph answered another question of the call, so that an outage of either passes over nothing. Three
// hourly calls leave a passing fault time to clear while the delta waits a few hours at most. A record passed over
// is listed (passedOverDoc) and asked about again on its own backoff (ReaskAfter); one listed already is passed over
// at its first counted failure.
const MaxRecordTries = 3

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
	// link moved on and was persisted: nothing was left to look for, or the round's scan reached its end.
	Complete, Saved bool
	// Restarted says Graph had forgotten the persisted link and the call enumerated the tenant again.
	Restarted bool
	// Resumed says the call read no pages but went on with the scan of the round an earlier call read, which had
	// not reached its end; Complete is then that round's.
	Resumed bool
	// LookedUp counts the accounts (or devices) of records that the call asked Graph about one by one, in the
	// scan of a verifying pass (after an enumeration from scratch), and Missing those Graph no longer had, whose
	// certificates were revoked as deleted.
	LookedUp, Missing int
}

// RevokeDisabledAccounts revokes, for affiliationChanged, the /api/csr certificates of Entra accounts that were
// disabled or deleted: a user the organisation has shut out must not keep a certificate relying parties accept for an
// account that can no longer sign in (SCEPman and EJBCA with Intune revoke them too). It asks Graph what changed with
// the users delta query (dir), from the link persisted by the previous call: the first call enumerates the tenant
// (an account already disabled then is acted on as well), later calls read only the changes. It reads at most
// MaxAccountPages pages (fewer once maxRoundGone accounts are found gone) and keeps what they said as a round, in
// the meta document, then scans the REST certificates once for all the accounts of the round, saving after each
// page where the scan got; only when the scan reaches the end, every revocation durable, does the link move on to
// the one the pages reached. A call that stops before (ctx ending, the store, a crash) leaves the round, and the next
// call goes on with its scan where this one stopped, reading no pages until it is done: a scan longer than one
// call's time is finished by the next ones rather than started again every hour, and no revocation is lost or made
// twice. An account found gone is looked for again by the rounds of the next RecheckWindow, which catch a
// certificate /api/csr issued after this round's scan, on an "enabled" answer it had cached. A round the devices
// sweep left unfinished is carried on too (not reported); RevokeDisabled does both in one scan.
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
//
// An enumeration from scratch (the first call, or one after a 410) lists only the accounts there now, so an account
// deleted before it is in no page of it nor of any later delta. One that read a page therefore begins a verifying
// pass (verifyPass), which later calls go on with beside the rounds: a scan of the REST certificates, from a cursor
// of its own, that asks Graph about the account of each record that the call's pages did not name and that was
// created before the enumeration (plus lookupGrace: a newer one's account was read at issuance, and Graph may not
// show a just-created account yet). It asks at most MaxLookups a call, LookupConcurrency at a time, each answer kept
// for the call, and revokes, as deleted, the certificates of those Graph says it does not have. A question Graph
// does not answer revokes nothing for that record and stops the pass there (the next call asks again); the
// allowance spent stops it too, without an error. Neither holds up the rounds. A document written before the passes
// (no Verified) has a pass begin as well.
func RevokeDisabledAccounts(ctx context.Context, st store.Store, dir UsersDelta, now time.Time) (AccountSweep, error) {
	users := usersSet(dir)
	sweepDirectory(ctx, st, now, users, devicesSet(nil))
	return users.sw, users.err
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
	devices := devicesSet(dir)
	sweepDirectory(ctx, st, now, usersSet(nil), devices)
	return devices.sw, devices.err
}

// Directory reads Graph's users and devices delta queries (entra.Directory).
type Directory interface {
	UsersDelta
	DevicesDelta
}

// DisabledSweep is what one RevokeDisabled call did, for the accounts and for the devices.
type DisabledSweep struct {
	Accounts, Devices AccountSweep
	// AccountsErr and DevicesErr say how each part stopped short, nil when it did not: a page Graph refused, the
	// store, ctx ending. The scan the two share failing fails both.
	AccountsErr, DevicesErr error
	// Scanned is how many search pages of the REST certificates this call read for the round; ScanLeft says the
	// scan of the round in progress stopped before its end and the next call goes on from where it stopped.
	Scanned  int
	ScanLeft bool
	// Checked is how many search pages the verifying pass read (verifyPass); CheckLeft says it stopped before its
	// end (its lookups spent, a question Graph did not answer, ctx), and the next call goes on from where it stopped.
	Checked   int
	CheckLeft bool
	// Skipped are the records (serials) this call's scans passed over, after MaxRecordTries calls in a row stopped
	// at each (its revocation, or the lookup of its holder, failing): listed (ListPassedOver), and asked about again
	// by later calls on their own backoff (Reasked), not by the scans.
	Skipped []string
	// Owners is what the owner check of self-service device certificates did (CheckDeviceOwners), when the
	// directory checks owners; OwnersErr says how it stopped short (its Skipped are not in Skipped).
	Owners    OwnerSweep
	OwnersErr error
	// Reasked is what the re-asks of the records the scans passed over in earlier runs did (ReaskAfter,
	// MaxReasks); ReaskErr says how they stopped short (the store, the list's write), or that the records earlier
	// builds passed over could not be listed (adoptSkipped).
	Reasked  ReaskSweep
	ReaskErr error
}

// RevokeDisabled is RevokeDisabledAccounts and RevokeDisabledDevices in one call, which scans the REST certificates
// once for both: the accounts and the devices the pages of this call named, or the round an earlier call began and
// whose scan is not finished. Each delta is read within a third of the time ctx leaves at most, so that one
// enumeration of a large tenant neither keeps the other from being read nor leaves the scan no time. Last, with the
// time left, a directory that checks owners (OwnerLookup) has the self-service device certificates' owners
// re-checked (CheckDeviceOwners): a revocation for a disabled or deleted account or device comes first. Before all,
// the first call after an upgrade lists the records earlier builds' scans passed over (adoptSkipped); a call that
// could not says why in ReaskErr, and the next tries again.
func RevokeDisabled(ctx context.Context, st store.Store, dir Directory, now time.Time) DisabledSweep {
	// First, before a scan replaces its cursor: the scans go on when it fails (a list that does not decode, or is
	// full, would otherwise stop every revocation for good), and the next call adopts them.
	adoptErr := adoptSkipped(ctx, st, now)
	if adoptErr != nil {
		adoptErr = fmt.Errorf("listing the records earlier builds passed over: %w", adoptErr)
	}
	users, devices := usersSet(dir), devicesSet(dir)
	stats := sweepDirectory(ctx, st, now, users, devices)
	sw := DisabledSweep{Accounts: users.sw, Devices: devices.sw, AccountsErr: users.err, DevicesErr: devices.err,
		Scanned: stats.scanned, ScanLeft: stats.scanLeft, Checked: stats.checked, CheckLeft: stats.checkLeft,
		Skipped: stats.skipped}
	if ctx.Err() == nil {
		// Beside the rounds and passes, whose cursors no longer hold them: the records passed over in earlier runs.
		sw.Reasked, sw.ReaskErr = reaskPassedOver(ctx, st, dir, now)
	}
	sw.ReaskErr = errors.Join(adoptErr, sw.ReaskErr)
	if owners, ok := dir.(OwnerLookup); ok {
		if ctx.Err() != nil {
			// The delta and the passes took the call's time: the cycle goes on in the next call.
			sw.Owners.Left = true
		} else {
			sw.Owners, sw.OwnersErr = CheckDeviceOwners(ctx, st, owners, now)
		}
	}
	return sw
}

func usersSet(dir UsersDelta) *sweepSet {
	s := &sweepSet{doc: accountsDeltaDoc, what: "users"}
	if dir != nil {
		s.read = dir.UsersDelta
	}
	if l, ok := dir.(UserLookup); ok {
		s.exists = l.UserExists
	}
	return s
}

func devicesSet(dir DevicesDelta) *sweepSet {
	s := &sweepSet{doc: devicesDeltaDoc, what: "devices", devices: true}
	if dir != nil {
		s.read = dir.DevicesDelta
	}
	if l, ok := dir.(DeviceLookup); ok {
		s.exists = l.DeviceObjectExists
	}
	return s
}

// sweepSet is the accounts' or the devices' part of a sweep: where its delta stands, and what this call did.
type sweepSet struct {
	doc, what string
	// read reads a page of the delta; nil when this call reads none (RevokeDisabledAccounts reads no devices), and
	// then the call only carries on a round an earlier call began.
	read func(ctx context.Context, link string) (*entra.DeltaPage, error)
	// devices says the entries are devices, whose deleted entries may match no record (Unmapped).
	devices bool
	// exists asks Graph whether one object is still there; nil when the directory cannot (no pass runs then).
	exists func(ctx context.Context, id string) (bool, error)

	sw  AccountSweep
	err error
	// roundErr is why the round could not be written: reported only when the call does not finish the round
	// either, since a finished round needs no resuming.
	roundErr error

	loaded bool // state and etag were read
	// state is the set's document as this call last read or wrote it, and etag its version.
	state deltaDoc
	etag  string
	// round is the round this call acts on (read now or earlier), nil when none; durable says it is in the
	// set's document, so that a call stopped in its scan loses nothing of it.
	round   *deltaRound
	durable bool
	gone    map[string]entra.DirectoryChange // by object ID
	since   map[string]time.Time             // when a call first found each of gone gone
	paged   map[string]bool                  // the object IDs of gone the round's pages found gone
	// present are the objects this call's pages named as there (enabled or not): a verifying pass need not ask
	// about them, since a deletion after the page is in a later round. Not kept: a later call asks.
	present map[string]bool
	// pass is the verifying pass the set's document is to hold (nil when none) and verified its Verified: every
	// write of the document records them, so that a pass begun is durable with the first write after it.
	pass     *verifyPass
	verified bool
}

// sweepDirectory sweeps the sets (the accounts, the devices) in four steps. Unless a round is in progress, it reads
// each set's delta on from its link and writes what the pages said (the accounts or devices gone, the link reached)
// as the set's round, in its document, before acting on it. It then scans the REST certificates once for every set
// in the round, from the cursor the last call stopped at (scanCursorDoc), saving the cursor after each page whose
// revocations are durable; only a scan that reaches the end moves each set's link on to its round's, ending the
// round. A call that stops anywhere (ctx, the store, a crash) leaves either the old link or the round and its cursor,
// and the next call goes on from there: no scan starts again from the beginning because it could not finish in one
// call, and no link moves past accounts whose certificates are not all revoked. Last, with what is left of ctx, it
// goes on with the verifying pass of the sets that have one (verifyPasses), beside the rounds. It returns how many
// search pages the round's scan and the pass's read, and whether each was left unfinished.
func sweepDirectory(ctx context.Context, st store.Store, now time.Time, sets ...*sweepSet) sweepStats {
	start := time.Now()
	inRound := false
	for _, s := range sets {
		s.load(ctx, st)
		s.adopt(now)
		inRound = inRound || s.state.Round != nil
	}
	if inRound {
		// No pages are read until the round's scan is done: a new round would need a scan from the beginning.
		for _, s := range sets {
			if s.state.Round != nil {
				s.resume()
			}
		}
	} else {
		id := newRoundID()
		deadline, bounded := ctx.Deadline()
		var readers []*sweepSet
		for _, s := range sets {
			if s.loaded && s.read != nil {
				readers = append(readers, s)
			}
		}
		for i, s := range readers {
			rctx, cancel := ctx, context.CancelFunc(func() {})
			if bounded {
				share := deadline.Sub(start) * time.Duration(i+1) / time.Duration(len(readers)+1)
				rctx, cancel = context.WithDeadline(ctx, start.Add(share))
			}
			s.readPages(rctx, ctx, now, start)
			cancel()
			s.begin(ctx, st, id, now)
		}
	}
	var inScan []*sweepSet
	for _, s := range sets {
		if s.round != nil {
			inScan = append(inScan, s)
		}
	}
	var stats sweepStats
	if len(inScan) > 0 {
		var err error
		var skipped []string
		stats.scanned, skipped, err = scanRound(ctx, st, now, inScan)
		stats.scanLeft, stats.skipped = err != nil, skipped
		for _, s := range inScan {
			if err != nil {
				s.err = errors.Join(s.err, s.roundErr, err)
			} else {
				s.commit(ctx, st)
			}
		}
	}
	var skipped []string
	stats.checked, stats.checkLeft, skipped = verifyPasses(ctx, st, now, sets)
	stats.skipped = append(stats.skipped, skipped...)
	return stats
}

// sweepStats is what sweepDirectory's scans did: the search pages the round's scan and the pass's read, whether
// each was left unfinished, and the records they passed over (MaxRecordTries).
type sweepStats struct {
	scanned, checked    int
	scanLeft, checkLeft bool
	skipped             []string
}

// load reads the set's document. A document that does not decode is taken for none: the set enumerates again
// rather than never again, and its next write replaces it.
func (s *sweepSet) load(ctx context.Context, st store.Store) {
	raw, etag, err := st.GetMeta(ctx, s.doc)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.err = fmt.Errorf("reading the %s delta link: %w", s.what, err)
		return
	default:
		if err := json.Unmarshal(raw, &s.state); err != nil {
			s.state = deltaDoc{}
		}
	}
	s.loaded, s.etag = true, etag
	s.pass, s.verified = s.state.Pass, s.state.Verified
}

// adopt begins a verifying pass for a set whose document goes on from an enumeration no pass has answered for: one a
// build before the passes wrote (no Verified), or one whose round a build that verified within rounds left. That
// enumeration began before this call, so now is after it (verifyPass.AsOf). A set with no link nor round yet begins
// its pass with its first enumeration (readPages).
func (s *sweepSet) adopt(now time.Time) {
	if !s.loaded || s.exists == nil || s.verified || s.pass != nil || (s.state.Link == "" && s.state.Round == nil) {
		return
	}
	s.pass = &verifyPass{ID: newRoundID(), AsOf: now}
}

// readPages reads the set's delta on from its link, at most MaxAccountPages pages and, past the first, only while
// fewer than maxRoundGone accounts are to be looked for, so that the round fits its document. A read cut short by
// rctx (the set's share of the time) while ctx goes on is no failure: the pages before it are acted on, the rest
// read by the next round. An enumeration from scratch that read a page begins a verifying pass (the call's now plus
// the time since start, when the pages had been read, is its AsOf).
func (s *sweepSet) readPages(rctx, ctx context.Context, now, start time.Time) {
	s.gone, s.since, s.paged = map[string]entra.DirectoryChange{}, map[string]time.Time{}, map[string]bool{}
	for _, r := range s.state.Recent {
		s.gone[r.Key], s.since[r.Key] = r.change(), r.At
	}
	s.present = map[string]bool{}
	link := s.state.Link
	fresh := link == ""
	for s.sw.Pages < MaxAccountPages && (s.sw.Pages == 0 || len(s.gone) < maxRoundGone) {
		page, err := s.read(rctx, link)
		if errors.Is(err, entra.ErrDeltaExpired) && link != "" && !s.sw.Restarted {
			s.sw.Restarted, link, fresh = true, "", true
			continue
		}
		if err != nil && rctx.Err() != nil && ctx.Err() == nil {
			break
		}
		if err != nil {
			s.err = fmt.Errorf("reading the %s delta (page %d of this run): %w", s.what, s.sw.Pages+1, err)
			break
		}
		s.sw.Pages++
		for _, c := range page.Changes {
			if c.Removed == "" {
				s.present[c.ID] = true
			} else {
				delete(s.present, c.ID)
			}
			switch {
			case c.Removed == "" && c.Enabled == nil:
				// Says nothing about signing in (accountEnabled not sent): neither a disable nor a re-enable.
			case !c.Gone():
				// Re-enabled or restored since an earlier page (or call) said otherwise: nothing to revoke now; a
				// revocation made earlier is not undone.
				delete(s.gone, c.ID)
				delete(s.since, c.ID)
				delete(s.paged, c.ID)
			default:
				if c.DeviceID == "" {
					// A device disabled, then deleted within the round: its deviceId, from the earlier entry, still
					// finds the certificates whose records carry no object ID.
					c.DeviceID = s.gone[c.ID].DeviceID
				}
				s.gone[c.ID], s.paged[c.ID] = c, true
				if _, ok := s.since[c.ID]; !ok {
					s.since[c.ID] = now
				}
			}
		}
		if page.Delta != "" {
			link, s.sw.Complete = page.Delta, true
			break
		}
		link = page.Next
	}
	s.sw.Accounts = len(s.paged)
	s.sw.Rechecked = len(s.gone) - len(s.paged)
	// An enumeration from scratch that read a page has begun: a deletion before it is in no delta, so the accounts
	// of the records must be asked about once, by a pass that replaces any earlier one (whose answers predate the
	// gap this enumeration follows). One whose first page failed read nothing, and the next call starts it again.
	if fresh && s.sw.Pages > 0 {
		s.verified, s.pass = false, nil
		if s.exists != nil {
			s.pass = &verifyPass{ID: newRoundID(), AsOf: now.Add(time.Since(start))}
		}
	}
	s.round = &deltaRound{Started: now, Link: link, Complete: s.sw.Complete}
}

// begin makes what readPages found the set's round, written to its document with the ETag read. With nothing to
// look for the link moves on at once, and there is no round. A round that cannot be written (the store, a round
// too large for a document, another call that wrote first) is still acted on by this call, as a call did before
// rounds were kept: its link stays, so a call that stops before the end reads its pages again.
func (s *sweepSet) begin(ctx context.Context, st store.Store, id string, now time.Time) {
	r := s.round
	s.round = nil
	if len(s.gone) == 0 {
		moved := s.sw.Pages > 0 && r.Link != s.state.Link
		if moved || s.passPending() {
			at := s.state.At
			if moved {
				at = now
			}
			if err := s.save(ctx, st, deltaDoc{Link: r.Link, At: at}); err == nil {
				s.sw.Saved = moved
			}
		}
		return
	}
	r.ID = id
	for key, c := range s.gone {
		r.Gone = append(r.Gone, roundGone{Key: key, DeviceID: c.DeviceID, Deleted: c.Removed != "",
			At: s.since[key].Unix(), Paged: s.paged[key]})
	}
	slices.SortFunc(r.Gone, func(a, b roundGone) int { return strings.Compare(a.Key, b.Key) })
	s.round = r
	// Recent is folded into the round, and comes back, renewed, when the round ends.
	doc := deltaDoc{Link: s.state.Link, At: s.state.At, Round: r}
	raw, err := json.Marshal(s.recording(doc))
	if err == nil && len(raw) > maxRoundBytes {
		err = fmt.Errorf("%d bytes, over the %d this sweep writes", len(raw), maxRoundBytes)
	}
	if err == nil {
		if err = s.save(ctx, st, doc); err == nil {
			s.durable = true
			return
		}
	}
	s.roundErr = fmt.Errorf("saving the %s round read: %w", s.what, err)
}

// passPending says the set has a pass its document does not hold yet.
func (s *sweepSet) passPending() bool {
	return s.pass != nil && (s.state.Pass == nil || s.state.Pass.ID != s.pass.ID)
}

// recording is doc as the set writes it: with the pass and Verified it keeps.
func (s *sweepSet) recording(doc deltaDoc) deltaDoc {
	doc.Pass, doc.Verified = s.pass, s.verified
	return doc
}

// resume takes up the round an earlier call wrote to the set's document.
func (s *sweepSet) resume() {
	s.round, s.durable, s.sw.Resumed, s.sw.Complete = s.state.Round, true, true, s.state.Round.Complete
	s.gone, s.since, s.paged = map[string]entra.DirectoryChange{}, map[string]time.Time{}, map[string]bool{}
	for _, g := range s.round.Gone {
		s.gone[g.Key], s.since[g.Key] = g.change(), time.Unix(g.At, 0).UTC()
		if g.Paged {
			s.paged[g.Key] = true
		}
	}
}

// commit ends the set's round, its scan done: the link moves on to the round's, and Recent keeps the accounts found
// gone less than RecheckWindow before the round started (its scan may have passed where a certificate issued to
// them since is), so that the next rounds look for them again.
func (s *sweepSet) commit(ctx context.Context, st store.Store) {
	next := deltaDoc{Link: s.round.Link, At: s.round.Started}
	for id, c := range s.gone {
		if s.round.Started.Sub(s.since[id]) < RecheckWindow {
			next.Recent = append(next.Recent, recentGone{Key: id, DeviceID: c.DeviceID, Why: why(c), At: s.since[id]})
		}
	}
	// The newest first, so that a cap drops the accounts found longest ago.
	slices.SortFunc(next.Recent, func(a, b recentGone) int {
		return cmp.Or(b.At.Compare(a.At), strings.Compare(a.Key, b.Key))
	})
	next.Recent = next.Recent[:min(len(next.Recent), maxRecent)]
	moved := next.Link != s.state.Link
	// The document is written either way, to end the round; the link is said saved when it moved.
	if err := s.save(ctx, st, next); err == nil {
		s.sw.Saved = moved
	}
}

// save writes doc, with the set's pass and Verified (recording), with the ETag read (or written by this call), and
// makes it the set's state. Detached: what it records is durable, so the progress made is not lost with a ctx that
// has just ended. A conflict is another call that moved the link meanwhile from where this one started: its link is
// as good. A failure is also the set's error.
func (s *sweepSet) save(ctx context.Context, st store.Store, doc deltaDoc) error {
	doc = s.recording(doc)
	raw, err := json.Marshal(doc)
	if err != nil {
		err = fmt.Errorf("encoding the %s delta link: %w", s.what, err)
		s.err = errors.Join(s.err, err)
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metaWriteTimeout)
	defer cancel()
	etag, err := st.PutMeta(wctx, s.doc, raw, s.etag)
	if err != nil {
		err = fmt.Errorf("saving the %s delta link: %w", s.what, err)
		s.err = errors.Join(s.err, err)
		return err
	}
	s.etag, s.state = etag, doc
	return nil
}

// metaWriteTimeout bounds a detached write of a sweep's document.
const metaWriteTimeout = 10 * time.Second

// newRoundID names a new round: random, so that a cursor left by another round is never taken for this one's.
func newRoundID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// scanRound scans the REST certificates once for every set of sets, from the cursor the last call of the same
// round stopped at, and revokes those of the accounts and devices gone, adding them to each set's Revoked. After
// each page whose revocations are durable it saves the cursor, when some set's round is durable (a round only this
// call knows is read again, and scanned from the beginning, by the next call). It returns how many pages it read,
// the records it passed over (MaxRecordTries), and an error when it stopped before the end.
func scanRound(ctx context.Context, st store.Store, now time.Time, sets []*sweepSet) (int, []string, error) {
	var users, devices *sweepSet
	for _, s := range sets {
		if s.devices {
			devices = s
		} else {
			users = s
		}
	}
	named := map[string]bool{}
	sc := recordScan{doc: scanCursorDoc, limit: accountsPage, named: named,
		match: roundMatch(users, devices, named, now)}
	for _, s := range sets {
		// The cursor is the scan for these sets: a scan for the accounts alone (the devices' document could not be
		// read) is not the devices' scan of the same round, which must not end on its cursor.
		sc.add(s, s.round.ID, s.durable)
	}
	scanned, err := sc.run(ctx, st, now)
	if err != nil {
		return scanned, sc.skipped, fmt.Errorf("REST certificates: %w", err)
	}
	if devices != nil {
		for id, c := range devices.gone {
			if c.DeviceID == "" && !named[id] && devices.paged[id] {
				devices.sw.Unmapped++
			}
		}
	}
	return scanned, sc.skipped, nil
}

// recordScan is one scan of the REST certificates, for a round (scanRound) or a verifying pass (verifyPasses), that
// goes on over calls from a cursor document.
type recordScan struct {
	doc   string // the cursor document
	limit int    // records a search page asks for
	// match picks the records to revoke (revokeWhere); prepare, when not nil, is told each page first.
	match   func(*store.Record) (int, string, string, bool, error)
	prepare func([]*store.Record)
	// named, when not nil, are the devices a record scanned names by object ID, kept in the cursor (scanCursor).
	named map[string]bool
	// sets are the sets scanned for, ids the set:ID of those durable, whose cursor is saved.
	sets []*sweepSet
	ids  []string
	// answered, when not nil, says Graph answered a question of this call: a failed lookup is then its record's
	// (MaxRecordTries).
	answered func() bool
	// skipped are the records this call passed over (MaxRecordTries).
	skipped []string
	// revoked are the records this call revoked, whatever set they are of.
	revoked []*store.Record
}

// scan names the scan in the list of passed-over records (passedOverRecord.Scan), by its cursor document.
func (sc *recordScan) scan() string {
	switch sc.doc {
	case verifyCursorDoc:
		return "pass"
	case ownerCursorDoc:
		return "owners"
	}
	return "round"
}

// add makes s one of the sets the scan is for, under its round's or pass's id.
func (sc *recordScan) add(s *sweepSet, id string, durable bool) {
	sc.sets = append(sc.sets, s)
	if durable {
		sc.ids = append(sc.ids, s.what+":"+id)
	}
}

// run scans from the cursor the last call of the same scan stopped at, and revokes what match picks, adding each
// revocation to the Revoked of its set (by its revoker). After each page whose revocations are durable it saves the
// cursor, when some set is durable. It returns how many pages it read, and an error when it stopped before the end.
func (sc *recordScan) run(ctx context.Context, st store.Store, now time.Time) (int, error) {
	slices.Sort(sc.ids)
	durable := len(sc.ids) > 0
	cur := scanCursor{Round: strings.Join(slices.Compact(sc.ids), "+")}
	etag := ""
	if durable {
		raw, e, err := st.GetMeta(ctx, sc.doc)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return 0, fmt.Errorf("reading the scan cursor: %w", err)
		default:
			etag = e
			var got scanCursor
			if json.Unmarshal(raw, &got) == nil && scannedFor(got.Round, cur.Round) {
				// The cursor of a scan for these sets (and maybe more) is this one's; another round's, one for
				// other sets, or one that does not decode is replaced: this scan begins.
				got.Round = cur.Round
				cur = got
			}
		}
	}
	if cur.Done {
		return 0, nil
	}
	for _, id := range cur.Named {
		sc.named[id] = true
	}
	scanned := 0
	var done []*store.Record
	progress := func(next string) error {
		scanned++
		if !durable {
			return nil
		}
		cur.After, cur.Done = next, next == ""
		if next != "" && cur.Stuck != "" {
			// Past the page of the record it stopped at: that record was revoked (or answered for) this time.
			cur.Stuck, cur.Tries = "", 0
		}
		if sc.named != nil {
			cur.Named = slices.Sorted(maps.Keys(sc.named))
		}
		var err error
		etag, err = saveScanCursor(ctx, st, sc.doc, cur, etag)
		return err
	}
	match := func(rec *store.Record) (int, string, string, bool, error) {
		if slices.Contains(cur.Skipped, rec.Serial) {
			return 0, "", "", false, nil
		}
		return sc.match(rec)
	}
	var err error
	for {
		q := store.Query{Source: store.SourceAPI, Status: store.StatusIssued, Limit: sc.limit,
			ScanPages: accountsScanPages, Continuation: cur.After}
		err = revokeWhere(ctx, st, q, now, &done, match, sc.prepare, progress)
		var re *recordError
		if !durable || !errors.As(err, &re) || errors.Is(err, errLookupsSpent) || ctx.Err() != nil ||
			(re.matching && (sc.answered == nil || !sc.answered())) {
			break
		}
		// The record's own failure: counted, and past MaxRecordTries passed over, the scan going on without it.
		if cur.Stuck == re.serial {
			cur.Tries++
		} else {
			cur.Stuck, cur.Tries = re.serial, 1
		}
		// A record listed already (passed over by an earlier round, pass or cycle, and asked about again on its own
		// backoff) is passed over at once: it must not hold another round for MaxRecordTries runs.
		skip := cur.Tries >= MaxRecordTries || isPassedOver(ctx, st, re.serial)
		if skip {
			// Listed first, durably, for later runs to ask about again (reaskPassedOver): the cursor, which names it
			// too, goes with its round, pass or cycle. Not listed, it is not passed over, and its tries stay.
			e := passedOverRecord{Serial: re.serial, Scan: sc.scan(), Reason: re.reason, By: re.by, Ref: re.ref,
				Since: now, Next: now.Add(ReaskAfter(0))}
			if lerr := listPassedOver(ctx, st, e); lerr != nil {
				err = errors.Join(err, lerr)
				break
			}
			cur.Skipped = append(cur.Skipped, re.serial)
			cur.Stuck, cur.Tries = "", 0
		}
		e, werr := saveScanCursor(ctx, st, sc.doc, cur, etag)
		if werr != nil || !skip {
			break
		}
		etag = e
		sc.skipped = append(sc.skipped, re.serial)
	}
	sc.revoked = done
	for _, rec := range done {
		for _, s := range sc.sets {
			if (rec.RevokedBy == DevicesBy) == s.devices {
				s.sw.Revoked = append(s.sw.Revoked, rec)
			}
		}
	}
	return scanned, err
}

// scannedFor reports whether a cursor saved for the sets of round (scanCursor.Round) is the scan's of the sets of
// want: every one of want's is among round's. A scan for the accounts and the devices went as far for either; a
// scan for the accounts alone did not go anywhere for the devices.
func scannedFor(round, want string) bool {
	have := strings.Split(round, "+")
	for _, set := range strings.Split(want, "+") {
		if !slices.Contains(have, set) {
			return false
		}
	}
	return true
}

// saveScanCursor writes cur to the cursor document doc if it is still at etag (created when etag is "") and returns
// its new ETag. Detached, as the page it records is durable. A conflict is another call scanning the same round:
// this one stops, leaving it the round.
func saveScanCursor(ctx context.Context, st store.Meta, doc string, cur scanCursor, etag string) (string, error) {
	raw, err := json.Marshal(cur)
	if err != nil {
		return "", fmt.Errorf("encoding the scan cursor: %w", err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metaWriteTimeout)
	defer cancel()
	etag, err = st.PutMeta(wctx, doc, raw, etag)
	if err != nil {
		return "", fmt.Errorf("saving the scan cursor: %w", err)
	}
	return etag, nil
}

// verifyPasses goes on with the verifying pass of each set that has one and can look objects up: one scan of the
// REST certificates for all of them, from the cursor the last call stopped at (verifyCursorDoc), asking Graph about
// the account (device object) of each record in pages of verifyPage, at most MaxLookups a call, LookupConcurrency at
// a time. A pass is first made durable in its set's document (a cursor must never stand for a pass that is not
// recorded). A scan that reaches the end ends each set's pass, recording Verified. It returns how many search pages
// it read and whether it was left unfinished: the lookups spent (not an error), or an error of the set's.
func verifyPasses(ctx context.Context, st store.Store, now time.Time, sets []*sweepSet) (int, bool, []string) {
	var users, devices *sweepSet
	ask := &lookups{left: MaxLookups, answers: map[lookupKey]lookupAnswer{}}
	for _, s := range sets {
		if !s.loaded || s.pass == nil || s.exists == nil {
			continue
		}
		if s.passPending() && s.save(ctx, st, s.state) != nil {
			continue
		}
		if s.devices {
			devices = s
		} else {
			users = s
		}
	}
	if users == nil && devices == nil {
		return 0, false, nil
	}
	if ctx.Err() != nil {
		// The round took the call's time: the pass goes on in the next call.
		return 0, true, nil
	}
	match, want := passMatch(ctx, users, devices, ask, now)
	sc := recordScan{doc: verifyCursorDoc, limit: verifyPage, match: match, answered: ask.answeredAny,
		prepare: func(page []*store.Record) {
			var keys []lookupKey
			for _, rec := range page {
				keys = append(keys, want(rec)...)
			}
			ask.prefetch(ctx, keys)
		}}
	for _, s := range []*sweepSet{users, devices} {
		if s != nil {
			sc.add(s, s.pass.ID, true)
		}
	}
	scanned, err := sc.run(ctx, st, now)
	if errors.Is(err, errLookupsSpent) {
		// Stopped where it should, not failed: the next call goes on from the cursor with new lookups.
		return scanned, true, sc.skipped
	}
	for _, s := range sc.sets {
		if err != nil {
			s.err = errors.Join(s.err, fmt.Errorf("verifying pass over the REST certificates: %w", err))
			continue
		}
		// Every record's account (device) was answered for: the enumeration's gap is closed.
		s.pass, s.verified = nil, true
		// A failure is the set's error; the next call, finding the cursor done, ends the pass.
		_ = s.save(ctx, st, s.state)
	}
	return scanned, err != nil, sc.skipped
}

// lookupKey is one question of a verifying pass or an owner check: an object (or an owner and a device) of a set.
type lookupKey struct {
	set lookupSet
	id  string
}

// lookupSet is what the questions of a lookupKey are about: the accounts or the device objects of a verifying pass
// (sweepSet), or the owners of self-service device certificates (ownerSet).
type lookupSet interface {
	// lookup asks Graph about id: false only for a definite answer that revokes.
	lookup(ctx context.Context, id string) (bool, error)
	// tally counts an answer in the set's report; lookups holds its lock.
	tally(there bool, err error)
}

// lookup is the question of a verifying pass: is the object still there.
func (s *sweepSet) lookup(ctx context.Context, id string) (bool, error) {
	there, err := s.exists(ctx, id)
	if err != nil {
		err = fmt.Errorf("asking Graph about %s %s: %w", strings.TrimSuffix(s.what, "s"), id, err)
	}
	return there, err
}

// tally counts the answer in the set's LookedUp and Missing.
func (s *sweepSet) tally(there bool, err error) {
	s.sw.LookedUp++
	if err == nil && !there {
		s.sw.Missing++
	}
}

// lookupAnswer is Graph's answer to a lookupKey: whether the object is there, or why Graph did not say.
type lookupAnswer struct {
	there bool
	err   error
}

// lookups asks Graph the questions of one call's verifying passes (or of its owner check), at most left more, and
// keeps each answer for the call.
type lookups struct {
	mu      sync.Mutex
	left    int
	answers map[lookupKey]lookupAnswer
	// answered counts the questions Graph answered (there or not).
	answered int
}

// answeredAny says Graph answered a question of the call.
func (l *lookups) answeredAny() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answered > 0
}

// prefetch asks the questions of keys not yet asked, LookupConcurrency at a time, while the call's allowance lasts:
// those past it stay unasked, and answer says so.
func (l *lookups) prefetch(ctx context.Context, keys []lookupKey) {
	var todo []lookupKey
	l.mu.Lock()
	for _, k := range keys {
		if _, ok := l.answers[k]; ok || l.left == 0 || slices.Contains(todo, k) {
			continue
		}
		l.left--
		todo = append(todo, k)
	}
	l.mu.Unlock()
	sem := make(chan struct{}, LookupConcurrency)
	var wg sync.WaitGroup
	for _, k := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			l.one(ctx, k)
		}()
	}
	wg.Wait()
}

// answer is Graph's answer to k: the one kept, or one asked now while the allowance lasts (errLookupsSpent after).
func (l *lookups) answer(ctx context.Context, k lookupKey) (bool, error) {
	l.mu.Lock()
	a, ok := l.answers[k]
	spent := !ok && l.left == 0
	if !ok && !spent {
		l.left--
	}
	l.mu.Unlock()
	switch {
	case ok:
		return a.there, a.err
	case spent:
		return false, errLookupsSpent
	}
	return l.one(ctx, k)
}

// one asks Graph about k and keeps the answer, counting it in its set.
func (l *lookups) one(ctx context.Context, k lookupKey) (bool, error) {
	there, err := k.set.lookup(ctx, k.id)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers[k] = lookupAnswer{there: there, err: err}
	k.set.tally(there, err)
	if err == nil {
		l.answered++
	}
	return there, err
}

// why is what an entry of gone says happened to its account or device.
func why(c entra.DirectoryChange) string {
	if c.Removed != "" {
		return "deleted"
	}
	return "disabled"
}

// passMatch picks, among the records of a verifying pass's scan, the unexpired REST certificates whose account
// (users) or device object (devices) Graph no longer has, with the revocation each gets: an account's certificate
// for affiliationChanged, as deleted, a device's for cessationOfOperation. It asks about an object only when the
// record is bound to it (as roundMatch), this call's pages did not name it (present), and the record was created
// before its pass's AsOf plus lookupGrace. A question Graph does not answer is the match's error, and nothing is
// revoked for that record. want lists the questions match would ask about a record, for ask to prefetch.
func passMatch(ctx context.Context, users, devices *sweepSet, ask *lookups, now time.Time) (
	match func(*store.Record) (int, string, string, bool, error), want func(*store.Record) []lookupKey) {
	asked := func(s *sweepSet, id string, rec *store.Record) bool {
		return s != nil && id != "" && !s.present[id] && rec.Created.Before(s.pass.AsOf.Add(lookupGrace))
	}
	questions := func(rec *store.Record) (user, device lookupKey) {
		if rec.Status != store.StatusIssued || rec.Source != store.SourceAPI || !rec.NotAfter.After(now) {
			return
		}
		if oid, upn := requesterAccount(rec.Requester); boundTo(rec, upn) && asked(users, oid, rec) {
			user = lookupKey{set: users, id: oid}
		}
		if oid := strings.ToLower(rec.DeviceObjectID); entra.IsGUID(oid) && asked(devices, oid, rec) {
			device = lookupKey{set: devices, id: oid}
		}
		return
	}
	gone := func(k lookupKey) (bool, error) {
		there, err := ask.answer(ctx, k)
		return !there && err == nil, err
	}
	match = func(rec *store.Record) (int, string, string, bool, error) {
		user, device := questions(rec)
		if user.set != nil {
			if gone, err := gone(user); err != nil || gone {
				return AffiliationChanged, AccountsBy, fmt.Sprintf("Entra account %s deleted", user.id), gone, err
			}
		}
		if device.set != nil {
			if gone, err := gone(device); err != nil || gone {
				return CessationOfOperation, DevicesBy, fmt.Sprintf("Entra device object %s deleted", device.id), gone, err
			}
		}
		return 0, "", "", false, nil
	}
	want = func(rec *store.Record) []lookupKey {
		var keys []lookupKey
		user, device := questions(rec)
		for _, k := range []lookupKey{user, device} {
			if k.set != nil {
				keys = append(keys, k)
			}
		}
		return keys
	}
	return match, want
}

// roundMatch picks, among the records of a scan, the unexpired REST certificates of the accounts gone in users and
// of the devices gone in devices (either may be nil), with the revocation each gets: an account's certificate for
// affiliationChanged, a device's for cessationOfOperation (a device certificate of an account gone too goes with
// the account). It adds to named the devices gone that a record names by object ID.
func roundMatch(users, devices *sweepSet, named map[string]bool, now time.Time) func(*store.Record) (int, string, string, bool, error) {
	byDeviceID := map[string]entra.DirectoryChange{}
	if devices != nil {
		for _, c := range devices.gone {
			if c.DeviceID != "" {
				byDeviceID[c.DeviceID] = c
			}
		}
	}
	return func(rec *store.Record) (int, string, string, bool, error) {
		if rec.Status != store.StatusIssued || rec.Source != store.SourceAPI || !rec.NotAfter.After(now) {
			return 0, "", "", false, nil
		}
		dev := ""
		if devices != nil {
			dev = deviceMatch(rec, devices.gone, byDeviceID, named)
		}
		if users != nil {
			oid, upn := requesterAccount(rec.Requester)
			if c, ok := users.gone[oid]; ok && oid != "" && boundTo(rec, upn) {
				return AffiliationChanged, AccountsBy, fmt.Sprintf("Entra account %s %s", oid, why(c)), true, nil
			}
		}
		if dev != "" {
			return CessationOfOperation, DevicesBy, dev, true, nil
		}
		return 0, "", "", false, nil
	}
}

// deviceMatch returns the revocation reference of rec when it is the certificate of a device in gone (by object
// ID): its record carries the device's object ID, or names the deviceId an entry carried (a disabled device;
// records written before the object ID was kept carry only that). It adds to named a device rec names by object ID.
func deviceMatch(rec *store.Record, gone, byDeviceID map[string]entra.DirectoryChange, named map[string]bool) string {
	if oid := strings.ToLower(rec.DeviceObjectID); oid != "" {
		if c, ok := gone[oid]; ok {
			named[oid] = true
			return fmt.Sprintf("Entra device object %s %s", oid, why(c))
		}
	}
	dev := strings.ToLower(rec.DeviceID)
	if c, ok := byDeviceID[dev]; ok && dev != "" {
		return fmt.Sprintf("Entra device %s %s", dev, why(c))
	}
	return ""
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
