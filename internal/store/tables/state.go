package tables

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
)

const (
	revokedPK = "revoked"
	// compromisedPK holds the compromised-key marks in the revoked table, beside the revocation index they belong
	// to; ListRevoked filters on revokedPK, so the CRL's listing never reads them.
	compromisedPK = "compromisedkey"
	metaPK        = "meta"
	revreqPK      = "revreq"
	runsPK        = "runs"
)

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// bindingRowPrefix starts every binding's row key. Records' row keys are serials (upper-case hex digits), so a
// binding never collides with a record and sorts after every record of its partition.
const bindingRowPrefix = "key-"

// indexKeys places key's binding in the certs partition, beside the records; the row key holds the whole hash,
// so any key (slashes, quotes, any length up to MaxKey) maps to a valid row key.
func indexKeys(key string) (pk, rk string) {
	return certsPK, bindingRowPrefix + hashHex(key)
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty idempotency key")
	}
	if len(key) > MaxKey {
		return fmt.Errorf("idempotency key is %d bytes, over the %d byte limit", len(key), MaxKey)
	}
	return nil
}

func bindingEntity(key, serial string, created time.Time) entity {
	pk, rk := indexKeys(key)
	e := newEntity(pk, rk)
	e.str("Key", key)
	e.str("Serial", serial)
	e.time("Created", created)
	return e
}

func decodeBinding(key string, p props, etag string) (store.Binding, error) {
	if p.str("Key") != key {
		// Two keys with one SHA-256: never expected, but never answer with another key's serial.
		return store.Binding{}, fmt.Errorf("index entity holds a different key")
	}
	created, err := p.time("Created")
	if err != nil {
		return store.Binding{}, err
	}
	return store.Binding{Key: key, Serial: p.str("Serial"), Created: created, ETag: etag}, nil
}

// InsertBound implements store.Index with one entity-group transaction in the certs table: the record's insert
// and the binding's insert (or, with prev, its replace conditioned on prev.ETag). Both entities carry the same
// WriteID, so a transaction the SDK retried after a lost response is recognised and reported as the success it
// was.
func (s *Store) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	const op = "binding key"
	if err := checkKey(key); err != nil {
		return store.Binding{}, fmt.Errorf("tables: %s: %w", op, err)
	}
	if err := checkRecord(r); err != nil {
		return store.Binding{}, fmt.Errorf("tables: %s: %w", op, err)
	}
	if prev != nil && prev.ETag == "" {
		return store.Binding{}, fmt.Errorf("tables: %s: no ETag: %w", op, store.ErrConflict)
	}
	now := s.stamp()
	created := normTime(r.Created)
	if created.IsZero() {
		created = now
	}
	id := newWriteID()
	rec := recordEntity(r)
	rec.time("Created", created)
	rec.time("Updated", now)
	rec.set(propWriteID, id)
	bind := bindingEntity(key, r.Serial, now)
	bind.set(propWriteID, id)
	recBody, err := rec.marshal()
	if err != nil {
		return store.Binding{}, fmt.Errorf("tables: %s: %w", op, err)
	}
	bindBody, err := bind.marshal()
	if err != nil {
		return store.Binding{}, fmt.Errorf("tables: %s: %w", op, err)
	}
	bindAction := aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: bindBody}
	if prev != nil {
		match := azcore.ETag(prev.ETag)
		bindAction = aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateReplace, Entity: bindBody, IfMatch: &match}
	}
	res, err := s.certsCommit.commit(ctx, op+" with record "+r.Serial, []aztables.TransactionAction{
		{ActionType: aztables.TransactionTypeAdd, Entity: recBody}, bindAction}, []string{rec.rk(), bind.rk()})
	if err != nil {
		return store.Binding{}, err
	}
	if len(res) == 2 && res[0].status < 300 && res[1].status < 300 {
		r.Created, r.Updated, r.ETag = created, now, res[0].etag
		return store.Binding{Key: key, Serial: r.Serial, Created: now, ETag: res[1].etag}, nil
	}
	// The transaction failed as a whole; the binding as it stands now tells why.
	cur, curID, lerr := s.lookup(ctx, key)
	switch {
	case lerr == nil && curID == id:
		// Our own transaction, committed before a lost response made the SDK send it again.
		got, gerr := s.Get(ctx, r.Serial)
		if gerr != nil {
			return store.Binding{}, fmt.Errorf("tables: %s: committed, but reading the record back failed: %w", op, gerr)
		}
		r.Created, r.Updated, r.ETag = created, now, got.ETag
		return cur, nil
	case lerr != nil && !errors.Is(lerr, store.ErrNotFound):
		return store.Binding{}, fmt.Errorf("tables: %s: the transaction failed and reading the binding failed: %w", op, lerr)
	case prev == nil && lerr == nil:
		return cur, fmt.Errorf("tables: %s: bound to %s: %w", op, cur.Serial, store.ErrExists)
	case prev != nil && lerr != nil:
		return store.Binding{}, fmt.Errorf("tables: rebinding key: %w", store.ErrNotFound)
	case prev != nil && cur.ETag != prev.ETag:
		return cur, fmt.Errorf("tables: rebinding key: bound to %s: %w", cur.Serial, store.ErrConflict)
	}
	// The binding would have been accepted: the record's insert failed. Throttling and server errors are an outage;
	// anything else (a 400 for an entity the service will not take) fails the same way every time and is not.
	failed := res[len(res)-1]
	if failed.status == http.StatusConflict {
		return store.Binding{}, fmt.Errorf("tables: inserting record %s: %w", r.Serial, store.ErrExists)
	}
	return store.Binding{}, statusError(op+" with record "+r.Serial+": transaction refused", failed.status, failed.code, nil)
}

