package entra

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

type nopCred struct{}

func (nopCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestOwnershipCacheIsBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d, err := NewDirectory(GraphConfig{Credential: nopCred{}, MaxCacheEntries: 3, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		d.owned.put(ownershipKey{user: "u", device: fmt.Sprint(i)}, DeviceAnswer{Verdict: DeviceOwned}, now, time.Minute)
		if n := d.owned.len(); n > 3 {
			t.Fatalf("cache grew to %d entries, limit 3", n)
		}
	}
	// The newest entry always survives eviction.
	if _, ok := d.owned.get(ownershipKey{user: "u", device: "9"}); !ok {
		t.Fatal("newest entry evicted")
	}
	// Expired entries go first.
	now = now.Add(2 * time.Minute)
	d.owned.put(ownershipKey{user: "u", device: "fresh"}, DeviceAnswer{Verdict: DeviceOwned}, now, time.Minute)
	if n := d.owned.len(); n != 1 {
		t.Fatalf("expired entries not swept: %d left", n)
	}
	// An expired entry is not answered.
	d.accounts.put("u", Account{Enabled: true}, now, time.Minute)
	now = now.Add(time.Minute)
	if _, ok := d.accounts.get("u"); ok {
		t.Fatal("an expired account answer was reused")
	}
	// The TTL counts from the question, and an answer to an older question does not replace a newer one.
	asked := now.Add(-50 * time.Second)
	d.accounts.put("u", Account{Enabled: false}, now, time.Minute)
	d.accounts.put("u", Account{Enabled: true}, asked, time.Minute)
	if a, ok := d.accounts.get("u"); !ok || a.Enabled {
		t.Fatalf("a slow older answer replaced a newer one: %+v %v", a, ok)
	}
	d.accounts.put("v", Account{Enabled: true}, asked, time.Minute)
	now = now.Add(15 * time.Second)
	if _, ok := d.accounts.get("v"); ok {
		t.Fatal("an answer was kept for its TTL from when it arrived, not from when it was asked")
	}
}

// len is the number of entries held, expired or not.
func (c *ttlCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
