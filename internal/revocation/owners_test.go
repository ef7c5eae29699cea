package revocation_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// deviceCert stores, in one write, an issued self-service device certificate of user id for device, recorded as
// created at created: CN = the device ID, and with managed an IntuneDeviceId:// URI too (issued on the managed
// device's answer), as csrapi records them.
func (e *accountsEnv) deviceCert(t *testing.T, id, device string, managed bool, created time.Time) *store.Record {
	t.Helper()
	r := storetest.FullRecord(storetest.NewSerial())
	r.Status, r.CertDER = store.StatusIssued, []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	r.Source, r.Endpoint, r.Profile, r.Requester = store.SourceAPI, "api", "api", "oid:"+id+" upn:u"+id[:8]+"@contoso.example"
	r.Subject, r.SANs, r.DeviceID, r.DeviceObjectID = "CN="+device, nil, device, ""
	if managed {
		r.SANs = []string{"uri:intunedeviceid://" + device}
	}
	r.NotAfter, r.Created = e.now.Add(90*24*time.Hour), created
	r.IntuneSerial, r.CAConfiguration, r.Gated, r.RenewedFrom, r.RenewedTo = "", "", false, "", ""
	if err := e.st.Insert(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

// wantOwnerRevoked fails unless rec is revoked for affiliationChanged by the owner check, naming its requester and
// device.
func (e *accountsEnv) wantOwnerRevoked(t *testing.T, name string, rec *store.Record) {
	t.Helper()
	st, reason, by, ref := e.status(t, rec)
	oid, _, _ := cutOID(rec.Requester)
	want := fmt.Sprintf("Entra account %s no longer owns device %s", oid, rec.DeviceID)
	if st != store.StatusRevoked || reason != revocation.AffiliationChanged || by != revocation.OwnersBy || ref != want {
		t.Errorf("%s: %s (reason %d, by %q, %q), want revoked for affiliationChanged by %s, %q", name, st, reason, by,
			ref, revocation.OwnersBy, want)
	}
}

// wantIssued fails unless each record is still issued.
func (e *accountsEnv) wantIssued(t *testing.T, recs map[string]*store.Record) {
	t.Helper()
	for name, rec := range recs {
		if st, _, by, ref := e.status(t, rec); st != store.StatusIssued {
			t.Errorf("%s: %s by %q (%q), want issued", name, st, by, ref)
		}
	}
}

func cutOID(requester string) (string, string, bool) {
	var oid, rest string
	_, err := fmt.Sscanf(requester, "oid:%s %s", &oid, &rest)
	return oid, rest, err == nil
}

// TestOwnerCheckRevokesDevicesGivenAway: Alice has self-service certificates for her laptop (an Entra device, CN)
// and her phone (an Intune managed device, IntuneDeviceId://), Carol for her tablet. While they own them the hourly
// runs revoke nothing. Then the laptop's registered owner becomes Bob and the phone's primary user Bob: the next run
// revokes Alice's two certificates for affiliationChanged, by the owner check, and nothing else: not Carol's, not
// Alice's user certificate, not one for the laptop issued minutes ago (its owner was read at issuance, and a Graph
// replica may not show a new owner yet), not an expired one, not a device certificate whose device Graph no longer
// has (the device sweeps' to act on).
func TestOwnerCheckRevokesDevicesGivenAway(t *testing.T) {
	backends(t, func(t *testing.T, useTables bool) {
		e := newAccountsEnv(t, useTables)
		alice, upn := e.user(t, "alice")
		bob, _ := e.user(t, "bob")
		carol, _ := e.user(t, "carol")
		laptop, phone, phoneAAD, tablet, gone := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID(),
			entrafake.NewGUID(), entrafake.NewGUID()
		e.g.AddDevice(laptop, alice)
		e.g.AddDevice(phoneAAD, bob) // Bob enrolled it; Alice is its primary user
		e.g.AddManagedDevice(entrafake.ManagedDevice{ID: phone, UserID: alice, AzureADDeviceID: phoneAAD})
		e.g.AddDevice(tablet, carol)
		e.g.AddDevice(gone, alice)
		day := e.now.Add(-24 * time.Hour)
		laptopCert := e.deviceCert(t, alice, laptop, false, day)
		phoneCert := e.deviceCert(t, alice, phone, true, day)
		kept := map[string]*store.Record{
			"carol's tablet": e.deviceCert(t, carol, tablet, false, day),
			"alice's user certificate": e.cert(t, "oid:"+alice+" upn:"+upn, upn, []string{"upn:" + upn}, "",
				e.now.Add(time.Hour)),
			"the laptop's new certificate": e.deviceCert(t, alice, laptop, false, e.now.Add(-time.Minute)),
			"a deleted device's":           e.deviceCert(t, alice, gone, false, day),
		}
		expired := e.deviceCert(t, alice, laptop, false, day.Add(-time.Hour))
		expired.NotAfter = e.now.Add(-time.Minute)
		if err := e.st.Update(context.Background(), expired, store.StatusIssued); err != nil {
			t.Fatal(err)
		}
		kept["an expired one"] = expired

		sw := e.sweepBoth()
		if sw.OwnersErr != nil || !sw.Owners.Cycled || len(sw.Owners.Revoked) != 0 || sw.Owners.Checked != 4 {
			t.Fatalf("first run = %+v, %v; want 4 questions, nothing revoked, the cycle done", sw.Owners, sw.OwnersErr)
		}
		e.wantIssued(t, map[string]*store.Record{"laptop": laptopCert, "phone": phoneCert})

		e.g.SetOwners(laptop, bob)
		e.g.SetPrimaryUser(phone, bob)
		e.g.DeleteDevice(gone)
		sw = e.sweepBoth()
		if sw.OwnersErr != nil || !sw.Owners.Cycled || sw.Owners.NotOwned != 2 || sw.Owners.Unknown != 1 ||
			!slices.Equal(serialsOf(sw.Owners.Revoked), serialsOf([]*store.Record{laptopCert, phoneCert})) {
			t.Fatalf("run after the devices changed hands = %+v, %v; want the laptop's and the phone's revoked",
				sw.Owners, sw.OwnersErr)
		}
		e.wantOwnerRevoked(t, "laptop", laptopCert)
		e.wantOwnerRevoked(t, "phone", phoneCert)
		e.wantIssued(t, kept)
		if sw = e.sweepBoth(); len(sw.Owners.Revoked) != 0 || sw.OwnersErr != nil {
			t.Fatalf("a further run = %+v, %v; want nothing revoked", sw.Owners, sw.OwnersErr)
		}
	})
}

// TestOwnerCheckGraphFailuresRevokeNothing: while Graph refuses (403), throttles (429, after its Retry-After) or
// fails (500, 503) the ownership questions, a run revokes nothing, counts the questions it could not ask and says
// why, and the other certificates are still checked; the next cycle, Graph answering, revokes the certificate of the
// device given away.
func TestOwnerCheckGraphFailuresRevokeNothing(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			backends(t, func(t *testing.T, useTables bool) {
				e := newAccountsEnv(t, useTables)
				alice, _ := e.user(t, "alice")
				bob, _ := e.user(t, "bob")
				laptop, desk := entrafake.NewGUID(), entrafake.NewGUID()
				e.g.AddDevice(laptop, bob)
				e.g.AddDevice(desk, bob)
				day := e.now.Add(-24 * time.Hour)
				laptopCert := e.deviceCert(t, alice, laptop, false, day)
				deskCert := e.deviceCert(t, alice, desk, false, day)
				e.g.SetFault(entrafake.Fault{Status: status, RetryAfter: "0",
					Path: "/v1.0/devices(deviceId='" + laptop + "')/registeredOwners"})
				sw := e.sweepBoth()
				if sw.Owners.Failed != 1 || sw.Owners.FirstFailure == nil || !sw.Owners.Cycled ||
					!slices.Equal(serialsOf(sw.Owners.Revoked), []string{deskCert.Serial}) {
					t.Fatalf("run with Graph answering %d for the laptop = %+v; want that question failed, the desk's revoked",
						status, sw.Owners)
				}
				e.wantIssued(t, map[string]*store.Record{"laptop": laptopCert})
				e.g.SetFault(entrafake.Fault{})
				sw = e.sweepBoth()
				if sw.Owners.Failed != 0 || !slices.Equal(serialsOf(sw.Owners.Revoked), []string{laptopCert.Serial}) {
					t.Fatalf("next run = %+v; want the laptop's revoked", sw.Owners)
				}
				e.wantOwnerRevoked(t, "laptop", laptopCert)
			})
		})
	}
}

