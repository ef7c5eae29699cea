package main

// A day of operations through the real handler, read back from its logs: whatever the service writes to stdout
// (and the Logs of the host's timer invocations, which Application Insights keeps beside them) holds no
// challenge password, no bearer token and no private key, whether the request that carried it succeeded or not;
// and the operator's workbook finds in them the lines and fields it reads.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestOpsDayLogsHoldNoSecrets enrolls over SCEP (static and Intune challenges, right and wrong) and /api/csr
// (good and forged bearer tokens), revokes through the admin API and through Intune's revocation sync on the
// host's timer, fetches the CRL and OCSP, and then scans every log line for the secrets that passed through.
func TestOpsDayLogsHoldNoSecrets(t *testing.T) {
	s := startIntune(t, intuneSetup{env: []string{"AZSCEP_DEV_ISSUER=true"}})
	secrets := map[string][]string{"static challenge": {config.LocalStaticChallenge},
		"Intune client secret": {s.fake.ClientSecret()}}

	// Static challenge: the right one, then a wrong one (a mistyped password is most of the right one).
	staticKey := testca.RSAKey(t, nextDeviceKey(t))
	subject := pkix.Name{CommonName: "ops-day-gear"}
	client := testca.NewClient(t, staticKey, subject, s.ra)
	csr := testca.CSR(t, staticKey, testca.CSROptions{Subject: subject, ChallengePassword: config.LocalStaticChallenge})
	post(t, s.scepURL("static"), client.PKCSReq(t, csr)).mustSucceed(t, s.ra)
	wrong := "wrong-static-" + uuid.NewString()
	secrets["wrong static challenge"] = []string{wrong}
	wrongKey := testca.RSAKey(t, nextDeviceKey(t))
	wrongClient := testca.NewClient(t, wrongKey, subject, s.ra)
	wrongCSR := testca.CSR(t, wrongKey, testca.CSROptions{Subject: subject, ChallengePassword: wrong})
	if rep := post(t, s.scepURL("static"), wrongClient.PKCSReq(t, wrongCSR)).certRep(t, s.ra); rep.Status != testca.StatusFailure {
		t.Fatalf("a wrong static challenge got %s", rep.Status)
	}

	// Intune's dynamic challenge: one Intune validates, one it does not know.
	deviceSubject := pkix.Name{CommonName: "ops-day-device"}
	device := s.enroll(t, testca.CSROptions{Subject: deviceSubject}, intunefake.Challenge{Subject: deviceSubject.String()})
	deviceCert, deviceRec := s.issued(t, device)
	unknown := s.send(t, testca.RSAKey(t, nextDeviceKey(t)), testca.RSAKey(t, nextDeviceKey(t)),
		testca.CSROptions{Subject: deviceSubject, ChallengePassword: newPassword()})
	if rep := unknown.certRep(t, s.ra); rep.Status != testca.StatusFailure {
		t.Fatalf("an unknown Intune challenge got %s", rep.Status)
	}
	secrets["Intune challenge"] = []string{device.password, unknown.password}

	// REST enrollment and the admin API with bearer tokens, and a forged token the API refuses.
	csrToken := devToken(t, s.base, "CSR.Request.Db")
	adminToken := devToken(t, s.base, "Certificates.Manage")
	apiCert := issueViaAPI(t, s.base, csrToken, pkix.Name{CommonName: "ops-day-api"})
	parts := strings.Split(csrToken, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	req, _ := http.NewRequest(http.MethodPost, s.base+"/api/csr", bytes.NewReader(csr.Raw))
	req.Header.Set("Authorization", "Bearer "+forged)
	req.Header.Set("Content-Type", "application/pkcs10")
	if resp, _ := testca.Do(t, http.DefaultClient, req); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged token got %d", resp.StatusCode)
	}
	// A CSR the API profile refuses (an IP address SAN): a "csr refused" line with its reason code.
	ipKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ipCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "ops-day-ip"}, IPAddresses: []net.IP{net.IPv4(192, 0, 2, 1)}}, ipKey)
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodPost, s.base+"/api/csr", bytes.NewReader(ipCSR))
	req.Header.Set("Authorization", "Bearer "+csrToken)
	req.Header.Set("Content-Type", "application/pkcs10")
	if resp, body := testca.Do(t, http.DefaultClient, req); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a CSR with an IP address SAN got %d %s", resp.StatusCode, body)
	}
	apiSerial := store.SerialString(apiCert.SerialNumber)
	req, _ = http.NewRequest(http.MethodPost, s.base+"/api/certificates/"+apiSerial+"/revoke",
		strings.NewReader(`{"reason":"keyCompromise"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, body := testca.Do(t, http.DefaultClient, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin revoke: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodGet, s.base+"/api/certificates?subject=ops-day", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if resp, body := testca.Do(t, http.DefaultClient, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin search: %d %s", resp.StatusCode, body)
	}
	var tokens []string
	for _, tok := range []string{csrToken, adminToken, forged} {
		// The signature alone is enough to replay a token whose header and claims are guessable.
		tokens = append(tokens, tok, tok[strings.LastIndex(tok, ".")+1:])
	}

	// A request that died between its pending record and the signature: the timer reports it.
	old := time.Now().Add(-2 * time.Hour)
	stale := &store.Record{Serial: "5C0DA1E5C0DA1E5C0DA1E5C0DA1E5C0DA1", Status: store.StatusPending, Endpoint: "static",
		PlannedDER: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, Created: old, Updated: old}
	if err := s.store.Insert(context.Background(), stale); err != nil {
		t.Fatal(err)
	}

	// Intune asks for the device's revocation; the host's hourly invocation applies and uploads it.
	if _, err := s.fake.RevokeIssued(deviceRec.Serial); err != nil {
		t.Fatal(err)
	}
	envelope := `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-12-07T15:00:00+00:00","Next":"2026-12-07T16:00:00+00:00","LastUpdated":"2026-12-07T15:00:00+00:00"},"IsPastDue":true}},"Metadata":{"sys":{"MethodName":"revocation-sync"}}}`
	resp, err := http.Post(s.base+"/revocation-sync", "application/json", strings.NewReader(envelope))
	if err != nil {
		t.Fatal(err)
	}
	var invocation struct{ Logs []string }
	err = json.NewDecoder(resp.Body).Decode(&invocation)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(strings.Join(invocation.Logs, "\n"), "uploaded=1") {
		t.Fatalf("timer invocation: %d %v %q", resp.StatusCode, err, invocation.Logs)
	}
	for _, e := range s.fake.Journal() {
		if tok, ok := strings.CutPrefix(e.Header.Get("Authorization"), "Bearer "); ok {
			tokens = append(tokens, tok)
		}
	}
	secrets["bearer token"] = tokens

	// Relying parties see both revocations.
	resp, err = http.Get(s.base + "/api/crl")
	if err != nil {
		t.Fatal(err)
	}
	crlDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	list, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range list.RevokedCertificateEntries {
		listed[store.SerialString(e.SerialNumber)] = true
	}
	if !listed[apiSerial] || !listed[deviceRec.Serial] {
		t.Fatalf("the CRL lists %v, want %s and %s", listed, apiSerial, deviceRec.Serial)
	}
	reqDER, err := xocsp.CreateRequest(deviceCert, s.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(s.base+"/api/ocsp", "application/ocsp-request", bytes.NewReader(reqDER))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := xocsp.ParseResponseForCert(body, deviceCert, s.ca)
	if err != nil || r.Status != xocsp.Revoked || r.Certificate == nil {
		t.Fatalf("OCSP for the Intune-revoked device: %+v %v", r, err)
	}
	// The service's own certificates are good: the RA's (recorded by the timer's RA maintenance at the latest) and
	// the delegated responder's.
	for name, c := range map[string]*x509.Certificate{"RA": s.ra, "OCSP responder": r.Certificate} {
		if st := ocspStatus(t, s.base, c, s.ca); st.Status != xocsp.Good {
			t.Errorf("OCSP for the %s certificate: status %d, want good", name, st.Status)
		}
	}

	// The private keys the service holds: the CA's and the RA's key files (local mode).
	keyFiles, err := filepath.Glob(filepath.Join(s.cfg.LocalKeyDir, "*.key"))
	if err != nil || len(keyFiles) < 2 {
		t.Fatalf("key files %v %v", keyFiles, err)
	}
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			t.Fatalf("%s is not PEM", f)
		}
		// Any 48 bytes of the key's PEM body, base64 at 64 characters a line.
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		secrets["private key "+filepath.Base(f)] = append(secrets["private key "+filepath.Base(f)], lines[1:len(lines)-1]...)
	}
	secrets["PEM private key"] = []string{"PRIVATE KEY"}

	checkWorkbookFields(t, s.logLines(t), "enrollments.kql", "intune-failures.kql", "revocation-sync.kql",
		"stale-pending.kql")

	text := s.logText() + "\n" + strings.Join(invocation.Logs, "\n")
	if n := len(s.logLines(t)); n < 20 {
		t.Fatalf("only %d log lines: the scan proves nothing", n)
	}
	for what, values := range secrets {
		for _, v := range values {
			if v == "" {
				t.Fatalf("empty %s", what)
			}
			if strings.Contains(text, v) {
				t.Errorf("the log holds a %s", what)
			}
		}
	}
}

