// Package memstore is an in-memory store.Store with the same observable semantics as the Table Storage
// implementation (inserts that fail on collision, ETag-conditioned updates, the record state machine, opaque
// continuation tokens, the same size limits). It exists for fast unit tests, benchmarks and fault injection; it
// is not durable and must never back a real CA.
//
// Where the Table Storage store has to trust the caller, memstore checks more: an Update whose from does not
// match the stored status fails with store.ErrTransition here, while Table Storage can only rely on the ETag.
// That makes unit tests catch a caller passing the wrong from.
package memstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/azscep/azscep/internal/store"
)

// Limits shared with the Table Storage implementation so that a value accepted here is accepted there.
const (
	// MaxBinary is the Table Storage cap on one binary or string property (64 KiB).
	MaxBinary = 64 * 1024
	// MaxKey is the longest idempotency key accepted.
	MaxKey = 2048
	// MaxMetaValue is the largest meta document accepted.
	MaxMetaValue = 512 * 1024

	defaultLimit = 50
	maxLimit     = 200
)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for Created/Updated stamps, so tests can drive the sweeper's view of time.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Store is the in-memory store. The zero value is not usable; call New.
type Store struct {
	now func() time.Time

	mu      sync.Mutex
	version uint64
	certs   map[string]*store.Record        // by canonical serial
	index   map[string]store.Binding        // by key
	revoked map[string]store.Revoked        // by canonical serial
	keys    map[string]store.CompromisedKey // compromised-key marks, by public-key hash
	meta    map[string]metaEntry
	queue   map[string]*store.RevocationRequest // by hex sha256(RequestContext)
	runs    map[string]store.SyncRun            // by inverted-time row key
	backlog map[string]store.Backlog            // by public-key hash
}

type metaEntry struct {
	value []byte
	etag  string
}

var _ store.Store = (*Store)(nil)

// New returns an empty store, safe for concurrent use.
func New(opts ...Option) *Store {
	s := &Store{
		now:     time.Now,
		certs:   map[string]*store.Record{},
		index:   map[string]store.Binding{},
		revoked: map[string]store.Revoked{},
		keys:    map[string]store.CompromisedKey{},
		meta:    map[string]metaEntry{},
		queue:   map[string]*store.RevocationRequest{},
		runs:    map[string]store.SyncRun{},
		backlog: map[string]store.Backlog{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// normTime matches what Table Storage keeps of a time: UTC with 100 ns resolution.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(100 * time.Nanosecond)
}

func (s *Store) stamp() time.Time { return normTime(s.now()) }

// nextETag must be called with s.mu held.
func (s *Store) nextETag() string {
	s.version++
	return fmt.Sprintf("W/\"mem-%d\"", s.version)
}

func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %s: %w", op, err)
	}
	return nil
}

func utf16Bytes(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return 2 * n
}

func validStatus(st store.Status) bool {
	switch st {
	case store.StatusPending, store.StatusIssued, store.StatusAbandoned, store.StatusRevoked:
		return true
	}
	return false
}

// checkRecord applies the same limits the Table Storage encoder enforces.
func checkRecord(r *store.Record) error {
	if r == nil {
		return fmt.Errorf("nil record")
	}
	if r.Serial == "" || store.NormalizeSerial(r.Serial) != r.Serial {
		return fmt.Errorf("serial %q is not canonical", r.Serial)
	}
	if !validStatus(r.Status) {
		return fmt.Errorf("unknown status %q", r.Status)
	}
	if len(r.PlannedDER) > MaxBinary {
		return fmt.Errorf("planned certificate is %d bytes, over the %d byte property limit", len(r.PlannedDER), MaxBinary)
	}
	if len(r.CertDER) > MaxBinary {
		return fmt.Errorf("certificate is %d bytes, over the %d byte property limit", len(r.CertDER), MaxBinary)
	}
	if len(r.SANs) > 0 {
		// Encoded as the Table Storage store writes the SANs column.
		if utf16Bytes(store.ListJSON(r.SANs)) > MaxBinary {
			return fmt.Errorf("SAN list is over the %d byte property limit", MaxBinary)
		}
	}
	for name, v := range map[string]string{
		"Issuer": r.Issuer, "Subject": r.Subject, "Note": r.Note, "RevocationRef": r.RevocationRef,
		"TxID": r.TxID, "Requester": r.Requester, "DeviceID": r.DeviceID, "DeviceObjectID": r.DeviceObjectID,
		"RenewedFrom": r.RenewedFrom, "RenewedTo": r.RenewedTo,
	} {
		if utf16Bytes(v) > MaxBinary {
			return fmt.Errorf("%s is over the %d byte property limit", name, MaxBinary)
		}
	}
	return nil
}

