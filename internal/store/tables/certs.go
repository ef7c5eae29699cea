package tables

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
)

const (
	// recordRowsBelow bounds the row keys of records: serials are upper-case hexadecimal, every other row of the
	// certs table (the idempotency bindings) has a row key that sorts after "G".
	recordRowsBelow = "G"

	defaultLimit = 50
	maxLimit     = 200
	// maxScan bounds the entities one Search call examines when the subject filter (applied here, not by the
	// service) rejects most of them; the caller continues with the token.
	maxScan = 5000
	// pageSize is the service's largest page.
	pageSize = 1000
)

// certsPK is the one partition of the certs table. Records and idempotency bindings share it so that a record
// and its binding commit in one entity-group transaction, and so that the writes of concurrent enrollments
// commit together (commit.go). Table Storage serves one partition at up to 2,000 entities per second; an
// enrollment reads or writes four (static endpoint) to about eight (Intune RenewalReq) entities here, so one
// deployment tops out at some 250–500 enrollments per second (README, Capacity).
const certsPK = "certs"

// recordsOnly is the filter clause that keeps a listing of the certs table to records.
var recordsOnly = "PartitionKey eq " + quote(certsPK) + " and RowKey lt " + quote(recordRowsBelow)

func validStatus(st store.Status) bool {
	switch st {
	case store.StatusPending, store.StatusIssued, store.StatusAbandoned, store.StatusRevoked:
		return true
	}
	return false
}

func checkRecord(r *store.Record) error {
	if r == nil {
		return errors.New("nil record")
	}
	if r.Serial == "" || store.NormalizeSerial(r.Serial) != r.Serial {
		return fmt.Errorf("serial %q is not canonical", r.Serial)
	}
	if !validStatus(r.Status) {
		return fmt.Errorf("unknown status %q", r.Status)
	}
	if len(r.PlannedDER) > MaxProperty {
		return fmt.Errorf("planned certificate is %d bytes, over the %d byte property limit", len(r.PlannedDER), MaxProperty)
	}
	if len(r.CertDER) > MaxProperty {
		return fmt.Errorf("certificate is %d bytes, over the %d byte property limit", len(r.CertDER), MaxProperty)
	}
	return nil
}

// recordKeys places a record: the certs partition, its serial as the row key. The serial must be canonical.
func recordKeys(serial string) (pk, rk string) {
	return certsPK, serial
}

func recordEntity(r *store.Record) entity {
	e := newEntity(recordKeys(r.Serial))
	e.str("Status", string(r.Status))
	e.str("Issuer", r.Issuer)
	e.str("Subject", r.Subject)
	e.jsonStr("SANs", r.SANs)
	e.time("NotBefore", r.NotBefore)
	e.time("NotAfter", r.NotAfter)
	e.str("SHA1", r.SHA1)
	e.str("SHA256", r.SHA256)
	e.str("PublicKey", r.PublicKey)
	e.str("CSRHash", r.CSRHash)
	e.str("Source", r.Source)
	e.str("Endpoint", r.Endpoint)
	e.str("Requester", r.Requester)
	e.str("Profile", r.Profile)
	e.str("TxID", r.TxID)
	e.str("DeviceID", r.DeviceID)
	e.str("DeviceObjectID", r.DeviceObjectID)
	e.str("RenewedFrom", r.RenewedFrom)
	e.str("RenewedTo", r.RenewedTo)
	e.time("ChainStarted", r.ChainStarted)
	e.time("ChainEnds", r.ChainEnds)
	e.binary("PlannedDER", r.PlannedDER)
	e.binary("CertDER", r.CertDER)
	e.str("IntuneSerial", r.IntuneSerial)
	e.str("CAConfiguration", r.CAConfiguration)
	e.boolean("IntuneNotified", r.IntuneNotified)
	e.boolean("Gated", r.Gated)
	e.boolean("Withheld", r.Withheld)
	e.boolean("GateUndecided", r.GateUndecided)
	e.time("RevokedAt", r.RevokedAt)
	e.int("RevocationReason", r.RevocationReason)
	e.str("RevokedBy", r.RevokedBy)
	e.str("RevocationRef", r.RevocationRef)
	e.str("Note", r.Note)
	e.time("Created", r.Created)
	e.time("Updated", r.Updated)
	return e
}

