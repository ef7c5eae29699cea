package revocation_test

import (
	"context"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/testca"
)

// countingMarks counts the listings and generation reads a CompromisedKeys makes.
type countingMarks struct {
	*memstore.Store
	lists, metaReads int
}

func (c *countingMarks) ListCompromised(ctx context.Context) ([]store.CompromisedKey, error) {
	c.lists++
	return c.Store.ListCompromised(ctx)
}

func (c *countingMarks) GetMeta(ctx context.Context, name string) ([]byte, string, error) {
	c.metaReads++
	return c.Store.GetMeta(ctx, name)
}

// TestCompromisedKeysView: the view answers from memory, reads the generation once per Freshness, lists the marks
// again only when the generation moved (a revocation marks its key before bumping it), and at once after
// Invalidate; a mark made by a revocation on another instance is seen within Freshness.
func TestCompromisedKeysView(t *testing.T) {
	ctx := context.Background()
	st := &countingMarks{Store: memstore.New()}
	clock := testca.NewClock(time.Now())
	view := &revocation.CompromisedKeys{Store: st, Now: clock.Now}
	const key = "0f1e2d3c4b5a6978"
	if err := view.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, found, err := view.Compromised(ctx, key); err != nil || found {
			t.Fatalf("Compromised before any mark: %t, %v", found, err)
		}
	}
	if st.lists != 1 || st.metaReads != 1 {
		t.Fatalf("100 questions inside the interval made %d listings and %d generation reads, want the start's 1 and 1", st.lists, st.metaReads)
	}

	// Another instance revokes a certificate with this key for keyCompromise: the mark, then the generation.
	if _, _, err := st.MarkCompromised(ctx, store.CompromisedKey{PublicKey: key, Serial: "0A", MarkedAt: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := revocation.BumpGeneration(ctx, st, "0A"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := view.Compromised(ctx, key); found {
		t.Fatal("the view was read again inside the interval")
	}
	clock.Advance(revocation.DefaultKeyFreshness)
	if mark, found, err := view.Compromised(ctx, key); err != nil || !found || mark.Serial != "0A" {
		t.Fatalf("after the interval: %+v, %t, %v; want the mark", mark, found, err)
	}
	if st.lists != 2 {
		t.Fatalf("%d listings, want a second one for the moved generation", st.lists)
	}

	// A due view whose generation has not moved reads the generation only.
	clock.Advance(revocation.DefaultKeyFreshness)
	reads := st.metaReads
	if _, found, _ := view.Compromised(ctx, key); !found || st.lists != 2 || st.metaReads != reads+1 {
		t.Fatalf("unchanged generation: found %t, %d listings, %d generation reads; want 2 listings and one read",
			found, st.lists, st.metaReads-reads)
	}

	// This instance's own revocation: Invalidate makes the next question look at once.
	const other = "aa55"
	if _, _, err := st.MarkCompromised(ctx, store.CompromisedKey{PublicKey: other, Serial: "0B", MarkedAt: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := revocation.BumpGeneration(ctx, st, "0B"); err != nil {
		t.Fatal(err)
	}
	view.Invalidate()
	if _, found, err := view.Compromised(ctx, other); err != nil || !found {
		t.Fatalf("after Invalidate: %t, %v; want the new mark", found, err)
	}
}

// TestCompromisedKeysFailClosed: when the view is due and the store cannot be read, the question fails (the
// issuer refuses to go on) rather than answering from nothing.
func TestCompromisedKeysFailClosed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	view := &revocation.CompromisedKeys{Store: memstore.New()}
	if _, found, err := view.Compromised(ctx, "ab"); err == nil || found {
		t.Fatalf("Compromised with an unreadable store: %t, %v; want an error", found, err)
	}
}
