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
	d, err := NewDeviceOwnership(GraphConfig{Credential: nopCred{}, MaxCacheEntries: 3, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		d.store(ownershipKey{user: "u", device: fmt.Sprint(i)}, ownershipEntry{verdict: DeviceOwned, expires: now.Add(time.Minute)})
		if len(d.cache) > 3 {
			t.Fatalf("cache grew to %d entries, limit 3", len(d.cache))
		}
	}
	// The newest entry always survives eviction.
	if _, ok := d.cache[ownershipKey{user: "u", device: "9"}]; !ok {
		t.Fatal("newest entry evicted")
	}
	// Expired entries go first.
	now = now.Add(2 * time.Minute)
	d.store(ownershipKey{user: "u", device: "fresh"}, ownershipEntry{expires: now.Add(time.Minute)})
	if len(d.cache) != 1 {
		t.Fatalf("expired entries not swept: %d left", len(d.cache))
	}
}
