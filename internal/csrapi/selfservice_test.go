package csrapi_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

var (
	selfService = []string{entra.RoleCSRSelfService}
	requestDb   = []string{entra.RoleCSRRequestDb}

	oidExtSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidCommonName  = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidEmailInName = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// certUPNs reads the Microsoft UPN otherNames from a certificate's subjectAltName (crypto/x509 does not).
func certUPNs(t *testing.T, cert *x509.Certificate) []string {
	t.Helper()
	var out []string
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidExtSAN) {
			continue
		}
		var names []asn1.RawValue
		if _, err := asn1.Unmarshal(ext.Value, &names); err != nil {
			t.Fatalf("SAN extension: %v", err)
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var on struct {
				Type  asn1.ObjectIdentifier
				Value asn1.RawValue `asn1:"explicit,tag:0"`
			}
			if _, err := asn1.UnmarshalWithParams(n.FullBytes, &on, "tag:0"); err != nil {
				t.Fatalf("otherName: %v", err)
			}
			if !on.Type.Equal(oidUPN) {
				continue
			}
			var s string
			if _, err := asn1.UnmarshalWithParams(on.Value.Bytes, &s, "utf8"); err != nil {
				t.Fatalf("UPN value: %v", err)
			}
			out = append(out, s)
		}
	}
	return out
}

func deviceURI(id string) *url.URL { return &url.URL{Scheme: "IntuneDeviceId", Host: id} }

// TestIssueAppAndUserCallers: CSR.Request.Db callers — apps and users, v1 and v2 tokens — get any CSR the API
// profile allows, and the record says who asked.
func TestIssueAppAndUserCallers(t *testing.T) {
	e := newEnv(t)
	bob := newUser("bob")
	cases := []struct {
		name          string
		token         string
		wantRequester []string
	}{
		{"app v2", e.appToken(), []string{"app:" + e.tenant.ClientAppID, "oid:" + e.tenant.AppObjectID}},
		{"app v1", e.appToken(entrafake.V1()), []string{"app:" + e.tenant.ClientAppID, "oid:" + e.tenant.AppObjectID}},
		{"user v2", e.userToken(bob, requestDb), []string{"oid:" + bob.oid, "upn:" + bob.upn}},
		{"user v1", e.userToken(bob, requestDb, entrafake.V1()), []string{"oid:" + bob.oid, "upn:" + bob.upn}},
		// A user holding both roles is not held to the self-service rules.
		{"user with both roles", e.userToken(bob, []string{entra.RoleCSRSelfService, entra.RoleCSRRequestDb}),
			[]string{"oid:" + bob.oid, "upn:" + bob.upn}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Names no self-service caller could get: a kiosk's DNS name and someone else's UPN.
			der := csrDER(t, ecKey(t, "db-"+tc.name), testca.CSROptions{Subject: cn("kiosk-" + string(rune('a'+i))),
				DNSNames: []string{"kiosk.contoso.test"}, UPNs: []string{"svc-kiosk@contoso.test"}})
			cert := e.wantCert(e.post(tc.token, der))
			rec := e.record(cert)
			for _, part := range tc.wantRequester {
				if !slices.Contains(strings.Fields(rec.Requester), part) {
					t.Fatalf("requester = %q, want it to carry %q", rec.Requester, part)
				}
			}
			if rec.DeviceID != "" {
				t.Fatalf("device ID = %q for a Request.Db certificate", rec.DeviceID)
			}
			if rec.Endpoint != "api" || rec.Profile != "api" {
				t.Fatalf("record endpoint/profile = %q/%q, want api/api", rec.Endpoint, rec.Profile)
			}
			if !slices.Equal(cert.DNSNames, []string{"kiosk.contoso.test"}) ||
				!slices.Equal(certUPNs(t, cert), []string{"svc-kiosk@contoso.test"}) {
				t.Fatalf("certificate names = %v / %v", cert.DNSNames, certUPNs(t, cert))
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || cert.IsCA {
				t.Fatalf("EKU %v, CA %v: the profile decides, not the request", cert.ExtKeyUsage, cert.IsCA)
			}
		})
	}
}

