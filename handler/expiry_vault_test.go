package main

import (
	"errors"
	"strings"
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

// TestKeyVaultWarnsOfACAKeyExpiringBeforeTheCA: a CA key version whose expiry comes before the CA certificate's end
// (a rotation policy's expiryTime sets one) serves, and start-up warns of the day the CA will stop signing; a
// version that outlives the certificate gets no warning.
func TestKeyVaultWarnsOfACAKeyExpiringBeforeTheCA(t *testing.T) {
	caKey, _, _ := vaultKeys(t)
	v := newVaultCA(t, caKey, "", nil)
	const warning = "the CA key version expires before the CA certificate"

	v.kv.SetExpires(kvCAKeyName, time.Now().Add(10*365*24*time.Hour))
	svc := v.start(t)
	if strings.Contains(svc.logs.String(), warning) {
		t.Fatal("warned of a CA key version that outlives the CA certificate")
	}
	svc.stop()

	v.kv.SetExpires(kvCAKeyName, time.Now().Add(30*24*time.Hour))
	svc = v.start(t)
	if !strings.Contains(svc.logs.String(), warning) || !strings.Contains(svc.logs.String(), "set-attributes") {
		t.Fatalf("no warning of the CA key version's expiry before the CA certificate's:\n%s", svc.logs.String())
	}
}
