package scep_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// named is the SAN set of the certificates renewed below.
var named = testca.CSROptions{Subject: pkix.Name{CommonName: "router-7"}, DNSNames: []string{"router-7.corp.example"},
	UPNs: []string{"router-7@corp.example"}, ChallengePassword: staticSecret}

// enrollNamed enrolls key n on endpoint with the names of o.
func enrollNamed(t *testing.T, e *env, endpoint string, n int, o testca.CSROptions) enrolled {
	t.Helper()
	c := e.client(t, n, o.Subject.CommonName)
	req := c.PKCSReq(t, testca.CSR(t, c.Key, o))
	return enrolled{client: c, cert: wantSuccess(t, e.pki(t, endpoint, req)), req: req}
}

// renewWith sends a RenewalReq for key 7 (or the given key) and the names of o, signed with d's certificate, to
// endpoint. The transaction ID follows the new key, so renewals that must not replay each other use other keys.
func renewWith(t *testing.T, e *env, endpoint string, d enrolled, o testca.CSROptions, key ...int) *testca.CertRep {
	t.Helper()
	o.ChallengePassword = ""
	k := 7
	if len(key) > 0 {
		k = key[0]
	}
	csr := testca.CSR(t, testca.RSAKey(t, k), o)
	return e.pki(t, endpoint, d.client.RenewalReq(t, csr, d.cert, d.client.Key))
}

// TestRenewalNames: a renewal re-certifies the old certificate's names or fewer, never more; the new record links
// the old certificate, keeps its requester and the chain's start.
func TestRenewalNames(t *testing.T) {
	t.Parallel()
	inWindow := int64(profileValidity/2 + 24*time.Hour)
	more := []testca.CSROptions{
		{Subject: named.Subject, DNSNames: []string{"router-7.corp.example", "dc01.corp.example"}, UPNs: named.UPNs},
		{Subject: named.Subject, DNSNames: named.DNSNames, UPNs: []string{"administrator@corp.example"}},
		{Subject: named.Subject, DNSNames: named.DNSNames, UPNs: named.UPNs,
			URIs: []*url.URL{testca.IntuneSIDURI("S-1-5-21-1-2-3-500")}},
		{Subject: named.Subject, DNSNames: []string{"ROUTER-7.corp.example"}}, // compared as encoded
	}
	for i, o := range more {
		e := newEnv(t, envOptions{})
		d := enrollNamed(t, e, epStatic, 0, named)
		e.offset.Store(inWindow)
		wantFailure(t, renewWith(t, e, epStatic, d, o), testca.FailBadRequest)
		if n := len(e.records(t)); n != 1 {
			t.Fatalf("case %d: %d records after a refused renewal, want 1", i, n)
		}
	}

	// A certificate without subject alternative names renews without them: it had none to give.
	e := newEnv(t, envOptions{})
	bare := testca.CSROptions{Subject: named.Subject, ChallengePassword: staticSecret}
	d := enrollNamed(t, e, epStatic, 0, bare)
	e.offset.Store(inWindow)
	wantFailure(t, renewWith(t, e, epStatic, d, testca.CSROptions{Subject: named.Subject, DNSNames: named.DNSNames}),
		testca.FailBadRequest)
	wantSuccess(t, renewWith(t, e, epStatic, d, bare, 8))

	e = newEnv(t, envOptions{})
	d = enrollNamed(t, e, epStatic, 0, named)
	e.offset.Store(inWindow)
	for i, o := range []testca.CSROptions{named, {Subject: named.Subject, DNSNames: named.DNSNames}} {
		name := []string{"same names", "a subset"}[i]
		cert := wantSuccess(t, renewWith(t, e, epStatic, d, o, 7+i))
		rec, err := e.mem.Get(context.Background(), hexSerial(cert))
		if err != nil {
			t.Fatal(err)
		}
		old, _ := e.mem.Get(context.Background(), hexSerial(d.cert))
		if rec.RenewedFrom != old.Serial || rec.Requester != old.Requester || !rec.ChainStarted.Equal(old.Created) {
			t.Fatalf("%s: record renewed_from %q requester %q chain_started %v, want %q %q %v", name, rec.RenewedFrom,
				rec.Requester, rec.ChainStarted, old.Serial, old.Requester, old.Created)
		}
		if len(rec.SANs) != len(o.DNSNames)+len(o.UPNs) {
			t.Fatalf("%s: record names %v", name, rec.SANs)
		}
	}
}

