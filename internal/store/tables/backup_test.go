package tables_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
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
	// A key's backlog counts the last hour's Intune requests: it stays out of the backup.
	if err := src.PutBacklog(ctx, &store.Backlog{PublicKey: strings.Repeat("c", 64),
		Reservations: []store.Reservation{{Serial: serial, At: revokedAt}}}); err != nil {
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
		t.Fatalf("backed up %s, want one record, one revocation and the ca document (no backlog)", counts)
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

// insertRecorder records, in order, the table and RowKey of every entity inserted through it.
type insertRecorder struct {
	mu      sync.Mutex
	inserts []string
}

func (r *insertRecorder) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.mu.Lock()
		if strings.HasSuffix(req.URL.Path, "$batch") {
			// Each operation of a transaction is an HTTP request in the body: "POST <table URL> HTTP/1.1", its
			// headers, then the entity on one line.
			table := ""
			for line := range strings.Lines(string(body)) {
				if f := strings.Fields(line); len(f) == 3 && f[0] == http.MethodPost {
					table = path.Base(f[1])
				}
				var e struct{ RowKey string }
				if json.Unmarshal([]byte(line), &e) == nil && e.RowKey != "" {
					r.inserts = append(r.inserts, table+"/"+e.RowKey)
				}
			}
		} else {
			var e struct{ RowKey string }
			_ = json.Unmarshal(body, &e)
			r.inserts = append(r.inserts, path.Base(req.URL.Path)+"/"+e.RowKey)
		}
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestRestoreWritesTheCALast: a waiting instance serves as soon as the CA's documents (meta ca and ra) are there, so
// a restore writes them after every record, revocation and other document, lest the CA answer from half a record.
func TestRestoreWritesTheCALast(t *testing.T) {
	t.Parallel()
	src := newStore(t)
	ctx := t.Context()
	for _, name := range []string{"ca", "crl-number", "ra", "revocation-generation"} {
		if _, err := src.PutMeta(ctx, name, []byte(name), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.AddRevoked(ctx, store.Revoked{Serial: storetest.NewSerial(), RevokedAt: time.Now(), Reason: 1}); err != nil {
		t.Fatal(err)
	}
	if err := src.Insert(ctx, storetest.FullRecord(storetest.NewSerial())); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if _, err := src.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	rec := &insertRecorder{}
	dst, err := tables.NewFromConnectionString(azuritetest.ConnectionString(t), "", tables.WithTransport(rec))
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.inserts = nil // EnsureTables' own
	rec.mu.Unlock()
	if _, _, err := dst.Restore(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	got := rec.inserts
	if n := len(got); n < 4 || !strings.HasSuffix(got[n-2], "meta/ca") || !strings.HasSuffix(got[n-1], "meta/ra") {
		t.Fatalf("restore inserted %v; want meta ca and ra last", got)
	}
}

// TestRestoreInTransactions: a restore inserts the entities of one partition in entity-group transactions of up to
// 100, not one call each (a CA of 100,000 certificates restores in about 1,000 calls), and a restore that stopped
// half-way, run again, still tells the entities already there from those it inserts.
func TestRestoreInTransactions(t *testing.T) {
	t.Parallel()
	src := newStore(t)
	ctx := t.Context()
	const records = 250
	for range records {
		if err := src.Insert(ctx, storetest.FullRecord(storetest.NewSerial())); err != nil {
			t.Fatal(err)
		}
	}
	var backup bytes.Buffer
	counts, err := src.Backup(ctx, &backup)
	if err != nil {
		t.Fatal(err)
	}
	entities := counts[tables.TableCerts] // the records and the bindings of their idempotency keys, if any
	if entities < records {
		t.Fatalf("backed up %s, want at least %d certs entities", counts, records)
	}

	log := &requestLog{}
	dst := newStore(t, tables.WithTransport(log))
	log.take() // EnsureTables' calls
	inserted, present, err := dst.Restore(ctx, bytes.NewReader(backup.Bytes()))
	if err != nil || inserted[tables.TableCerts] != entities || len(present) != 0 {
		t.Fatalf("restore: inserted %s, present %s, %v; want %d certs entities inserted", inserted, present, err, entities)
	}
	calls := log.take()
	if max := (entities + 99) / 100; len(calls) > max {
		t.Errorf("restoring %d entities took %d calls, want at most %d (transactions of 100): %v", entities, len(calls), max, calls[:min(len(calls), 5)])
	}
	var copied bytes.Buffer
	if _, err := dst.Backup(ctx, &copied); err != nil || copied.String() != backup.String() {
		t.Errorf("a backup of the restored tables differs from the one restored (%v)", err)
	}

	// A restore that stopped after 150 entities, run again with the whole backup.
	var part bytes.Buffer
	n := 0
	for line := range strings.Lines(backup.String()) {
		if n == 150 {
			break
		}
		part.WriteString(line)
		n++
	}
	again := newStore(t)
	if _, _, err := again.Restore(ctx, &part); err != nil {
		t.Fatal(err)
	}
	inserted, present, err = again.Restore(ctx, bytes.NewReader(backup.Bytes()))
	if err != nil || inserted[tables.TableCerts] != entities-150 || present[tables.TableCerts] != 150 {
		t.Fatalf("restore after a stop: inserted %s, present %s, %v; want %d inserted and 150 present", inserted, present, err, entities-150)
	}
}
