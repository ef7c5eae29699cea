package main

// Issuance authorization through the real handler (issue 11, points 2 and 8): which names the default static
// endpoint yields, how a profile's allow-lists and configuration refusals behave, and who /api/csr serves and binds.

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// namesService is serve in local mode (key files, Azurite) with the default `static` endpoint and /api/csr
// accepting tokens of a fake Entra tenant whose API registration requests the optional claims
// create-api-app.sh configures (idtyp, upn, acct).
type namesService struct {
	*running
	entra *apiTenant
	store store.Store
	ra    *x509.Certificate
}

func startNames(t *testing.T, env ...string) *namesService {
	t.Helper()
	return startNamesWith(t, nil, env...)
}

// startNamesWith is startNames with the build options changed by mutate (e.g. another Graph credential).
func startNamesWith(t *testing.T, mutate func(*apiTenant, *buildOptions), env ...string) *namesService {
	t.Helper()
	tenant := newAPITenant(t, entrafake.WithOptionalClaims("idtyp", "upn", "acct"))
	st, stEnv := azuriteStore(t)
	base := append(append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t)}, tenant.env()...), stEnv...)
	opts := buildOptions{httpClient: tenant.Client(), store: st, graphCredential: tenant.graphCredential()}
	if mutate != nil {
		mutate(tenant, &opts)
	}
	svc := startServe(t, append(base, env...), opts)
	s := &namesService{running: svc, entra: tenant, store: st}
	if svc.cfg.Fault(config.EndpointFeature("static")) == nil {
		certs, _ := getCACert(t, svc.scepURL("static"))
		s.ra = recipients(t, certs)[0]
	}
	return s
}

// static sends a PKCSReq with the right static challenge for a CSR built from o.
func (s *namesService) static(t *testing.T, o testca.CSROptions) *exchange {
	t.Helper()
	key := testca.RSAKey(t, nextDeviceKey(t))
	o.ChallengePassword = config.LocalStaticChallenge
	subject := o.Subject
	if subject.CommonName == "" {
		subject = pkix.Name{CommonName: "scep-client"}
	}
	client := testca.NewClient(t, key, subject, s.ra)
	return post(t, s.scepURL("static"), client.PKCSReq(t, testca.CSR(t, key, o)))
}

// refused asserts a SCEP FAILURE badRequest for a policy reason, with no record and no signature: the refusal is
// logged with the policy code and no certificate was issued for the transaction (a pending record precedes every
// signature, and there is none).
func (s *namesService) refused(t *testing.T, x *exchange, code policy.Code) {
	t.Helper()
	x.mustFail(t, s.ra, testca.FailBadRequest)
	noRecordFor(t, s.store, "static", x.req.TransactionID)
	found := false
	for _, l := range s.logLines(t) {
		if l["transaction_id"] != x.req.TransactionID {
			continue
		}
		if l["msg"] == "certificate issued" || l["serial"] != nil {
			t.Fatalf("a certificate was issued for refused transaction %s: %v", x.req.TransactionID, l)
		}
		if l["msg"] == "scep pkioperation" && strings.Contains(l["reason"].(string), string(code)) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no refusal with code %s logged for %s", code, x.req.TransactionID)
	}
}

