package main

// The Intune dynamic challenge through the real handler: serve with the `intune` SCEP endpoint against the
// Entra/Graph/Intune fake (intune-protocol.md §11), driven by a Go SCEP client. Each test asserts what the device
// got (CertRep status, failInfo, certificate), the records, and what Intune was told (the fake's journal).
// Scenario numbers refer to intune-protocol.md §10.

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the Intune thumbprint is SHA-1 by definition
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// intuneService is the handler with an `intune` endpoint wired to a fake Intune.
type intuneService struct {
	*running
	fake  *intunefake.Server
	store store.Store
	ra    *x509.Certificate // what devices encrypt to and CertReps are signed with
	ca    *x509.Certificate
	lint  func(*testing.T, *x509.Certificate)
}

// intuneSetup varies a service.
type intuneSetup struct {
	fake   intunefake.Options
	secret string   // the client secret the service uses; "" = the fake's
	env    []string // extra settings
	wrap   func(store.Store) store.Store
	drain  time.Duration // how long a stop lets requests finish (0: the service's default)
}

// intuneEnv points the Intune client at f: the same settings an operator sets for a national cloud.
func intuneEnv(f *intunefake.Server, secret string) []string {
	if secret == "" {
		secret = f.ClientSecret()
	}
	return []string{"AZSCEP_SCEP_ENDPOINTS=static,intune",
		"AZSCEP_INTUNE_TENANT_ID=" + f.TenantID(), "AZSCEP_INTUNE_CLIENT_ID=" + f.ClientID(),
		"AZSCEP_INTUNE_CREDENTIAL=secret", "AZSCEP_INTUNE_CLIENT_SECRET=" + secret,
		"AZSCEP_INTUNE_AUTHORITY=" + f.AuthorityHost(), "AZSCEP_INTUNE_GRAPH_URL=" + f.GraphBase(),
		"AZSCEP_INTUNE_RESOURCE_URL=" + intunefake.IntuneAudience}
}

func newIntuneFake(t *testing.T, opts intunefake.Options) *intunefake.Server {
	t.Helper()
	f, err := intunefake.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// startIntune runs the handler in local mode (key files, Table Storage on Azurite) with Intune at a fresh fake.
func startIntune(t *testing.T, s intuneSetup) *intuneService {
	t.Helper()
	f := newIntuneFake(t, s.fake)
	st, stEnv := azuriteStore(t)
	var injected store.Store = st
	if s.wrap != nil {
		injected = s.wrap(st)
	}
	env := append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t)}, stEnv...)
	env = append(append(env, intuneEnv(f, s.secret)...), s.env...)
	svc := startServe(t, env, buildOptions{httpClient: f.Client(), store: injected, drain: s.drain})
	return attachIntune(t, svc, f, st)
}

func attachIntune(t *testing.T, svc *running, f *intunefake.Server, st store.Store) *intuneService {
	t.Helper()
	certs, _ := getCACert(t, svc.scepURL("intune"))
	is := &intuneService{running: svc, fake: f, store: st, ra: recipients(t, certs)[0], lint: lintIssued}
	if svc.cfg.Mode == config.ModeAzure {
		is.lint = lintAzure
	}
	for _, c := range certs {
		if c.IsCA {
			is.ca = c
		}
	}
	if is.ca == nil {
		t.Fatal("GetCACert has no CA certificate")
	}
	return is
}

// attempt is one device enrollment: what the device sent and what it got.
type attempt struct {
	*exchange
	csr      *x509.CertificateRequest
	password string
	key      *rsa.PrivateKey // the device's signing key
}

func (a *attempt) txID() string { return a.req.TransactionID }

// newPassword is a fresh Intune challenge (real ones are long opaque blobs).
func newPassword() string { return "intune-challenge-" + strings.ReplaceAll(uuid.NewString(), "-", "") }

// register makes the fake know a challenge for o (o.ChallengePassword is set) with ch's expectations.
func (s *intuneService) register(t *testing.T, o *testca.CSROptions, ch intunefake.Challenge) {
	t.Helper()
	if o.ChallengePassword == "" {
		o.ChallengePassword = newPassword()
	}
	ch.Password = o.ChallengePassword
	if err := s.fake.RegisterChallenge(ch); err != nil {
		t.Fatal(err)
	}
}

// enroll registers ch and sends a PKCSReq for a CSR built from o with a fresh device key.
func (s *intuneService) enroll(t *testing.T, o testca.CSROptions, ch intunefake.Challenge) *attempt {
	t.Helper()
	key := testca.RSAKey(t, nextDeviceKey(t))
	return s.enrollWithKey(t, key, key, o, ch)
}

// enrollWithKey is enroll with a chosen CSR key (the device still signs the message with an RSA key).
func (s *intuneService) enrollWithKey(t *testing.T, signer *rsa.PrivateKey, csrKey crypto.Signer, o testca.CSROptions, ch intunefake.Challenge) *attempt {
	t.Helper()
	s.register(t, &o, ch)
	return s.send(t, signer, csrKey, o)
}