// TestRenewalKeepsOneIdentityOfEachKind: a certificate with a SID URI and an IntuneDeviceId URI renews with them,
// while a renewal that repeats one (the names-subset check compares names, not how often they appear) is refused
// by policy like a first enrollment: a certificate names at most one account and one device.
func TestRenewalKeepsOneIdentityOfEachKind(t *testing.T) {
	t.Parallel()
	sid := testca.IntuneSIDURI("S-1-5-21-1-2-3-1001")
	dev := &url.URL{Scheme: "IntuneDeviceId", Host: "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"}
	o := named
	o.URIs = []*url.URL{sid, dev}
	e := newEnv(t, envOptions{})
	d := enrollNamed(t, e, epStatic, 0, o)
	e.offset.Store(int64(profileValidity/2 + 24*time.Hour))
	twice := o
	twice.URIs = []*url.URL{sid, dev, sid}
	wantFailure(t, renewWith(t, e, epStatic, d, twice, 8), testca.FailBadRequest)
	cert := wantSuccess(t, renewWith(t, e, epStatic, d, o))
	// Go prints a parsed URI's scheme in lower case.
	if len(cert.URIs) != 2 || cert.URIs[0].String() != sid.String() || !strings.EqualFold(cert.URIs[1].String(), dev.String()) {
		t.Fatalf("renewed certificate URIs %v, want %v %v", cert.URIs, sid, dev)
	}
}

// TestRenewalUsages: a renewal re-certifies the old certificate's usages, never more: a certificate that asked
// for clientAuth and digitalSignature alone comes back with those alone although the profile allows serverAuth
// and keyEncipherment, and a renewal asking only for a usage the old certificate lacked is refused.
func TestRenewalUsages(t *testing.T) {
	t.Parallel()
	inWindow := int64(profileValidity/2 + 24*time.Hour)
	wide, err := policy.ParseProfile("wide",
		"validity=30d;ku=digitalSignature,keyEncipherment;eku=clientAuth,serverAuth;dns=*;upn=*")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{endpoints: []*scep.Endpoint{
		{Name: epStatic, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: wide}}})
	narrow := named
	narrow.KeyUsage, narrow.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	d := enrollNamed(t, e, epStatic, 0, narrow)
	if d.cert.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(d.cert.ExtKeyUsage, narrow.ExtKeyUsage) {
		t.Fatalf("first certificate: key usage %b, EKU %v", d.cert.KeyUsage, d.cert.ExtKeyUsage)
	}
	e.offset.Store(inWindow)

	serverOnly := named
	serverOnly.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	wantFailure(t, renewWith(t, e, epStatic, d, serverOnly, 8), testca.FailBadRequest)

	cert := wantSuccess(t, renewWith(t, e, epStatic, d, named, 9)) // asks for nothing: the profile's usages
	if cert.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(cert.ExtKeyUsage, narrow.ExtKeyUsage) {
		t.Fatalf("renewed certificate: key usage %b, EKU %v; want the old certificate's %b, %v", cert.KeyUsage,
			cert.ExtKeyUsage, d.cert.KeyUsage, d.cert.ExtKeyUsage)
	}
}

// TestRenewalEndpoint: an endpoint renews its own certificates and those of the endpoints it lists, nothing else.
func TestRenewalEndpoint(t *testing.T) {
	t.Parallel()
	inWindow := int64(profileValidity/2 + 24*time.Hour)
	endpoints := func(renewFrom ...string) []*scep.Endpoint {
		return []*scep.Endpoint{
			{Name: epStatic, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t)},
			{Name: epChain, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t),
				RenewFrom: renewFrom},
		}
	}
	e := newEnv(t, envOptions{endpoints: endpoints()})
	d := enrollNamed(t, e, epStatic, 0, named)
	e.offset.Store(inWindow)
	wantFailure(t, renewWith(t, e, epChain, d, named), testca.FailBadRequest)

	e = newEnv(t, envOptions{endpoints: endpoints(epStatic)})
	d = enrollNamed(t, e, epStatic, 0, named)
	e.offset.Store(inWindow)
	wantSuccess(t, renewWith(t, e, epChain, d, named))
}

// TestRenewalRefusesAPICertificateOfTheEndpointsName: /api/csr records a certificate issued under a chosen profile
// with the profile's name as its endpoint, which may well be the name of a SCEP endpoint too (both named after the
// profile "server", say). Such a certificate was authorized by an Entra token for its caller, not by the endpoint's
// secret: the endpoint does not renew it, whatever its record's endpoint says.
func TestRenewalRefusesAPICertificateOfTheEndpointsName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enrollNamed(t, e, epStatic, 0, named)
	ctx := context.Background()
	rec, err := e.mem.Get(ctx, hexSerial(d.cert))
	if err != nil {
		t.Fatal(err)
	}
	rec.Source = store.SourceAPI // as /api/csr records it, with the endpoint's name as its profile's
	if err := e.mem.Update(ctx, rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	e.offset.Store(int64(profileValidity/2 + 24*time.Hour))
	wantFailure(t, renewWith(t, e, epStatic, d, named), testca.FailBadRequest)
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("%d records after the refused renewal, want 1", n)
	}
}

