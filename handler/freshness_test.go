package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// instance is one handler instance (its own deps: OCSP responder, CRL publisher, caches) built in this process
// over a shared store and key directory, serving HTTP.
type instance struct {
	d     *deps
	base  string
	clock *testca.Clock
	logs  *testca.LogBuffer
}

// startInstance builds an instance with its own clock; several instances with the same env share Azurite and keys.
func startInstance(t *testing.T, env []string) *instance {
	t.Helper()
	cfg := loadConfig(t, env)
	in := &instance{clock: testca.NewClock(time.Now()), logs: &testca.LogBuffer{}}
	log := slog.New(slog.NewJSONHandler(in.logs, nil))
	scep.Init()
	var err error
	if in.d, err = build(context.Background(), cfg, log, buildOptions{clock: in.clock}); err != nil {
		t.Fatalf("build: %v", err)
	}
	// Listen on the configured port: the development token issuer's keys are fetched from the base URL.
	srv := httptest.NewUnstartedServer(httpx.Edge(log, in.d.unclean(routes(in.d))))
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Port))
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if in.d.close != nil {
			in.d.close()
		}
	})
	in.base = srv.URL
	return in
}

// ocspStatus asks an instance's /api/ocsp about cert.
func (in *instance) ocspStatus(t *testing.T, cert, ca *x509.Certificate) int {
	t.Helper()
	req, err := xocsp.CreateRequest(cert, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(in.base+"/api/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parsed, err := xocsp.ParseResponseForCert(body, cert, ca)
	if err != nil {
		t.Fatalf("OCSP answer: %v", err)
	}
	return parsed.Status
}

// crl fetches and parses an instance's /api/crl.
func (in *instance) crl(t *testing.T) *x509.RevocationList {
	t.Helper()
	resp, err := http.Get(in.base + "/api/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	return list
}

// crlLists reports whether an instance's /api/crl lists serial.
func (in *instance) crlLists(t *testing.T, ca *x509.Certificate, serial string) bool {
	t.Helper()
	list := in.crl(t)
	if err := list.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("CRL: %v", err)
	}
	for _, e := range list.RevokedCertificateEntries {
		if store.SerialString(e.SerialNumber) == serial {
			return true
		}
	}
	return false
}

// adminRevoke revokes serial through an instance's admin API with a development token.
func (in *instance) adminRevoke(t *testing.T, serial, reason string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, in.base+"/api/certificates/"+serial+"/revoke",
		strings.NewReader(`{"reason":"`+reason+`"}`))
	req.Header.Set("Authorization", "Bearer "+devToken(t, in.base, "Certificates.Manage"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke %s = %d %s\n%s", serial, resp.StatusCode, body, in.logs.String())
	}
}

// TestRevocationSeenByOtherInstance (issue 11, point 10): two handler instances on one Azurite. A certificate is
// good on instance B (and cached there); an admin revokes it on instance A. B keeps its cached answer only until
// its next revocation-generation read — at most 30 s later, well inside the five-minute bound — and then answers
// revoked, and its CRL lists the certificate. B's clock is moved instead of waiting.
func TestRevocationSeenByOtherInstance(t *testing.T) {
	_, stEnv := azuriteStore(t)
	env := append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t), "AZSCEP_DEV_ISSUER=true"}, stEnv...)
	a, b := startInstance(t, env), startInstance(t, env)

	certs, _ := getCACert(t, a.base+"/api/scep/static")
	ra := recipients(t, certs)[0]
	ca := a.d.keys.CA()
	key := testca.RSAKey(t, nextDeviceKey(t))
	subject := pkix.Name{CommonName: "freshness-device"}
	csr := testca.CSR(t, key, testca.CSROptions{Subject: subject, ChallengePassword: config.LocalStaticChallenge})
	cert := post(t, a.base+"/api/scep/static", testca.NewClient(t, key, subject, ra).PKCSReq(t, csr)).mustSucceed(t, ra)
	serial := store.SerialString(cert.SerialNumber)

	if st := b.ocspStatus(t, cert, ca); st != xocsp.Good {
		t.Fatalf("B before the revocation: %d, want good", st)
	}
	if b.crlLists(t, ca, serial) {
		t.Fatal("B's CRL lists the certificate before the revocation")
	}

	a.adminRevoke(t, serial, "keyCompromise")
	if st := a.ocspStatus(t, cert, ca); st != xocsp.Revoked {
		t.Fatalf("A, which revoked it: %d, want revoked at once", st)
	}
	// B read the generation less than 30 s ago (its clock has not moved): its cached answers stand. This is the
	// staleness the bound allows, and what keeps B at one store read per 30 s rather than one per request.
	if st := b.ocspStatus(t, cert, ca); st != xocsp.Good {
		t.Fatalf("B inside the interval: %d; the generation was read per request", st)
	}

	b.clock.Advance(31 * time.Second)
	if st := b.ocspStatus(t, cert, ca); st != xocsp.Revoked {
		t.Fatalf("B 31 s after a revocation on A: %d, want revoked", st)
	}
	if !b.crlLists(t, ca, serial) {
		t.Fatal("B's CRL does not list the certificate 31 s after its revocation on A")
	}
	if reads := b.d.ocsp.Stats().GenerationReads; reads > 3 {
		t.Errorf("B read the generation %d times for 3 OCSP requests over two intervals, want at most one per interval", reads)
	}
}

