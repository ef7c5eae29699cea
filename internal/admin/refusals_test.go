package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// TestRestrictedCallersAreLogged: a token that holds Certificates.Manage but was obtained by a client application
// the deployment does not list (a consent-phishing app an administrator once signed in to), or by a guest, is
// refused — and the refusal says in the log who it was and which client application asked, so that the operator
// learns of the attempt, never with the token itself.
func TestRestrictedCallersAreLogged(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
	phisher := entrafake.NewGUID()
	stolen := e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage}, entrafake.WithClaim("azp", phisher))
	resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", stolen, `{"reason":"keyCompromise"}`)
	wantProblem(t, resp, body, http.StatusForbidden, admin.CodeClientApp)
	guest := e.fake.MintUser(aliceOID, "mallory_evil.example#EXT#@contoso.example", []string{entra.RoleCertificatesManage},
		entrafake.Guest(entrafake.NewGUID()))
	resp, body = e.do(t, http.MethodGet, "/api/certificates", guest, "")
	wantProblem(t, resp, body, http.StatusForbidden, admin.CodeGuest)

	lines := e.logs.Records("admin caller refused")
	if len(lines) != 2 {
		t.Fatalf("refusal lines %v, want 2", lines)
	}
	for i, want := range []struct{ code, app, path string }{
		{admin.CodeClientApp, phisher, "/api/certificates/" + rec.Serial + "/revoke"},
		{admin.CodeGuest, e.fake.ClientAppID, "/api/certificates"},
	} {
		l := lines[i]
		if l["code"] != want.code || !strings.EqualFold(fmt.Sprint(l["client_app"]), want.app) ||
			!strings.Contains(fmt.Sprint(l["by"]), aliceOID) || l["path"] != want.path || l["status"] != float64(http.StatusForbidden) {
			t.Errorf("refusal line %d = %v, want code %s, client_app %s, by %s, path %s", i, l, want.code, want.app, aliceOID, want.path)
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, stolen) || strings.Contains(logs, guest) {
		t.Error("a token was logged")
	}
}

// TestAuditNamesTheClientApplication: with AZSCEP_ADMIN_CLIENT_APPS=* (or several clients listed) any client an
// administrator consented to acts with the administrator's roles. The audit lines of a revocation and of a manual
// sync say which client application acted, beside the administrator, so that what a consent-phished application
// did in an administrator's name can be told apart from what the administrator did in the console.
func TestAuditNamesTheClientApplication(t *testing.T) {
	e := newEnv(t, func(c *admin.Config) { c.UserClientApps, c.AnyUserClientApp = nil, true })
	rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
	other := entrafake.NewGUID()
	tok := e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage}, entrafake.WithClaim("azp", other))
	if resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", tok, `{"reason":"superseded"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, ""); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("sync: %d %s", resp.StatusCode, body)
	}
	revoked := e.logs.Records("audit: certificate revoked")
	if len(revoked) != 1 || !strings.EqualFold(fmt.Sprint(revoked[0]["client_app"]), other) ||
		!strings.Contains(fmt.Sprint(revoked[0]["by"]), aliceOID) {
		t.Errorf("revocation audit %v, want by %s through client_app %s", revoked, aliceOID, other)
	}
	synced := e.logs.Records("audit: manual revocation sync")
	if len(synced) != 1 || !strings.EqualFold(fmt.Sprint(synced[0]["client_app"]), e.fake.ClientAppID) {
		t.Errorf("sync audit %v, want client_app %s", synced, e.fake.ClientAppID)
	}
}

// TestRefusedTokensAreLogged: a token for another audience or tenant, an expired one, or one without an admin role is
// refused, and the log says why (the cause the verifier found), as for /api/csr, so that an operator sees someone
// trying the admin door; the token itself is never logged, and a request without credentials adds no line.
func TestRefusedTokensAreLogged(t *testing.T) {
	e := newEnv(t, nil)
	tokens := []struct {
		name, token, cause string
		status             int
	}{
		{"another audience", e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage},
			entrafake.WithAudience(entrafake.NewGUID())), "audience", http.StatusUnauthorized},
		{"another tenant", e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage},
			entrafake.FromTenant(entrafake.NewGUID())), "issuer", http.StatusUnauthorized},
		{"expired", e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCertificatesManage}, entrafake.Expired()),
			"expired", http.StatusUnauthorized},
		{"no admin role", e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCSRSelfService}), aliceOID, http.StatusForbidden},
	}
	for _, tc := range tokens {
		resp, _ := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", tc.token, "")
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	e.do(t, http.MethodGet, "/api/certificates", "", "")
	lines := e.logs.Records("admin auth refused")
	if len(lines) != len(tokens) {
		t.Fatalf("%d refusal lines, want %d: %v", len(lines), len(tokens), lines)
	}
	for i, tc := range tokens {
		if l := lines[i]; l["status"] != float64(tc.status) || l["path"] != "/api/certificates/revocation-sync" ||
			!strings.Contains(fmt.Sprint(l["err"]), tc.cause) {
			t.Errorf("%s: refusal line %v, want status %d and a cause naming %q", tc.name, l, tc.status, tc.cause)
		}
	}
	for _, tc := range tokens {
		if strings.Contains(e.logs.String(), tc.token) {
			t.Errorf("%s: the token was logged", tc.name)
		}
	}
	if len(e.sync.triggers) != 0 {
		t.Errorf("a refused token ran the sync: %v", e.sync.triggers)
	}
}

