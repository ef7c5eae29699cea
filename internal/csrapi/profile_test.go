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

// TestSelfServiceRecordsTheEndpointsOwnProfile: a self-service request under the endpoint's own profile is not a
// "chosen" profile, whatever that profile is called — its record says endpoint "api" and a retry is a replay. (The
// self-service copy of the profile, which adds IntuneDeviceId URIs, once made it look chosen.)
func TestSelfServiceRecordsTheEndpointsOwnProfile(t *testing.T) {
	corp, err := policy.ParseProfile("corp", "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*;email=*;upn=*;uri=*")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *csrapi.Config) { c.Profile = corp })
	alice := newUser("alice")
	tok := e.userToken(alice, selfService)
	der := csrDER(t, ecKey(t, "ss-corp"), testca.CSROptions{UPNs: []string{alice.upn}})
	cert := e.wantCert(e.post(tok, der))
	if rec := e.record(cert); rec.Endpoint != "api" || rec.Profile != "corp" {
		t.Errorf("record endpoint/profile = %q/%q, want api/corp", rec.Endpoint, rec.Profile)
	}
	if again := e.wantCert(e.post(tok, der)); !again.Equal(cert) {
		t.Error("a retry of the same self-service CSR was not a replay")
	}
}
