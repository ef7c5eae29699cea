package ocsp

import (
	"crypto"
	"hash/maphash"
	"math/big"
	"sync"
	"time"
)

// cacheShards spreads lock contention; a hit takes one shard's read lock.
const cacheShards = 32

// cachedResponse is a signed response and what HTTP caching needs to know about it. Immutable.
type cachedResponse struct {
	der        []byte
	thisUpdate time.Time
	nextUpdate time.Time
	// staleAt is when the responder stops serving it: shortly before nextUpdate.
	staleAt time.Time
	etag    string
	// public is true for nonce-less responses, which any client or HTTP cache may share.
	public bool
	// status is what the response says, for the answers to requests with a nonce, signed from it.
	status Status
}

// responseCache holds nonce-less responses per (CertID hash algorithm, serial). It is bounded: when a shard is
// full an expired entry, or failing that an arbitrary one, is evicted — random replacement keeps hits on a read
// lock, which an LRU's move-to-front would not.
type responseCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*cachedResponse
}

func newResponseCache(size int) *responseCache {
	c := &responseCache{seed: maphash.MakeSeed(), perShard: max(size/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cachedResponse)
	}
	return c
}

// cacheKey identifies a response: the CertID hash matters because a response's CertID must match the
// request's byte for byte.
func cacheKey(h crypto.Hash, serial *big.Int) string {
	b := serial.Bytes()
	key := make([]byte, 2, 2+len(b))
	key[0] = byte(h)
	if serial.Sign() < 0 {
		key[1] = 1
	}
	return string(append(key, b...))
}

func (c *responseCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

func (c *responseCache) get(key string, now time.Time) *cachedResponse {
	s := c.shard(key)
	s.mu.RLock()
	r := s.m[key]
	s.mu.RUnlock()
	if r == nil || !now.Before(r.staleAt) {
		return nil
	}
	return r
}

func (c *responseCache) put(key string, r *cachedResponse, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.m[key]; !exists && len(s.m) >= c.perShard {
		evicted, scanned := false, 0
		for k, v := range s.m {
			if !now.Before(v.staleAt) {
				delete(s.m, k)
				evicted = true
			}
			if scanned++; scanned >= 8 {
				break
			}
		}
		if !evicted {
			for k := range s.m { // map iteration order is randomised: random replacement
				delete(s.m, k)
				break
			}
		}
	}
	s.m[key] = r
}

func (c *responseCache) remove(serial *big.Int) {
	for h := range hashOIDs {
		key := cacheKey(h, serial)
		s := c.shard(key)
		s.mu.Lock()
		delete(s.m, key)
		s.mu.Unlock()
	}
}

// clear drops every cached response.
func (c *responseCache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

func (c *responseCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