// TestStaticEndpointNames: whoever holds the shared static challenge gets DNS names and a CN, never a UPN, an
// e-mail address, a SID or IntuneDeviceId URI, nor a CN that names a person.
func TestStaticEndpointNames(t *testing.T) {
	s := startNames(t)
	const sid = "S-1-5-21-1004336348-1177238915-682003330-500"
	for _, tc := range []struct {
		name string
		o    testca.CSROptions
		code policy.Code
	}{
		{"UPN", testca.CSROptions{Subject: pkix.Name{CommonName: "router-1"}, UPNs: []string{"administrator@contoso.example"}}, policy.CodeSAN},
		{"SID URI", testca.CSROptions{Subject: pkix.Name{CommonName: "router-1"}, URIs: []*url.URL{testca.IntuneSIDURI(sid)}}, policy.CodeSAN},
		{"UPN, DNS and SID URI (the issue's request)", testca.CSROptions{Subject: pkix.Name{CommonName: "router-1"},
			DNSNames: []string{"dc01.contoso.example"}, UPNs: []string{"administrator@contoso.example"},
			URIs: []*url.URL{testca.IntuneSIDURI(sid)}}, policy.CodeSAN},
		{"IntuneDeviceId URI", testca.CSROptions{Subject: pkix.Name{CommonName: "router-1"},
			URIs: []*url.URL{{Scheme: "IntuneDeviceId", Host: entrafake.NewGUID()}}}, policy.CodeSAN},
		{"e-mail", testca.CSROptions{Subject: pkix.Name{CommonName: "router-1"}, Emails: []string{"alice@contoso.example"}}, policy.CodeSAN},
		{"CN that is a UPN", testca.CSROptions{Subject: pkix.Name{CommonName: "administrator@contoso.example"}}, policy.CodeSubject},
	} {
		t.Run(tc.name, func(t *testing.T) { s.refused(t, s.static(t, tc.o), tc.code) })
	}
	t.Run("DNS name and CN", func(t *testing.T) {
		x := s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "router-1.branch.example.net"},
			DNSNames: []string{"router-1.branch.example.net"}})
		cert := x.mustSucceed(t, s.ra)
		uris, upns := sanNames(t, cert)
		if !slices.Equal(cert.DNSNames, []string{"router-1.branch.example.net"}) || len(uris)+len(upns)+len(cert.EmailAddresses) != 0 {
			t.Fatalf("names %v %v %v %v", cert.DNSNames, uris, upns, cert.EmailAddresses)
		}
		if rec := recordFor(t, s.store, "static", x.req.TransactionID); rec.Status != store.StatusIssued {
			t.Fatalf("record %s", rec.Status)
		}
	})
}

// TestStaticEndpointDNSAllowList: a narrowed device profile admits DNS names inside its patterns only.
func TestStaticEndpointDNSAllowList(t *testing.T) {
	s := startNames(t, "AZSCEP_PROFILE_DEVICE=validity=90d;ku=digitalSignature;eku=clientAuth;dns=*.branch.example.net")
	for _, name := range []string{"dc01.contoso.example", "a.b.branch.example.net", "branch.example.net"} {
		t.Run("outside/"+name, func(t *testing.T) {
			s.refused(t, s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "router-2"}, DNSNames: []string{name}}), policy.CodeSAN)
		})
	}
	t.Run("outside as CN", func(t *testing.T) {
		s.refused(t, s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "dc01.contoso.example"}}), policy.CodeSubject)
	})
	// A CN a TLS client would match as a host (OpenSSL does, without a DNS SAN): a wildcard, inside the list or
	// not, and a name with a trailing dot are refused like any name outside the list.
	// So are a name padded with white space, which readers that trim values read as the name ("\u00A0…" is the
	// outside name, "…\u2028" one inside the list), and a CN whose first word inet_aton reads as an IP address.
	for _, cn := range []string{"*.bank.example", "*.branch.example.net", "router-2.branch.example.net.", "www.bank.example.",
		"\u00A0dc01.contoso.example", "router-2.branch.example.net\u2028", "10.0.0.1 printer"} {
		t.Run("host-like CN/"+cn, func(t *testing.T) {
			s.refused(t, s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: cn}}), policy.CodeSubject)
		})
	}
	t.Run("inside", func(t *testing.T) {
		x := s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "router-2.branch.example.net"},
			DNSNames: []string{"Router-2.Branch.Example.NET"}})
		cert := x.mustSucceed(t, s.ra)
		if !slices.Equal(cert.DNSNames, []string{"Router-2.Branch.Example.NET"}) {
			t.Fatalf("DNS names %v", cert.DNSNames)
		}
	})
}