// send builds the CSR from o (challenge included) and sends it as a PKCSReq.
func (s *intuneService) send(t *testing.T, signer *rsa.PrivateKey, csrKey crypto.Signer, o testca.CSROptions) *attempt {
	t.Helper()
	csr := testca.CSR(t, csrKey, o)
	subject := o.Subject
	if subject.CommonName == "" {
		subject = pkix.Name{CommonName: "scep-client"}
	}
	client := testca.NewClient(t, signer, subject, s.ra)
	x := post(t, s.scepURL("intune"), client.PKCSReq(t, csr))
	return &attempt{exchange: x, csr: csr, password: o.ChallengePassword, key: signer}
}

// calls are the fake's journal entries of route for one transaction.
func (s *intuneService) calls(t *testing.T, route intunefake.Route, txID string) []intunefake.Entry {
	t.Helper()
	var out []intunefake.Entry
	for _, e := range s.fake.Requests(route) {
		if fmt.Sprint(body(t, e)["transactionId"]) == txID {
			out = append(out, e)
		}
	}
	return out
}

// body is the inner object of an Intune call ("request" or "notification").
func body(t *testing.T, e intunefake.Entry) map[string]any {
	t.Helper()
	outer, ok := e.JSON.(map[string]any)
	if !ok {
		t.Fatalf("%s body is not a JSON object: %q", e.Route, e.Body)
	}
	for _, w := range []string{"request", "notification"} {
		if in, ok := outer[w].(map[string]any); ok {
			return in
		}
	}
	t.Fatalf("%s body has no request or notification: %q", e.Route, e.Body)
	return nil
}

// thumbprint is what Intune must receive: upper-case hex SHA-1 of the certificate DER.
func thumbprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw) //nolint:gosec // identifier defined by Intune
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// checkHeaders asserts the §5.1 envelope of an Intune call.
func checkHeaders(t *testing.T, e intunefake.Entry) {
	t.Helper()
	if e.Header.Get("api-version") != intunefake.ScepAPIVersion || !strings.HasPrefix(e.Header.Get("Authorization"), "Bearer ") ||
		e.Header.Get("UserAgent") == "" || e.Reject != "" {
		t.Fatalf("%s envelope: api-version %q, UserAgent %q, rejected %q", e.Route, e.Header.Get("api-version"),
			e.Header.Get("UserAgent"), e.Reject)
	}
	if id, err := uuid.Parse(e.Header.Get("client-request-id")); err != nil || id.String() != e.Header.Get("client-request-id") {
		t.Fatalf("client-request-id %q is not a lower-case UUID", e.Header.Get("client-request-id"))
	}
}

// issued asserts a successful Intune enrollment end to end and returns the certificate and its record: the device
// got a certificate from this CA; Intune validated the exact CSR first and was told the exact certificate before
// it left; the record says so.
func (s *intuneService) issued(t *testing.T, a *attempt) (*x509.Certificate, *store.Record) {
	t.Helper()
	cert := a.mustSucceed(t, s.ra)
	if err := cert.CheckSignatureFrom(s.ca); err != nil {
		t.Fatalf("certificate not issued by the CA: %v", err)
	}
	if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(a.csr.PublicKey) {
		t.Fatal("certificate is not for the CSR's key")
	}
	rec := recordFor(t, s.store, "intune", a.txID())
	caConfig := intune.CAConfiguration(s.ca) // the CA's DN and key: two CAs of one name are told apart
	if rec.Status != store.StatusIssued || rec.Withheld || !rec.IntuneNotified || rec.Serial != store.SerialString(cert.SerialNumber) ||
		rec.IntuneSerial != rec.Serial || rec.CAConfiguration != caConfig || !bytes.Equal(rec.CertDER, cert.Raw) ||
		rec.TxID != a.txID() || rec.Endpoint != "intune" || rec.Source != store.SourceSCEP {
		t.Fatalf("record: status %s withheld %t notified %t serial %s intuneSerial %s caConfiguration %q tx %q endpoint %s",
			rec.Status, rec.Withheld, rec.IntuneNotified, rec.Serial, rec.IntuneSerial, rec.CAConfiguration, rec.TxID, rec.Endpoint)
	}

	csrB64 := base64.StdEncoding.EncodeToString(a.csr.Raw)
	validations := s.calls(t, intunefake.RouteValidate, a.txID())
	successes := s.calls(t, intunefake.RouteSuccess, a.txID())
	if len(validations) != 1 || len(successes) != 1 || len(s.calls(t, intunefake.RouteFailure, a.txID())) != 0 {
		t.Fatalf("Intune calls for %s: %d validate, %d success, want 1 and 1 and no failure", a.txID(), len(validations), len(successes))
	}
	v, n := validations[0], successes[0]
	if v.Seq > n.Seq {
		t.Fatal("successNotification was sent before validateRequest")
	}
	checkHeaders(t, v)
	checkHeaders(t, n)
	if v.Header.Get("client-request-id") == n.Header.Get("client-request-id") {
		t.Fatal("two Intune calls share a client-request-id")
	}
	vb := body(t, v)
	if vb["certificateRequest"] != csrB64 || vb["callerInfo"] == "" || len(vb) != 3 {
		t.Fatalf("validateRequest body %v does not carry the CSR as received", vb)
	}
	nb := body(t, n)
	want := map[string]any{
		"transactionId": a.txID(), "certificateRequest": csrB64, "certificateThumbprint": thumbprint(cert),
		"certificateSerialNumber": rec.Serial, "certificateExpirationDateUtc": cert.NotAfter.UTC().Format("2006-01-02T15:04:05.000Z"),
		"issuingCertificateAuthority": cert.Issuer.String(), "caConfiguration": caConfig, "certificateAuthority": caConfig,
	}
	for k, w := range want {
		if nb[k] != w {
			t.Errorf("successNotification %s = %v, want %v", k, nb[k], w)
		}
	}
	var reported *intunefake.Issued
	for _, i := range s.fake.IssuedCertificates() {
		if i.TransactionID == a.txID() {
			reported = &i
		}
	}
	if reported == nil || reported.Thumbprint != thumbprint(cert) || reported.SerialNumber != rec.Serial {
		t.Fatalf("the fake recorded no matching issued certificate for %s", a.txID())
	}
	if v := s.fake.Validations()[a.txID()]; v.Code != "Success" || !bytes.Equal(v.CSR, a.csr.Raw) {
		t.Fatalf("the fake's validation of %s: %q", a.txID(), v.Code)
	}
	s.lint(t, cert)
	return cert, rec
}

