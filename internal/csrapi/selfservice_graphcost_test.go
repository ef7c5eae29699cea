package csrapi_test

import (
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// TestSelfServiceUnknownDevicesGraphCost: a self-service caller naming device IDs that are not theirs (random GUIDs,
// each a cache miss costing an Entra and an Intune lookup) spends only their own budget of Graph lookups. Past it
// they are answered 429 rate_limited with Retry-After and Graph is not asked, so one token cannot spend the app's
// Graph and Intune throttling allowance; another user's device certificate is unaffected, an answer already cached
// is still given, and once the budget refills the caller's own device is looked up and certified.
func TestSelfServiceUnknownDevicesGraphCost(t *testing.T) {
	e := newEnv(t)
	mallory, bob := newUser("mallory"), newUser("bob")
	own, bobs := entrafake.NewGUID(), entrafake.NewGUID()
	e.graph.AddDevice(own, mallory.oid)
	e.graph.AddDevice(bobs, bob.oid)
	tok := e.userToken(mallory, selfService)
	key := ecKey(t, "graphcost")

	// Warm the account and role reads, which the device count below leaves out anyway.
	first := entrafake.NewGUID()
	wantProblem(t, e.post(tok, csrDER(t, key, testca.CSROptions{Subject: cn(first)})), http.StatusForbidden, csrapi.CodeNotOwner)
	n := len(e.graph.Requests())

	const tries = 100
	refused := 0
	for range tries {
		r := e.post(tok, csrDER(t, key, testca.CSROptions{Subject: cn(entrafake.NewGUID())}))
		if r.StatusCode == http.StatusTooManyRequests {
			wantProblem(t, r, http.StatusTooManyRequests, csrapi.CodeRateLimited)
			wantRetryAfter(t, r, 1)
			refused++
			continue
		}
		wantProblem(t, r, http.StatusForbidden, csrapi.CodeNotOwner)
	}
	// The first device spent one lookup; each unknown device costs two Graph calls (no Entra device, no managed
	// device) while the budget lasts, and none after.
	looked := entra.DefaultDeviceLookupBurst - 1
	if refused != tries-looked {
		t.Fatalf("%d of %d unknown devices refused with 429, want %d", refused, tries, tries-looked)
	}
	if calls := len(e.graphCallsSince(n)); calls != 2*looked {
		t.Fatalf("Graph device calls for %d unknown devices = %d, want %d (two per lookup within the budget)",
			tries, calls, 2*looked)
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d, want 0", n)
	}

	// A cached answer needs no lookup: the same unknown device is still refused as not owned, not rate limited.
	n = len(e.graph.Requests())
	wantProblem(t, e.post(tok, csrDER(t, key, testca.CSROptions{Subject: cn(first)})), http.StatusForbidden, csrapi.CodeNotOwner)
	e.wantGraphCalls(t, n)
	// Mallory's own device, not yet looked up, waits for the budget too.
	ownDER := csrDER(t, ecKey(t, "graphcost-own"), testca.CSROptions{Subject: cn(own)})
	wantProblem(t, e.post(tok, ownDER), http.StatusTooManyRequests, csrapi.CodeRateLimited)

	// Bob's budget is his own.
	bobDER := csrDER(t, ecKey(t, "graphcost-bob"), testca.CSROptions{Subject: cn(bobs)})
	if rec := e.record(e.wantCert(e.post(e.userToken(bob, selfService), bobDER))); rec.DeviceID != bobs {
		t.Fatalf("bob's record device ID = %q, want %q", rec.DeviceID, bobs)
	}

	e.clock.Advance(entra.DefaultDeviceLookupInterval)
	tok = e.userToken(mallory, selfService)
	n = len(e.graph.Requests())
	if rec := e.record(e.wantCert(e.post(tok, ownDER))); rec.DeviceID != own {
		t.Fatalf("record device ID = %q, want %q", rec.DeviceID, own)
	}
	e.wantGraphCalls(t, n, gOwners(own), gState(own), gBehind(own))
}
