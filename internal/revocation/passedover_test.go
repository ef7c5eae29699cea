package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
)

// passedOverEntry is the part of an entry of the list of passed-over records the tests look at.
type passedOverEntry struct {
	Serial string    `json:"serial"`
	Failed int       `json:"failed"`
	Next   time.Time `json:"next"`
}

// passedOverList reads the list of passed-over records the Entra sweeps keep (none when there is no document).
func passedOverList(t *testing.T, st store.Meta) []passedOverEntry {
	t.Helper()
	raw, _, err := st.GetMeta(context.Background(), "entra-passed-over")
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Records []passedOverEntry `json:"records"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Records
}

// TestPassedOverLookupAskedAgain: Graph fails, in every run, the lookup of one certificate holder (sam, deleted)
// while it answers the others, so the verifying pass passes over sam's certificate after MaxRecordTries runs. That
// record is listed, not forgotten with the pass: the next run during a Graph outage asks again, fails, and leaves its
// backoff as it was (an outage is not the record's failure); the run after the outage asks again, hears that Graph no
// longer has sam, revokes the certificate as deleted, and the list is empty.
func TestPassedOverLookupAskedAgain(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		old := e.now.Add(-24 * time.Hour)
		h := e.unansweredHolder(t, old)
		sam, aliceCert, bobCert, samCert := h.sam, h.aliceCert, h.bobCert, h.samCert
		at := e.now
		for run := 1; run <= revocation.MaxRecordTries; run++ {
			at = e.now.Add(time.Duration(run-1) * time.Hour)
			e.sweepAt(context.Background(), at)
		}
		list := passedOverList(t, e.st)
		if len(list) != 1 || list[0].Serial != samCert.Serial || list[0].Failed != 0 || !list[0].Next.After(at) {
			t.Fatalf("after %d runs the list is %+v; want %s listed, due after the run that passed it over",
				revocation.MaxRecordTries, list, samCert.Serial)
		}
		next := list[0].Next

		// A Graph outage: the re-ask fails, as every question of the run does, and counts for nothing.
		e.g.SetFault(entrafake.Fault{Status: http.StatusInternalServerError})
		from := len(e.g.Requests())
		at = at.Add(time.Hour)
		e.sweepAt(context.Background(), at)
		if asked := lookups(e.g, from); !slices.ContainsFunc(asked, func(p string) bool {
			return strings.HasPrefix(p, "/v1.0/users/"+sam)
		}) {
			t.Fatalf("the run after asked %v; want sam asked about again", asked)
		}
		if got := passedOverList(t, e.st); len(got) != 1 || got[0].Failed != 0 || !got[0].Next.Equal(next) {
			t.Fatalf("after the outage the list is %+v; want its backoff unchanged (failed 0, next %s)", got, next)
		}
		if st, _, _, _ := e.status(t, samCert); st != store.StatusIssued {
			t.Fatalf("sam's certificate is %s during the outage, want issued", st)
		}

		e.g.SetFault(entrafake.Fault{})
		at = at.Add(time.Hour)
		e.sweepAt(context.Background(), at)
		st, reason, by, ref := e.status(t, samCert)
		if st != store.StatusRevoked || reason != revocation.AffiliationChanged || by != revocation.AccountsBy ||
			!strings.Contains(ref, sam) || !strings.Contains(ref, "deleted") {
			t.Fatalf("sam's certificate is %s (reason %d by %q, %q); want revoked as deleted by the account sweep", st,
				reason, by, ref)
		}
		if got := passedOverList(t, e.st); len(got) != 0 {
			t.Fatalf("the list is %+v after the revocation; want it empty", got)
		}
		if st, _, _, _ := e.status(t, aliceCert); st != store.StatusIssued {
			t.Errorf("alice's certificate is %s, want issued", st)
		}
		if st, _, _, _ := e.status(t, bobCert); st != store.StatusRevoked {
			t.Errorf("bob's certificate is %s, want revoked", st)
		}
	})
}

// refuseRevokingWhile fails every revocation of one record while refuse is set, counting the attempts.
type refuseRevokingWhile struct {
	store.Store
	serial   string
	refuse   *atomic.Bool
	attempts *atomic.Int64
}

func (r refuseRevokingWhile) AddRevoked(ctx context.Context, e store.Revoked) (store.Revoked, error) {
	if e.Serial == r.serial {
		r.attempts.Add(1)
		if r.refuse.Load() {
			return store.Revoked{}, errors.New("refused for this test")
		}
	}
	return r.Store.AddRevoked(ctx, e)
}

// TestPassedOverRevocationBackoff: a round's certificate whose revocation fails MaxRecordTries runs in a row is passed
// over and listed with the revocation the round decided. The next run asks again (and the round that looks for the
// account once more passes over it at once, not holding the delta): it fails, and the next try moves 4 hours on; a
// run before then does not try; the try at 4 hours fails again and moves it a day on. Once the fault is cleared, the
// try that is due revokes the certificate as the round decided, and the list is empty.
func TestPassedOverRevocationBackoff(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		alice := entrafake.NewGUID()
		off := false
		dir := &fixedDir{users: []entra.DirectoryChange{{ID: alice, Enabled: &off}}}
		bad := e.issued(t, "oid:"+alice+" upn:alice@contoso.example", "alice@contoso.example", nil, "", "",
			e.now.Add(90*24*time.Hour))
		st := refuseRevokingWhile{Store: e.st, serial: bad.Serial, refuse: &atomic.Bool{}, attempts: &atomic.Int64{}}
		st.refuse.Store(true)
		run := func(at time.Time) revocation.DisabledSweep {
			return revocation.RevokeDisabled(context.Background(), st, dir, at)
		}
		for range revocation.MaxRecordTries {
			run(e.now)
		}
		list := passedOverList(t, e.st)
		if len(list) != 1 || list[0].Serial != bad.Serial || list[0].Failed != 0 {
			t.Fatalf("the list is %+v; want %s listed", list, bad.Serial)
		}

		at := e.now.Add(time.Hour)
		sw := run(at)
		if sw.AccountsErr != nil {
			t.Fatalf("the run after: %v; want the listed record passed over at once by the round", sw.AccountsErr)
		}
		if link, inRound := deltaState(t, e.st, "entra-users-delta"); inRound || link != "round2" {
			t.Fatalf("the run after left link %q (round %t); want the delta moved on", link, inRound)
		}
		list = passedOverList(t, e.st)
		if len(list) != 1 || list[0].Failed != 1 || !list[0].Next.Equal(at.Add(4*time.Hour)) {
			t.Fatalf("after the first re-ask the list is %+v; want failed 1, next %s", list, at.Add(4*time.Hour))
		}
		before := st.attempts.Load()
		run(at.Add(time.Hour))
		if n := st.attempts.Load(); n != before {
			t.Fatalf("a run before the next try tried %d revocations; want none", n-before)
		}
		at = at.Add(4 * time.Hour)
		run(at)
		list = passedOverList(t, e.st)
		if len(list) != 1 || list[0].Failed != 2 || !list[0].Next.Equal(at.Add(24*time.Hour)) {
			t.Fatalf("after the second re-ask the list is %+v; want failed 2, next %s", list, at.Add(24*time.Hour))
		}

		st.refuse.Store(false)
		run(at.Add(time.Hour))
		if s, _, _, _ := e.status(t, bad); s != store.StatusIssued {
			t.Fatalf("the certificate is %s before its next try, want issued", s)
		}
		run(at.Add(24 * time.Hour))
		s, reason, by, ref := e.status(t, bad)
		if s != store.StatusRevoked || reason != revocation.AffiliationChanged || by != revocation.AccountsBy ||
			!strings.Contains(ref, alice) {
			t.Fatalf("the certificate is %s (reason %d by %q, %q); want revoked as the round decided", s, reason, by, ref)
		}
		if got := passedOverList(t, e.st); len(got) != 0 {
			t.Fatalf("the list is %+v after the revocation; want it empty", got)
		}
	})
}

// TestPassedOverBoundedPerRun: with more passed-over records due than MaxReasks, a run asks about MaxReasks of them
// (the longest due first), and the next run about the rest.
func TestPassedOverBoundedPerRun(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		alice := entrafake.NewGUID()
		n := revocation.MaxReasks + 20
		type entry struct {
			Serial string    `json:"serial"`
			Scan   string    `json:"scan"`
			Reason int       `json:"reason"`
			By     string    `json:"by"`
			Ref    string    `json:"ref"`
			Since  time.Time `json:"since"`
			Next   time.Time `json:"next"`
		}
		var doc struct {
			Records []entry `json:"records"`
		}
		var recs []*store.Record
		for i := range n {
			r := e.issued(t, "oid:"+alice+" upn:alice@contoso.example", "alice@contoso.example", nil, "", "",
				e.now.Add(90*24*time.Hour))
			recs = append(recs, r)
			doc.Records = append(doc.Records, entry{Serial: r.Serial, Scan: "round", Reason: revocation.AffiliationChanged,
				By: revocation.AccountsBy, Ref: "Entra account " + alice + " disabled", Since: e.now.Add(-48 * time.Hour),
				Next: e.now.Add(-time.Duration(n-i) * time.Minute)})
		}
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.PutMeta(context.Background(), "entra-passed-over", raw, ""); err != nil {
			t.Fatal(err)
		}
		revokedCount := func() (int, []bool) {
			var got []bool
			c := 0
			for _, r := range recs {
				s, _, _, _ := e.status(t, r)
				got = append(got, s == store.StatusRevoked)
				if s == store.StatusRevoked {
					c++
				}
			}
			return c, got
		}
		revocation.RevokeDisabled(context.Background(), e.st, &fixedDir{}, e.now)
		c, got := revokedCount()
		if c != revocation.MaxReasks || slices.Contains(got[:revocation.MaxReasks], false) {
			t.Fatalf("the first run revoked %d (%v); want the %d due longest", c, got, revocation.MaxReasks)
		}
		if l := passedOverList(t, e.st); len(l) != n-revocation.MaxReasks {
			t.Fatalf("%d listed after the first run, want %d", len(l), n-revocation.MaxReasks)
		}
		revocation.RevokeDisabled(context.Background(), e.st, &fixedDir{}, e.now.Add(time.Hour))
		if c, _ := revokedCount(); c != n {
			t.Fatalf("the second run left %d revoked, want all %d", c, n)
		}
		if l := passedOverList(t, e.st); len(l) != 0 {
			t.Fatalf("%d listed after the second run, want none", len(l))
		}
	})
}

// withoutPassedOver is st as a build before the list of passed-over records saw it: the list is not there (its
// reads and writes go to aside).
type withoutPassedOver struct {
	store.Store
	aside store.Meta
}

func (w withoutPassedOver) GetMeta(ctx context.Context, name string) ([]byte, string, error) {
	if name == "entra-passed-over" {
		return w.aside.GetMeta(ctx, name)
	}
	return w.Store.GetMeta(ctx, name)
}

func (w withoutPassedOver) PutMeta(ctx context.Context, name string, value []byte, etag string) (string, error) {
	if name == "entra-passed-over" {
		return w.aside.PutMeta(ctx, name, value, etag)
	}
	return w.Store.PutMeta(ctx, name, value, etag)
}

// putOldCursor writes a scan cursor the way the builds before the list of passed-over records did: the records its
// scan passed over named only in its Skipped.
func putOldCursor(t *testing.T, st store.Meta, doc, round string, skipped ...string) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"round": round, "after": "page-7", "skipped": skipped})
	if err != nil {
		t.Fatal(err)
	}
	_, etag, err := st.GetMeta(context.Background(), doc)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := st.PutMeta(context.Background(), doc, raw, etag); err != nil {
		t.Fatal(err)
	}
}

// TestPassedOverAdoptsOldCursors: the records a build before the list passed over are named only in the cursors'
// Skipped, which the next round, pass or cycle replaces. The first run of this build lists them (the verifying
// pass's sam and alice, the round's bob, not the certificate revoked since), and asks about them at once: alice's
// account is there (settled, off the list), sam's lookup fails (listed, backoff). With the fault cleared, the re-ask
// revokes sam's certificate as deleted. Later runs add nothing back, though the cursors still name them.
func TestPassedOverAdoptsOldCursors(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		// A first run, of a build before the list (which it writes aside), enumerates the (empty) store and ends its
		// verifying pass: no pass asks about the records below.
		revocation.RevokeDisabled(context.Background(), withoutPassedOver{Store: e.st, aside: memstore.New()}, e.dir, e.now)
		if e.passOpen(t) {
			t.Fatal("the first run left its verifying pass open")
		}
		alice, sam, bob, carol := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
		e.g.PutUser(entrafake.User{ID: alice, UPN: "alice@contoso.example", Enabled: true})
		e.g.PutUser(entrafake.User{ID: bob, UPN: "bob@contoso.example", Enabled: true})
		e.g.PutUser(entrafake.User{ID: carol, UPN: "carol@contoso.example", Enabled: true})
		aliceCert := e.userCert(t, alice, "alice@contoso.example", e.now)
		samCert := e.userCert(t, sam, "sam@contoso.example", e.now)
		bobCert := e.userCert(t, bob, "bob@contoso.example", e.now)
		carolCert := e.userCert(t, carol, "carol@contoso.example", e.now)
		if _, _, err := revocation.Revoke(context.Background(), e.st, carolCert.Serial, revocation.AffiliationChanged,
			"operator", "by hand", e.now); err != nil {
			t.Fatal(err)
		}
		putOldCursor(t, e.st, "entra-verify-cursor", "users:oldpass", aliceCert.Serial, samCert.Serial, carolCert.Serial)
		putOldCursor(t, e.st, "entra-sweep-cursor", "users:oldround", bobCert.Serial, samCert.Serial)
		e.g.SetFault(entrafake.Fault{Path: "/v1.0/users/" + sam, Status: http.StatusInternalServerError})

		at := e.now.Add(time.Hour)
		sw := e.sweepAt(context.Background(), at)
		if sw.ReaskErr != nil {
			t.Fatalf("the first run: %v", sw.ReaskErr)
		}
		if sw.Reasked.Asked != 3 || !slices.Equal(sw.Reasked.Settled, []string{aliceCert.Serial}) {
			t.Fatalf("the first run asked %d and settled %v; want sam, alice and bob asked and alice settled",
				sw.Reasked.Asked, sw.Reasked.Settled)
		}
		got, err := revocation.ListPassedOver(context.Background(), e.st)
		if err != nil {
			t.Fatal(err)
		}
		scans := map[string]string{}
		for _, p := range got {
			scans[p.Serial] = p.Scan
		}
		if len(got) != 2 || scans[samCert.Serial] != "pass" || scans[bobCert.Serial] != "round" {
			t.Fatalf("after the first run the list is %+v; want sam's (pass) and bob's (round) certificates", got)
		}
		for _, p := range got {
			if p.Failed != 1 || !p.Next.Equal(at.Add(revocation.ReaskAfter(1))) {
				t.Errorf("%s (%s): failed %d, next %s; want failed once, next %s", p.Serial, p.Scan, p.Failed, p.Next,
					at.Add(revocation.ReaskAfter(1)))
			}
		}

		e.g.SetFault(entrafake.Fault{})
		at = at.Add(revocation.ReaskAfter(1))
		sw = e.sweepAt(context.Background(), at)
		st, reason, by, ref := e.status(t, samCert)
		if st != store.StatusRevoked || reason != revocation.AffiliationChanged || by != revocation.AccountsBy ||
			!strings.Contains(ref, sam) || !strings.Contains(ref, "deleted") {
			t.Fatalf("sam's certificate is %s (reason %d by %q, %q); want revoked as deleted", st, reason, by, ref)
		}
		if len(sw.Reasked.Revoked) != 1 || sw.Reasked.Revoked[0].Serial != samCert.Serial {
			t.Fatalf("the re-asks revoked %v; want sam's certificate", sw.Reasked.Revoked)
		}
		if got := passedOverList(t, e.st); len(got) != 1 || got[0].Serial != bobCert.Serial {
			t.Fatalf("after the second run the list is %+v; want bob's certificate alone, for the operator", got)
		}

		// The cursors still name alice's and sam's certificates: nothing comes back.
		for range 2 {
			at = at.Add(time.Hour)
			sw = e.sweepAt(context.Background(), at)
			if sw.Reasked.Asked != 0 {
				t.Fatalf("a later run asked about %d records; want none", sw.Reasked.Asked)
			}
		}
		if got := passedOverList(t, e.st); len(got) != 1 || got[0].Serial != bobCert.Serial {
			t.Fatalf("later runs left the list %+v; want bob's certificate alone", got)
		}
		for name, rec := range map[string]*store.Record{"alice": aliceCert, "bob": bobCert} {
			if st, _, _, _ := e.status(t, rec); st != store.StatusIssued {
				t.Errorf("%s's certificate is %s, want issued", name, st)
			}
		}
	})
}

// TestPassedOverAdoptionCrash: the process dies at the write that lists the records an earlier build's cursor
// passed over, before or after it lands. Either way nothing is lost: the cursor still names the record, and the next
// run has it listed (again or already) and asks about it, once.
func TestPassedOverAdoptionCrash(t *testing.T) {
	for _, commit := range []bool{false, true} {
		e := newAccountsEnv(t, false)
		revocation.RevokeDisabled(context.Background(), withoutPassedOver{Store: e.st, aside: memstore.New()}, e.dir, e.now)
		alice := entrafake.NewGUID()
		e.g.PutUser(entrafake.User{ID: alice, UPN: "alice@contoso.example", Enabled: true})
		aliceCert := e.userCert(t, alice, "alice@contoso.example", e.now)
		putOldCursor(t, e.st, "entra-verify-cursor", "users:oldpass", aliceCert.Serial)

		f, ctx, cancel := crashAtWrite(e.st, 1, commit)
		sw := revocation.RevokeDisabled(ctx, f, e.dir, e.now.Add(time.Hour))
		cancel()
		if sw.ReaskErr == nil {
			t.Fatalf("commit %t: the run that crashed at its first write reported no error", commit)
		}
		if listed := len(passedOverList(t, e.st)); listed != map[bool]int{false: 0, true: 1}[commit] {
			t.Fatalf("commit %t: %d listed after the crash", commit, listed)
		}
		raw, _, err := e.st.GetMeta(context.Background(), "entra-verify-cursor")
		if err != nil || !strings.Contains(string(raw), aliceCert.Serial) {
			t.Fatalf("commit %t: the cursor after the crash is %s (%v); want it to name the record still", commit, raw, err)
		}

		sw = e.sweepAt(context.Background(), e.now.Add(2*time.Hour))
		if sw.ReaskErr != nil || sw.Reasked.Asked != 1 || !slices.Equal(sw.Reasked.Settled, []string{aliceCert.Serial}) {
			t.Fatalf("commit %t: the next run asked %d, settled %v (%v); want alice's certificate asked about and settled",
				commit, sw.Reasked.Asked, sw.Reasked.Settled, sw.ReaskErr)
		}
		if sw = e.sweepAt(context.Background(), e.now.Add(3*time.Hour)); sw.Reasked.Asked != 0 {
			t.Fatalf("commit %t: the run after asked about %d records; want none", commit, sw.Reasked.Asked)
		}
	}
}

// TestPassedOverAdoptionFailureRevokesStill: a list of passed-over records that does not decode cannot say whether
// the records earlier builds passed over were listed: the run says so, and still revokes the certificate of an
// account the delta names disabled (an adoption that failed for good must not stop every revocation).
func TestPassedOverAdoptionFailureRevokesStill(t *testing.T) {
	e := newAccountsEnv(t, false)
	alice := entrafake.NewGUID()
	off := false
	dir := &fixedDir{users: []entra.DirectoryChange{{ID: alice, Enabled: &off}}}
	cert := e.issued(t, "oid:"+alice+" upn:alice@contoso.example", "alice@contoso.example", nil, "", "",
		e.now.Add(90*24*time.Hour))
	if _, err := e.st.PutMeta(context.Background(), "entra-passed-over", []byte("{not json"), ""); err != nil {
		t.Fatal(err)
	}
	sw := revocation.RevokeDisabled(context.Background(), e.st, dir, e.now)
	if sw.ReaskErr == nil || !strings.Contains(sw.ReaskErr.Error(), "earlier builds passed over") {
		t.Errorf("the run reported %v; want the adoption's failure", sw.ReaskErr)
	}
	if s, _, by, _ := e.status(t, cert); s != store.StatusRevoked || by != revocation.AccountsBy {
		t.Fatalf("alice's certificate is %s (by %q); want revoked by the account sweep", s, by)
	}
}
