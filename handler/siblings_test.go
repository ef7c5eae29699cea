package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestTimerRevokesTheOtherCertificatesOfACompromisedKey: a device enrolled twice with one key (two names) and the
// key was reported stolen with one certificate. The hourly timer revokes the other for keyCompromise too, and OCSP
// says so at once on this instance.
func TestTimerRevokesTheOtherCertificatesOfACompromisedKey(t *testing.T) {
	s := startNames(t)
	key := testca.RSAKey(t, nextDeviceKey(t))
	enroll := func(cn string) *x509.Certificate {
		t.Helper()
		o := testca.CSROptions{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn + ".example.net"},
			ChallengePassword: config.LocalStaticChallenge}
		client := testca.NewClient(t, key, pkix.Name{CommonName: cn}, s.ra)
		// A transaction of its own: the default, derived from the key, would make the second a replay of the first.
		req := client.Message(t, testca.Message{Type: testca.MsgPKCSReq, TransactionID: "tx-" + cn,
			Content: testca.CSR(t, key, o).Raw})
		return post(t, s.scepURL("static"), req).mustSucceed(t, s.ra)
	}
	reported, sibling := enroll("printer-a"), enroll("printer-b")
	ctx := context.Background()
	if _, _, err := revocation.Revoke(ctx, s.store, store.SerialString(reported.SerialNumber), store.KeyCompromise,
		"admin:sec", "stolen", time.Now()); err != nil {
		t.Fatal(err)
	}

	logs := postTimer(t, http.DefaultClient, s.base)
	serial := store.SerialString(sibling.SerialNumber)
	if !strings.Contains(logs, "revoked 1 certificates whose key was reported compromised: "+serial) {
		t.Errorf("the timer's Logs do not name the sibling %s:\n%s", serial, logs)
	}
	rec, err := s.store.Get(ctx, serial)
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != store.KeyCompromise {
		t.Fatalf("the sibling's record after the timer: %v; want revoked for keyCompromise", recordState(rec, err))
	}
	var ca *x509.Certificate
	certs, _ := getCACert(t, s.scepURL("static"))
	for _, c := range certs {
		if c.IsCA {
			ca = c
		}
	}
	if st := ocspStatus(t, s.base, sibling, ca); st.Status != xocsp.Revoked || st.RevocationReason != xocsp.KeyCompromise {
		t.Errorf("OCSP for the sibling: status %d reason %d, want revoked, keyCompromise", st.Status, st.RevocationReason)
	}
}

// recordState sums up a record's revocation state for a failure message.
func recordState(rec *store.Record, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s, reason %d, by %q", rec.Status, rec.RevocationReason, rec.RevokedBy)
}
