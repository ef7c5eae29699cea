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

// TestForbiddenSaysWhichLayerRefuses: Key Vault answers 403 both when its firewall refuses the caller's address and
// when the identity lacks a role, and the operator's fix differs (networking settings vs a role assignment). The
// firewall's refusal matches ErrFirewall as well as ErrForbidden, a role's only ErrForbidden, and both name Key
// Vault's inner code in the message the log carries.
func TestForbiddenSaysWhichLayerRefuses(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	d := digest(crypto.SHA256, "x")
	for _, tc := range []struct {
		inner    string
		firewall bool
	}{
		{kvfake.ForbiddenByFirewall, true},
		{kvfake.ForbiddenByRbac, false},
	} {
		e.fake.Forbid(kvfake.OpSign, 1, tc.inner)
		_, err := k.SignContext(context.Background(), d, crypto.SHA256)
		if !errors.Is(err, keyvault.ErrForbidden) {
			t.Fatalf("%s: err = %v, want ErrForbidden", tc.inner, err)
		}
		if got := errors.Is(err, keyvault.ErrFirewall); got != tc.firewall {
			t.Errorf("%s: errors.Is(err, ErrFirewall) = %v, want %v (%v)", tc.inner, got, tc.firewall, err)
		}
		if !strings.Contains(err.Error(), tc.inner) {
			t.Errorf("%s: the message does not name the inner code: %v", tc.inner, err)
		}
	}
}
