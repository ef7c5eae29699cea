package tables_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/store/tables"
)

// TestBackupRestore (docs/deployment.md §10): a backup restored into empty tables reads back as the same records,
// revocations and meta documents, with their properties' types (a pending record is found by its creation date, which a
// DateTime copied as a plain string is not in Azure: queries compare only values of one type), and a second restore of the same backup changes nothing, while one into
// tables whose records have moved on stops.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	src := newStore(t)
	ctx := t.Context()
	serial := storetest.NewSerial()
	rec := storetest.FullRecord(serial)
	if err := src.Insert(ctx, rec); err != nil {
		t.Fatal(err)
	}
	revokedAt := time.Date(2026, 12, 7, 5, 9, 56, 304294200, time.UTC)
	if _, err := src.AddRevoked(ctx, store.Revoked{Serial: serial, RevokedAt: revokedAt, Reason: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.PutMeta(ctx, "ca", []byte(`{"chain":["AQID"]}`), ""); err != nil {
		t.Fatal(err)
	}
	want, err := src.Get(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}

	var backup bytes.Buffer
	counts, err := src.Backup(ctx, &backup)
	if err != nil {
		t.Fatal(err)
	}
	if counts[tables.TableCerts] != 1 || counts[tables.TableRevoked] != 1 || counts[tables.TableMeta] != 1 {
		t.Fatalf("backed up %s, want one record, one revocation and the ca document", counts)
	}
	for line := range strings.Lines(backup.String()) {
		var l tables.BackupLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("backup line %q: %v", line, err)
		}
		if _, ok := l.Entity["Timestamp"]; ok || l.Entity["odata.etag"] != nil {
			t.Errorf("backup line keeps the service's own properties: %s", line)
		}
	}

	dst := newStore(t)
	inserted, present, err := dst.Restore(ctx, bytes.NewReader(backup.Bytes()))
	if err != nil || inserted.String() != counts.String() || present.String() != (tables.BackupCounts{}).String() {
		t.Fatalf("restore: inserted %s, present %s, %v; want %s inserted", inserted, present, err, counts)
	}
	got, err := dst.Get(ctx, serial)
	if err != nil {
		t.Fatalf("reading the restored record: %v", err)
	}
	got.ETag, want.ETag = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restored record\n%+v\nwant\n%+v", got, want)
	}
	if p, err := dst.Pending(ctx, time.Now().Add(time.Hour)); err != nil || len(p) != 1 || p[0].Serial != serial {
		t.Errorf("the restored pending record is not found by date: %d records, %v", len(p), err)
	}
	revs, err := dst.ListRevoked(ctx)
	if err != nil || len(revs) != 1 || revs[0].Serial != serial || !revs[0].RevokedAt.Equal(revokedAt) {
		t.Errorf("restored revocations %+v, %v", revs, err)
	}
	if v, _, err := dst.GetMeta(ctx, "ca"); err != nil || string(v) != `{"chain":["AQID"]}` {
		t.Errorf("restored ca document %q, %v", v, err)
	}

	// Again: everything is there already, nothing changes.
	inserted, present, err = dst.Restore(ctx, bytes.NewReader(backup.Bytes()))
	if err != nil || inserted.String() != (tables.BackupCounts{}).String() || present.String() != counts.String() {
		t.Fatalf("second restore: inserted %s, present %s, %v; want all present", inserted, present, err)
	}

	// Tables whose record moved on are not overwritten.
	if got, err = dst.Get(ctx, serial); err != nil {
		t.Fatal(err)
	}
	got.Status = store.StatusIssued
	if err := dst.Update(ctx, got, store.StatusPending); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dst.Restore(ctx, bytes.NewReader(backup.Bytes())); err == nil || !strings.Contains(err.Error(), "other properties") {
		t.Fatalf("restore over a changed record: %v, want a refusal", err)
	}
	if r, err := dst.Get(ctx, serial); err != nil || r.Status != store.StatusIssued {
		t.Fatalf("the changed record is %+v, %v; want it kept", r, err)
	}
}