// Lookup implements store.Index.
func (s *Store) Lookup(ctx context.Context, key string) (store.Binding, error) {
	b, _, err := s.lookup(ctx, key)
	return b, err
}

// lookup reads key's binding and the WriteID it was written with.
func (s *Store) lookup(ctx context.Context, key string) (store.Binding, string, error) {
	pk, rk := indexKeys(key)
	p, etag, err := s.read(ctx, s.certs, "looking up key", pk, rk)
	if err != nil {
		return store.Binding{}, "", err
	}
	b, err := decodeBinding(key, p, etag)
	if err != nil {
		return store.Binding{}, "", fmt.Errorf("tables: looking up key: %w", err)
	}
	return b, p.str(propWriteID), nil
}

// AddRevoked implements store.Revocations. An entry that exists already is kept as it is, and read back.
func (s *Store) AddRevoked(ctx context.Context, e store.Revoked) (store.Revoked, error) {
	c := store.NormalizeSerial(e.Serial)
	if c == "" {
		return store.Revoked{}, fmt.Errorf("tables: adding revocation: serial %q is not a serial", e.Serial)
	}
	op := "adding revocation " + c
	ent := newEntity(revokedPK, c)
	ent.time("RevokedAt", e.RevokedAt)
	ent.int("Reason", e.Reason)
	if !e.NotAfter.IsZero() {
		ent.time("NotAfter", e.NotAfter)
	}
	_, err := s.add(ctx, s.revoked, op, ent)
	switch {
	case err == nil:
		return store.Revoked{Serial: c, RevokedAt: normTime(e.RevokedAt), Reason: e.Reason, NotAfter: normTime(e.NotAfter)}, nil
	case !errors.Is(err, store.ErrExists):
		return store.Revoked{}, err
	}
	return s.readRevoked(ctx, op, c)
}

// GetRevoked implements store.Revocations with one point read.
func (s *Store) GetRevoked(ctx context.Context, serial string) (store.Revoked, error) {
	c := store.NormalizeSerial(serial)
	if c == "" {
		// Not a row key any entry can have: nothing to read.
		return store.Revoked{}, fmt.Errorf("tables: reading revocation %q: %w", serial, store.ErrNotFound)
	}
	return s.readRevoked(ctx, "reading revocation "+c, c)
}

// readRevoked reads the index entry of the canonical serial c.
func (s *Store) readRevoked(ctx context.Context, op, c string) (store.Revoked, error) {
	p, _, err := s.read(ctx, s.revoked, op, revokedPK, c)
	if err != nil {
		return store.Revoked{}, err
	}
	at, err := p.time("RevokedAt")
	if err != nil {
		return store.Revoked{}, fmt.Errorf("tables: %s: %w", op, err)
	}
	notAfter, err := p.time("NotAfter")
	if err != nil {
		return store.Revoked{}, fmt.Errorf("tables: %s: %w", op, err)
	}
	return store.Revoked{Serial: c, RevokedAt: at, Reason: p.int("Reason"), NotAfter: notAfter}, nil
}