// TestRenewalChainMaximum: a chain is renewed up to its maximum from the first issuance, its certificates end by
// then, and past it the renewal is refused.
func TestRenewalChainMaximum(t *testing.T) {
	t.Parallel()
	const chainMax = 20 * 24 * time.Hour
	e := newEnv(t, envOptions{endpoints: []*scep.Endpoint{{Name: epStatic, Challenge: scep.ChallengeStatic,
		Secret: []byte(staticSecret), Profile: testProfile(t), RenewalMax: chainMax}}})
	d := enrollNamed(t, e, epStatic, 0, named)
	first, _ := e.mem.Get(context.Background(), hexSerial(d.cert))

	e.offset.Store(int64(16 * 24 * time.Hour)) // in the window (last 15 of 30 days), inside the chain
	cert := wantSuccess(t, renewWith(t, e, epStatic, d, named))
	if end := first.Created.Add(chainMax); cert.NotAfter.After(end) {
		t.Fatalf("renewed certificate ends %v, after the chain's end %v", cert.NotAfter, end)
	}

	e.offset.Store(int64(21 * 24 * time.Hour)) // still in the window, past the chain's maximum
	wantFailure(t, renewWith(t, e, epStatic, d, named), testca.FailBadRequest)
	if n := e.countStatus(t, store.StatusIssued); n != 2 {
		t.Fatalf("%d issued records, want 2", n)
	}
}

// TestStaticEndpointCannotRenewIntune: the configuration that would let a static endpoint renew Intune
// certificates is refused outright.
func TestStaticEndpointCannotRenewIntune(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	_, err := scep.New(scep.Config{Keys: e.ca.Keys, Issuer: e.issuer, Store: e.store, Intune: &fakeIntune{},
		Endpoints: []*scep.Endpoint{
			{Name: "intune", Challenge: scep.ChallengeIntune, Profile: testProfile(t)},
			{Name: "static", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t),
				RenewFrom: []string{"intune"}},
		}})
	if err == nil {
		t.Fatal("a static endpoint renewing the intune endpoint's certificates was accepted")
	}
}

// TestRenewalRefusesRAAndResponderCertificates: the RA certificate and OCSP responder certificates never renew
// into a client certificate, even if a record made them look like this endpoint's own.
func TestRenewalRefusesRAAndResponderCertificates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{endpoints: []*scep.Endpoint{{Name: epStatic, Challenge: scep.ChallengeStatic,
		Secret: []byte(staticSecret), Profile: testProfile(t), RenewalWindow: 100 * 365 * 24 * time.Hour}}})
	responderKey := testca.RSAKey(t, 4)
	responder := e.ca.Issue(t, responderKey.Public(), testca.LeafOptions{Subject: pkix.Name{CommonName: "azscep OCSP responder"},
		ExtKeyUse: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}})
	for name, signer := range map[string]struct {
		cert *x509.Certificate
		key  *rsa.PrivateKey
	}{"the RA": {e.ca.RACert, e.ca.RAKey}, "an OCSP responder": {responder, responderKey}} {
		now := time.Now()
		if err := e.mem.Insert(context.Background(), &store.Record{Serial: hexSerial(signer.cert), Status: store.StatusIssued,
			Source: store.SourceSCEP, Endpoint: epStatic, CertDER: signer.cert.Raw, NotBefore: signer.cert.NotBefore,
			NotAfter: signer.cert.NotAfter, Created: now, Updated: now}); err != nil {
			t.Fatal(err)
		}
		csr := testca.CSR(t, testca.RSAKey(t, 7), testca.CSROptions{Subject: signer.cert.Subject})
		c := &testca.Client{Key: signer.key, Cert: signer.cert, Recipients: []*x509.Certificate{e.ca.Recipient()}}
		rep := e.pki(t, epStatic, c.RenewalReq(t, csr, signer.cert, signer.key))
		if rep.Status != testca.StatusFailure || rep.FailInfo != testca.FailBadRequest {
			t.Fatalf("renewal signed by %s: status %q failInfo %q, want FAILURE badRequest", name, rep.Status, rep.FailInfo)
		}
	}
	if n := e.countStatus(t, store.StatusIssued); n != 2 {
		t.Fatalf("%d issued records, want only the two planted ones", n)
	}
}

// A RenewalReq is signed with the old certificate's key, and so is the CertPoll that follows it (RFC 8894
// §3.3.3): the poll finds the renewed certificate. A poll signed with some other key still learns nothing.
func TestCertPollAfterRenewal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enrollNamed(t, e, epStatic, 0, named)
	e.offset.Store(int64(profileValidity/2 + 24*time.Hour))
	csr := testca.CSR(t, testca.RSAKey(t, 7), named)
	renewed := wantSuccess(t, e.pki(t, epStatic, d.client.RenewalReq(t, csr, d.cert, d.client.Key)))

	txID := testca.TransactionID(t, csr.PublicKey)
	rep := e.pki(t, epStatic, d.client.CertPoll(t, txID, e.ca.Cert, named.Subject))
	if got := wantSuccess(t, rep); !got.Equal(renewed) {
		t.Fatal("CertPoll after the renewal returned another certificate")
	}
	thief := e.client(t, 3, named.Subject.CommonName)
	wantFailure(t, e.pki(t, epStatic, thief.CertPoll(t, txID, e.ca.Cert, named.Subject)), testca.FailBadCertID)
}
