package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// lookups lists the Graph lookups of one object (GET /v1.0/users/{id}, /v1.0/devices/{id}) the fake was asked since
// from, as "path?query".
func lookups(g *entrafake.Graph, from int) []string {
	var out []string
	for _, r := range g.Requests()[from:] {
		if r.Method == http.MethodGet && !strings.HasSuffix(r.Path, "/delta") &&
			(strings.HasPrefix(r.Path, "/v1.0/users/") || strings.HasPrefix(r.Path, "/v1.0/devices/")) {
			out = append(out, r.Path+"?"+r.Query)
		}
	}
	return out
}

// sweepBoth runs RevokeDisabled with e's directory.
func (e *accountsEnv) sweepBoth() revocation.DisabledSweep {
	return revocation.RevokeDisabled(context.Background(), e.st, e.dir, e.now)
}

// status is the stored record's status, reason, revoker and reference.
func (e *accountsEnv) status(t *testing.T, rec *store.Record) (store.Status, int, string, string) {
	t.Helper()
	got, err := e.st.Get(context.Background(), rec.Serial)
	if err != nil {
		t.Fatal(err)
	}
	return got.Status, got.RevocationReason, got.RevokedBy, got.RevocationRef
}

// TestRevokeDeletedBeforeEnumeration: accounts and a device deleted before the sweep's first run are in no page of
// its enumeration, which lists only what is there. The first run looks up, one by one, the accounts and device
// objects of the records its pages did not name, with the real Graph paths, and revokes the certificates of those
// Graph answers 404 Request_ResourceNotFound for (deleted for good, or restorable): affiliationChanged for an
// account, cessationOfOperation for a device. It asks nothing about an account its pages named (enabled or disabled),
// revokes nothing of an existing one nor a certificate the deleted operator had issued for another name, and the
// next run asks nothing more.
func TestRevokeDeletedBeforeEnumeration(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		later := e.now.Add(90 * 24 * time.Hour)
		alice, aliceUPN := e.user(t, "alice")
		bob, bobUPN := e.user(t, "bob")
		carol, carolUPN := e.user(t, "carol")
		dave, daveUPN := e.user(t, "dave")
		op, opUPN := e.user(t, "operator")
		laptop, phone := entrafake.NewGUID(), entrafake.NewGUID()
		laptopObj := e.g.AddDevice(laptop, alice)
		phoneObj := e.g.AddDevice(phone, alice)

		aliceUser := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, []string{"upn:" + aliceUPN}, "", later)
		aliceLaptop := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, laptop, nil, laptop, later, laptopObj)
		alicePhone := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, phone, nil, phone, later, phoneObj)
		bobUser := e.cert(t, "oid:"+bob+" upn:"+bobUPN, bobUPN, []string{"upn:" + bobUPN}, "", later)
		bobOther := e.cert(t, "oid:"+bob+" upn:"+bobUPN, bobUPN, nil, "", later)
		carolUser := e.cert(t, "oid:"+carol+" upn:"+carolUPN, carolUPN, nil, "", later)
		daveUser := e.cert(t, "oid:"+dave+" upn:"+daveUPN, daveUPN, nil, "", later)
		opServer := e.cert(t, "oid:"+op+" upn:"+opUPN, "web01.contoso.example", []string{"dns:web01.contoso.example"}, "", later)
		app := e.cert(t, "app:"+entrafake.NewGUID()+" oid:"+entrafake.NewGUID(), "svc", nil, "", later)

		// Before the sweep ever ran: bob deleted for good, carol deleted (restorable), dave disabled, the operator
		// deleted, alice's phone deleted.
		e.g.DeleteUser(bob)
		e.g.SoftDeleteUser(carol)
		e.g.UpdateUser(dave, func(u *entrafake.User) { u.Enabled = false })
		e.g.DeleteUser(op)
		e.g.DeleteDevice(phone)

		from := len(e.g.Requests())
		sw := e.sweepBoth()
		if sw.AccountsErr != nil || sw.DevicesErr != nil || sw.ScanLeft {
			t.Fatalf("first run = %+v; want it done", sw)
		}
		for _, c := range []struct {
			rec         *store.Record
			reason      int
			by, ref     string
			stillIssued bool
		}{
			{rec: bobUser, reason: revocation.AffiliationChanged, by: revocation.AccountsBy, ref: "Entra account " + bob + " deleted"},
			{rec: bobOther, reason: revocation.AffiliationChanged, by: revocation.AccountsBy, ref: "Entra account " + bob + " deleted"},
			{rec: carolUser, reason: revocation.AffiliationChanged, by: revocation.AccountsBy, ref: "Entra account " + carol + " deleted"},
			{rec: daveUser, reason: revocation.AffiliationChanged, by: revocation.AccountsBy, ref: "Entra account " + dave + " disabled"},
			{rec: alicePhone, reason: revocation.CessationOfOperation, by: revocation.DevicesBy, ref: "Entra device object " + phoneObj + " deleted"},
			{rec: aliceUser, stillIssued: true},
			{rec: aliceLaptop, stillIssued: true},
			{rec: opServer, stillIssued: true},
			{rec: app, stillIssued: true},
		} {
			st, reason, by, ref := e.status(t, c.rec)
			if c.stillIssued {
				if st != store.StatusIssued {
					t.Errorf("%s (%s) is %s (%q), want it still issued", c.rec.Serial, c.rec.Requester, st, ref)
				}
				continue
			}
			if st != store.StatusRevoked || reason != c.reason || by != c.by || ref != c.ref {
				t.Errorf("%s (%s) is %s, reason %d by %q ref %q; want revoked, reason %d by %q ref %q", c.rec.Serial,
					c.rec.Requester, st, reason, by, ref, c.reason, c.by, c.ref)
			}
		}
		got := lookups(e.g, from)
		slices.Sort(got)
		want := []string{"/v1.0/devices/" + phoneObj + "?$select=id,accountEnabled",
			"/v1.0/users/" + bob + "?$select=id,accountEnabled", "/v1.0/users/" + carol + "?$select=id,accountEnabled"}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Graph lookups %q, want only (once each) %q", got, want)
		}
		if sw.Accounts.LookedUp != 2 || sw.Accounts.Missing != 2 || sw.Devices.LookedUp != 1 || sw.Devices.Missing != 1 {
			t.Errorf("counts: accounts %+v, devices %+v", sw.Accounts, sw.Devices)
		}

		from = len(e.g.Requests())
		sw = e.sweepBoth()
		if sw.AccountsErr != nil || sw.DevicesErr != nil || len(sw.Accounts.Revoked)+len(sw.Devices.Revoked) != 0 {
			t.Fatalf("second run = %+v; want nothing revoked", sw)
		}
		if got := lookups(e.g, from); len(got) != 0 {
			t.Errorf("second run asked Graph %q, want no lookups once the enumeration's were answered", got)
		}
	})
}