// TestSelfServiceUserCertificates: a CSR.SelfService user gets a clientAuth certificate naming their own UPN,
// in the SAN or (without SANs) in the subject.
func TestSelfServiceUserCertificates(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	cases := []struct {
		name  string
		token string
		csr   testca.CSROptions
	}{
		{"UPN SAN, v2 token", e.userToken(alice, selfService), testca.CSROptions{UPNs: []string{alice.upn}}},
		{"UPN SAN, v1 token", e.userToken(alice, selfService, entrafake.V1()), testca.CSROptions{UPNs: []string{alice.upn}}},
		{"UPN SAN and CN = UPN", e.userToken(alice, selfService),
			testca.CSROptions{Subject: cn(alice.upn), UPNs: []string{alice.upn}}},
		{"UPN SAN in another case", e.userToken(alice, selfService), testca.CSROptions{UPNs: []string{strings.ToUpper(alice.upn)}}},
		{"CN = UPN, no SAN", e.userToken(alice, selfService), testca.CSROptions{Subject: cn(alice.upn)}},
		{"asks for clientAuth explicitly", e.userToken(alice, selfService),
			testca.CSROptions{UPNs: []string{alice.upn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := e.wantCert(e.post(tc.token, csrDER(t, ecKey(t, "ss-"+tc.name), tc.csr)))
			rec := e.record(cert)
			if rec.Requester != "oid:"+alice.oid+" upn:"+alice.upn {
				t.Fatalf("requester = %q", rec.Requester)
			}
			if rec.DeviceID != "" {
				t.Fatalf("device ID = %q on a user certificate", rec.DeviceID)
			}
			if len(tc.csr.UPNs) > 0 {
				if got := certUPNs(t, cert); len(got) != 1 || !strings.EqualFold(got[0], alice.upn) {
					t.Fatalf("certificate UPNs = %v, want %s", got, alice.upn)
				}
			} else if cert.Subject.CommonName != alice.upn || len(cert.Extensions) == 0 || len(certUPNs(t, cert)) != 0 {
				t.Fatalf("subject CN = %q, UPNs %v", cert.Subject.CommonName, certUPNs(t, cert))
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Fatalf("EKU = %v, want clientAuth only", cert.ExtKeyUsage)
			}
		})
	}
	// No device question; the account and role reads are cached for all of them.
	if reqs := e.graph.Requests(); len(reqs) != accountAndRoleReads || e.accountReads(alice.oid) != 1 ||
		len(e.graphCallsSince(0)) != 0 {
		t.Fatalf("user certificates made Graph calls: %+v, want alice's account and roles read once", reqs)
	}
}

// TestSelfServiceDeviceCertificates: a device certificate names a device the caller owns — by Entra device ID
// or Intune device ID in the CN, or by an IntuneDeviceId:// URI naming a managed device (only a managed device:
// TestSelfServiceIntuneURIIsManagedDeviceOnly) — and the record carries the device ID.
func TestSelfServiceDeviceCertificates(t *testing.T) {
	e := newEnv(t)
	alice := newUser("alice")
	entraDev := entrafake.NewGUID()
	e.graph.AddDevice(entraDev, alice.oid)
	intuneDev := entrafake.NewGUID()
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: intuneDev, UserID: alice.oid, AzureADDeviceID: entrafake.NewGUID()})
	uriDev := entrafake.NewGUID()
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: uriDev, UserID: alice.oid, AzureADDeviceID: entrafake.NewGUID()})
	tok := e.userToken(alice, selfService)

	cases := []struct {
		name   string
		csr    testca.CSROptions
		device string
	}{
		{"CN = owned Entra device ID", testca.CSROptions{Subject: cn(entraDev)}, entraDev},
		{"CN = owned Entra device ID, upper case", testca.CSROptions{Subject: cn(strings.ToUpper(entraDev))}, entraDev},
		{"CN = owned Intune device ID", testca.CSROptions{Subject: cn(intuneDev)}, intuneDev},
		{"SAN URI IntuneDeviceId://owned", testca.CSROptions{URIs: []*url.URL{deviceURI(uriDev)}}, uriDev},
		{"CN and URI name the same owned device", testca.CSROptions{Subject: cn(uriDev), URIs: []*url.URL{deviceURI(uriDev)}}, uriDev},
		{"URI plus CN = caller's UPN", testca.CSROptions{Subject: cn(alice.upn), URIs: []*url.URL{deviceURI(uriDev)}}, uriDev},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := e.wantCert(e.post(tok, csrDER(t, ecKey(t, "dev-"+tc.name), tc.csr)))
			rec := e.record(cert)
			if rec.DeviceID != tc.device {
				t.Fatalf("record device ID = %q, want %q", rec.DeviceID, tc.device)
			}
			if !strings.Contains(rec.Requester, "oid:"+alice.oid) {
				t.Fatalf("requester = %q, want alice's object ID", rec.Requester)
			}
			if len(tc.csr.URIs) > 0 && (len(cert.URIs) != 1 || !strings.EqualFold(cert.URIs[0].Host, tc.device)) {
				t.Fatalf("certificate URIs = %v", cert.URIs)
			}
		})
	}
	// Every ownership question went to Graph with the fake's token; nothing else was asked.
	for _, r := range e.graph.Requests() {
		if r.Auth != "Bearer "+e.graph.Token || r.Method != http.MethodGet {
			t.Fatalf("unexpected Graph call %+v", r)
		}
	}
}