// ListRevoked implements store.Revocations, in serial order. It selects only the four columns the CRL needs
// and reads the largest pages the service gives (1,000 entries), so 100,000 entries take 100 calls.
func (s *Store) ListRevoked(ctx context.Context) ([]store.Revoked, error) {
	filter := "PartitionKey eq " + quote(revokedPK)
	sel := "RowKey,RevokedAt,Reason,NotAfter"
	top := int32(pageSize)
	var out []store.Revoked
	err := s.listRaw(ctx, s.revoked, "listing revocations", &aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top},
		func(raw []byte) (bool, error) {
			// A struct decode: several times cheaper than the generic entity map at 100,000 entries.
			var e struct {
				RowKey    string
				RevokedAt string
				Reason    int
				NotAfter  string
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				return false, fmt.Errorf("decoding revocation: %w", err)
			}
			r := store.Revoked{Serial: e.RowKey, Reason: e.Reason}
			if e.RevokedAt != "" {
				at, err := time.Parse(time.RFC3339Nano, e.RevokedAt)
				if err != nil {
					return false, fmt.Errorf("decoding revocation %s: %w", e.RowKey, err)
				}
				r.RevokedAt = normTime(at)
			}
			if e.NotAfter != "" {
				na, err := time.Parse(time.RFC3339Nano, e.NotAfter)
				if err != nil {
					return false, fmt.Errorf("decoding revocation %s: %w", e.RowKey, err)
				}
				r.NotAfter = normTime(na)
			}
			out = append(out, r)
			return true, nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MarkCompromised implements store.Revocations with one insert into the revoked table's compromisedkey partition,
// the key hash as the row key. A mark that exists already is kept as it is, and read back. A retried insert that
// finds its own first attempt's write (a lost response) counts as created.
func (s *Store) MarkCompromised(ctx context.Context, k store.CompromisedKey) (store.CompromisedKey, bool, error) {
	if !store.ValidKeyHash(k.PublicKey) {
		return store.CompromisedKey{}, false, fmt.Errorf("tables: marking key compromised: %q is not a key hash", k.PublicKey)
	}
	op := "marking key compromised " + k.PublicKey
	ent := newEntity(compromisedPK, k.PublicKey)
	ent.str("Serial", k.Serial)
	ent.str("By", k.By)
	ent.time("MarkedAt", k.MarkedAt)
	_, err := s.add(ctx, s.revoked, op, ent)
	switch {
	case err == nil:
		return store.CompromisedKey{PublicKey: k.PublicKey, Serial: k.Serial, By: k.By, MarkedAt: normTime(k.MarkedAt)}, true, nil
	case !errors.Is(err, store.ErrExists):
		return store.CompromisedKey{}, false, err
	}
	kept, err := s.Compromised(ctx, k.PublicKey)
	return kept, false, err
}

// Compromised implements store.Revocations with one point read.
func (s *Store) Compromised(ctx context.Context, publicKey string) (store.CompromisedKey, error) {
	if !store.ValidKeyHash(publicKey) {
		// Not a row key any mark can have (an empty hash, say): nothing to read.
		return store.CompromisedKey{}, fmt.Errorf("tables: reading compromised key %q: %w", publicKey, store.ErrNotFound)
	}
	op := "reading compromised key " + publicKey
	p, _, err := s.read(ctx, s.revoked, op, compromisedPK, publicKey)
	if err != nil {
		return store.CompromisedKey{}, err
	}
	at, err := p.time("MarkedAt")
	if err != nil {
		return store.CompromisedKey{}, fmt.Errorf("tables: %s: %w", op, err)
	}
	// By is absent from marks written before it was recorded: they read as "".
	return store.CompromisedKey{PublicKey: publicKey, Serial: p.str("Serial"), By: p.str("By"), MarkedAt: at}, nil
}

// ListCompromised implements store.Revocations with a query of the compromisedkey partition.
func (s *Store) ListCompromised(ctx context.Context) ([]store.CompromisedKey, error) {
	filter := "PartitionKey eq " + quote(compromisedPK)
	top := int32(pageSize)
	var out []store.CompromisedKey
	err := s.list(ctx, s.revoked, "listing compromised keys", &aztables.ListEntitiesOptions{Filter: &filter, Top: &top},
		func(p props, _ string) (bool, error) {
			at, err := p.time("MarkedAt")
			if err != nil {
				return false, fmt.Errorf("decoding compromised key %s: %w", p.str("RowKey"), err)
			}
			out = append(out, store.CompromisedKey{PublicKey: p.str("RowKey"), Serial: p.str("Serial"), By: p.str("By"), MarkedAt: at})
			return true, nil
		})
	return out, err
}

func checkMetaName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("meta name %q must be 1 to 128 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("meta name %q may only hold letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// metaChunk names the binary properties a meta value is split over: Value, Value1, Value2, ...
func metaChunk(i int) string {
	if i == 0 {
		return "Value"
	}
	return "Value" + strconv.Itoa(i)
}

// GetMeta implements store.Meta.
func (s *Store) GetMeta(ctx context.Context, name string) ([]byte, string, error) {
	if err := checkMetaName(name); err != nil {
		return nil, "", fmt.Errorf("tables: reading meta: %w: %w", err, store.ErrNotFound)
	}
	p, etag, err := s.read(ctx, s.meta, "reading meta "+name, metaPK, name)
	if err != nil {
		return nil, "", err
	}
	n := p.int("Length")
	var v []byte
	for i := 0; len(v) < n; i++ {
		b, err := p.binary(metaChunk(i))
		if err != nil || len(b) == 0 {
			return nil, "", fmt.Errorf("tables: reading meta %s: chunk %d missing or malformed", name, i)
		}
		v = append(v, b...)
	}
	if len(v) != n {
		return nil, "", fmt.Errorf("tables: reading meta %s: %d bytes, expected %d", name, len(v), n)
	}
	return v, etag, nil
}

// PutMeta implements store.Meta. Replacing a name that does not exist gives ErrNotFound.
func (s *Store) PutMeta(ctx context.Context, name string, value []byte, etag string) (string, error) {
	if err := checkMetaName(name); err != nil {
		return "", fmt.Errorf("tables: writing meta: %w", err)
	}
	if len(value) > MaxMetaValue {
		return "", fmt.Errorf("tables: writing meta %s: value is %d bytes, over the %d byte limit", name, len(value), MaxMetaValue)
	}
	e := newEntity(metaPK, name)
	e.int("Length", len(value))
	for i := 0; len(value) > 0; i++ {
		n := min(len(value), MaxProperty)
		e.binary(metaChunk(i), value[:n])
		value = value[n:]
	}
	if etag == "" {
		return s.add(ctx, s.meta, "creating meta "+name, e)
	}
	return s.replace(ctx, s.meta, "replacing meta "+name, e, etag)
}

func validWork(st store.WorkState) bool {
	switch st {
	case store.WorkDownloaded, store.WorkApplied, store.WorkUploaded, store.WorkForeign:
		return true
	}
	return false
}

func checkRequest(r *store.RevocationRequest) error {
	if r == nil {
		return errors.New("nil request")
	}
	if r.RequestContext == "" {
		return errors.New("empty request context")
	}
	if !validWork(r.State) {
		return fmt.Errorf("unknown work state %q", r.State)
	}
	return nil
}

func requestEntity(r *store.RevocationRequest) entity {
	e := newEntity(revreqPK, hashHex(r.RequestContext))
	e.str("RequestContext", r.RequestContext)
	e.str("SerialNumber", r.SerialNumber)
	e.str("IssuerName", r.IssuerName)
	e.str("CAConfiguration", r.CAConfiguration)
	e.str("State", string(r.State))
	e.boolean("Succeeded", r.Succeeded)
	e.str("ErrorCode", r.ErrorCode)
	e.str("ErrorMessage", r.ErrorMessage)
	e.time("Downloaded", r.Downloaded)
	e.time("Applied", r.Applied)
	e.time("Uploaded", r.Uploaded)
	e.int("Attempts", r.Attempts)
	return e
}

func decodeRequest(p props, etag string) (*store.RevocationRequest, error) {
	d := decoder{p: p}
	r := &store.RevocationRequest{
		RequestContext:  p.str("RequestContext"),
		SerialNumber:    p.str("SerialNumber"),
		IssuerName:      p.str("IssuerName"),
		CAConfiguration: p.str("CAConfiguration"),
		State:           store.WorkState(p.str("State")),
		Succeeded:       p.boolean("Succeeded"),
		ErrorCode:       p.str("ErrorCode"),
		ErrorMessage:    p.str("ErrorMessage"),
		Downloaded:      d.time("Downloaded"),
		Applied:         d.time("Applied"),
		Uploaded:        d.time("Uploaded"),
		Attempts:        p.int("Attempts"),
		ETag:            etag,
	}
	if d.err != nil {
		return nil, fmt.Errorf("decoding revocation request: %w", d.err)
	}
	return r, nil
}

// EnqueueRevocation implements store.RevocationQueue. An empty State means WorkDownloaded and a zero
// Downloaded means now; both are written back to r, with r.ETag.
func (s *Store) EnqueueRevocation(ctx context.Context, r *store.RevocationRequest) error {
	if r != nil && r.State == "" {
		r.State = store.WorkDownloaded
	}
	if err := checkRequest(r); err != nil {
		return fmt.Errorf("tables: enqueueing revocation: %w", err)
	}
	downloaded := normTime(r.Downloaded)
	if downloaded.IsZero() {
		downloaded = s.stamp()
	}
	e := requestEntity(r)
	e.time("Downloaded", downloaded)
	etag, err := s.add(ctx, s.revreq, "enqueueing revocation", e)
	if err != nil {
		return err
	}
	r.Downloaded, r.ETag = downloaded, etag
	return nil
}

// EnqueueRevocations implements store.RevocationQueue: one entity-group transaction of inserts, all or none. Each
// entity carries its own WriteID, as add's lone insert does, for the same reason: when the SDK retries a transaction
// whose answer was lost after the service committed it, the retry fails on an entity the first attempt wrote (409),
// and ownInserts tells that apart from an item someone else had stored.
func (s *Store) EnqueueRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	const op = "enqueueing revocations"
	switch {
	case len(rs) == 0:
		return nil
	case len(rs) == 1:
		return s.EnqueueRevocation(ctx, rs[0])
	case len(rs) > store.MaxRevocationBatch:
		return fmt.Errorf("tables: %s: %d items, at most %d", op, len(rs), store.MaxRevocationBatch)
	}
	now := s.stamp()
	downloaded := make([]time.Time, len(rs))
	ids := make([]string, len(rs))
	rows := make([]string, len(rs))
	actions := make([]aztables.TransactionAction, len(rs))
	seen := make(map[string]bool, len(rs))
	for i, r := range rs {
		if r != nil && r.State == "" {
			r.State = store.WorkDownloaded
		}
		if err := checkRequest(r); err != nil {
			return fmt.Errorf("tables: %s: %w", op, err)
		}
		e := requestEntity(r)
		if rows[i] = e.rk(); seen[rows[i]] {
			return fmt.Errorf("tables: %s: %s named twice", op, rows[i])
		}
		seen[rows[i]] = true
		if downloaded[i] = normTime(r.Downloaded); downloaded[i].IsZero() {
			downloaded[i] = now
		}
		e.time("Downloaded", downloaded[i])
		ids[i] = newWriteID()
		e.set(propWriteID, ids[i])
		body, err := e.marshal()
		if err != nil {
			return fmt.Errorf("tables: %s: %w", op, err)
		}
		actions[i] = aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: body}
	}
	cctx, cancel := s.callCtx(ctx)
	res, err := s.transact(cctx, s.revreq, actions)
	cancel()
	if err != nil {
		return mapErr(op, err)
	}
	etags := make([]string, len(rs))
	if len(res) == len(rs) && committed(res) {
		for i := range res {
			etags[i] = res[i].etag
		}
	} else {
		failed := res[len(res)-1]
		err := statusError(op, failed.status, failed.code, nil)
		if !errors.Is(err, store.ErrExists) {
			return err
		}
		if etags, err = s.ownInserts(ctx, op, rows, ids, failed.index, err); err != nil {
			return err
		}
	}
	for i, r := range rs {
		r.Downloaded, r.ETag = downloaded[i], etags[i]
	}
	return nil
}

// ownInserts decides a transaction of inserts that failed with exists (the service's answer in exists) at operation
// at (-1: not said): when the entity there carries the WriteID this call gave it, an earlier attempt of this very
// transaction committed (a transaction is all or none, so it wrote them all), and ownInserts returns every entity's
// ETag, read back. Otherwise the entity was stored before, and nothing of the transaction was written: exists.
func (s *Store) ownInserts(ctx context.Context, op string, rows, ids []string, at int, exists error) ([]string, error) {
	if at < 0 || at >= len(rows) {
		at = 0
	}
	p, _, err := s.read(ctx, s.revreq, op, revreqPK, rows[at])
	if err != nil {
		return nil, fmt.Errorf("tables: %s: telling our own lost answer from an item stored before: %w", op, err)
	}
	if p.str(propWriteID) != ids[at] {
		return nil, exists
	}
	etags := make([]string, len(rows))
	for i, rk := range rows {
		p, etag, err := s.read(ctx, s.revreq, op, revreqPK, rk)
		if err != nil {
			return nil, fmt.Errorf("tables: %s: committed, reading back %s: %w", op, rk, err)
		}
		if p.str(propWriteID) != ids[i] {
			// Moved since by another writer: its ETag is not this write's.
			return nil, fmt.Errorf("tables: %s: committed, but %s was written again since: %w", op, rk, store.ErrConflict)
		}
		etags[i] = etag
	}
	return etags, nil
}

// UpdateRevocation implements store.RevocationQueue. An unknown item gives ErrNotFound. The write is a merge, like
// Update's: properties a newer version added stay.
func (s *Store) UpdateRevocation(ctx context.Context, r *store.RevocationRequest) error {
	if err := checkRequest(r); err != nil {
		return fmt.Errorf("tables: updating revocation: %w", err)
	}
	etag, err := s.merge(ctx, s.revreq, "updating revocation", requestEntity(r), r.ETag)
	if err != nil {
		return err
	}
	r.ETag = etag
	return nil
}

// UpdateRevocations implements store.RevocationQueue: one entity-group transaction of merges, each conditioned on
// its item's ETag, so all are written or none (a moved item fails the transaction with ErrConflict). An answer lost
// to a transport fault leaves the caller unsure, as the contract allows: rewriting one by one is safe either way.
func (s *Store) UpdateRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	const op = "updating revocations"
	switch {
	case len(rs) == 0:
		return nil
	case len(rs) == 1:
		return s.UpdateRevocation(ctx, rs[0])
	case len(rs) > store.MaxRevocationBatch:
		return fmt.Errorf("tables: %s: %d items, at most %d", op, len(rs), store.MaxRevocationBatch)
	}
	actions := make([]aztables.TransactionAction, len(rs))
	for i, r := range rs {
		if err := checkRequest(r); err != nil {
			return fmt.Errorf("tables: %s: %w", op, err)
		}
		if r.ETag == "" {
			return fmt.Errorf("tables: %s: %s has no ETag: %w", op, hashHex(r.RequestContext), store.ErrConflict)
		}
		e := requestEntity(r)
		e.set(propWriteID, newWriteID())
		body, err := e.marshalMerge()
		if err != nil {
			return fmt.Errorf("tables: %s: %w", op, err)
		}
		match := azcore.ETag(r.ETag)
		actions[i] = aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateMerge, Entity: body, IfMatch: &match}
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	res, err := s.transact(cctx, s.revreq, actions)
	if err != nil {
		return mapErr(op, err)
	}
	if len(res) != len(rs) || res[0].status >= 300 {
		return statusError(op, res[0].status, res[0].code, nil)
	}
	for i, r := range rs {
		r.ETag = res[i].etag
	}
	return nil
}

