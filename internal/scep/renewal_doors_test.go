package scep_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// The identities of the renewal doors below: the certificate's holder has SID A and device A.
const (
	doorSIDA = "S-1-5-21-1004336348-1177238915-682003330-1001"
	doorSIDB = "S-1-5-21-1004336348-1177238915-682003330-500"
	doorDevA = "5f2c8a1e-3b4d-4c6e-9f70-8a1b2c3d4e5f"
	doorDevB = "6c1e3a4e-93a3-4f4b-9c3e-0f2f4c2b8a11"
)

// oidSIDExtension is szOID_NTDS_CA_SECURITY_EXT, the SID extension AD CS writes for strong mapping (KB5014754).
var oidSIDExtension = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 25, 2}

// sidExtension is the SID extension naming sid: SEQUENCE { [0] otherName { 1.3.6.1.4.1.311.25.2.1, [0] OCTET STRING } }.
func sidExtension(t *testing.T, sid string, critical bool) pkix.Extension {
	t.Helper()
	marshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	value := marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: marshal([]byte(sid))})
	other := marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
		Bytes: append(marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 25, 2, 1}), value...)})
	return pkix.Extension{Id: oidSIDExtension, Critical: critical,
		Value: marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: other})}
}

func doorURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// doorsEnv is a static endpoint whose profile allows what the attempts below ask for (serverAuth, e-mail names,
// any URI, SID and device URIs), so that what refuses them is the renewal's own rule, not the profile; and the
// certificate of a device enrolled there with clientAuth only, in the middle of its renewal window.
func doorsEnv(t *testing.T) (*env, enrolled, testca.CSROptions) {
	t.Helper()
	wide, err := policy.ParseProfile("wide", "validity=30d;ku=digitalSignature,keyEncipherment;eku=clientAuth,serverAuth;"+
		"dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{endpoints: []*scep.Endpoint{
		{Name: epStatic, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: wide}}})
	held := testca.CSROptions{Subject: pkix.Name{CommonName: "router-7"}, DNSNames: []string{"router-7.corp.example"},
		UPNs: []string{"router-7@corp.example"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:              []*url.URL{testca.IntuneSIDURI(doorSIDA), {Scheme: "IntuneDeviceId", Host: doorDevA}},
		ChallengePassword: staticSecret}
	d := enrollNamed(t, e, epStatic, 0, held)
	e.offset.Store(int64(profileValidity/2 + 24*time.Hour))
	return e, d, held
}

