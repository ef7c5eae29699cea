package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// fixedDir is a Graph directory whose users and devices deltas each name fixed changes in the one page of their
// first round (read from no link, ending at the delta link "round1"), and nothing in every later round. It counts
// the pages it serves.
type fixedDir struct {
	users, devices []entra.DirectoryChange
	pages          atomic.Int64
}

func (d *fixedDir) page(link string, changes []entra.DirectoryChange) (*entra.DeltaPage, error) {
	d.pages.Add(1)
	if link == "" {
		return &entra.DeltaPage{Changes: changes, Delta: "round1"}, nil
	}
	return &entra.DeltaPage{Delta: "round2"}, nil
}

func (d *fixedDir) UsersDelta(_ context.Context, link string) (*entra.DeltaPage, error) {
	return d.page(link, d.users)
}

func (d *fixedDir) DevicesDelta(_ context.Context, link string) (*entra.DeltaPage, error) {
	return d.page(link, d.devices)
}

// scanScene is a store whose REST certificates take several search pages when others is large: among them the
// certificates of an account disabled and of an account deleted (accounts), of a laptop disabled in Entra
// (devices), and others that stay valid; and a directory saying what was disabled and deleted.
type scanScene struct {
	e                  *accountsEnv
	dir                *fixedDir
	accounts, devices  []*store.Record
	others             int
	accountIDs, device []string
}

func newScanScene(t *testing.T, useTables bool, each, others int) *scanScene {
	t.Helper()
	e := newAccountsEnv(t, useTables)
	later := e.now.Add(90 * 24 * time.Hour)
	alice, bob, carol, dave := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	laptop, laptopObj := entrafake.NewGUID(), entrafake.NewGUID()
	off := false
	sc := &scanScene{e: e, others: others, accountIDs: []string{alice, bob}, device: []string{laptopObj},
		dir: &fixedDir{
			users:   []entra.DirectoryChange{{ID: alice, Enabled: &off}, {ID: bob, Removed: "deleted"}},
			devices: []entra.DirectoryChange{{ID: laptopObj, DeviceID: laptop, Enabled: &off}},
		}}
	for range each {
		for _, u := range []string{alice, bob} {
			upn := u[:8] + "@contoso.example"
			sc.accounts = append(sc.accounts, e.issued(t, "oid:"+u+" upn:"+upn, upn, []string{"upn:" + upn}, "", "", later))
		}
		sc.devices = append(sc.devices, e.issued(t, "oid:"+dave+" upn:dave@contoso.example", laptop, nil, laptop,
			laptopObj, later))
	}
	for range others {
		e.issued(t, "oid:"+carol+" upn:carol@contoso.example", "carol@contoso.example", nil, "", "", later)
	}
	return sc
}

