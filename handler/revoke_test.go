package main

import (
	"bytes"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// TestRevokeCommand: `azscep revoke` is the admin API's revocation without the API (break-glass): the record and
// the index say revoked with the reason, the key is marked for keyCompromise, a second run says it was already
// revoked, and an unknown serial is an error.
func TestRevokeCommand(t *testing.T) {
	s := startNames(t)
	cert := s.wantAPICert(t, s.entra.MintApp([]string{entra.RoleCSRRequestDb}), testca.CSROptions{Subject: pkix.Name{CommonName: "svc-breakglass"}})
	serial := store.SerialString(cert.SerialNumber)
	logs := &testca.LogBuffer{}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := revokeCommand(t.Context(), s.cfg, slog.New(slog.NewJSONHandler(logs, nil)), args, &out, buildOptions{store: s.store})
		return out.String(), err
	}
	out, err := run("-serial", strings.ToLower(serial), "-reason", "keyCompromise", "-comment", "laptop stolen")
	if err != nil || !strings.Contains(out, serial+" revoked (keyCompromise") {
		t.Fatalf("revoke = %q, %v", out, err)
	}
	rec, err := s.store.Get(t.Context(), serial)
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != 1 || rec.RevokedBy != "cli:local" ||
		rec.RevocationRef != "laptop stolen" {
		t.Fatalf("record after revoke: %+v, %v", rec, err)
	}
	if !strings.Contains(logs.String(), `"msg":"audit: certificate revoked","serial":"`+serial+`","reason":"keyCompromise","by":"cli:local"`) {
		t.Fatalf("no audit line:\n%s", logs.String())
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

// TestRevokeCommandLastWritesFail: when the record is revoked but the revocation generation's last bump fails, the
// other instances' OCSP caches are not told, so the command must not report success: it fails, saying the
// revocation will be published and to run it again, and the second run completes it.
func TestRevokeCommandLastWritesFail(t *testing.T) {
	s := startNames(t)
	cert := s.wantAPICert(t, s.entra.MintApp([]string{entra.RoleCSRRequestDb}), testca.CSROptions{Subject: pkix.Name{CommonName: "svc-lastwrites"}})
	serial := store.SerialString(cert.SerialNumber)
	fs := storetest.NewFaultStore(s.store)
	// PutMeta 1 is the bump after the index entry, 2 the bump after the record.
	fs.Inject(storetest.Fault{Method: storetest.MethodPutMeta, Nth: 2})
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := revokeCommand(t.Context(), s.cfg, slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)), args, &out, buildOptions{store: fs})
		return out.String(), err
	}
	out, err := run("-serial", serial)
	if err == nil || !strings.Contains(err.Error(), "run the same command again") || strings.Contains(out, "revoked (") {
		t.Fatalf("revoke with the last bump failing = %q, %v; want an error asking to run it again", out, err)
	}
	if rec, err := s.store.Get(t.Context(), serial); err != nil || rec.Status != store.StatusRevoked {
		t.Fatalf("record after the failed last write: %+v, %v", rec, err)
	}
	if out, err := run("-serial", serial); err != nil || !strings.Contains(out, "already revoked") {
		t.Fatalf("second revoke = %q, %v", out, err)
	}
}

// TestRevokeUsageReasons: the reasons `azscep revoke -h` lists are exactly those -reason (and the admin API, with
// the same parser) accepts.
func TestRevokeUsageReasons(t *testing.T) {
	_, list, ok := strings.Cut(revokeUsage, "REASON is one of ")
	if !ok {
		t.Fatalf("revokeUsage names no reasons:\n%s", revokeUsage)
	}
	list, _, ok = strings.Cut(list, " (default")
	if !ok {
		t.Fatalf("revokeUsage's reason list has no end:\n%s", revokeUsage)
	}
	listed := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		listed[name] = true
		if _, err := revocation.ReasonCode(name); err != nil {
			t.Errorf("revokeUsage lists %q, which -reason refuses: %v", name, err)
		}
	}
	for code := 0; code <= 10; code++ {
		name := revocation.ReasonName(code)
		if _, err := revocation.ReasonCode(name); name != "" && err == nil && !listed[name] {
			t.Errorf("-reason accepts %q, which revokeUsage does not list", name)
		}
	}
}
