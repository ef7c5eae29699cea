package revocation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// userCert stores, in one write, an issued /api/csr certificate of user id naming upn, recorded as created at
// created.
// unansweredHolder is the set-up of the tests of a holder whose lookup never answers: certificates issued at created
// to alice (enabled in Graph), bob (gone: Graph answers 404, so the pass is answered and sam's failures are sam's)
// and sam, every lookup of whom fails with a 500.
type unansweredHolder struct {
	sam                         string
	aliceCert, bobCert, samCert *store.Record
}

func (e *accountsEnv) unansweredHolder(t *testing.T, created time.Time) unansweredHolder {
	t.Helper()
	alice, bob, sam := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: alice, UPN: "alice@contoso.example", Enabled: true})
	h := unansweredHolder{sam: sam, aliceCert: e.userCert(t, alice, "alice@contoso.example", created),
		bobCert: e.userCert(t, bob, "bob@contoso.example", created), samCert: e.userCert(t, sam, "sam@contoso.example", created)}
	e.g.SetFault(entrafake.Fault{Path: "/v1.0/users/" + sam, Status: http.StatusInternalServerError})
	return h
}

func (e *accountsEnv) userCert(t *testing.T, id, upn string, created time.Time) *store.Record {
	t.Helper()
	r := storetest.FullRecord(storetest.NewSerial())
	r.Status, r.CertDER = store.StatusIssued, []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	r.Source, r.Endpoint, r.Profile, r.Requester = store.SourceAPI, "api", "api", "oid:"+id+" upn:"+upn
	r.Subject, r.SANs, r.DeviceID, r.DeviceObjectID = "CN="+upn, []string{"upn:" + upn}, "", ""
	r.NotAfter, r.Created = e.now.Add(90*24*time.Hour), created
	r.IntuneSerial, r.CAConfiguration, r.Gated, r.RenewedFrom, r.RenewedTo = "", "", false, "", ""
	if err := e.st.Insert(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

// sweepAt runs RevokeDisabled with e's directory as the run at now would.
func (e *accountsEnv) sweepAt(ctx context.Context, now time.Time) revocation.DisabledSweep {
	return revocation.RevokeDisabled(ctx, e.st, e.dir, now)
}

// TestVerifyPassSkipsRecordsIssuedAfterItBegan: the run that enumerates the tenant from scratch begins a verifying
// pass, which a lookup Graph fails leaves open. Before the next run, an hour later, a user is created and gets a
// certificate, and the Graph replica the pass asks has not seen the user yet (404 Request_ResourceNotFound): that
// certificate stays valid, and the pass does not even ask about its holder, since /api/csr read the account when
// it issued it, after the enumeration began. The certificates issued before the enumeration, or within the cache's
// minutes after it (an "enabled" answer issuance may have cached before the account was deleted), of accounts Graph
// no longer has are revoked as deleted.
func TestVerifyPassSkipsRecordsIssuedAfterItBegan(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		before := e.now.Add(-24 * time.Hour)
		bob, sam := entrafake.NewGUID(), entrafake.NewGUID()
		bobCert := e.userCert(t, bob, "bob@contoso.example", before)
		samCert := e.userCert(t, sam, "sam@contoso.example", before)
		// dan was deleted before the enumeration, and his certificate issued a minute after it began, on a cached
		// "enabled".
		dan := entrafake.NewGUID()
		danCert := e.userCert(t, dan, "dan@contoso.example", e.now.Add(time.Minute))
		e.g.SetFault(entrafake.Fault{Path: "/v1.0/users/" + sam, Status: http.StatusInternalServerError})

		sw := e.sweepAt(context.Background(), e.now)
		if sw.AccountsErr == nil || !sw.CheckLeft || !e.passOpen(t) || e.link(t) == "" {
			t.Fatalf("first run = %+v; want the pass left open by the failed lookup, the link saved", sw)
		}

		later := e.now.Add(time.Hour)
		nina := entrafake.NewGUID() // created seconds ago: not in the replica the pass asks
		ninaCert := e.userCert(t, nina, "nina@contoso.example", later.Add(-30*time.Second))
		e.g.SetFault(entrafake.Fault{})
		from := len(e.g.Requests())
		sw = e.sweepAt(context.Background(), later)
		if sw.AccountsErr != nil || sw.CheckLeft || e.passOpen(t) {
			t.Fatalf("second run = %+v; want the pass ended", sw)
		}
		for _, l := range lookups(e.g, from) {
			if strings.Contains(l, nina) {
				t.Errorf("the pass asked Graph %s, about the holder of a certificate issued after it began", l)
			}
		}
		if st, _, _, ref := e.status(t, ninaCert); st != store.StatusIssued {
			t.Errorf("the new user's certificate is %s (%q), want issued", st, ref)
		}
		for name, rec := range map[string]*store.Record{"bob": bobCert, "sam": samCert, "dan": danCert} {
			if st, reason, by, _ := e.status(t, rec); st != store.StatusRevoked || reason != revocation.AffiliationChanged ||
				by != revocation.AccountsBy {
				t.Errorf("%s's certificate is %s (reason %d, by %q), want revoked as deleted", name, st, reason, by)
			}
		}
	})
}