// TestRevokeDeletedDuringExpiredLink: the sweep is up to date; then its delta link expires (410) while Graph is not
// read, and meanwhile an account and a device are deleted. The run that starts the enumeration again does not see
// them in its pages, looks them up and revokes their certificates; an account disabled in the gap is revoked once,
// from its page, and not asked about.
func TestRevokeDeletedDuringExpiredLink(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		later := e.now.Add(90 * 24 * time.Hour)
		alice, aliceUPN := e.user(t, "alice")
		bob, bobUPN := e.user(t, "bob")
		carol, carolUPN := e.user(t, "carol")
		tablet := entrafake.NewGUID()
		tabletObj := e.g.AddDevice(tablet, alice)
		aliceUser := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, nil, "", later)
		aliceTablet := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, tablet, nil, tablet, later, tabletObj)
		bobUser := e.cert(t, "oid:"+bob+" upn:"+bobUPN, bobUPN, nil, "", later)
		carolUser := e.cert(t, "oid:"+carol+" upn:"+carolUPN, carolUPN, nil, "", later)
		if sw := e.sweepBoth(); sw.AccountsErr != nil || sw.DevicesErr != nil ||
			len(sw.Accounts.Revoked)+len(sw.Devices.Revoked) != 0 {
			t.Fatalf("first run = %+v; want nothing revoked", sw)
		}

		e.g.ExpireDeltaLinks()
		e.g.DeleteUser(bob)
		e.g.UpdateUser(carol, func(u *entrafake.User) { u.Enabled = false })
		e.g.DeleteDevice(tablet)
		from := len(e.g.Requests())
		sw := e.sweepBoth()
		if sw.AccountsErr != nil || sw.DevicesErr != nil || !sw.Accounts.Restarted || !sw.Devices.Restarted {
			t.Fatalf("run after the links expired = %+v; want both enumerated again", sw)
		}
		want := serialsOf([]*store.Record{bobUser, carolUser, aliceTablet})
		got := serialsOf(append(slices.Clone(sw.Accounts.Revoked), sw.Devices.Revoked...))
		if !slices.Equal(got, want) {
			t.Fatalf("revoked %v, want %v (bob deleted, carol disabled, the tablet deleted in the gap)", got, want)
		}
		if st, _, _, _ := e.status(t, aliceUser); st != store.StatusIssued {
			t.Errorf("alice's certificate is %s, want issued", st)
		}
		if st, reason, by, _ := e.status(t, aliceTablet); reason != revocation.CessationOfOperation || by != revocation.DevicesBy {
			t.Errorf("tablet certificate %s reason %d by %q", st, reason, by)
		}
		for _, l := range lookups(e.g, from) {
			if strings.Contains(l, carol) || strings.Contains(l, alice) {
				t.Errorf("asked Graph %s, about an account the enumeration named", l)
			}
		}
	})
}

