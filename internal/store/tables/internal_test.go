package tables

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
)

func respErr(status int, code string) error {
	return &azcore.ResponseError{StatusCode: status, ErrorCode: code}
}

func TestMapErr(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{respErr(404, "ResourceNotFound"), store.ErrNotFound},
		{respErr(404, "TableNotFound"), store.ErrUnavailable},
		{respErr(409, "TableBeingDeleted"), store.ErrUnavailable},
		{respErr(409, "EntityAlreadyExists"), store.ErrExists},
		{respErr(412, "UpdateConditionNotSatisfied"), store.ErrConflict},
		{respErr(429, ""), store.ErrUnavailable},
		{respErr(503, "ServerBusy"), store.ErrUnavailable},
		{respErr(500, "InternalError"), store.ErrUnavailable},
		{respErr(403, "AuthorizationPermissionMismatch"), store.ErrUnavailable},
		{fmt.Errorf("dial tcp: connection refused"), store.ErrUnavailable},
		{context.DeadlineExceeded, store.ErrUnavailable},
	}
	for _, tc := range cases {
		got := mapErr("op", tc.err)
		if !errors.Is(got, tc.want) {
			t.Errorf("mapErr(%v) = %v, want %v", tc.err, got, tc.want)
		}
		if strings.Contains(got.Error(), "\n") {
			t.Errorf("mapErr(%v) message spans lines: %q", tc.err, got)
		}
	}
	// A 400 is our bug, not an outage: no sentinel, but the SDK error stays reachable.
	got := mapErr("op", respErr(http.StatusBadRequest, "InvalidInput"))
	var re *azcore.ResponseError
	if errors.Is(got, store.ErrUnavailable) || !errors.As(got, &re) || re.ErrorCode != "InvalidInput" {
		t.Errorf("mapErr(400) = %v", got)
	}
	if got := mapErr("op", context.Canceled); errors.Is(got, store.ErrUnavailable) || !errors.Is(got, context.Canceled) {
		t.Errorf("mapErr(canceled) = %v, want the cancellation only", got)
	}
}

func TestSplitPrefix(t *testing.T) {
	rest, prefix := splitPrefix("A=1;TablePrefix=tabc;B=x=y;")
	if rest != "A=1;B=x=y;" || prefix != "tabc" {
		t.Errorf("splitPrefix = %q, %q", rest, prefix)
	}
	if rest, prefix := splitPrefix("A=1"); rest != "A=1" || prefix != "" {
		t.Errorf("splitPrefix without prefix = %q, %q", rest, prefix)
	}
}

func TestQuote(t *testing.T) {
	if got := quote("o'brien''"); got != "'o''brien'''''" {
		t.Errorf("quote = %s", got)
	}
	if got := dateLiteral(time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))); got != "datetime'2025-01-02T02:04:05.1234567Z'" {
		t.Errorf("dateLiteral = %s", got)
	}
}

func TestEntityLimits(t *testing.T) {
	e := newEntity("p", "r")
	e.str("Big", strings.Repeat("é", MaxProperty/2+1)) // one UTF-16 unit per rune
	if _, err := e.marshal(); !errors.Is(err, errTooLarge) {
		t.Errorf("string over 64 KiB: %v", err)
	}
	e = newEntity("p", "r")
	e.str("Fits", strings.Repeat("é", MaxProperty/2))
	e.binary("Bin", make([]byte, MaxProperty))
	if _, err := e.marshal(); err != nil {
		t.Errorf("properties at the limit: %v", err)
	}
	e.binary("Bin", make([]byte, MaxProperty+1))
	if _, err := e.marshal(); !errors.Is(err, errTooLarge) {
		t.Errorf("binary over 64 KiB: %v", err)
	}
}