// TestFailedRevocationNamesWhoAsked: the store takes the revocation index entry (what the CRL publishes) but fails
// the record's write. The revocation is in force on the next CRL, and if the admin does not retry, the hourly sweep
// completes the record as "sweep": the audit must still say who asked for it, and why, when it fails.
func TestFailedRevocationNamesWhoAsked(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.insert(t, store.Record{Subject: "CN=victim"}, true)
	e.faults.Inject(storetest.Fault{Method: storetest.MethodUpdate})
	resp, body := e.do(t, http.MethodPost, "/api/certificates/"+rec.Serial+"/revoke", e.admin,
		`{"reason":"affiliationChanged","comment":"left the company"}`)
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	if list, _ := e.st.ListRevoked(t.Context()); len(list) != 1 || list[0].Serial != rec.Serial {
		t.Fatalf("revocation index %+v, want the entry the CRL publishes", list)
	}
	lines := e.logs.Records("audit: revocation failed")
	if len(lines) != 1 || lines[0]["serial"] != rec.Serial || lines[0]["requested_reason"] != "affiliationChanged" ||
		!strings.Contains(fmt.Sprint(lines[0]["by"]), aliceOID) || lines[0]["comment"] != "left the company" ||
		!strings.EqualFold(fmt.Sprint(lines[0]["client_app"]), e.fake.ClientAppID) {
		t.Errorf("failed revocation's audit lines %v", lines)
	}

	// A serial with no record is no revocation: nothing to audit.
	resp, body = e.do(t, http.MethodPost, "/api/certificates/ABCDEF0123/revoke", e.admin, `{"reason":"superseded"}`)
	wantProblem(t, resp, body, http.StatusNotFound, "certificate_not_found")
	if n := len(e.logs.Records("audit: revocation failed")); n != 1 {
		t.Errorf("%d failed-revocation lines after an unknown serial, want still 1", n)
	}
}

// TestKeyCompromiseIsVisible: a keyCompromise revocation marks the key, a write with who and when that the record
// alone does not show. The revoke answer and the certificate's details show it — also on a certificate Intune had
// revoked for another reason (the published reason stays), and on a sibling certificate for the same key, which is
// still valid and which the admin must see is compromised to revoke it too.
func TestKeyCompromiseIsVisible(t *testing.T) {
	e := newEnv(t, nil)
	const key = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e"
	stolen := e.insert(t, store.Record{Subject: "CN=stolen", PublicKey: key}, true)
	sibling := e.insert(t, store.Record{Subject: "CN=sibling", PublicKey: key}, true)
	other := e.insert(t, store.Record{Subject: "CN=other"}, true)

	resp, body := e.do(t, http.MethodPost, "/api/certificates/"+stolen.Serial+"/revoke", e.admin, `{"reason":"keyCompromise"}`)
	var v admin.CertificateView
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if v.KeyCompromised == nil || v.KeyCompromised.Serial != stolen.Serial || !strings.Contains(v.KeyCompromised.By, aliceOID) {
		t.Errorf("revoke answer's keyCompromised %+v, want the mark naming %s and the admin", v.KeyCompromised, stolen.Serial)
	}
	get := func(serial string) admin.CertificateView {
		t.Helper()
		resp, body := e.do(t, http.MethodGet, "/api/certificates/"+serial, e.admin, "")
		var v admin.CertificateView
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
			t.Fatalf("get %s: %d %s", serial, resp.StatusCode, body)
		}
		return v
	}
	if s := get(sibling.Serial); s.Status != string(store.StatusIssued) || s.KeyCompromised == nil ||
		s.KeyCompromised.Serial != stolen.Serial || s.KeyCompromised.MarkedAt.IsZero() {
		t.Errorf("sibling %s: status %s, keyCompromised %+v; want issued and the mark of %s", sibling.Serial, s.Status,
			s.KeyCompromised, stolen.Serial)
	}
	if o := get(other.Serial); o.KeyCompromised != nil {
		t.Errorf("a certificate for another key shows keyCompromised %+v", o.KeyCompromised)
	}

	// Revoked by Intune first: the published reason stays, the answer shows the key is marked all the same.
	intune := e.insert(t, store.Record{Subject: "CN=retired"}, true)
	if _, _, err := revocation.Revoke(t.Context(), e.st, intune.Serial, revocation.IntuneReason, "intune", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, body = e.do(t, http.MethodPost, "/api/certificates/"+intune.Serial+"/revoke", e.admin, `{"reason":"keyCompromise"}`)
	v = admin.CertificateView{}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
		t.Fatalf("revoke again: %d %s", resp.StatusCode, body)
	}
	if !v.AlreadyRevoked || v.RevocationReason != "cessationOfOperation" || v.KeyCompromised == nil || v.KeyCompromised.Serial != intune.Serial {
		t.Errorf("answer %+v, want alreadyRevoked, cessationOfOperation and the key marked", v)
	}

	// A mark that cannot be read is no view without it.
	e.faults.Inject(storetest.Fault{Method: storetest.MethodCompromised})
	resp, body = e.do(t, http.MethodGet, "/api/certificates/"+sibling.Serial, e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
}