// TestMatchAllAllowListRefused: a profile whose allow-list would match everything without an explicit "*" is a
// configuration error. The real binary starts; each endpoint using such a profile stays down and names the setting
// to fix (it never serves wider), while the built-in static endpoint serves.
func TestMatchAllAllowListRefused(t *testing.T) {
	bad := map[string]string{"oldform": "san=dns,upn", "emptydns": "dns=", "allips": "dns=*;ip=0.0.0.0/0", "allupns": "upn=*@*"}
	extra := []string{"AZSCEP_SCEP_ENDPOINTS=static,oldform,emptydns,allips,allupns"}
	for name, spec := range bad {
		up := strings.ToUpper(name)
		extra = append(extra, "AZSCEP_SCEP_"+up+"=profile="+name, "AZSCEP_SCEP_"+up+"_SECRET=a-long-static-secret",
			"AZSCEP_PROFILE_"+up+"="+spec)
	}
	env, port := binaryEnv(t, extra...)
	svc := startBinary(t, env, port)
	for name := range bad {
		resp, body := svc.get(t, "/api/scep/"+name+"?operation=GetCACaps")
		setting := "AZSCEP_PROFILE_" + strings.ToUpper(name)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, setting) ||
			resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("endpoint %s (%s) = %d %s, want 503 problem+json naming %s", name, bad[name], resp.StatusCode, body, setting)
		}
	}
	if resp, body := svc.get(t, "/api/scep/static?operation=GetCACaps"); resp.StatusCode != http.StatusOK {
		t.Fatalf("static endpoint = %d %s", resp.StatusCode, body)
	}
}