// TestVerifyPassBesideTheDelta: a deployment upgraded from a build without lookups, whose tenant has more
// certificate holders than one run may ask Graph about. Its first run begins a verifying pass, asks MaxLookups of
// them, LookupConcurrency at a time and never more (as Graph's fake sees it), and leaves the rest for the next run.
// An account disabled meanwhile is revoked by the next run, from the delta read beside the open pass, not a run
// after the pass ends; the pass ends in that run too, and no other certificate is touched.
func TestVerifyPassBesideTheDelta(t *testing.T) {
	e := newAccountsEnv(t, false)
	ctx := context.Background()
	var ids []string
	recs := map[string]*store.Record{}
	for i := range revocation.MaxLookups + 50 {
		id, upn := entrafake.NewGUID(), fmt.Sprintf("user%d@contoso.example", i)
		e.g.PutUser(entrafake.User{ID: id, UPN: upn, Enabled: true})
		ids = append(ids, id)
		recs[id] = e.userCert(t, id, upn, e.now.Add(-24*time.Hour))
	}
	// What a build without lookups left: the delta link of an enumeration it finished, no "verified".
	link := ""
	for {
		page, err := e.dir.UsersDelta(ctx, link)
		if err != nil {
			t.Fatal(err)
		}
		if page.Delta != "" {
			link = page.Delta
			break
		}
		link = page.Next
	}
	old, _ := json.Marshal(map[string]any{"link": link, "at": e.now.Add(-time.Hour)})
	if _, err := e.st.PutMeta(ctx, "entra-users-delta", old, ""); err != nil {
		t.Fatal(err)
	}

	// The first lookups wait until LookupConcurrency are in flight: a sweep that asked one at a time would wait
	// until its context ends, and fail.
	e.g.HoldLookups(revocation.LookupConcurrency)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sw := e.sweepAt(rctx, e.now)
	if sw.AccountsErr != nil || sw.DevicesErr != nil || !sw.CheckLeft || sw.Accounts.LookedUp != revocation.MaxLookups ||
		len(sw.Accounts.Revoked) != 0 {
		t.Fatalf("first run = %+v (accounts %+v); want %d lookups, nothing revoked, the pass left for the next run",
			sw, sw.Accounts, revocation.MaxLookups)
	}
	if got := e.g.MaxInFlight(); got != revocation.LookupConcurrency {
		t.Errorf("Graph saw up to %d requests at once, want %d", got, revocation.LookupConcurrency)
	}

	dave := ids[len(ids)/2]
	e.g.UpdateUser(dave, func(u *entrafake.User) { u.Enabled = false })
	sw = e.sweepAt(ctx, e.now.Add(time.Hour))
	if sw.AccountsErr != nil || sw.DevicesErr != nil || sw.CheckLeft || e.passOpen(t) {
		t.Fatalf("second run = %+v; want the pass ended", sw)
	}
	if got := serialsOf(sw.Accounts.Revoked); !slices.Equal(got, []string{recs[dave].Serial}) {
		t.Errorf("second run revoked %v, want only the certificate of the account disabled meanwhile (%s)", got,
			recs[dave].Serial)
	}
	if st, reason, _, ref := e.status(t, recs[dave]); st != store.StatusRevoked || reason != revocation.AffiliationChanged ||
		ref != "Entra account "+dave+" disabled" {
		t.Errorf("the disabled account's certificate is %s, reason %d, %q", st, reason, ref)
	}
	if n := len(revokedREST(t, e.st)); n != 1 {
		t.Errorf("%d certificates revoked, want 1", n)
	}
	if got := e.g.MaxInFlight(); got > revocation.LookupConcurrency {
		t.Errorf("Graph saw up to %d requests at once, want at most %d", got, revocation.LookupConcurrency)
	}
}

// passScene is a tenant whose first enumeration names an account disabled, with accounts deleted before it (which
// only the verifying pass finds) and accounts still there, each with certificates over several search pages.
type passScene struct {
	e                 *accountsEnv
	revoked, retained []*store.Record
}

func newPassScene(t *testing.T) *passScene {
	t.Helper()
	e := newAccountsEnv(t, false)
	sc := &passScene{e: e}
	old := e.now.Add(-24 * time.Hour)
	for i := range 60 {
		id, upn := entrafake.NewGUID(), fmt.Sprintf("u%d@contoso.example", i)
		e.g.PutUser(entrafake.User{ID: id, UPN: upn, Enabled: true})
		rec := e.userCert(t, id, upn, old)
		switch i % 6 {
		case 0:
			e.g.DeleteUser(id)
			sc.revoked = append(sc.revoked, rec)
		case 1:
			e.g.UpdateUser(id, func(u *entrafake.User) { u.Enabled = false })
			sc.revoked = append(sc.revoked, rec)
		default:
			sc.retained = append(sc.retained, rec)
		}
	}
	return sc
}

