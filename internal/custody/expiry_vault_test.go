package custody_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestVaultExpiredCAKeyIsNamed: a CA key version past its expiry (attributes.exp, which a rotation policy's
// expiryTime puts on every version it makes) is refused by Key Vault at every signature with a 403, which start-up
// would wait out as a role still spreading. Load and an RA renewal say that the version expired and how to fix it,
// before any signature; once its expiry is moved, the same pinned version loads again.
func TestVaultExpiredCAKeyIsNamed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	res := mustInit(t, e.v, rootInit("RSA"))

	e.fake.SetExpires("ca", now.Add(-time.Hour)) // in the past by the test's clock and by Key Vault's
	e.fake.Reset()
	_, err := e.instance(t).Load(ctx, now)
	if !errors.Is(err, keyvault.ErrExpired) || errors.Is(err, keyvault.ErrForbidden) || !strings.Contains(err.Error(), "set-attributes") {
		t.Fatalf("Load with the CA key expired = %v, want ErrExpired with the remedy (and not Key Vault's forbidden)", err)
	}
	err = e.instance(t).RotateRA(ctx, "", now)
	if !errors.Is(err, keyvault.ErrExpired) || errors.Is(err, keyvault.ErrForbidden) {
		t.Fatalf("RotateRA with the CA key expired = %v, want ErrExpired", err)
	}
	e.wantCounts(t, map[string]int{kvfake.OpSign: 0, kvfake.OpWrapKey: 0})

	e.fake.SetExpires("ca", time.Now().Add(24*time.Hour))
	e.v = e.instance(t)
	checkLoaded(t, e.load(t), res.KID)

	// An expired key-encryption key still unwraps (Key Vault allows unwrapKey outside the window), so start-up
	// goes on; a new RA, which needs wrapKey, is refused with the expiry named.
	e.fake.SetExpires("kek", now.Add(-time.Hour))
	e.v = e.instance(t)
	checkLoaded(t, e.load(t), res.KID)
	if err := e.v.RotateRA(ctx, "", now); !errors.Is(err, keyvault.ErrExpired) || !strings.Contains(err.Error(), "kek") {
		t.Fatalf("RotateRA with the KEK expired = %v, want ErrExpired naming the KEK", err)
	}
}

// TestVaultInitRefusesAnExpiredKey: ca init does not adopt a CA key whose current version has expired: Key Vault
// would refuse the root's signature with a 403 that the postprovision hook retries for minutes. It fails with
// ErrInitOptions naming the expiry, and creates nothing.
func TestVaultInitRefusesAnExpiredKey(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.fake.MustImportKey(t, "ca", testRSAKey(t, 10), kvfake.KeyOptions{Expires: now.Add(-time.Hour)})
	_, err := e.v.Init(context.Background(), rootInit("RSA"), now)
	if !errors.Is(err, custody.ErrInitOptions) || !errors.Is(err, keyvault.ErrExpired) {
		t.Fatalf("Init = %v, want ErrInitOptions wrapping ErrExpired", err)
	}
	e.absent(t, "ca")
	e.wantCounts(t, map[string]int{kvfake.OpCreate: 0, kvfake.OpSign: 0})
}
