package main

import (
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestStartUpHonoursKeyVaultRetryAfter: Key Vault throttling the start (a scale-out of many cold instances) names
// the time to come back in Retry-After. The start waits that long before its next attempt; it used to retry after
// one second, then two, and so on, whatever Key Vault had asked, so every starting instance kept the throttling going.
func TestStartUpHonoursKeyVaultRetryAfter(t *testing.T) {
	caKey, _, _ := vaultKeys(t)
	v := newVaultCA(t, caKey, "", nil)
	// Longer than the Key Vault client's own retry budget (keyvault.Options.MaxWait, 5 s), so the start sees it.
	const retryAfter = 6 * time.Second
	v.kv.Throttle(kvfake.OpGet, 1, retryAfter)
	start := time.Now()
	svc := v.start(t)
	if took := time.Since(start); took < retryAfter {
		t.Errorf("ready %v after a start Key Vault asked to come back in %v", took.Round(time.Millisecond), retryAfter)
	}
	if got := v.kv.Count(kvfake.OpGet); got != 3 {
		t.Errorf("%d key reads, want 3: the throttled one, then the CA key and the key-encryption key", got)
	}
	if !strings.Contains(svc.logText(), "Key Vault, which is throttling the app") {
		t.Errorf("the log does not say the start waits for Key Vault's throttling:\n%s", svc.logText())
	}
}
