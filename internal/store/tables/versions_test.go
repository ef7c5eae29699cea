package tables

import (
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/storetest"
)

// newerProps are properties a newer version adds to an entity: one of each type the service keeps.
func newerProps(pk, rk string, at time.Time) entity {
	e := newEntity(pk, rk)
	e.str("Attestation", "tpm-2.0")
	e.time("AttestedAt", at)
	e.binary("AttestationBlob", []byte{1, 2, 3})
	e.set("Generation", "9000000000")
	e.set("Generation@odata.type", "Edm.Int64")
	e.boolean("Escrowed", true)
	return e
}

// addNewer merges the newer version's properties into the entity pk/rk, as an instance of that version would.
func addNewer(t *testing.T, c *aztables.Client, e entity) {
	t.Helper()
	any := azcore.ETagAny
	if _, err := c.UpdateEntity(t.Context(), mustMarshal(t, e), &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeMerge, IfMatch: &any}); err != nil {
		t.Fatal(err)
	}
}

// checkNewer fails unless the entity pk/rk still holds the newer version's properties, with their types.
func checkNewer(t *testing.T, s *Store, c *aztables.Client, pk, rk, after string, at time.Time) {
	t.Helper()
	p, _, err := s.read(t.Context(), c, "reading", pk, rk)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	if p.str("Attestation") != "tpm-2.0" {
		missing = append(missing, "Attestation")
	}
	if v, ok := p["AttestedAt"].(aztables.EDMDateTime); !ok || !time.Time(v).Equal(at) {
		missing = append(missing, "AttestedAt")
	}
	if v, ok := p["AttestationBlob"].(aztables.EDMBinary); !ok || string(v) != "\x01\x02\x03" {
		missing = append(missing, "AttestationBlob")
	}
	if v, ok := p["Generation"].(aztables.EDMInt64); !ok || v != 9000000000 {
		missing = append(missing, "Generation")
	}
	if !p.boolean("Escrowed") {
		missing = append(missing, "Escrowed")
	}
	if len(missing) > 0 {
		t.Errorf("after %s, the properties a newer version added are lost or changed: %s", after, strings.Join(missing, ", "))
	}
}