// refusedLocally asserts a request refused by the CA's own policy: FAILURE with failInfo, no Intune call of any
// kind for the transaction, no record.
func (s *intuneService) refusedLocally(t *testing.T, a *attempt, failInfo string) {
	t.Helper()
	a.mustFail(t, s.ra, failInfo)
	for _, r := range []intunefake.Route{intunefake.RouteValidate, intunefake.RouteSuccess, intunefake.RouteFailure} {
		if n := len(s.calls(t, r, a.txID())); n != 0 {
			t.Fatalf("%d %s calls for a request the CA refuses itself", n, r)
		}
	}
	noRecordFor(t, s.store, "intune", a.txID())
}

// rejectedByIntune asserts Intune's verdict against a request: FAILURE badRequest, validate called, never a
// notification, no record.
func (s *intuneService) rejectedByIntune(t *testing.T, a *attempt, code string) {
	t.Helper()
	a.mustFail(t, s.ra, testca.FailBadRequest)
	if len(s.calls(t, intunefake.RouteValidate, a.txID())) == 0 {
		t.Fatal("validateRequest was not called")
	}
	if code != "" {
		if got := s.fake.Validations()[a.txID()].Code; got != code {
			t.Fatalf("Intune answered %q, want %q", got, code)
		}
	}
	if n, f := len(s.calls(t, intunefake.RouteSuccess, a.txID())), len(s.calls(t, intunefake.RouteFailure, a.txID())); n+f != 0 {
		t.Fatalf("%d success and %d failure notifications after a failed validation", n, f)
	}
	noRecordFor(t, s.store, "intune", a.txID())
}