func decodeRecord(p props, etag string) (*store.Record, error) {
	d := decoder{p: p}
	r := &store.Record{
		Serial:           p.str("RowKey"),
		Status:           store.Status(p.str("Status")),
		Issuer:           p.str("Issuer"),
		Subject:          p.str("Subject"),
		SANs:             d.jsonStr("SANs"),
		NotBefore:        d.time("NotBefore"),
		NotAfter:         d.time("NotAfter"),
		SHA1:             p.str("SHA1"),
		SHA256:           p.str("SHA256"),
		PublicKey:        p.str("PublicKey"),
		CSRHash:          p.str("CSRHash"),
		Source:           p.str("Source"),
		Endpoint:         p.str("Endpoint"),
		Requester:        p.str("Requester"),
		Profile:          p.str("Profile"),
		TxID:             p.str("TxID"),
		DeviceID:         p.str("DeviceID"),
		DeviceObjectID:   p.str("DeviceObjectID"), // absent on records written before it was kept: ""
		RenewedFrom:      p.str("RenewedFrom"),
		RenewedTo:        p.str("RenewedTo"),
		ChainStarted:     d.time("ChainStarted"),
		ChainEnds:        d.time("ChainEnds"), // absent on records written before it was kept: zero
		PlannedDER:       d.binary("PlannedDER"),
		CertDER:          d.binary("CertDER"),
		IntuneSerial:     p.str("IntuneSerial"),
		CAConfiguration:  p.str("CAConfiguration"),
		IntuneNotified:   p.boolean("IntuneNotified"),
		Gated:            p.boolean("Gated"),
		Withheld:         p.boolean("Withheld"),
		GateUndecided:    p.boolean("GateUndecided"), // absent on records written before it was kept: false
		RevokedAt:        d.time("RevokedAt"),
		RevocationReason: d.int32("RevocationReason"),
		RevokedBy:        p.str("RevokedBy"),
		RevocationRef:    p.str("RevocationRef"),
		Note:             p.str("Note"),
		Created:          d.time("Created"),
		Updated:          d.time("Updated"),
		ETag:             etag,
	}
	if d.err != nil {
		return nil, fmt.Errorf("decoding record %s: %w", r.Serial, d.err)
	}
	return r, nil
}

// Insert implements store.Certificates. It sets r.Created (when zero), r.Updated and r.ETag.
func (s *Store) Insert(ctx context.Context, r *store.Record) error {
	if err := checkRecord(r); err != nil {
		return fmt.Errorf("tables: inserting record: %w", err)
	}
	now := s.stamp()
	created := normTime(r.Created)
	if created.IsZero() {
		created = now
	}
	e := recordEntity(r)
	e.time("Created", created)
	e.time("Updated", now)
	etag, err := s.add(ctx, s.certs, "inserting record "+r.Serial, e)
	if err != nil {
		return err
	}
	r.Created, r.Updated, r.ETag = created, now, etag
	return nil
}

// Update implements store.Certificates. The write is conditioned on r.ETag, the version the caller read at
// status from; a status change must be allowed by from.CanMove, and a write that keeps the status (from ==
// r.Status) is an in-state update of bookkeeping fields such as IntuneNotified. The stored status itself is not
// re-read: the ETag guarantees the record is still the one the caller read. The write is a merge: properties a
// newer version added to the record stay, and a zero time or an empty certificate leaves the stored one (no
// transition removes either).
func (s *Store) Update(ctx context.Context, r *store.Record, from store.Status) error {
	if err := checkRecord(r); err != nil {
		return fmt.Errorf("tables: updating record: %w", err)
	}
	if r.Status != from && !from.CanMove(r.Status) {
		return fmt.Errorf("tables: updating record %s from %s to %s: %w", r.Serial, from, r.Status, store.ErrTransition)
	}
	now := s.stamp()
	e := recordEntity(r)
	e.time("Updated", now)
	etag, err := s.merge(ctx, s.certs, "updating record "+r.Serial, e, r.ETag)
	if err != nil {
		return err
	}
	r.Updated, r.ETag = now, etag
	return nil
}

// Get implements store.Certificates.
func (s *Store) Get(ctx context.Context, serial string) (*store.Record, error) {
	c := store.NormalizeSerial(serial)
	if c == "" {
		return nil, fmt.Errorf("tables: reading record %q: %w", serial, store.ErrNotFound)
	}
	pk, rk := recordKeys(c)
	p, etag, err := s.read(ctx, s.certs, "reading record "+c, pk, rk)
	if err != nil {
		return nil, err
	}
	r, err := decodeRecord(p, etag)
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	return r, nil
}

// token is the continuation state: the serial of the last record examined, or, when a call stopped at
// Query.ScanPages between two pages of the service, the service's own continuation. The service lists in key order
// (serial order within the one partition), so "after serial" resumes exactly where the previous page stopped,
// whatever the client-side subject filter consumed, and survives inserts between pages.
type token struct {
	After  string              `json:"a,omitempty"`
	Server *serverContinuation `json:"s,omitempty"`
}

func encodeToken(after string) string {
	b, _ := json.Marshal(token{After: after})
	return base64.RawURLEncoding.EncodeToString(b)
}