// TestSelfServiceRefusals: anything a CSR.SelfService caller asks for that is not bound to them is 403 with a
// stable code, before any signature (no record).
func TestSelfServiceRefusals(t *testing.T) {
	e := newEnv(t)
	alice, mallory := newUser("alice"), newUser("mallory")
	aliceDev, malloryDev := entrafake.NewGUID(), entrafake.NewGUID()
	e.graph.AddDevice(aliceDev, alice.oid)
	e.graph.AddDevice(malloryDev, mallory.oid)
	malloryIntune := entrafake.NewGUID()
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: malloryIntune, UserID: mallory.oid, AzureADDeviceID: malloryDev})
	aliceIntune := entrafake.NewGUID() // a managed device alice owns: only the URI's shape refuses the cases naming it
	e.graph.AddManagedDevice(entrafake.ManagedDevice{ID: aliceIntune, UserID: alice.oid})
	tok := e.userToken(alice, selfService)

	type o = testca.CSROptions
	us := func(u ...*url.URL) []*url.URL { return u }
	upns := []string{alice.upn}
	withName := func(n pkix.Name, extra ...pkix.AttributeTypeAndValue) pkix.Name {
		n.ExtraNames = append(n.ExtraNames, extra...)
		return n
	}
	cases := []struct {
		name  string
		token string
		csr   testca.CSROptions
		code  string
	}{
		{"someone else's UPN in the SAN", tok, testca.CSROptions{UPNs: []string{mallory.upn}}, csrapi.CodeNotSelf},
		{"own and someone else's UPN", tok, testca.CSROptions{UPNs: []string{alice.upn, mallory.upn}}, csrapi.CodeNotSelf},
		{"someone else's UPN as CN", tok, testca.CSROptions{Subject: cn(mallory.upn)}, csrapi.CodeNotSelf},
		{"no name at all bound to the caller", tok, testca.CSROptions{Subject: cn("laptop-17")}, csrapi.CodeNotSelf},
		{"own UPN SAN but someone else's CN", tok,
			testca.CSROptions{Subject: cn(mallory.upn), UPNs: []string{alice.upn}}, csrapi.CodeNotSelf},
		// pkix.Name keeps the last CN, so the victim's comes first where most relying parties look.
		{"two CNs, the caller's last", tok, testca.CSROptions{Subject: withName(pkix.Name{},
			pkix.AttributeTypeAndValue{Type: oidCommonName, Value: mallory.upn},
			pkix.AttributeTypeAndValue{Type: oidCommonName, Value: alice.upn})}, csrapi.CodeNotSelf},
		{"someone else's e-mail address in the subject", tok, testca.CSROptions{Subject: withName(cn(alice.upn),
			pkix.AttributeTypeAndValue{Type: oidEmailInName, Value: mallory.upn})}, csrapi.CodeNotSelf},
		{"user ID attribute in the subject", tok, o{Subject: withName(cn(alice.upn),
			pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "mallory"})},
			csrapi.CodeNotSelf},
		// A self-service subject is one CN and nothing else: relying parties map by attributes the caller would
		// otherwise choose (issue 11 point 8).
		{"organisation in the subject", tok, o{Subject: pkix.Name{CommonName: alice.upn, Organization: []string{"Contoso"}}},
			csrapi.CodeNotSelf},
		{"organisational unit in the subject", tok, o{Subject: pkix.Name{CommonName: alice.upn,
			OrganizationalUnit: []string{"Domain Admins"}}}, csrapi.CodeNotSelf},
		{"serial number in the subject", tok, o{Subject: pkix.Name{CommonName: alice.upn, SerialNumber: "1"}}, csrapi.CodeNotSelf},
		{"domain components in the subject", tok, o{Subject: withName(cn(alice.upn),
			pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: "contoso"})},
			csrapi.CodeNotSelf},
		{"title in the subject", tok, o{Subject: withName(cn(alice.upn),
			pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 12}, Value: "CEO"})}, csrapi.CodeNotSelf},
		// One attribute alone is no better than one beside a CN.
		{"organisation alone beside own UPN", tok, o{Subject: pkix.Name{Organization: []string{"Domain Admins"}}, UPNs: upns},
			csrapi.CodeNotSelf},
		{"user ID alone beside own device", tok, o{Subject: withName(pkix.Name{},
			pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "mallory"}),
			URIs: us(deviceURI(aliceIntune))}, csrapi.CodeNotSelf},
		{"device certificate with an organisation", tok, o{Subject: pkix.Name{CommonName: aliceDev,
			Organization: []string{"Contoso"}}}, csrapi.CodeNotSelf},
		{"DNS name", tok, o{UPNs: upns, DNSNames: []string{"alice.contoso.test"}}, csrapi.CodeNotSelf},
		{"e-mail SAN", tok, o{UPNs: upns, Emails: []string{alice.upn}}, csrapi.CodeNotSelf},
		{"device URI plus UPN", tok, o{UPNs: upns, URIs: us(deviceURI(aliceDev))}, csrapi.CodeNotSelf},
		{"CN and URI name different devices", tok, o{Subject: cn(aliceDev), URIs: us(deviceURI(malloryDev))},
			csrapi.CodeNotSelf},
		// The profile allows any URI (uri=*), but self-service binds exactly IntuneDeviceId://<device ID>.
		{"another scheme naming an owned device", tok, o{URIs: us(&url.URL{Scheme: "https", Host: aliceIntune})},
			csrapi.CodeNotSelf},
		{"own device URI but someone else's CN", tok, o{Subject: cn(mallory.upn), URIs: us(deviceURI(aliceDev))},
			csrapi.CodeNotSelf},
		{"CN = someone else's Entra device", tok, o{Subject: cn(malloryDev)}, csrapi.CodeNotOwner},
		{"CN = someone else's Intune device", tok, o{Subject: cn(malloryIntune)}, csrapi.CodeNotOwner},
		{"CN = unknown device", tok, o{Subject: cn(entrafake.NewGUID())}, csrapi.CodeNotOwner},
		{"URI names someone else's device", tok, o{URIs: us(deviceURI(malloryDev))}, csrapi.CodeNotOwner},
		{"app token with the self-service role", e.tenant.MintApp(selfService), o{Subject: cn(aliceDev)},
			csrapi.CodeForbidden},
		{"user token without a UPN", e.userToken(user{oid: alice.oid}, selfService), o{Subject: cn("nobody")},
			csrapi.CodeNotSelf},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(tc.token, csrDER(t, ecKey(t, "refuse"), tc.csr))
			wantProblem(t, r, http.StatusForbidden, tc.code)
		})
	}
	// A device URI that is not exactly IntuneDeviceId://<GUID> (user info, a path, a query, a fragment, the opaque
	// form, no device ID or one that is not a GUID) is refused by policy, at every door, before any ownership question:
	// it does not name one device the way relying parties read it.
	for name, u := range map[string]*url.URL{
		"user info":        {Scheme: "IntuneDeviceId", User: url.User(malloryDev), Host: aliceDev},
		"a path":           {Scheme: "IntuneDeviceId", Host: aliceDev, Path: "/" + malloryDev},
		"a query":          {Scheme: "IntuneDeviceId", Host: aliceIntune, RawQuery: "id=" + malloryIntune},
		"an empty query":   {Scheme: "IntuneDeviceId", Host: aliceIntune, ForceQuery: true},
		"a fragment":       {Scheme: "IntuneDeviceId", Host: aliceIntune, Fragment: malloryIntune},
		"the opaque form":  {Scheme: "IntuneDeviceId", Opaque: aliceDev},
		"no device ID":     {Scheme: "IntuneDeviceId"},
		"an ID not a GUID": deviceURI("laptop-17"),
	} {
		r := e.post(tok, csrDER(t, ecKey(t, "refuse"), o{UPNs: upns, URIs: us(u)}))
		if p := wantProblem(t, r, http.StatusBadRequest, string(policy.CodeSAN)); !strings.Contains(p.Detail, "does not name one device") {
			t.Errorf("device URI with %s: detail %q", name, p.Detail)
		}
	}
	// A SID URI is refused by the api profile itself (no identity_uris opt-in), whoever asks.
	r := e.post(tok, csrDER(t, ecKey(t, "refuse"), o{UPNs: upns, URIs: us(testca.IntuneSIDURI("S-1-5-21-1-2-3-1001"))}))
	wantProblem(t, r, http.StatusBadRequest, string(policy.CodeSAN))
	// A certificate names one device: two IntuneDeviceId URIs are refused by policy before any ownership
	// question, even when both name alice's own managed device.
	for _, uris := range [][]*url.URL{us(deviceURI(aliceDev), deviceURI(malloryDev)), us(deviceURI(aliceIntune), deviceURI(aliceIntune))} {
		wantProblem(t, e.post(tok, csrDER(t, ecKey(t, "refuse"), o{URIs: uris})), http.StatusBadRequest, string(policy.CodeSAN))
	}
	// The caller's own UPN with a second value after it inside the same otherName: encoding/asn1 would read only
	// the first, and the entry is copied into the certificate verbatim, so the second would be signed unchecked.
	r = e.post(tok, csrDER(t, ecKey(t, "refuse"), o{ExtraExtensions: []pkix.Extension{upnWithTrailer(t, alice.upn, mallory.upn)}}))
	wantProblem(t, r, http.StatusBadRequest, string(policy.CodeMalformedCSR))
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d after refused self-service requests, want 0", n)
	}
	// The IntuneDeviceId URIs above are alice's own device, well-formed: issued.
	e.wantCert(e.post(tok, csrDER(t, ecKey(t, "own-device"), o{URIs: us(deviceURI(aliceIntune))})))

	// A profile that allows IP addresses binds no self-service caller to one.
	withIP, err := policy.ParseProfile("api", apiProfile+";ip=*")
	if err != nil {
		t.Fatal(err)
	}
	ipEnv := newEnv(t, func(c *csrapi.Config) { c.Profile = withIP })
	wantProblem(t, ipEnv.post(ipEnv.userToken(alice, selfService), csrDER(t, ecKey(t, "ip"),
		o{UPNs: upns, IPs: []net.IP{net.ParseIP("10.0.0.7")}})), http.StatusForbidden, csrapi.CodeNotSelf)
}