// While a deployment rolls (and after a rollback), instances of two versions write the same tables. A record or a
// revocation request an instance of a newer version gave a property this version does not know keeps it when this
// version moves the record (pending → issued → revoked, an in-state update) or the request: a replace of the whole
// entity would drop it. What this version clears (a note, the gate, an error message) is still cleared.
func TestUpdatesKeepNewerVersionsProperties(t *testing.T) {
	t.Parallel()
	s := newInternalStore(t)
	ctx := t.Context()
	at := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)

	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	pk, rk := recordKeys(r.Serial)
	addNewer(t, s.certs, newerProps(pk, rk, at))
	cur, err := s.Get(ctx, r.Serial)
	if err != nil {
		t.Fatal(err)
	}
	cur.Status, cur.CertDER, cur.Note, cur.Gated = store.StatusIssued, []byte{0x30, 0x03, 0x02, 0x01, 0x01}, "", false
	if err := s.Update(ctx, cur, store.StatusPending); err != nil {
		t.Fatal(err)
	}
	checkNewer(t, s, s.certs, pk, rk, "the issued update", at)
	got, err := s.Get(ctx, r.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if d := storetest.DiffRecords(got, cur); d != nil {
		t.Errorf("the issued update was not stored as written:\n%s", strings.Join(d, "\n"))
	}
	got.IntuneNotified, got.SANs = true, nil
	if err := s.Update(ctx, got, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	checkNewer(t, s, s.certs, pk, rk, "an in-state update", at)
	got.Status, got.RevokedAt, got.RevocationReason, got.RevokedBy = store.StatusRevoked, at, 1, "admin:x"
	if err := s.Update(ctx, got, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	checkNewer(t, s, s.certs, pk, rk, "the revocation", at)
	if final, err := s.Get(ctx, r.Serial); err != nil || storetest.DiffRecords(final, got) != nil {
		t.Errorf("the revocation was not stored as written: %v %v", err, storetest.DiffRecords(final, got))
	}

	q := &store.RevocationRequest{RequestContext: "ctx-1", SerialNumber: r.Serial, ErrorMessage: "busy"}
	if err := s.EnqueueRevocation(ctx, q); err != nil {
		t.Fatal(err)
	}
	addNewer(t, s.revreq, newerProps(revreqPK, hashHex(q.RequestContext), at))
	open, err := s.OpenRevocations(ctx, 0)
	if err != nil || len(open) != 1 {
		t.Fatalf("OpenRevocations = %v, %v", open, err)
	}
	q = open[0]
	q.State, q.Succeeded, q.ErrorMessage, q.Applied = store.WorkApplied, true, "", at
	if err := s.UpdateRevocation(ctx, q); err != nil {
		t.Fatal(err)
	}
	checkNewer(t, s, s.revreq, revreqPK, hashHex(q.RequestContext), "a revocation request's update", at)
	p, _, err := s.read(ctx, s.revreq, "reading", revreqPK, hashHex(q.RequestContext))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeRequest(p, ""); err != nil || got.ErrorMessage != "" || got.State != store.WorkApplied || !got.Succeeded {
		t.Errorf("the request's update was not stored as written: %+v, %v", got, err)
	}
}

// A backup taken with this version's CLI of tables an older version still writes in its layouts (docs/deployment.md
// §10) restores into a working CA: opening the store for the backup carries the older entities into the certs
// partition first, so the backup holds the copies, and the restored tables answer for every record and binding
// without depending on a start of the app within the layout upgrade's re-check day.
func TestBackupOfOlderLayoutsRestores(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	src, err := NewFromConnectionString(azuritetest.ConnectionString(t), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(src.TableNames(), strings.TrimSuffix(src.TableNames()[0], TableCerts)+tableIndex) {
		if _, err := src.svc.CreateTable(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The older version's entities: a record of the first layout with its binding in the index table, and a record
	// of the second layout with its binding beside it.
	rec := func(pk, rk string) entity {
		e := newEntity(pk, rk)
		e.str("Status", string(store.StatusIssued))
		e.str("Subject", "CN=old")
		e.binary("CertDER", []byte{0x30, 0x03, 0x02, 0x01, 0x01})
		e.time("Created", at)
		return e
	}
	bind := func(pk, rk, key, serial string) entity {
		e := newEntity(pk, rk)
		e.str("Key", key)
		e.str("Serial", serial)
		e.time("Created", at)
		return e
	}
	index := src.svc.NewClient(strings.TrimSuffix(src.TableNames()[0], TableCerts) + tableIndex)
	firstKey, secondKey := "scep|intune|tx-1", "api|user|retry-1"
	h1, h2 := hashHex(firstKey), hashHex(secondKey)
	for _, w := range []struct {
		c *aztables.Client
		e entity
	}{
		{src.certs, rec("5CAB12", oldRecordRow)},
		{index, bind(h1[:2], h1, firstKey, "5CAB12")},
		{src.certs, rec("13", "ABC13")},
		{src.certs, bind(strings.ToUpper(h2[:2]), bindingRowPrefix+h2, secondKey, "ABC13")},
	} {
		if _, err := src.add(ctx, w.c, "older version", w.e); err != nil {
			t.Fatal(err)
		}
	}

	// azscep backup opens the store as every start does.
	if err := src.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	var backup strings.Builder
	if _, err := src.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	conn := azuritetest.ConnectionString(t)
	dst, err := NewFromConnectionString(conn, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dst.Restore(ctx, strings.NewReader(backup.String())); err != nil {
		t.Fatal(err)
	}
	// The app starts on the restored tables two days later: past the re-check day, the upgrade does not look again.
	later, err := NewFromConnectionString(conn, "", WithClock(func() time.Time { return time.Now().Add(48 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := later.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	for _, serial := range []string{"5CAB12", "ABC13"} {
		if r, err := later.Get(ctx, serial); err != nil || r.Status != store.StatusIssued || len(r.CertDER) != 5 {
			t.Errorf("restored record %s: %+v, %v", serial, r, err)
		}
	}
	for key, serial := range map[string]string{firstKey: "5CAB12", secondKey: "ABC13"} {
		if b, err := later.Lookup(ctx, key); err != nil || b.Serial != serial {
			t.Errorf("restored binding %q: %+v, %v; want %s", key, b, err, serial)
		}
	}
}

// Revocation index entries written before the index kept the certificate's notAfter (until 2026-12-06 09:38), and
// any with reason unspecified (0, never written), are listed for the CRL with those fields zero: the listing's $select
// names columns such entries lack, which the service answers as null.
func TestOlderRevocationEntriesList(t *testing.T) {
	t.Parallel()
	s := newInternalStore(t)
	ctx := t.Context()
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	old := newEntity(revokedPK, "5CAB12")
	old.time("RevokedAt", at)
	if _, err := s.add(ctx, s.revoked, "older version", old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRevoked(ctx, store.Revoked{Serial: "6DBC23", RevokedAt: at, Reason: 1, NotAfter: at.AddDate(1, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListRevoked(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("ListRevoked = %+v, %v", got, err)
	}
	if got[0].Serial != "5CAB12" || !got[0].RevokedAt.Equal(at) || got[0].Reason != 0 || !got[0].NotAfter.IsZero() {
		t.Errorf("an older entry lists as %+v", got[0])
	}
	if got[1].Serial != "6DBC23" || got[1].Reason != 1 || !got[1].NotAfter.Equal(at.AddDate(1, 0, 0)) {
		t.Errorf("a current entry lists as %+v", got[1])
	}
	if r, err := s.GetRevoked(ctx, "5CAB12"); err != nil || !r.NotAfter.IsZero() || !r.RevokedAt.Equal(at) {
		t.Errorf("GetRevoked of an older entry = %+v, %v", r, err)
	}
}
