package main

import (
	"bytes"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestRevokeCommand: `azscep revoke` is the admin API's revocation without the API (break-glass): the record and
// the index say revoked with the reason, the key is marked for keyCompromise, a second run says it was already
// revoked, and an unknown serial is an error.
func TestRevokeCommand(t *testing.T) {
	s := startNames(t)
	cert := s.wantAPICert(t, s.entra.MintApp([]string{entra.RoleCSRRequestDb}), testca.CSROptions{Subject: pkix.Name{CommonName: "svc-breakglass"}})
	serial := store.SerialString(cert.SerialNumber)
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := revokeCommand(t.Context(), s.cfg, args, &out, buildOptions{store: s.store})
		return out.String(), err
	}
	out, err := run("-serial", strings.ToLower(serial), "-reason", "keyCompromise", "-comment", "laptop stolen")
	if err != nil || !strings.Contains(out, serial+" revoked (keyCompromise") {
		t.Fatalf("revoke = %q, %v", out, err)
	}
	rec, err := s.store.Get(t.Context(), serial)
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != 1 {
		t.Fatalf("record after revoke: %+v, %v", rec, err)
	}
	revoked, err := s.store.ListRevoked(t.Context())
	found := false
	for _, r := range revoked {
		found = found || r.Serial == serial
	}
	if err != nil || !found {
		t.Fatalf("the revocation index lacks %s (%v)", serial, err)
	}
	if _, err := s.store.Compromised(t.Context(), rec.PublicKey); err != nil {
		t.Fatalf("keyCompromise did not mark the key: %v", err)
	}
	if out, err := run("-serial", serial); err != nil || !strings.Contains(out, "already revoked (keyCompromise") {
		t.Fatalf("second revoke = %q, %v", out, err)
	}
	if _, err := run("-serial", "0A0B0C0D0E0F"); err == nil || !errors.Is(err, store.ErrNotFound) && !errors.Is(err, revocation.ErrNotRevocable) {
		t.Fatalf("unknown serial: %v", err)
	}
}
