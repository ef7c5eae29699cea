package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestTimerRevokesCertificatesOfDisabledAccounts: two users get self-service certificates at /api/csr, a third one
// for his laptop; an administrator disables one user and the laptop in Entra. The hourly timer revokes that user's
// certificate for affiliationChanged and the laptop's for cessationOfOperation (OCSP says so at once on this
// instance) and leaves the other user's. While Graph refuses the users delta (403: the identity
// lacks User.Read.All) a run revokes nothing and its Logs say so; the next run, Graph answering, revokes.
func TestTimerRevokesCertificatesOfDisabledAccounts(t *testing.T) {
	s := startNames(t, "AZSCEP_API_REVOKE_DISABLED=true")
	selfCert := func(upn string) (string, *x509.Certificate) {
		oid := entrafake.NewGUID()
		tok := s.entra.MintUser(oid, upn, []string{entra.RoleCSRSelfService})
		return oid, s.wantAPICert(t, tok, testca.CSROptions{Subject: pkix.Name{CommonName: upn}, UPNs: []string{upn}})
	}
	alice, aliceCert := selfCert("alice@contoso.example")
	_, bobCert := selfCert("bob@contoso.example")
	// Dave's laptop, an Entra device he owns, has a self-service device certificate.
	dave, laptop := entrafake.NewGUID(), entrafake.NewGUID()
	s.entra.graph.AddDevice(laptop, dave)
	laptopCert := s.wantAPICert(t, s.entra.MintUser(dave, "dave@contoso.example", []string{entra.RoleCSRSelfService}),
		testca.CSROptions{Subject: pkix.Name{CommonName: laptop}})

	// The first run enumerates the tenant: everyone is enabled.
	if logs := postTimer(t, http.DefaultClient, s.base); !strings.Contains(logs, "Entra account sweep: 1 users delta pages, 0 accounts disabled or deleted, up to date, link advanced=true") {
		t.Fatalf("first run's Logs:\n%s", logs)
	}
	s.entra.graph.UpdateUser(alice, func(u *entrafake.User) { u.Enabled = false })

	s.entra.graph.SetFault(entrafake.Fault{Status: http.StatusForbidden, Path: "/v1.0/users/delta"})
	logs := postTimer(t, http.DefaultClient, s.base)
	if !strings.Contains(logs, "Entra account sweep failed") || strings.Contains(logs, "certificates of Entra accounts") {
		t.Fatalf("run with Graph refusing: Logs\n%s", logs)
	}
	ctx := context.Background()
	serial := store.SerialString(aliceCert.SerialNumber)
	if rec, err := s.store.Get(ctx, serial); err != nil || rec.Status != store.StatusIssued {
		t.Fatalf("alice's record after a refused sweep: %v", recordState(rec, err))
	}

	s.entra.graph.SetFault(entrafake.Fault{})
	s.entra.graph.SetAccountEnabled(laptop, false)
	logs = postTimer(t, http.DefaultClient, s.base)
	if !strings.Contains(logs, "revoked 1 certificates of Entra accounts disabled or deleted: "+serial) {
		t.Fatalf("the timer's Logs do not name alice's certificate %s:\n%s", serial, logs)
	}
	rec, err := s.store.Get(ctx, serial)
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != revocation.AffiliationChanged ||
		rec.RevokedBy != revocation.AccountsBy || !strings.Contains(rec.RevocationRef, alice+" disabled") {
		t.Fatalf("alice's record after the timer: %v (%q); want revoked for affiliationChanged by %s", recordState(rec, err),
			rec.RevocationRef, revocation.AccountsBy)
	}
	if rec, err := s.store.Get(ctx, store.SerialString(bobCert.SerialNumber)); err != nil || rec.Status != store.StatusIssued {
		t.Fatalf("bob's record: %v; want issued", recordState(rec, err))
	}
	ca := caOf(t, s)
	if st := ocspStatus(t, s.base, aliceCert, ca); st.Status != xocsp.Revoked || st.RevocationReason != xocsp.AffiliationChanged {
		t.Errorf("OCSP for alice's certificate: status %d reason %d, want revoked, affiliationChanged", st.Status, st.RevocationReason)
	}
	laptopSerial := store.SerialString(laptopCert.SerialNumber)
	if !strings.Contains(logs, "revoked 1 certificates of Entra devices disabled or deleted: "+laptopSerial) {
		t.Fatalf("the timer's Logs do not name the laptop's certificate %s:\n%s", laptopSerial, logs)
	}
	if st := ocspStatus(t, s.base, laptopCert, ca); st.Status != xocsp.Revoked || st.RevocationReason != xocsp.CessationOfOperation {
		t.Errorf("OCSP for the laptop's certificate: status %d reason %d, want revoked, cessationOfOperation", st.Status, st.RevocationReason)
	}
	if st := ocspStatus(t, s.base, bobCert, ca); st.Status != xocsp.Good {
		t.Errorf("OCSP for bob's certificate: status %d, want good", st.Status)
	}
}