// TestIntuneEnrollmentColdWarmReplayAndLogs: a valid enrollment (cold: token and
// discovery first), a warm one (exactly validate + successNotification), a replay (no Intune call), and the log
// lines of every Intune call.
func TestIntuneEnrollmentColdWarmReplayAndLogs(t *testing.T) {
	s := startIntune(t, intuneSetup{})

	// Cold: the first enrollment fetches tokens and discovers the service, then validates and notifies.
	subject := pkix.Name{CommonName: "WIN-DEVICE-0001"}
	first := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{Subject: subject.String(), KeySize: 2048})
	cert1, rec1 := s.issued(t, first)
	if s.fake.Count(intunefake.RouteDiscovery) != 1 || s.fake.Count(intunefake.RouteToken) < 2 {
		t.Fatalf("cold enrollment: %d discovery and %d token calls, want 1 and at least 2 (Graph and Intune)",
			s.fake.Count(intunefake.RouteDiscovery), s.fake.Count(intunefake.RouteToken))
	}
	journal := s.fake.Journal()
	var tokens, passwords, csrs []string
	collect := func(entries []intunefake.Entry, a *attempt) {
		for _, e := range entries {
			if tok, ok := strings.CutPrefix(e.Header.Get("Authorization"), "Bearer "); ok {
				tokens = append(tokens, tok)
			}
		}
		passwords = append(passwords, a.password)
		csrs = append(csrs, base64.StdEncoding.EncodeToString(a.csr.Raw))
	}
	collect(journal, first)
	intuneCalls := func(entries []intunefake.Entry) (out []intunefake.Entry) {
		for _, e := range entries {
			if e.Route == intunefake.RouteValidate || e.Route == intunefake.RouteSuccess {
				out = append(out, e)
			}
		}
		return out
	}
	logged := intuneCalls(journal)

	// Warm: exactly two Intune calls, in order, and nothing else (no token, no discovery).
	s.fake.ResetJournal()
	warmSubject := pkix.Name{CommonName: "WIN-DEVICE-0002"}
	second := s.enroll(t, testca.CSROptions{Subject: warmSubject}, intunefake.Challenge{Subject: warmSubject.String()})
	s.issued(t, second)
	journal = s.fake.Journal()
	if len(journal) != 2 || journal[0].Route != intunefake.RouteValidate || journal[1].Route != intunefake.RouteSuccess {
		var routes []intunefake.Route
		for _, e := range journal {
			routes = append(routes, e.Route)
		}
		t.Fatalf("warm enrollment calls %v, want [validateRequest successNotification]", routes)
	}
	collect(journal, second)
	logged = append(logged, journal...)

	// Replay: the same message again returns the stored certificate with no Intune call and no new record.
	s.fake.ResetJournal()
	cert := post(t, s.scepURL("intune"), first.req).mustSucceed(t, s.ra)
	if !cert.Equal(cert1) {
		t.Fatal("the replay returned another certificate")
	}
	if n := len(s.fake.Journal()); n != 0 {
		t.Fatalf("the replay made %d Intune calls", n)
	}
	if rec := recordFor(t, s.store, "intune", first.txID()); rec.Serial != rec1.Serial || len(s.fake.IssuedCertificates()) != 2 {
		t.Fatal("the replay changed the records or notified Intune again")
	}

	// Every Intune call has one log line with its correlation data, and no secret reaches the log.
	lines := s.logLines(t)
	for _, e := range logged {
		id := e.Header.Get("client-request-id")
		var line map[string]any
		for _, l := range lines {
			if l["clientRequestId"] == id {
				line = l
			}
		}
		if line == nil {
			t.Fatalf("no log line for the %s call with client-request-id %s", e.Route, id)
		}
		if line["operation"] != string(e.Route) || line["transactionId"] != body(t, e)["transactionId"] ||
			line["code"] != "Success" || line["duration"] == nil {
			t.Fatalf("log line for %s lacks operation/transactionId/code/duration: %v", e.Route, line)
		}
	}
	text := s.logText()
	for what, secrets := range map[string][]string{"token": tokens, "challenge": passwords, "CSR": csrs,
		"client secret": {s.fake.ClientSecret()}} {
		for _, v := range secrets {
			if v != "" && strings.Contains(text, v) {
				t.Errorf("the log contains a %s", what)
			}
		}
	}
	if len(tokens) < 3 {
		t.Fatalf("only %d bearer tokens seen in the journal", len(tokens))
	}
}