// TestRenewalDoorsNames: the holder of a valid certificate asks, with a RenewalReq signed by it (no challenge), for
// what it was not issued: another name of each kind, another account or device, an EKU it did not have, a SID in an
// extension. Each is refused (FAILURE badRequest, nothing recorded) or issued without what it was not issued.
func TestRenewalDoorsNames(t *testing.T) {
	t.Parallel()
	e, d, held := doorsEnv(t)
	with := func(f func(o *testca.CSROptions)) testca.CSROptions {
		o := held
		o.URIs = slices.Clone(held.URIs)
		f(&o)
		return o
	}
	sidA, devA := held.URIs[0], held.URIs[1]
	refused := []struct {
		name string
		csr  testca.CSROptions
	}{
		{"an extra DNS name", with(func(o *testca.CSROptions) { o.DNSNames = append(o.DNSNames, "dc01.corp.example") })},
		{"another CN", with(func(o *testca.CSROptions) { o.Subject = pkix.Name{CommonName: "dc01"} })},
		{"a subject attribute more", with(func(o *testca.CSROptions) { o.Subject.Organization = []string{"Corp"} })},
		{"another SID", with(func(o *testca.CSROptions) { o.URIs = []*url.URL{testca.IntuneSIDURI(doorSIDB), devA} })},
		{"another SID in path form beside its own", with(func(o *testca.CSROptions) {
			o.URIs = append(o.URIs, doorURL(t, "https://dc.corp.example/sid/"+doorSIDB))
		})},
		{"its SID in path form", with(func(o *testca.CSROptions) {
			o.URIs = []*url.URL{doorURL(t, "tag://microsoft.com,2022-09-14/sid/"+doorSIDA), devA}
		})},
		{"another UPN", with(func(o *testca.CSROptions) { o.UPNs = []string{"administrator@corp.example"} })},
		{"its UPN as an e-mail name", with(func(o *testca.CSROptions) { o.Emails = o.UPNs })},
		{"another device", with(func(o *testca.CSROptions) {
			o.URIs = []*url.URL{sidA, {Scheme: "IntuneDeviceId", Host: doorDevB}}
		})},
		{"another device in the ID:…:GUID: form", with(func(o *testca.CSROptions) {
			o.URIs = append(o.URIs, doorURL(t, "ID:Microsoft Endpoint Manager:GUID:"+doorDevB))
		})},
		{"its device with a fragment", with(func(o *testca.CSROptions) {
			o.URIs = []*url.URL{sidA, doorURL(t, "IntuneDeviceId://"+doorDevA+"#"+doorDevB)}
		})},
		{"only an EKU it did not have", with(func(o *testca.CSROptions) {
			o.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})},
		{"a critical SID extension", with(func(o *testca.CSROptions) {
			o.ExtraExtensions = []pkix.Extension{sidExtension(t, doorSIDB, true)}
		})},
	}
	for i, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			wantFailure(t, renewWith(t, e, epStatic, d, tc.csr, 10+i), testca.FailBadRequest)
			if n := len(e.records(t)); n != 1 {
				t.Fatalf("%d records after the refused renewal, want only the original", n)
			}
		})
	}

	// Asking for serverAuth beside its own clientAuth, and for another SID in the SID extension (non-critical):
	// the certificate comes back with the old certificate's usages and names alone, no SID extension, and no
	// longer than the profile's validity.
	o := with(func(o *testca.CSROptions) {
		o.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		o.ExtraExtensions = []pkix.Extension{sidExtension(t, doorSIDB, false)}
	})
	cert := wantSuccess(t, renewWith(t, e, epStatic, d, o, 30))
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("renewed EKU %v, want the old certificate's clientAuth alone", cert.ExtKeyUsage)
	}
	for _, x := range cert.Extensions {
		if x.Id.Equal(oidSIDExtension) {
			t.Error("the renewed certificate carries the requested SID extension")
		}
	}
	if len(cert.URIs) != 2 || cert.URIs[0].String() != sidA.String() || policy.DeviceIDOf(cert.URIs[1]) != doorDevA {
		t.Errorf("renewed URIs %v, want the old certificate's", cert.URIs)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life > profileValidity {
		t.Errorf("renewed certificate lives %s, longer than the profile's %s", life, profileValidity)
	}
	rec, err := e.mem.Get(context.Background(), hexSerial(cert))
	if err != nil {
		t.Fatal(err)
	}
	if rec.DeviceID != doorDevA {
		t.Errorf("renewed record's device %q, want %q", rec.DeviceID, doorDevA)
	}
}