// TestTimerRevokesDeviceCertificatesGivenAway: Dave gets a self-service certificate at /api/csr for his laptop, an
// Entra device he owns, and later the laptop is given to Frank (its registered owner changes). Once the certificate
// is older than the owner check's grace, the hourly timer asks Graph who owns the laptop, revokes Dave's certificate
// for affiliationChanged by the owner check (OCSP says so at once) and its Logs say so; while Graph refuses the
// question, a run revokes nothing and its Logs say why.
func TestTimerRevokesDeviceCertificatesGivenAway(t *testing.T) {
	s := startNames(t, "AZSCEP_API_REVOKE_DISABLED=true")
	dave, frank, laptop := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	s.entra.graph.AddDevice(laptop, dave)
	laptopCert := s.wantAPICert(t, s.entra.MintUser(dave, "dave@contoso.example", []string{entra.RoleCSRSelfService}),
		testca.CSROptions{Subject: pkix.Name{CommonName: laptop}})
	serial := store.SerialString(laptopCert.SerialNumber)
	ctx := context.Background()
	// Issued a day ago, as far as the owner check is concerned: one issued minutes ago is not asked about.
	rec, err := s.store.Get(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	rec.Created = rec.Created.Add(-24 * time.Hour)
	if err := s.store.Update(ctx, rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	if logs := postTimer(t, http.DefaultClient, s.base); !strings.Contains(logs,
		"Entra device owner check: 1 pages of /api/csr certificates, 1 owners asked about, 0 no longer owners") {
		t.Fatalf("first run's Logs:\n%s", logs)
	}
	s.entra.graph.SetOwners(laptop, frank)

	s.entra.graph.SetFault(entrafake.Fault{Status: http.StatusForbidden,
		Path: "/v1.0/devices(deviceId='" + laptop + "')/registeredOwners"})
	logs := postTimer(t, http.DefaultClient, s.base)
	if !strings.Contains(logs, "1 questions Graph did not answer revoked nothing") {
		t.Fatalf("run with Graph refusing: Logs\n%s", logs)
	}
	if rec, err := s.store.Get(ctx, serial); err != nil || rec.Status != store.StatusIssued {
		t.Fatalf("the laptop's record after a refused check: %v", recordState(rec, err))
	}
	s.entra.graph.SetFault(entrafake.Fault{})
	logs = postTimer(t, http.DefaultClient, s.base)
	if !strings.Contains(logs, "revoked 1 self-service device certificates whose requester no longer owns the device: "+serial) {
		t.Fatalf("the timer's Logs do not name the laptop's certificate %s:\n%s", serial, logs)
	}
	rec, err = s.store.Get(ctx, serial)
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != revocation.AffiliationChanged ||
		rec.RevokedBy != revocation.OwnersBy {
		t.Fatalf("the laptop's record: %v; want revoked for affiliationChanged by %s", recordState(rec, err),
			revocation.OwnersBy)
	}
	if st := ocspStatus(t, s.base, laptopCert, caOf(t, s)); st.Status != xocsp.Revoked ||
		st.RevocationReason != xocsp.AffiliationChanged {
		t.Errorf("OCSP for the laptop's certificate: status %d reason %d, want revoked, affiliationChanged", st.Status,
			st.RevocationReason)
	}
}

// TestTimerRevokesCertificatesOfAccountsDeletedBeforeFirstRun: a user gets a self-service certificate at /api/csr
// and is deleted before the hourly timer ever ran. The first run's enumeration lists only the accounts there, so it
// asks Graph about the account it did not name, revokes its certificate for affiliationChanged (OCSP says so at once)
// and its Logs say how many it asked about; the other user's certificate stays good.
func TestTimerRevokesCertificatesOfAccountsDeletedBeforeFirstRun(t *testing.T) {
	s := startNames(t, "AZSCEP_API_REVOKE_DISABLED=true")
	selfCert := func(upn string) (string, *x509.Certificate) {
		oid := entrafake.NewGUID()
		tok := s.entra.MintUser(oid, upn, []string{entra.RoleCSRSelfService})
		return oid, s.wantAPICert(t, tok, testca.CSROptions{Subject: pkix.Name{CommonName: upn}, UPNs: []string{upn}})
	}
	gone, goneCert := selfCert("gone@contoso.example")
	_, keptCert := selfCert("kept@contoso.example")
	s.entra.graph.DeleteUser(gone)

	logs := postTimer(t, http.DefaultClient, s.base)
	serial := store.SerialString(goneCert.SerialNumber)
	if !strings.Contains(logs, "revoked 1 certificates of Entra accounts disabled or deleted: "+serial) ||
		!strings.Contains(logs, "1 users of certificates the enumeration from scratch did not name asked about one by one, 1 no longer in Entra") {
		t.Fatalf("first run's Logs:\n%s", logs)
	}
	ca := caOf(t, s)
	if st := ocspStatus(t, s.base, goneCert, ca); st.Status != xocsp.Revoked || st.RevocationReason != xocsp.AffiliationChanged {
		t.Errorf("OCSP for the deleted user's certificate: status %d reason %d, want revoked, affiliationChanged", st.Status,
			st.RevocationReason)
	}
	if st := ocspStatus(t, s.base, keptCert, ca); st.Status != xocsp.Good {
		t.Errorf("OCSP for the other user's certificate: status %d, want good", st.Status)
	}
	if logs := postTimer(t, http.DefaultClient, s.base); strings.Contains(logs, "asked about one by one") {
		t.Errorf("second run asked again:\n%s", logs)
	}
}

// TestTimerRevokesCertificatesOfDeletedDevices: Erin gets a self-service certificate at /api/csr for her desktop, an
// Entra device she owns; an administrator deletes the desktop, and another device that never had a certificate. The
// devices delta names a deleted device by its object ID only: the hourly timer finds the desktop's certificate by the
// object ID its record kept when the ownership check read the device, and revokes it for cessationOfOperation (OCSP
// says so at once); the Logs count the other deletion as one no record names.
func TestTimerRevokesCertificatesOfDeletedDevices(t *testing.T) {
	s := startNames(t, "AZSCEP_API_REVOKE_DISABLED=true")
	erin, desktop, spare := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	desktopObj := s.entra.graph.AddDevice(desktop, erin)
	s.entra.graph.AddDevice(spare, erin)
	cert := s.wantAPICert(t, s.entra.MintUser(erin, "erin@contoso.example", []string{entra.RoleCSRSelfService}),
		testca.CSROptions{Subject: pkix.Name{CommonName: desktop}})
	serial := store.SerialString(cert.SerialNumber)
	ctx := context.Background()
	if rec, err := s.store.Get(ctx, serial); err != nil || rec.DeviceObjectID != desktopObj {
		t.Fatalf("the desktop's record: %v, device object ID %q; want %q", recordState(rec, err), rec.DeviceObjectID, desktopObj)
	}
	if logs := postTimer(t, http.DefaultClient, s.base); !strings.Contains(logs, "Entra device sweep: 1 devices delta pages, 0 devices disabled or deleted, up to date, link advanced=true") {
		t.Fatalf("first run's Logs:\n%s", logs)
	}

	s.entra.graph.DeleteDevice(desktop)
	s.entra.graph.DeleteDevice(spare)
	logs := postTimer(t, http.DefaultClient, s.base)
	if !strings.Contains(logs, "revoked 1 certificates of Entra devices disabled or deleted: "+serial) ||
		!strings.Contains(logs, "2 devices disabled or deleted, up to date, link advanced=true; 1 deleted that no record names by object ID") {
		t.Fatalf("the timer's Logs do not name the desktop's certificate %s and one unmapped deletion:\n%s", serial, logs)
	}
	rec, err := s.store.Get(ctx, serial)
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != revocation.CessationOfOperation ||
		rec.RevokedBy != revocation.DevicesBy || rec.RevocationRef != "Entra device object "+desktopObj+" deleted" {
		t.Fatalf("the desktop's record after the timer: %v (%q); want revoked for cessationOfOperation by %s",
			recordState(rec, err), rec.RevocationRef, revocation.DevicesBy)
	}
	if st := ocspStatus(t, s.base, cert, caOf(t, s)); st.Status != xocsp.Revoked || st.RevocationReason != xocsp.CessationOfOperation {
		t.Errorf("OCSP for the desktop's certificate: status %d reason %d, want revoked, cessationOfOperation", st.Status, st.RevocationReason)
	}
}

// TestTimerAccountSweepOffLocally: locally the sweep runs only when asked for: the timer does not read the users
// delta, and says nothing of it.
func TestTimerAccountSweepOffLocally(t *testing.T) {
	s := startNames(t)
	if logs := postTimer(t, http.DefaultClient, s.base); strings.Contains(logs, "Entra account sweep") {
		t.Fatalf("Logs:\n%s", logs)
	}
	for _, r := range s.entra.graph.Requests() {
		if r.Path == "/v1.0/users/delta" {
			t.Fatal("the timer read the users delta locally without AZSCEP_API_REVOKE_DISABLED")
		}
	}
}

// caOf is the CA certificate the service's static endpoint serves.
func caOf(t *testing.T, s *namesService) *x509.Certificate {
	t.Helper()
	certs, _ := getCACert(t, s.scepURL("static"))
	for _, c := range certs {
		if c.IsCA {
			return c
		}
	}
	t.Fatal("no CA certificate in GetCACert")
	return nil
}

// TestAccountSweepLimit: the account sweep takes its full minute when the timer has time left, what the CRL refresh
// and the pending report leave when it has less, and never less than the reserve the plan keeps for it.
func TestAccountSweepLimit(t *testing.T) {
	for _, tc := range []struct {
		left, want time.Duration
	}{
		{9 * time.Minute, accountSweepTimeout},
		{crlRefreshTimeout + pendingSweepReserve + 30*time.Second, 30 * time.Second},
		{crlRefreshTimeout + pendingSweepReserve, accountSweepReserve},
	} {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(tc.left))
		got := accountSweepLimit(ctx)
		cancel()
		if got > tc.want || got < tc.want-time.Second {
			t.Errorf("with %s left: %s, want %s", tc.left, got, tc.want)
		}
	}
	if got := accountSweepLimit(context.Background()); got != accountSweepTimeout {
		t.Errorf("without a deadline: %s", got)
	}
}

// TestHealthCountsPassedOverCertificates: Graph fails, in every run, the lookup of one deleted user's account while
// it answers the others, so the hourly timer's verifying pass passes over that certificate after MaxRecordTries runs
// and its Logs say so. /api/health then shows it, counted with when it was passed over, and still answers 200: the
// service is not degraded, and later runs ask about it again.
func TestHealthCountsPassedOverCertificates(t *testing.T) {
	s := startNames(t, "AZSCEP_API_REVOKE_DISABLED=true")
	selfCert := func(upn string) (string, *x509.Certificate) {
		oid := entrafake.NewGUID()
		tok := s.entra.MintUser(oid, upn, []string{entra.RoleCSRSelfService})
		return oid, s.wantAPICert(t, tok, testca.CSROptions{Subject: pkix.Name{CommonName: upn}, UPNs: []string{upn}})
	}
	gone, _ := selfCert("gone@contoso.example")
	stuck, stuckCert := selfCert("stuck@contoso.example")
	s.entra.graph.DeleteUser(gone)
	s.entra.graph.DeleteUser(stuck)
	s.entra.graph.SetFault(entrafake.Fault{Path: "/v1.0/users/" + stuck, Status: http.StatusInternalServerError})
	if code, body := getHealth(t, s.base); code != http.StatusOK || strings.Contains(body, "passedOver") {
		t.Fatalf("/api/health before = %d %s", code, body)
	}

	var logs string
	for range revocation.MaxRecordTries {
		logs = postTimer(t, http.DefaultClient, s.base)
	}
	serial := store.SerialString(stuckCert.SerialNumber)
	if !strings.Contains(logs, "passed over 1 certificates") || !strings.Contains(logs, serial) {
		t.Fatalf("run %d's Logs:\n%s", revocation.MaxRecordTries, logs)
	}
	code, body := getHealth(t, s.base)
	if code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) ||
		!strings.Contains(body, `"revocation":{"passedOver":1,"oldest":"`) {
		t.Fatalf("/api/health with a certificate passed over = %d %s", code, body)
	}
}
