// Package storetest holds the contract every store.Store implementation must pass, and FaultStore, a wrapper
// that injects failures for tests of the issuance and revocation paths.
//
// The contract pins down behaviour the CA relies on for "loses no data" (reliability.md §5): inserts never
// overwrite, updates are conditioned on the ETag and the state machine, exactly one of many concurrent writers
// wins, and reads accept any spelling of a serial.
package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// Run runs the contract against stores made by newStore. Every subtest gets its own empty store and runs in
// parallel with the others.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"InsertGet", testInsertGet},
		{"InsertDuplicate", testInsertDuplicate},
		{"InsertRejectsBadInput", testInsertRejectsBadInput},
		{"InsertLargestNames", testInsertLargestNames},
		{"GetNormalizesSerial", testGetNormalizesSerial},
		{"Transitions", testTransitions},
		{"InStateUpdate", testInStateUpdate},
		{"StaleETag", testStaleETag},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Pending", testPending},
		{"SearchFilters", testSearchFilters},
		{"SearchPagination", testSearchPagination},
		{"SearchDefaultLimit", testSearchDefaultLimit},
		{"SearchBadToken", testSearchBadToken},
		{"IndexBindLookup", testIndexBindLookup},
		{"IndexBindSerialCollision", testIndexBindSerialCollision},
		{"IndexRebind", testIndexRebind},
		{"IndexBindRace", testIndexBindRace},
		{"IndexRebindRace", testIndexRebindRace},
		{"Revoked", testRevoked},
		{"CompromisedKeys", testCompromisedKeys},
		{"Meta", testMeta},
		{"MetaLarge", testMetaLarge},
		{"QueueEnqueueUpdate", testQueueEnqueueUpdate},
		{"QueueUpdateMany", testQueueUpdateMany},
		{"QueueEnqueueMany", testQueueEnqueueMany},
		{"QueueOpen", testQueueOpen},
		{"Runs", testRuns},
		{"RunIDs", testRunIDs},
		{"PruneRuns", testPruneRuns},
		{"Backlog", testBacklog},
		{"BacklogRace", testBacklogRace},
		{"PruneBacklogs", testPruneBacklogs},
		{"PruneBacklogsMany", testPruneBacklogsMany},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// NewSerial returns a random canonical serial (128 bits, no leading zero), as the CA allocates them.
func NewSerial() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] |= 0x10
	return store.SerialString(new(big.Int).SetBytes(b))
}

// base is a fixed instant with sub-second digits that survive Table Storage's 100 ns resolution.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897900, time.UTC)

// FullRecord returns a pending record with every field set, for round-trip checks.
func FullRecord(serial string) *store.Record {
	return &store.Record{
		Serial:           serial,
		Status:           store.StatusPending,
		Issuer:           "CN=Test Issuing CA,O=Acme",
		Subject:          "CN=device-" + strings.ToLower(serial) + ",O=Acme",
		SANs:             []string{"dns:device.example.com", "uri:urn:uuid:00000000-0000-0000-0000-000000000001"},
		NotBefore:        base.Add(-time.Minute),
		NotAfter:         base.Add(365 * 24 * time.Hour),
		SHA1:             "0A1B",
		SHA256:           "0A1B2C",
		PublicKey:        "abcdef",
		CSRHash:          "012345",
		Source:           store.SourceSCEP,
		Endpoint:         "intune",
		Requester:        "intune",
		Profile:          "device",
		TxID:             "tx-" + serial,
		DeviceID:         "11111111-2222-3333-4444-555555555555",
		DeviceObjectID:   "66666666-7777-8888-9999-aaaaaaaaaaaa",
		RenewedFrom:      "5C0123456789ABCDEF0123456789ABCDEF",
		RenewedTo:        "6D0123456789ABCDEF0123456789ABCDEF",
		ChainStarted:     base.Add(-400 * 24 * time.Hour),
		ChainEnds:        base.Add(500 * 24 * time.Hour),
		PlannedDER:       bytes.Repeat([]byte{0x30, 0x82, 0x01}, 400),
		IntuneSerial:     serial,
		CAConfiguration:  "ca.example.com\\Test CA",
		Gated:            true,
		RevocationReason: 0,
		Note:             "it's a test",
		Created:          base,
	}
}

// DiffRecords lists the fields in which got differs from want, ignoring ETag and Updated (set by the store).
// Times compare by instant and empty slices equal nil ones.
func DiffRecords(got, want *store.Record) []string {
	var diffs []string
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if name == "ETag" || name == "Updated" {
			continue
		}
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		same := false
		switch gt := g.(type) {
		case time.Time:
			same = gt.Equal(w.(time.Time))
		case []byte:
			same = bytes.Equal(gt, w.([]byte))
		case []string:
			same = slices.Equal(gt, w.([]string))
		default:
			same = reflect.DeepEqual(g, w)
		}
		if !same {
			diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
	}
	return diffs
}

func mustInsert(t *testing.T, s store.Store, r *store.Record) {
	t.Helper()
	if err := s.Insert(t.Context(), r); err != nil {
		t.Fatalf("Insert(%s): %v", r.Serial, err)
	}
}

func mustGet(t *testing.T, s store.Store, serial string) *store.Record {
	t.Helper()
	r, err := s.Get(t.Context(), serial)
	if err != nil {
		t.Fatalf("Get(%s): %v", serial, err)
	}
	return r
}

func mustUpdate(t *testing.T, s store.Store, r *store.Record, to store.Status) {
	t.Helper()
	from := r.Status
	r.Status = to
	if err := s.Update(t.Context(), r, from); err != nil {
		t.Fatalf("Update(%s, %s→%s): %v", r.Serial, from, to, err)
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testInsertGet(t *testing.T, s store.Store) {
	r := FullRecord(NewSerial())
	mustInsert(t, s, r)
	if r.ETag == "" {
		t.Error("Insert left ETag empty")
	}
	if r.Updated.IsZero() {
		t.Error("Insert left Updated zero")
	}
	got := mustGet(t, s, r.Serial)
	if d := DiffRecords(got, r); d != nil {
		t.Errorf("Get after Insert differs:\n%s", strings.Join(d, "\n"))
	}
	if got.ETag != r.ETag {
		t.Errorf("Get ETag = %q, Insert gave %q", got.ETag, r.ETag)
	}

	// Issue it with every remaining field set and read it back.
	r.CertDER = bytes.Repeat([]byte{0x30, 0x82}, 700)
	r.SHA1, r.SHA256 = "AA", "BB"
	r.IntuneNotified, r.Withheld, r.GateUndecided = true, true, true
	mustUpdate(t, s, r, store.StatusIssued)
	// The forward link is bookkeeping written after issuance, and moved later: an in-state update.
	r.RenewedTo = "7E0123456789ABCDEF0123456789ABCDEF"
	mustUpdate(t, s, r, store.StatusIssued)
	if got := mustGet(t, s, r.Serial); got.RenewedTo != r.RenewedTo {
		t.Errorf("RenewedTo after an in-state update = %q, want %q", got.RenewedTo, r.RenewedTo)
	}
	r.RevokedAt = base.Add(time.Hour)
	r.RevocationReason = 4
	r.RevokedBy = "admin@example.com"
	r.RevocationRef = "ctx-'1'"
	mustUpdate(t, s, r, store.StatusRevoked)
	got = mustGet(t, s, r.Serial)
	if d := DiffRecords(got, r); d != nil {
		t.Errorf("Get after Update differs:\n%s", strings.Join(d, "\n"))
	}

	// A record with no optional fields round-trips as zero values.
	bare := &store.Record{Serial: NewSerial(), Status: store.StatusPending}
	mustInsert(t, s, bare)
	if bare.Created.IsZero() {
		t.Error("Insert did not set Created on a record without one")
	}
	if d := DiffRecords(mustGet(t, s, bare.Serial), bare); d != nil {
		t.Errorf("minimal record differs:\n%s", strings.Join(d, "\n"))
	}
}

func testInsertDuplicate(t *testing.T, s store.Store) {
	r := FullRecord(NewSerial())
	mustInsert(t, s, r)
	dup := FullRecord(r.Serial)
	dup.Subject = "CN=intruder"
	if err := s.Insert(t.Context(), dup); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Insert = %v, want ErrExists", err)
	}
	if got := mustGet(t, s, r.Serial); got.Subject != r.Subject || got.ETag != r.ETag {
		t.Errorf("duplicate Insert changed the record: subject %q etag %q", got.Subject, got.ETag)
	}
}

func testInsertRejectsBadInput(t *testing.T, s store.Store) {
	ctx := t.Context()
	serial := NewSerial()
	for name, r := range map[string]*store.Record{
		"lower-case serial": {Serial: strings.ToLower(serial), Status: store.StatusPending},
		"leading zero":      {Serial: "0" + serial, Status: store.StatusPending},
		"empty serial":      {Status: store.StatusPending},
		"unknown status":    {Serial: serial, Status: "bogus"},
		"oversized DER":     {Serial: serial, Status: store.StatusPending, PlannedDER: make([]byte, 70*1024)},
	} {
		if err := s.Insert(ctx, r); err == nil {
			t.Errorf("Insert with %s succeeded", name)
		} else if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Insert with %s = %v, want a validation error", name, err)
		}
	}
	if _, err := s.Get(ctx, serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rejected record was stored: Get = %v", err)
	}
}

