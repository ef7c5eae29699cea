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
		alice, bob, sam := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
		e.g.PutUser(entrafake.User{ID: alice, UPN: "alice@contoso.example", Enabled: true})
		aliceCert := e.userCert(t, alice, "alice@contoso.example", old)
		// Bob, deleted, is answered for (404): Graph answers the pass, so sam's failures are sam's.
		bobCert := e.userCert(t, bob, "bob@contoso.example", old)
		samCert := e.userCert(t, sam, "sam@contoso.example", old)
		e.g.SetFault(entrafake.Fault{Path: "/v1.0/users/" + sam, Status: http.StatusInternalServerError})
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