// Revocation implements store.RevocationQueue: one point read.
func (s *Store) Revocation(ctx context.Context, requestContext string) (*store.RevocationRequest, error) {
	p, etag, err := s.read(ctx, s.revreq, "reading revocation", revreqPK, hashHex(requestContext))
	if err != nil {
		return nil, err
	}
	return decodeRequest(p, etag)
}

// OpenRevocations implements store.RevocationQueue, oldest download first. A limit of zero or less means no
// limit. The service filters on State; the partition holds every item ever downloaded, which at the hourly
// 500-item maximum stays a cheap single-partition scan for years.
func (s *Store) OpenRevocations(ctx context.Context, limit int) ([]*store.RevocationRequest, error) {
	filter := "PartitionKey eq " + quote(revreqPK) + " and (State eq " + quote(string(store.WorkDownloaded)) +
		" or State eq " + quote(string(store.WorkApplied)) + ")"
	top := int32(pageSize)
	type item struct {
		key string
		r   *store.RevocationRequest
	}
	var open []item
	err := s.list(ctx, s.revreq, "listing open revocations", &aztables.ListEntitiesOptions{Filter: &filter, Top: &top},
		func(p props, etag string) (bool, error) {
			r, err := decodeRequest(p, etag)
			if err != nil {
				return false, err
			}
			open = append(open, item{p.str("RowKey"), r})
			return true, nil
		})
	if err != nil {
		return nil, err
	}
	sort.Slice(open, func(i, j int) bool {
		if !open[i].r.Downloaded.Equal(open[j].r.Downloaded) {
			return open[i].r.Downloaded.Before(open[j].r.Downloaded)
		}
		return open[i].key < open[j].key
	})
	if limit > 0 && len(open) > limit {
		open = open[:limit]
	}
	out := make([]*store.RevocationRequest, len(open))
	for i, it := range open {
		out[i] = it.r
	}
	return out, nil
}