func encodeServerToken(c *serverContinuation) string {
	b, _ := json.Marshal(token{Server: c})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeToken reads a Search token: one of After and Server set.
func decodeToken(s string) (token, error) {
	var t token
	if s == "" {
		return t, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	switch {
	case err != nil, t.Server != nil && (t.After != "" || t.Server.PK == ""),
		t.Server == nil && (t.After == "" || store.NormalizeSerial(t.After) != t.After):
		return token{}, fmt.Errorf("tables: malformed continuation token: %w", store.ErrNotFound)
	}
	return t, nil
}

// Search implements store.Certificates. Status, DeviceID, Requester, Since (inclusive) and Until (exclusive)
// are filtered by the service; the subject substring here. Pages are cut in serial order and each page is
// sorted newest first. A page can hold fewer than Limit records, none even, while more follow when the subject
// filter rejected many or the service's pages reached q.ScanPages; the caller keeps following the token until it
// is empty.
func (s *Store) Search(ctx context.Context, q store.Query) ([]*store.Record, string, error) {
	tok, err := decodeToken(q.Continuation)
	if err != nil {
		return nil, "", err
	}
	after := tok.After
	limit := q.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)

	clauses := []string{recordsOnly}
	if after != "" {
		clauses = append(clauses, "RowKey gt "+quote(after))
	}
	if q.Status != "" {
		clauses = append(clauses, "Status eq "+quote(string(q.Status)))
	}
	if q.DeviceID != "" {
		var forms []string
		for _, f := range store.DeviceIDForms(q.DeviceID) {
			forms = append(forms, "DeviceID eq "+quote(f))
		}
		clauses = append(clauses, "("+strings.Join(forms, " or ")+")")
	}
	if q.Requester != "" {
		clauses = append(clauses, "Requester eq "+quote(q.Requester))
	}
	if q.PublicKey != "" {
		clauses = append(clauses, "PublicKey eq "+quote(q.PublicKey))
	}
	if q.Endpoint != "" {
		clauses = append(clauses, "Endpoint eq "+quote(q.Endpoint))
	}
	if q.Source != "" {
		clauses = append(clauses, "Source eq "+quote(q.Source))
	}
	if !q.Since.IsZero() {
		clauses = append(clauses, "Created ge "+dateLiteral(q.Since))
	}
	if !q.Until.IsZero() {
		clauses = append(clauses, "Created lt "+dateLiteral(q.Until))
	}
	filter := strings.Join(clauses, " and ")
	subject := strings.ToLower(q.Subject)
	top := int32(limit + 1) // one more than a page tells whether another page follows
	if subject != "" || q.Name != "" {
		top = pageSize
	}

	var page []*store.Record
	last, scanned, more := after, 0, false
	opts := &aztables.ListEntitiesOptions{Filter: &filter, Top: &top}
	if tok.Server != nil {
		opts.NextPartitionKey = &tok.Server.PK
		if tok.Server.RK != "" {
			opts.NextRowKey = &tok.Server.RK
		}
	}
	stopped, err := s.listRawBounded(ctx, s.certs, "searching records", opts, q.ScanPages,
		func(raw []byte) (bool, error) {
			p, etag, err := decodeEntity(raw)
			if err != nil {
				return false, err
			}
			if scanned >= s.cfg.maxScan {
				more = true
				return false, nil
			}
			r, err := decodeRecord(p, etag)
			if err != nil {
				return false, err
			}
			if subject != "" && !strings.Contains(strings.ToLower(r.Subject), subject) || q.Name != "" && !store.NameMatches(r, q.Name) {
				scanned++
				last = r.Serial
				return true, nil
			}
			if len(page) == limit {
				more = true
				return false, nil
			}
			scanned++
			last = r.Serial
			page = append(page, r)
			return true, nil
		})
	if err != nil {
		return nil, "", err
	}
	sort.Slice(page, func(i, j int) bool {
		if !page[i].Created.Equal(page[j].Created) {
			return page[i].Created.After(page[j].Created)
		}
		return page[i].Serial < page[j].Serial
	})
	next := ""
	switch {
	case more:
		next = encodeToken(last)
	case stopped != nil:
		next = encodeServerToken(stopped)
	}
	return page, next, nil
}

// Pending implements store.Certificates: pending records created strictly before the cutoff, oldest first.
func (s *Store) Pending(ctx context.Context, before time.Time) ([]*store.Record, error) {
	filter := recordsOnly + " and Status eq " + quote(string(store.StatusPending)) +
		" and Created lt " + dateLiteral(before)
	top := int32(pageSize)
	var out []*store.Record
	err := s.list(ctx, s.certs, "listing pending records", &aztables.ListEntitiesOptions{Filter: &filter, Top: &top},
		func(p props, etag string) (bool, error) {
			r, err := decodeRecord(p, etag)
			if err != nil {
				return false, err
			}
			out = append(out, r)
			return true, nil
		})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Serial < out[j].Serial
	})
	return out, nil
}
