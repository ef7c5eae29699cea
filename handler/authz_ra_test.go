package main

// Issue 11, point 3: the SCEP RA certificate is good for SCEP only, recorded, revocable, renewed by the hourly
// timer, rotated with an overlap, and picked up by every instance.

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// raOf returns the RA certificate an instance's GetCACert offers.
func (in *instance) raOf(t *testing.T) *x509.Certificate {
	t.Helper()
	certs, _ := getCACert(t, in.base+"/api/scep/static")
	return recipients(t, certs)[0]
}

// enrollTo sends a static-endpoint PKCSReq encrypted to ra and returns the exchange.
func (in *instance) enrollTo(t *testing.T, ra *x509.Certificate, cn string) *exchange {
	t.Helper()
	key := testca.RSAKey(t, nextDeviceKey(t))
	subject := pkix.Name{CommonName: cn}
	csr := testca.CSR(t, key, testca.CSROptions{Subject: subject, ChallengePassword: config.LocalStaticChallenge})
	return post(t, in.base+"/api/scep/static", testca.NewClient(t, key, subject, ra).PKCSReq(t, csr))
}

// timer runs the hourly function on an instance and returns its Logs.
func (in *instance) timer(t *testing.T) string { return postTimer(t, http.DefaultClient, in.base) }