// issued stores an issued /api/csr record in one write (the scenes here need hundreds of them).
func (e *accountsEnv) issued(t *testing.T, requester, cn string, sans []string, deviceID, objectID string,
	notAfter time.Time) *store.Record {
	t.Helper()
	r := storetest.FullRecord(storetest.NewSerial())
	r.Status, r.CertDER = store.StatusIssued, []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	r.Source, r.Endpoint, r.Profile, r.Requester = store.SourceAPI, "api", "api", requester
	r.Subject, r.SANs, r.DeviceID, r.DeviceObjectID = "CN="+cn, sans, deviceID, objectID
	r.NotAfter = notAfter
	r.IntuneSerial, r.CAConfiguration, r.Gated, r.RenewedFrom, r.RenewedTo = "", "", false, "", ""
	if err := e.st.Insert(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

// revoked lists the REST certificates the store holds revoked, by serial.
func revokedREST(t *testing.T, st store.Store) map[string]*store.Record {
	t.Helper()
	out := map[string]*store.Record{}
	q := store.Query{Source: store.SourceAPI, Status: store.StatusRevoked, Limit: 200}
	for {
		page, next, err := st.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			out[r.Serial] = r
		}
		if next == "" {
			return out
		}
		q.Continuation = next
	}
}

// check fails unless exactly the scene's account and device certificates are revoked, each for its reason, and no
// serial is in reported more than once (each revocation is reported by the call that made it, or by none when the
// answer to its write was lost).
func (sc *scanScene) check(t *testing.T, reported [][]*store.Record) {
	t.Helper()
	got := revokedREST(t, sc.e.st)
	if len(got) != len(sc.accounts)+len(sc.devices) {
		t.Errorf("%d certificates revoked, want %d", len(got), len(sc.accounts)+len(sc.devices))
	}
	for _, r := range sc.accounts {
		if g := got[r.Serial]; g == nil || g.RevocationReason != revocation.AffiliationChanged || g.RevokedBy != revocation.AccountsBy {
			t.Errorf("account certificate %s: %+v; want revoked for affiliationChanged", r.Serial, g)
		}
	}
	for _, r := range sc.devices {
		if g := got[r.Serial]; g == nil || g.RevocationReason != revocation.CessationOfOperation || g.RevokedBy != revocation.DevicesBy {
			t.Errorf("device certificate %s: %+v; want revoked for cessationOfOperation", r.Serial, g)
		}
	}
	seen := map[string]bool{}
	for _, recs := range reported {
		for _, r := range recs {
			if seen[r.Serial] {
				t.Errorf("%s reported revoked twice", r.Serial)
			}
			seen[r.Serial] = true
		}
	}
}

// deltaState reads the delta link a meta document holds, and whether a round is in progress in it.
func deltaState(t *testing.T, st store.Store, doc string) (string, bool) {
	t.Helper()
	raw, _, err := st.GetMeta(context.Background(), doc)
	if errors.Is(err, store.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Link  string          `json:"link"`
		Round json.RawMessage `json:"round"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d.Link, len(d.Round) > 0 && string(d.Round) != "null"
}

// boundedRun runs sweep on a store that ends ctx when the sweep asks for more than pages search pages: an hourly
// run whose time allows that many, counted in pages instead of time. It returns the search pages asked for.
func boundedRun(t *testing.T, st store.Store, pages int, sweep func(ctx context.Context, st store.Store)) int {
	t.Helper()
	f := storetest.NewFaultStore(st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.OnCall(func(method string) {
		if method == storetest.MethodSearch && f.Calls(storetest.MethodSearch) > pages {
			cancel()
		}
	})
	sweep(ctx, f)
	return f.Calls(storetest.MethodSearch)
}

// TestRevokeDisabledAccountsScanGoesOnAcrossRuns: a table of REST certificates longer than one run can scan (three
// search pages, each run's time allowing one). The first run reads the users delta, which names an account
// disabled and one deleted, keeps that round and scans a page; the next runs read no delta but go on with the scan
// where the last one stopped, and the third reaches the end: every certificate of both accounts is revoked, each by
// one run only, and only then does the delta link move on. Started again from the beginning every hour, the scan
// would never reach the last pages, and the link would never move.
func TestRevokeDisabledAccountsScanGoesOnAcrossRuns(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		sc := newScanScene(t, useTables, 4, 420)
		var reported [][]*store.Record
		run := 0
		for ; run < 6; run++ {
			var sw revocation.AccountSweep
			var err error
			searches := boundedRun(t, sc.e.st, 1, func(ctx context.Context, st store.Store) {
				sw, err = revocation.RevokeDisabledAccounts(ctx, st, sc.dir, sc.e.now)
			})
			reported = append(reported, sw.Revoked)
			if run > 0 && (sw.Pages != 0 || !sw.Resumed) {
				t.Errorf("run %d read %d delta pages (resumed %t); want none while the scan goes on", run+1, sw.Pages, sw.Resumed)
			}
			if searches > 2 {
				t.Errorf("run %d asked for %d search pages", run+1, searches)
			}
			if link, inRound := deltaState(t, sc.e.st, "entra-users-delta"); !inRound {
				if err != nil || !sw.Saved || link != "round1" {
					t.Fatalf("run %d kept no round but did not end it either: %+v, %v, link %q", run+1, sw, err, link)
				}
				break
			} else if err == nil || sw.Saved || link != "" {
				t.Fatalf("run %d stopped in its scan: %+v, %v, link %q; want an error and the link kept", run+1, sw, err, link)
			}
		}
		if run != 2 {
			t.Fatalf("the round ended in run %d, want 3 (one per search page)", run+1)
		}
		if got := sc.dir.pages.Load(); got != 1 {
			t.Errorf("%d delta pages read, want 1", got)
		}
		sc.devices = nil // the devices delta was not read
		sc.check(t, reported)

		sw, err := revocation.RevokeDisabledAccounts(context.Background(), sc.e.st, sc.dir, sc.e.now)
		if err != nil || sw.Pages != 1 || len(sw.Revoked) != 0 || !sw.Saved {
			t.Fatalf("the next round = %+v, %v; want a delta page read, nothing revoked, the link saved", sw, err)
		}
	})
}

// queryLog keeps the queries searched.
type queryLog struct {
	store.Store
	queries []store.Query
}

func (l *queryLog) Search(ctx context.Context, q store.Query) ([]*store.Record, string, error) {
	l.queries = append(l.queries, q)
	return l.Store.Search(ctx, q)
}

// TestRevokeDisabledScansOnce: a run whose deltas name both accounts and a device gone reads the REST certificates
// once, not once for each, and revokes each certificate for its reason; both links move on. Each search bounds the
// pages of its own listing the store reads (ScanPages), so that a page cut by the run's time still leaves progress.
func TestRevokeDisabledScansOnce(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		sc := newScanScene(t, useTables, 2, 250)
		f := storetest.NewFaultStore(sc.e.st)
		ql := &queryLog{Store: f}
		sw := revocation.RevokeDisabled(context.Background(), ql, sc.dir, sc.e.now)
		if sw.AccountsErr != nil || sw.DevicesErr != nil || !sw.Accounts.Saved || !sw.Devices.Saved || sw.ScanLeft {
			t.Fatalf("sweep = %+v; want both parts done and saved", sw)
		}
		if got := f.Calls(storetest.MethodSearch); got != 2 || sw.Scanned != 2 {
			t.Errorf("%d search calls (%d reported) for a table of 2 pages, want 2: one scan for accounts and devices",
				got, sw.Scanned)
		}
		if len(sw.Accounts.Revoked) != len(sc.accounts) || len(sw.Devices.Revoked) != len(sc.devices) {
			t.Errorf("reported %d account and %d device revocations, want %d and %d", len(sw.Accounts.Revoked),
				len(sw.Devices.Revoked), len(sc.accounts), len(sc.devices))
		}
		for _, q := range ql.queries {
			if q.ScanPages <= 0 {
				t.Errorf("a search of the scan reads the store's listing unbounded: %+v", q)
			}
		}
		sc.check(t, [][]*store.Record{sw.Accounts.Revoked, sw.Devices.Revoked})
		for _, doc := range []string{"entra-users-delta", "entra-devices-delta"} {
			if link, inRound := deltaState(t, sc.e.st, doc); link != "round1" || inRound {
				t.Errorf("%s: link %q, round in progress %t", doc, link, inRound)
			}
		}
	})
}

// sweepToEnd runs RevokeDisabled until both deltas are past their first round with no round in progress, at most
// 4 times, appending what each run reported revoked.
func (sc *scanScene) sweepToEnd(t *testing.T, reported *[][]*store.Record) {
	t.Helper()
	for range 4 {
		sw := revocation.RevokeDisabled(context.Background(), sc.e.st, sc.dir, sc.e.now)
		*reported = append(*reported, sw.Accounts.Revoked, sw.Devices.Revoked)
		users, ur := deltaState(t, sc.e.st, "entra-users-delta")
		devices, dr := deltaState(t, sc.e.st, "entra-devices-delta")
		if users != "" && devices != "" && !ur && !dr {
			return
		}
		if sw.AccountsErr != nil || sw.DevicesErr != nil {
			t.Fatalf("a run without faults failed: %v; %v", sw.AccountsErr, sw.DevicesErr)
		}
	}
	t.Fatal("four runs without faults did not end the round")
}

// TestRevokeDisabledCrashAtEachWrite: the process dies at each write of a run in turn (the write made or not, its
// answer lost), over a table of three search pages: reading the deltas, writing the rounds, the revocations, the
// scan cursor, moving the links on. The runs after it end with exactly the certificates of the accounts and the
// device revoked, none reported twice, and both links moved on: nothing is lost, whatever step the crash hit.
func TestRevokeDisabledCrashAtEachWrite(t *testing.T) {
	for _, commit := range []bool{false, true} {
		for n := 1; ; n++ {
			sc := newScanScene(t, false, 2, 420)
			f, ctx, cancel := crashAtWrite(sc.e.st, n, commit)
			sw := revocation.RevokeDisabled(ctx, f, sc.dir, sc.e.now)
			cancel()
			if f.Writes() < n {
				if n < 10 {
					t.Fatalf("a run makes only %d writes", f.Writes())
				}
				break
			}
			reported := [][]*store.Record{sw.Accounts.Revoked, sw.Devices.Revoked}
			t.Run(fmt.Sprintf("write%d-commit%t", n, commit), func(t *testing.T) {
				sc.sweepToEnd(t, &reported)
				sc.check(t, reported)
			})
		}
	}
}

// TestRevokeDisabledReadFaults: a run whose store fails a read (the deltas' documents, the scan cursor, a search
// page) stops; the next runs end the round with nothing lost.
func TestRevokeDisabledReadFaults(t *testing.T) {
	for _, m := range []string{storetest.MethodGetMeta, storetest.MethodSearch, storetest.MethodGet} {
		for n := 1; n <= 4; n++ {
			t.Run(fmt.Sprintf("%s%d", m, n), func(t *testing.T) {
				sc := newScanScene(t, false, 2, 420)
				f := storetest.NewFaultStore(sc.e.st)
				f.Inject(storetest.Fault{Method: m, Nth: n})
				sw := revocation.RevokeDisabled(context.Background(), f, sc.dir, sc.e.now)
				reported := [][]*store.Record{sw.Accounts.Revoked, sw.Devices.Revoked}
				sc.sweepToEnd(t, &reported)
				sc.check(t, reported)
			})
		}
	}
}

// TestRevokeDisabledLargeRound: a first enumeration naming thousands of devices disabled (pages of 999, each with
// its deviceId) stops reading once maxRoundGone are to be looked for, and the round still fits in its document: a
// run that stops before its scan leaves the round, which the next run scans without reading the delta; the round
// after reads on from the link reached.
func TestRevokeDisabledLargeRound(t *testing.T) {
	e := newAccountsEnv(t, false)
	off := false
	var pages pagedDevices
	for range 5 {
		var page []entra.DirectoryChange
		for range 999 {
			page = append(page, entra.DirectoryChange{ID: entrafake.NewGUID(), DeviceID: entrafake.NewGUID(), Enabled: &off})
		}
		pages = append(pages, page)
	}
	owner := entrafake.NewGUID()
	last := pages[2][998]
	cert := e.issued(t, "oid:"+owner+" upn:owner@contoso.example", last.DeviceID, nil, last.DeviceID, "", e.now.Add(time.Hour))
	var sw revocation.AccountSweep
	var err error
	boundedRun(t, e.st, 0, func(ctx context.Context, st store.Store) {
		sw, err = revocation.RevokeDisabledDevices(ctx, st, pages, e.now)
	})
	if err == nil || sw.Pages != 3 || sw.Accounts != 3*999 || sw.Saved {
		t.Fatalf("first run = %+v, %v; want 3 pages read, stopped in the scan", sw, err)
	}
	if link, inRound := deltaState(t, e.st, "entra-devices-delta"); link != "" || !inRound {
		t.Fatalf("after the first run: link %q, round kept %t; want the round kept", link, inRound)
	}
	raw, _, _ := e.st.GetMeta(context.Background(), "entra-devices-delta")
	t.Logf("round document: %d bytes for %d devices", len(raw), 3*999)
	sw, err = revocation.RevokeDisabledDevices(context.Background(), e.st, pages, e.now)
	if err != nil || !sw.Resumed || sw.Pages != 0 || !sw.Saved || len(sw.Revoked) != 1 || sw.Revoked[0].Serial != cert.Serial {
		t.Fatalf("second run = %+v, %v; want the round's scan ended, %s revoked", sw, err, cert.Serial)
	}
	if link, _ := deltaState(t, e.st, "entra-devices-delta"); link != "page3" {
		t.Fatalf("link %q after the round, want page3", link)
	}
	sw, err = revocation.RevokeDisabledDevices(context.Background(), e.st, pages, e.now)
	// The devices found gone by the round just ended are looked for again (up to maxRecent): they take their
	// place in this round, which reads one page.
	if err != nil || sw.Pages != 1 || sw.Accounts != 999 || sw.Rechecked != 2000 || !sw.Saved {
		t.Fatalf("third run = %+v, %v; want the next page read, 2000 devices looked for again", sw, err)
	}
}
