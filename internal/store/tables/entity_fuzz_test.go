package tables

import (
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// FuzzDecodeRecord feeds arbitrary entity JSON (as the service returns it) to decodeEntity and decodeRecord. They
// must not panic, must allocate a bounded amount, and any record they accept that checkRecord allows writing must
// survive a write and a read unchanged: recordEntity, marshal, decodeEntity, decodeRecord give it back as it was
// (the store's own normalisation of what it reads is a fixed point).
func FuzzDecodeRecord(f *testing.F) {
	now := time.Date(2026, 12, 6, 20, 11, 0, 123456789, time.UTC)
	full := &store.Record{Serial: "01AB", Status: store.StatusRevoked, Issuer: "CN=CA", Subject: "CN=dev,O=Contoso",
		SANs: []string{"dns:a.example", "uri:IntuneDeviceId://x"}, NotBefore: now, NotAfter: now.Add(time.Hour),
		SHA1: "AA", Source: store.SourceSCEP, Endpoint: "intune", Requester: "oid", Profile: "intune", TxID: "tx",
		DeviceID: "dev", DeviceObjectID: "obj", PlannedDER: []byte{0x30, 0x00}, CertDER: []byte{0x30, 0x03, 0x02, 0x01, 0x05},
		IntuneNotified: true, Gated: true, GateUndecided: true, RevokedAt: now, RevocationReason: 1, RevokedBy: "admin:alice", Note: "é😀",
		Created: now, Updated: now, RenewedFrom: "02", ChainStarted: now,
		ChainEnds: now.Add(time.Hour)}
	for _, r := range []*store.Record{full, {Serial: "1", Status: store.StatusPending}} {
		b, err := recordEntity(r).marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"PartitionKey":"certs","RowKey":"A1","Status":"issued","NotBefore":"2026-01-02T03:04:05.1234567Z","CertDER":"MAA=","RevocationReason":5}`))
	f.Add([]byte(`{"PartitionKey":"certs","RowKey":"A1","Status":"issued","RevocationReason@odata.type":"Edm.Int64","RevocationReason":"99999999999"}`))
	f.Add([]byte(`{"PartitionKey":"certs","RowKey":"A1","Status":"issued","NotAfter@odata.type":"Edm.DateTime","NotAfter":"9999-12-31T23:59:59Z"}`))
	f.Add([]byte(`{"PartitionKey":"certs","RowKey":"A1","Status":"issued","SANs":"[]","CertDER@odata.type":"Edm.Binary","CertDER":""}`))
	f.Add([]byte(`{"RowKey":1}`))

	f.Fuzz(func(t *testing.T, raw []byte) {
		var (
			rec *store.Record
			err error
		)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		p, etag, err := decodeEntity(raw)
		if err == nil {
			rec, err = decodeRecord(p, etag)
		}
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<10+64*uint64(len(raw)) {
			t.Errorf("%d bytes: decoding allocated %d KiB", len(raw), alloc>>10)
		}
		if err != nil || checkRecord(rec) != nil {
			return
		}
		b, err := recordEntity(rec).marshal()
		if err != nil {
			return // over a property limit: refused on write, with its own error
		}
		p2, etag2, err := decodeEntity(b)
		if err != nil {
			t.Fatalf("own entity %s does not decode: %v", b, err)
		}
		back, err := decodeRecord(p2, etag2)
		if err != nil {
			t.Fatalf("own entity %s does not decode as a record: %v", b, err)
		}
		back.ETag = rec.ETag
		if !reflect.DeepEqual(back, rec) {
			t.Fatalf("read %+v from %s\nwrote and read back %+v", rec, raw, back)
		}
	})
}