// done says both sets are past their first round, with no round nor pass in progress.
func (sc *passScene) done(t *testing.T) bool {
	t.Helper()
	for _, name := range []string{"entra-users-delta", "entra-devices-delta"} {
		d := sc.e.deltaDoc(t, name)
		if link, inRound := deltaState(t, sc.e.st, name); link == "" || inRound || d.Pass != nil || !d.Verified {
			return false
		}
	}
	return true
}

// TestVerifyPassCrashAtEachWrite: the process dies at each write of the first run in turn (the write made or not,
// its answer lost), the run that begins a round (the account disabled) and a verifying pass (the accounts deleted
// before the enumeration), over several search pages. The runs after it end with exactly the certificates of the
// disabled and deleted accounts revoked, none reported twice, both links moved on and the passes ended.
func TestVerifyPassCrashAtEachWrite(t *testing.T) {
	for _, commit := range []bool{false, true} {
		for n := 1; ; n++ {
			sc := newPassScene(t)
			f, ctx, cancel := crashAtWrite(sc.e.st, n, commit)
			sw := revocation.RevokeDisabled(ctx, f, sc.e.dir, sc.e.now)
			cancel()
			if f.Writes() < n {
				if n < 10 {
					t.Fatalf("a run makes only %d writes", f.Writes())
				}
				break
			}
			reported := slices.Clone(sw.Accounts.Revoked)
			t.Run(fmt.Sprintf("write%d-commit%t", n, commit), func(t *testing.T) {
				for run := 0; !sc.done(t); run++ {
					if run == 4 {
						t.Fatal("four runs without faults did not end the round and the pass")
					}
					sw := sc.e.sweepAt(context.Background(), sc.e.now.Add(time.Duration(run+1)*time.Hour))
					if sw.AccountsErr != nil || sw.DevicesErr != nil {
						t.Fatalf("a run without faults failed: %v; %v", sw.AccountsErr, sw.DevicesErr)
					}
					reported = append(reported, sw.Accounts.Revoked...)
				}
				got := revokedREST(t, sc.e.st)
				for _, r := range sc.revoked {
					if got[r.Serial] == nil {
						t.Errorf("%s (%s) not revoked", r.Serial, r.Requester)
					}
				}
				if len(got) != len(sc.revoked) {
					t.Errorf("%d certificates revoked, want %d", len(got), len(sc.revoked))
				}
				seen := map[string]bool{}
				for _, r := range reported {
					if seen[r.Serial] {
						t.Errorf("%s reported revoked twice", r.Serial)
					}
					seen[r.Serial] = true
				}
			})
		}
	}
}

// TestVerifyPassAfterVerifyingRound: a build that asked Graph about the holders within a round left such a round
// open (its scan part-way). This build ends that round as any other, moving the link on, and begins a verifying
// pass beside it, which revokes the certificate of the account deleted before the enumeration and ends.
func TestVerifyPassAfterVerifyingRound(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		ctx := context.Background()
		alice, bob := entrafake.NewGUID(), entrafake.NewGUID()
		e.g.PutUser(entrafake.User{ID: alice, UPN: "alice@contoso.example", Enabled: true})
		aliceCert := e.userCert(t, alice, "alice@contoso.example", e.now.Add(-24*time.Hour))
		bobCert := e.userCert(t, bob, "bob@contoso.example", e.now.Add(-24*time.Hour))
		page, err := e.dir.UsersDelta(ctx, "")
		if err != nil || page.Delta == "" {
			t.Fatalf("enumeration: %+v, %v", page, err)
		}
		old, _ := json.Marshal(map[string]any{"link": "", "at": time.Time{}, "round": map[string]any{
			"id": "0123456789abcdef", "started": e.now.Add(-time.Hour), "link": page.Delta, "complete": true,
			"gone": []any{}, "verify": true}})
		if _, err := e.st.PutMeta(ctx, "entra-users-delta", old, ""); err != nil {
			t.Fatal(err)
		}
		sw, err := e.sweep(t, e.st)
		if err != nil || !sw.Resumed || !sw.Saved || e.link(t) != page.Delta || e.passOpen(t) ||
			!e.deltaDoc(t, "entra-users-delta").Verified || len(sw.Revoked) != 1 || sw.Revoked[0].Serial != bobCert.Serial {
			t.Fatalf("run = %+v, %v (link %q); want the round ended, %s revoked, the pass ended", sw, err, e.link(t),
				bobCert.Serial)
		}
		if st, _, _, _ := e.status(t, aliceCert); st != store.StatusIssued {
			t.Errorf("alice's certificate is %s", st)
		}
	})
}
