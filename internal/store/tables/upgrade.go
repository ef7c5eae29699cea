package tables

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"golang.org/x/sync/errgroup"

	"github.com/azscep/azscep/internal/store"
)

// Older layouts of the certs table, which a deployment upgraded in place still holds:
//
//	until 2026-12-05 13:11  certs  PartitionKey = canonical serial, RowKey = "cert"      records
//	                        index  PartitionKey = hex sha256(key)[:2], RowKey = hex sha256(key)   bindings
//	until 2026-12-05 19:12  certs  PartitionKey = serial's low byte (2 hex digits), RowKey = serial   records
//	                        certs  PartitionKey = sha256(key)[0] (2 hex digits), RowKey = "key-" + hex sha256(key)
//
// Every older partition key is upper-case hexadecimal, so "PartitionKey lt 'certs'" selects exactly the older
// entities of the certs table, and is an empty range query on a deployment that never had any.
const (
	// tableIndex is the older versions' binding table (prefix + name).
	tableIndex = "index"
	// oldRecordRow is the row key of a record in the first layout, whose partition key is the serial.
	oldRecordRow = "cert"
	// layoutDoc is the meta document saying when a start first found nothing older left to carry forward.
	layoutDoc = "layout-upgrade"
	// layoutRecheck is how long starts keep looking after that: instances of the older version may still be
	// writing in their layout while a deployment rolls.
	layoutRecheck = 24 * time.Hour
	// upgradeWorkers is how many copies are in flight at once; the group commit shares transactions among them.
	upgradeWorkers = 16
)

var olderCerts = "PartitionKey lt " + quote(certsPK)

// layoutMark is the layoutDoc meta document.
type layoutMark struct {
	Done time.Time `json:"done"` // when a start first finished carrying the older layouts forward
}