// The hourly timer completes a revocation interrupted between its two writes: before it, the CRL lists the
// certificate while OCSP still answers good; after it, OCSP answers revoked with the CRL's time and reason.
func TestTimerCompletesAnInterruptedRevocation(t *testing.T) {
	in := startInstance(t, localEnv(t))
	ra, ca := in.raOf(t), in.d.keys.CA()
	cert := in.enrollTo(t, ra, "interrupted-revocation").mustSucceed(t, ra)
	serial := store.SerialString(cert.SerialNumber)
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	if _, err := in.d.store.AddRevoked(t.Context(), store.Revoked{Serial: serial, RevokedAt: at, Reason: 1}); err != nil {
		t.Fatal(err) // the first of Revoke's two writes; the record write never happened
	}
	in.d.crl.Invalidate()
	if !in.crlLists(t, ca, serial) || in.ocspStatus(t, cert, ca) != xocsp.Good {
		t.Fatal("not the interrupted state: want the CRL to list the certificate and OCSP to answer good")
	}

	if logs := in.timer(t); !strings.Contains(logs, "completed 1 interrupted revocations: "+serial) {
		t.Errorf("timer logs %q do not report the completion", logs)
	}
	if got := in.ocspStatus(t, cert, ca); got != xocsp.Revoked {
		t.Errorf("OCSP status %d after the timer, want revoked", got)
	}
	rec, err := in.d.store.Get(t.Context(), serial)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.StatusRevoked || !rec.RevokedAt.Equal(at) || rec.RevocationReason != 1 {
		t.Errorf("record %s at %v reason %d; want revoked at %v for keyCompromise like the CRL", rec.Status,
			rec.RevokedAt, rec.RevocationReason, at)
	}
	if logs := in.timer(t); strings.Contains(logs, "interrupted") {
		t.Errorf("second timer run: %q, want nothing left to complete", logs)
	}
}

// In local mode a web page that rebinds its own name to 127.0.0.1 cannot mint development tokens (or reach any
// other route): the Host header still names the page's host.
func TestLocalModeRefusesRebindingHosts(t *testing.T) {
	in := startInstance(t, localEnv(t))
	for _, host := range []string{"rebind.evil.example", "rebind.evil.example:" + in.base[strings.LastIndex(in.base, ":")+1:]} {
		req, _ := http.NewRequest(http.MethodPost, in.base+"/api/dev/token", strings.NewReader(`{"roles":["Certificates.Manage"]}`))
		req.Host = host
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(body), "access_token") {
			t.Errorf("Host %q: %d %s, want 421 and no token", host, resp.StatusCode, body)
		}
	}
	if tok := devToken(t, in.base, "Certificates.Manage"); tok == "" { // addressed to 127.0.0.1: served
		t.Error("no token for a loopback Host")
	}
}

