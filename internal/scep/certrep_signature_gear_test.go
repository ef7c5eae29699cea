package scep_test

import (
	"crypto"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestCertRepSignatureWrongIsRetried: a CertRep whose signature the key answered wrong (Key Vault's answer refused
// by the client's check, keyvault.ErrInvalidResponse; the CA key signs CertReps in CA mode) is answered 503 with
// Retry-After, like a key that could not answer, not 500: the certificate was issued, and the same request sent
// again gets it in a CertRep signed afresh.
func TestCertRepSignatureWrongIsRetried(t *testing.T) {
	t.Parallel()
	base := theCA(t)
	ra := &wrongSigRA{RAKey: base.RAKey}
	ra.wrong.Store(true)
	ca := *base
	ca.Keys = &custody.Keys{Chain: base.Keys.Chain, CASigner: base.Keys.CASigner, RACert: base.Keys.RACert, RAKey: ra}
	e := newEnv(t, envOptions{ca: &ca})
	c := e.client(t, 0, "wrong-certrep-signature")
	req := c.PKCSReq(t, csrFor(t, c, "wrong-certrep-signature"))
	resp, body := testca.Post(t, e.url(epStatic), req.Raw)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HTTP %d (%d bytes), want 503", resp.StatusCode, len(body))
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra <= 0 {
		t.Fatalf("503 without a usable Retry-After (%q)", resp.Header.Get("Retry-After"))
	}
	if n := e.countStatus(t, store.StatusIssued); n != 1 {
		t.Fatalf("%d issued records, want 1", n)
	}
	ra.wrong.Store(false)
	wantSuccess(t, e.pki(t, epStatic, req))
	if n := e.countStatus(t, store.StatusIssued); n != 1 {
		t.Fatalf("the retry issued again: %d issued records, want 1", n)
	}
}

type wrongSigRA struct {
	custody.RAKey
	wrong atomic.Bool
}

func (k *wrongSigRA) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.wrong.Load() {
		return nil, fmt.Errorf("keyvault sign ra/v1 (RS256): signature does not verify under the pinned public key: %w", keyvault.ErrInvalidResponse)
	}
	return k.RAKey.Sign(r, digest, opts)
}
