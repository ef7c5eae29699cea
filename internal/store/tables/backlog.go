package tables

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
)

// backlogPK holds the per-key backlogs (store.Backlogs) in the meta table: small, short-lived entities that no
// other listing of that table reads (its documents are point reads under metaPK), and that backups leave out.
const backlogPK = "backlog"

// reservationJSON is one reservation as the Reservations property holds it.
type reservationJSON struct {
	Serial string    `json:"s"`
	At     time.Time `json:"t"`
}

func backlogEntity(b *store.Backlog) (entity, error) {
	if !store.ValidKeyHash(b.PublicKey) {
		return nil, fmt.Errorf("%q is not a key hash", b.PublicKey)
	}
	if len(b.Reservations) > store.MaxReservations {
		return nil, fmt.Errorf("%d reservations, over %d", len(b.Reservations), store.MaxReservations)
	}
	rs := make([]reservationJSON, len(b.Reservations))
	for i, r := range b.Reservations {
		rs[i] = reservationJSON{Serial: r.Serial, At: normTime(r.At)}
	}
	raw, err := json.Marshal(rs)
	if err != nil {
		return nil, err
	}
	e := newEntity(backlogPK, b.PublicKey)
	e.str("Reservations", string(raw))
	// Latest is what PruneBacklogs filters on, on the service's side.
	e.time("Latest", b.Latest())
	return e, nil
}

// GetBacklog implements store.Backlogs with one point read.
func (s *Store) GetBacklog(ctx context.Context, publicKey string) (*store.Backlog, error) {
	if !store.ValidKeyHash(publicKey) {
		return nil, fmt.Errorf("tables: reading backlog %q: %w", publicKey, store.ErrNotFound)
	}
	op := "reading backlog " + publicKey
	p, etag, err := s.read(ctx, s.meta, op, backlogPK, publicKey)
	if err != nil {
		return nil, err
	}
	var rs []reservationJSON
	if raw := p.str("Reservations"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &rs); err != nil {
			return nil, fmt.Errorf("tables: %s: %w", op, err)
		}
	}
	b := &store.Backlog{PublicKey: publicKey, ETag: etag}
	for _, r := range rs {
		b.Reservations = append(b.Reservations, store.Reservation{Serial: r.Serial, At: normTime(r.At)})
	}
	return b, nil
}

// PutBacklog implements store.Backlogs with one insert or one ETag-conditioned replace.
func (s *Store) PutBacklog(ctx context.Context, b *store.Backlog) error {
	e, err := backlogEntity(b)
	if err != nil {
		return fmt.Errorf("tables: writing backlog: %w", err)
	}
	var etag string
	if b.ETag == "" {
		etag, err = s.add(ctx, s.meta, "creating backlog "+b.PublicKey, e)
	} else {
		etag, err = s.replace(ctx, s.meta, "replacing backlog "+b.PublicKey, e, b.ETag)
	}
	if err != nil {
		return err
	}
	b.ETag = etag
	return nil
}

// DeleteBacklog implements store.Backlogs with one ETag-conditioned delete.
func (s *Store) DeleteBacklog(ctx context.Context, publicKey, etag string) error {
	if etag == "" {
		return fmt.Errorf("tables: deleting backlog %s: no ETag: %w", publicKey, store.ErrConflict)
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	match := azcore.ETag(etag)
	_, err := s.meta.DeleteEntity(cctx, backlogPK, publicKey, &aztables.DeleteEntityOptions{IfMatch: &match})
	return mapErr("deleting backlog "+publicKey, err)
}

// pruneBatch is how many expired backlogs one entity-group transaction deletes: Table Storage's most operations per
// transaction. The enrollment path leaves one backlog per key enrolled through Intune, so a fleet of 20,000 such
// enrollments an hour has the hourly timer delete some 20,000 backlogs each run: 20 rounds of one listed page and
// ten transactions, 220 round trips and some 10 s at the service's 2,000 entities a second per partition, where a
// delete per backlog took 20,000 round trips.
const pruneBatch = 100

// PruneBacklogs implements store.Backlogs, in rounds: a query for at most a page (pageSize) of keys whose Latest is
// before before (the service filters), then deletes in entity-group transactions of up to pruneBatch, each delete
// conditioned on the ETag its backlog was listed with; the next round queries again from the start, which the
// deleted backlogs have left. So a run cut short by its deadline keeps what its rounds deleted, and no listing
// follows a continuation across the deletes. A transaction is all or none: one that meets a backlog already gone
// (404) or written since (412) is done again one delete at a time, which leaves that backlog and deletes the others;
// one written since holds a reservation of the last hour, so the next round's query no longer finds it. Backlogs
// left are not counted.
func (s *Store) PruneBacklogs(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("tables: pruning backlogs: limit %d is not positive", limit)
	}
	filter := "PartitionKey eq " + quote(backlogPK) + " and Latest lt " + dateLiteral(before)
	sel := "RowKey"
	n := 0
	for n < limit {
		want := min(limit-n, pageSize)
		top := int32(want)
		var old []listedBacklog
		err := s.list(ctx, s.meta, "listing backlogs to prune", &aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top},
			func(p props, etag string) (bool, error) {
				if etag != "" { // never unconditioned: a backlog written since must stay
					old = append(old, listedBacklog{p.str("RowKey"), etag})
				}
				return len(old) < want, nil
			})
		if err != nil {
			return n, err
		}
		deleted := 0
		for b := range slices.Chunk(old, pruneBatch) {
			k, err := s.deleteBacklogs(ctx, b)
			if deleted += k; err != nil {
				return n + deleted, err
			}
		}
		n += deleted
		if len(old) < want || deleted == 0 {
			return n, nil // none left, or none that would go: the next run tries again
		}
	}
	return n, nil
}

// listedBacklog is a backlog as PruneBacklogs listed it.
type listedBacklog struct{ key, etag string }

// deleteBacklogs deletes bs, each at the ETag it was listed with: in one transaction, or one at a time when the
// transaction met one that is gone or was written since. It returns how many it deleted.
func (s *Store) deleteBacklogs(ctx context.Context, bs []listedBacklog) (int, error) {
	if len(bs) > 1 {
		actions := make([]aztables.TransactionAction, len(bs))
		for i, b := range bs {
			body, err := newEntity(backlogPK, b.key).marshal()
			if err != nil {
				return 0, fmt.Errorf("tables: pruning backlogs: %w", err)
			}
			match := azcore.ETag(b.etag)
			actions[i] = aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete, Entity: body, IfMatch: &match}
		}
		op := fmt.Sprintf("pruning %d backlogs", len(bs))
		cctx, cancel := s.callCtx(ctx)
		res, err := s.transact(cctx, s.meta, actions)
		cancel()
		if err != nil {
			return 0, mapErr(op, err)
		}
		if len(res) == len(bs) && committed(res) {
			return len(bs), nil
		}
		failed := res[len(res)-1]
		if err := statusError(op, failed.status, failed.code, nil); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return 0, err
		}
		// Nothing of it was deleted: one at a time, so the backlog that moved stays and the others go.
	}
	n := 0
	for _, b := range bs {
		err := s.DeleteBacklog(ctx, b.key, b.etag)
		switch {
		case err == nil:
			n++
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		default:
			return n, err
		}
	}
	return n, nil
}