// runKey orders runs newest first in the service's ascending key order: the start time inverted, then the run
// ID to keep runs started in the same instant apart.
func runKey(started time.Time, id string) string {
	ns := started.UTC().UnixNano()
	if started.Before(time.Unix(0, 0)) {
		ns = 0
	}
	return fmt.Sprintf("%019d_%s", math.MaxInt64-ns, id)
}

func checkRunID(id string) error {
	if len(id) > 128 {
		return errors.New("run ID is over 128 characters")
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("run ID %q may only hold letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// RecordRun implements store.RevocationQueue. An empty ID gets a random one and a zero Started means now (the ID's
// start, for a store.NewRunID ID); recording the same run (ID and Started) twice gives ErrExists.
func (s *Store) RecordRun(ctx context.Context, run store.SyncRun) error {
	if run.ID == "" {
		run.ID = newWriteID()
	}
	store.StartFromRunID(&run)
	if run.Started.IsZero() {
		run.Started = s.stamp()
	}
	e, err := runEntity(run)
	if err != nil {
		return fmt.Errorf("tables: recording run: %w", err)
	}
	_, err = s.add(ctx, s.runs, "recording run "+run.ID, e)
	return err
}

// FinishRun implements store.RevocationQueue. It merges, like the other write-backs, so that properties a newer
// version added to the record survive.
func (s *Store) FinishRun(ctx context.Context, run store.SyncRun) error {
	if run.ID == "" || run.Started.IsZero() {
		return errors.New("tables: finishing run: the run's ID and start are required")
	}
	e, err := runEntity(run)
	if err != nil {
		return fmt.Errorf("tables: finishing run: %w", err)
	}
	_, err = s.merge(ctx, s.runs, "finishing run "+run.ID, e, string(azcore.ETagAny))
	return err
}

func runEntity(run store.SyncRun) (entity, error) {
	if err := checkRunID(run.ID); err != nil {
		return entity{}, err
	}
	run.Started = normTime(run.Started)
	if err := store.CheckRunStart(run); err != nil {
		return entity{}, err
	}
	e := newEntity(runsPK, runKey(run.Started, run.ID))
	e.str("ID", run.ID)
	e.time("Started", run.Started)
	e.time("Finished", run.Finished)
	e.str("Trigger", run.Trigger)
	e.int("Resumed", run.Resumed)
	e.int("Downloaded", run.Downloaded)
	e.int("Foreign", run.Foreign)
	e.int("Revoked", run.Revoked)
	e.int("NotFound", run.NotFound)
	e.int("Failed", run.Failed)
	e.int("Uploaded", run.Uploaded)
	e.jsonStr("Errors", run.Errors)
	e.str("Error", run.Error)
	return e, nil
}

// Runs implements store.RevocationQueue, newest first. A limit of zero or less means no limit.
func (s *Store) Runs(ctx context.Context, limit int) ([]store.SyncRun, error) {
	return s.listRuns(ctx, "PartitionKey eq "+quote(runsPK), "listing runs", limit)
}

// RunByID implements store.RevocationQueue. The row key starts with the run's start: a store.NewRunID ID holds it,
// so that run is one point read, found or not. For another ID (recorded before IDs held their start) the partition
// is queried for the ID, which the service filters on its side; retention (PruneRuns) bounds that partition.
func (s *Store) RunByID(ctx context.Context, id string) (store.SyncRun, error) {
	if err := checkRunID(id); err != nil || id == "" {
		return store.SyncRun{}, fmt.Errorf("tables: reading run %q: %w", id, store.ErrNotFound)
	}
	if t, ok := store.RunIDStart(id); ok {
		p, _, err := s.read(ctx, s.runs, "reading run "+id, runsPK, runKey(t, id))
		if err != nil {
			return store.SyncRun{}, err
		}
		run, err := decodeRun(p)
		if err != nil {
			return store.SyncRun{}, fmt.Errorf("tables: reading run %s: %w", id, err)
		}
		return run, nil
	}
	runs, err := s.listRuns(ctx, "PartitionKey eq "+quote(runsPK)+" and ID eq "+quote(id), "reading run "+id, 1)
	if err != nil {
		return store.SyncRun{}, err
	}
	if len(runs) == 0 {
		return store.SyncRun{}, fmt.Errorf("tables: reading run %s: %w", id, store.ErrNotFound)
	}
	return runs[0], nil
}

func (s *Store) listRuns(ctx context.Context, filter, op string, limit int) ([]store.SyncRun, error) {
	top := int32(pageSize)
	if limit > 0 && limit < pageSize {
		top = int32(limit)
	}
	var out []store.SyncRun
	err := s.list(ctx, s.runs, op, &aztables.ListEntitiesOptions{Filter: &filter, Top: &top},
		func(p props, _ string) (bool, error) {
			run, err := decodeRun(p)
			if err != nil {
				return false, err
			}
			out = append(out, run)
			return limit <= 0 || len(out) < limit, nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func decodeRun(p props) (store.SyncRun, error) {
	d := decoder{p: p}
	run := store.SyncRun{
		ID:         p.str("ID"),
		Started:    d.time("Started"),
		Finished:   d.time("Finished"),
		Trigger:    p.str("Trigger"),
		Resumed:    p.int("Resumed"),
		Downloaded: p.int("Downloaded"),
		Foreign:    p.int("Foreign"),
		Revoked:    p.int("Revoked"),
		NotFound:   p.int("NotFound"),
		Failed:     p.int("Failed"),
		Uploaded:   p.int("Uploaded"),
		Errors:     d.jsonStr("Errors"),
		Error:      p.str("Error"),
	}
	if d.err != nil {
		return store.SyncRun{}, fmt.Errorf("decoding run: %w", d.err)
	}
	return run, nil
}

// PruneRuns implements store.RevocationQueue. Runs started before before are the row keys from the inverted
// instant just before it on (the newest of them first): one query for at most limit keys, then a delete of each,
// conditioned on the ETag it was listed with. One already gone (404: another pruner) or written since (412) is
// left, and not counted.
func (s *Store) PruneRuns(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("tables: pruning runs: limit %d is not positive", limit)
	}
	ns := before.UTC().UnixNano()
	if ns <= 0 {
		// Runs started before 1970 share the last key (runKey); there are none to prune before it.
		return 0, nil
	}
	filter := "PartitionKey eq " + quote(runsPK) + " and RowKey ge " + quote(fmt.Sprintf("%019d", math.MaxInt64-ns+1))
	sel, top := "RowKey", int32(min(limit, pageSize))
	type row struct{ rk, etag string }
	var old []row
	err := s.list(ctx, s.runs, "listing runs to prune", &aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top},
		func(p props, etag string) (bool, error) {
			old = append(old, row{p.str("RowKey"), etag})
			return len(old) < limit, nil
		})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range old {
		cctx, cancel := s.callCtx(ctx)
		match := azcore.ETagAny
		if r.etag != "" {
			match = azcore.ETag(r.etag)
		}
		_, err := s.runs.DeleteEntity(cctx, runsPK, r.rk, &aztables.DeleteEntityOptions{IfMatch: &match})
		cancel()
		err = mapErr("pruning run "+r.rk, err)
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
