package memstore_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
}

// memstore checks what Table Storage cannot: that from is the stored status.
func TestUpdateChecksStoredStatus(t *testing.T) {
	s := memstore.New()
	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	r.Status = store.StatusRevoked
	if err := s.Update(t.Context(), r, store.StatusIssued); !errors.Is(err, store.ErrTransition) {
		t.Fatalf("Update with a wrong from = %v, want ErrTransition", err)
	}
}

func TestClock(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := memstore.New(memstore.WithClock(func() time.Time { return at }))
	r := &store.Record{Serial: "ABC", Status: store.StatusPending}
	if err := s.Insert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if !r.Created.Equal(at) || !r.Updated.Equal(at) {
		t.Errorf("Created %v Updated %v, want %v", r.Created, r.Updated, at)
	}
	p, err := s.Pending(t.Context(), at.Add(time.Second))
	if err != nil || len(p) != 1 {
		t.Errorf("Pending = %v, %v", p, err)
	}
}

// Records handed out are copies: changing them does not change the store.
func TestCopies(t *testing.T) {
	s := memstore.New()
	r := storetest.FullRecord(storetest.NewSerial())
	if err := s.Insert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	r.PlannedDER[0] ^= 0xff
	r.SANs[0] = "changed"
	got, err := s.Get(t.Context(), r.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.PlannedDER[0] == r.PlannedDER[0] || got.SANs[0] == "changed" {
		t.Error("store shares slices with the caller's record")
	}
	got.CertDER = []byte{1}
	if again, _ := s.Get(t.Context(), r.Serial); again.CertDER != nil {
		t.Error("store shares the record it returned")
	}
}

func BenchmarkInsertUpdate(b *testing.B) {
	s := memstore.New()
	ctx := b.Context()
	for i := 0; b.Loop(); i++ {
		r := storetest.FullRecord(fmt.Sprintf("%X", i+1))
		if err := s.Insert(ctx, r); err != nil {
			b.Fatal(err)
		}
		r.Status = store.StatusIssued
		if err := s.Update(ctx, r, store.StatusPending); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListRevoked10k(b *testing.B) {
	s := memstore.New()
	ctx := b.Context()
	for i := range 10000 {
		if _, err := s.AddRevoked(ctx, store.Revoked{Serial: fmt.Sprintf("%X", i+1), RevokedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := s.ListRevoked(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