// testInsertLargestNames stores a record with as many and as long names as policy allows (32 SANs, URIs of 512
// characters: more than a CSR of at most 16 KiB can even carry), written in a character JSON encoders may escape:
// a caller the profile allows such names (an /api/csr application under uri=*) gets a record, not a store error.
func testInsertLargestNames(t *testing.T, s store.Store) {
	const maxSANs, maxURILen = 32, 512 // policy's limits (internal/policy/csr.go)
	prefix := "https://app.example/?"
	r := FullRecord(NewSerial())
	r.SANs = nil
	for range maxSANs {
		r.SANs = append(r.SANs, "uri:"+prefix+strings.Repeat("&", maxURILen-len(prefix)))
	}
	r.SANs[0] = "email:" + strings.Repeat("&", 240) + "@example.com"
	mustInsert(t, s, r)
	if d := DiffRecords(mustGet(t, s, r.Serial), r); d != nil {
		t.Errorf("Get after Insert differs:\n%s", strings.Join(d, "\n"))
	}
}

func testGetNormalizesSerial(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := &store.Record{Serial: "1A2B3C4D5E6F", Status: store.StatusPending}
	mustInsert(t, s, r)
	for _, spelling := range []string{"1A2B3C4D5E6F", "1a2b3c4d5e6f", "001A2B3C4D5E6F", "0x1a2b3c4d5e6f", "1a:2b:3c:4d:5e:6f", " 1A2B 3C4D 5E6F "} {
		got, err := s.Get(ctx, spelling)
		if err != nil {
			t.Errorf("Get(%q): %v", spelling, err)
			continue
		}
		if got.Serial != r.Serial {
			t.Errorf("Get(%q).Serial = %q", spelling, got.Serial)
		}
	}
	for _, bad := range []string{"", "zz", "0", "1A2B3C4D5E6E", "1A2B3C4D5E6F00"} {
		if _, err := s.Get(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

var allStatuses = []store.Status{store.StatusPending, store.StatusIssued, store.StatusAbandoned, store.StatusRevoked}

// recordAt inserts a record and walks it through allowed transitions to st.
func recordAt(t *testing.T, s store.Store, st store.Status) *store.Record {
	t.Helper()
	r := FullRecord(NewSerial())
	mustInsert(t, s, r)
	switch st {
	case store.StatusIssued, store.StatusAbandoned:
		mustUpdate(t, s, r, st)
	case store.StatusRevoked:
		mustUpdate(t, s, r, store.StatusIssued)
		mustUpdate(t, s, r, store.StatusRevoked)
	}
	return r
}

func testTransitions(t *testing.T, s store.Store) {
	ctx := t.Context()
	allowed := map[[2]store.Status]bool{
		{store.StatusPending, store.StatusIssued}:    true,
		{store.StatusPending, store.StatusAbandoned}: true,
		{store.StatusPending, store.StatusRevoked}:   true,
		{store.StatusIssued, store.StatusRevoked}:    true,
		{store.StatusAbandoned, store.StatusRevoked}: true,
	}
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			if from == to {
				continue // in-state updates: testInStateUpdate
			}
			r := recordAt(t, s, from)
			before := r.ETag
			r.Status = to
			err := s.Update(ctx, r, from)
			got := mustGet(t, s, r.Serial)
			if allowed[[2]store.Status{from, to}] {
				if err != nil {
					t.Errorf("%s→%s: %v, want success", from, to, err)
				} else if got.Status != to || r.ETag == before || got.ETag != r.ETag {
					t.Errorf("%s→%s: stored status %s, etag %q→%q (stored %q)", from, to, got.Status, before, r.ETag, got.ETag)
				}
				continue
			}
			if !errors.Is(err, store.ErrTransition) {
				t.Errorf("%s→%s: %v, want ErrTransition", from, to, err)
			}
			if got.Status != from || got.ETag != before {
				t.Errorf("%s→%s refused but stored status is %s, etag %q (was %q)", from, to, got.Status, got.ETag, before)
			}
		}
	}
}

func testInStateUpdate(t *testing.T, s store.Store) {
	for _, st := range allStatuses {
		r := recordAt(t, s, st)
		r.IntuneNotified = true
		r.Note = "notified " + string(st)
		if err := s.Update(t.Context(), r, st); err != nil {
			t.Errorf("in-state update at %s: %v", st, err)
			continue
		}
		got := mustGet(t, s, r.Serial)
		if !got.IntuneNotified || got.Note != r.Note || got.Status != st {
			t.Errorf("in-state update at %s not stored: %+v", st, got)
		}
	}
}

func testStaleETag(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := FullRecord(NewSerial())
	mustInsert(t, s, r)
	stale := *r
	mustUpdate(t, s, r, store.StatusIssued)

	stale.Status = store.StatusAbandoned
	if err := s.Update(ctx, &stale, store.StatusPending); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Update with stale ETag = %v, want ErrConflict", err)
	}
	noTag := *r
	noTag.ETag = ""
	noTag.Status = store.StatusRevoked
	if err := s.Update(ctx, &noTag, store.StatusIssued); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Update without ETag = %v, want ErrConflict", err)
	}
	if got := mustGet(t, s, r.Serial); got.Status != store.StatusIssued || got.ETag != r.ETag {
		t.Errorf("refused updates changed the record: %s %q", got.Status, got.ETag)
	}

	missing := FullRecord(NewSerial())
	missing.ETag = r.ETag
	missing.Status = store.StatusIssued
	if err := s.Update(ctx, missing, store.StatusPending); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update of a missing record = %v, want ErrNotFound", err)
	}
}