// The entity-wide limits Azurite does not enforce are refused before the write, as Azure would refuse them: the
// entity's size as the service counts it, the number of properties, and the keys' length and characters.
func TestEntityServiceLimits(t *testing.T) {
	big := newEntity("p", "r")
	for i := range 15 {
		big.binary(fmt.Sprintf("Bin%d", i), make([]byte, MaxProperty))
	}
	big.str("Str", strings.Repeat("x", 32000))
	if _, err := big.marshal(); err != nil {
		t.Fatalf("15 binary properties of 64 KiB and a string of 62.5 KiB: %v", err)
	}
	big.str("Str", strings.Repeat("x", MaxProperty/2)) // every property within its limit, the entity over 1 MiB
	if _, err := big.marshal(); !errors.Is(err, errEntity) {
		t.Errorf("entity over 1 MiB: %v, want errEntity", err)
	}
	wide := newEntity("p", "r")
	for i := range maxProperties {
		wide.boolean(fmt.Sprintf("P%d", i), true)
	}
	wide.time("When", time.Now()) // its annotation is not a property
	if _, err := wide.marshal(); !errors.Is(err, errEntity) {
		t.Errorf("%d properties: %v, want errEntity", maxProperties+1, err)
	}
	delete(wide, "P0")
	if _, err := wide.marshal(); err != nil {
		t.Errorf("%d properties: %v", maxProperties, err)
	}
	for _, key := range []string{"a/b", `a\b`, "a#b", "a?b", "a\x00b", "a\tb", "a\u007fb", "a\u0085b", strings.Repeat("é", maxKeyChars+1)} {
		for _, e := range []entity{newEntity(key, "r"), newEntity("p", key)} {
			if _, err := e.marshal(); !errors.Is(err, errEntity) {
				t.Errorf("key %q: %v, want errEntity", key, err)
			}
		}
	}
	if _, err := newEntity(strings.Repeat("é", maxKeyChars), "r").marshal(); err != nil {
		t.Errorf("key of %d characters: %v", maxKeyChars, err)
	}
}

// A non-zero time outside Edm.DateTime's range (from 1601 to 9999) is refused; the zero time is not written at all.
func TestEntityDateTimeRange(t *testing.T) {
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{
		{time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC), true},
		{time.Date(1600, 12, 31, 23, 59, 59, 0, time.UTC), false},
		{time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), false},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{time.Date(16010, 1, 1, 0, 0, 0, 0, time.UTC), false}, // "16010-…" sorts after "1601-…"
		{time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		e := newEntity("p", "r")
		e.time("At", tc.at)
		if _, err := e.marshal(); (err == nil) != tc.ok || err != nil && !errors.Is(err, errEntity) {
			t.Errorf("DateTime %v: %v, want accepted: %v", tc.at, err, tc.ok)
		}
	}
	e := newEntity("p", "r")
	e.time("At", time.Time{})
	if _, ok := e["At"]; ok {
		t.Error("the zero time was written")
	}
}