// TestIntuneCertificateContent covers scenarios 2–7 and the Windows strong-mapping SANs: Intune validates the CSR
// against the profile's expectations, and the certificate carries exactly what the CSR asked for where the
// endpoint profile allows it. Requests the CA's own policy refuses (1024-bit keys, SHA-1 signatures, EKUs outside
// the profile) fail before Intune is asked.
func TestIntuneCertificateContent(t *testing.T) {
	s := startIntune(t, intuneSetup{})
	emailOID := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

	t.Run("subject", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			subject pkix.Name
		}{
			{"common name", pkix.Name{CommonName: "alice"}},
			{"common name with email", pkix.Name{CommonName: "alice", ExtraNames: []pkix.AttributeTypeAndValue{{Type: emailOID, Value: "alice@contoso.example"}}}},
			{"common name as email", pkix.Name{CommonName: "alice@contoso.example"}},
			{"IMEI", pkix.Name{CommonName: "356938035643809"}},
			{"serial number", pkix.Name{CommonName: "C02XK0ABJG5H", SerialNumber: "C02XK0ABJG5H"}},
			{"custom", pkix.Name{CommonName: "kiosk-17", OrganizationalUnit: []string{"Devices"}, Organization: []string{"Contoso"},
				Locality: []string{"Redmond"}, Province: []string{"WA"}, Country: []string{"US"}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := s.enroll(t, testca.CSROptions{Subject: tc.subject}, intunefake.Challenge{Subject: parsedSubject(t, tc.subject)})
				cert, rec := s.issued(t, a)
				if !bytes.Equal(cert.RawSubject, a.csr.RawSubject) || rec.Subject != a.csr.Subject.String() {
					t.Fatalf("subject %q, want the CSR's %q", cert.Subject, a.csr.Subject)
				}
			})
		}
	})

	t.Run("subject alternative names", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			emails []string
			upns   []string
		}{
			{"email", []string{"alice@contoso.example"}, nil},
			{"UPN", nil, []string{"alice@contoso.onmicrosoft.example"}},
			{"email and UPN", []string{"alice@contoso.example"}, []string{"alice@contoso.onmicrosoft.example"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				subject := pkix.Name{CommonName: "alice"}
				a := s.enroll(t, testca.CSROptions{Subject: subject, Emails: tc.emails, UPNs: tc.upns},
					intunefake.Challenge{Subject: subject.String(), Emails: tc.emails, UPNs: tc.upns})
				cert, _ := s.issued(t, a)
				_, upns := sanNames(t, cert)
				if !slices.Equal(cert.EmailAddresses, tc.emails) || !slices.Equal(upns, tc.upns) {
					t.Fatalf("certificate emails %v UPNs %v, want %v %v", cert.EmailAddresses, upns, tc.emails, tc.upns)
				}
			})
		}
	})

	t.Run("key usage", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			ku   x509.KeyUsage
		}{
			{"digital signature", x509.KeyUsageDigitalSignature},
			{"key encipherment", x509.KeyUsageKeyEncipherment},
			{"both", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		} {
			t.Run(tc.name, func(t *testing.T) {
				subject := pkix.Name{CommonName: "ku-device"}
				a := s.enroll(t, testca.CSROptions{Subject: subject, KeyUsage: tc.ku}, intunefake.Challenge{KeyUsage: tc.ku})
				cert, _ := s.issued(t, a)
				if cert.KeyUsage != tc.ku {
					t.Fatalf("key usage %#x, want %#x", cert.KeyUsage, tc.ku)
				}
			})
		}
	})

	t.Run("key size", func(t *testing.T) {
		subject := pkix.Name{CommonName: "rsa2048-device"}
		a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{KeySize: 2048})
		cert, _ := s.issued(t, a)
		if n := cert.PublicKey.(*rsa.PublicKey).N.BitLen(); n != 2048 {
			t.Fatalf("certificate key %d bits", n)
		}
		// A 1024-bit key (the matrix's other size) is below every profile's floor: refused before Intune.
		weak := s.enrollWithKey(t, testca.RSAKey(t, nextDeviceKey(t)), testca.WeakRSAKey(t),
			testca.CSROptions{Subject: pkix.Name{CommonName: "rsa1024-device"}}, intunefake.Challenge{KeySize: 1024})
		s.refusedLocally(t, weak, testca.FailBadRequest)
	})

	t.Run("hash algorithm", func(t *testing.T) {
		a := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "sha256-device"}}, intunefake.Challenge{})
		if a.csr.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Fatalf("CSR signed with %v", a.csr.SignatureAlgorithm)
		}
		s.issued(t, a)
		// SHA-1 CSR signatures are refused by the CA's allow-list (SPEC §4.2): badAlg, Intune never asked.
		sha1CSR := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "sha1-device"}, SHA1: true}, intunefake.Challenge{})
		s.refusedLocally(t, sha1CSR, testca.FailBadAlg)
	})

	t.Run("extended key usage", func(t *testing.T) {
		a := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "eku-device"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			intunefake.Challenge{ExtKeyUsages: []string{"clientAuth"}})
		cert, _ := s.issued(t, a)
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(cert.UnknownExtKeyUsage) != 0 {
			t.Fatalf("EKUs %v %v, want clientAuth", cert.ExtKeyUsage, cert.UnknownExtKeyUsage)
		}
		// IPsec Tunnel is outside the intune profile (which allows clientAuth only): a CSR may narrow EKUs,
		// never widen them, so the request is refused before Intune is asked.
		ipsec := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37},
			Value: mustASN1(t, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 6}})}
		wide := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "ipsec-device"}, ExtraExtensions: []pkix.Extension{ipsec}},
			intunefake.Challenge{ExtKeyUsages: []string{"ipsecTunnel"}})
		s.refusedLocally(t, wide, testca.FailBadRequest)
	})

	t.Run("strong mapping SID and device ID", func(t *testing.T) {
		const sid = "S-1-5-21-1004336348-1177238915-682003330-512"
		deviceID := uuid.NewString()
		sidURI := testca.IntuneSIDURI(sid)
		devURI := &url.URL{Scheme: "IntuneDeviceId", Host: deviceID}
		subject := pkix.Name{CommonName: deviceID}
		o := testca.CSROptions{Subject: subject, URIs: []*url.URL{sidURI, devURI}, UPNs: []string{"bob@contoso.onmicrosoft.example"}}
		// Intune compares URIs as Go parses them back (the scheme lower-cased).
		var expect []string
		for _, u := range []string{sidURI.String(), devURI.String()} {
			p, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			expect = append(expect, p.String())
		}
		a := s.enroll(t, o, intunefake.Challenge{Subject: subject.String(), URIs: expect, UPNs: o.UPNs})
		cert, rec := s.issued(t, a)
		uris, upns := sanNames(t, cert)
		want := []string{"tag:microsoft.com,2022-09-14:sid:" + sid, "IntuneDeviceId://" + deviceID}
		if !slices.Equal(uris, want) || !slices.Equal(upns, o.UPNs) {
			t.Fatalf("certificate URIs %q UPNs %q, want %q %q exactly as requested", uris, upns, want, o.UPNs)
		}
		if rec.DeviceID != deviceID {
			t.Fatalf("record device ID %q, want %q", rec.DeviceID, deviceID)
		}
	})
}