func testConcurrentUpdates(t *testing.T, s store.Store) {
	r := FullRecord(NewSerial())
	mustInsert(t, s, r)
	const n = 20
	errs := make([]error, n)
	copies := make([]*store.Record, n)
	var wg sync.WaitGroup
	for i := range n {
		c := *r
		c.Note = fmt.Sprintf("writer %d", i)
		if i%2 == 0 {
			c.Status = store.StatusIssued
		} else {
			c.Status = store.StatusAbandoned
		}
		copies[i] = &c
		wg.Go(func() { errs[i] = s.Update(t.Context(), copies[i], store.StatusPending) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("writers %d and %d both won", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("writer %d: %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	got := mustGet(t, s, r.Serial)
	if got.Note != copies[winner].Note || got.Status != copies[winner].Status || got.ETag != copies[winner].ETag {
		t.Errorf("stored %q/%s/%q, winner wrote %q/%s/%q", got.Note, got.Status, got.ETag,
			copies[winner].Note, copies[winner].Status, copies[winner].ETag)
	}
}

func serials(rs []*store.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Serial
	}
	return out
}

func testPending(t *testing.T, s store.Store) {
	var want []string
	for i, st := range []store.Status{store.StatusPending, store.StatusIssued, store.StatusPending, store.StatusAbandoned, store.StatusPending, store.StatusPending} {
		r := FullRecord(NewSerial())
		r.Created = base.Add(time.Duration(5-i) * time.Minute) // later records are older
		mustInsert(t, s, r)
		if st != store.StatusPending {
			mustUpdate(t, s, r, st)
		}
		if st == store.StatusPending && i > 0 { // record 0 is at base+5m, after the cutoff
			want = append(want, r.Serial)
		}
	}
	slices.Reverse(want) // oldest first
	got, err := s.Pending(t.Context(), base.Add(5*time.Minute))
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	if !slices.Equal(serials(got), want) {
		t.Errorf("Pending = %v, want %v (oldest first)", serials(got), want)
	}
}

// searchAll follows continuation tokens to the end and checks each page's size and order.
func searchAll(t *testing.T, s store.Store, q store.Query) (all []string, pages int) {
	t.Helper()
	for pages = 1; pages < 100; pages++ {
		page, next, err := s.Search(t.Context(), q)
		if err != nil {
			t.Fatalf("Search(%+v) page %d: %v", q, pages, err)
		}
		if q.Limit > 0 && len(page) > q.Limit {
			t.Errorf("page %d has %d records, limit %d", pages, len(page), q.Limit)
		}
		if next != "" && len(page) != q.Limit && q.Limit > 0 {
			t.Errorf("page %d has %d records but more follow (limit %d)", pages, len(page), q.Limit)
		}
		if !sort.SliceIsSorted(page, func(i, j int) bool { return page[i].Created.After(page[j].Created) }) {
			t.Errorf("page %d is not newest first", pages)
		}
		all = append(all, serials(page)...)
		if next == "" {
			return all, pages
		}
		q.Continuation = next
	}
	t.Fatal("Search did not finish within 100 pages")
	return nil, 0
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func testSearchFilters(t *testing.T, s store.Store) {
	type spec struct {
		subject, device, requester string
		status                     store.Status
		source, endpoint           string
		sans                       []string
	}
	specs := []spec{
		{"CN=Alice Example,O=Acme", "dev-1", "o'brien@example.com", store.StatusIssued, store.SourceAPI, "api", []string{"dns:alice.acme.example"}},
		{"CN=alice-laptop,O=Acme", "dev-2", "intune", store.StatusPending, store.SourceSCEP, "intune", []string{"upn:Zed@Acme.example"}},
		{"CN=Bob,O=Other", "DEV-1", "intune", store.StatusRevoked, store.SourceSCEP, "intune", nil},
		{"CN=Carol,O=Acme", "dev-3", "o'brien@example.com", store.StatusPending, store.SourceSCEP, "static", nil},
		{"CN=Dave,O=Other", "", "app-1", store.StatusAbandoned, store.SourceAPI, "api", []string{"dns:zed.other.example"}},
	}
	var ser []string
	for i, sp := range specs {
		r := FullRecord(NewSerial())
		r.Subject, r.DeviceID, r.Requester = sp.subject, sp.device, sp.requester
		r.Source, r.Endpoint, r.SANs = sp.source, sp.endpoint, sp.sans
		r.PublicKey = fmt.Sprintf("%064x", i%2) // two keys: records 0, 2, 4 share one, 1 and 3 the other
		r.Created = base.Add(time.Duration(i) * time.Hour)
		mustInsert(t, s, r)
		switch sp.status {
		case store.StatusIssued, store.StatusAbandoned:
			mustUpdate(t, s, r, sp.status)
		case store.StatusRevoked:
			mustUpdate(t, s, r, store.StatusIssued)
			mustUpdate(t, s, r, store.StatusRevoked)
		}
		ser = append(ser, r.Serial)
	}
	cases := []struct {
		name string
		q    store.Query
		want []int
	}{
		{"all", store.Query{}, []int{0, 1, 2, 3, 4}},
		{"subject case-insensitive", store.Query{Subject: "ALICE"}, []int{0, 1}},
		{"subject org", store.Query{Subject: "o=acme"}, []int{0, 1, 3}},
		{"device", store.Query{DeviceID: "dev-1"}, []int{0, 2}},
		{"device in either case", store.Query{DeviceID: "Dev-1"}, []int{0, 2}},
		{"device injection", store.Query{DeviceID: "x' or DeviceID ne 'x"}, nil},
		{"requester with quote", store.Query{Requester: "o'brien@example.com"}, []int{0, 3}},
		{"requester injection", store.Query{Requester: "x' or Requester ne 'x"}, nil},
		{"status", store.Query{Status: store.StatusPending}, []int{1, 3}},
		{"since inclusive", store.Query{Since: base.Add(3 * time.Hour)}, []int{3, 4}},
		{"until exclusive", store.Query{Until: base.Add(2 * time.Hour)}, []int{0, 1}},
		{"window", store.Query{Since: base.Add(time.Hour), Until: base.Add(4 * time.Hour)}, []int{1, 2, 3}},
		{"combined", store.Query{Subject: "acme", Requester: "o'brien@example.com", Status: store.StatusPending}, []int{3}},
		{"none", store.Query{DeviceID: "nope"}, nil},
		{"name in subject or SAN", store.Query{Name: "ZED@"}, []int{1}},
		{"name across fields", store.Query{Name: "zed"}, []int{1, 4}},
		{"name in subject", store.Query{Name: "carol"}, []int{3}},
		{"endpoint", store.Query{Endpoint: "intune"}, []int{1, 2}},
		{"source", store.Query{Source: store.SourceAPI}, []int{0, 4}},
		{"source endpoint injection", store.Query{Endpoint: "x' or Endpoint ne 'x"}, nil},
		{"name and source", store.Query{Name: "acme", Source: store.SourceSCEP}, []int{1, 3}},
		{"public key", store.Query{PublicKey: fmt.Sprintf("%064x", 1)}, []int{1, 3}},
		{"public key and status", store.Query{PublicKey: fmt.Sprintf("%064x", 0), Status: store.StatusRevoked}, []int{2}},
		{"public key injection", store.Query{PublicKey: "x' or PublicKey ne 'x"}, nil},
	}
	for _, tc := range cases {
		var want []string
		for _, i := range tc.want {
			want = append(want, ser[i])
		}
		got, _ := searchAll(t, s, tc.q)
		if !sameSet(got, want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, want)
		}
	}

	// One page holds the matches newest first.
	page, next, err := s.Search(t.Context(), store.Query{Subject: "acme"})
	if err != nil || next != "" {
		t.Fatalf("Search: %v, next %q", err, next)
	}
	if want := []string{ser[3], ser[1], ser[0]}; !slices.Equal(serials(page), want) {
		t.Errorf("page order %v, want newest first %v", serials(page), want)
	}
}

func testSearchPagination(t *testing.T, s store.Store) {
	var all, acme []string
	for i := range 12 {
		r := FullRecord(NewSerial())
		r.Created = base.Add(time.Duration(i) * time.Second)
		if i%3 == 0 {
			r.Subject = fmt.Sprintf("CN=match-%d,O=Needle", i)
			acme = append(acme, r.Serial)
		} else {
			r.Subject = fmt.Sprintf("CN=other-%d,O=Hay", i)
		}
		mustInsert(t, s, r)
		all = append(all, r.Serial)
	}
	got, pages := searchAll(t, s, store.Query{Limit: 5})
	if !sameSet(got, all) || len(got) != len(all) || pages != 3 {
		t.Errorf("paged listing: %d records in %d pages, want %d in 3 without duplicates", len(got), pages, len(all))
	}
	got, pages = searchAll(t, s, store.Query{Limit: 1, Subject: "needle"})
	if !sameSet(got, acme) || len(got) != len(acme) || pages != len(acme) {
		t.Errorf("paged filtered listing: %v in %d pages, want %v in %d", got, pages, acme, len(acme))
	}
	got, pages = searchAll(t, s, store.Query{Limit: 2, Subject: "needle", Since: base.Add(time.Second)})
	if !sameSet(got, acme[1:]) || pages != 2 {
		t.Errorf("paged filtered listing with since: %v in %d pages, want %v in 2", got, pages, acme[1:])
	}
}

func testSearchDefaultLimit(t *testing.T, s store.Store) {
	for range 55 {
		mustInsert(t, s, &store.Record{Serial: NewSerial(), Status: store.StatusPending})
	}
	page, next, err := s.Search(t.Context(), store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 50 || next == "" {
		t.Errorf("default page: %d records, next %q; want 50 and a token", len(page), next)
	}
	page, next, err = s.Search(t.Context(), store.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 55 || next != "" {
		t.Errorf("large limit: %d records, next %q; want all 55", len(page), next)
	}
}

func testSearchBadToken(t *testing.T, s store.Store) {
	mustInsert(t, s, &store.Record{Serial: NewSerial(), Status: store.StatusPending})
	for _, tok := range []string{"!!!", "bm90IGpzb24", "eyJhIjoieiJ9"} {
		if _, _, err := s.Search(t.Context(), store.Query{Continuation: tok}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Search with token %q = %v, want ErrNotFound", tok, err)
		}
	}
}

// newPending is a pending record with a fresh serial, as InsertBound takes it.
func newPending() *store.Record {
	return &store.Record{Serial: NewSerial(), Status: store.StatusPending, PublicKey: "pk"}
}

// mustBeAbsent fails the test if a record with serial exists: a refused InsertBound must write nothing.
func mustBeAbsent(t *testing.T, s store.Store, serial, why string) {
	t.Helper()
	if r, err := s.Get(t.Context(), serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: record %s = %+v, %v; want ErrNotFound (nothing written)", why, serial, r, err)
	}
}

func testIndexBindLookup(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, key := range []string{"scep/ep1/0123456789ABCDEF", "api/o'brien/#1?/\\x", "ключ", strings.Repeat("k", 1500)} {
		if _, err := s.Lookup(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Lookup of unbound key = %v, want ErrNotFound", err)
		}
		r := newPending()
		b, err := s.InsertBound(ctx, key, nil, r)
		if err != nil {
			t.Fatalf("InsertBound(%.20q): %v", key, err)
		}
		if b.Key != key || b.Serial != r.Serial || b.ETag == "" || b.Created.IsZero() || r.ETag == "" || r.Created.IsZero() {
			t.Errorf("InsertBound binding = %+v, record ETag %q created %v", b, r.ETag, r.Created)
		}
		got, err := s.Lookup(ctx, key)
		if err != nil || got.Serial != r.Serial || got.ETag != b.ETag || got.Key != key || !got.Created.Equal(b.Created) {
			t.Errorf("Lookup = %+v, %v; want %+v", got, err, b)
		}
		if rec, err := s.Get(ctx, r.Serial); err != nil || rec.Status != store.StatusPending || rec.ETag != r.ETag {
			t.Errorf("Get of the bound record = %+v, %v; want pending at %q", rec, err, r.ETag)
		}
		other := newPending()
		again, err := s.InsertBound(ctx, key, nil, other)
		if !errors.Is(err, store.ErrExists) {
			t.Errorf("second InsertBound = %v, want ErrExists", err)
		}
		if again.Serial != r.Serial || again.ETag != b.ETag {
			t.Errorf("second InsertBound returned binding %+v, want the first %+v", again, b)
		}
		mustBeAbsent(t, s, other.Serial, "InsertBound of a bound key")
	}
	if _, err := s.InsertBound(ctx, "", nil, newPending()); err == nil {
		t.Error("InsertBound of an empty key succeeded")
	}
}

func testIndexBindSerialCollision(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := newPending()
	mustInsert(t, s, first)
	dup := &store.Record{Serial: first.Serial, Status: store.StatusPending, PublicKey: "other"}
	b, err := s.InsertBound(ctx, "collide", nil, dup)
	if !errors.Is(err, store.ErrExists) || b != (store.Binding{}) {
		t.Errorf("InsertBound onto an existing serial = %+v, %v; want a zero binding and ErrExists", b, err)
	}
	if got, err := s.Lookup(ctx, "collide"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the binding was written without its record: %+v, %v", got, err)
	}
	if rec, err := s.Get(ctx, first.Serial); err != nil || rec.PublicKey != "pk" {
		t.Errorf("the existing record changed: %+v, %v", rec, err)
	}
}

func testIndexRebind(t *testing.T, s store.Store) {
	ctx := t.Context()
	b, err := s.InsertBound(ctx, "k1", nil, newPending())
	if err != nil {
		t.Fatal(err)
	}
	next := newPending()
	nb, err := s.InsertBound(ctx, "k1", &b, next)
	if err != nil {
		t.Fatalf("rebinding InsertBound: %v", err)
	}
	if nb.Serial != next.Serial || nb.ETag == b.ETag || nb.Key != b.Key {
		t.Errorf("rebound binding = %+v", nb)
	}
	stale := newPending()
	if _, err := s.InsertBound(ctx, "k1", &b, stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rebind with a stale ETag = %v, want ErrConflict", err)
	}
	mustBeAbsent(t, s, stale.Serial, "rebind with a stale ETag")
	if got, err := s.Lookup(ctx, "k1"); err != nil || got.Serial != next.Serial || got.ETag != nb.ETag {
		t.Errorf("Lookup after the rebind = %+v, %v", got, err)
	}
	never := newPending()
	if _, err := s.InsertBound(ctx, "never", &store.Binding{Key: "never", ETag: nb.ETag}, never); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rebind of an unbound key = %v, want ErrNotFound", err)
	}
	mustBeAbsent(t, s, never.Serial, "rebind of an unbound key")
}

func testIndexBindRace(t *testing.T, s store.Store) {
	const n = 20
	var wg sync.WaitGroup
	recs := make([]*store.Record, n)
	got := make([]store.Binding, n)
	errs := make([]error, n)
	for i := range n {
		recs[i] = newPending()
		wg.Go(func() { got[i], errs[i] = s.InsertBound(t.Context(), "race", nil, recs[i]) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("InsertBound %d and %d both won", winner, i)
			}
			winner = i
		} else if !errors.Is(err, store.ErrExists) {
			t.Errorf("InsertBound %d: %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no InsertBound won")
	}
	for i, b := range got {
		if i == winner {
			continue
		}
		if b.Serial != recs[winner].Serial {
			t.Errorf("losing InsertBound %d saw serial %s, winner bound %s", i, b.Serial, recs[winner].Serial)
		}
		mustBeAbsent(t, s, recs[i].Serial, "losing InsertBound")
	}
	if b, err := s.Lookup(t.Context(), "race"); err != nil || b.Serial != recs[winner].Serial {
		t.Errorf("Lookup = %+v, %v; winner bound %s", b, err, recs[winner].Serial)
	}
}

func testIndexRebindRace(t *testing.T, s store.Store) {
	b, err := s.InsertBound(t.Context(), "rebind-race", nil, newPending())
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	recs := make([]*store.Record, n)
	for i := range n {
		recs[i] = newPending()
		wg.Go(func() { _, errs[i] = s.InsertBound(t.Context(), "rebind-race", &b, recs[i]) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("rebinds %d and %d both won", winner, i)
			}
			winner = i
		} else if !errors.Is(err, store.ErrConflict) {
			t.Errorf("rebind %d: %v, want ErrConflict", i, err)
		} else {
			mustBeAbsent(t, s, recs[i].Serial, "losing rebind")
		}
	}
	if winner < 0 {
		t.Fatal("no rebind won")
	}
	if got, err := s.Lookup(t.Context(), "rebind-race"); err != nil || got.Serial != recs[winner].Serial {
		t.Errorf("Lookup = %+v, %v; winner bound %s", got, err, recs[winner].Serial)
	}
}

func testRevoked(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got, err := s.ListRevoked(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty ListRevoked = %v, %v", got, err)
	}
	want := map[string]store.Revoked{}
	for i := range 5 {
		e := store.Revoked{Serial: NewSerial(), RevokedAt: base.Add(time.Duration(i) * time.Minute), Reason: i}
		if i%2 == 1 { // entries written before the index kept the certificate's notAfter have none
			e.NotAfter = base.Add(time.Duration(i) * 24 * time.Hour)
		}
		// Any spelling is stored canonically.
		spelled := e
		spelled.Serial = "00" + strings.ToLower(e.Serial)
		if kept, err := s.AddRevoked(ctx, spelled); err != nil || kept.Serial != e.Serial ||
			!kept.RevokedAt.Equal(e.RevokedAt) || kept.Reason != e.Reason || !kept.NotAfter.Equal(e.NotAfter) {
			t.Fatalf("AddRevoked = %+v, %v; want %+v", kept, err, e)
		}
		want[e.Serial] = e
		// Adding again keeps the first entry, and says so: the caller writes the record with it.
		later := e
		later.RevokedAt, later.Reason, later.NotAfter = base.Add(48*time.Hour), 9, base.Add(1000*time.Hour)
		if kept, err := s.AddRevoked(ctx, later); err != nil || !kept.RevokedAt.Equal(e.RevokedAt) || kept.Reason != e.Reason ||
			!kept.NotAfter.Equal(e.NotAfter) {
			t.Fatalf("second AddRevoked = %+v, %v; want the first entry %+v", kept, err, e)
		}
	}
	if _, err := s.AddRevoked(ctx, store.Revoked{Serial: "not-hex"}); err == nil {
		t.Error("AddRevoked with a bad serial succeeded")
	}
	// One entry by serial, in any spelling, as the first AddRevoked left it; none for a serial never revoked.
	for serial, w := range want {
		e, err := s.GetRevoked(ctx, "0x00"+strings.ToLower(serial))
		if err != nil || e.Serial != serial || !e.RevokedAt.Equal(w.RevokedAt) || e.Reason != w.Reason ||
			!e.NotAfter.Equal(w.NotAfter) {
			t.Errorf("GetRevoked(%s) = %+v, %v; want %+v", serial, e, err, w)
		}
	}
	for _, serial := range []string{NewSerial(), "not-hex", ""} {
		if _, err := s.GetRevoked(ctx, serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRevoked(%q) = %v, want ErrNotFound", serial, err)
		}
	}
	got, err := s.ListRevoked(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListRevoked has %d entries, want %d", len(got), len(want))
	}
	for _, e := range got {
		w, ok := want[e.Serial]
		if !ok || !e.RevokedAt.Equal(w.RevokedAt) || e.Reason != w.Reason || !e.NotAfter.Equal(w.NotAfter) {
			t.Errorf("ListRevoked entry %+v, want %+v", e, w)
		}
	}
}

// testCompromisedKeys: a key's mark is a point read by its hash and names who marked it; the first mark is kept;
// marks are not revocation index entries (they share a table in Table Storage, never the CRL's listing).
func testCompromisedKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	const key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	if _, err := s.Compromised(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Compromised before any mark: %v, want ErrNotFound", err)
	}
	if _, err := s.Compromised(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Compromised of an empty hash: %v, want ErrNotFound", err)
	}
	first := store.CompromisedKey{PublicKey: key, Serial: NewSerial(), By: "admin:sec@contoso.com", MarkedAt: base}
	if kept, created, err := s.MarkCompromised(ctx, first); err != nil || kept != first || !created {
		t.Fatalf("MarkCompromised = %+v, %t, %v; want %+v, created", kept, created, err, first)
	}
	got, err := s.Compromised(ctx, key)
	if err != nil || got.PublicKey != key || got.Serial != first.Serial || got.By != first.By || !got.MarkedAt.Equal(base) {
		t.Fatalf("Compromised = %+v, %v; want %+v", got, err, first)
	}
	// Marking again (a sibling certificate revoked for the same key, a retried revocation) keeps the first mark.
	later := store.CompromisedKey{PublicKey: key, Serial: NewSerial(), By: "cli:other", MarkedAt: base.Add(time.Hour)}
	if kept, created, err := s.MarkCompromised(ctx, later); err != nil || created || kept.Serial != first.Serial ||
		kept.By != first.By || !kept.MarkedAt.Equal(base) {
		t.Fatalf("second MarkCompromised = %+v, %t, %v; want the first mark %+v, not created", kept, created, err, first)
	}
	// Another key is another mark; a hash of another spelling is not the same key.
	other := store.CompromisedKey{PublicKey: "abcdef", Serial: NewSerial(), MarkedAt: base}
	if _, created, err := s.MarkCompromised(ctx, other); err != nil || !created {
		t.Fatalf("MarkCompromised of a second key: %v", err)
	}
	if _, err := s.Compromised(ctx, "ABCDEF"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Compromised(upper case) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "ABCDEF", "not-hex", strings.Repeat("a", 129)} {
		if _, _, err := s.MarkCompromised(ctx, store.CompromisedKey{PublicKey: bad, Serial: first.Serial}); err == nil {
			t.Errorf("MarkCompromised(%q) succeeded", bad)
		}
	}
	if list, err := s.ListRevoked(ctx); err != nil || len(list) != 0 {
		t.Errorf("ListRevoked after marking keys = %+v, %v; want no entries", list, err)
	}
	// The listing holds every mark as its point read does, the first mark of a key marked twice.
	list, err := s.ListCompromised(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListCompromised = %+v, %v; want the two marks", list, err)
	}
	for _, k := range list {
		want, err := s.Compromised(ctx, k.PublicKey)
		if err != nil || k.Serial != want.Serial || k.By != want.By || !k.MarkedAt.Equal(want.MarkedAt) {
			t.Errorf("listed mark %+v, point read %+v, %v", k, want, err)
		}
	}
}

func testMeta(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, _, err := s.GetMeta(ctx, "crl-number"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetMeta of missing name = %v, want ErrNotFound", err)
	}
	e1, err := s.PutMeta(ctx, "crl-number", []byte("1"), "")
	if err != nil || e1 == "" {
		t.Fatalf("create PutMeta = %q, %v", e1, err)
	}
	if _, err := s.PutMeta(ctx, "crl-number", []byte("x"), ""); !errors.Is(err, store.ErrExists) {
		t.Errorf("second create = %v, want ErrExists", err)
	}
	e2, err := s.PutMeta(ctx, "crl-number", []byte("2"), e1)
	if err != nil || e2 == "" || e2 == e1 {
		t.Fatalf("replace PutMeta = %q, %v (old %q)", e2, err, e1)
	}
	if _, err := s.PutMeta(ctx, "crl-number", []byte("3"), e1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replace with stale ETag = %v, want ErrConflict", err)
	}
	if v, etag, err := s.GetMeta(ctx, "crl-number"); err != nil || string(v) != "2" || etag != e2 {
		t.Errorf("GetMeta = %q, %q, %v; want 2, %q", v, etag, err, e2)
	}
	if _, err := s.PutMeta(ctx, "absent", []byte("x"), e2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replace of a missing name = %v, want ErrNotFound", err)
	}
	if _, err := s.PutMeta(ctx, "empty", nil, ""); err != nil {
		t.Errorf("empty value: %v", err)
	} else if v, _, err := s.GetMeta(ctx, "empty"); err != nil || len(v) != 0 {
		t.Errorf("empty value read back as %q, %v", v, err)
	}
	if _, err := s.PutMeta(ctx, "bad/name", []byte("x"), ""); err == nil {
		t.Error("PutMeta with '/' in the name succeeded")
	}
}

func testMetaLarge(t *testing.T, s store.Store) {
	ctx := t.Context()
	big := make([]byte, 300*1024)
	_, _ = rand.Read(big)
	etag, err := s.PutMeta(ctx, "chain", big, "")
	if err != nil {
		t.Fatalf("PutMeta of %d bytes: %v", len(big), err)
	}
	v, got, err := s.GetMeta(ctx, "chain")
	if err != nil || !bytes.Equal(v, big) || got != etag {
		t.Fatalf("large value did not round-trip: %d bytes, %v", len(v), err)
	}
	// Shrinking must not leave stale chunks behind.
	if _, err := s.PutMeta(ctx, "chain", []byte("small"), etag); err != nil {
		t.Fatal(err)
	}
	if v, _, err := s.GetMeta(ctx, "chain"); err != nil || string(v) != "small" {
		t.Errorf("after shrinking: %d bytes, %v", len(v), err)
	}
	if _, err := s.PutMeta(ctx, "huge", make([]byte, 600*1024), ""); err == nil {
		t.Error("PutMeta of 600 KiB succeeded")
	}
}

func testQueueEnqueueUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := &store.RevocationRequest{
		RequestContext:  "ctx/'1'#?",
		SerialNumber:    "0a1b",
		IssuerName:      "CN=Test",
		CAConfiguration: "ca\\cfg",
		Downloaded:      base,
	}
	if err := s.EnqueueRevocation(ctx, r); err != nil {
		t.Fatalf("EnqueueRevocation: %v", err)
	}
	if r.ETag == "" || r.State != store.WorkDownloaded {
		t.Errorf("after enqueue: etag %q state %q", r.ETag, r.State)
	}
	dup := *r
	dup.ETag = ""
	if err := s.EnqueueRevocation(ctx, &dup); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate enqueue = %v, want ErrExists", err)
	}
	stale := *r
	r.State, r.Succeeded, r.ErrorCode, r.ErrorMessage = store.WorkApplied, false, "4004", "not found: 'x'"
	r.Applied, r.Attempts = base.Add(time.Minute), 2
	if err := s.UpdateRevocation(ctx, r); err != nil {
		t.Fatalf("UpdateRevocation: %v", err)
	}
	if r.ETag == stale.ETag {
		t.Error("UpdateRevocation did not refresh the ETag")
	}
	stale.State = store.WorkUploaded
	if err := s.UpdateRevocation(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale UpdateRevocation = %v, want ErrConflict", err)
	}
	if err := s.UpdateRevocation(ctx, &store.RevocationRequest{RequestContext: "unknown", State: store.WorkApplied, ETag: r.ETag}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRevocation of unknown item = %v, want ErrNotFound", err)
	}
	open, err := s.OpenRevocations(ctx, 0)
	if err != nil || len(open) != 1 {
		t.Fatalf("OpenRevocations = %v, %v", open, err)
	}
	if got := open[0]; !sameRequest(*got, *r) {
		t.Errorf("stored item %+v, want %+v", *got, *r)
	}
	r.State = store.WorkUploaded // no longer listed as open: read by its request context
	if err := s.UpdateRevocation(ctx, r); err != nil {
		t.Fatalf("UpdateRevocation: %v", err)
	}
	if got, err := s.Revocation(ctx, r.RequestContext); err != nil || !sameRequest(*got, *r) {
		t.Errorf("Revocation = %+v, %v; want %+v", got, err, *r)
	}
	if _, err := s.Revocation(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Revocation of an unknown request = %v, want ErrNotFound", err)
	}
}

// testQueueUpdateMany: UpdateRevocations writes every item of a batch and refreshes each ETag; a batch with one
// moved item writes none of them (the sync then writes them one by one), and a batch over MaxRevocationBatch is
// refused before anything is written.
func testQueueUpdateMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	var items []*store.RevocationRequest
	for i := range 3 {
		r := &store.RevocationRequest{RequestContext: fmt.Sprintf("many/%d", i), SerialNumber: fmt.Sprintf("0%d", i+1),
			Downloaded: base}
		if err := s.EnqueueRevocation(ctx, r); err != nil {
			t.Fatalf("EnqueueRevocation: %v", err)
		}
		items = append(items, r)
	}
	before := make([]string, len(items))
	for i, r := range items {
		before[i] = r.ETag
		r.State, r.Succeeded, r.ErrorCode, r.Applied, r.Attempts = store.WorkApplied, true, "None", base.Add(time.Minute), 1
	}
	if err := s.UpdateRevocations(ctx, items); err != nil {
		t.Fatalf("UpdateRevocations: %v", err)
	}
	for i, r := range items {
		if r.ETag == before[i] || r.ETag == "" {
			t.Errorf("item %d: ETag %q not refreshed (was %q)", i, r.ETag, before[i])
		}
		if got, err := s.Revocation(ctx, r.RequestContext); err != nil || !sameRequest(*got, *r) {
			t.Errorf("item %d stored as %+v, %v; want %+v", i, got, err, *r)
		}
	}

	// One item moved by someone else: none of the batch is written.
	moved := *items[1]
	moved.Attempts = 7
	if err := s.UpdateRevocation(ctx, &moved); err != nil {
		t.Fatalf("UpdateRevocation: %v", err)
	}
	for _, r := range items {
		r.State, r.Uploaded, r.Attempts = store.WorkUploaded, base.Add(2*time.Minute), 2
	}
	if err := s.UpdateRevocations(ctx, items); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("UpdateRevocations with a moved item = %v, want ErrConflict", err)
	}
	for i, r := range items {
		got, err := s.Revocation(ctx, r.RequestContext)
		if err != nil || got.State != store.WorkApplied {
			t.Errorf("item %d after a refused batch: %+v, %v; want it still applied", i, got, err)
		}
	}

	over := make([]*store.RevocationRequest, store.MaxRevocationBatch+1)
	for i := range over {
		over[i] = items[0]
	}
	if err := s.UpdateRevocations(ctx, over); err == nil {
		t.Errorf("UpdateRevocations of %d items succeeded, want it refused", len(over))
	}
}

// testQueueEnqueueMany: EnqueueRevocations inserts a full batch as EnqueueRevocation inserts one (state downloaded,
// a zero Downloaded made now, an ETag each), and then EnqueueRevocation answers ErrExists for each of them. A batch
// naming one item already held writes none of them (ErrExists), nor does one naming an item twice, nor one over
// MaxRevocationBatch; the others of a refused batch then go in one by one.
func testQueueEnqueueMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	items := make([]*store.RevocationRequest, store.MaxRevocationBatch)
	for i := range items {
		items[i] = &store.RevocationRequest{RequestContext: fmt.Sprintf("batch/'%d'#?", i), SerialNumber: NewSerial(),
			IssuerName: "CN=Test", CAConfiguration: "ca\\cfg", Downloaded: base.Add(time.Duration(i) * time.Second)}
	}
	items[1].Downloaded = time.Time{}
	if err := s.EnqueueRevocations(ctx, items); err != nil {
		t.Fatalf("EnqueueRevocations of %d items: %v", len(items), err)
	}
	for i, r := range items {
		if r.ETag == "" || r.State != store.WorkDownloaded || r.Downloaded.IsZero() {
			t.Fatalf("item %d after enqueue: etag %q, state %q, downloaded %v", i, r.ETag, r.State, r.Downloaded)
		}
		if got, err := s.Revocation(ctx, r.RequestContext); err != nil || !sameRequest(*got, *r) {
			t.Fatalf("item %d stored as %+v, %v; want %+v", i, got, err, *r)
		}
		again := &store.RevocationRequest{RequestContext: r.RequestContext, SerialNumber: r.SerialNumber}
		if err := s.EnqueueRevocation(ctx, again); !errors.Is(err, store.ErrExists) {
			t.Fatalf("EnqueueRevocation of item %d after the batch = %v, want ErrExists", i, err)
		}
	}
	if open, err := s.OpenRevocations(ctx, 0); err != nil || len(open) != len(items) {
		t.Fatalf("OpenRevocations after the batch: %d items, %v; want %d", len(open), err, len(items))
	}
	// The ETags are the stored versions': an update conditioned on one goes through.
	items[0].State = store.WorkApplied
	if err := s.UpdateRevocation(ctx, items[0]); err != nil {
		t.Fatalf("UpdateRevocation after the batch: %v", err)
	}

	fresh := func(names ...string) []*store.RevocationRequest {
		var rs []*store.RevocationRequest
		for _, n := range names {
			rs = append(rs, &store.RevocationRequest{RequestContext: n, SerialNumber: NewSerial(), Downloaded: base})
		}
		return rs
	}
	wantNone := func(what string, rs []*store.RevocationRequest, names ...string) {
		t.Helper()
		for _, n := range names {
			if _, err := s.Revocation(ctx, n); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: %s was written (%v)", what, n, err)
			}
		}
		for _, r := range rs {
			if r.ETag != "" {
				t.Errorf("%s: %s got ETag %q although nothing was written", what, r.RequestContext, r.ETag)
			}
		}
	}
	// One item already held (re-offered by Intune): none of the batch is written.
	known := fresh("new/1", "new/2")
	known = append(known[:1], &store.RevocationRequest{RequestContext: items[5].RequestContext,
		SerialNumber: items[5].SerialNumber}, known[1])
	if err := s.EnqueueRevocations(ctx, known); !errors.Is(err, store.ErrExists) {
		t.Fatalf("EnqueueRevocations with a known item = %v, want ErrExists", err)
	}
	wantNone("batch with a known item", known, "new/1", "new/2")
	if got, err := s.Revocation(ctx, items[5].RequestContext); err != nil || !sameRequest(*got, *items[5]) {
		t.Errorf("the known item after the refused batch: %+v, %v; want it unchanged", got, err)
	}
	for _, r := range known {
		err := s.EnqueueRevocation(ctx, r)
		if known := r.RequestContext == items[5].RequestContext; known && !errors.Is(err, store.ErrExists) || !known && err != nil {
			t.Errorf("EnqueueRevocation of %s after the refused batch = %v", r.RequestContext, err)
		}
	}

	twice := fresh("twice/1", "twice/2", "twice/1")
	if err := s.EnqueueRevocations(ctx, twice); err == nil {
		t.Error("EnqueueRevocations naming an item twice succeeded, want it refused")
	}
	wantNone("batch naming an item twice", twice, "twice/1", "twice/2")

	over := fresh(make([]string, store.MaxRevocationBatch+1)...)
	for i, r := range over {
		r.RequestContext = fmt.Sprintf("over/%d", i)
	}
	if err := s.EnqueueRevocations(ctx, over); err == nil {
		t.Errorf("EnqueueRevocations of %d items succeeded, want it refused", len(over))
	}
	wantNone("batch over the limit", over, "over/0", fmt.Sprintf("over/%d", store.MaxRevocationBatch))
}

