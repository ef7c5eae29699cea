package entra

import (
	"sync"
	"time"
)

// ttlCache keeps Graph answers for a while, bounded in size. A miss only costs a Graph call, so when it is full it
// drops expired entries and then arbitrary ones rather than keeping LRU bookkeeping.
type ttlCache[K comparable, V any] struct {
	mu    sync.Mutex
	limit int
	clock func() time.Time
	m     map[K]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v       V
	asked   time.Time // when the question was sent to Graph
	expires time.Time
}

func newTTLCache[K comparable, V any](limit int, clock func() time.Time) *ttlCache[K, V] {
	return &ttlCache[K, V]{limit: limit, clock: clock, m: make(map[K]ttlEntry[V])}
}

// get returns the unexpired answer for k.
func (c *ttlCache[K, V]) get(k K) (V, bool) {
	v, _, ok := c.getAsked(k)
	return v, ok
}

// getAsked is get, with when the question behind the answer was sent.
func (c *ttlCache[K, V]) getAsked(k K) (V, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if ok && c.clock().Before(e.expires) {
		return e.v, e.asked, true
	}
	if ok {
		delete(c.m, k)
	}
	var zero V
	return zero, time.Time{}, false
}

// put keeps v, Graph's answer to a question sent at asked, for k until asked+ttl: the TTL counts from the question,
// so a slow answer is not kept longer, and an answer to a question sent before the one held does not replace it
// (a slow "enabled" read must not overwrite a newer "disabled"). The newest entry always survives eviction.
func (c *ttlCache[K, V]) put(k K, v V, asked time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	held, exists := c.m[k]
	if exists && held.asked.After(asked) {
		return
	}
	if !exists && len(c.m) >= c.limit {
		for old, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, old)
			}
		}
		for old := range c.m {
			if len(c.m) < c.limit {
				break
			}
			delete(c.m, old)
		}
	}
	c.m[k] = ttlEntry[V]{v: v, asked: asked, expires: asked.Add(ttl)}
}
