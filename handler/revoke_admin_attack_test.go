package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// csrWithKey posts a CSR for cn signed by key to /api/csr with a CSR.Request.Db token and returns the status and
// the problem code (empty on success).
func csrWithKey(t *testing.T, base string, key crypto.Signer, cn string) (int, string) {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn + ".example"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/csr", bytes.NewReader(der))
	req.Header.Set("Authorization", "Bearer "+devToken(t, base, "CSR.Request.Db"))
	req.Header.Set("Content-Type", "application/pkcs10")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	var p struct{ Code string }
	_ = json.Unmarshal(body, &p)
	return resp.StatusCode, p.Code
}

// TestAdminKeyCompromiseOfARevokedCertificateIsRefusedAtOnce: a certificate Intune revoked (on another instance,
// cessationOfOperation) turns out to have a stolen key; the admin revokes it again with keyCompromise. The
// published reason stays, the API answers alreadyRevoked, and the key is marked: the instance the admin asked must
// refuse that key at once (README: "on the instance that revoked it at once"), not only once its view of the
// revocation generation is 30 seconds old — the thief's next request may well land there first.
func TestAdminKeyCompromiseOfARevokedCertificateIsRefusedAtOnce(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ctx := context.Background()
	stolen, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if status, code := csrWithKey(t, in.base, stolen, "kc-first"); status != http.StatusOK {
		t.Fatalf("first certificate: %d %s", status, code)
	}
	recs, _, err := in.d.store.Search(ctx, store.Query{Subject: "CN=kc-first"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("the first certificate's record: %v %v", recs, err)
	}
	serial := recs[0].Serial
	// Intune's revocation, made by another instance: this one hears of it through the generation only.
	if _, _, err := revocation.Revoke(ctx, in.d.store, serial, revocation.IntuneReason, "intune", "", in.clock.Now()); err != nil {
		t.Fatal(err)
	}
	in.clock.Advance(revocation.DefaultKeyFreshness)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if status, code := csrWithKey(t, in.base, other, "kc-probe"); status != http.StatusOK { // the view is now fresh
		t.Fatalf("an unrelated key: %d %s", status, code)
	}

	in.adminRevoke(t, serial, "keyCompromise")
	if rec, _ := in.d.store.Get(ctx, serial); rec.RevocationReason != revocation.IntuneReason {
		t.Fatalf("published reason %d, want Intune's %d kept", rec.RevocationReason, revocation.IntuneReason)
	}
	if status, code := csrWithKey(t, in.base, stolen, "kc-second"); status != http.StatusBadRequest || code != "key_compromised" {
		t.Fatalf("a new certificate for the key just reported compromised: %d %q, want 400 key_compromised", status, code)
	}
}

// TestAdminRevokeOfAnRARevokedElsewhereReplacesIt: the current RA certificate was revoked by the break-glass CLI
// (or by another instance that stopped before replacing it), so no instance has replaced it: GetCACert still offers
// it and envelopes to it still open. An admin who revokes it again through the API — the console says revoke again
// to complete a revocation — gets alreadyRevoked, and the instance replaces the RA at once, as after a first
// revocation, rather than leave a possibly compromised RA in use until the hourly timer.
func TestAdminRevokeOfAnRARevokedElsewhereReplacesIt(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ra := in.raOf(t)
	serial := store.SerialString(ra.SerialNumber)
	in.timer(t) // records the suite's unrecorded RA
	if _, _, err := revocation.Revoke(context.Background(), in.d.store, serial, store.KeyCompromise, "cli:operator", "", in.clock.Now()); err != nil {
		t.Fatal(err)
	}
	in.adminRevoke(t, serial, "keyCompromise")
	next := in.raOf(t)
	for deadline := time.Now().Add(20 * time.Second); next.SerialNumber.Cmp(ra.SerialNumber) == 0; next = in.raOf(t) {
		if time.Now().After(deadline) {
			t.Fatal("GetCACert still offers the revoked RA after the admin revoked it, with no timer run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.enrollTo(t, next, "after-ra-revoked-again").mustSucceed(t, next)
}