func testQueueOpen(t *testing.T, s store.Store) {
	ctx := t.Context()
	states := []store.WorkState{store.WorkApplied, store.WorkUploaded, store.WorkDownloaded, store.WorkForeign, store.WorkDownloaded, store.WorkApplied}
	var want []string
	for i, st := range states {
		r := &store.RevocationRequest{
			RequestContext: fmt.Sprintf("rc-%d", i),
			SerialNumber:   NewSerial(),
			Downloaded:     base.Add(time.Duration(len(states)-i) * time.Minute), // later items are older
		}
		if err := s.EnqueueRevocation(ctx, r); err != nil {
			t.Fatal(err)
		}
		if st != store.WorkDownloaded {
			r.State = st
			if err := s.UpdateRevocation(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if st == store.WorkDownloaded || st == store.WorkApplied {
			want = append(want, r.RequestContext)
		}
	}
	slices.Reverse(want)
	ids := func(rs []*store.RevocationRequest) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.RequestContext)
		}
		return out
	}
	got, err := s.OpenRevocations(ctx, 0)
	if err != nil || !slices.Equal(ids(got), want) {
		t.Errorf("OpenRevocations = %v, %v; want %v (oldest first)", ids(got), err, want)
	}
	got, err = s.OpenRevocations(ctx, 2)
	if err != nil || !slices.Equal(ids(got), want[:2]) {
		t.Errorf("OpenRevocations(2) = %v, %v; want %v", ids(got), err, want[:2])
	}
}

