package custody_test

import (
	"context"
	"crypto/elliptic"
	"testing"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// TestVaultInitRefusesAP521CAKey: ca init creates EC CA keys on P-256 or P-384 only, and an existing key it adopts
// must be one too: the CA signs EC certificates with SHA-256 or SHA-384, and Key Vault's P-521 keys sign only
// SHA-512 digests (ES512), so every signature would fail, the root's first, as an error the postprovision hook
// retries for minutes. The key is refused as a configuration error before anything is signed or stored.
func TestVaultInitRefusesAP521CAKey(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testECKey(t, elliptic.P521()))
	_, err := e.v.Init(context.Background(), rootInit("EC"), now)
	wantErr(t, err, custody.ErrInitOptions, "is on curve P-521")
	e.absent(t, "ca")
	e.wantCounts(t, map[string]int{kvfake.OpSign: 0, kvfake.OpCreate: 0})
}
