package tables

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
)

// Backup and restore of the five tables (`azscep backup`, `azscep restore`). A backup is JSON lines, one entity
// each: {"table":"certs","entity":{...}}, the table named without the prefix, the entity as the service returned it
// with its @odata.type annotations. The records depend on those types (Edm.DateTime, Edm.Binary, Edm.Int64): a copy
// that keeps only the values, as a generic export does (az storage entity query writes a DateTime as a plain
// string), restores dates as strings, which Table Storage's date queries (pending records, the admin API's
// since/until) do not compare with a datetime.

// BackupLine is one line of a backup.
type BackupLine struct {
	Table  string                     `json:"table"`
	Entity map[string]json.RawMessage `json:"entity"`
}

// BackupCounts is the number of entities per table (without prefix) a backup or restore handled.
type BackupCounts map[string]int

func (c BackupCounts) String() string {
	var parts []string
	for _, t := range []string{TableCerts, TableRevoked, TableMeta, TableRevReq, TableRuns} {
		parts = append(parts, fmt.Sprintf("%s %d", t, c[t]))
	}
	return strings.Join(parts, ", ")
}

// backupSkipped says whether an entity stays out of a backup and a restore: the layout-upgrade mark belongs to the
// account it was written in (EnsureTables writes a fresh one into the account restored to), and the per-key
// backlogs (backlogPK) count signatures of the last hour, which a restore has no use for.
func backupSkipped(table string, e map[string]json.RawMessage) bool {
	var pk, rk string
	_ = json.Unmarshal(e["PartitionKey"], &pk)
	_ = json.Unmarshal(e["RowKey"], &rk)
	return table == TableMeta && (rk == layoutDoc || pk == backlogPK)
}

// cleanEntity drops what the service adds to an entity and would refuse or ignore on insert: the odata.*
// annotations of the entity itself and the Timestamp.
func cleanEntity(e map[string]json.RawMessage) {
	for k := range e {
		if strings.HasPrefix(k, "odata.") || k == "Timestamp" || k == "Timestamp@odata.type" {
			delete(e, k)
		}
	}
}

// Backup writes every entity of the five tables to w as JSON lines.
func (s *Store) Backup(ctx context.Context, w io.Writer) (BackupCounts, error) {
	counts := BackupCounts{}
	enc := json.NewEncoder(w)
	for _, t := range []struct {
		name string
		c    *aztables.Client
	}{{TableCerts, s.certs}, {TableRevoked, s.revoked}, {TableMeta, s.meta}, {TableRevReq, s.revreq}, {TableRuns, s.runs}} {
		err := s.listRaw(ctx, t.c, "backing up "+t.name, &aztables.ListEntitiesOptions{}, func(raw []byte) (bool, error) {
			var e map[string]json.RawMessage
			if err := json.Unmarshal(raw, &e); err != nil {
				return false, fmt.Errorf("decoding an entity: %w", err)
			}
			cleanEntity(e)
			if backupSkipped(t.name, e) {
				return true, nil
			}
			if err := enc.Encode(BackupLine{Table: t.name, Entity: e}); err != nil {
				return false, fmt.Errorf("writing the backup: %w", err)
			}
			counts[t.name]++
			return true, nil
		})
		if err != nil {
			return counts, err
		}
	}
	return counts, nil
}

// caDocs are the meta documents a waiting instance looks for (custody: the public chain, the RA envelope): the CA
// serves once they are there, so Restore writes them after everything else, lest it serve from half a record.
var caDocs = map[string]bool{"ca": true, "ra": true}

// Restore inserts every entity of a backup read from r into the five tables. It only inserts: an entity that exists
// already with the same properties is skipped (a restore that stopped half-way can be run again); one that exists
// with other properties stops the restore, since the tables are the CA's record and this one has moved on (restore
// into the tables of a CA that has not served yet). The CA's own documents go in last (caDocs). It returns the
// entities inserted and those already present.
//
// Consecutive entities of one partition go in as one entity-group transaction of up to restoreBatch entities
// (every record shares the certs partition), so a CA of 100,000 certificates restores in about 1,000 calls rather
// than 100,000. A transaction that meets an entity already there is redone one entity at a time, which tells the
// present from the changed.
func (s *Store) Restore(ctx context.Context, r io.Reader) (inserted, present BackupCounts, err error) {
	inserted, present = BackupCounts{}, BackupCounts{}
	var last []BackupLine
	b := restoreBatcher{s: s, inserted: inserted, present: present}
	dec := json.NewDecoder(r)
	for n := 1; ; n++ {
		var line BackupLine
		if err := dec.Decode(&line); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return inserted, present, fmt.Errorf("tables: restore: entity %d of the backup: %w", n, err)
		}
		var rk string
		_ = json.Unmarshal(line.Entity["RowKey"], &rk)
		if line.Table == TableMeta && caDocs[rk] {
			last = append(last, line)
			continue
		}
		if err := b.add(ctx, n, line); err != nil {
			return inserted, present, fmt.Errorf("tables: restore: %w", err)
		}
	}
	if err := b.flush(ctx); err != nil {
		return inserted, present, fmt.Errorf("tables: restore: %w", err)
	}
	for _, line := range last {
		if err := s.restoreOne(ctx, line, inserted, present); err != nil {
			return inserted, present, fmt.Errorf("tables: restore: %w", err)
		}
	}
	return inserted, present, nil
}

// restoreBatch and restoreBatchBytes bound one restore transaction: Table Storage takes up to 100 operations and
// 4 MiB per entity-group transaction. A hundred usual records are some 500 KB; the byte bound, well under the
// service's, binds only for records full of names, and keeps one transaction within the store's 5-second try on
// an operator's link of a few Mbit/s.
const (
	restoreBatch      = 100
	restoreBatchBytes = 1 << 20
)

