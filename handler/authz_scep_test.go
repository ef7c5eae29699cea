package main

// Issuance authorization at the SCEP doors (issue 11, points 1, 4, 7 and 9) through the real handler: serve in
// azure mode with the CA key in the Key Vault fake (which counts every operation, so "no signature" and "no Key
// Vault operation" are measured, not inferred), the records in Table Storage on Azurite, /api/csr against the
// Entra fake, and a settable clock for issuance and SCEP.

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// authzService is the handler in azure mode with /api/csr enabled and a settable clock.
type authzService struct {
	*running
	kv    *kvfake.Server
	store store.Store
	entra *apiTenant
	clock *testca.Clock
	ra    *x509.Certificate // what clients encrypt to and what signs CertReps
}

// startAuthz starts the service with the clock at start; raMode "" is the RA envelope mode, "ca" the CA-decrypt
// mode. extra settings win over the defaults.
func startAuthz(t *testing.T, start time.Time, raMode string, extra ...string) *authzService {
	t.Helper()
	caKey, _, _ := vaultKeys(t)
	st, _ := azuriteStore(t)
	v := newVaultCA(t, caKey, raMode, st)
	ent := newAPITenant(t, entrafake.WithOptionalClaims("idtyp", "upn", "acct")) // as create-api-app.sh registers it
	clock := testca.NewClock(start)
	env := v.env(append(ent.env(), extra...)...)
	opts := v.opts()
	opts.clock, opts.graphCredential = clock, ent.graphCredential()
	svc := startServe(t, env, opts)
	certs, _ := getCACert(t, svc.scepURL("static"))
	a := &authzService{running: svc, kv: v.kv, store: st, entra: ent, clock: clock, ra: recipients(t, certs)[0]}
	v.kv.Reset()
	return a
}

// client is a SCEP requester signing with cert (nil: a self-signed certificate for key).
func (a *authzService) client(t *testing.T, key *rsa.PrivateKey, cert *x509.Certificate) *testca.Client {
	t.Helper()
	if cert == nil {
		return testca.NewClient(t, key, pkix.Name{CommonName: "scep-client"}, a.ra)
	}
	return &testca.Client{Key: key, Cert: cert, Recipients: []*x509.Certificate{a.ra}}
}

// enroll sends a PKCSReq with the static challenge for o's names to endpoint and returns the exchange.
func (a *authzService) enroll(t *testing.T, endpoint string, key *rsa.PrivateKey, o testca.CSROptions) *exchange {
	t.Helper()
	o.ChallengePassword = kvStaticSecret
	return post(t, a.scepURL(endpoint), a.client(t, key, nil).PKCSReq(t, testca.CSR(t, key, o)))
}

// renew sends a RenewalReq for newKey and o's names to endpoint, signed with old and its key.
func (a *authzService) renew(t *testing.T, endpoint string, old *x509.Certificate, oldKey, newKey *rsa.PrivateKey, o testca.CSROptions) *exchange {
	t.Helper()
	return post(t, a.scepURL(endpoint), a.client(t, oldKey, old).RenewalReq(t, testca.CSR(t, newKey, o), old, oldKey))
}