// postTimer runs the hourly function the way the Functions host does and returns its Logs.
func postTimer(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, err := c.Post(base+"/revocation-sync", "application/json",
		strings.NewReader(`{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Logs []string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("timer answer %d: %v", resp.StatusCode, err)
	}
	return strings.Join(out.Logs, "\n")
}

func localEnv(t *testing.T) []string {
	t.Helper()
	_, stEnv := azuriteStore(t)
	return append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t), "AZSCEP_DEV_ISSUER=true"}, stEnv...)
}

// TestRACertificateIsForSCEPOnly: the RA certificate GetCACert hands out chains to the CA, but Go's verifier and
// `openssl verify -purpose` refuse it for TLS client and server authentication (and Go for code signing too): its
// only EKU is Certificate Request Agent. It is zlint clean, and it has an issued record like every certificate.
func TestRACertificateIsForSCEPOnly(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ra, ca := in.raOf(t), in.d.keys.CA()
	// This RA was made without a store (the suite's shared local CA), as by versions before RA certificates were
	// recorded: the hourly timer records it.
	if _, err := in.d.store.Get(context.Background(), store.SerialString(ra.SerialNumber)); err == nil {
		t.Fatal("the unrecorded RA has a record before the timer ran")
	}
	in.timer(t)
	if !custody.HasRAUsage(ra) {
		t.Fatalf("RA EKUs %v %v, want only Certificate Request Agent", ra.ExtKeyUsage, ra.UnknownExtKeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := ra.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the RA certificate does not chain to the CA: %v", err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageCodeSigning} {
		if _, err := ra.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err == nil {
			t.Errorf("Go's verifier accepts the RA certificate for EKU %d", u)
		}
	}

	dir := t.TempDir()
	caFile, raFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ra.pem")
	if err := os.WriteFile(caFile, custody.EncodePEM(ca), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raFile, custody.EncodePEM(ra), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := runOpenSSL(t, "verify", "-CAfile", caFile, raFile); !strings.Contains(out, "OK") {
		t.Fatalf("openssl verify without a purpose: %s", out)
	}
	for _, purpose := range []string{"sslclient", "sslserver"} {
		out, err := exec.Command("openssl", "verify", "-CAfile", caFile, "-purpose", purpose, raFile).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "certificate purpose") {
			t.Errorf("openssl verify -purpose %s accepted the RA certificate (err %v):\n%s", purpose, err, out)
		}
	}

	zc, err := zx509.ParseCertificate(ra.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range zlint.LintCertificate(zc).Results {
		if r.Status >= lint.Warn && r.Status != lint.NA && r.Status != lint.NE {
			t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
		}
	}

	rec, err := in.d.store.Get(context.Background(), store.SerialString(ra.SerialNumber))
	if err != nil || rec.Status != store.StatusIssued || rec.Source != revocation.SourceRA || !bytes.Equal(rec.CertDER, ra.Raw) {
		t.Fatalf("RA record: %+v %v", rec, err)
	}
}

// TestRARevokedThroughAdminAPI: an admin revokes the RA certificate through the admin API; the CRL lists it and
// OCSP says revoked. The instance replaces it at once (no overlap for a revoked RA), without waiting for the
// hourly timer: GetCACert offers a new RA, enrollments go on, and nothing is opened with the revoked one.
func TestRARevokedThroughAdminAPI(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ra, ca := in.raOf(t), in.d.keys.CA()
	serial := store.SerialString(ra.SerialNumber)
	in.timer(t) // records the suite's unrecorded RA (see TestRACertificateIsForSCEPOnly)
	in.adminRevoke(t, serial, "keyCompromise")
	if !in.crlLists(t, ca, serial) {
		t.Fatal("the CRL does not list the revoked RA certificate")
	}
	if st := in.ocspStatus(t, ra, ca); st != xocsp.Revoked {
		t.Fatalf("OCSP for the revoked RA: %d", st)
	}

	next := in.raOf(t)
	for deadline := time.Now().Add(20 * time.Second); next.SerialNumber.Cmp(ra.SerialNumber) == 0; next = in.raOf(t) {
		if time.Now().After(deadline) {
			t.Fatal("GetCACert still offers the revoked RA, with no timer run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.enrollTo(t, next, "after-ra-revocation").mustSucceed(t, next)
	in.enrollTo(t, ra, "to-revoked-ra").mustFail(t, next, testca.FailBadMessageCheck)
	if logs := in.timer(t); strings.Contains(logs, "RA certificate renewed") {
		t.Errorf("the timer replaced the RA again:\n%s", logs)
	}
}

// TestRotateRAOverlapThenRevoked: `ca rotate-ra` issues a recorded RA certificate; the running instance picks it
// up at its next refresh. During the overlap a client that cached the old GetCACert still enrolls; once the
// overlap is over the hourly timer revokes the old RA (superseded, in the CRL) and stops opening envelopes to it.
func TestRotateRAOverlapThenRevoked(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ctx := context.Background()
	old, ca := in.raOf(t), in.d.keys.CA()
	keys, err := custody.LoadLocal(in.d.cfg.LocalKeyDir, in.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rotateRA(ctx, in.d.store, custody.LocalRA{Dir: in.d.cfg.LocalKeyDir}, keys, false, in.clock.Now(), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "keeps working until") {
		t.Fatalf("rotate-ra said:\n%s", out.String())
	}
	if changed, err := in.d.ra.Refresh(ctx); err != nil || !changed {
		t.Fatalf("refresh after rotate-ra: changed=%t %v", changed, err)
	}
	cur := in.raOf(t)
	if cur.SerialNumber.Cmp(old.SerialNumber) == 0 || !custody.HasRAUsage(cur) {
		t.Fatal("GetCACert does not offer the rotated RA")
	}
	newRec, err := in.d.store.Get(ctx, store.SerialString(cur.SerialNumber))
	if err != nil || newRec.Status != store.StatusIssued || newRec.Source != revocation.SourceRA {
		t.Fatalf("the new RA's record: %+v %v", newRec, err)
	}

	// Overlap: an envelope to the old RA still opens, and its CertRep comes signed by that RA, the one the client
	// cached from GetCACert (a client may check the signer against it); envelopes to the new RA get the new one.
	in.enrollTo(t, old, "cached-getcacert").mustSucceed(t, old)
	in.enrollTo(t, cur, "fresh-getcacert").mustSucceed(t, cur)
	in.clock.Advance(custody.RAOverlap - 2*time.Hour)
	if logs := in.timer(t); strings.Contains(logs, "previous RA") {
		t.Fatalf("the old RA was retired inside the overlap:\n%s", logs)
	}
	if rec, _ := in.d.store.Get(ctx, store.SerialString(old.SerialNumber)); rec.Status != store.StatusIssued {
		t.Fatalf("old RA inside the overlap: %s", rec.Status)
	}

	in.clock.Advance(3 * time.Hour)
	logs := in.timer(t)
	if !strings.Contains(logs, "previous RA certificate "+store.SerialString(old.SerialNumber)+" revoked after the overlap") {
		t.Fatalf("timer after the overlap:\n%s", logs)
	}
	rec, err := in.d.store.Get(ctx, store.SerialString(old.SerialNumber))
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != 4 || rec.RevokedBy != revocation.RABy {
		t.Fatalf("old RA after the overlap: %+v %v", rec, err)
	}
	if !in.crlLists(t, ca, rec.Serial) {
		t.Fatal("the CRL does not list the retired RA")
	}
	in.enrollTo(t, old, "too-late").mustFail(t, cur, testca.FailBadMessageCheck)
	in.enrollTo(t, cur, "current").mustSucceed(t, cur)
	if _, err := os.Stat(filepath.Join(in.d.cfg.LocalKeyDir, "ra-previous.key")); !os.IsNotExist(err) {
		t.Errorf("the retired RA key is still on disk: %v", err)
	}
}

// TestTimerRenewsRAAndOtherInstancePicksItUp: 29 days before the RA expires, the hourly timer on instance A
// renews it (recorded, previous kept for the overlap). Instance B, on the same store and keys, offers the new RA
// after its next periodic re-read and opens envelopes to either RA meanwhile.
func TestTimerRenewsRAAndOtherInstancePicksItUp(t *testing.T) {
	env := localEnv(t)
	a, b := startInstance(t, env), startInstance(t, env)
	ctx := context.Background()
	old := a.raOf(t)
	if logs := a.timer(t); strings.Contains(logs, "RA certificate renewed") {
		t.Fatalf("a fresh RA was renewed:\n%s", logs)
	}
	jump := old.NotAfter.Add(-29 * 24 * time.Hour).Sub(a.clock.Now())
	a.clock.Advance(jump)
	b.clock.Advance(jump)

	logs := a.timer(t)
	if !strings.Contains(logs, "RA certificate renewed (the current RA certificate expires") {
		t.Fatalf("timer 29 days before the RA expires:\n%s", logs)
	}
	renewed := a.raOf(t)
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || !renewed.NotAfter.After(old.NotAfter) {
		t.Fatal("A does not offer a renewed RA")
	}
	rec, err := a.d.store.Get(ctx, store.SerialString(renewed.SerialNumber))
	if err != nil || rec.Status != store.StatusIssued || rec.Source != revocation.SourceRA {
		t.Fatalf("renewed RA record: %+v %v", rec, err)
	}

	// B has not re-read yet: it still offers the old RA. Its next periodic re-read (every
	// custody.RARefreshInterval; driven here directly) installs the renewed one.
	if b.raOf(t).SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Fatal("B changed its RA without re-reading")
	}
	if changed, err := b.d.ra.Refresh(ctx); err != nil || !changed {
		t.Fatalf("B's refresh: changed=%t %v", changed, err)
	}
	if b.raOf(t).SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatal("B does not offer the renewed RA after its refresh")
	}
	if changed, err := b.d.ra.Refresh(ctx); err != nil || changed {
		t.Fatalf("an unchanged RA was installed again: changed=%t %v", changed, err)
	}
	// Envelopes to either RA open on B during the overlap (enrollments through both RAs are shown by
	// TestRotateRAOverlapThenRevoked; here the clock is two years ahead of the CertRep signing time).
	if prev, _ := b.d.keys.PreviousRA(b.clock.Now()); prev == nil || prev.SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Fatal("B does not keep the old RA for the overlap")
	}
}

// A previous RA an admin revokes inside its overlap (keyCompromise, say) opens no envelope and signs no CertRep
// from then on, on any instance: the fallback to it reads its record first.
func TestRevokedPreviousRAOpensNothing(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ctx := context.Background()
	old := in.raOf(t)
	keys, err := custody.LoadLocal(in.d.cfg.LocalKeyDir, in.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := rotateRA(ctx, in.d.store, custody.LocalRA{Dir: in.d.cfg.LocalKeyDir}, keys, false, in.clock.Now(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if changed, err := in.d.ra.Refresh(ctx); err != nil || !changed {
		t.Fatalf("refresh after rotate-ra: changed=%t %v", changed, err)
	}
	cur := in.raOf(t)
	in.enrollTo(t, old, "before-revocation").mustSucceed(t, old) // inside the overlap

	in.adminRevoke(t, store.SerialString(old.SerialNumber), "keyCompromise")
	in.enrollTo(t, old, "after-revocation").mustFail(t, cur, testca.FailBadMessageCheck)
	in.enrollTo(t, cur, "to-the-current-ra").mustSucceed(t, cur)
}

// TestTimerMaintainsRABeforeSync: the hourly timer renews the RA before the revocation sync, so that a sync slowed
// down by Intune, which may use most of functionTimeout, cannot leave the RA unrenewed hour after hour.
func TestTimerMaintainsRABeforeSync(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ra := in.raOf(t)
	in.timer(t) // records the suite's unrecorded RA (see TestRACertificateIsForSCEPOnly)
	if _, _, err := revocation.Revoke(context.Background(), in.d.store, store.SerialString(ra.SerialNumber),
		store.KeyCompromise, "test", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	logs := in.timer(t)
	renewed, synced := strings.Index(logs, "RA certificate renewed"), strings.Index(logs, "revocation sync")
	if renewed < 0 || synced < 0 || renewed > synced {
		t.Fatalf("timer Logs, want the RA renewal before the revocation sync's line:\n%s", logs)
	}
}
