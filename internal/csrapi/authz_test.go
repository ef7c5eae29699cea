package csrapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/testca"
)

// TestSelfServiceNeedsTheUPNClaim: a token whose only user name is the mutable preferred_username (v2 without the
// upn optional claim) or unique_name (v1) binds nothing; the same user with the upn claim gets the certificate.
func TestSelfServiceNeedsTheUPNClaim(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	csr := testca.CSROptions{UPNs: []string{alice.upn}}
	for name, tok := range map[string]string{
		"v2 preferred_username only": e.userToken(alice, selfService, entrafake.WithoutClaim("upn")),
		"v1 unique_name only":        e.userToken(alice, selfService, entrafake.V1(), entrafake.WithoutClaim("upn")),
	} {
		t.Run(name, func(t *testing.T) {
			wantProblem(t, e.post(tok, csrDER(t, ecKey(t, "noupn"), csr)), http.StatusForbidden, csrapi.CodeNotSelf)
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d, want 0", n)
	}
	e.wantCert(e.post(e.userToken(alice, selfService), csrDER(t, ecKey(t, "noupn"), csr)))
}

// TestGuestsRefusedUnlessAllowed: B2B guests are refused whatever their role, unless AllowGuests; a guest's
// preferred_username never binds a self-service certificate even then.
func TestGuestsRefusedUnlessAllowed(t *testing.T) {
	home := entrafake.NewGUID()
	guest := newUser("guest")
	dbCSR := testca.CSROptions{Subject: cn("svc-guest")}
	selfCSR := testca.CSROptions{UPNs: []string{guest.upn}}

	e := newEnv(t)
	for _, roles := range [][]string{requestDb, selfService} {
		wantProblem(t, e.post(e.userToken(guest, roles, entrafake.Guest(home)), csrDER(t, ecKey(t, "guest"), dbCSR)),
			http.StatusForbidden, csrapi.CodeGuest)
	}
	// acct=1 alone (idp missing) is enough.
	wantProblem(t, e.post(e.userToken(guest, requestDb, entrafake.WithClaim("acct", 1)), csrDER(t, ecKey(t, "guest"), dbCSR)),
		http.StatusForbidden, csrapi.CodeGuest)
	// The token's guest signals refuse on their own, also when Graph lists the user as a member (an external user
	// an administrator made userType Member still signs in at another tenant's identity provider).
	member := newUser("external-member")
	e.userToken(member, requestDb) // Graph now has the user, as a member
	wantProblem(t, e.post(e.userToken(member, requestDb, entrafake.Guest(home)), csrDER(t, ecKey(t, "guest"), dbCSR)),
		http.StatusForbidden, csrapi.CodeGuest)
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d, want 0", n)
	}

	allowed := newEnv(t, func(c *csrapi.Config) { c.AllowGuests = true })
	allowed.wantCert(allowed.post(allowed.userToken(guest, requestDb, entrafake.Guest(home)), csrDER(t, ecKey(t, "guest"), dbCSR)))
	// The guest's roles were read for CSR.Request.Db, before the self-service role was assigned: that answer is read
	// again once the negative TTL has passed.
	allowed.clock.Advance(entra.DefaultNegativeTTL)
	wantProblem(t, allowed.post(allowed.userToken(guest, selfService, entrafake.Guest(home)), csrDER(t, ecKey(t, "guest"), selfCSR)),
		http.StatusForbidden, csrapi.CodeNotSelf)
}

// TestClientAppAllowList: with ClientApps set, tokens obtained by any other client application (azp/appid) are
// refused with 403 before the body is read; the listed client, in any case, is served.
func TestClientAppAllowList(t *testing.T) {
	csr := testca.CSROptions{Subject: cn("svc-clientapp")}
	other := newEnv(t, func(c *csrapi.Config) { c.ClientApps = []string{entrafake.NewGUID()} })
	for name, tok := range map[string]string{
		"v2 user": other.userToken(newUser("bob"), requestDb),
		"v1 user": other.userToken(newUser("bob"), requestDb, entrafake.V1()),
		"app":     other.appToken(),
	} {
		t.Run(name, func(t *testing.T) {
			wantProblem(t, other.post(tok, csrDER(t, ecKey(t, "clientapp"), csr)), http.StatusForbidden, csrapi.CodeClientApp)
		})
	}
	if n := other.records(""); n != 0 {
		t.Fatalf("records = %d, want 0", n)
	}
	const listedApp = "0a1b2c3d-0000-4000-8000-00000000000a"
	listed := newEnv(t, func(c *csrapi.Config) { c.ClientApps = []string{listedApp} })
	for name, tok := range map[string]string{
		"v2 user": listed.userToken(newUser("bob"), requestDb, entrafake.WithClaim("azp", strings.ToUpper(listedApp))),
		"v1 user": listed.userToken(newUser("bob"), requestDb, entrafake.V1(), entrafake.WithClaim("appid", listedApp)),
	} {
		t.Run("listed "+name, func(t *testing.T) {
			listed.wantCert(listed.post(tok, csrDER(t, ecKey(t, "clientapp-"+name), csr)))
		})
	}
}

// TestDbCallerNamesFollowTheProfile: a CSR.Request.Db caller gets exactly what the profile's allow-lists allow —
// nothing outside the DNS patterns, and no SID or IntuneDeviceId URI without the profile's identity_uris opt-in.
func TestDbCallerNamesFollowTheProfile(t *testing.T) {
	prof, err := policy.ParseProfile("api", "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*.svc.contoso.test;upn=svc-*@contoso.test")
	if err == nil {
		t.Fatalf("a partial local-part wildcard must be refused, got %+v", prof)
	}
	prof, err = policy.ParseProfile("api", "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*.svc.contoso.test;uri=https://*.svc.contoso.test")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *csrapi.Config) { c.Profile = prof })
	tok := e.appToken()
	dev := &url.URL{Scheme: "IntuneDeviceId", Host: entrafake.NewGUID()}
	for name, csr := range map[string]testca.CSROptions{
		"DNS outside":     {DNSNames: []string{"dc01.contoso.test"}},
		"DNS two labels":  {DNSNames: []string{"a.b.svc.contoso.test"}},
		"UPN":             {DNSNames: []string{"web.svc.contoso.test"}, UPNs: []string{"administrator@contoso.test"}},
		"SID URI":         {DNSNames: []string{"web.svc.contoso.test"}, URIs: []*url.URL{testca.IntuneSIDURI("S-1-5-21-1-2-3-500")}},
		"device URI":      {DNSNames: []string{"web.svc.contoso.test"}, URIs: []*url.URL{dev}},
		"CN as a UPN":     {Subject: cn("administrator@contoso.test")},
		"CN as a foreign": {Subject: cn("dc01.contoso.test")},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.post(tok, csrDER(t, ecKey(t, "db-"+name), csr))
			if r.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.StatusCode, r.body)
			}
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d, want 0", n)
	}
	cert := e.wantCert(e.post(tok, csrDER(t, ecKey(t, "db-ok"), testca.CSROptions{Subject: cn("web.svc.contoso.test"),
		DNSNames: []string{"web.svc.contoso.test"}, URIs: []*url.URL{{Scheme: "https", Host: "web.svc.contoso.test"}}})))
	if len(cert.DNSNames) != 1 || len(cert.URIs) != 1 {
		t.Fatalf("names %v %v", cert.DNSNames, cert.URIs)
	}
}