// TestCompromisedKeyRefusedAtEveryDoor: once a certificate is revoked for keyCompromise on instance A, its key gets
// no new certificate at any door: at once on A, and on instance B within the 30 s its view of the marks may be old,
// without B asking the store about keys on every enrollment. Renewals always read the mark (the renewal cut-off);
// this is a first enrollment over static SCEP with a new transaction, and /api/csr.
func TestCompromisedKeyRefusedAtEveryDoor(t *testing.T) {
	env := localEnv(t)
	a, b := startInstance(t, env), startInstance(t, env)
	certs, _ := getCACert(t, a.base+"/api/scep/static")
	ra := recipients(t, certs)[0]
	key := testca.RSAKey(t, nextDeviceKey(t))
	enroll := func(in *instance, cn string) *exchange {
		subject := pkix.Name{CommonName: cn}
		csr := testca.CSR(t, key, testca.CSROptions{Subject: subject, ChallengePassword: config.LocalStaticChallenge})
		// A transaction ID of its own: a new enrollment with the key, not a replay of the first one.
		c := testca.NewClient(t, key, subject, ra)
		return post(t, in.base+"/api/scep/static", c.Message(t, testca.Message{Type: testca.MsgPKCSReq,
			TransactionID: "compromised-" + cn, Content: csr.Raw}))
	}
	cert := enroll(a, "leaked-key-device").mustSucceed(t, ra)
	if again := enroll(b, "same-key-before").mustSucceed(t, ra); again.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Fatal("the second enrollment replayed the first")
	}

	a.adminRevoke(t, store.SerialString(cert.SerialNumber), "keyCompromise")
	enroll(a, "same-key-on-a").mustFail(t, ra, testca.FailBadRequest)
	if !strings.Contains(a.logs.String(), string(policy.CodeKeyCompromised)) {
		t.Errorf("A's log does not name the refusal:\n%s", a.logs.String())
	}
	// B listed the marks less than 30 s ago (its clock has not moved): its view stands, as OCSP's does.
	enroll(b, "same-key-on-b-inside").mustSucceed(t, ra)
	b.clock.Advance(31 * time.Second)
	enroll(b, "same-key-on-b").mustFail(t, ra, testca.FailBadRequest)

	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "api-leaked"},
		DNSNames: []string{"api-leaked.example.com"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, b.base+"/api/csr", bytes.NewReader(der))
	req.Header.Set("Authorization", "Bearer "+devToken(t, b.base, "CSR.Request.Db"))
	req.Header.Set("Content-Type", "application/pkcs10")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var p httpx.Problem
	if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != http.StatusBadRequest || p.Code != string(policy.CodeKeyCompromised) {
		t.Fatalf("/api/csr with the compromised key: %d %s, want 400 %s", resp.StatusCode, body, policy.CodeKeyCompromised)
	}
}

// TestTimerKeepsTheCRLSigned: the hourly timer signs a CRL when none is in force or the one in force is past half
// its validity, without a relying party asking (RFC 5280 §3.3: an expired certificate's entry must be on a CRL signed
// after its expiry, and leaves the CRL one validity later), and signs nothing while the CRL is fresh.
func TestTimerKeepsTheCRLSigned(t *testing.T) {
	in := startInstance(t, localEnv(t))
	number := func(logs string) string {
		t.Helper()
		_, after, ok := strings.Cut(logs, "CRL #")
		if !ok {
			t.Fatalf("the timer signed no CRL; its Logs:\n%s", logs)
		}
		n, _, _ := strings.Cut(after, " ")
		return n
	}
	served := func() string { return in.crl(t).Number.String() }
	first := number(postTimer(t, http.DefaultClient, in.base))
	if got := served(); got != first {
		t.Fatalf("/api/crl serves CRL #%s, the timer signed #%s", got, first)
	}
	in.clock.Advance(11 * time.Hour) // under half of the default 24 h validity: still fresh
	if again := number(postTimer(t, http.DefaultClient, in.base)); again != first {
		t.Fatalf("a fresh CRL was signed again by the timer: #%s after #%s", again, first)
	}
	in.clock.Advance(2 * time.Hour) // past half its validity
	later := number(postTimer(t, http.DefaultClient, in.base))
	a, _ := new(big.Int).SetString(first, 10)
	b, ok := new(big.Int).SetString(later, 10)
	if !ok || b.Cmp(a) <= 0 {
		t.Fatalf("past half its validity the timer left CRL #%s in force (got #%s)", first, later)
	}
	if got := served(); got != later {
		t.Fatalf("/api/crl serves CRL #%s, the timer signed #%s", got, later)
	}
}