// restoreBatcher gathers consecutive backup lines of one table and partition into transactions.
type restoreBatcher struct {
	s                 *Store
	inserted, present BackupCounts
	table, pk         string
	lines             []BackupLine
	ns                []int // the lines' numbers in the backup
	actions           []aztables.TransactionAction
	bytes             int
}

// add queues backup line n, submitting the queue first when the line belongs elsewhere or would overfill it.
func (b *restoreBatcher) add(ctx context.Context, n int, line BackupLine) error {
	var pk, rk string
	if json.Unmarshal(line.Entity["PartitionKey"], &pk) != nil || json.Unmarshal(line.Entity["RowKey"], &rk) != nil {
		return fmt.Errorf("entity %d of the backup: no PartitionKey or RowKey", n)
	}
	if b.s.restoreClient(line.Table) == nil {
		return fmt.Errorf("entity %d of the backup: unknown table %q", n, line.Table)
	}
	cleanEntity(line.Entity)
	if backupSkipped(line.Table, line.Entity) {
		return nil
	}
	raw, err := json.Marshal(line.Entity)
	if err != nil {
		return fmt.Errorf("entity %d of the backup: %w", n, err)
	}
	if len(b.lines) > 0 && (line.Table != b.table || pk != b.pk || len(b.lines) == restoreBatch ||
		b.bytes+len(raw) > restoreBatchBytes) {
		if err := b.flush(ctx); err != nil {
			return err
		}
	}
	b.table, b.pk = line.Table, pk
	b.lines, b.ns = append(b.lines, line), append(b.ns, n)
	b.actions = append(b.actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: raw})
	b.bytes += len(raw)
	return nil
}

// flush inserts the queued entities in one transaction, or one at a time when some are there already.
func (b *restoreBatcher) flush(ctx context.Context) error {
	if len(b.lines) == 0 {
		return nil
	}
	lines, ns, actions := b.lines, b.ns, b.actions
	b.lines, b.ns, b.actions, b.bytes = nil, nil, nil, 0
	what := fmt.Sprintf("entities %d to %d of the backup (%s)", ns[0], ns[len(ns)-1], b.table)
	if len(lines) > 1 {
		cctx, cancel := b.s.callCtx(ctx)
		res, err := b.s.transact(cctx, b.s.restoreClient(b.table), actions)
		cancel()
		if err != nil {
			return mapErr("restoring "+what, err)
		}
		if len(res) == len(lines) && res[0].status < 300 {
			b.inserted[b.table] += len(lines)
			return nil
		}
		if res[0].status != http.StatusConflict {
			return fmt.Errorf("restoring %s: operation %d answered HTTP %d %s", what, res[0].index, res[0].status, res[0].code)
		}
	}
	for i, line := range lines {
		if err := b.s.restoreOne(ctx, line, b.inserted, b.present); err != nil {
			return fmt.Errorf("entity %d of the backup: %w", ns[i], err)
		}
	}
	return nil
}

// restoreOne inserts one entity of a backup, counting it as inserted or present.
func (s *Store) restoreOne(ctx context.Context, line BackupLine, inserted, present BackupCounts) error {
	c := s.restoreClient(line.Table)
	if c == nil {
		return fmt.Errorf("unknown table %q", line.Table)
	}
	var pk, rk string
	if json.Unmarshal(line.Entity["PartitionKey"], &pk) != nil || json.Unmarshal(line.Entity["RowKey"], &rk) != nil {
		return errors.New("no PartitionKey or RowKey")
	}
	cleanEntity(line.Entity)
	if backupSkipped(line.Table, line.Entity) {
		return nil
	}
	raw, err := json.Marshal(line.Entity)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("restoring %s %s/%s", line.Table, pk, rk)
	cctx, cancel := s.callCtx(ctx)
	_, err = c.AddEntity(cctx, raw, nil)
	cancel()
	err = mapErr(what, err)
	if errors.Is(err, store.ErrExists) {
		same, cerr := s.sameEntity(ctx, c, pk, rk, line.Entity)
		if cerr != nil {
			return cerr
		}
		if !same {
			return fmt.Errorf("%s: the table holds this entity with other properties: restore into the tables of a CA "+
				"that has not served yet", what)
		}
		present[line.Table]++
		return nil
	}
	if err != nil {
		return err
	}
	inserted[line.Table]++
	return nil
}

// restoreClient returns the client of a table named in a backup, nil for a name that is none of the five.
func (s *Store) restoreClient(table string) *aztables.Client {
	switch table {
	case TableCerts:
		return s.certs
	case TableRevoked:
		return s.revoked
	case TableMeta:
		return s.meta
	case TableRevReq:
		return s.revreq
	case TableRuns:
		return s.runs
	}
	return nil
}

// sameEntity reports whether the stored entity pk/rk has exactly the properties of want.
func (s *Store) sameEntity(ctx context.Context, c *aztables.Client, pk, rk string, want map[string]json.RawMessage) (bool, error) {
	cctx, cancel := s.callCtx(ctx)
	resp, err := c.GetEntity(cctx, pk, rk, nil)
	cancel()
	if err != nil {
		return false, mapErr("reading "+pk+"/"+rk, err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(resp.Value, &got); err != nil {
		return false, fmt.Errorf("tables: decoding %s/%s: %w", pk, rk, err)
	}
	cleanEntity(got)
	return reflect.DeepEqual(decodeAll(got), decodeAll(want)), nil
}

// decodeAll decodes each property, so that two spellings of one JSON value compare equal.
func decodeAll(e map[string]json.RawMessage) map[string]any {
	out := make(map[string]any, len(e))
	for k, v := range e {
		var x any
		_ = json.Unmarshal(v, &x)
		out[k] = x
	}
	return out
}