// TestSelfServiceClientAuthOnly: self-service certificates are clientAuth only. With the default profile a wider
// EKU is refused by policy (400); with a profile that allows more, the self-service rule refuses it (403) while a
// CSR.Request.Db caller may have it.
func TestSelfServiceClientAuthOnly(t *testing.T) {
	t.Run("default profile", func(t *testing.T) {
		e := newEnv(t)
		alice := newUser("alice")
		der := csrDER(t, ecKey(t, "eku"), testca.CSROptions{UPNs: []string{alice.upn},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		wantProblem(t, e.post(e.userToken(alice, selfService), der), http.StatusBadRequest, string(policy.CodeExtKeyUsage))
	})
	t.Run("wider profile", func(t *testing.T) {
		wide, err := policy.ParseProfile("api", "validity=365d;ku=digitalSignature;eku=clientAuth,emailProtection;upn=*;uri=*")
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, func(c *csrapi.Config) { c.Profile = wide })
		alice := newUser("alice")
		tok := e.userToken(alice, selfService)
		email := csrDER(t, ecKey(t, "eku-email"), testca.CSROptions{UPNs: []string{alice.upn},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
		wantProblem(t, e.post(tok, email), http.StatusForbidden, csrapi.CodeNotClientAuth)
		// No EKU requested means the profile's (both): also not clientAuth-only.
		wantProblem(t, e.post(tok, csrDER(t, ecKey(t, "eku-none"), testca.CSROptions{UPNs: []string{alice.upn}})),
			http.StatusForbidden, csrapi.CodeNotClientAuth)
		if n := e.records(""); n != 0 {
			t.Fatalf("records = %d, want 0", n)
		}
		// Narrowed to clientAuth it is fine.
		cert := e.wantCert(e.post(tok, csrDER(t, ecKey(t, "eku-client"), testca.CSROptions{UPNs: []string{alice.upn},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})))
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Fatalf("EKU = %v", cert.ExtKeyUsage)
		}
		// A Request.Db caller gets what the profile allows.
		cert = e.wantCert(e.post(e.appToken(), email))
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}) {
			t.Fatalf("EKU = %v", cert.ExtKeyUsage)
		}
	})
}

