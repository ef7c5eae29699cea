package tables

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// quotedNamesRecord is the largest record an enrollment can leave: a CSR of 16 KiB filled with URI names of
// double quotes (url.Parse and policy take them), which JSON escapes twice on the way out (\" in the SANs column,
// \\\" in the service's answer), and the certificate and the planned certificate that carry those names again.
// The service's answer holds it in about 105 KB, so a page of 1,000 such records is some 105 MB.
func quotedNamesRecord() *store.Record {
	r := storetest.FullRecord(storetest.NewSerial())
	r.SANs = nil
	for range 30 {
		r.SANs = append(r.SANs, "uri:urn:"+strings.Repeat(`"`, 500))
	}
	r.CertDER, r.PlannedDER = make([]byte, 16<<10), make([]byte, 16<<10)
	_, _ = rand.Read(r.CertDER)
	_, _ = rand.Read(r.PlannedDER)
	return r
}

// A page the service answers in more bytes than the client takes (maxAnswerBytes, here lowered with the records
// to match) is asked for again in smaller pages: records an enrollment can write must not make the backup, or a
// search by name (whose pages are the service's largest), fail for good.
func TestLargePagesAreReadInSmallerPages(t *testing.T) {
	t.Parallel()
	const records = 24
	s := newInternalStore(t, func(c *config) { c.maxAnswer = 1 << 20 }) // a page of 24 such records is some 2.5 MB
	ctx := t.Context()
	for range records {
		if err := s.Insert(ctx, quotedNamesRecord()); err != nil {
			t.Fatal(err)
		}
	}
	var backup bytes.Buffer
	counts, err := s.Backup(ctx, &backup)
	if err != nil || counts[TableCerts] != records {
		t.Errorf("Backup = %s, %v; want the %d records", counts, err, records)
	}
	page, next, err := s.Search(ctx, store.Query{Name: "urn:", Limit: 100})
	if err != nil || len(page) != records || next != "" {
		t.Errorf("Search by name = %d records (next %q), %v; want the %d records", len(page), next, err, records)
	}
	if got, err := s.Pending(ctx, s.stamp().Add(1)); err != nil || len(got) != records {
		t.Errorf("Pending = %d records, %v; want the %d records", len(got), err, records)
	}
}