// Values that arrive without their OData annotation still decode.
func TestDecodeWithoutAnnotations(t *testing.T) {
	p, etag, err := decodeEntity([]byte(`{"PartitionKey":"BC","RowKey":"ABC","odata.etag":"W/\"1\"",` +
		`"Created":"2025-01-02T03:04:05.1234567Z","CertDER":"AQID","Status":"issued","RevocationReason":4}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRecord(p, etag)
	if err != nil {
		t.Fatal(err)
	}
	if r.Serial != "ABC" || r.ETag != `W/"1"` || r.Status != store.StatusIssued || r.RevocationReason != 4 ||
		string(r.CertDER) != "\x01\x02\x03" || r.Created.Nanosecond() != 123456700 {
		t.Errorf("decoded %+v", r)
	}
	p, _, _ = decodeEntity([]byte(`{"PartitionKey":"BC","RowKey":"ABC","Created":true}`))
	if _, err := decodeRecord(p, ""); err == nil {
		t.Error("a boolean Created decoded")
	}
}

// With the scan cap reached, Search hands back a token that resumes after the last record examined, and
// following tokens still finds every match exactly once.
func TestSearchScanCap(t *testing.T) {
	t.Parallel()
	s := newInternalStore(t, func(c *config) { c.maxScan = 3 })
	ctx := t.Context()
	want := map[string]bool{}
	for i := range 10 {
		r := &store.Record{Serial: fmt.Sprintf("%X", 0x1000+i), Status: store.StatusPending, Subject: "CN=hay"}
		if i == 8 {
			r.Subject = "CN=needle"
			want[r.Serial] = true
		}
		if err := s.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	q := store.Query{Subject: "needle", Limit: 5}
	pages, found := 0, map[string]bool{}
	for {
		page, next, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range page {
			if found[r.Serial] {
				t.Errorf("%s returned twice", r.Serial)
			}
			found[r.Serial] = true
		}
		if next == "" || pages > 10 {
			break
		}
		q.Continuation = next
	}
	if pages != 4 || len(found) != 1 || !found["1008"] {
		t.Errorf("found %v in %d pages, want 1008 in 4 pages of at most 3 scanned records", found, pages)
	}
}

// Records and bindings share one partition (so a record and its binding, and the writes of concurrent
// enrollments, can share a transaction), and a binding's row key never looks like a record's.
func TestLayout(t *testing.T) {
	if pk, rk := recordKeys("5CAB12"); pk != certsPK || rk != "5CAB12" {
		t.Errorf("recordKeys(5CAB12) = %s/%s", pk, rk)
	}
	for _, key := range []string{"scep|ep|tx", "api|x", ""} {
		pk, rk := indexKeys(key)
		if pk != certsPK {
			t.Errorf("indexKeys(%q) partition %s, want %s", key, pk, certsPK)
		}
		if rk < recordRowsBelow {
			t.Errorf("binding row key %s sorts among the records", rk)
		}
	}
}

// A compromised-key mark written before marks recorded who made them (no By property) still reads, with By empty.
func TestCompromisedKeyWithoutBy(t *testing.T) {
	t.Parallel()
	s := newInternalStore(t)
	ctx := t.Context()
	const key = "0123456789abcdef"
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	old := newEntity(compromisedPK, key)
	old.str("Serial", "5CAB12")
	old.time("MarkedAt", at)
	if _, err := s.add(ctx, s.revoked, "writing an old mark", old); err != nil {
		t.Fatal(err)
	}
	got, err := s.Compromised(ctx, key)
	if err != nil || got.Serial != "5CAB12" || got.By != "" || !got.MarkedAt.Equal(at) {
		t.Fatalf("Compromised of a mark without By = %+v, %v", got, err)
	}
	// Marking again keeps it as it was.
	kept, created, err := s.MarkCompromised(ctx, store.CompromisedKey{PublicKey: key, Serial: "5CAB13", By: "admin:x", MarkedAt: at.Add(time.Hour)})
	if err != nil || created || kept.Serial != "5CAB12" || kept.By != "" {
		t.Fatalf("MarkCompromised over an old mark = %+v, %t, %v", kept, created, err)
	}
}

// A deployment upgraded in place keeps the records and idempotency bindings older versions wrote in their own
// layouts of the certs table: one partition per serial (row key "cert") with the bindings in an index table, as
// until 2026-12-05 13:11, then one partition per serial's low byte, bindings in their key's partition, until
// 2026-12-05 19:12. The next start carries them into the certs partition, so that OCSP, revocation (admin, CLI,
// Intune), renewals, idempotent retries and the pending sweep still find them.
func TestOlderLayoutsAreCarriedForward(t *testing.T) {
	t.Parallel()
	conn := azuritetest.ConnectionString(t)
	old, err := NewFromConnectionString(conn, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := old.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	oldRecord := func(pk, rk, serial string, st store.Status) entity {
		e := newEntity(pk, rk)
		e.str("Status", string(st))
		e.str("Subject", "CN=device "+serial)
		e.jsonStr("SANs", []string{"dns:" + serial + ".example"})
		e.time("NotAfter", created.AddDate(1, 0, 0))
		e.str("PublicKey", "0123456789abcdef")
		e.str("Source", "scep")
		e.binary("CertDER", []byte{0x30, 0x03, 0x02, 0x01, 0x01})
		e.time("Created", created)
		e.time("Updated", created)
		return e
	}
	// The first layout: the record's partition is its serial, the binding is in the index table.
	if _, err := old.add(ctx, old.certs, "old record", oldRecord("5CAB12", "cert", "5CAB12", store.StatusIssued)); err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimSuffix(old.TableNames()[0], TableCerts)
	index := old.svc.NewClient(prefix + "index")
	if _, err := old.svc.CreateTable(ctx, prefix+"index", nil); err != nil {
		t.Fatal(err)
	}
	firstKey := "scep|intune|tx-1"
	h := hashHex(firstKey)
	b := newEntity(h[:2], h)
	b.str("Key", firstKey)
	b.str("Serial", "5CAB12")
	b.time("Created", created)
	if _, err := old.add(ctx, index, "old binding", b); err != nil {
		t.Fatal(err)
	}
	// The second layout: the record's partition is its serial's low byte, the binding's the first byte of its hash.
	if _, err := old.add(ctx, old.certs, "old record", oldRecord("13", "ABC13", "ABC13", store.StatusPending)); err != nil {
		t.Fatal(err)
	}
	secondKey := "api|user|retry-1"
	h = hashHex(secondKey)
	b = newEntity(strings.ToUpper(h[:2]), bindingRowPrefix+h)
	b.str("Key", secondKey)
	b.str("Serial", "ABC13")
	b.time("Created", created)
	if _, err := old.add(ctx, old.certs, "old binding", b); err != nil {
		t.Fatal(err)
	}
	// An older entity nobody can read (no status, a binding without a key) stays behind and does not stop the start.
	if _, err := old.add(ctx, old.certs, "broken record", newEntity("7F", "BAD7F")); err != nil {
		t.Fatal(err)
	}
	if _, err := old.add(ctx, index, "broken binding", newEntity("00", "00ff")); err != nil {
		t.Fatal(err)
	}

	// The current version starts on the same tables.
	s, err := NewFromConnectionString(conn, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	for serial, st := range map[string]store.Status{"5CAB12": store.StatusIssued, "ABC13": store.StatusPending} {
		r, err := s.Get(ctx, serial)
		if err != nil {
			t.Fatalf("Get(%s) of a record an older version wrote: %v", serial, err)
		}
		if r.Status != st || r.Subject != "CN=device "+serial || !r.Created.Equal(created) || len(r.CertDER) != 5 {
			t.Errorf("Get(%s) = %+v", serial, r)
		}
	}
	for key, serial := range map[string]string{firstKey: "5CAB12", secondKey: "ABC13"} {
		if b, err := s.Lookup(ctx, key); err != nil || b.Serial != serial {
			t.Errorf("Lookup(%q) of an older version's binding = %+v, %v; want %s", key, b, err, serial)
		}
	}
	if _, err := s.Get(ctx, "BAD7F"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an unreadable older record = %v, want not found (left behind)", err)
	}
	if p, err := s.Pending(ctx, time.Now()); err != nil || len(p) != 1 || p[0].Serial != "ABC13" {
		t.Errorf("Pending = %v, %v; want the older version's pending record", p, err)
	}
	if page, _, err := s.Search(ctx, store.Query{Name: "5cab12.example"}); err != nil || len(page) != 1 {
		t.Errorf("Search by name = %v, %v", page, err)
	}
	// A carried record is written like any other (a revocation).
	r, err := s.Get(ctx, "5CAB12")
	if err != nil {
		t.Fatal(err)
	}
	r.Status, r.RevokedAt, r.RevocationReason = store.StatusRevoked, created.Add(time.Hour), 1
	if err := s.Update(ctx, r, store.StatusIssued); err != nil {
		t.Errorf("revoking a carried record: %v", err)
	}
	// Starting again copies nothing twice and keeps what changed since.
	if err := s.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, "5CAB12"); err != nil || r.Status != store.StatusRevoked {
		t.Errorf("after another start, Get = %+v, %v; want the revocation kept", r, err)
	}
}

// An instance of the older version still running while a deployment rolls keeps writing its own layout: it moves
// the records it carries on (pending → issued, issued → revoked, the Intune acceptance) after a start of this
// version copied them. A later start within the re-check day carries those moves onto the copies (forward
// only), or the copy stays pending, or issued and answered good by OCSP and accepted as a renewal signer, although
// the older instance revoked it.
func TestOlderInstanceWritesAfterCarryAreCarried(t *testing.T) {
	t.Parallel()
	conn := azuritetest.ConnectionString(t)
	s, err := NewFromConnectionString(conn, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 12, 5, 15, 0, 0, 0, time.UTC)
	oldRecord := func(serial string, st store.Status, updated time.Time) entity {
		e := newEntity(serial[len(serial)-2:], serial)
		e.str("Status", string(st))
		e.str("Subject", "CN=device "+serial)
		e.time("NotAfter", created.AddDate(1, 0, 0))
		e.str("PublicKey", "0123456789abcdef")
		e.str("Source", "scep")
		e.time("Created", created)
		e.time("Updated", updated)
		return e
	}
	put := func(e entity, add bool) {
		t.Helper()
		var err error
		if add {
			_, err = s.add(ctx, s.certs, "older version", e)
		} else {
			_, err = s.certs.UpsertEntity(ctx, mustMarshal(t, e), nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	put(oldRecord("ABC13", store.StatusPending, created), true)
	issued := oldRecord("DEF24", store.StatusIssued, created)
	issued.binary("CertDER", []byte{0x30, 0x03, 0x02, 0x01, 0x02})
	issued.boolean("Gated", true)
	put(issued, true)
	// A copy the current version changed since it was carried is kept: the older version's later write does not undo it.
	put(oldRecord("BCD35", store.StatusIssued, created), true)

	// The current version starts (a new instance of the rolling deployment): it carries all three.
	if err := s.upgradeLayout(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, "BCD35")
	if err != nil {
		t.Fatal(err)
	}
	r.Status, r.RevokedAt, r.RevocationReason, r.RevokedBy = store.StatusRevoked, created.Add(2*time.Hour), 4, "admin"
	if err := s.Update(ctx, r, store.StatusIssued); err != nil {
		t.Fatal(err)
	}

	// The older instance goes on: it signs the pending one, revokes the issued one, and records Intune's acceptance.
	later := created.Add(time.Hour)
	signed := oldRecord("ABC13", store.StatusIssued, later)
	signed.binary("CertDER", []byte{0x30, 0x03, 0x02, 0x01, 0x01})
	signed.str("SHA256", "AA")
	put(signed, false)
	revoked := oldRecord("DEF24", store.StatusRevoked, later)
	revoked.binary("CertDER", []byte{0x30, 0x03, 0x02, 0x01, 0x02})
	revoked.boolean("Gated", true)
	revoked.boolean("IntuneNotified", true)
	revoked.time("RevokedAt", later)
	revoked.int("RevocationReason", 1)
	revoked.str("RevokedBy", "intune")
	put(revoked, false)
	stale := oldRecord("BCD35", store.StatusIssued, created.Add(3*time.Hour))
	stale.str("RenewedTo", "ABC13")
	// It also records Intune's acceptance, which is carried onto the copy; the copy's revocation must not go with it.
	stale.boolean("IntuneNotified", true)
	put(stale, false)

	// Another start within the re-check day.
	if err := s.upgradeLayout(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, "ABC13"); err != nil || r.Status != store.StatusIssued || len(r.CertDER) != 5 || r.SHA256 != "AA" {
		t.Errorf("a record the older instance issued after it was carried: Get = %+v, %v; want it issued", r, err)
	}
	if r, err := s.Get(ctx, "DEF24"); err != nil || r.Status != store.StatusRevoked || r.RevocationReason != 1 ||
		r.RevokedBy != "intune" || !r.RevokedAt.Equal(later) || !r.IntuneNotified {
		t.Errorf("a record the older instance revoked after it was carried: Get = %+v, %v; want it revoked", r, err)
	}
	if r, err := s.Get(ctx, "BCD35"); err != nil || r.Status != store.StatusRevoked || r.RevocationReason != 4 || !r.IntuneNotified {
		t.Errorf("a copy revoked since it was carried: Get = %+v, %v; want the revocation kept, with Intune's acceptance", r, err)
	}
}

func mustMarshal(t *testing.T, e entity) []byte {
	t.Helper()
	b, err := e.marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refusingTransport fails every request as a network that cannot reach the service does: with the *url.Error
// net/http returns, whose message carries the request URL, query string included.
type refusingTransport struct{}

func (refusingTransport) Do(req *http.Request) (*http.Response, error) {
	return nil, &url.Error{Op: req.Method, URL: req.URL.String(), Err: errors.New("dial tcp: connection refused")}
}

// TestTransportErrorHidesSAS: with a SAS connection string every request URL carries the signature, and a
// failed request's error (logged, e.g. by /api/health) must not.
func TestTransportErrorHidesSAS(t *testing.T) {
	const sig = "c2VjcmV0LXNpZ25hdHVyZS1vZi10aGUtc2Fz"
	conn := "AccountName=acct;SharedAccessSignature=sv=2022-11-02&ss=t&srt=sco&sp=rwdlacu&sig=" + sig
	s, err := NewFromConnectionString(conn, "p", WithTransport(refusingTransport{}),
		WithRetry(policy.RetryOptions{MaxRetries: -1}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, getErr := s.Get(ctx, "1A")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for name, err := range map[string]error{"Ping": s.Ping(ctx), "Get": getErr, "canceled Ping": s.Ping(cctx)} {
		if err == nil {
			t.Fatalf("%s through a refusing transport succeeded", name)
		}
		if strings.Contains(err.Error(), sig) {
			t.Errorf("%s error carries the SAS signature: %v", name, err)
		}
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
	var ue *url.Error
	if err := s.Ping(ctx); !errors.As(err, &ue) || strings.Contains(ue.URL, sig) {
		t.Errorf("Ping = %v: want the *url.Error kept, without the signature", err)
	}
}