// TestSelfServiceGraphDown: when Graph cannot answer an ownership question the caller gets 503 with Retry-After
// — never a certificate — and the next request after recovery succeeds (errors are not cached as "no").
func TestSelfServiceGraphDown(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError,
		http.StatusTooManyRequests, http.StatusUnauthorized} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			e := newEnv(t)
			alice := newUser("alice")
			dev := entrafake.NewGUID()
			e.graph.AddDevice(dev, alice.oid)
			tok := e.userToken(alice, selfService)
			der := csrDER(t, ecKey(t, "graph-down"), testca.CSROptions{Subject: cn(dev)})

			e.graph.SetFault(entrafake.Fault{Status: status})
			r := e.post(tok, der)
			wantProblem(t, r, http.StatusServiceUnavailable, csrapi.CodeUnavailable)
			wantRetryAfter(t, r, 1)
			if len(e.graph.Requests()) == 0 {
				t.Fatal("no Graph call was made: the answer did not come from the ownership check")
			}
			if n := e.records(""); n != 0 {
				t.Fatalf("records = %d while Graph is down, want 0", n)
			}

			e.graph.SetFault(entrafake.Fault{})
			rec := e.record(e.wantCert(e.post(tok, der)))
			if rec.DeviceID != dev {
				t.Fatalf("device ID = %q, want %q", rec.DeviceID, dev)
			}
		})
	}
}

