package keyvault_test

import (
	"context"
	"crypto"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestRefusedStandsUntilAnOperationSucceeds: a 403 leaves a standing Refusal with Key Vault's inner code and the
// time of the first refusal; throttling and outages, which pass by themselves, leave none; the next operation Key
// Vault carries out clears it.
func TestRefusedStandsUntilAnOperationSucceeds(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{MaxAttempts: 1})
	d := digest(crypto.SHA256, "x")
	sign := func() { _, _ = k.SignContext(context.Background(), d, crypto.SHA256) }

	e.fake.Throttle(kvfake.OpSign, 1, time.Second)
	sign()
	e.fake.Fail(kvfake.OpSign, 1, http.StatusServiceUnavailable)
	sign()
	if r := k.Refused(); r != nil {
		t.Fatalf("Refused after throttling and an outage = %+v, want nil", r)
	}
	e.fake.Forbid(kvfake.OpSign, 2, kvfake.ForbiddenByRbac)
	sign()
	first := k.Refused()
	sign()
	r := k.Refused()
	if r == nil || r.Op != "sign" || r.Status != http.StatusForbidden || r.Code != kvfake.ForbiddenByRbac || !r.Since.Equal(first.Since) {
		t.Fatalf("Refused after two 403s = %+v (first %+v), want sign 403 ForbiddenByRbac since the first", r, first)
	}
	sign()
	if r := k.Refused(); r != nil {
		t.Fatalf("Refused after a signature = %+v, want nil", r)
	}
}