// TestRevokeDeletedLookupFailures: Graph fails the lookup of a deleted account (503 and 429 past the client's wait,
// 403 without User.Read.All, 500, and a 404 that is not Graph's Request_ResourceNotFound): nothing is revoked for it,
// the verifying pass stays open and the error is reported, while the delta's link moves on (the pass holds no round
// up); the next run, Graph answering, revokes the certificate and ends the pass, and the one after asks nothing more.
func TestRevokeDeletedLookupFailures(t *testing.T) {
	for _, f := range []entrafake.Fault{{Status: http.StatusServiceUnavailable, RetryAfter: "120"},
		{Status: http.StatusTooManyRequests, RetryAfter: "120"}, {Status: http.StatusForbidden},
		{Status: http.StatusInternalServerError}, {Status: http.StatusNotFound}} {
		t.Run(http.StatusText(f.Status), func(t *testing.T) {
			backends(t, func(t *testing.T, useTables bool) {
				e := newAccountsEnv(t, useTables)
				bob, bobUPN := e.user(t, "bob")
				rec := e.cert(t, "oid:"+bob+" upn:"+bobUPN, bobUPN, nil, "", e.now.Add(time.Hour))
				e.g.DeleteUser(bob)
				f.Path = "/v1.0/users/" + bob
				e.g.SetFault(f)
				sw, err := e.sweep(t, e.st)
				if !errors.Is(err, entra.ErrUnavailable) || len(sw.Revoked) != 0 || !e.passOpen(t) || e.link(t) == "" {
					t.Fatalf("run with the lookup failing %d = %+v, %v (link %q, pass open %t); want ErrUnavailable, nothing revoked, the link saved and the pass open",
						f.Status, sw, err, e.link(t), e.passOpen(t))
				}
				if st, _, _, _ := e.status(t, rec); st != store.StatusIssued {
					t.Fatalf("certificate is %s after a failed lookup, want issued", st)
				}
				e.g.SetFault(entrafake.Fault{})
				sw, err = e.sweep(t, e.st)
				if err != nil || len(sw.Revoked) != 1 || sw.Revoked[0].Serial != rec.Serial || e.passOpen(t) {
					t.Fatalf("next run = %+v, %v (pass open %t); want the certificate revoked and the pass ended", sw, err,
						e.passOpen(t))
				}
				from := len(e.g.Requests())
				if sw, err := e.sweep(t, e.st); err != nil || len(sw.Revoked) != 0 || len(lookups(e.g, from)) != 0 {
					t.Fatalf("third run = %+v, %v, lookups %q; want nothing", sw, err, lookups(e.g, from))
				}
			})
		})
	}
}

