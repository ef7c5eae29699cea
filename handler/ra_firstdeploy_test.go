package main

import (
	"context"
	"crypto/x509/pkix"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
)

// expiredRAVault is a Key Vault CA whose `ca init` ran longer ago than an RA certificate lasts: its RA certificate
// has expired (no instance ran the hourly timer that renews it 30 days before its end), its root has not.
func expiredRAVault(t *testing.T) *vaultCA {
	t.Helper()
	caKey, kek, _ := vaultKeys(t)
	kv := kvfake.New(t)
	kv.MustImportKey(t, kvCAKeyName, caKey, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpSign, kvfake.KeyOpVerify}, HSM: true})
	kv.MustImportKey(t, kvKEKName, kek, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpWrapKey, kvfake.KeyOpUnwrapKey}, HSM: true})
	st := memstore.New()
	v := &custody.Vault{Client: kv.Client(t), Meta: st, CAKeyName: kvCAKeyName, KEKName: kvKEKName}
	then := time.Now().Add(-custody.RAValidity - 48*time.Hour)
	if _, err := v.Init(t.Context(), custody.VaultInitOptions{KeyType: "RSA-HSM", Root: custody.RootOptions{
		Subject: pkix.Name{CommonName: "azscep expired-RA test CA"}, Validity: 10 * 365 * 24 * time.Hour}}, then); err != nil {
		t.Fatalf("ca init: %v", err)
	}
	_, _, ra, err := v.Show(t.Context())
	if err != nil || ra == nil || !time.Now().After(ra.NotAfter) {
		t.Fatalf("the test's RA certificate has not expired: %v %v", ra, err)
	}
	return &vaultCA{kv: kv, store: st, caKey: caKey}
}

// TestExpiredRARenewedAtStart: an RA certificate that expired while no instance ran (an app stopped for a while, a
// timer that could not run) used to stop every start with "the RA certificate is not valid now": the service exited
// into the host's restart limit, and the hourly timer, the one thing that renews the RA, could never run. Now the
// start renews it with the app's own identity, as the timer would have, and serves SCEP with the new one.
func TestExpiredRARenewedAtStart(t *testing.T) {
	v := expiredRAVault(t)
	svc := v.start(t)
	certs, _ := getCACert(t, svc.scepURL("static"))
	to := recipients(t, certs)
	if now := time.Now(); now.Before(to[0].NotBefore) || now.After(to[0].NotAfter) {
		t.Fatalf("GetCACert offers an RA certificate valid %s – %s, not now", to[0].NotBefore, to[0].NotAfter)
	}
	// Recorded like every RA certificate, so that it can be listed and revoked.
	if rec, err := v.store.Get(t.Context(), store.SerialString(to[0].SerialNumber)); err != nil || rec.Status != store.StatusIssued {
		t.Errorf("the renewed RA certificate's record: %+v, %v; want it issued", rec, err)
	}
	staticEnroll(t, svc, to, "after-an-expired-ra").mustSucceed(t, to[0])
	if !strings.Contains(svc.logText(), "RA certificate renewed (the current RA certificate expires") {
		t.Errorf("the log does not say the RA was renewed:\n%s", svc.logText())
	}
}

// TestExpiredRARotatedByTheCLI: `azscep ca rotate-ra`, the documented way to replace the RA, works on an expired RA
// too; it used to fail on it with the same "not valid now" as the start.
func TestExpiredRARotatedByTheCLI(t *testing.T) {
	v := expiredRAVault(t)
	cfg, err := config.Load(v.env())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := v.opts()
	opts.credential = vaultAndWho{opts.credential}
	if err := caCommand(ctx, cfg, "rotate-ra", nil, io.Discard, opts); err != nil {
		t.Fatalf("ca rotate-ra: %v", err)
	}
	_, _, ra, err := (&custody.Vault{Client: v.kv.Client(t), Meta: v.store}).Show(ctx)
	if err != nil || ra == nil || !time.Now().Before(ra.NotAfter) {
		t.Fatalf("after ca rotate-ra the RA certificate is %v (%v), want one valid now", ra, err)
	}
}
