package intune_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/smallstep/scep/x509util"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/testca"
)

const provider = "azscep-test/1.0"

// env is one fake plus one client wired to it the way production wires
// them: a real azidentity credential built by NewCredential.
type env struct {
	fake   *intunefake.Server
	client *intune.Client
	logs   *testca.LogBuffer
	cred   azcore.TokenCredential
}

func newFake(t *testing.T, opts intunefake.Options) *intunefake.Server {
	t.Helper()
	f, err := intunefake.NewServer(opts)
	if err != nil {
		t.Fatalf("starting fake: %v", err)
	}
	t.Cleanup(f.Close)
	return f
}

func secretCredential(t *testing.T, f *intunefake.Server, secret string) intune.CredentialConfig {
	t.Helper()
	return intune.CredentialConfig{
		Kind:                     intune.CredentialClientSecret,
		TenantID:                 f.TenantID(),
		ClientID:                 f.ClientID(),
		ClientSecret:             secret,
		AuthorityHost:            f.AuthorityHost(),
		DisableInstanceDiscovery: true,
		HTTPClient:               f.Client(),
		Retry:                    policy.RetryOptions{MaxRetries: -1},
	}
}

func newClient(t *testing.T, f *intunefake.Server, cc intune.CredentialConfig, mutate func(*intune.Config)) (*intune.Client, *testca.LogBuffer) {
	t.Helper()
	cred, err := intune.NewCredential(cc)
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	return clientWithCred(t, f, cred, mutate)
}

// clientWithCred builds a client around an existing credential (whose
// token cache is therefore shared).
func clientWithCred(t *testing.T, f *intunefake.Server, cred azcore.TokenCredential, mutate func(*intune.Config)) (*intune.Client, *testca.LogBuffer) {
	t.Helper()
	logs := &testca.LogBuffer{}
	cfg := intune.Config{
		Credential:             cred,
		TenantID:               f.TenantID(),
		ProviderNameAndVersion: provider,
		GraphBase:              f.GraphBase(),
		HTTPClient:             f.Client(),
		CallTimeout:            5 * time.Second,
		RetryBackoff:           time.Millisecond,
		Logger:                 slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := intune.New(cfg)
	if err != nil {
		t.Fatalf("intune.New: %v", err)
	}
	return c, logs
}

func newEnv(t *testing.T, opts intunefake.Options, mutate func(*intune.Config)) *env {
	t.Helper()
	f := newFake(t, opts)
	cred, err := intune.NewCredential(secretCredential(t, f, f.ClientSecret()))
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	c, logs := clientWithCred(t, f, cred, mutate)
	return &env{fake: f, client: c, logs: logs, cred: cred}
}

// csrSpec describes a test CSR.
type csrSpec struct {
	password string
	subject  pkix.Name
	dns      []string
	emails   []string
	upns     []string
	ips      []net.IP
	ku       x509.KeyUsage
	ekus     []asn1.ObjectIdentifier
	rsaBits  int  // 0 = ECDSA P-256
	noSAN    bool // force no SAN extension even if names are set
}

var (
	oidKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidSAN         = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidClientAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidServerAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
)

var (
	keyOnce sync.Once
	rsa2048 *rsa.PrivateKey
	rsa1024 *rsa.PrivateKey
)

func testKey(t *testing.T, bits int) crypto.Signer {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if rsa2048, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsa1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
	})
	switch bits {
	case 0:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case 2048:
		return rsa2048
	case 1024:
		return rsa1024
	}
	t.Fatalf("no test key of %d bits", bits)
	return nil
}

// makeCSR builds a DER PKCS#10 with a challengePassword attribute.
func makeCSR(t *testing.T, s csrSpec) []byte {
	t.Helper()
	tmpl := &x509util.CertificateRequest{ChallengePassword: s.password}
	tmpl.Subject = s.subject
	if (len(s.dns)+len(s.emails)+len(s.upns)+len(s.ips)) > 0 && !s.noSAN {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidSAN, Value: sanValue(t, s.dns, s.emails, s.upns, s.ips)})
	}
	if s.ku != 0 {
		var bits asn1.BitString
		bits.Bytes = []byte{0, 0}
		for i := 0; i < 9; i++ {
			if s.ku&(1<<uint(i)) != 0 {
				bits.Bytes[i/8] |= 0x80 >> uint(i%8)
			}
		}
		bits.BitLength = 9
		v, err := asn1.Marshal(bits)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidKeyUsage, Critical: true, Value: v})
	}
	if len(s.ekus) > 0 {
		v, err := asn1.Marshal(s.ekus)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidExtKeyUsage, Value: v})
	}
	der, err := x509util.CreateCertificateRequest(rand.Reader, tmpl, testKey(t, s.rsaBits))
	if err != nil {
		t.Fatalf("creating CSR: %v", err)
	}
	return der
}

func sanValue(t *testing.T, dns, emails, upns []string, ips []net.IP) []byte {
	t.Helper()
	var names []asn1.RawValue
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: ip})
	}
	for _, d := range dns {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	for _, e := range emails {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(e)})
	}
	for _, u := range upns {
		val, err := asn1.MarshalWithParams(u, "utf8")
		if err != nil {
			t.Fatal(err)
		}
		inner, err := asn1.Marshal(struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}{oidUPN, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: val}})
		if err != nil {
			t.Fatal(err)
		}
		// [0] IMPLICIT: replace the SEQUENCE tag with context-specific constructed 0.
		inner[0] = 0xa0
		names = append(names, asn1.RawValue{FullBytes: inner})
	}
	v, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// issueCert signs a certificate for csrDER with a throwaway CA.
func issueCert(t *testing.T, csrDER []byte, notAfter time.Time) *x509.Certificate {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caName := pkix.Name{CommonName: "Test Issuing CA", Organization: []string{"Contoso, Ltd"}, Country: []string{"SE"}}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: caName, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour * 24 * 365),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	serial, _ := new(big.Int).SetString("0ABCDEF0123456789", 16)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: csr.Subject, NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// bodyOf returns the JSON body of a journal entry as generic JSON (numbers
// as json.Number).
func bodyOf(t *testing.T, e intunefake.Entry) map[string]any {
	t.Helper()
	m, ok := e.JSON.(map[string]any)
	if !ok {
		t.Fatalf("entry %d (%s) has no JSON object body: %q", e.Seq, e.Route, e.Body)
	}
	return m
}

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad expected JSON %s: %v", s, err)
	}
	return v
}

func noRejections(t *testing.T, f *intunefake.Server) {
	t.Helper()
	for _, e := range f.Rejections() {
		t.Errorf("fake rejected %s %s: %s", e.Method, e.Path, e.Reject)
	}
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