// parsedSubject is a subject as Intune (and Go) render it after parsing the CSR: attributes outside Go's named set
// (emailAddress) appear as dotted OIDs with their DER value.
func parsedSubject(t *testing.T, n pkix.Name) string {
	t.Helper()
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(mustASN1(t, n.ToRDNSequence()), &rdns); err != nil {
		t.Fatal(err)
	}
	var parsed pkix.Name
	parsed.FillFromRDNSequence(&rdns)
	return parsed.String()
}

func mustASN1(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIntuneRenewalAndValidity covers scenarios 1 and 8: a short-validity profile is honoured, and a device
// renews inside the renewal window with a RenewalReq signed by its current certificate; Intune validates the
// renewal and is told about the new certificate.
func TestIntuneRenewalAndValidity(t *testing.T) {
	s := startIntune(t, intuneSetup{env: []string{
		"AZSCEP_PROFILE_SHORT=validity=2h;ku=digitalSignature,keyEncipherment;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid",
		"AZSCEP_SCEP_INTUNE=profile=short;renewal=3h"}})
	subject := pkix.Name{CommonName: "renewing-device"}
	first := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{Subject: subject.String()})
	old, oldRec := s.issued(t, first)
	// notAfter is inclusive (RFC 5280 §4.1.2.5): the profile's 2 h, back-dating included, end one second early.
	if v := old.NotAfter.Sub(old.NotBefore); v != 2*time.Hour-time.Second {
		t.Fatalf("validity %s, want the profile's 2h, back-date included", v)
	}

	newKey := testca.RSAKey(t, nextDeviceKey(t))
	o := testca.CSROptions{Subject: subject}
	s.register(t, &o, intunefake.Challenge{Subject: subject.String()})
	csr := testca.CSR(t, newKey, o)
	client := testca.NewClient(t, newKey, subject, s.ra)
	req := client.RenewalReq(t, csr, old, first.key)
	renewal := &attempt{exchange: post(t, s.scepURL("intune"), req), csr: csr, password: o.ChallengePassword, key: newKey}
	renewed, rec := s.issued(t, renewal)
	if rec.Serial == oldRec.Serial || !bytes.Equal(renewed.RawSubject, old.RawSubject) {
		t.Fatal("the renewal did not issue a new certificate for the same subject")
	}
	if issued := s.fake.IssuedCertificates(); len(issued) != 2 || issued[1].Thumbprint != thumbprint(renewed) {
		t.Fatalf("Intune was told about %d certificates, want the original and the renewal", len(issued))
	}
}

