package revocation

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// DefaultKeyFreshness is how old CompromisedKeys' view may be before a question reads the revocation generation
// again: the OCSP responder's bound for another instance's revocation, so that a key is refused everywhere about as
// soon as its certificate is published as revoked.
const DefaultKeyFreshness = 30 * time.Second

// CompromisedKeys answers whether a key is marked compromised (store.CompromisedKey) for every new certificate,
// at every door, without a store call per question. It keeps the marks in memory and lists them again only when the
// revocation generation has moved: a revocation marks its key before it bumps the generation, so a view listed
// after reading a generation holds every mark made before that generation. The generation is read again when the
// view is older than Freshness (one point read per instance per Freshness under load, none per enrollment), and at
// once after this instance's own revocations (Invalidate).
//
// Renewals keep their exact point reads (the SCEP renewal cut-off); this is what first enrollments and /api/csr
// ask, which a mark made on another instance reaches within Freshness.
type CompromisedKeys struct {
	Store interface {
		store.Meta
		ListCompromised(ctx context.Context) ([]store.CompromisedKey, error)
	}
	// Freshness bounds the view's age (0: DefaultKeyFreshness).
	Freshness time.Duration
	// Now is the clock the view's age is measured on (nil: time.Now, whose monotonic reading a stepped wall
	// clock does not move).
	Now func() time.Time

	mu     sync.Mutex
	marks  map[string]store.CompromisedKey // nil until the first listing
	gen    uint64
	readAt time.Time // when the generation was last read, with its monotonic reading
}

// Compromised returns the mark of the key whose Record.PublicKey is keyHash, and whether there is one. An error
// (the store unreachable when the view is due) is the caller's to fail closed on.
func (c *CompromisedKeys) Compromised(ctx context.Context, keyHash string) (store.CompromisedKey, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := c.Freshness
	if fresh <= 0 {
		fresh = DefaultKeyFreshness
	}
	if now := c.now(); c.marks == nil || now.Sub(c.readAt) >= fresh || now.Before(c.readAt) {
		if err := c.refreshLocked(ctx); err != nil {
			return store.CompromisedKey{}, false, err
		}
	}
	k, ok := c.marks[keyHash]
	return k, ok, nil
}

// Refresh reads the generation and, when it moved (or nothing was listed yet), lists the marks again: at start-up,
// so that the first enrollment does not wait for it.
func (c *CompromisedKeys) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshLocked(ctx)
}

// Invalidate makes the next question read the generation: this instance has just revoked something.
func (c *CompromisedKeys) Invalidate() {
	c.mu.Lock()
	c.readAt = time.Time{}
	c.mu.Unlock()
}

func (c *CompromisedKeys) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *CompromisedKeys) refreshLocked(ctx context.Context) error {
	at := c.now()
	g, _, err := readGeneration(ctx, c.Store)
	if err != nil {
		return fmt.Errorf("checking compromised keys: %w", err)
	}
	if c.marks == nil || g.N != c.gen {
		list, err := c.Store.ListCompromised(ctx)
		if err != nil {
			return fmt.Errorf("listing compromised keys: %w", err)
		}
		marks := make(map[string]store.CompromisedKey, len(list))
		for _, k := range list {
			marks[k.PublicKey] = k
		}
		c.marks, c.gen = marks, g.N
	}
	c.readAt = at
	return nil
}
