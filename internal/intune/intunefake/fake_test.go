package intunefake

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func token(t *testing.T, s *Server, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.ClientID()},
		"client_secret": {s.ClientSecret()},
		"scope":         {scope},
	}
	resp, err := s.Client().PostForm(s.URL()+"/"+s.TenantID()+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func intuneToken(t *testing.T, s *Server) string {
	t.Helper()
	status, m := token(t, s, intuneScope)
	if status != 200 {
		t.Fatalf("token: %d %v", status, m)
	}
	return m["access_token"].(string)
}

type call struct {
	path    string
	body    string
	headers map[string]string
	query   string
}

func (s *Server) post(t *testing.T, tok string, c call, apiVersion string) (int, map[string]any) {
	t.Helper()
	u := s.URL() + c.path
	if c.query != "" {
		u += "?" + c.query
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(c.body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("client-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e")
	req.Header.Set("api-version", apiVersion)
	req.Header["UserAgent"] = []string{"fake-test/1"}
	for k, v := range c.headers {
		req.Header.Del(k)
		delete(req.Header, k)
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

const validatePath = ScepServicePath + "/ScepActions/validateRequest"

func TestTokenEndpoint(t *testing.T) {
	s := newTestServer(t, Options{})
	if status, m := token(t, s, graphScope); status != 200 || m["token_type"] != "Bearer" || m["expires_in"] != float64(3599) {
		t.Errorf("graph token: %d %v", status, m)
	}
	if status, m := token(t, s, "openid "+intuneScope+" offline_access"); status != 200 {
		t.Errorf("intune token with OIDC scopes: %d %v", status, m)
	}
	for _, scope := range []string{intuneScopeSingle, "https://vault.azure.net/.default", graphScope + " " + intuneScope, ""} {
		if status, m := token(t, s, scope); status != 400 || m["error"] != "invalid_scope" {
			t.Errorf("scope %q: %d %v, want 400 invalid_scope", scope, status, m)
		}
	}
	lenient := newTestServer(t, Options{AcceptSingleSlashScope: true})
	if status, _ := token(t, lenient, intuneScopeSingle); status != 200 {
		t.Errorf("single-slash scope with the knob: %d", status)
	}

	post := func(path string, form url.Values) (int, string) {
		resp, err := s.Client().PostForm(s.URL()+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		e, _ := m["error"].(string)
		return resp.StatusCode, e
	}
	base := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()}, "scope": {graphScope}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range base {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	for _, tc := range []struct {
		path   string
		form   url.Values
		status int
		err    string
	}{
		{"/other-tenant/oauth2/v2.0/token", base, 400, "invalid_request"},
		{"/" + s.TenantID() + "/oauth2/v2.0/token", with("client_secret", "nope"), 401, "invalid_client"},
		{"/" + s.TenantID() + "/oauth2/v2.0/token", with("client_secret", ""), 401, "invalid_client"},
		{"/" + s.TenantID() + "/oauth2/v2.0/token", with("client_id", "someone-else"), 400, "unauthorized_client"},
		{"/" + s.TenantID() + "/oauth2/v2.0/token", with("grant_type", "password"), 400, "unsupported_grant_type"},
	} {
		if status, e := post(tc.path, tc.form); status != tc.status || e != tc.err {
			t.Errorf("%s %v: %d %q, want %d %q", tc.path, tc.form, status, e, tc.status, tc.err)
		}
	}
	for _, e := range s.Requests(RouteToken) {
		if v := e.Form.Get("client_secret"); v != "" && v != "REDACTED" {
			t.Errorf("journal holds a client secret: %q", v)
		}
	}
}

func TestMetadataRoutes(t *testing.T) {
	s := newTestServer(t, Options{})
	resp, err := s.Client().Get(s.URL() + "/" + s.TenantID() + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if m["token_endpoint"] != s.URL()+"/"+s.TenantID()+"/oauth2/v2.0/token" || m["issuer"] != s.URL()+"/"+s.TenantID()+"/v2.0" {
		t.Errorf("openid configuration = %v", m)
	}
	resp, err = s.Client().Get(s.URL() + "/common/discovery/instance?api-version=1.1")
	if err != nil {
		t.Fatal(err)
	}
	m = nil
	_ = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if !strings.HasPrefix(m["tenant_discovery_endpoint"].(string), s.URL()+"/") {
		t.Errorf("instance discovery = %v", m)
	}
}

func TestGraphDiscovery(t *testing.T) {
	s := newTestServer(t, Options{})
	_, m := token(t, s, graphScope)
	graphTok := m["access_token"].(string)
	get := func(path, tok string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, p := range []string{
		"/v1.0/servicePrincipals/appId=" + IntuneAppID + "/endpoints",
		"/v1.0/servicePrincipals(appId='" + IntuneAppID + "')/endpoints",
	} {
		status, m := get(p, graphTok)
		if status != 200 {
			t.Fatalf("%s: %d %v", p, status, m)
		}
		names := map[string]string{}
		for _, v := range m["value"].([]any) {
			ep := v.(map[string]any)
			names[ep["providerName"].(string)] = ep["uri"].(string)
		}
		if names["ScepRequestValidationFEService"] != s.URL()+ScepServicePath || names["PkiConnectorFEService"] != s.URL()+PkiServicePath || len(names) < 3 {
			t.Errorf("endpoints = %v", names)
		}
	}
	if status, _ := get("/v1.0/servicePrincipals/appId=00000000-0000-0000-0000-000000000001/endpoints", graphTok); status != 404 {
		t.Errorf("unknown appId: %d", status)
	}
	if status, m := get("/v1.0/servicePrincipals/appId="+IntuneAppID+"/endpoints", intuneToken(t, s)); status != 401 {
		t.Errorf("Intune-audience token accepted by Graph: %d %v", status, m)
	}
	if status, _ := get("/v1.0/servicePrincipals/appId="+IntuneAppID+"/endpoints", "forged"); status != 401 {
		t.Errorf("unknown token accepted: %d", status)
	}
	s.SetRoles(RoleScepChallengeProvider)
	_, m = token(t, s, graphScope)
	if status, m := get("/v1.0/servicePrincipals/appId="+IntuneAppID+"/endpoints", m["access_token"].(string)); status != 403 {
		t.Errorf("token without Application.Read.All: %d %v", status, m)
	}
}

// The strict checks of §11.3 each produce a 400 with a recorded reason.
func TestStrictIntuneChecks(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := intuneToken(t, s)
	good := `{"request":{"transactionId":"t","certificateRequest":"AAAA","callerInfo":"x"}}`
	tests := []struct {
		name   string
		c      call
		status int
		reason string
	}{
		{"ok", call{path: validatePath, body: good}, 200, ""},
		{"query", call{path: validatePath, body: good, query: "api-version=2018-02-20"}, 400, "query string"},
		{"api-version", call{path: validatePath, body: good, headers: map[string]string{"api-version": "5019-05-05"}}, 400, "api-version"},
		{"no api-version", call{path: validatePath, body: good, headers: map[string]string{"api-version": ""}}, 400, "api-version"},
		{"upper-case id", call{path: validatePath, body: good, headers: map[string]string{"client-request-id": "0F8FAD5B-D9CB-469F-A165-70867728950E"}}, 400, "client-request-id"},
		{"no id", call{path: validatePath, body: good, headers: map[string]string{"client-request-id": ""}}, 400, "client-request-id"},
		{"content type", call{path: validatePath, body: good, headers: map[string]string{"Content-Type": "text/plain"}}, 400, "Content-Type"},
		{"no UserAgent", call{path: validatePath, body: good, headers: map[string]string{"UserAgent": ""}}, 400, "UserAgent"},
		{"no token", call{path: validatePath, body: good, headers: map[string]string{"Authorization": ""}}, 401, "InvalidAuthenticationToken"},
		{"wrapper case", call{path: validatePath, body: `{"Request":{"transactionId":"t","certificateRequest":"AAAA","callerInfo":"x"}}`}, 400, "\"request\""},
		{"member case", call{path: validatePath, body: `{"request":{"transactionID":"t","certificateRequest":"AAAA","callerInfo":"x"}}`}, 400, "transactionID"},
		{"extra member", call{path: validatePath, body: `{"request":{"transactionId":"t","certificateRequest":"AAAA","callerInfo":"x","x":1}}`}, 400, "unexpected member"},
		{"empty tx", call{path: validatePath, body: `{"request":{"transactionId":"","certificateRequest":"AAAA","callerInfo":"x"}}`}, 400, "transactionId"},
		{"not json", call{path: validatePath, body: `request=1`}, 400, "not a JSON object"},
		{"moved", call{path: "/elsewhere" + validatePath, body: good}, 404, "not served"},
		{"charset ok", call{path: validatePath, body: good, headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, m := s.post(t, tok, tc.c, ScepAPIVersion)
			if status != tc.status {
				t.Fatalf("status %d (%v), want %d", status, m, tc.status)
			}
			j := s.Journal()
			last := j[len(j)-1]
			if !strings.Contains(last.Reject, tc.reason) || (tc.reason == "") != (last.Reject == "") {
				t.Errorf("recorded reason %q, want it to mention %q", last.Reject, tc.reason)
			}
			if status == 200 && (m["code"] != "CertificateRequestDecodingFailed" || m["errorDescription"] == nil) {
				t.Errorf("answer %v", m)
			}
		})
	}

	lenient := newTestServer(t, Options{Lenient: true})
	ltok := intuneToken(t, lenient)
	for _, c := range []call{
		{path: validatePath, body: `{"Request":{"TransactionId":"t","CertificateRequest":"AAAA"}}`, headers: map[string]string{"UserAgent": "", "api-version": "5019-05-05"}},
	} {
		if status, m := lenient.post(t, ltok, c, ScepAPIVersion); status != 200 {
			t.Errorf("lenient fake refused %v: %d %v", c, status, m)
		}
	}
	// Missing role on Intune: 401 by default, 403 on request.
	for _, st := range []int{0, 403} {
		r := newTestServer(t, Options{Roles: []string{}, MissingRoleStatus: st})
		want := 401
		if st != 0 {
			want = st
		}
		if status, _ := r.post(t, intuneToken(t, r), call{path: validatePath, body: good}, ScepAPIVersion); status != want {
			t.Errorf("missing role: %d, want %d", status, want)
		}
	}
}

func TestNotificationsChecks(t *testing.T) {
	s := newTestServer(t, Options{RequireValidatedTransaction: true})
	tok := intuneToken(t, s)
	success := func(tx, csr, expiry string) string {
		return `{"notification":{"transactionId":"` + tx + `","certificateRequest":"` + csr + `","certificateThumbprint":"AB",` +
			`"certificateSerialNumber":"01","certificateExpirationDateUtc":"` + expiry + `","issuingCertificateAuthority":"CN=CA",` +
			`"callerInfo":"x","caConfiguration":null}}`
	}
	path := ScepServicePath + "/ScepActions/successNotification"
	if status, m := s.post(t, tok, call{path: path, body: success("never-validated", "AAAA", "2030-01-01T00:00:00.000Z")}, ScepAPIVersion); status != 200 || m["code"] != "BadCertificateRequestIdInChallenge" {
		t.Errorf("unvalidated transaction: %d %v", status, m)
	}
	if status, _ := s.post(t, tok, call{path: path, body: success("t", "AAAA", "31/12/2030")}, ScepAPIVersion); status != 400 {
		t.Errorf("bad expiry accepted: %d", status)
	}
	if n := len(s.IssuedCertificates()); n != 0 {
		t.Errorf("rejected notifications were recorded: %d", n)
	}

	fpath := ScepServicePath + "/ScepActions/failureNotification"
	failure := func(h, desc string) string {
		return `{"notification":{"transactionId":"t","certificateRequest":"AAAA","hResult":` + h + `,"errorDescription":"` + desc + `","callerInfo":"x"}}`
	}
	for _, tc := range []struct {
		h, desc string
		status  int
	}{
		{"-2147418113", "neg", 200},
		{"2147549183", "pos", 200},
		{"1.5", "frac", 400},
		{`"1"`, "string", 400},
		{"1", strings.Repeat("x", 256), 400},
		{"1", strings.Repeat("x", 255), 200},
		{"1", "", 400},
	} {
		if status, m := s.post(t, tok, call{path: fpath, body: failure(tc.h, tc.desc)}, ScepAPIVersion); status != tc.status {
			t.Errorf("hResult %s desc %.10q: %d %v, want %d", tc.h, tc.desc, status, m, tc.status)
		}
	}
	reps := s.FailureReports()
	if len(reps) != 3 || reps[0].HResult != -2147418113 || reps[1].HResult != 2147549183 {
		t.Errorf("failure reports = %+v", reps)
	}
}

func TestRevocationQueue(t *testing.T) {
	s := newTestServer(t, Options{CoolDown: time.Hour})
	tok := intuneToken(t, s)
	dl := func(body string) (int, []any) {
		status, m := s.post(t, tok, call{path: PkiServicePath + "/CertificateAuthorityRequests/downloadRevocationRequests", body: body}, PkiAPIVersion)
		v, _ := m["value"].([]any)
		return status, v
	}
	up := func(body string) (int, map[string]any) {
		return s.post(t, tok, call{path: PkiServicePath + "/CertificateAuthorityRequests/uploadRevocationResults", body: body}, PkiAPIVersion)
	}
	for _, b := range []string{
		`{"downloadParameters":{"maxRequests":0,"issuerName":null}}`,
		`{"downloadParameters":{"maxRequests":501,"issuerName":null}}`,
		`{"downloadParameters":{"maxRequests":"10","issuerName":null}}`,
		`{"downloadParameters":{"maxRequests":10,"issuerName":null,"certificateProviderName":"x"}}`,
		`{"downloadParameters":{"issuerName":null}}`,
	} {
		if status, _ := dl(b); status != 400 {
			t.Errorf("download %s: %d, want 400", b, status)
		}
	}
	var rcs []string
	for _, ca := range []string{"other", "mine", "mine"} {
		rc, err := s.EnqueueRevocation(RevocationRequest{SerialNumber: "0" + ca, CAConfiguration: ca})
		if err != nil {
			t.Fatal(err)
		}
		rcs = append(rcs, rc)
	}
	// intune-compatible: truncate to 2 first, then filter → only one "mine".
	status, v := dl(`{"downloadParameters":{"maxRequests":2,"issuerName":"mine"}}`)
	if status != 200 || len(v) != 1 || v[0].(map[string]any)["requestContext"] != rcs[1] {
		t.Fatalf("filtered download = %d %v", status, v)
	}
	if _, v := dl(`{"downloadParameters":{"maxRequests":10}}`); len(v) != 0 {
		t.Errorf("download during cool-down returned %d items", len(v))
	}
	s.Advance(time.Hour)
	if _, v := dl(`{"downloadParameters":{"maxRequests":10,"issuerName":""}}`); len(v) != 3 {
		t.Errorf("after cool-down: %d items, want 3 (one re-offered)", len(v))
	}
	if it, _ := s.Revocation(rcs[1]); it.Deliveries != 2 || it.State != StateInFlight {
		t.Errorf("re-offered item = %+v", it)
	}

	// Upload: PascalCase members, numeric codes, integers; all recorded.
	status, m := up(`{"results":[
		{"RequestContext":"` + rcs[0] + `","Succeeded":false,"ErrorCode":"4004","ErrorMessage":"not mine"},
		{"requestContext":"` + rcs[1] + `","succeeded":true,"errorCode":0},
		{"requestContext":"` + rcs[2] + `","succeeded":false,"errorCode":4101,"errorMessage":null},
		{"requestContext":"foreign","succeeded":true,"errorCode":"None"}]}`)
	if status != 200 || m["value"] != true {
		t.Fatalf("upload = %d %v", status, m)
	}
	ups := s.UploadedResults()
	if len(ups) != 4 || ups[0].ErrorCode != 4004 || ups[0].ErrorCodeRaw != `"4004"` || ups[2].ErrorCode != 4101 || ups[3].Known {
		t.Errorf("uploads = %+v", ups)
	}
	for i, want := range []RevocationState{StateFailed, StateDone, StateQueued} {
		if it, _ := s.Revocation(rcs[i]); it.State != want {
			t.Errorf("item %d state %s, want %s", i, it.State, want)
		}
	}
	for _, b := range []string{
		`{"results":[]}`,
		`{"results":[{"requestContext":"x","succeeded":true,"errorCode":"ConflictError"}]}`,
		`{"results":[{"requestContext":"x","succeeded":false,"errorCode":"Bogus"}]}`,
		`{"results":[{"requestContext":"x","succeeded":false,"errorCode":9999}]}`,
		`{"results":[{"requestContext":"x","succeeded":"yes"}]}`,
		`{"results":[{"succeeded":true}]}`,
	} {
		if status, _ := up(b); status != 400 {
			t.Errorf("upload %s: %d, want 400", b, status)
		}
	}
	strictCtx := newTestServer(t, Options{RejectUnknownRequestContext: true})
	if status, _ := strictCtx.post(t, intuneToken(t, strictCtx), call{path: PkiServicePath + "/CertificateAuthorityRequests/uploadRevocationResults",
		body: `{"results":[{"requestContext":"foreign","succeeded":true}]}`}, PkiAPIVersion); status != 400 {
		t.Errorf("unknown requestContext with the knob: %d", status)
	}

	ideal := newTestServer(t, Options{FilterMode: FilterIdeal})
	for _, ca := range []string{"other", "mine", "mine"} {
		if _, err := ideal.EnqueueRevocation(RevocationRequest{SerialNumber: "01", CAConfiguration: ca}); err != nil {
			t.Fatal(err)
		}
	}
	status, m = ideal.post(t, intuneToken(t, ideal), call{path: PkiServicePath + "/CertificateAuthorityRequests/downloadRevocationRequests",
		body: `{"downloadParameters":{"maxRequests":2,"issuerName":"mine"}}`}, PkiAPIVersion)
	if v, _ := m["value"].([]any); status != 200 || len(v) != 2 {
		t.Errorf("ideal filter: %d %v", status, m)
	}
}

func TestFaultsAndJournal(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := intuneToken(t, s)
	good := `{"request":{"transactionId":"t","certificateRequest":"AAAA","callerInfo":"x"}}`
	s.InjectFault(RouteValidate, Fault{Status: 503, Body: `{"error":"busy"}`, Times: 2})
	s.InjectFault(RouteValidate, Fault{Status: 200, Body: `{"code":"Bogus"}`, Times: 1})
	var got []int
	for i := 0; i < 4; i++ {
		status, _ := s.post(t, tok, call{path: validatePath, body: good}, ScepAPIVersion)
		got = append(got, status)
	}
	if want := []int{503, 503, 200, 200}; !equalInts(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	entries := s.Requests(RouteValidate)
	if len(entries) != 4 || !entries[0].Fault || !entries[2].Fault || entries[3].Fault || s.Count(RouteValidate) != 4 {
		t.Errorf("journal = %+v", entries)
	}
	body, ok := entries[3].JSON.(map[string]any)
	if !ok || body["request"].(map[string]any)["transactionId"] != "t" {
		t.Errorf("parsed body = %v", entries[3].JSON)
	}
	if entries[3].Header.Get("client-request-id") == "" {
		t.Error("headers not recorded")
	}

	s.InjectFault(RouteValidate, Fault{Drop: true, Times: 1})
	req, _ := http.NewRequest(http.MethodPost, s.URL()+validatePath, strings.NewReader(good))
	if resp, err := s.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Error("dropped connection produced a response")
	}
	s.ResetJournal()
	if s.Count(RouteValidate) != 0 || len(s.Journal()) != 0 {
		t.Error("ResetJournal kept entries")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The standalone mode: TLS with a certificate written to the chosen file,
// admin routes to register challenges and revocations.
func TestListenAndServe(t *testing.T) {
	certFile := filepath.Join(t.TempDir(), "fake.pem")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- ListenAndServe(ctx, "127.0.0.1:0", ServeConfig{CertFile: certFile, Ready: func(s *Server) { ready <- s }})
	}()
	var s *Server
	select {
	case s = <-ready:
	case err := <-done:
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("fake did not start")
	}
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.client.Transport.(*http.Transport).TLSClientConfig.Clone()}}
	client.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool // trust only what was written

	adminPost := func(path, body string) (int, map[string]any) {
		resp, err := client.Post(s.URL()+path, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if status, m := adminPost("/fake/challenges", `{"password":"p","expiresAt":"2030-01-01T00:00:00Z","subject":"CN=dev1","extKeyUsages":["clientAuth"],"keySize":2048}`); status != 201 || m["password"] != "p" {
		t.Errorf("register challenge: %d %v", status, m)
	}
	if status, _ := adminPost("/fake/challenges", `{"password":"p","bogus":1}`); status != 400 {
		t.Errorf("unknown admin member accepted: %d", status)
	}
	if status, _ := adminPost("/fake/challenges", `{"password":"q","extKeyUsages":["frobnicate"]}`); status != 400 {
		t.Errorf("unknown EKU accepted: %d", status)
	}
	status, m := adminPost("/fake/revocations", `{"serialNumber":"0A","caConfiguration":"CN=CA"}`)
	if status != 201 || m["requestContext"] == "" {
		t.Fatalf("enqueue: %d %v", status, m)
	}
	if it, ok := s.Revocation(m["requestContext"].(string)); !ok || it.SerialNumber != "0A" || it.State != StateQueued {
		t.Errorf("queued item = %+v", it)
	}
	if status, _ := adminPost("/fake/revocations", `{"fromIssued":"0A"}`); status != 400 {
		t.Errorf("revoking a never-issued certificate: %d", status)
	}
	s.mu.Lock()
	_, registered := s.challenges["p"]
	s.mu.Unlock()
	if !registered {
		t.Error("challenge not registered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
