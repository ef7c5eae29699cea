package main

import (
	"errors"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestKeyVaultExpiredCAKeyStopsStartUp: a CA key version past its expiry is an operator's setting, like a disabled
// one: Key Vault refuses each of its signatures with a 403, so a service that came up would answer every enrollment
// 503 for as long as nobody noticed. Start-up stops with the expiry named instead, before any signature.
func TestKeyVaultExpiredCAKeyStopsStartUp(t *testing.T) {
	caKey, _, _ := vaultKeys(t)
	v := newVaultCA(t, caKey, "", nil)
	v.kv.SetExpires(kvCAKeyName, time.Now().Add(-time.Hour))
	v.kv.Reset()
	_, err := serveUntilExit(t, v.env(), v.opts())
	if !errors.Is(err, keyvault.ErrExpired) {
		t.Fatalf("serve = %v, want the expired-key error", err)
	}
	if n := v.kv.Count(kvfake.OpSign); n != 0 {
		t.Fatalf("%d signatures asked of an expired CA key", n)
	}
}
