package keyvault_test

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestOperationOnADeletedKeyIsUnavailable: a key version New loaded and that is deleted afterwards answers 404 to a
// signature. That is the service's outage until an operator recovers the key, not a missing key a bootstrap should
// create nor a client's fault: ErrUnavailable, naming the recovery. After the recovery the same Key signs again.
func TestOperationOnADeletedKeyIsUnavailable(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	d := digest(crypto.SHA256, "x")
	e.fake.SoftDelete("ca")
	_, err := k.SignContext(context.Background(), d, crypto.SHA256)
	if !errors.Is(err, keyvault.ErrUnavailable) || errors.Is(err, keyvault.ErrNotFound) {
		t.Fatalf("sign with the key deleted = %v, want ErrUnavailable (not ErrNotFound)", err)
	}
	if !strings.Contains(err.Error(), "recover") {
		t.Errorf("the error does not say the key can be recovered: %v", err)
	}
	// New still tells a missing key from an outage: `ca init` creates a key on ErrNotFound.
	if _, err := keyvault.New(context.Background(), e.client, "ca", "", keyvault.Options{}); !errors.Is(err, keyvault.ErrNotFound) {
		t.Fatalf("New with the key deleted = %v, want ErrNotFound", err)
	}
	e.fake.Recover("ca")
	if _, err := k.SignContext(context.Background(), d, crypto.SHA256); err != nil {
		t.Fatalf("sign after the recovery: %v", err)
	}
}
