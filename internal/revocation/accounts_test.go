package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
)

// accountsEnv is a store, the strict Graph fake and the real Graph directory client reading it.
type accountsEnv struct {
	st  store.Store
	g   *entrafake.Graph
	dir *entra.Directory
	now time.Time
}

func newAccountsEnv(t *testing.T, useTables bool) *accountsEnv {
	t.Helper()
	var st store.Store = memstore.New()
	if useTables {
		ts, err := tables.NewFromConnectionString(azuritetest.ConnectionString(t), "")
		if err != nil {
			t.Fatal(err)
		}
		if err := ts.EnsureTables(context.Background()); err != nil {
			t.Fatal(err)
		}
		st = ts
	}
	g := entrafake.NewGraph(t)
	dir, err := entra.NewDirectory(entra.GraphConfig{Credential: g.Credential(), BaseURL: g.URL(),
		Scope: entrafake.GraphScope, HTTPClient: g.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return &accountsEnv{st: st, g: g, dir: dir, now: time.Now().UTC().Truncate(time.Second)}
}

// user adds an enabled user to the tenant and returns its object ID and UPN.
func (e *accountsEnv) user(t *testing.T, name string) (string, string) {
	t.Helper()
	id, upn := entrafake.NewGUID(), name+"@contoso.example"
	e.g.PutUser(entrafake.User{ID: id, UPN: upn, Enabled: true})
	return id, upn
}

// cert stores an issued /api/csr record of requester with subject CN cn, the SANs and the device ID, and no device
// object ID unless objectID gives one (records written before it was kept have none).
func (e *accountsEnv) cert(t *testing.T, requester, cn string, sans []string, deviceID string, notAfter time.Time,
	objectID ...string) *store.Record {
	t.Helper()
	ctx := context.Background()
	r := storetest.FullRecord(storetest.NewSerial())
	r.Source, r.Endpoint, r.Profile, r.Requester = store.SourceAPI, "api", "api", requester
	r.Subject, r.SANs, r.DeviceID, r.NotAfter = "CN="+cn, sans, deviceID, notAfter
	r.DeviceObjectID = strings.Join(objectID, "")
	r.IntuneSerial, r.CAConfiguration, r.Gated, r.RenewedFrom, r.RenewedTo = "", "", false, "", ""
	if err := e.st.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status, r.CertDER = store.StatusIssued, []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	if err := e.st.Update(ctx, r, store.StatusPending); err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *accountsEnv) sweep(t *testing.T, st store.Store) (revocation.AccountSweep, error) {
	t.Helper()
	return revocation.RevokeDisabledAccounts(context.Background(), st, e.dir, e.now)
}

// passOpen says the users delta document holds a verifying pass in progress.
func (e *accountsEnv) passOpen(t *testing.T) bool {
	t.Helper()
	return e.deltaDoc(t, "entra-users-delta").Pass != nil
}

// deltaView is the part of a delta document the tests look at.
type deltaView struct {
	Link     string          `json:"link"`
	Verified bool            `json:"verified"`
	Pass     json.RawMessage `json:"pass"`
}

// deltaDoc reads a delta document (a zero one when there is none).
func (e *accountsEnv) deltaDoc(t *testing.T, name string) deltaView {
	t.Helper()
	var doc deltaView
	raw, _, err := e.st.GetMeta(context.Background(), name)
	if errors.Is(err, store.ErrNotFound) {
		return doc
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// link is the users delta link the store holds ("" before the first sweep saved one).
func (e *accountsEnv) link(t *testing.T) string {
	t.Helper()
	raw, _, err := e.st.GetMeta(context.Background(), "entra-users-delta")
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Link string `json:"link"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Link
}

func serialsOf(recs []*store.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Serial)
	}
	slices.Sort(out)
	return out
}

// revokedSet lists the serials among recs whose stored record is revoked, each checked for the account revocation's
// reason, revoker and reference.
func (e *accountsEnv) revokedSet(t *testing.T, recs ...*store.Record) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		got, err := e.st.Get(context.Background(), r.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.StatusRevoked {
			continue
		}
		if got.RevocationReason != revocation.AffiliationChanged || got.RevokedBy != revocation.AccountsBy {
			t.Errorf("%s revoked with reason %d by %q, want affiliationChanged by %s", r.Serial, got.RevocationReason,
				got.RevokedBy, revocation.AccountsBy)
		}
		oid, _ := strings.CutPrefix(strings.Fields(r.Requester)[0], "oid:")
		if !strings.Contains(got.RevocationRef, strings.ToLower(oid)) {
			t.Errorf("%s revocation reference %q does not name the account %s", r.Serial, got.RevocationRef, oid)
		}
		out = append(out, r.Serial)
	}
	slices.Sort(out)
	return out
}

// TestRevokeDisabledAccounts: the first sweep enumerates the tenant and revokes nothing while every account is
// enabled. Then an administrator disables one user, deletes another (restorable) and disables an operator who holds
// CSR.Request.Db: the next sweep revokes, for affiliationChanged, the certificates bound to those accounts (a user
// certificate naming the UPN, a self-service device certificate, the operator's own certificate) and nothing else: not
// the server certificate the operator had issued for another name, not another user's, not an app's, not an expired
// one. A further sweep revokes nothing more, and the saved delta link advances with each round.
func TestRevokeDisabledAccounts(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		later := e.now.Add(90 * 24 * time.Hour)
		alice, aliceUPN := e.user(t, "alice")
		bob, bobUPN := e.user(t, "bob")
		carol, carolUPN := e.user(t, "carol")
		op, opUPN := e.user(t, "operator")
		aliceUser := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, []string{"upn:" + aliceUPN}, "", later)
		aliceDevice := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", nil,
			"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", later)
		aliceExpired := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, []string{"upn:" + aliceUPN}, "", e.now.Add(-time.Hour))
		bobUser := e.cert(t, "oid:"+strings.ToUpper(bob)+" upn:"+bobUPN, bobUPN, nil, "", later)
		carolUser := e.cert(t, "oid:"+carol+" upn:"+carolUPN, carolUPN, []string{"upn:" + carolUPN}, "", later)
		opOwn := e.cert(t, "oid:"+op+" upn:"+opUPN, "Operator", []string{"email:" + strings.ToUpper(opUPN)}, "", later)
		opServer := e.cert(t, "oid:"+op+" upn:"+opUPN, "web01.contoso.example", []string{"dns:web01.contoso.example"}, "", later)
		app := e.cert(t, "app:"+entrafake.NewGUID()+" oid:"+alice, aliceUPN, []string{"upn:" + aliceUPN}, "", later)
		all := []*store.Record{aliceUser, aliceDevice, aliceExpired, bobUser, carolUser, opOwn, opServer, app}

		sw, err := e.sweep(t, e.st)
		if err != nil || !sw.Complete || !sw.Saved || len(sw.Revoked) != 0 || sw.Accounts != 0 {
			t.Fatalf("first sweep = %+v, %v; want the enumeration complete and saved, nothing revoked", sw, err)
		}
		first := e.link(t)
		if first == "" {
			t.Fatal("no delta link saved")
		}

		e.g.UpdateUser(alice, func(u *entrafake.User) { u.Enabled = false })
		e.g.SoftDeleteUser(bob)
		e.g.UpdateUser(op, func(u *entrafake.User) { u.Enabled = false })
		sw, err = e.sweep(t, e.st)
		want := serialsOf([]*store.Record{aliceUser, aliceDevice, bobUser, opOwn})
		if err != nil || sw.Accounts != 3 || !slices.Equal(serialsOf(sw.Revoked), want) {
			t.Fatalf("second sweep = %+v (revoked %v), %v; want %v revoked for 3 accounts", sw, serialsOf(sw.Revoked), err, want)
		}
		if got := e.revokedSet(t, all...); !slices.Equal(got, want) {
			t.Fatalf("revoked records %v, want exactly %v", got, want)
		}
		if r, _ := e.st.Get(context.Background(), bobUser.Serial); !strings.Contains(r.RevocationRef, "deleted") {
			t.Errorf("deleted account's revocation reference %q", r.RevocationRef)
		}
		if r, _ := e.st.Get(context.Background(), aliceUser.Serial); !strings.Contains(r.RevocationRef, "disabled") {
			t.Errorf("disabled account's revocation reference %q", r.RevocationRef)
		}
		second := e.link(t)
		if second == "" || second == first {
			t.Fatalf("the delta link did not advance: %q then %q", first, second)
		}

		sw, err = e.sweep(t, e.st)
		if err != nil || len(sw.Revoked) != 0 || sw.Accounts != 0 {
			t.Fatalf("third sweep = %+v, %v; want nothing", sw, err)
		}
		if got := e.revokedSet(t, all...); !slices.Equal(got, want) {
			t.Fatalf("after the third sweep: revoked %v, want %v", got, want)
		}
	})
}

// TestRevokeDisabledAccountsGraphFailures: a sweep whose delta page Graph refuses (403: User.Read.All not granted),
// throttles (429 with a Retry-After longer than the client waits) or fails (500) revokes nothing, reports the error
// and keeps the link; the next sweep, Graph answering again, revokes the disabled account's certificate.
func TestRevokeDisabledAccountsGraphFailures(t *testing.T) {
	for _, f := range []entrafake.Fault{{Status: http.StatusForbidden},
		{Status: http.StatusTooManyRequests, RetryAfter: "120"}, {Status: http.StatusInternalServerError}} {
		t.Run(http.StatusText(f.Status), func(t *testing.T) {
			e := newAccountsEnv(t, false)
			alice, upn := e.user(t, "alice")
			rec := e.cert(t, "oid:"+alice+" upn:"+upn, upn, nil, "", e.now.Add(time.Hour))
			if _, err := e.sweep(t, e.st); err != nil {
				t.Fatal(err)
			}
			link := e.link(t)
			e.g.UpdateUser(alice, func(u *entrafake.User) { u.Enabled = false })
			f.Path = "/v1.0/users/delta"
			e.g.SetFault(f)
			sw, err := e.sweep(t, e.st)
			if !errors.Is(err, entra.ErrUnavailable) || len(sw.Revoked) != 0 || sw.Saved {
				t.Fatalf("sweep with Graph %d = %+v, %v; want ErrUnavailable, nothing revoked or saved", f.Status, sw, err)
			}
			if got := e.revokedSet(t, rec); len(got) != 0 || e.link(t) != link {
				t.Fatalf("after Graph %d: revoked %v, link moved %v", f.Status, got, e.link(t) != link)
			}
			e.g.SetFault(entrafake.Fault{})
			if sw, err := e.sweep(t, e.st); err != nil || len(sw.Revoked) != 1 {
				t.Fatalf("sweep after Graph recovered = %+v, %v; want the certificate revoked", sw, err)
			}
		})
	}
}

// linkLost is a store whose writes of the users delta link fail, as when the process dies after the revocations.
type linkLost struct{ store.Store }

func (s linkLost) PutMeta(ctx context.Context, name string, value []byte, etag string) (string, error) {
	if name == "entra-users-delta" {
		return "", store.ErrUnavailable
	}
	return s.Store.PutMeta(ctx, name, value, etag)
}

// TestRevokeDisabledAccountsInterrupted: a sweep that dies once its revocations are durable, before its link is
// saved, keeps the old link; the next sweep reads the same changes again and ends with the same certificates revoked,
// none twice.
func TestRevokeDisabledAccountsInterrupted(t *testing.T) {
	e := newAccountsEnv(t, false)
	var recs []*store.Record
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		id, upn := e.user(t, n)
		ids = append(ids, id)
		recs = append(recs, e.cert(t, "oid:"+id+" upn:"+upn, upn, nil, "", e.now.Add(time.Hour)))
	}
	if _, err := e.sweep(t, e.st); err != nil {
		t.Fatal(err)
	}
	link := e.link(t)
	for _, id := range ids {
		e.g.UpdateUser(id, func(u *entrafake.User) { u.Enabled = false })
	}

	// The process dies once every revocation is durable, before the link is written.
	sw, err := e.sweep(t, linkLost{e.st})
	if err == nil || len(sw.Revoked) != 3 || sw.Saved || e.link(t) != link {
		t.Fatalf("sweep losing its link write = %+v, %v; want 3 revoked, the old link kept", sw, err)
	}
	sw, err = e.sweep(t, e.st)
	if err != nil || len(sw.Revoked) != 0 || sw.Accounts != 3 || !sw.Saved || e.link(t) == link {
		t.Fatalf("sweep after the crash = %+v, %v; want the same 3 accounts read again, nothing revoked twice, link saved", sw, err)
	}
	if got := e.revokedSet(t, recs...); !slices.Equal(got, serialsOf(recs)) {
		t.Fatalf("revoked %v, want %v", got, serialsOf(recs))
	}
}

// TestRevokeDisabledAccountsCancelledMidway: ctx ends between two revocations of one sweep (the first one's
// enumeration): no link is saved, and the next sweep, enumerating again, revokes the rest.
func TestRevokeDisabledAccountsCancelledMidway(t *testing.T) {
	e := newAccountsEnv(t, false)
	var recs []*store.Record
	for _, n := range []string{"a", "b", "c"} {
		id, upn := e.user(t, n)
		recs = append(recs, e.cert(t, "oid:"+id+" upn:"+upn, upn, nil, "", e.now.Add(time.Hour)))
		// Disabled before the first sweep: its enumeration finds them.
		e.g.UpdateUser(id, func(u *entrafake.User) { u.Enabled = false })
	}
	faults := storetest.NewFaultStore(e.st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	faults.OnCall(func(method string) {
		if method == storetest.MethodAddRevoked && faults.Calls(storetest.MethodAddRevoked) == 2 {
			cancel()
		}
	})
	sw, err := revocation.RevokeDisabledAccounts(ctx, faults, e.dir, e.now)
	if err == nil || len(sw.Revoked) != 1 || sw.Saved || e.link(t) != "" {
		t.Fatalf("cancelled sweep = %+v, %v; want 1 revoked, no link saved", sw, err)
	}
	sw2, err := e.sweep(t, e.st)
	if err != nil || len(sw2.Revoked) != 2 || !sw2.Saved {
		t.Fatalf("next sweep = %+v, %v; want the other 2 revoked and the link saved", sw2, err)
	}
	if got := e.revokedSet(t, recs...); !slices.Equal(got, serialsOf(recs)) {
		t.Fatalf("revoked %v, want %v", got, serialsOf(recs))
	}
}

// TestRevokeDisabledAccountsPaging: a tenant longer than one sweep's page cap is enumerated over several sweeps,
// each going on from the next link the previous one saved; a link Graph has forgotten (410) starts the enumeration
// again, and a user disabled meanwhile is still found.
func TestRevokeDisabledAccountsPaging(t *testing.T) {
	e := newAccountsEnv(t, false)
	e.g.SetPageSize(1)
	for range revocation.MaxAccountPages + 5 {
		e.user(t, "u"+entrafake.NewGUID()[:8])
	}
	sw, err := e.sweep(t, e.st)
	if err != nil || sw.Pages != revocation.MaxAccountPages || sw.Complete || !sw.Saved {
		t.Fatalf("first sweep = %+v, %v; want %d pages, incomplete, saved", sw, err, revocation.MaxAccountPages)
	}
	mid := e.link(t)
	sw, err = e.sweep(t, e.st)
	if err != nil || sw.Pages != 5 || !sw.Complete || e.link(t) == mid {
		t.Fatalf("second sweep = %+v, %v; want the 5 remaining pages and the round complete", sw, err)
	}

	alice, upn := e.user(t, "alice")
	rec := e.cert(t, "oid:"+alice+" upn:"+upn, upn, nil, "", e.now.Add(time.Hour))
	e.g.UpdateUser(alice, func(u *entrafake.User) { u.Enabled = false })
	e.g.SetPageSize(0)
	e.g.ExpireDeltaLinks()
	sw, err = e.sweep(t, e.st)
	if err != nil || !sw.Restarted || !sw.Complete || len(sw.Revoked) != 1 || sw.Revoked[0].Serial != rec.Serial {
		t.Fatalf("sweep after the link expired = %+v, %v; want a new enumeration revoking %s", sw, err, rec.Serial)
	}
}

// TestRevokeDisabledDevices: an administrator disables one Entra device and deletes another, both with certificates
// whose records were written before the device's object ID was kept. The devices sweep revokes, for
// cessationOfOperation, the self-service certificate of the disabled device (its record's device ID spelt in upper
// case, as older records may be) and nothing else: the deleted device's entry names only its object ID, which its
// record lacks, so it is counted as unmapped, never guessed at. A sweep Graph refuses (403: Device.Read.All missing)
// revokes nothing and keeps its link.
func TestRevokeDisabledDevices(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		ctx := context.Background()
		later := e.now.Add(90 * 24 * time.Hour)
		owner, upn := e.user(t, "owner")
		lost, kept, gone := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
		for _, d := range []string{lost, kept, gone} {
			e.g.AddDevice(d, owner)
		}
		req := "oid:" + owner + " upn:" + upn
		lostCert := e.cert(t, req, lost, nil, strings.ToUpper(lost), later)
		keptCert := e.cert(t, req, kept, nil, kept, later)
		goneCert := e.cert(t, req, gone, nil, gone, later)
		userCert := e.cert(t, req, upn, []string{"upn:" + upn}, "", later)
		sweep := func() (revocation.AccountSweep, error) {
			return revocation.RevokeDisabledDevices(ctx, e.st, e.dir, e.now)
		}
		if sw, err := sweep(); err != nil || !sw.Complete || !sw.Saved || len(sw.Revoked) != 0 {
			t.Fatalf("first sweep = %+v, %v", sw, err)
		}
		e.g.SetAccountEnabled(lost, false)
		e.g.DeleteDevice(gone)

		e.g.SetFault(entrafake.Fault{Status: http.StatusForbidden, Path: "/v1.0/devices/delta"})
		if sw, err := sweep(); !errors.Is(err, entra.ErrUnavailable) || len(sw.Revoked) != 0 || sw.Saved {
			t.Fatalf("sweep with Graph refusing = %+v, %v", sw, err)
		}
		e.g.SetFault(entrafake.Fault{})

		sw, err := sweep()
		if err != nil || sw.Accounts != 2 || sw.Unmapped != 1 || len(sw.Revoked) != 1 || sw.Revoked[0].Serial != lostCert.Serial {
			t.Fatalf("sweep = %+v, %v; want %s revoked, the deleted device unmapped", sw, err, lostCert.Serial)
		}
		for _, r := range []*store.Record{keptCert, goneCert, userCert} {
			if got, _ := e.st.Get(ctx, r.Serial); got.Status != store.StatusIssued {
				t.Errorf("%s (device %q) is %s", r.Serial, r.DeviceID, got.Status)
			}
		}
		got, _ := e.st.Get(ctx, lostCert.Serial)
		if got.Status != store.StatusRevoked || got.RevocationReason != revocation.CessationOfOperation ||
			got.RevokedBy != revocation.DevicesBy || got.RevocationRef != "Entra device "+lost+" disabled" {
			t.Fatalf("disabled device's certificate: %s reason %d by %q ref %q", got.Status, got.RevocationReason,
				got.RevokedBy, got.RevocationRef)
		}
		if sw, err := sweep(); err != nil || len(sw.Revoked) != 0 || sw.Accounts != 0 {
			t.Fatalf("a further sweep = %+v, %v; want nothing", sw, err)
		}
	})
}

// TestRevokeDeletedDevices: the records of self-service device certificates carry the object ID of the Entra device
// Graph read for them — the device a CN names, or the Entra device behind an Intune managed device a certificate
// names by IntuneDeviceId://. An administrator deletes the laptop (its delta entry names only its object ID) and
// disables the Entra device behind the phone: the sweep revokes the laptop's certificate and the phone's, found by
// object ID, for cessationOfOperation with the object ID and what happened as the reference, and counts as unmapped
// only the deleted tablet, whose record was written before the object ID was kept and stays valid. Another device's
// certificate, an expired one of the laptop's and the owner's user certificate stay as they were.
func TestRevokeDeletedDevices(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		ctx := context.Background()
		later := e.now.Add(90 * 24 * time.Hour)
		owner, upn := e.user(t, "owner")
		laptop, phoneAAD, tablet, kept := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
		laptopObj, phoneObj := e.g.AddDevice(laptop, owner), e.g.AddDevice(phoneAAD, owner)
		e.g.AddDevice(tablet, owner)
		keptObj := e.g.AddDevice(kept, owner)
		phone := entrafake.NewGUID() // the Intune managed device behind which phoneAAD is
		req := "oid:" + owner + " upn:" + upn
		laptopCert := e.cert(t, req, laptop, nil, laptop, later, laptopObj)
		laptopOld := e.cert(t, req, laptop, nil, laptop, e.now, laptopObj)
		phoneCert := e.cert(t, req, upn, []string{"uri:IntuneDeviceId://" + phone}, phone, later, strings.ToUpper(phoneObj))
		tabletCert := e.cert(t, req, tablet, nil, tablet, later)
		keptCert := e.cert(t, req, kept, nil, kept, later, keptObj)
		userCert := e.cert(t, req, upn, []string{"upn:" + upn}, "", later)
		sweep := func() (revocation.AccountSweep, error) {
			return revocation.RevokeDisabledDevices(ctx, e.st, e.dir, e.now)
		}
		if sw, err := sweep(); err != nil || !sw.Complete || len(sw.Revoked) != 0 {
			t.Fatalf("first sweep = %+v, %v", sw, err)
		}
		e.g.DeleteDevice(laptop)
		e.g.SetAccountEnabled(phoneAAD, false)
		e.g.DeleteDevice(tablet)

		sw, err := sweep()
		if err != nil || sw.Accounts != 3 || sw.Unmapped != 1 || !slices.Equal(serialsOf(sw.Revoked), serialsOf([]*store.Record{laptopCert, phoneCert})) {
			t.Fatalf("sweep = %+v, %v; want the laptop's and the phone's certificates revoked, the tablet unmapped", sw, err)
		}
		for r, ref := range map[*store.Record]string{
			laptopCert: "Entra device object " + laptopObj + " deleted",
			phoneCert:  "Entra device object " + phoneObj + " disabled",
		} {
			got, _ := e.st.Get(ctx, r.Serial)
			if got.Status != store.StatusRevoked || got.RevocationReason != revocation.CessationOfOperation ||
				got.RevokedBy != revocation.DevicesBy || got.RevocationRef != ref {
				t.Errorf("%s: %s reason %d by %q ref %q; want revoked, cessationOfOperation, %q", r.Serial, got.Status,
					got.RevocationReason, got.RevokedBy, got.RevocationRef, ref)
			}
		}
		for _, r := range []*store.Record{laptopOld, tabletCert, keptCert, userCert} {
			if got, _ := e.st.Get(ctx, r.Serial); got.Status != store.StatusIssued {
				t.Errorf("%s (device %q, object %q) is %s", r.Serial, r.DeviceID, r.DeviceObjectID, got.Status)
			}
		}
		if sw, err := sweep(); err != nil || len(sw.Revoked) != 0 || sw.Accounts != 0 {
			t.Fatalf("a further sweep = %+v, %v; want nothing", sw, err)
		}
	})
}

// pagedDevices serves fixed devices delta pages, one a call, the last with a delta link.
type pagedDevices [][]entra.DirectoryChange

func (p pagedDevices) DevicesDelta(_ context.Context, link string) (*entra.DeltaPage, error) {
	n := 0
	if link != "" {
		n, _ = strconv.Atoi(strings.TrimPrefix(link, "page"))
	}
	page := &entra.DeltaPage{Changes: p[n], Next: "page" + strconv.Itoa(n+1)}
	if n == len(p)-1 {
		page.Next, page.Delta = "", "done"
	}
	return page, nil
}

// TestRevokeDevicesDisabledThenDeleted: a device one page of a round says is disabled and a later page says is
// deleted (its entry without the deviceId) is one device: the deviceId of the earlier entry still finds the
// certificate whose record carries no object ID, and the device is not counted as unmapped.
func TestRevokeDevicesDisabledThenDeleted(t *testing.T) {
	e := newAccountsEnv(t, false)
	owner, upn := e.user(t, "owner")
	dev, obj := entrafake.NewGUID(), entrafake.NewGUID()
	old := e.cert(t, "oid:"+owner+" upn:"+upn, dev, nil, dev, e.now.Add(time.Hour))
	off := false
	pages := pagedDevices{{{ID: obj, DeviceID: dev, Enabled: &off}}, {{ID: obj, Removed: "changed"}}}
	sw, err := revocation.RevokeDisabledDevices(context.Background(), e.st, pages, e.now)
	if err != nil || sw.Pages != 2 || sw.Accounts != 1 || sw.Unmapped != 0 || len(sw.Revoked) != 1 ||
		sw.Revoked[0].Serial != old.Serial || sw.Revoked[0].RevocationRef != "Entra device "+dev+" deleted" {
		t.Fatalf("sweep = %+v, %v; want %s revoked as deleted, nothing unmapped", sw, err, old.Serial)
	}
}

// scriptedDelta answers each users delta request with the next of its pages, each its round's last (a delta link).
type scriptedDelta struct{ pages [][]entra.DirectoryChange }

func (d *scriptedDelta) UsersDelta(_ context.Context, link string) (*entra.DeltaPage, error) {
	if len(d.pages) == 0 {
		return nil, errors.New("no page scripted")
	}
	page := &entra.DeltaPage{Changes: d.pages[0], Delta: link + "+"}
	d.pages = d.pages[1:]
	return page, nil
}

// TestRevokeDisabledAccountsIssuedAfterTheScan: /api/csr trusts an "enabled" answer from Graph for 5 minutes, so a
// certificate can be issued to an account after the sweep that found the account disabled has scanned. Later rounds of
// the delta do not name the account again (nothing about it changes), so the sweeps of the next RecheckWindow look
// for its certificates once more: the late certificate is revoked by the next hourly sweep. An entry that says
// nothing about signing in (no accountEnabled) does not stop that; a re-enable does; and after RecheckWindow the
// account is let go.
func TestRevokeDisabledAccountsIssuedAfterTheScan(t *testing.T) {
	e := newAccountsEnv(t, false)
	later := e.now.Add(90 * 24 * time.Hour)
	alice, aliceUPN := entrafake.NewGUID(), "alice@contoso.example"
	bob, bobUPN := entrafake.NewGUID(), "bob@contoso.example"
	no, yes := false, true
	dir := &scriptedDelta{pages: [][]entra.DirectoryChange{
		{{ID: alice, Enabled: &no}, {ID: bob, Enabled: &no}},
		{{ID: alice}, {ID: bob, Enabled: &yes}}, // Alice: an entry without accountEnabled; Bob re-enabled
		nil,
	}}
	sweep := func(at time.Time) (revocation.AccountSweep, error) {
		return revocation.RevokeDisabledAccounts(context.Background(), e.st, dir, at)
	}
	if sw, err := sweep(e.now); err != nil || sw.Accounts != 2 || !sw.Saved {
		t.Fatalf("first sweep = %+v, %v; want 2 accounts, saved", sw, err)
	}
	// Issued on the cached "enabled" answers, after the first sweep scanned.
	aliceLate := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, []string{"upn:" + aliceUPN}, "", later)
	bobLate := e.cert(t, "oid:"+bob+" upn:"+bobUPN, bobUPN, nil, "", later)

	sw, err := sweep(e.now.Add(time.Hour))
	if err != nil || !slices.Equal(serialsOf(sw.Revoked), []string{aliceLate.Serial}) || sw.Rechecked != 1 {
		t.Fatalf("next hourly sweep = %+v (revoked %v), %v; want %s revoked, Alice looked for again", sw,
			serialsOf(sw.Revoked), err, aliceLate.Serial)
	}
	// Bob was re-enabled, and Alice was found more than RecheckWindow ago: neither is looked for again.
	bobAgain := e.cert(t, "oid:"+bob+" upn:"+bobUPN, bobUPN, nil, "", later)
	aliceAgain := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, nil, "", later)
	if sw, err := sweep(e.now.Add(2 * time.Hour)); err != nil || len(sw.Revoked) != 0 || sw.Rechecked != 0 {
		t.Fatalf("sweep past the recheck window = %+v, %v; want nothing looked for again", sw, err)
	}
	if got := e.revokedSet(t, aliceLate, bobLate, bobAgain, aliceAgain); !slices.Equal(got, []string{aliceLate.Serial}) {
		t.Fatalf("revoked %v, want only %s", got, aliceLate.Serial)
	}
}

// TestRevokeDisabledAccountsUsernameBindsNothing: a token without a upn claim is recorded as "oid:<id>
// username:<name>", the name being the token's preferred_username, which its user may change. A name that reads
// "x upn:<someone else's UPN>" makes no UPN of it: when that account is disabled, a certificate its holder (a
// CSR.Request.Db operator) had issued naming the other UPN is not the account's and stays valid, while the account's
// self-service device certificate is revoked.
func TestRevokeDisabledAccountsUsernameBindsNothing(t *testing.T) {
	e := newAccountsEnv(t, false)
	later := e.now.Add(90 * 24 * time.Hour)
	op, victimUPN := entrafake.NewGUID(), "ceo@contoso.example"
	device := "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	named := e.cert(t, "oid:"+op+" username:x upn:"+victimUPN, victimUPN, []string{"upn:" + victimUPN}, "", later)
	own := e.cert(t, "oid:"+op+" username:x upn:"+victimUPN, device, nil, device, later)
	no := false
	dir := &scriptedDelta{pages: [][]entra.DirectoryChange{{{ID: op, Enabled: &no}}}}
	if _, err := revocation.RevokeDisabledAccounts(context.Background(), e.st, dir, e.now); err != nil {
		t.Fatal(err)
	}
	if got := e.revokedSet(t, named, own); !slices.Equal(got, []string{own.Serial}) {
		t.Fatalf("revoked %v, want only the device certificate %s (not %s, naming another UPN)", got, own.Serial, named.Serial)
	}
}

// TestRevokeDisabledAccountsEntryWithoutState: Graph may name an object again in the same round, and an entry without
// accountEnabled (and not @removed) says nothing about signing in: it does not cancel the disable an earlier entry
// reported.
func TestRevokeDisabledAccountsEntryWithoutState(t *testing.T) {
	e := newAccountsEnv(t, false)
	alice, aliceUPN := entrafake.NewGUID(), "alice@contoso.example"
	c := e.cert(t, "oid:"+alice+" upn:"+aliceUPN, aliceUPN, nil, "", e.now.Add(24*time.Hour))
	no := false
	dir := &scriptedDelta{pages: [][]entra.DirectoryChange{{{ID: alice, Enabled: &no}, {ID: alice}}}}
	sw, err := revocation.RevokeDisabledAccounts(context.Background(), e.st, dir, e.now)
	if err != nil || sw.Accounts != 1 || !slices.Equal(serialsOf(sw.Revoked), []string{c.Serial}) {
		t.Fatalf("sweep = %+v, %v; want %s revoked", sw, err, c.Serial)
	}
}
