package csrapi_test

import (
	"crypto/x509"
	"net/http"
	"slices"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/testca"
)

// TestChosenProfile: a CSR.Request.Db caller may choose one of the configured further profiles with ?profile=
// (the certificate console's "server certificate"); the certificate and record follow that profile, the same CSR
// under another profile is a new certificate, and unknown profiles or self-service callers are refused.
func TestChosenProfile(t *testing.T) {
	server, err := policy.ParseProfile("server", "validity=90d;eku=serverAuth;dns=*.contoso.test")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *csrapi.Config) { c.Choices = map[string]*policy.Profile{"server": server} })
	der := csrDER(t, ecKey(t, "web"), testca.CSROptions{Subject: cn("web.contoso.test"), DNSNames: []string{"web.contoso.test"}})
	tok := e.appToken()

	chosen := e.wantCert(e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok), query: "?profile=server"}))
	if !slices.Equal(chosen.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("chosen profile EKU = %v, want serverAuth", chosen.ExtKeyUsage)
	}
	if rec := e.record(chosen); rec.Profile != "server" || rec.Endpoint != "server" {
		t.Errorf("record profile %q endpoint %q, want server", rec.Profile, rec.Endpoint)
	}
	def := e.wantCert(e.post(tok, der))
	if def.Equal(chosen) || slices.Contains(def.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Error("the same CSR under the default profile replayed the chosen profile's certificate")
	}
	if rec := e.record(def); rec.Endpoint != "api" {
		t.Errorf("default profile record endpoint %q, want api", rec.Endpoint)
	}
	wantProblem(t, e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok), query: "?profile=nope"}),
		http.StatusBadRequest, csrapi.CodeProfile)
	self := e.userToken(newUser("sam"), []string{entra.RoleCSRSelfService})
	wantProblem(t, e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(self), query: "?profile=server"}),
		http.StatusForbidden, csrapi.CodeForbidden)
}
