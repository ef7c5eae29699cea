package revocation_test

import (
	"context"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// TestRevokeDisabledCursorIsTheScanOfItsSets: a round of the accounts and the devices, whose scan the first run
// leaves after its first page. The next run cannot read the devices' document (the store fails that one read), so
// it carries on the accounts' round alone, to the end. The scan it made looked for the accounts only: the run that
// then takes up the devices' round must not take the cursor that scan left for its own, or it would end the round
// (move the devices' link past the laptop) without having looked at the pages where the laptop's certificate is.
func TestRevokeDisabledCursorIsTheScanOfItsSets(t *testing.T) {
	e := newAccountsEnv(t, false)
	later := e.now.Add(90 * 24 * time.Hour)
	alice, carol, dave := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	laptop, laptopObj := entrafake.NewGUID(), entrafake.NewGUID()
	off := false
	dir := &fixedDir{
		users:   []entra.DirectoryChange{{ID: alice, Enabled: &off}},
		devices: []entra.DirectoryChange{{ID: laptopObj, DeviceID: laptop, Enabled: &off}},
	}
	e.issued(t, "oid:"+alice+" upn:alice@contoso.example", "alice@contoso.example", nil, "", "", later)
	for range 420 {
		e.issued(t, "oid:"+carol+" upn:carol@contoso.example", "carol@contoso.example", nil, "", "", later)
	}
	// The laptop's certificate comes last in the scan (the store lists by serial), past the first page.
	dev := storetest.FullRecord(store.SerialString(new(big.Int).SetBytes([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})))
	dev.Status, dev.CertDER = store.StatusIssued, []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	dev.Source, dev.Endpoint, dev.Profile, dev.Requester = store.SourceAPI, "api", "api", "oid:"+dave+" upn:dave@contoso.example"
	dev.Subject, dev.SANs, dev.DeviceID, dev.DeviceObjectID = "CN="+laptop, nil, laptop, laptopObj
	dev.NotAfter = later
	dev.IntuneSerial, dev.CAConfiguration, dev.Gated, dev.RenewedFrom, dev.RenewedTo = "", "", false, "", ""
	if err := e.st.Insert(context.Background(), dev); err != nil {
		t.Fatal(err)
	}

	// Run 1: both deltas read, the round kept for both, one search page scanned.
	var first revocation.DisabledSweep
	boundedRun(t, e.st, 1, func(ctx context.Context, st store.Store) {
		first = revocation.RevokeDisabled(ctx, st, dir, e.now)
	})
	if !first.ScanLeft {
		t.Fatalf("first run = %+v; want its scan left after a page", first)
	}
	for _, doc := range []string{"entra-users-delta", "entra-devices-delta"} {
		if _, inRound := deltaState(t, e.st, doc); !inRound {
			t.Fatalf("after the first run %s keeps no round", doc)
		}
	}

	// Run 2: the devices' document cannot be read (the third GetMeta: the list of passed-over records is read
	// first, to adopt what an earlier build's cursors passed over, then the users' document); the accounts' round
	// goes on alone and ends.
	f := storetest.NewFaultStore(e.st)
	f.Inject(storetest.Fault{Method: storetest.MethodGetMeta, Nth: 3})
	second := revocation.RevokeDisabled(context.Background(), f, dir, e.now)
	if second.DevicesErr == nil {
		t.Fatalf("second run = %+v; want the devices' part failed", second)
	}
	if _, inRound := deltaState(t, e.st, "entra-users-delta"); inRound {
		t.Fatalf("second run = %+v; want the accounts' round ended", second)
	}

	// Run 3: the devices' round is taken up. Whenever it ends, the laptop's certificate is revoked.
	third := revocation.RevokeDisabled(context.Background(), e.st, dir, e.now)
	if link, inRound := deltaState(t, e.st, "entra-devices-delta"); inRound || link != "round1" {
		t.Fatalf("third run = %+v; devices link %q, round kept %t: want the round ended", third, link, inRound)
	}
	got, err := e.st.Get(context.Background(), dev.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusRevoked || got.RevokedBy != revocation.DevicesBy {
		t.Errorf("the devices' round ended with the laptop's certificate %s (by %q): the scan of the pages past the "+
			"first one never looked for the laptop", got.Status, got.RevokedBy)
	}
}

// TestRevokeDisabledDoneScanEndsTheOtherRound: a run scans to the end for the accounts and the devices but cannot
// write the devices' round's end (the last write fails). The next run takes that round up alone: the scan done for
// both is done for the devices, so it ends the round without searching again.
func TestRevokeDisabledDoneScanEndsTheOtherRound(t *testing.T) {
	sc := newScanScene(t, false, 2, 20)
	first := revocation.RevokeDisabled(context.Background(), failRoundEnd{sc.e.st, "entra-devices-delta"}, sc.dir, sc.e.now)
	if first.DevicesErr == nil || first.AccountsErr != nil || first.ScanLeft {
		t.Fatalf("first run = %+v; want the scan done, only the devices' end failed", first)
	}
	if _, inRound := deltaState(t, sc.e.st, "entra-devices-delta"); !inRound {
		t.Fatal("the devices' round ended although its write failed")
	}
	g := storetest.NewFaultStore(sc.e.st)
	second := revocation.RevokeDisabled(context.Background(), g, sc.dir, sc.e.now)
	if second.DevicesErr != nil || !second.Devices.Resumed || !second.Devices.Saved {
		t.Fatalf("second run = %+v; want the devices' round ended", second)
	}
	if n := g.Calls(storetest.MethodSearch); n != 0 {
		t.Errorf("second run searched %d pages; the scan for both was done", n)
	}
	sc.check(t, [][]*store.Record{first.Accounts.Revoked, first.Devices.Revoked, second.Accounts.Revoked,
		second.Devices.Revoked})
}

// failRoundEnd fails the write of doc that ends its round (a document with no round in it).
type failRoundEnd struct {
	store.Store
	doc string
}

func (f failRoundEnd) PutMeta(ctx context.Context, name string, raw []byte, etag string) (string, error) {
	if name == f.doc && !strings.Contains(string(raw), `"round"`) {
		return "", store.ErrUnavailable
	}
	return f.Store.PutMeta(ctx, name, raw, etag)
}