// apiCall posts a CSR to /api/csr with a bearer token.
func (s *namesService) apiCall(t *testing.T, token string, o testca.CSROptions) (int, []byte, http.Header) {
	t.Helper()
	csr := testca.CSR(t, testca.RSAKey(t, nextDeviceKey(t)), o)
	req, err := http.NewRequest(http.MethodPost, s.base+"/api/csr", bytes.NewReader(csr.Raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/pkcs10")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header
}

// wantAPIProblem asserts a problem+json refusal with status and code, and that nothing was issued.
func (s *namesService) wantAPIProblem(t *testing.T, token string, o testca.CSROptions, status int, code string) {
	t.Helper()
	issued := strings.Count(s.logText(), `"msg":"certificate issued"`)
	got, body, h := s.apiCall(t, token, o)
	var p struct {
		Code string `json:"code"`
	}
	if got != status || h.Get("Content-Type") != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Code != code {
		t.Fatalf("/api/csr = %d %s %s, want %d problem+json %s", got, h.Get("Content-Type"), body, status, code)
	}
	if n := strings.Count(s.logText(), `"msg":"certificate issued"`); n != issued {
		t.Fatal("a certificate was issued for a refused request")
	}
}

func (s *namesService) wantAPICert(t *testing.T, token string, o testca.CSROptions) *x509.Certificate {
	t.Helper()
	got, body, _ := s.apiCall(t, token, o)
	if got != http.StatusOK {
		t.Fatalf("/api/csr = %d %s, want a certificate", got, body)
	}
	cert, err := x509.ParseCertificate(body)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

var selfServiceRole = []string{entra.RoleCSRSelfService}

// TestSelfServiceBinding: a self-service subject is one CN; the binding is the upn claim, never
// preferred_username; guests are refused.
func TestSelfServiceBinding(t *testing.T) {
	s := startNames(t)
	const upn = "alice@contoso.example"
	oid := entrafake.NewGUID()
	tok := s.entra.MintUser(oid, upn, selfServiceRole)

	t.Run("extra subject attributes", func(t *testing.T) {
		for _, subject := range []pkix.Name{
			{CommonName: upn, Organization: []string{"Contoso"}},
			{CommonName: upn, OrganizationalUnit: []string{"Domain Admins"}},
			{CommonName: upn, SerialNumber: "42"},
		} {
			s.wantAPIProblem(t, tok, testca.CSROptions{Subject: subject, UPNs: []string{upn}}, http.StatusForbidden, csrapi.CodeNotSelf)
		}
	})
	t.Run("preferred_username only", func(t *testing.T) {
		// The registration lacks the upn optional claim: the token names the user only in the mutable
		// preferred_username, which binds nothing.
		noUPN := s.entra.MintUser(oid, upn, selfServiceRole, entrafake.WithoutClaim("upn"))
		s.wantAPIProblem(t, noUPN, testca.CSROptions{UPNs: []string{upn}}, http.StatusForbidden, csrapi.CodeNotSelf)
		s.wantAPIProblem(t, noUPN, testca.CSROptions{Subject: pkix.Name{CommonName: upn}}, http.StatusForbidden, csrapi.CodeNotSelf)
	})
	t.Run("guest", func(t *testing.T) {
		guest := s.entra.MintUser(entrafake.NewGUID(), "bob_fabrikam.example#EXT#@contoso.example", selfServiceRole,
			entrafake.Guest(entrafake.NewGUID()))
		s.wantAPIProblem(t, guest, testca.CSROptions{Subject: pkix.Name{CommonName: "bob"}}, http.StatusForbidden, csrapi.CodeGuest)
	})
	t.Run("CN and UPN from the upn claim", func(t *testing.T) {
		cert := s.wantAPICert(t, tok, testca.CSROptions{Subject: pkix.Name{CommonName: upn}, UPNs: []string{upn}})
		if _, upns := sanNames(t, cert); !slices.Equal(upns, []string{upn}) || cert.Subject.String() != "CN="+upn {
			t.Fatalf("certificate %s UPNs %v", cert.Subject, upns)
		}
		rec, err := s.store.Get(t.Context(), store.SerialString(cert.SerialNumber))
		if err != nil || rec.Requester != "oid:"+oid+" upn:"+upn {
			t.Fatalf("record requester %q (%v)", rec.Requester, err)
		}
	})
}

// TestSelfServiceAccountReread: the deployed service reads the caller's account in Graph (AZSCEP_API_GRAPH_URL, the
// managed identity's token for that Graph): a token issued before the account was disabled, or before its
// sessions were revoked, gets no certificate.
func TestSelfServiceAccountReread(t *testing.T) {
	s := startNames(t)
	const upn = "alice@contoso.example"
	oid := entrafake.NewGUID()
	tok := s.entra.MintUser(oid, upn, selfServiceRole)
	s.entra.graph.UpdateUser(oid, func(u *entrafake.User) { u.SessionsValidFrom = time.Now().Add(time.Second) })
	s.wantAPIProblem(t, tok, testca.CSROptions{UPNs: []string{upn}}, http.StatusUnauthorized, csrapi.CodeSessionsRevoked)

	bob := entrafake.NewGUID()
	tok = s.entra.MintUser(bob, "bob@contoso.example", []string{entra.RoleCSRRequestDb})
	s.entra.graph.UpdateUser(bob, func(u *entrafake.User) { u.Enabled = false })
	s.wantAPIProblem(t, tok, testca.CSROptions{Subject: pkix.Name{CommonName: "svc-1"}}, http.StatusForbidden, csrapi.CodeAccountDisabled)
	reads := 0
	for _, r := range s.entra.graph.Requests() {
		// The accounts themselves: the users' app role assignments, asked beside them, are other paths.
		if (r.Path == "/v1.0/users/"+oid || r.Path == "/v1.0/users/"+bob) && r.Auth == "Bearer "+s.entra.graph.Token {
			reads++
		}
	}
	if reads != 2 {
		t.Fatalf("Graph account reads with the managed identity's token = %d, want 2", reads)
	}

	// An application whose CSR.Request.Db was unassigned after its token was issued (the deployed service finds the
	// API's service principal from AZSCEP_API_AUDIENCES).
	other := entrafake.NewGUID()
	appTok := s.entra.MintApp([]string{entra.RoleCSRRequestDb}, entrafake.WithClaim("oid", other), entrafake.WithClaim("sub", other))
	s.entra.graph.RemoveAppRole(other, entra.RoleCSRRequestDb)
	s.wantAPIProblem(t, appTok, testca.CSROptions{Subject: pkix.Name{CommonName: "svc-5"}}, http.StatusForbidden, "role_removed")

	// The admin API: an administrator disabled after signing in to the console neither reads nor revokes.
	cert := s.wantAPICert(t, s.entra.MintApp([]string{entra.RoleCSRRequestDb}), testca.CSROptions{Subject: pkix.Name{CommonName: "svc-2"}})
	serial := store.SerialString(cert.SerialNumber)
	admin := entrafake.NewGUID()
	tok = s.entra.MintUser(admin, "carol@contoso.example", []string{entra.RoleCertificatesManage}, entrafake.WithClaim("azp", s.entra.ClientID))
	s.entra.graph.UpdateUser(admin, func(u *entrafake.User) { u.Enabled = false })
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/certificates/" + serial, ""},
		{http.MethodPost, "/api/certificates/" + serial + "/revoke", `{"reason":"keyCompromise"}`},
	} {
		req, err := http.NewRequest(c.method, s.base+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		if resp, body := testca.Do(t, http.DefaultClient, req); resp.StatusCode != http.StatusForbidden ||
			!strings.Contains(string(body), `"code":"account_disabled"`) {
			t.Fatalf("%s %s by a disabled administrator: %d %s", c.method, c.path, resp.StatusCode, body)
		}
	}
	if rec, err := s.store.Get(t.Context(), serial); err != nil || rec.Status != store.StatusIssued {
		t.Fatalf("record after a disabled administrator's revoke: %+v %v", rec, err)
	}
}

// TestHealthNamesGraphRefusal: while Graph refuses the managed identity (the permissions not granted yet), every
// user token gets 503 and /api/health says why, naming the permissions and the script; once Graph answers, both
// clear.
func TestHealthNamesGraphRefusal(t *testing.T) {
	s := startNames(t)
	health := func() (int, string) { return getHealth(t, s.base) }
	tok := s.entra.MintUser(entrafake.NewGUID(), "alice@contoso.example", []string{entra.RoleCSRRequestDb})
	o := testca.CSROptions{Subject: pkix.Name{CommonName: "svc-3"}}
	s.entra.graph.SetFault(entrafake.Fault{Status: http.StatusForbidden})
	s.wantAPIProblem(t, tok, o, http.StatusServiceUnavailable, "unavailable")
	if code, body := health(); code != http.StatusServiceUnavailable || !strings.Contains(body, `"graph":{"status":"refused"`) ||
		!strings.Contains(body, "User.Read.All") || !strings.Contains(body, "grant-intune.sh") {
		t.Fatalf("/api/health while Graph refuses = %d %s", code, body)
	}
	s.entra.graph.SetFault(entrafake.Fault{})
	s.wantAPICert(t, tok, o)
	if code, body := health(); code != http.StatusOK || strings.Contains(body, "graph") {
		t.Fatalf("/api/health once Graph answers = %d %s", code, body)
	}
}

// TestHealthNamesWrongGraphTenant: when the managed identity's Graph token is for another tenant than the API's,
// no account is asked about (Graph would say "not found" to everyone): tokens get 503 and /api/health says why.
func TestHealthNamesWrongGraphTenant(t *testing.T) {
	enc := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	other := entrafake.NewGUID()
	s := startNamesWith(t, func(a *apiTenant, o *buildOptions) {
		o.graphCredential = &entrafake.Credential{Token: enc(`{"alg":"RS256"}`) + "." + enc(`{"tid":"`+other+`"}`) + ".sig",
			Scope: strings.TrimSuffix(a.graph.URL(), "/") + "/.default"}
	})
	tok := s.entra.MintUser(entrafake.NewGUID(), "alice@contoso.example", []string{entra.RoleCSRRequestDb})
	s.wantAPIProblem(t, tok, testca.CSROptions{Subject: pkix.Name{CommonName: "svc-4"}}, http.StatusServiceUnavailable, "unavailable")
	req, err := http.NewRequest(http.MethodGet, s.base+"/api/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := testca.Do(t, http.DefaultClient, req)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"graph":{"status":"wrong_tenant"`) ||
		!strings.Contains(string(body), other) || len(s.entra.graph.Requests()) != 0 {
		t.Fatalf("/api/health = %d %s; Graph calls %d", resp.StatusCode, body, len(s.entra.graph.Requests()))
	}
}

// TestGuestsAllowedBySetting: AZSCEP_API_ALLOW_GUESTS admits guests (here a CSR.Request.Db guest).
func TestGuestsAllowedBySetting(t *testing.T) {
	db := []string{entra.RoleCSRRequestDb}
	o := testca.CSROptions{Subject: pkix.Name{CommonName: "guest-service"}}
	refusing := startNames(t)
	refusing.wantAPIProblem(t, refusing.entra.MintUser(entrafake.NewGUID(), "bob@fabrikam.example", db,
		entrafake.Guest(entrafake.NewGUID())), o, http.StatusForbidden, csrapi.CodeGuest)
	allowing := startNames(t, "AZSCEP_API_ALLOW_GUESTS=true")
	allowing.wantAPICert(t, allowing.entra.MintUser(entrafake.NewGUID(), "bob@fabrikam.example", db,
		entrafake.Guest(entrafake.NewGUID())), o)
}

// TestClientAppAllowList: with AZSCEP_API_CLIENT_APPS set, a token obtained by another client application (azp)
// gets 403; the listed client is served.
func TestClientAppAllowList(t *testing.T) {
	db := []string{entra.RoleCSRRequestDb}
	o := testca.CSROptions{Subject: pkix.Name{CommonName: "svc-1"}}
	listed := entrafake.NewGUID()
	s := startNames(t, "AZSCEP_API_CLIENT_APPS="+strings.ToUpper(listed))
	s.wantAPIProblem(t, s.entra.MintUser(entrafake.NewGUID(), "carol@contoso.example", db), o, http.StatusForbidden, csrapi.CodeClientApp)
	s.wantAPIProblem(t, s.entra.MintApp(db), o, http.StatusForbidden, csrapi.CodeClientApp)
	s.wantAPICert(t, s.entra.MintUser(entrafake.NewGUID(), "carol@contoso.example", db, entrafake.WithClaim("azp", listed)), o)
}

// TestAdminClientAppAllowList: the admin API takes user tokens from the console (the API's own app registration)
// and the clients AZSCEP_ADMIN_CLIENT_APPS lists, not from any client an admin ever consented to; app-only tokens
// carry a role assigned to that application and are taken. Guests are refused unless AZSCEP_ADMIN_ALLOW_GUESTS (AZSCEP_API_ALLOW_GUESTS, for /api/csr, does not admit them).
func TestAdminClientAppAllowList(t *testing.T) {
	manage := []string{entra.RoleCertificatesManage}
	cli := entrafake.NewGUID()
	search := func(s *namesService, tok string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, s.base+"/api/certificates", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, _ := testca.Do(t, http.DefaultClient, req)
		return resp.StatusCode
	}
	s := startNames(t)
	for _, c := range []struct {
		name string
		tok  string
		want int
	}{
		{"console", s.entra.MintUser(entrafake.NewGUID(), "a@contoso.example", manage, entrafake.WithClaim("azp", s.entra.ClientID)), http.StatusOK},
		{"consented third party", s.entra.MintUser(entrafake.NewGUID(), "a@contoso.example", manage), http.StatusForbidden},
		{"unlisted CLI", s.entra.MintUser(entrafake.NewGUID(), "a@contoso.example", manage, entrafake.WithClaim("azp", cli)), http.StatusForbidden},
		{"app-only", s.entra.MintApp(manage), http.StatusOK},
		{"guest in the console", s.entra.MintUser(entrafake.NewGUID(), "g_x.example#EXT#@contoso.example", manage,
			entrafake.WithClaim("azp", s.entra.ClientID), entrafake.Guest(entrafake.NewGUID())), http.StatusForbidden},
	} {
		if got := search(s, c.tok); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	listed := startNames(t, "AZSCEP_ADMIN_CLIENT_APPS="+strings.ToUpper(cli))
	if got := search(listed, listed.entra.MintUser(entrafake.NewGUID(), "a@contoso.example", manage, entrafake.WithClaim("azp", cli))); got != http.StatusOK {
		t.Errorf("listed CLI: %d, want 200", got)
	}
	if got := search(listed, listed.entra.MintUser(entrafake.NewGUID(), "a@contoso.example", manage, entrafake.WithClaim("azp", listed.entra.ClientID))); got != http.StatusOK {
		t.Errorf("console beside a list: %d, want 200", got)
	}
	enrolOnly := startNames(t, "AZSCEP_API_ALLOW_GUESTS=true")
	if got := search(enrolOnly, enrolOnly.entra.MintUser(entrafake.NewGUID(), "g_x.example#EXT#@contoso.example", manage,
		entrafake.WithClaim("azp", enrolOnly.entra.ClientID), entrafake.Guest(entrafake.NewGUID()))); got != http.StatusForbidden {
		t.Errorf("guest with only AZSCEP_API_ALLOW_GUESTS=true: %d, want 403", got)
	}
	guests := startNames(t, "AZSCEP_ADMIN_ALLOW_GUESTS=true")
	if got := search(guests, guests.entra.MintUser(entrafake.NewGUID(), "g_x.example#EXT#@contoso.example", manage,
		entrafake.WithClaim("azp", guests.entra.ClientID), entrafake.Guest(entrafake.NewGUID()))); got != http.StatusOK {
		t.Errorf("guest with AZSCEP_ADMIN_ALLOW_GUESTS=true: %d, want 200", got)
	}
	anyClient := startNames(t, "AZSCEP_ADMIN_CLIENT_APPS=*")
	if got := search(anyClient, anyClient.entra.MintUser(entrafake.NewGUID(), "a@contoso.example", manage)); got != http.StatusOK {
		t.Errorf("any client: %d, want 200", got)
	}
}

// TestAPIRefusesBuiltInIntuneProfile: the built-in intune profile allows every name, SID and IntuneDeviceId URIs
// included, because Intune validates each CSR on the SCEP door; /api/csr has no Intune behind it. Named as the
// API's profile or as one of its choices, it would let any CSR.Request.Db application mint a SID URI, which Entra
// certificate-based authentication and AD strong mapping read as a user. As behind a static challenge, the
// setting is refused (the API is disabled, naming it) and no certificate leaves; a profile the operator wrote
// under that name is the operator's own opt-in and is kept.
func TestAPIRefusesBuiltInIntuneProfile(t *testing.T) {
	sid := testca.IntuneSIDURI("S-1-5-21-1-2-3-500")
	start := func(t *testing.T, env ...string) (*running, *apiTenant) {
		tenant := newAPITenant(t, entrafake.WithOptionalClaims("idtyp", "upn", "acct"))
		st, stEnv := azuriteStore(t)
		env = append(append(append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t),
			fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", freePort(t))}, tenant.env()...), stEnv...), env...)
		cfg, err := config.Load(env)
		if err != nil {
			t.Fatal(err)
		}
		opts := buildOptions{httpClient: tenant.Client(), store: st, graphCredential: tenant.graphCredential()}
		return startServeConfig(t, cfg, opts, false), tenant
	}
	for _, tc := range []struct{ setting, query string }{
		{"AZSCEP_API_PROFILES", "?profile=intune"},
		{"AZSCEP_API_PROFILE", ""},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			svc, tenant := start(t, tc.setting+"=intune")
			csr := testca.CSR(t, testca.RSAKey(t, nextDeviceKey(t)),
				testca.CSROptions{Subject: pkix.Name{CommonName: "svc-sid"}, URIs: []*url.URL{sid}})
			req, err := http.NewRequest(http.MethodPost, svc.base+"/api/csr"+tc.query, bytes.NewReader(csr.Raw))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/pkcs10")
			req.Header.Set("Authorization", "Bearer "+tenant.MintApp([]string{entra.RoleCSRRequestDb}))
			resp, body := testca.Do(t, http.DefaultClient, req)
			if c, err := x509.ParseCertificate(body); err == nil {
				t.Fatalf("/api/csr%s with %s=intune issued %v to an application (status %d)", tc.query, tc.setting, c.URIs, resp.StatusCode)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), tc.setting) {
				t.Fatalf("/api/csr%s with %s=intune = %d %s, want 503 naming the setting", tc.query, tc.setting, resp.StatusCode, body)
			}
		})
	}
	// An operator-written intune profile is an explicit opt-in on this door.
	svc, _ := start(t, "AZSCEP_API_PROFILES=intune", "AZSCEP_PROFILE_INTUNE=validity=90d;eku=clientAuth;dns=*.contoso.example")
	if f := svc.cfg.Fault(config.FeatureAPI); f != nil {
		t.Fatalf("API with an operator-written intune profile disabled: %v", f)
	}
}
