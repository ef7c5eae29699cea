package issuance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// A device whose Intune notifications get no verdict retries, and a retry that is not the same transaction with the
// same CSR (redeliverable) — a new transaction ID, a CSR signed again — is a new signature and one more withheld
// record. These bound that per key: once maxUndecided certificates for one public key signed by this instance got
// no verdict within undecidedWindow of each other, a further gated request for that key is not signed (503, as the
// outage itself) until one is delivered or the window passes; the retry that redelivers a withheld certificate
// costs no signature and still goes through. The tally lives in memory, as the rate limits do, so the bound is per
// instance; maxUndecidedKeys bounds its size.
const (
	maxUndecided     = 3
	undecidedWindow  = time.Hour
	maxUndecidedKeys = 10_000
)

// ErrUndecidedBacklog: too many certificates for the request's key await an undecided delivery gate (see
// maxUndecided); nothing was recorded or signed. It wraps ErrUndecided, so callers answer it as Intune's outage.
var ErrUndecidedBacklog = fmt.Errorf("%w: certificates for this key already await Intune's verdict", ErrUndecided)

// undecidedTally counts, per public-key hash, the certificates signed here whose delivery gate got no verdict.
type undecidedTally struct {
	mu   sync.Mutex
	keys map[string]undecidedCount
}

type undecidedCount struct {
	n    int
	last time.Time // the latest undecided gate
}

// full reports whether key has reached maxUndecided within the window.
func (u *undecidedTally) full(key string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	c, ok := u.keys[key]
	if ok && now.Sub(c.last) > undecidedWindow {
		delete(u.keys, key)
		return false
	}
	return ok && c.n >= maxUndecided
}

// add counts one more undecided gate for key.
func (u *undecidedTally) add(key string, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.keys == nil {
		u.keys = map[string]undecidedCount{}
	}
	c, ok := u.keys[key]
	if !ok && len(u.keys) >= maxUndecidedKeys {
		for k, v := range u.keys {
			if now.Sub(v.last) > undecidedWindow {
				delete(u.keys, k)
			}
		}
		if len(u.keys) >= maxUndecidedKeys {
			return // an outage across that many devices: each key's own retries are what this bounds
		}
	}
	if ok && now.Sub(c.last) > undecidedWindow {
		c = undecidedCount{}
	}
	u.keys[key] = undecidedCount{n: c.n + 1, last: now}
}

// clear forgets key: a certificate for it was delivered.
func (u *undecidedTally) clear(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.keys, key)
}

// backlogged answers a gated request for a key whose undecided tally is full: the redelivery of the withheld
// certificate its idempotency key is bound to, when that is possible (no signature), and ErrUndecidedBacklog
// otherwise, before anything is recorded.
func (i *Issuer) backlogged(ctx context.Context, req *Request, sk subjectKey) (*Result, error) {
	if req.Key != "" {
		b, err := i.store.Lookup(ctx, req.Key)
		switch {
		case err == nil:
			prev, err := i.store.Get(ctx, b.Serial)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("reading record bound to the idempotency key: %w", err)
			}
			if err == nil {
				res, err := i.redeliverable(ctx, req, prev, sk.hash)
				if err != nil {
					return nil, err
				}
				if res != nil {
					return i.redeliver(ctx, req, res, sk)
				}
			}
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("looking up idempotency key: %w", err)
		}
	}
	i.log.WarnContext(ctx, "not signing: certificates for this key await Intune's verdict", "endpoint", req.Endpoint,
		"transaction_id", req.TxID, "undecided", maxUndecided)
	return nil, ErrUndecidedBacklog
}