// TestRenewalDoorsSigner: the certificate that signs a RenewalReq authorizes a renewal only while it is live and its
// holder proves its key: a revoked one, an expired one, another device's certificate signed for with the
// attacker's own key (HTTP 400: the signature does not verify), and the attacker's own valid certificate asking for
// the other device's names are all refused, and nothing is issued.
func TestRenewalDoorsSigner(t *testing.T) {
	t.Parallel()
	t.Run("revoked", func(t *testing.T) {
		t.Parallel()
		e, d, held := doorsEnv(t)
		e.revoke(t, d.cert)
		wantFailure(t, renewWith(t, e, epStatic, d, held), testca.FailBadRequest)
		if n := e.countStatus(t, store.StatusIssued); n != 0 {
			t.Fatalf("%d issued records, want none", n)
		}
	})
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		e, d, held := doorsEnv(t)
		e.offset.Store(int64(profileValidity + time.Hour))
		wantFailure(t, renewWith(t, e, epStatic, d, held), testca.FailBadRequest)
		if n := len(e.records(t)); n != 1 {
			t.Fatalf("%d records, want only the original", n)
		}
	})
	t.Run("another device's certificate", func(t *testing.T) {
		t.Parallel()
		e, victim, held := doorsEnv(t)
		attacker := e.client(t, 1, "router-8")
		csr := testca.CSR(t, testca.RSAKey(t, 7), func() testca.CSROptions { o := held; o.ChallengePassword = ""; return o }())
		forged := attacker.Message(t, testca.Message{Type: testca.MsgRenewalReq, Content: csr.Raw,
			TransactionID: testca.TransactionID(t, csr.PublicKey), SignerCert: victim.cert, SignerKey: attacker.Key,
			ForgeWith: attacker.Key})
		if resp, body := testca.Post(t, e.url(epStatic), forged.Raw); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("renewal naming another device's certificate, signed with the attacker's key: HTTP %d %q, want 400",
				resp.StatusCode, body)
		}
		if n := len(e.records(t)); n != 1 {
			t.Fatalf("%d records, want only the victim's", n)
		}
	})
	t.Run("own certificate, another device's names", func(t *testing.T) {
		t.Parallel()
		e, _, held := doorsEnv(t)
		own := held
		own.Subject = pkix.Name{CommonName: "router-8"}
		own.DNSNames, own.UPNs = []string{"router-8.corp.example"}, []string{"router-8@corp.example"}
		own.URIs = []*url.URL{testca.IntuneSIDURI(doorSIDB), {Scheme: "IntuneDeviceId", Host: doorDevB}}
		attacker := enrollNamed(t, e, epStatic, 1, own)
		wantFailure(t, renewWith(t, e, epStatic, attacker, held), testca.FailBadRequest)
		if n := len(e.records(t)); n != 2 {
			t.Fatalf("%d records, want the two enrollments only", n)
		}
	})
}

// TestRenewalDoorsLegacyIdentityNames: a certificate issued before the policy read a SID in a path and a device ID
// with a fragment as identities (as ordinary URIs under uri=*, or as the device "<id>#frag") renewed with them,
// unchanged, for another chain period: the names were a subset of its own. Its renewal now meets the policy a first
// enrollment meets and is refused; the certificate itself stays valid until it expires or is revoked.
func TestRenewalDoorsLegacyIdentityNames(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"https://dc.corp.example/sid/" + doorSIDB,
		"ID:Microsoft Endpoint Manager:GUID:" + doorDevB + "#frag"} {
		t.Run(raw, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			u := doorURL(t, raw)
			key := testca.RSAKey(t, 0)
			now := time.Now()
			// Signed as the CA signed it then, and recorded as the issuer records it.
			tmpl := &x509.Certificate{SerialNumber: newDoorSerial(t), Subject: pkix.Name{CommonName: "kiosk-3"},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(profileValidity - time.Hour),
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				URIs: []*url.URL{u}}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca.Cert, key.Public(), e.ca.Key)
			if err != nil {
				t.Fatal(err)
			}
			old, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.mem.Insert(context.Background(), &store.Record{Serial: hexSerial(old), Status: store.StatusIssued,
				Source: store.SourceSCEP, Endpoint: epStatic, Requester: "scep:static", CertDER: der,
				PublicKey: store.KeyHash(key.Public()), Subject: "CN=kiosk-3", NotBefore: old.NotBefore,
				NotAfter: old.NotAfter, Created: now, Updated: now}); err != nil {
				t.Fatal(err)
			}
			e.offset.Store(int64(profileValidity/2 + 24*time.Hour))
			d := enrolled{client: e.client(t, 0, "kiosk-3"), cert: old}
			wantFailure(t, renewWith(t, e, epStatic, d, testca.CSROptions{Subject: pkix.Name{CommonName: "kiosk-3"},
				URIs: []*url.URL{u}}), testca.FailBadRequest)
			if n := len(e.records(t)); n != 1 {
				t.Fatalf("%d records, want only the legacy certificate", n)
			}
		})
	}
}

func newDoorSerial(t *testing.T) *big.Int {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0] = 0x5c
	return new(big.Int).SetBytes(b)
}
