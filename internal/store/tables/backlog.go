package tables

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// PruneBacklogs implements store.Backlogs: one query for at most limit keys whose Latest is before before (the
// service filters), then a delete of each, conditioned on the ETag it was listed with. One already gone (404) or
// written since (412) is left, and not counted.
func (s *Store) PruneBacklogs(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("tables: pruning backlogs: limit %d is not positive", limit)
	}
	filter := "PartitionKey eq " + quote(backlogPK) + " and Latest lt " + dateLiteral(before)
	sel, top := "RowKey", int32(min(limit, pageSize))
	type row struct{ rk, etag string }
	var old []row
	err := s.list(ctx, s.meta, "listing backlogs to prune", &aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top},
		func(p props, etag string) (bool, error) {
			old = append(old, row{p.str("RowKey"), etag})
			return len(old) < limit, nil
		})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range old {
		err := s.DeleteBacklog(ctx, r.rk, r.etag)
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