// TestIntuneFailClosed covers scenarios 9–11: whatever goes wrong on the Intune side, the device gets no
// certificate — a FAILURE for Intune's verdict, 503 when Intune did not answer — and a certificate signed before a
// refused success notification is recorded but withheld. (successNotification answering 500 is
// TestIntuneNotificationOutage: withheld as well, and the device's retry is issued afresh.)
func TestIntuneFailClosed(t *testing.T) {
	s := startIntune(t, intuneSetup{})
	subject := pkix.Name{CommonName: "fail-closed-device"}

	t.Run("expired challenge", func(t *testing.T) {
		a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{ExpiresAt: time.Now().Add(-time.Minute)})
		s.rejectedByIntune(t, a, "ChallengeExpired")
		line := s.findLog(t, a.txID(), "validateRequest")
		if line["code"] != "ChallengeExpired" {
			t.Fatalf("the refusal is not logged with its code: %v", line)
		}
	})
	t.Run("unknown challenge", func(t *testing.T) {
		// The device presents a password Intune never issued.
		key := testca.RSAKey(t, nextDeviceKey(t))
		a := s.send(t, key, key, testca.CSROptions{Subject: subject, ChallengePassword: newPassword()})
		s.rejectedByIntune(t, a, "ChallengeDecryptionError")
	})
	t.Run("subject mismatch", func(t *testing.T) {
		a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{Subject: "CN=another-device"})
		s.rejectedByIntune(t, a, "SubjectNameMismatch")
	})
	t.Run("validateRequest answers 500", func(t *testing.T) {
		s.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: http.StatusInternalServerError,
			Body: `{"error":{"code":"InternalServerError","message":"boom"}}`})
		defer s.fake.ClearFaults()
		a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{})
		// Intune did not decide: no certificate, and 503 for the device to retry rather than a FAILURE.
		s.undecided(t, a, "30")
	})
	t.Run("successNotification refused", func(t *testing.T) {
		s.fake.InjectFault(intunefake.RouteSuccess, intunefake.Fault{Status: http.StatusOK,
			Body: `{"code":"ChallengeDecryptionError","errorDescription":"challenge could not be decrypted"}`})
		a := s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{})
		a.mustFail(t, s.ra, testca.FailBadRequest)
		s.fake.ClearFaults()

		rec := recordFor(t, s.store, "intune", a.txID())
		if rec.Status != store.StatusIssued || !rec.Withheld || rec.GateUndecided || rec.IntuneNotified || len(rec.CertDER) == 0 ||
			rec.IntuneSerial != rec.Serial || rec.CAConfiguration != intune.CAConfiguration(s.ca) {
			t.Fatalf("record: status %s withheld %t notified %t intuneSerial %q caConfiguration %q, want issued, withheld, not notified",
				rec.Status, rec.Withheld, rec.IntuneNotified, rec.IntuneSerial, rec.CAConfiguration)
		}
		signed, err := x509.ParseCertificate(rec.CertDER)
		if err != nil {
			t.Fatal(err)
		}
		notes := s.calls(t, intunefake.RouteSuccess, a.txID())
		if len(notes) == 0 || body(t, notes[0])["certificateThumbprint"] != thumbprint(signed) {
			t.Fatal("the refused notification did not describe the withheld certificate")
		}
		if n := len(s.calls(t, intunefake.RouteFailure, a.txID())); n != 0 {
			t.Fatalf("%d failure notifications after a failed success notification (§6.3 says none)", n)
		}
		for _, i := range s.fake.IssuedCertificates() {
			if i.TransactionID == a.txID() {
				t.Fatal("Intune recorded the withheld certificate")
			}
		}

		// The device retries the same transaction, then asks for the certificate by serial: nothing, and Intune
		// is not called again.
		s.fake.ResetJournal()
		post(t, s.scepURL("intune"), a.req).mustFail(t, s.ra, testca.FailBadRequest)
		client := &testca.Client{Key: a.key, Cert: a.req.SignerCert, Recipients: []*x509.Certificate{s.ra}}
		post(t, s.scepURL("intune"), client.GetCert(t, s.ca, signed.SerialNumber)).mustFail(t, s.ra, testca.FailBadCertID)
		if n := len(s.fake.Journal()); n != 0 {
			t.Fatalf("the retries made %d Intune calls", n)
		}
	})
}

// TestHealthNamesIntuneRefusal: while Intune refuses the managed identity (scep_challenge_provider not granted, or
// not in its token yet), every Intune enrollment fails and /api/health says why, naming the permission and the
// script; the first enrollment Intune answers clears it.
func TestHealthNamesIntuneRefusal(t *testing.T) {
	s := startIntune(t, intuneSetup{})
	subject := pkix.Name{CommonName: "refused-device"}
	health := func() (int, string) { return getHealth(t, s.base) }
	if code, body := health(); code != http.StatusOK {
		t.Fatalf("/api/health before any enrollment = %d %s", code, body)
	}
	s.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: http.StatusForbidden,
		Body: `{"error":{"code":"Forbidden","message":"the application lacks the required role"}}`})
	// Our identity refused is no fault of the device's: 503, retried until the operator fixes it.
	s.undecided(t, s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{}), "")
	if code, body := health(); code != http.StatusServiceUnavailable || !strings.Contains(body, `"intune":{"status":"refused"`) ||
		!strings.Contains(body, "validateRequest (403 since") || !strings.Contains(body, "scep_challenge_provider") ||
		!strings.Contains(body, "grant-intune.sh") {
		t.Fatalf("/api/health while Intune refuses = %d %s", code, body)
	}
	s.fake.ClearFaults()
	s.enroll(t, testca.CSROptions{Subject: subject}, intunefake.Challenge{}).mustSucceed(t, s.ra)
	if code, body := health(); code != http.StatusOK || strings.Contains(body, "intune") {
		t.Fatalf("/api/health once Intune answers = %d %s", code, body)
	}
}

// findLog returns the log line of an Intune operation for a transaction.
func (s *intuneService) findLog(t *testing.T, txID, operation string) map[string]any {
	t.Helper()
	for _, l := range s.logLines(t) {
		if l["transactionId"] == txID && l["operation"] == operation && l["clientRequestId"] != nil && l["duration"] != nil {
			return l
		}
	}
	t.Fatalf("no %s log line for transaction %s", operation, txID)
	return nil
}