func testRuns(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got, err := s.Runs(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("empty Runs = %v, %v", got, err)
	}
	var runs []store.SyncRun
	for i := range 4 {
		runs = append(runs, store.SyncRun{
			ID:         fmt.Sprintf("run-%d", i),
			Started:    base.Add(time.Duration(i) * time.Hour),
			Finished:   base.Add(time.Duration(i)*time.Hour + 3*time.Second),
			Trigger:    "timer",
			Resumed:    i,
			Downloaded: 100 + i,
			Foreign:    1,
			Revoked:    2,
			NotFound:   3,
			Failed:     4,
			Uploaded:   5,
			Errors:     []string{fmt.Sprintf("error %d", i), "it's broken"},
		})
	}
	// Two runs in the same instant stay apart.
	twin := runs[3]
	twin.ID, twin.Errors = "run-3b", nil
	for _, i := range []int{2, 0, 3, 1} {
		if err := s.RecordRun(ctx, runs[i]); err != nil {
			t.Fatalf("RecordRun: %v", err)
		}
	}
	if err := s.RecordRun(ctx, twin); err != nil {
		t.Fatalf("RecordRun twin: %v", err)
	}
	if err := s.RecordRun(ctx, runs[1]); !errors.Is(err, store.ErrExists) {
		t.Errorf("recording a run twice = %v, want ErrExists", err)
	}
	got, err := s.Runs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SyncRun{runs[3], twin, runs[2], runs[1], runs[0]}
	if len(got) != len(want) {
		t.Fatalf("Runs returned %d runs, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameRun(got[i], want[i]) {
			t.Errorf("Runs[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	got, err = s.Runs(ctx, 2)
	if err != nil || len(got) != 2 || got[0].ID != "run-3" || got[1].ID != "run-3b" {
		t.Errorf("Runs(2) = %+v, %v", got, err)
	}

	// A run records itself as it starts, and its outcome over that record when it ends; RunByID finds it either way.
	started := store.SyncRun{ID: "run-4", Started: base.Add(5 * time.Hour), Trigger: "admin"}
	if err := s.RecordRun(ctx, started); err != nil {
		t.Fatalf("RecordRun at the start: %v", err)
	}
	if r, err := s.RunByID(ctx, "run-4"); err != nil || !sameRun(r, started) || !r.Finished.IsZero() {
		t.Errorf("RunByID of a started run = %+v, %v; want %+v", r, err, started)
	}
	finished := started
	finished.Finished, finished.Downloaded, finished.Revoked = started.Started.Add(time.Minute), 7, 6
	finished.Errors, finished.Error = []string{"downloading: boom"}, "downloading: boom"
	if err := s.FinishRun(ctx, finished); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	if r, err := s.RunByID(ctx, "run-4"); err != nil || !sameRun(r, finished) {
		t.Errorf("RunByID of a finished run = %+v, %v; want %+v", r, err, finished)
	}
	if got, err := s.Runs(ctx, 0); err != nil || len(got) != 6 || !sameRun(got[0], finished) {
		t.Errorf("Runs after FinishRun = %d runs, %v; want 6, the finished run first", len(got), err)
	}
	if r, err := s.RunByID(ctx, "run-1"); err != nil || !sameRun(r, runs[1]) {
		t.Errorf("RunByID(run-1) = %+v, %v", r, err)
	}
	for _, id := range []string{"run-9", "", "bad'id"} {
		if _, err := s.RunByID(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunByID(%q) = %v, want ErrNotFound", id, err)
		}
	}
	unknown := finished
	unknown.ID = "run-9"
	if err := s.FinishRun(ctx, unknown); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishRun of a run never recorded = %v, want ErrNotFound", err)
	}
	if r, err := s.RunByID(ctx, "run-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishRun of a run never recorded wrote %+v (%v)", r, err)
	}
}

// A run whose ID NewRunID made is found by that ID alone, as the status route asks for it: the store derives the
// run's place from the start the ID holds, so it must be recorded where the ID says.
func testRunIDs(t *testing.T, s store.Store) {
	ctx := t.Context()
	legacy := store.SyncRun{ID: "0123456789abcdef", Started: base, Finished: base.Add(time.Second), Trigger: "timer"}
	if err := s.RecordRun(ctx, legacy); err != nil {
		t.Fatalf("RecordRun with an ID of the older form: %v", err)
	}
	var runs []store.SyncRun
	for i := range 3 {
		started := base.Add(time.Duration(i+1)*time.Minute + 123456789)
		run := store.SyncRun{ID: store.NewRunID(started), Started: started, Trigger: "admin"}
		if at, ok := store.RunIDStart(run.ID); !ok || !at.Equal(started.Truncate(100)) {
			t.Fatalf("RunIDStart(%s) = %v, %v; want %v", run.ID, at, ok, started.Truncate(100))
		}
		// Recorded with the start's nanoseconds (the clock's); kept, and named by the ID, at 100 ns.
		if err := s.RecordRun(ctx, run); err != nil {
			t.Fatalf("RecordRun(%s): %v", run.ID, err)
		}
		run.Started = started.Truncate(100)
		runs = append(runs, run)
	}
	// Started at a time the ID does not name: refused, since RunByID would look for it elsewhere.
	elsewhere := store.SyncRun{ID: store.NewRunID(base.Add(time.Hour)), Started: base.Add(2 * time.Hour)}
	if err := s.RecordRun(ctx, elsewhere); err == nil {
		t.Errorf("RecordRun of a run started at another time than its ID says succeeded")
	}
	if r, err := s.RunByID(ctx, elsewhere.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RunByID of a run refused = %+v, %v; want ErrNotFound", r, err)
	}
	// No Started: the ID's.
	bare := store.SyncRun{ID: store.NewRunID(base.Add(3 * time.Hour)), Trigger: "manual"}
	if err := s.RecordRun(ctx, bare); err != nil {
		t.Fatalf("RecordRun without Started: %v", err)
	}
	bare.Started, _ = store.RunIDStart(bare.ID)
	if r, err := s.RunByID(ctx, bare.ID); err != nil || !sameRun(r, bare) {
		t.Errorf("RunByID of a run recorded without Started = %+v, %v; want %+v", r, err, bare)
	}

	finished := runs[1]
	finished.Finished, finished.Revoked, finished.Errors = finished.Started.Add(time.Minute), 3, []string{"x"}
	if err := s.FinishRun(ctx, finished); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	moved := finished
	moved.Started = moved.Started.Add(time.Second)
	if err := s.FinishRun(ctx, moved); err == nil {
		t.Errorf("FinishRun of a run started at another time than its ID says succeeded")
	}
	for i, want := range []store.SyncRun{runs[0], finished, runs[2], legacy} {
		if r, err := s.RunByID(ctx, want.ID); err != nil || !sameRun(r, want) {
			t.Errorf("RunByID #%d (%s) = %+v, %v; want %+v", i, want.ID, r, err, want)
		}
	}
	got, err := s.Runs(ctx, 0)
	if err != nil || len(got) != 5 || got[0].ID != bare.ID || got[1].ID != runs[2].ID || got[4].ID != legacy.ID {
		t.Errorf("Runs = %+v, %v; want the five runs, newest first", got, err)
	}
	// An ID of the new form that names no run, nor one at its instant: not found.
	at, _ := store.RunIDStart(runs[0].ID)
	for _, id := range []string{store.NewRunID(at), store.NewRunID(base.Add(-time.Hour)),
		strings.ToUpper(runs[0].ID), runs[0].ID[:len(runs[0].ID)-1]} {
		if id == runs[0].ID {
			continue // its random part has no letter to upper-case (1 in 1,845 IDs): the same ID, found
		}
		if r, err := s.RunByID(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunByID(%s) = %+v, %v; want ErrNotFound", id, r, err)
		}
	}
}

// PruneRuns deletes the runs started before its cutoff, a bounded number per call, and nothing else: not a run
// started at the cutoff or after it, finished or not.
func testPruneRuns(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.PruneRuns(ctx, base, 10); n != 0 || err != nil {
		t.Errorf("PruneRuns of no runs = %d, %v", n, err)
	}
	var old, kept []string
	for i, at := range []time.Duration{-72 * time.Hour, -2 * time.Hour, -2 * time.Hour, -100, 0, time.Hour} {
		started := base.Add(at)
		run := store.SyncRun{ID: store.NewRunID(started), Started: started, Trigger: "timer"}
		if i == 2 {
			run.ID = fmt.Sprintf("legacy-%d", i) // an ID of the older form, at the same instant as another run
		}
		if i%2 == 0 {
			run.Finished = started.Add(time.Minute) // the others never recorded an end (interrupted, or running)
		}
		if err := s.RecordRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		if at < 0 {
			old = append(old, run.ID)
		} else {
			kept = append(kept, run.ID)
		}
	}
	if _, err := s.PruneRuns(ctx, base, 0); err == nil {
		t.Errorf("PruneRuns with no limit succeeded")
	}
	total := 0
	for i, want := range []int{3, 1, 0} {
		n, err := s.PruneRuns(ctx, base, 3)
		if n != want || err != nil {
			t.Errorf("PruneRuns #%d = %d, %v; want %d", i+1, n, err, want)
		}
		total += n
	}
	got, err := s.Runs(ctx, 0)
	if err != nil || len(got) != len(kept) || got[0].ID != kept[1] || got[1].ID != kept[0] {
		t.Errorf("after pruning %d, Runs = %+v, %v; want %v, newest first", total, got, err, kept)
	}
	for _, id := range old {
		if r, err := s.RunByID(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunByID(%s) of a pruned run = %+v, %v; want ErrNotFound", id, r, err)
		}
	}
	for _, id := range kept {
		if _, err := s.RunByID(ctx, id); err != nil {
			t.Errorf("RunByID(%s) of a run kept = %v", id, err)
		}
	}
}

func sameRun(a, b store.SyncRun) bool {
	if !a.Started.Equal(b.Started) || !a.Finished.Equal(b.Finished) || !slices.Equal(a.Errors, b.Errors) {
		return false
	}
	a.Started, a.Finished, a.Errors = b.Started, b.Finished, b.Errors
	return reflect.DeepEqual(a, b)
}

func sameRequest(a, b store.RevocationRequest) bool {
	if !a.Downloaded.Equal(b.Downloaded) || !a.Applied.Equal(b.Applied) || !a.Uploaded.Equal(b.Uploaded) {
		return false
	}
	a.Downloaded, a.Applied, a.Uploaded = b.Downloaded, b.Applied, b.Uploaded
	return a == b
}

// keyHash is a valid store.Backlog key, distinct per n.
func keyHash(n int) string { return fmt.Sprintf("%064x", n+1) }

func testBacklog(t *testing.T, s store.Store) {
	ctx := t.Context()
	key := keyHash(0)
	if _, err := s.GetBacklog(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBacklog of a key never written = %v, want ErrNotFound", err)
	}
	b := &store.Backlog{PublicKey: key, Reservations: []store.Reservation{{Serial: "0A1B", At: base}}}
	if err := s.PutBacklog(ctx, b); err != nil || b.ETag == "" {
		t.Fatalf("creating a backlog: ETag %q, %v", b.ETag, err)
	}
	first := b.ETag
	if err := s.PutBacklog(ctx, &store.Backlog{PublicKey: key}); !errors.Is(err, store.ErrExists) {
		t.Errorf("creating it again = %v, want ErrExists", err)
	}
	b.Reservations = append(b.Reservations, store.Reservation{Serial: "2C3D", At: base.Add(time.Minute)})
	if err := s.PutBacklog(ctx, b); err != nil || b.ETag == first {
		t.Fatalf("replacing it: ETag %q (was %q), %v", b.ETag, first, err)
	}
	stale := &store.Backlog{PublicKey: key, ETag: first}
	if err := s.PutBacklog(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replacing at a stale ETag = %v, want ErrConflict", err)
	}
	got, err := s.GetBacklog(ctx, key)
	if err != nil || got.ETag != b.ETag || !reflect.DeepEqual(got.Reservations, b.Reservations) || !got.Latest().Equal(base.Add(time.Minute)) {
		t.Fatalf("GetBacklog = %+v, %v; want %+v", got, err, b)
	}
	if err := s.PutBacklog(ctx, &store.Backlog{PublicKey: keyHash(1), ETag: b.ETag}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replacing a backlog that does not exist = %v, want ErrNotFound", err)
	}
	if err := s.DeleteBacklog(ctx, key, first); !errors.Is(err, store.ErrConflict) {
		t.Errorf("deleting at a stale ETag = %v, want ErrConflict", err)
	}
	if err := s.DeleteBacklog(ctx, key, b.ETag); err != nil {
		t.Fatalf("deleting: %v", err)
	}
	if _, err := s.GetBacklog(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBacklog after the delete = %v, want ErrNotFound", err)
	}
	if err := s.DeleteBacklog(ctx, key, b.ETag); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting it again = %v, want ErrNotFound", err)
	}
	// A backlog deleted is created afresh.
	if err := s.PutBacklog(ctx, &store.Backlog{PublicKey: key}); err != nil {
		t.Errorf("creating a deleted backlog again: %v", err)
	}
	for _, bad := range []*store.Backlog{{PublicKey: ""}, {PublicKey: "ABCDEF"}, {PublicKey: "xyz"},
		{PublicKey: keyHash(2), Reservations: make([]store.Reservation, store.MaxReservations+1)}} {
		if err := s.PutBacklog(ctx, bad); err == nil {
			t.Errorf("PutBacklog(%q, %d reservations) succeeded", bad.PublicKey, len(bad.Reservations))
		}
	}
}