// selfService gets a CSR.SelfService certificate for upn from /api/csr, for key.
func (a *authzService) selfService(t *testing.T, upn string, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tok := a.entra.MintUser(entrafake.NewGUID(), upn, []string{entra.RoleCSRSelfService})
	csr := testca.CSR(t, key, testca.CSROptions{Subject: pkix.Name{CommonName: upn}, UPNs: []string{upn}})
	req, err := http.NewRequest(http.MethodPost, a.base+"/api/csr", bytes.NewReader(csr.Raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/pkcs10")
	req.Header.Set("Accept", "application/pkix-cert")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, body := testca.Do(t, http.DefaultClient, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/csr self-service = %d %s", resp.StatusCode, body)
	}
	cert, err := x509.ParseCertificate(body)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// revoke revokes c for keyCompromise through the admin API, as an admin signed in to the console (whose client is
// the API's own app registration).
func (a *authzService) revoke(t *testing.T, c *x509.Certificate) {
	t.Helper()
	a.revokeFor(t, c, "keyCompromise")
}

// revokeFor revokes c through the admin API for reason.
func (a *authzService) revokeFor(t *testing.T, c *x509.Certificate, reason string) {
	t.Helper()
	tok := a.entra.MintUser(entrafake.NewGUID(), "admin@contoso.example", []string{entra.RoleCertificatesManage},
		entrafake.WithClaim("azp", a.entra.ClientID))
	req, err := http.NewRequest(http.MethodPost, a.base+"/api/certificates/"+store.SerialString(c.SerialNumber)+"/revoke",
		strings.NewReader(`{"reason":"`+reason+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if resp, body := testca.Do(t, http.DefaultClient, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d %s", resp.StatusCode, body)
	}
}

// record reads the record of c.
func (a *authzService) record(t *testing.T, c *x509.Certificate) *store.Record {
	t.Helper()
	rec, err := a.store.Get(context.Background(), store.SerialString(c.SerialNumber))
	if err != nil {
		t.Fatalf("record of %X: %v", c.SerialNumber, err)
	}
	return rec
}

// records counts every record in the store.
func (a *authzService) records(t *testing.T) int {
	t.Helper()
	return len(testca.AllRecords(t, a.store, store.Query{Limit: 100}))
}

// signs is how many CA signatures the vault made since the last call, which resets the counters.
func (a *authzService) signs() int {
	n := a.kv.Count(kvfake.OpSign)
	a.kv.Reset()
	return n
}

// wideProfile allows every SAN type, so that the renewal checks, not the profile, are what refuses a name.
const wideProfile = "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid"

// TestRenewalAttackSelfServiceCertificateOnStatic is issue 11's attack: a user holding a CSR.SelfService
// certificate from /api/csr sends the static endpoint a RenewalReq with the same subject plus an administrator's
// UPN, a domain controller's DNS name and an Entra SID URI. She gets FAILURE, no record is written and the CA key
// signs nothing; the same certificate cannot be renewed there even with its own names.
func TestRenewalAttackSelfServiceCertificateOnStatic(t *testing.T) {
	a := startAuthz(t, time.Now(), "", "AZSCEP_PROFILE_WIDE="+wideProfile, "AZSCEP_SCEP_STATIC=profile=wide;renewal=400d")
	const upn = "adele@contoso.example"
	key := testca.RSAKey(t, nextDeviceKey(t))
	own := a.selfService(t, upn, key)
	if rec := a.record(t, own); rec.Source != store.SourceAPI || a.signs() != 1 {
		t.Fatalf("self-service certificate: source %s", rec.Source)
	}

	widened := testca.CSROptions{Subject: pkix.Name{CommonName: upn}, UPNs: []string{upn, "administrator@contoso.example"},
		DNSNames: []string{"dc01.contoso.example"}, URIs: []*url.URL{testca.IntuneSIDURI("S-1-5-21-1004336348-1177238915-682003330-500")}}
	same := testca.CSROptions{Subject: pkix.Name{CommonName: upn}, UPNs: []string{upn}}
	for name, o := range map[string]testca.CSROptions{"added names": widened, "its own names": same} {
		x := a.renew(t, "static", own, key, testca.RSAKey(t, nextDeviceKey(t)), o)
		x.mustFail(t, a.ra, testca.FailBadRequest)
		noRecordFor(t, a.store, "static", x.req.TransactionID)
		if n := a.signs(); n != 0 {
			t.Fatalf("%s: %d CA signatures for a refused renewal", name, n)
		}
	}
	if n := a.records(t); n != 1 {
		t.Fatalf("%d records, want only the self-service certificate's", n)
	}
	if !strings.Contains(a.logText(), "does not renew certificates issued by api/api") {
		t.Errorf("the refusal's reason is not logged:\n%s", a.logText())
	}
}

// TestRenewalOnStaticEndpoint: a static certificate is renewed on its endpoint with the same names (SUCCESS,
// renewed_from set, the original requester and chain start kept) or fewer (SUCCESS); added names and renewals past
// the chain's maximum get FAILURE with no record and no signature; the chain's certificates end by its maximum.
func TestRenewalOnStaticEndpoint(t *testing.T) {
	// Every certificate below must be valid at the real time too: the client's pkcs7 library puts the real time
	// in signingTime and the server checks it against the signer certificate. So the clock starts 36 hours back
	// and the chain may last 2 days.
	start := time.Now().Add(-36 * time.Hour)
	a := startAuthz(t, start, "", "AZSCEP_PROFILE_SHORT=validity=10d;ku=digitalSignature;eku=clientAuth;dns=*",
		"AZSCEP_SCEP_STATIC=profile=short;renewal=400d;renewal_max=2d")
	names := testca.CSROptions{Subject: pkix.Name{CommonName: "router-9"},
		DNSNames: []string{"router-9.corp.example", "router-9-mgmt.corp.example"}}
	key1 := testca.RSAKey(t, nextDeviceKey(t))
	first := a.enroll(t, "static", key1, names).mustSucceed(t, a.ra)
	rec1 := a.record(t, first)
	a.signs()

	a.clock.Advance(24 * time.Hour)
	widened := names
	widened.DNSNames = append(append([]string(nil), names.DNSNames...), "dc01.corp.example")
	x := a.renew(t, "static", first, key1, testca.RSAKey(t, nextDeviceKey(t)), widened)
	x.mustFail(t, a.ra, testca.FailBadRequest)
	noRecordFor(t, a.store, "static", x.req.TransactionID)
	if n := a.signs(); n != 0 {
		t.Fatalf("%d CA signatures for a renewal with an added name", n)
	}

	key2 := testca.RSAKey(t, nextDeviceKey(t))
	second := a.renew(t, "static", first, key1, key2, names).mustSucceed(t, a.ra)
	rec2 := a.record(t, second)
	if rec2.RenewedFrom != rec1.Serial || rec2.Requester != rec1.Requester || rec2.Requester != "scep:static" ||
		!rec2.ChainStarted.Equal(rec1.Created) || rec2.Endpoint != "static" {
		t.Fatalf("renewal record: renewed_from %q requester %q chain_started %v endpoint %s; want %q scep:static %v static",
			rec2.RenewedFrom, rec2.Requester, rec2.ChainStarted, rec2.Endpoint, rec1.Serial, rec1.Created)
	}
	if end := rec1.Created.Add(48 * time.Hour); second.NotAfter.After(end) {
		t.Fatalf("renewed certificate ends %v, after the chain's end %v", second.NotAfter, end)
	}
	if n := a.signs(); n != 1 {
		t.Fatalf("%d CA signatures for a renewal, want 1", n)
	}

	subset := testca.CSROptions{Subject: names.Subject, DNSNames: names.DNSNames[:1]}
	third := a.renew(t, "static", second, key2, testca.RSAKey(t, nextDeviceKey(t)), subset).mustSucceed(t, a.ra)
	if rec3 := a.record(t, third); rec3.RenewedFrom != rec2.Serial || !rec3.ChainStarted.Equal(rec1.Created) ||
		len(rec3.SANs) != 1 {
		t.Fatalf("subset renewal record: renewed_from %q chain_started %v names %v", rec3.RenewedFrom, rec3.ChainStarted, rec3.SANs)
	}
	a.signs()

	// Past the chain's maximum: the first certificate is still valid (10 days), the chain (2 days) is not.
	a.clock.Set(start.Add(49 * time.Hour))
	x = a.renew(t, "static", first, key1, testca.RSAKey(t, nextDeviceKey(t)), names)
	x.mustFail(t, a.ra, testca.FailBadRequest)
	noRecordFor(t, a.store, "static", x.req.TransactionID)
	if n := a.signs(); n != 0 {
		t.Fatalf("%d CA signatures for a renewal past the chain's maximum", n)
	}
	if !strings.Contains(a.logText(), "renewal chain started") {
		t.Error("the chain refusal is not logged")
	}
}

// TestReplayWindow: a repeated PKCSReq (same transaction ID and key) gets the stored certificate only within the
// replay window and while it is valid and unrevoked; otherwise it is a new enrollment, with a new certificate
// (not FAILURE) and the transaction bound to it.
func TestReplayWindow(t *testing.T) {
	a := startAuthz(t, time.Now(), "", "AZSCEP_SCEP_ENDPOINTS=static,short", "AZSCEP_SCEP_SHORT=profile=brief",
		"AZSCEP_SCEP_SHORT_SECRET="+kvStaticSecret,
		"AZSCEP_PROFILE_BRIEF=validity=12h;ku=digitalSignature;eku=clientAuth;dns=*")
	key := testca.RSAKey(t, nextDeviceKey(t))
	x := a.enroll(t, "static", key, testca.CSROptions{Subject: pkix.Name{CommonName: "replayed-device"}})
	cert1 := x.mustSucceed(t, a.ra)
	a.signs()
	bound := func(want *x509.Certificate) {
		t.Helper()
		if rec := recordFor(t, a.store, "static", x.req.TransactionID); rec.Serial != store.SerialString(want.SerialNumber) {
			t.Fatalf("the transaction is bound to %s, want %X", rec.Serial, want.SerialNumber)
		}
	}

	a.clock.Advance(23 * time.Hour)
	if got := post(t, a.scepURL("static"), x.req).mustSucceed(t, a.ra); !got.Equal(cert1) || a.signs() != 0 {
		t.Fatal("a replay inside the window did not return the stored certificate without a signature")
	}

	a.clock.Advance(2 * time.Hour) // 25 h: past the 24 h window
	cert2 := post(t, a.scepURL("static"), x.req).mustSucceed(t, a.ra)
	if cert2.Equal(cert1) || a.signs() != 1 {
		t.Fatal("a replay after the window did not get a new certificate")
	}
	bound(cert2)
	if got := post(t, a.scepURL("static"), x.req).mustSucceed(t, a.ra); !got.Equal(cert2) || a.signs() != 0 {
		t.Fatal("the new certificate is not what the next replay returns")
	}

	a.revokeFor(t, cert2, "superseded")
	cert3 := post(t, a.scepURL("static"), x.req).mustSucceed(t, a.ra)
	if cert3.Equal(cert2) || a.signs() != 1 {
		t.Fatal("a replay of a revoked certificate did not get a new certificate")
	}
	bound(cert3)
	// Revoked for keyCompromise, the key gets nothing new: the replay is refused, not re-issued.
	a.revoke(t, cert3)
	post(t, a.scepURL("static"), x.req).mustFail(t, a.ra, testca.FailBadRequest)
	if a.signs() != 0 {
		t.Fatal("a compromised key's replay was signed")
	}

	// Expired inside the window: the endpoint's certificates last 12 hours, the window 24.
	sx := a.enroll(t, "short", testca.RSAKey(t, nextDeviceKey(t)), testca.CSROptions{Subject: pkix.Name{CommonName: "brief-device"}})
	short1 := sx.mustSucceed(t, a.ra)
	a.clock.Advance(13 * time.Hour)
	if short2 := post(t, a.scepURL("short"), sx.req).mustSucceed(t, a.ra); short2.Equal(short1) {
		t.Fatal("a replay of an expired certificate returned it")
	}
}

// TestGetCertOnlyForHolders: GetCert answers the certificate's key holder and holders of a valid certificate of
// ours for the same subject; strangers, holders of other subjects and of revoked certificates get badCertID.
func TestGetCertOnlyForHolders(t *testing.T) {
	a := startAuthz(t, time.Now(), "")
	subject := testca.CSROptions{Subject: pkix.Name{CommonName: "printer-1"}, DNSNames: []string{"printer-1.corp.example"}}
	key1, key2, key3 := testca.RSAKey(t, nextDeviceKey(t)), testca.RSAKey(t, nextDeviceKey(t)), testca.RSAKey(t, nextDeviceKey(t))
	target := a.enroll(t, "static", key1, subject).mustSucceed(t, a.ra)
	sibling := a.enroll(t, "static", key2, subject).mustSucceed(t, a.ra)
	other := a.enroll(t, "static", key3, testca.CSROptions{Subject: pkix.Name{CommonName: "someone-else"}}).mustSucceed(t, a.ra)
	a.signs()
	issuer := func() *x509.Certificate {
		certs, _ := getCACert(t, a.scepURL("static"))
		for _, c := range certs {
			if c.IsCA {
				return c
			}
		}
		t.Fatal("no CA certificate")
		return nil
	}()
	getCert := func(c *testca.Client) *testca.CertRep {
		t.Helper()
		return post(t, a.scepURL("static"), c.GetCert(t, issuer, target.SerialNumber)).certRep(t, a.ra)
	}
	ok := map[string]*testca.Client{
		"the key's holder (self-signed)":        a.client(t, key1, nil),
		"a holder of the subject's certificate": a.client(t, key2, sibling),
	}
	for name, c := range ok {
		if rep := getCert(c); rep.Status != testca.StatusSuccess || !rep.Certificate().Equal(target) {
			t.Fatalf("%s: status %s failInfo %q, want the certificate", name, rep.Status, rep.FailInfo)
		}
	}
	refused := map[string]*testca.Client{
		"a stranger": a.client(t, testca.RSAKey(t, nextDeviceKey(t)), nil),
		"a holder of another subject's certificate": a.client(t, key3, other),
	}
	for name, c := range refused {
		if rep := getCert(c); rep.Status != testca.StatusFailure || rep.FailInfo != testca.FailBadCertID || len(rep.Certificates) != 0 {
			t.Fatalf("%s: status %s failInfo %q, want FAILURE badCertID", name, rep.Status, rep.FailInfo)
		}
	}
	a.revoke(t, sibling)
	if rep := getCert(a.client(t, key2, sibling)); rep.Status != testca.StatusFailure || rep.FailInfo != testca.FailBadCertID {
		t.Fatalf("holder of a revoked certificate: status %s failInfo %q, want FAILURE badCertID", rep.Status, rep.FailInfo)
	}
	if n := a.signs(); n != 0 {
		t.Fatalf("GetCert made %d CA signatures", n)
	}
}

// postFrom sends a PKIOperation as the Functions host forwards it for a client at xff.
func postFrom(t *testing.T, scepURL, xff string, raw []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, scepURL+"?operation=PKIOperation", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-pki-message")
	req.Header.Set("X-Forwarded-For", xff)
	resp, _ := testca.Do(t, http.DefaultClient, req)
	return resp
}

// TestSCEPRateLimits: per-client and global token buckets refuse PKIOperations (429 and 503, with Retry-After)
// before any Key Vault operation; a client is the last X-Forwarded-For entry, whatever it put before it.
func TestSCEPRateLimits(t *testing.T) {
	a := startAuthz(t, time.Now(), "", "AZSCEP_SCEP_RATE_PER_CLIENT=2/1m", "AZSCEP_SCEP_RATE_GLOBAL=3/1m")
	request := func(cn string) []byte {
		key := testca.RSAKey(t, nextDeviceKey(t))
		return a.client(t, key, nil).PKCSReq(t, testca.CSR(t, key, testca.CSROptions{Subject: pkix.Name{CommonName: cn},
			ChallengePassword: kvStaticSecret})).Raw
	}
	want := func(resp *http.Response, status int, retryAfter string, signs int) {
		t.Helper()
		if resp.StatusCode != status || resp.Header.Get("Retry-After") != retryAfter {
			t.Fatalf("HTTP %d Retry-After %q, want %d %q", resp.StatusCode, resp.Header.Get("Retry-After"), status, retryAfter)
		}
		if n := a.kv.Total(); n != signs || a.kv.Count(kvfake.OpSign) != signs {
			t.Fatalf("Key Vault operations %v, want %d signatures and nothing else", kvCounts(a.kv), signs)
		}
		a.kv.Reset()
	}
	const alice, bob = "198.51.100.7:50123", "203.0.113.9:40999"
	want(postFrom(t, a.scepURL("static"), alice, request("rl-1")), http.StatusOK, "", 1)
	want(postFrom(t, a.scepURL("static"), "10.9.9.9, "+alice, request("rl-2")), http.StatusOK, "", 1) // a forged prefix changes nothing
	want(postFrom(t, a.scepURL("static"), alice, request("rl-3")), http.StatusTooManyRequests, "30", 0)
	want(postFrom(t, a.scepURL("static"), bob, request("rl-4")), http.StatusOK, "", 1)
	want(postFrom(t, a.scepURL("static"), bob, request("rl-5")), http.StatusServiceUnavailable, "20", 0)
	a.clock.Advance(30 * time.Second)
	want(postFrom(t, a.scepURL("static"), alice, request("rl-6")), http.StatusOK, "", 1)
}

// TestUnsignedMessagesCostNoKeyVaultOperation: a PKIMessage whose outer signature does not verify gets HTTP 400 and
// no CertRep, in RA mode and in CA-decrypt mode (where a CertRep would be a Key Vault signature); a signed message
// whose inner envelope is a BER nesting bomb is refused by the pre-scan before anything decrypts it.
func TestUnsignedMessagesCostNoKeyVaultOperation(t *testing.T) {
	for _, mode := range []string{"", "ca"} {
		t.Run("mode="+mode, func(t *testing.T) {
			a := startAuthz(t, time.Now(), mode)
			key := testca.RSAKey(t, nextDeviceKey(t))
			c := a.client(t, key, nil)
			csr := testca.CSR(t, key, testca.CSROptions{Subject: pkix.Name{CommonName: "forged"}, ChallengePassword: kvStaticSecret})
			for _, typ := range []string{testca.MsgPKCSReq, testca.MsgGetCert, "99"} {
				forged := c.Message(t, testca.Message{Type: typ, Content: csr.Raw, ForgeWith: testca.RSAKey(t, nextDeviceKey(t))})
				resp, body := testca.Post(t, a.scepURL("static"), forged.Raw)
				if resp.StatusCode != http.StatusBadRequest || strings.Contains(resp.Header.Get("Content-Type"), "pki-message") {
					t.Fatalf("forged message type %s: HTTP %d %s %q, want 400 without a CertRep", typ, resp.StatusCode,
						resp.Header.Get("Content-Type"), body)
				}
			}
			wantKV(t, a.kv, "forged messages", map[string]int{})

			bomb := append(bytes.Repeat([]byte{0x30, 0x80}, 4000), bytes.Repeat([]byte{0, 0}, 4000)...)
			x := post(t, a.scepURL("static"), c.Message(t, testca.Message{Type: testca.MsgPKCSReq, RawContent: bomb}))
			x.mustFail(t, a.ra, testca.FailBadMessageCheck)
			if a.kv.Count(kvfake.OpDecrypt) != 0 {
				t.Fatalf("the nesting bomb reached the decrypter: %v", kvCounts(a.kv))
			}
		})
	}
}

// TestRenewalOnIntuneEndpoint: a RenewalReq on the intune endpoint is still validated with Intune (validateRequest with the
// renewal's CSR and its fresh challenge, then successNotification) and links renewed_from; Intune's refusal is
// FAILURE with no record; an Intune certificate renewed on the static endpoint is FAILURE with no Intune call.
func TestRenewalOnIntuneEndpoint(t *testing.T) {
	s := startIntune(t, intuneSetup{env: []string{"AZSCEP_SCEP_INTUNE=renewal=400d", "AZSCEP_SCEP_STATIC=renewal=400d"}})
	subject := pkix.Name{CommonName: "WIN-RENEW-0001"}
	sid := testca.IntuneSIDURI("S-1-5-21-2127521184-1604012920-1887927527-4711")
	names := testca.CSROptions{Subject: subject, URIs: []*url.URL{sid}}
	ch := intunefake.Challenge{Subject: subject.String(), URIs: []string{sid.String()}}
	first := s.enroll(t, names, ch)
	oldCert, oldRec := s.issued(t, first)

	renewal := func(endpoint string, register bool) *attempt {
		t.Helper()
		o := names
		if register {
			s.register(t, &o, ch)
		} else {
			o.ChallengePassword = newPassword() // Intune never issued it
		}
		newKey := testca.RSAKey(t, nextDeviceKey(t))
		csr := testca.CSR(t, newKey, o)
		c := &testca.Client{Key: first.key, Cert: oldCert, Recipients: []*x509.Certificate{s.ra}}
		x := post(t, s.scepURL(endpoint), c.RenewalReq(t, csr, oldCert, first.key))
		return &attempt{exchange: x, csr: csr, password: o.ChallengePassword, key: newKey}
	}

	renewed := renewal("intune", true)
	_, rec := s.issued(t, renewed) // exactly one validateRequest and one successNotification, in that order
	if rec.RenewedFrom != oldRec.Serial || rec.Requester != oldRec.Requester || !rec.ChainStarted.Equal(oldRec.Created) {
		t.Fatalf("renewal record: renewed_from %q requester %q chain_started %v", rec.RenewedFrom, rec.Requester, rec.ChainStarted)
	}

	s.rejectedByIntune(t, renewal("intune", false), "")

	onStatic := renewal("static", true)
	onStatic.mustFail(t, s.ra, testca.FailBadRequest)
	noRecordFor(t, s.store, "static", onStatic.txID())
	for _, r := range []intunefake.Route{intunefake.RouteValidate, intunefake.RouteSuccess, intunefake.RouteFailure} {
		if n := len(s.calls(t, r, onStatic.txID())); n != 0 {
			t.Fatalf("%d %s calls for an Intune certificate renewed on the static endpoint", n, r)
		}
	}
}