// upgradeLayout carries the records and bindings older versions wrote in their layouts into the certs partition,
// where every read looks: a copy with the same properties (status, times, certificate, bookkeeping) for each one
// the certs partition does not hold yet. What the certs partition holds already is never replaced: only the moves
// an older instance made to a record after it was copied are carried onto the copy, forward only and
// ETag-conditioned (advance), so a record this version changed since keeps its changes. The older entities are
// left as they are.
func (s *Store) upgradeLayout(ctx context.Context) error {
	raw, etag, err := s.GetMeta(ctx, layoutDoc)
	switch {
	case err == nil:
		var doc layoutMark
		if json.Unmarshal(raw, &doc) == nil && s.cfg.now().Sub(doc.Done) > layoutRecheck {
			return nil
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	index := s.svc.NewClient(strings.TrimSuffix(s.names[0], TableCerts) + tableIndex)
	oldCerts, err := s.hasEntity(ctx, s.certs, olderCerts)
	if err != nil {
		return err
	}
	oldIndex, err := s.hasEntity(ctx, index, "")
	if err != nil {
		return err
	}
	if oldCerts || oldIndex {
		if err := s.carry(ctx, index, oldCerts, oldIndex); err != nil {
			return err
		}
	}
	if etag == "" {
		doc, _ := json.Marshal(layoutMark{Done: s.stamp()})
		if _, err := s.PutMeta(ctx, layoutDoc, doc, ""); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	return nil
}

// hasEntity reports whether a listing of c with filter has an entity; a table that does not exist has none.
func (s *Store) hasEntity(ctx context.Context, c *aztables.Client, filter string) (bool, error) {
	top := int32(1)
	sel := "RowKey"
	o := &aztables.ListEntitiesOptions{Select: &sel, Top: &top}
	if filter != "" {
		o.Filter = &filter
	}
	found := false
	err := s.listRaw(ctx, c, "looking for older layouts", o, func([]byte) (bool, error) {
		found = true
		return false, nil
	})
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.ErrorCode == string(aztables.TableNotFound) {
		return false, nil
	}
	return found, err
}

// carry is upgradeLayout's work: it lists the older entities (of the certs table's older partitions when oldCerts,
// of the index table when oldIndex) and copies into the certs partition each one it lacks, or advances the copy of
// a record an older instance moved since, upgradeWorkers at a time.
func (s *Store) carry(ctx context.Context, index *aztables.Client, oldCerts, oldIndex bool) error {
	const op = "carrying older layouts forward"
	// The certs partition's row keys, and for records what a write of the older version could still move
	// (carried): what is there already is kept, and a second start copies nothing twice.
	have := map[string]carriedState{}
	filter := "PartitionKey eq " + quote(certsPK)
	sel := "RowKey,Status,IntuneNotified,Withheld"
	top := int32(pageSize)
	err := s.listRaw(ctx, s.certs, op, &aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top},
		func(raw []byte) (bool, error) {
			var e struct {
				RowKey, Status           string
				IntuneNotified, Withheld bool
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				return false, err
			}
			have[e.RowKey] = carriedState{store.Status(e.Status), e.IntuneNotified, e.Withheld}
			return true, nil
		})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(upgradeWorkers)
	copyOne := func(e entity) {
		if _, ok := have[e.rk()]; ok {
			return
		}
		g.Go(func() error {
			_, err := s.add(gctx, s.certs, op, e)
			if errors.Is(err, store.ErrExists) {
				return nil // written meanwhile by this version: it stays as it is
			}
			return err
		})
	}
	// An older instance still running while a deployment rolls goes on writing the records it carries on in its
	// layout after a start copied them: it signs a pending one, revokes an issued one, records Intune's acceptance.
	// Those moves are carried onto the copy (forward only, conditioned on its ETag), or the copy would stay
	// pending, or issued and answered good by OCSP although the older instance revoked it.
	copyRecord := func(r *store.Record) {
		cur, ok := have[r.Serial]
		if !ok {
			copyOne(recordEntity(r))
			return
		}
		if !cur.behind(r) {
			return
		}
		g.Go(func() error {
			c, err := s.Get(gctx, r.Serial)
			if err != nil {
				return err
			}
			from := c.Status
			if !advance(c, r) {
				return nil
			}
			if err := s.Update(gctx, c, from); err != nil && !errors.Is(err, store.ErrConflict) {
				return err // a conflict: written meanwhile by this version; the next start looks again
			}
			return nil
		})
	}
	// An older entity this version cannot read stays where it is, uncopied: it must not keep the service from
	// starting (an error here fails start-up, which is retried), and the older version could not read it either.
	if oldCerts {
		filter := olderCerts
		err := s.list(gctx, s.certs, op, &aztables.ListEntitiesOptions{Filter: &filter, Top: &top},
			func(p props, etag string) (bool, error) {
				if strings.HasPrefix(p.str("RowKey"), bindingRowPrefix) {
					if e, err := carriedBinding(p); err == nil {
						copyOne(e)
					}
				} else if r, err := carriedRecord(p, etag); err == nil {
					copyRecord(r)
				}
				return true, nil
			})
		if err != nil {
			_ = g.Wait()
			return err
		}
	}
	if oldIndex {
		err := s.list(gctx, index, op, &aztables.ListEntitiesOptions{Top: &top}, func(p props, _ string) (bool, error) {
			if e, err := carriedBinding(p); err == nil {
				copyOne(e)
			}
			return true, nil
		})
		if err != nil {
			_ = g.Wait()
			return err
		}
	}
	return g.Wait()
}

// carriedRecord is one older record of the certs table, as the current layout holds it.
func carriedRecord(p props, etag string) (*store.Record, error) {
	pk, rk := p.str("PartitionKey"), p.str("RowKey")
	if rk == oldRecordRow {
		p["RowKey"] = pk // the first layout: the serial is the partition key
	}
	r, err := decodeRecord(p, etag)
	if err != nil {
		return nil, err
	}
	if err := checkRecord(r); err != nil {
		return nil, fmt.Errorf("record %s/%s: %w", pk, rk, err)
	}
	return r, nil
}

// carriedState is what the certs partition's copy of a record shows of the moves an older instance can still make.
type carriedState struct {
	status                   store.Status
	intuneNotified, withheld bool
}

// behind reports whether the older record r shows a move its copy, in state c, lacks.
func (c carriedState) behind(r *store.Record) bool {
	return r.Status != c.status && c.status.CanMove(r.Status) || r.IntuneNotified && !c.intuneNotified ||
		r.Withheld && !c.withheld
}

// advance carries onto cur, the certs partition's copy, the moves the older record r made since it was copied:
// a status move the state machine allows (with the certificate, when the copy has none, and the revocation), and
// the Intune acceptance or the withholding. Nothing moves back. It reports whether cur changed.
func advance(cur, r *store.Record) bool {
	changed := false
	if r.Status != cur.Status && cur.Status.CanMove(r.Status) {
		if len(cur.CertDER) == 0 && len(r.CertDER) > 0 {
			cur.CertDER, cur.SHA1, cur.SHA256 = r.CertDER, r.SHA1, r.SHA256
		}
		if r.Status == store.StatusRevoked {
			cur.RevokedAt, cur.RevocationReason, cur.RevokedBy, cur.RevocationRef =
				r.RevokedAt, r.RevocationReason, r.RevokedBy, r.RevocationRef
		}
		if r.Note != "" {
			cur.Note = r.Note
		}
		cur.Status, changed = r.Status, true
	}
	if r.IntuneNotified && !cur.IntuneNotified {
		cur.IntuneNotified, cur.IntuneSerial, cur.CAConfiguration = true, r.IntuneSerial, r.CAConfiguration
		changed = true
	}
	if r.Withheld && !cur.Withheld {
		cur.Withheld, cur.Note, changed = true, r.Note, true
	}
	return changed
}

// carriedBinding is the current layout's entity for an older binding (of either layout).
func carriedBinding(p props) (entity, error) {
	key := p.str("Key")
	b, err := decodeBinding(key, p, "")
	if err == nil {
		err = checkKey(key)
	}
	if err != nil {
		return nil, fmt.Errorf("binding %s/%s: %w", p.str("PartitionKey"), p.str("RowKey"), err)
	}
	return bindingEntity(key, b.Serial, b.Created), nil
}
