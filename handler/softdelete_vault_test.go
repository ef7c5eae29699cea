package main

import (
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/store"
)

// TestKeyVaultSoftDeletedCAKeySignatureIs503: the CA key deleted after start-up (soft delete keeps it recoverable)
// is the CA's outage, like the key disabled or the role removed, not a fault of the client's: the SCEP request is
// answered 503 with a Retry-After, not a CertRep FAILURE badRequest, and the pending record is abandoned. Once the
// key is recovered, with the version the service pinned, the client's retry gets its certificate without a restart.
func TestKeyVaultSoftDeletedCAKeySignatureIs503(t *testing.T) {
	caKey, _, _ := vaultKeys(t)
	v := newVaultCA(t, caKey, "", nil)
	svc := v.start(t)
	certs, _ := getCACert(t, svc.scepURL("static"))
	to := recipients(t, certs)

	v.kv.SoftDelete(kvCAKeyName)
	x := staticEnroll(t, svc, to, "kv-deleted-key-device")
	if x.resp.StatusCode != http.StatusServiceUnavailable || x.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("enrollment while the CA key is deleted = %d Retry-After %q, want 503 with a Retry-After",
			x.resp.StatusCode, x.resp.Header.Get("Retry-After"))
	}
	rec := recordFor(t, v.store, "static", x.req.TransactionID)
	if rec.Status != store.StatusAbandoned || len(rec.CertDER) != 0 {
		t.Fatalf("record after the refused signature: %s with %d certificate bytes, want abandoned and empty", rec.Status, len(rec.CertDER))
	}
	v.kv.Recover(kvCAKeyName)
	v.kv.Reset()
	post(t, svc.scepURL("static"), x.req).mustSucceed(t, to[0])
	if n := v.kv.Count(kvfake.OpSign); n != 1 {
		t.Fatalf("signatures after the recovery: %d, want 1", n)
	}
}