// TestRevokeDeletedLookupsBounded: more deleted accounts than one run may ask Graph about. The first run asks at
// most MaxLookups, revokes what they answered, and leaves the verifying pass for the next run (the delta's link
// moves on meanwhile), which goes on from where it stopped (asking again only about the page the first left
// unfinished) and finishes: every certificate revoked once, the pass ended.
func TestRevokeDeletedLookupsBounded(t *testing.T) {
	e := newAccountsEnv(t, false)
	var recs []*store.Record
	for i := range revocation.MaxLookups + 30 {
		id, upn := entrafake.NewGUID(), "gone"+strings.Repeat("x", i%3)+entrafake.NewGUID()[:6]+"@contoso.example"
		recs = append(recs, e.cert(t, "oid:"+id+" upn:"+upn, upn, nil, "", e.now.Add(time.Hour)))
	}
	e.user(t, "alice")
	sw := e.sweepBoth()
	first := lookups(e.g, 0)
	if sw.AccountsErr != nil || !sw.CheckLeft || len(first) > revocation.MaxLookups || len(first) == 0 ||
		len(sw.Accounts.Revoked) != sw.Accounts.Missing || e.link(t) == "" || !e.passOpen(t) {
		t.Fatalf("first run = %+v (accounts %+v), %d lookups; want at most %d, the pass left for the next run",
			sw, sw.Accounts, len(first), revocation.MaxLookups)
	}
	from := len(e.g.Requests())
	sw2 := e.sweepBoth()
	second := lookups(e.g, from)
	if sw2.AccountsErr != nil || sw2.CheckLeft || e.passOpen(t) {
		t.Fatalf("second run = %+v; want the pass finished", sw2)
	}
	if n := len(sw.Accounts.Revoked) + len(sw2.Accounts.Revoked); n != len(recs) {
		t.Errorf("revoked %d, want %d", n, len(recs))
	}
	// Only the lookups of the page the first run did not finish are asked again.
	if len(first)+len(second) > len(recs)+50 {
		t.Errorf("%d + %d lookups for %d accounts", len(first), len(second), len(recs))
	}
	for _, r := range recs {
		if st, _, _, _ := e.status(t, r); st != store.StatusRevoked {
			t.Fatalf("%s is %s", r.Serial, st)
		}
	}
}

// TestRevokeDeletedBeforeUpgrade: a build before the lookups enumerated the tenant after an account was deleted and
// saved its delta link (a document without "verified"). The first run of this build, reading only changes from that
// link, still looks up the accounts its pages did not name once, and revokes the deleted account's certificate; the
// run after asks nothing.
func TestRevokeDeletedBeforeUpgrade(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		ctx := context.Background()
		alice, aliceUPN := e.user(t, "alice")
		bob, bobUPN := e.user(t, "bob")
		aliceUser := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, nil, "", e.now.Add(time.Hour))
		bobUser := e.cert(t, "oid:"+bob+" upn:"+bobUPN, bobUPN, nil, "", e.now.Add(time.Hour))
		e.g.DeleteUser(bob)
		page, err := e.dir.UsersDelta(ctx, "")
		if err != nil || page.Delta == "" {
			t.Fatalf("enumeration: %+v, %v", page, err)
		}
		old, _ := json.Marshal(map[string]any{"link": page.Delta, "at": e.now.Add(-time.Hour)})
		if _, err := e.st.PutMeta(ctx, "entra-users-delta", old, ""); err != nil {
			t.Fatal(err)
		}
		sw, err := e.sweep(t, e.st)
		if err != nil || len(sw.Revoked) != 1 || sw.Revoked[0].Serial != bobUser.Serial || sw.LookedUp != 2 {
			t.Fatalf("first run of this build = %+v, %v; want bob's certificate revoked after 2 lookups", sw, err)
		}
		if st, _, _, _ := e.status(t, aliceUser); st != store.StatusIssued {
			t.Errorf("alice's certificate is %s", st)
		}
		from := len(e.g.Requests())
		if sw, err := e.sweep(t, e.st); err != nil || len(sw.Revoked) != 0 || len(lookups(e.g, from)) != 0 {
			t.Fatalf("next run = %+v, %v, lookups %q; want nothing", sw, err, lookups(e.g, from))
		}
	})
}