var (
	kqlMsgPrefix = regexp.MustCompile(`'"msg":"([^"']+)`)
	kqlJField    = regexp.MustCompile(`\bj\.([A-Za-z_][A-Za-z0-9_]*)`)
	kqlIntField  = regexp.MustCompile(`toint\(j\.([A-Za-z_][A-Za-z0-9_]*)\)`)
)

// checkWorkbookFields reads the operator's workbook queries (infra/workbook) against the log lines of a real run:
// each query named in mustMatch finds lines by its "msg" filter, and every field it reads is written by one of
// them, as a number where the query reads it with toint.
func checkWorkbookFields(t *testing.T, lines []map[string]any, mustMatch ...string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "infra", "workbook", "*.kql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no workbook queries: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		query, name := string(b), filepath.Base(f)
		var prefixes []string
		for _, m := range kqlMsgPrefix.FindAllStringSubmatch(query, -1) {
			prefixes = append(prefixes, m[1])
		}
		written, numeric := map[string]bool{}, map[string]bool{}
		matched := 0
		for _, l := range lines {
			msg, _ := l["msg"].(string)
			if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(msg, p) }) {
				continue
			}
			matched++
			for k, v := range l {
				written[k] = true
				if _, ok := v.(float64); ok {
					numeric[k] = true
				}
			}
		}
		if matched == 0 {
			if slices.Contains(mustMatch, name) {
				t.Errorf("workbook %s: no log line of the run matches its filter %q", name, prefixes)
			}
			continue
		}
		for _, m := range kqlJField.FindAllStringSubmatch(query, -1) {
			if !written[m[1]] {
				t.Errorf("workbook %s reads j.%s, which none of its %d log lines writes", name, m[1], matched)
			}
		}
		for _, m := range kqlIntField.FindAllStringSubmatch(query, -1) {
			if written[m[1]] && !numeric[m[1]] {
				t.Errorf("workbook %s reads toint(j.%s), which its log lines write as a string", name, m[1])
			}
		}
	}
}

// TestWorkbookStalePendingListsOnlyRevocable: the workbook's stale-pending panel ("revocable by serial") finds the
// timer's lines for records whose certificate may be in use, not those for the CA's own certificates that were never
// used (nothing to revoke, and no endpoint to show).
func TestWorkbookStalePendingListsOnlyRevocable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "infra", "workbook", "stale-pending.kql"))
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []string
	for _, m := range kqlMsgPrefix.FindAllStringSubmatch(string(b), -1) {
		prefixes = append(prefixes, m[1])
	}
	matches := func(msg string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(msg, p) })
	}
	// The two lines of the timer's pending report (deps.sweepPending); internal/config's workbook test checks that
	// the code writes them.
	const revocable = "stale pending record: signature outcome unknown, revocable by serial"
	const unused = "stale pending record without a planned certificate: never used"
	if !matches(revocable) {
		t.Errorf("stale-pending.kql (%q) misses %q", prefixes, revocable)
	}
	if matches(unused) {
		t.Errorf("stale-pending.kql (%q) lists %q, which has nothing to revoke", prefixes, unused)
	}
}