func copyRecord(r *store.Record) *store.Record {
	c := *r
	c.SANs = slices.Clone(r.SANs)
	if len(c.SANs) == 0 {
		c.SANs = nil
	}
	c.PlannedDER = slices.Clone(r.PlannedDER)
	if len(c.PlannedDER) == 0 {
		c.PlannedDER = nil
	}
	c.CertDER = slices.Clone(r.CertDER)
	if len(c.CertDER) == 0 {
		c.CertDER = nil
	}
	c.NotBefore = normTime(r.NotBefore)
	c.NotAfter = normTime(r.NotAfter)
	c.RevokedAt = normTime(r.RevokedAt)
	c.ChainStarted = normTime(r.ChainStarted)
	c.ChainEnds = normTime(r.ChainEnds)
	c.Created = normTime(r.Created)
	c.Updated = normTime(r.Updated)
	return &c
}

// Insert implements store.Certificates.
func (s *Store) Insert(ctx context.Context, r *store.Record) error {
	if err := ctxErr(ctx, "inserting record"); err != nil {
		return err
	}
	if err := checkRecord(r); err != nil {
		return fmt.Errorf("memstore: inserting record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.insertLocked(r)
	return err
}

// insertLocked stores a copy of r under its serial (s.mu held) and returns the write time.
func (s *Store) insertLocked(r *store.Record) (time.Time, error) {
	if _, ok := s.certs[r.Serial]; ok {
		return time.Time{}, fmt.Errorf("memstore: inserting record %s: %w", r.Serial, store.ErrExists)
	}
	now := s.stamp()
	c := copyRecord(r)
	if c.Created.IsZero() {
		c.Created = now
	}
	c.Updated = now
	c.ETag = s.nextETag()
	s.certs[c.Serial] = c
	r.Created, r.Updated, r.ETag = c.Created, c.Updated, c.ETag
	return now, nil
}

// Update implements store.Certificates. A write that keeps the status (from == r.Status) is an in-state update
// of bookkeeping fields (IntuneNotified, Withheld, Note) and is allowed; a status change must be allowed by
// from.CanMove.
func (s *Store) Update(ctx context.Context, r *store.Record, from store.Status) error {
	if err := ctxErr(ctx, "updating record"); err != nil {
		return err
	}
	if err := checkRecord(r); err != nil {
		return fmt.Errorf("memstore: updating record: %w", err)
	}
	if r.Status != from && !from.CanMove(r.Status) {
		return fmt.Errorf("memstore: updating record %s from %s to %s: %w", r.Serial, from, r.Status, store.ErrTransition)
	}
	if r.ETag == "" {
		return fmt.Errorf("memstore: updating record %s without an ETag: %w", r.Serial, store.ErrConflict)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.certs[r.Serial]
	if !ok {
		return fmt.Errorf("memstore: updating record %s: %w", r.Serial, store.ErrNotFound)
	}
	if cur.ETag != r.ETag {
		return fmt.Errorf("memstore: updating record %s: %w", r.Serial, store.ErrConflict)
	}
	if cur.Status != from {
		return fmt.Errorf("memstore: updating record %s: stored status is %s, caller said %s: %w",
			r.Serial, cur.Status, from, store.ErrTransition)
	}
	c := copyRecord(r)
	c.Updated = s.stamp()
	c.ETag = s.nextETag()
	s.certs[c.Serial] = c
	r.Updated, r.ETag = c.Updated, c.ETag
	return nil
}

// Get implements store.Certificates.
func (s *Store) Get(ctx context.Context, serial string) (*store.Record, error) {
	if err := ctxErr(ctx, "reading record"); err != nil {
		return nil, err
	}
	c := store.NormalizeSerial(serial)
	if c == "" {
		return nil, fmt.Errorf("memstore: reading record %q: %w", serial, store.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.certs[c]
	if !ok {
		return nil, fmt.Errorf("memstore: reading record %s: %w", c, store.ErrNotFound)
	}
	return copyRecord(r), nil
}

// token is the continuation state: the serial of the last record examined. Serials are the sort key, so
// "everything after this serial" resumes exactly where the previous page stopped.
type token struct {
	After string `json:"a"`
}

func encodeToken(after string) string {
	b, _ := json.Marshal(token{After: after})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	var t token
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err == nil && store.NormalizeSerial(t.After) != t.After {
		err = fmt.Errorf("bad serial")
	}
	if err != nil || t.After == "" {
		return "", fmt.Errorf("memstore: malformed continuation token: %w", store.ErrNotFound)
	}
	return t.After, nil
}

func matches(r *store.Record, q *store.Query, subject string) bool {
	if q.Status != "" && r.Status != q.Status {
		return false
	}
	if q.DeviceID != "" && !slices.Contains(store.DeviceIDForms(q.DeviceID), r.DeviceID) {
		return false
	}
	if q.Requester != "" && r.Requester != q.Requester {
		return false
	}
	if q.PublicKey != "" && r.PublicKey != q.PublicKey {
		return false
	}
	if !q.Since.IsZero() && r.Created.Before(normTime(q.Since)) {
		return false
	}
	if !q.Until.IsZero() && !r.Created.Before(normTime(q.Until)) {
		return false
	}
	if subject != "" && !strings.Contains(strings.ToLower(r.Subject), subject) {
		return false
	}
	if q.Endpoint != "" && r.Endpoint != q.Endpoint {
		return false
	}
	if q.Source != "" && r.Source != q.Source {
		return false
	}
	return q.Name == "" || store.NameMatches(r, q.Name)
}

// Search implements store.Certificates. Since is inclusive and Until exclusive. Pages are cut in serial order
// and each page is sorted newest first.
func (s *Store) Search(ctx context.Context, q store.Query) ([]*store.Record, string, error) {
	if err := ctxErr(ctx, "searching records"); err != nil {
		return nil, "", err
	}
	after, err := decodeToken(q.Continuation)
	if err != nil {
		return nil, "", err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	subject := strings.ToLower(q.Subject)

	s.mu.Lock()
	defer s.mu.Unlock()
	serials := make([]string, 0, len(s.certs))
	for k := range s.certs {
		if k > after {
			serials = append(serials, k)
		}
	}
	sort.Strings(serials)
	var page []*store.Record
	next := ""
	for _, k := range serials {
		r := s.certs[k]
		if !matches(r, &q, subject) {
			continue
		}
		if len(page) == limit {
			next = encodeToken(page[len(page)-1].Serial)
			break
		}
		page = append(page, copyRecord(r))
	}
	sortNewestFirst(page)
	return page, next, nil
}

func sortNewestFirst(page []*store.Record) {
	sort.Slice(page, func(i, j int) bool {
		if !page[i].Created.Equal(page[j].Created) {
			return page[i].Created.After(page[j].Created)
		}
		return page[i].Serial < page[j].Serial
	})
}

// Pending implements store.Certificates: pending records created strictly before the cutoff, oldest first.
func (s *Store) Pending(ctx context.Context, before time.Time) ([]*store.Record, error) {
	if err := ctxErr(ctx, "listing pending records"); err != nil {
		return nil, err
	}
	before = normTime(before)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.Record
	for _, r := range s.certs {
		if r.Status == store.StatusPending && r.Created.Before(before) {
			out = append(out, copyRecord(r))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Serial < out[j].Serial
	})
	return out, nil
}

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty idempotency key")
	}
	if len(key) > MaxKey {
		return fmt.Errorf("idempotency key is %d bytes, over the %d byte limit", len(key), MaxKey)
	}
	return nil
}

// InsertBound implements store.Index: the record and the binding are written under one lock, so both or
// neither are visible.
func (s *Store) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	if err := ctxErr(ctx, "binding key"); err != nil {
		return store.Binding{}, err
	}
	if err := checkKey(key); err != nil {
		return store.Binding{}, fmt.Errorf("memstore: binding key: %w", err)
	}
	if err := checkRecord(r); err != nil {
		return store.Binding{}, fmt.Errorf("memstore: binding key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, bound := s.index[key]
	switch {
	case prev == nil && bound:
		return cur, fmt.Errorf("memstore: binding key: bound to %s: %w", cur.Serial, store.ErrExists)
	case prev != nil && !bound:
		return store.Binding{}, fmt.Errorf("memstore: rebinding key: %w", store.ErrNotFound)
	case prev != nil && (prev.ETag == "" || cur.ETag != prev.ETag):
		return cur, fmt.Errorf("memstore: rebinding key: %w", store.ErrConflict)
	}
	now, err := s.insertLocked(r)
	if err != nil {
		return store.Binding{}, err
	}
	b := store.Binding{Key: key, Serial: r.Serial, Created: now, ETag: s.nextETag()}
	s.index[key] = b
	return b, nil
}

// Lookup implements store.Index.
func (s *Store) Lookup(ctx context.Context, key string) (store.Binding, error) {
	if err := ctxErr(ctx, "looking up key"); err != nil {
		return store.Binding{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.index[key]
	if !ok {
		return store.Binding{}, fmt.Errorf("memstore: looking up key: %w", store.ErrNotFound)
	}
	return b, nil
}

// AddRevoked implements store.Revocations.
func (s *Store) AddRevoked(ctx context.Context, e store.Revoked) (store.Revoked, error) {
	if err := ctxErr(ctx, "adding revocation"); err != nil {
		return store.Revoked{}, err
	}
	c := store.NormalizeSerial(e.Serial)
	if c == "" {
		return store.Revoked{}, fmt.Errorf("memstore: adding revocation: serial %q is not a serial", e.Serial)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if kept, ok := s.revoked[c]; ok {
		return kept, nil // keep the first entry
	}
	s.revoked[c] = store.Revoked{Serial: c, RevokedAt: normTime(e.RevokedAt), Reason: e.Reason, NotAfter: normTime(e.NotAfter)}
	return s.revoked[c], nil
}

// ListRevoked implements store.Revocations, in serial order.
func (s *Store) ListRevoked(ctx context.Context) ([]store.Revoked, error) {
	if err := ctxErr(ctx, "listing revocations"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.Revoked, 0, len(s.revoked))
	for _, e := range s.revoked {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return out, nil
}

// GetRevoked implements store.Revocations.
func (s *Store) GetRevoked(ctx context.Context, serial string) (store.Revoked, error) {
	if err := ctxErr(ctx, "reading revocation"); err != nil {
		return store.Revoked{}, err
	}
	c := store.NormalizeSerial(serial)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.revoked[c]
	if c == "" || !ok {
		return store.Revoked{}, fmt.Errorf("memstore: reading revocation %q: %w", serial, store.ErrNotFound)
	}
	return e, nil
}

// ListCompromised implements store.Revocations.
func (s *Store) ListCompromised(ctx context.Context) ([]store.CompromisedKey, error) {
	if err := ctxErr(ctx, "listing compromised keys"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.CompromisedKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	return out, nil
}

// MarkCompromised implements store.Revocations.
func (s *Store) MarkCompromised(ctx context.Context, k store.CompromisedKey) (store.CompromisedKey, bool, error) {
	if err := ctxErr(ctx, "marking key compromised"); err != nil {
		return store.CompromisedKey{}, false, err
	}
	if !store.ValidKeyHash(k.PublicKey) {
		return store.CompromisedKey{}, false, fmt.Errorf("memstore: marking key compromised: %q is not a key hash", k.PublicKey)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if kept, ok := s.keys[k.PublicKey]; ok {
		return kept, false, nil // keep the first mark
	}
	k.MarkedAt = normTime(k.MarkedAt)
	s.keys[k.PublicKey] = k
	return k, true, nil
}

// Compromised implements store.Revocations.
func (s *Store) Compromised(ctx context.Context, publicKey string) (store.CompromisedKey, error) {
	if err := ctxErr(ctx, "reading compromised key"); err != nil {
		return store.CompromisedKey{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[publicKey]
	if !ok {
		return store.CompromisedKey{}, fmt.Errorf("memstore: reading compromised key: %w", store.ErrNotFound)
	}
	return k, nil
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

// GetMeta implements store.Meta.
func (s *Store) GetMeta(ctx context.Context, name string) ([]byte, string, error) {
	if err := ctxErr(ctx, "reading meta"); err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.meta[name]
	if !ok {
		return nil, "", fmt.Errorf("memstore: reading meta %q: %w", name, store.ErrNotFound)
	}
	return slices.Clone(m.value), m.etag, nil
}

// PutMeta implements store.Meta. Replacing a name that does not exist gives ErrNotFound.
func (s *Store) PutMeta(ctx context.Context, name string, value []byte, etag string) (string, error) {
	if err := ctxErr(ctx, "writing meta"); err != nil {
		return "", err
	}
	if err := checkMetaName(name); err != nil {
		return "", fmt.Errorf("memstore: writing meta: %w", err)
	}
	if len(value) > MaxMetaValue {
		return "", fmt.Errorf("memstore: writing meta %q: value is %d bytes, over the %d byte limit", name, len(value), MaxMetaValue)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.meta[name]
	switch {
	case etag == "" && ok:
		return "", fmt.Errorf("memstore: creating meta %q: %w", name, store.ErrExists)
	case etag != "" && !ok:
		return "", fmt.Errorf("memstore: replacing meta %q: %w", name, store.ErrNotFound)
	case etag != "" && cur.etag != etag:
		return "", fmt.Errorf("memstore: replacing meta %q: %w", name, store.ErrConflict)
	}
	v := slices.Clone(value)
	if len(v) == 0 {
		v = nil
	}
	m := metaEntry{value: v, etag: s.nextETag()}
	s.meta[name] = m
	return m.etag, nil
}

func queueKey(requestContext string) string {
	h := sha256.Sum256([]byte(requestContext))
	return hex.EncodeToString(h[:])
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
		return fmt.Errorf("nil request")
	}
	if r.RequestContext == "" {
		return fmt.Errorf("empty request context")
	}
	if !validWork(r.State) {
		return fmt.Errorf("unknown work state %q", r.State)
	}
	for name, v := range map[string]string{"RequestContext": r.RequestContext, "ErrorMessage": r.ErrorMessage, "SerialNumber": r.SerialNumber, "IssuerName": r.IssuerName} {
		if utf16Bytes(v) > MaxBinary {
			return fmt.Errorf("%s is over the %d byte property limit", name, MaxBinary)
		}
	}
	return nil
}

func copyRequest(r *store.RevocationRequest) *store.RevocationRequest {
	c := *r
	c.Downloaded = normTime(r.Downloaded)
	c.Applied = normTime(r.Applied)
	c.Uploaded = normTime(r.Uploaded)
	return &c
}

// EnqueueRevocation implements store.RevocationQueue. An empty State means WorkDownloaded and a zero
// Downloaded means now; both are written back to r.
func (s *Store) EnqueueRevocation(ctx context.Context, r *store.RevocationRequest) error {
	if err := ctxErr(ctx, "enqueueing revocation"); err != nil {
		return err
	}
	if r != nil && r.State == "" {
		r.State = store.WorkDownloaded
	}
	if err := checkRequest(r); err != nil {
		return fmt.Errorf("memstore: enqueueing revocation: %w", err)
	}
	k := queueKey(r.RequestContext)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.queue[k]; ok {
		return fmt.Errorf("memstore: enqueueing revocation: %w", store.ErrExists)
	}
	if r.Downloaded.IsZero() {
		r.Downloaded = s.stamp()
	}
	c := copyRequest(r)
	c.ETag = s.nextETag()
	s.queue[k] = c
	r.Downloaded, r.ETag = c.Downloaded, c.ETag
	return nil
}

// EnqueueRevocations implements store.RevocationQueue: all or none, as Table Storage's transaction. Each item
// gets what EnqueueRevocation would give it (State, Downloaded, ETag) only once all are written.
func (s *Store) EnqueueRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	const op = "enqueueing revocations"
	if err := ctxErr(ctx, op); err != nil {
		return err
	}
	if len(rs) > store.MaxRevocationBatch {
		return fmt.Errorf("memstore: %s: %d items, at most %d", op, len(rs), store.MaxRevocationBatch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		if r != nil && r.State == "" {
			r.State = store.WorkDownloaded
		}
		if err := checkRequest(r); err != nil {
			return fmt.Errorf("memstore: %s: %w", op, err)
		}
		k := queueKey(r.RequestContext)
		if seen[k] {
			// Table Storage refuses a transaction naming an entity twice.
			return fmt.Errorf("memstore: %s: %s named twice", op, r.RequestContext)
		}
		if _, ok := s.queue[k]; ok {
			return fmt.Errorf("memstore: %s: %w", op, store.ErrExists)
		}
		seen[k] = true
	}
	now := s.stamp()
	for _, r := range rs {
		c := copyRequest(r)
		if c.Downloaded.IsZero() {
			c.Downloaded = now
		}
		c.ETag = s.nextETag()
		s.queue[queueKey(r.RequestContext)] = c
		r.Downloaded, r.ETag = c.Downloaded, c.ETag
	}
	return nil
}

// UpdateRevocation implements store.RevocationQueue. An unknown item gives ErrNotFound.
func (s *Store) UpdateRevocation(ctx context.Context, r *store.RevocationRequest) error {
	if err := ctxErr(ctx, "updating revocation"); err != nil {
		return err
	}
	if err := checkRequest(r); err != nil {
		return fmt.Errorf("memstore: updating revocation: %w", err)
	}
	k := queueKey(r.RequestContext)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.queue[k]
	if !ok {
		return fmt.Errorf("memstore: updating revocation: %w", store.ErrNotFound)
	}
	if r.ETag == "" || cur.ETag != r.ETag {
		return fmt.Errorf("memstore: updating revocation: %w", store.ErrConflict)
	}
	c := copyRequest(r)
	c.ETag = s.nextETag()
	s.queue[k] = c
	r.ETag = c.ETag
	return nil
}

// UpdateRevocations implements store.RevocationQueue: all or none, as Table Storage's transaction.
func (s *Store) UpdateRevocations(ctx context.Context, rs []*store.RevocationRequest) error {
	if err := ctxErr(ctx, "updating revocations"); err != nil {
		return err
	}
	if len(rs) > store.MaxRevocationBatch {
		return fmt.Errorf("memstore: updating revocations: %d items, at most %d", len(rs), store.MaxRevocationBatch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		if err := checkRequest(r); err != nil {
			return fmt.Errorf("memstore: updating revocations: %w", err)
		}
		k := queueKey(r.RequestContext)
		cur, ok := s.queue[k]
		switch {
		case !ok:
			return fmt.Errorf("memstore: updating revocations: %w", store.ErrNotFound)
		case seen[k]:
			// Table Storage refuses a transaction naming an entity twice.
			return fmt.Errorf("memstore: updating revocations: %s named twice", r.RequestContext)
		case r.ETag == "" || cur.ETag != r.ETag:
			return fmt.Errorf("memstore: updating revocations: %w", store.ErrConflict)
		}
		seen[k] = true
	}
	for _, r := range rs {
		c := copyRequest(r)
		c.ETag = s.nextETag()
		s.queue[queueKey(r.RequestContext)] = c
		r.ETag = c.ETag
	}
	return nil
}

// Revocation implements store.RevocationQueue.
func (s *Store) Revocation(ctx context.Context, requestContext string) (*store.RevocationRequest, error) {
	if err := ctxErr(ctx, "reading revocation"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.queue[queueKey(requestContext)]
	if !ok {
		return nil, fmt.Errorf("memstore: reading revocation: %w", store.ErrNotFound)
	}
	return copyRequest(r), nil
}

// OpenRevocations implements store.RevocationQueue. A limit of zero or less means no limit.
func (s *Store) OpenRevocations(ctx context.Context, limit int) ([]*store.RevocationRequest, error) {
	if err := ctxErr(ctx, "listing open revocations"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type item struct {
		key string
		r   *store.RevocationRequest
	}
	var open []item
	for k, r := range s.queue {
		if r.State == store.WorkDownloaded || r.State == store.WorkApplied {
			open = append(open, item{k, r})
		}
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
		out[i] = copyRequest(it.r)
	}
	return out, nil
}

// runKey mirrors the Table Storage row key of a sync run: the start time inverted so that an ascending key
// scan lists the newest run first, then the run ID to keep runs started in the same instant apart.
func runKey(started time.Time, id string) string {
	ns := started.UTC().UnixNano()
	if started.Before(time.Unix(0, 0)) {
		ns = 0
	}
	return fmt.Sprintf("%019d_%s", math.MaxInt64-ns, id)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func checkRun(run *store.SyncRun) error {
	for _, c := range run.ID {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("run ID %q may only hold letters, digits, '.', '_' and '-'", run.ID)
		}
	}
	if len(run.ID) > 128 {
		return fmt.Errorf("run ID is over 128 characters")
	}
	if err := store.CheckRunStart(*run); err != nil {
		return err
	}
	b, _ := json.Marshal(run.Errors)
	if utf16Bytes(string(b)) > MaxBinary {
		return fmt.Errorf("run errors are over the %d byte property limit", MaxBinary)
	}
	return nil
}

// RecordRun implements store.RevocationQueue. An empty ID gets a random one and a zero Started means now;
// recording the same run (ID and Started) twice gives ErrExists.
func (s *Store) RecordRun(ctx context.Context, run store.SyncRun) error {
	if err := ctxErr(ctx, "recording run"); err != nil {
		return err
	}
	if run.ID == "" {
		run.ID = randomID()
	}
	store.StartFromRunID(&run)
	if err := checkRun(&run); err != nil {
		return fmt.Errorf("memstore: recording run: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if run.Started.IsZero() {
		run.Started = s.stamp()
	}
	run = normRun(run)
	k := runKey(run.Started, run.ID)
	if _, ok := s.runs[k]; ok {
		return fmt.Errorf("memstore: recording run %s: %w", run.ID, store.ErrExists)
	}
	s.runs[k] = run
	return nil
}

// normRun is the run as Table Storage gives it back: times at its precision, no empty error list, nothing shared
// with the caller.
func normRun(run store.SyncRun) store.SyncRun {
	run.Started = normTime(run.Started)
	run.Finished = normTime(run.Finished)
	run.Errors = slices.Clone(run.Errors)
	if len(run.Errors) == 0 {
		run.Errors = nil
	}
	return run
}

// FinishRun implements store.RevocationQueue.
func (s *Store) FinishRun(ctx context.Context, run store.SyncRun) error {
	if err := ctxErr(ctx, "finishing run"); err != nil {
		return err
	}
	if run.ID == "" || run.Started.IsZero() {
		return errors.New("memstore: finishing run: the run's ID and start are required")
	}
	if err := checkRun(&run); err != nil {
		return fmt.Errorf("memstore: finishing run: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	run = normRun(run)
	k := runKey(run.Started, run.ID)
	if _, ok := s.runs[k]; !ok {
		return fmt.Errorf("memstore: finishing run %s: %w", run.ID, store.ErrNotFound)
	}
	s.runs[k] = run
	return nil
}

// RunByID implements store.RevocationQueue: by key for a store.NewRunID ID, as Table Storage reads it.
func (s *Store) RunByID(ctx context.Context, id string) (store.SyncRun, error) {
	if err := ctxErr(ctx, "reading run"); err != nil {
		return store.SyncRun{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := store.RunIDStart(id); ok {
		run, ok := s.runs[runKey(t, id)]
		if !ok {
			return store.SyncRun{}, fmt.Errorf("memstore: reading run %s: %w", id, store.ErrNotFound)
		}
		run.Errors = slices.Clone(run.Errors)
		return run, nil
	}
	for _, run := range s.runs {
		if id != "" && run.ID == id {
			run.Errors = slices.Clone(run.Errors)
			return run, nil
		}
	}
	return store.SyncRun{}, fmt.Errorf("memstore: reading run %q: %w", id, store.ErrNotFound)
}

// Runs implements store.RevocationQueue. A limit of zero or less means no limit.
func (s *Store) Runs(ctx context.Context, limit int) ([]store.SyncRun, error) {
	if err := ctxErr(ctx, "listing runs"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.runs))
	for k := range s.runs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]store.SyncRun, len(keys))
	for i, k := range keys {
		out[i] = s.runs[k]
		out[i].Errors = slices.Clone(out[i].Errors)
	}
	return out, nil
}

// PruneRuns implements store.RevocationQueue: the newest of the runs started before before first, as Table
// Storage lists them.
func (s *Store) PruneRuns(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := ctxErr(ctx, "pruning runs"); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("memstore: pruning runs: limit %d is not positive", limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.runs))
	for k, run := range s.runs {
		if run.Started.Before(before) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	keys = keys[:min(len(keys), limit)]
	for _, k := range keys {
		delete(s.runs, k)
	}
	return len(keys), nil
}

// Ping implements store.Store; memory always answers.
func (s *Store) Ping(ctx context.Context) error {
	return ctxErr(ctx, "ping")
}

func cloneBacklog(b store.Backlog) *store.Backlog {
	b.Reservations = slices.Clone(b.Reservations)
	return &b
}

// GetBacklog implements store.Backlogs.
func (s *Store) GetBacklog(ctx context.Context, publicKey string) (*store.Backlog, error) {
	if err := ctxErr(ctx, "reading backlog"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backlog[publicKey]
	if !ok {
		return nil, fmt.Errorf("memstore: reading backlog %q: %w", publicKey, store.ErrNotFound)
	}
	return cloneBacklog(b), nil
}

// PutBacklog implements store.Backlogs.
func (s *Store) PutBacklog(ctx context.Context, b *store.Backlog) error {
	if err := ctxErr(ctx, "writing backlog"); err != nil {
		return err
	}
	if !store.ValidKeyHash(b.PublicKey) {
		return fmt.Errorf("memstore: writing backlog: %q is not a key hash", b.PublicKey)
	}
	if len(b.Reservations) > store.MaxReservations {
		return fmt.Errorf("memstore: writing backlog %s: %d reservations, over %d", b.PublicKey, len(b.Reservations),
			store.MaxReservations)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.backlog[b.PublicKey]
	switch {
	case b.ETag == "" && ok:
		return fmt.Errorf("memstore: creating backlog %s: %w", b.PublicKey, store.ErrExists)
	case b.ETag != "" && !ok:
		return fmt.Errorf("memstore: replacing backlog %s: %w", b.PublicKey, store.ErrNotFound)
	case b.ETag != "" && cur.ETag != b.ETag:
		return fmt.Errorf("memstore: replacing backlog %s: %w", b.PublicKey, store.ErrConflict)
	}
	kept := *cloneBacklog(*b)
	for i := range kept.Reservations {
		kept.Reservations[i].At = normTime(kept.Reservations[i].At)
	}
	kept.ETag = s.nextETag()
	s.backlog[b.PublicKey] = kept
	b.ETag = kept.ETag
	return nil
}

// DeleteBacklog implements store.Backlogs.
func (s *Store) DeleteBacklog(ctx context.Context, publicKey, etag string) error {
	if err := ctxErr(ctx, "deleting backlog"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.backlog[publicKey]
	switch {
	case !ok:
		return fmt.Errorf("memstore: deleting backlog %q: %w", publicKey, store.ErrNotFound)
	case cur.ETag != etag:
		return fmt.Errorf("memstore: deleting backlog %s: %w", publicKey, store.ErrConflict)
	}
	delete(s.backlog, publicKey)
	return nil
}

// PruneBacklogs implements store.Backlogs.
func (s *Store) PruneBacklogs(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := ctxErr(ctx, "pruning backlogs"); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("memstore: pruning backlogs: limit %d is not positive", limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, b := range s.backlog {
		if n == limit {
			break
		}
		if b.Latest().Before(before) {
			delete(s.backlog, k)
			n++
		}
	}
	return n, nil
}