// TestOwnerCheckBoundedPerRun: a tenant with more self-service device certificates than one run may ask about. The
// first run asks MaxOwnerChecks questions, never more than LookupConcurrency at a time, and leaves the cycle for the
// next run. Every device then changes hands: the second run goes on from the cursor, asks only about the rest and
// revokes those, ending the cycle; the third begins a new cycle and revokes the certificates the first run had
// found still owned. No certificate is left valid, none revoked twice.
func TestOwnerCheckBoundedPerRun(t *testing.T) {
	e := newAccountsEnv(t, false)
	owner, heir := entrafake.NewGUID(), entrafake.NewGUID()
	extra := 30
	var devices []string
	recs := map[string]*store.Record{}
	for range revocation.MaxOwnerChecks + extra {
		d := entrafake.NewGUID()
		e.g.AddDevice(d, owner)
		devices = append(devices, d)
		recs[d] = e.deviceCert(t, owner, d, false, e.now.Add(-24*time.Hour))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sw, err := revocation.CheckDeviceOwners(ctx, e.st, e.dir, e.now)
	if err != nil || sw.Checked != revocation.MaxOwnerChecks || !sw.Left || sw.Cycled || len(sw.Revoked) != 0 {
		t.Fatalf("first run = %+v, %v; want %d questions, the cycle left for the next run", sw, err,
			revocation.MaxOwnerChecks)
	}
	if got := e.g.MaxInFlight(); got > revocation.LookupConcurrency {
		t.Errorf("Graph saw up to %d requests at once, want at most %d", got, revocation.LookupConcurrency)
	}
	for _, d := range devices {
		e.g.SetOwners(d, heir)
	}
	seen := map[string]bool{}
	sw, err = revocation.CheckDeviceOwners(ctx, e.st, e.dir, e.now)
	if err != nil || sw.Checked != extra || sw.Left || !sw.Cycled || len(sw.Revoked) != extra {
		t.Fatalf("second run = %+v, %v; want the other %d asked about and revoked, the cycle done", sw, err, extra)
	}
	for _, r := range sw.Revoked {
		seen[r.Serial] = true
	}
	sw, err = revocation.CheckDeviceOwners(ctx, e.st, e.dir, e.now)
	if err != nil || sw.Checked != revocation.MaxOwnerChecks || len(sw.Revoked) != revocation.MaxOwnerChecks {
		t.Fatalf("third run = %+v, %v; want a new cycle revoking the first run's %d", sw, err, revocation.MaxOwnerChecks)
	}
	for _, r := range sw.Revoked {
		if seen[r.Serial] {
			t.Errorf("%s revoked twice", r.Serial)
		}
		seen[r.Serial] = true
	}
	for d, rec := range recs {
		if !seen[rec.Serial] {
			t.Errorf("the certificate of device %s was not revoked", d)
		}
	}
}

// TestOwnerCheckCrashAtEachWrite: the process dies at each write of an owner check in turn (the write made or not,
// its answer lost), over three search pages of certificates whose devices changed hands and some still owned: the
// revocations and the cursor after each page. The runs after it end the cycle with exactly the given-away devices'
// certificates revoked, none reported twice, the owned ones kept.
func TestOwnerCheckCrashAtEachWrite(t *testing.T) {
	for _, commit := range []bool{false, true} {
		for n := 1; ; n++ {
			e := newAccountsEnv(t, false)
			alice, bob := entrafake.NewGUID(), entrafake.NewGUID()
			gave, kept := map[string]bool{}, map[string]*store.Record{}
			for i := range 120 {
				d := entrafake.NewGUID()
				owner := alice
				if i%20 == 7 {
					owner = bob
				}
				e.g.AddDevice(d, owner)
				rec := e.deviceCert(t, alice, d, false, e.now.Add(-24*time.Hour))
				if owner == alice {
					kept[d] = rec
				} else {
					gave[rec.Serial] = true
				}
			}
			f, ctx, cancel := crashAtWrite(e.st, n, commit)
			sw, _ := revocation.CheckDeviceOwners(ctx, f, e.dir, e.now)
			cancel()
			if f.Writes() < n {
				if n < 10 {
					t.Fatalf("a check makes only %d writes", f.Writes())
				}
				break
			}
			t.Run(fmt.Sprintf("write%d-commit%t", n, commit), func(t *testing.T) {
				reported := map[string]bool{}
				report := func(recs []*store.Record) {
					for _, r := range recs {
						if reported[r.Serial] {
							t.Errorf("%s reported revoked twice", r.Serial)
						}
						reported[r.Serial] = true
					}
				}
				report(sw.Revoked)
				for run := 0; ; run++ {
					if run == 5 {
						t.Fatal("five runs after the crash did not end the cycle")
					}
					sw, err := revocation.CheckDeviceOwners(context.Background(), e.st, e.dir, e.now)
					report(sw.Revoked)
					if err == nil && sw.Cycled {
						break
					}
				}
				for serial := range gave {
					got, err := e.st.Get(context.Background(), serial)
					if err != nil || got.Status != store.StatusRevoked || got.RevokedBy != revocation.OwnersBy {
						t.Errorf("%s: %v, want revoked by the owner check", serial, recordOf(got, err))
					}
				}
				for serial := range reported {
					if !gave[serial] {
						t.Errorf("%s reported revoked, but its device is still the requester's", serial)
					}
				}
				e.wantIssued(t, kept)
			})
		}
	}
}

func recordOf(r *store.Record, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s by %q", r.Status, r.RevokedBy)
}