// TestSelfServiceWithoutOwnership: with no Graph client configured, device self-service is refused (403), while
// user certificates still work.
func TestSelfServiceWithoutOwnership(t *testing.T) {
	e := newEnv(t, func(c *csrapi.Config) { c.Ownership = nil })
	alice := newUser("alice")
	tok := e.userToken(alice, selfService)
	wantProblem(t, e.post(tok, csrDER(t, ecKey(t, "no-graph"), testca.CSROptions{Subject: cn(entrafake.NewGUID())})),
		http.StatusForbidden, csrapi.CodeNotOwner)
	e.wantCert(e.post(tok, csrDER(t, ecKey(t, "no-graph-user"), testca.CSROptions{UPNs: []string{alice.upn}})))
	if n := e.records(store.StatusIssued); n != 1 {
		t.Fatalf("issued = %d, want 1", n)
	}
}

// upnWithTrailer is a subjectAltName extension with one otherName UPN entry whose SEQUENCE carries a second
// [0] value (another UPN) after the first.
func upnWithTrailer(t *testing.T, upn, hidden string) pkix.Extension {
	t.Helper()
	enc := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	explicit0 := func(s string) []byte {
		return enc(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
			Bytes: enc(asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(s)})})
	}
	body := append(enc(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}), explicit0(upn)...)
	body = append(body, explicit0(hidden)...)
	entry := enc(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: body})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: enc(asn1.RawValue{Tag: asn1.TagSequence,
		IsCompound: true, Bytes: entry})}
}