// TestIntuneTokenFailure is scenario 12: the service cannot authenticate to Entra (a wrong client secret, 401
// from the token endpoint). Fail closed: no validation, no certificate (the matrix text says the opposite; that
// contradicts the libraries and the docs, intune-protocol.md §10); and 503, since the device did nothing wrong.
func TestIntuneTokenFailure(t *testing.T) {
	const wrong = "not-the-registered-secret"
	s := startIntune(t, intuneSetup{secret: wrong})
	a := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "token-failure-device"}}, intunefake.Challenge{})
	s.undecided(t, a, "30")
	tokens := s.fake.Requests(intunefake.RouteToken)
	if len(tokens) == 0 {
		t.Fatal("no token request reached Entra")
	}
	for _, e := range tokens {
		if e.Status != http.StatusUnauthorized {
			t.Fatalf("token request answered %d, want 401", e.Status)
		}
	}
	for _, r := range []intunefake.Route{intunefake.RouteValidate, intunefake.RouteSuccess, intunefake.RouteFailure} {
		if n := s.fake.Count(r); n != 0 {
			t.Fatalf("%d %s calls without a token", n, r)
		}
	}
	noRecordFor(t, s.store, "intune", a.txID())
	if text := s.logText(); strings.Contains(text, wrong) || strings.Contains(text, a.password) {
		t.Fatal("the log contains the client secret or the challenge")
	}
}

// TestIntuneFailureAfterValidation: when issuance fails after Intune validated the request, Intune gets a
// failureNotification with an HRESULT naming the cause (§6.3), and the device no certificate.
func TestIntuneFailureAfterValidation(t *testing.T) {
	checkFailure := func(t *testing.T, s *intuneService, a *attempt, hresult uint32) {
		t.Helper()
		if len(s.calls(t, intunefake.RouteValidate, a.txID())) != 1 || len(s.calls(t, intunefake.RouteSuccess, a.txID())) != 0 {
			t.Fatal("want one validation and no success notification")
		}
		fails := s.calls(t, intunefake.RouteFailure, a.txID())
		if len(fails) != 1 {
			t.Fatalf("%d failure notifications, want 1", len(fails))
		}
		checkHeaders(t, fails[0])
		b := body(t, fails[0])
		desc, _ := b["errorDescription"].(string)
		if b["hResult"] != json.Number(fmt.Sprint(hresult)) || b["certificateRequest"] != base64.StdEncoding.EncodeToString(a.csr.Raw) ||
			desc == "" || len([]rune(desc)) > intune.MaxErrorDescription {
			t.Fatalf("failureNotification %v, want hResult %#x with the CSR and a description", b, hresult)
		}
		if strings.Contains(desc, a.password) {
			t.Fatal("the failure description contains the challenge")
		}
	}

	t.Run("store unavailable", func(t *testing.T) {
		var fs *storetest.FaultStore
		s := startIntune(t, intuneSetup{wrap: func(st store.Store) store.Store {
			fs = storetest.NewFaultStore(st)
			return fs
		}})
		fs.FailMethod(storetest.MethodInsertBound, nil)
		a := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "store-failure-device"}}, intunefake.Challenge{})
		if a.resp.StatusCode != http.StatusServiceUnavailable || a.resp.Header.Get("Retry-After") == "" {
			t.Fatalf("enrollment with the store down = %d Retry-After %q, want 503", a.resp.StatusCode, a.resp.Header.Get("Retry-After"))
		}
		checkFailure(t, s, a, intune.HResultStorageFailed)
		fs.Clear()
		noRecordFor(t, s.store, "intune", a.txID())
	})

	t.Run("Key Vault refuses the signature", func(t *testing.T) {
		caKey, _, _ := vaultKeys(t)
		v := newVaultCA(t, caKey, "", nil)
		f := newIntuneFake(t, intunefake.Options{})
		env := append(v.env(), intuneEnv(f, "")...)
		opts := v.opts()
		opts.httpClient = f.Client()
		s := attachIntune(t, startServe(t, env, opts), f, v.store)
		v.kv.Fail(kvfake.OpSign, -1, http.StatusForbidden)
		a := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "kv-failure-device"}}, intunefake.Challenge{})
		// The identity refused (a role removed or still spreading) is no fault of the device's: 503, retry later.
		if a.resp.StatusCode != http.StatusServiceUnavailable || a.resp.Header.Get("Retry-After") == "" {
			t.Fatalf("enrollment with Key Vault refusing = %d Retry-After %q, want 503", a.resp.StatusCode, a.resp.Header.Get("Retry-After"))
		}
		checkFailure(t, s, a, intune.HResultSigningFailed)
		if rec := recordFor(t, s.store, "intune", a.txID()); rec.Status != store.StatusAbandoned || len(rec.CertDER) != 0 {
			t.Fatalf("record %s, want abandoned without a certificate", rec.Status)
		}

		// Once the vault signs again, a new request of the same device enrolls, with one Key Vault operation.
		v.kv.ClearFaults()
		v.kv.Reset()
		s.fake.ResetJournal()
		ok := s.enroll(t, testca.CSROptions{Subject: pkix.Name{CommonName: "kv-recovered-device"}}, intunefake.Challenge{})
		s.issued(t, ok)
		wantKV(t, v.kv, "Intune enrollment", map[string]int{kvfake.OpSign: 1})
	})
}