// testBacklogRace: writers that each add one reservation, reading again on every conflict, lose none: the ETag
// lets exactly one of them through per version.
func testBacklogRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	key := keyHash(3)
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := store.Reservation{Serial: fmt.Sprintf("%X", 0x100+w), At: base}
			for {
				b, err := s.GetBacklog(ctx, key)
				if errors.Is(err, store.ErrNotFound) {
					b, err = &store.Backlog{PublicKey: key}, nil
				}
				if err != nil {
					errs <- err
					return
				}
				b.Reservations = append(b.Reservations, r)
				err = s.PutBacklog(ctx, b)
				if err == nil {
					return
				}
				if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrExists) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, err := s.GetBacklog(ctx, key)
	if err != nil || len(b.Reservations) != writers {
		t.Fatalf("after %d concurrent writers: %+v, %v; want %d reservations", writers, b, err, writers)
	}
}

func testPruneBacklogs(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.PruneBacklogs(ctx, base, 10); n != 0 || err != nil {
		t.Errorf("PruneBacklogs of none = %d, %v", n, err)
	}
	if _, err := s.PruneBacklogs(ctx, base, 0); err == nil {
		t.Errorf("PruneBacklogs with no limit succeeded")
	}
	// Old: every reservation before base. Kept: one at or after base, however old the others.
	for i, ats := range [][]time.Duration{{-2 * time.Hour}, {-time.Hour, -time.Second}, {-3 * time.Hour}, {-time.Hour, 0},
		{time.Minute}} {
		b := &store.Backlog{PublicKey: keyHash(10 + i)}
		for j, at := range ats {
			b.Reservations = append(b.Reservations, store.Reservation{Serial: fmt.Sprintf("%X", 0x10*(i+1)+j), At: base.Add(at)})
		}
		if err := s.PutBacklog(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// A meta document under the same name as a key stays whatever its age: backlogs are their own.
	if _, err := s.PutMeta(ctx, keyHash(10), []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, want := range []int{2, 1, 0} {
		n, err := s.PruneBacklogs(ctx, base, 2)
		if n != want || err != nil {
			t.Errorf("PruneBacklogs #%d = %d, %v; want %d", i+1, n, err, want)
		}
		total += n
	}
	for i := range 5 {
		_, err := s.GetBacklog(ctx, keyHash(10+i))
		if pruned := i < 3; pruned != errors.Is(err, store.ErrNotFound) || !pruned && err != nil {
			t.Errorf("backlog %d after pruning %d: %v (want pruned %t)", i, total, err, pruned)
		}
	}
	if v, _, err := s.GetMeta(ctx, keyHash(10)); err != nil || string(v) != "x" {
		t.Errorf("meta document beside the backlogs: %q, %v", v, err)
	}
}

// testPruneBacklogsMany: more expired backlogs than one Table Storage transaction holds (100) are pruned, limit
// bounding the deletions across transactions, and none of the last hour's goes with them.
func testPruneBacklogsMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	const expired, recent = 230, 3
	for i := range expired + recent {
		at := base.Add(-time.Hour - time.Duration(i)*time.Second)
		if i >= expired {
			at = base.Add(time.Duration(i) * time.Second)
		}
		b := &store.Backlog{PublicKey: keyHash(100 + i), Reservations: []store.Reservation{{Serial: fmt.Sprintf("%X", 0x1000+i), At: at}}}
		if err := s.PutBacklog(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for i, tc := range []struct{ limit, want int }{{120, 120}, {1000, expired - 120}, {1000, 0}} {
		if n, err := s.PruneBacklogs(ctx, base, tc.limit); n != tc.want || err != nil {
			t.Fatalf("PruneBacklogs #%d (limit %d) = %d, %v; want %d", i+1, tc.limit, n, err, tc.want)
		}
	}
	for i := range expired + recent {
		_, err := s.GetBacklog(ctx, keyHash(100+i))
		if pruned := i < expired; pruned != errors.Is(err, store.ErrNotFound) || !pruned && err != nil {
			t.Fatalf("backlog %d after pruning: %v (want pruned %t)", i, err, pruned)
		}
	}
}
