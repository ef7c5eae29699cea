package intune_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	f := newFake(t, intunefake.Options{})
	cred, err := intune.NewCredential(secretCredential(t, f, f.ClientSecret()))
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]intune.Config{
		"no credential":   {ProviderNameAndVersion: "p"},
		"no provider":     {Credential: cred},
		"http graph":      {Credential: cred, ProviderNameAndVersion: "p", GraphBase: "http://graph.example/"},
		"relative graph":  {Credential: cred, ProviderNameAndVersion: "p", GraphBase: "graph.example"},
		"bad intune app":  {Credential: cred, ProviderNameAndVersion: "p", IntuneAppID: "a/b"},
		"blank provider ": {Credential: cred, ProviderNameAndVersion: "   "},
	} {
		if _, err := intune.New(cfg); !errors.Is(err, intune.ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := intune.New(intune.Config{Credential: cred, ProviderNameAndVersion: "p"}); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}

func TestNewCredentialKinds(t *testing.T) {
	t.Parallel()
	if _, err := intune.NewCredential(intune.CredentialConfig{Kind: "kerberos"}); !errors.Is(err, intune.ErrInvalidArgument) {
		t.Errorf("unknown kind = %v", err)
	}
	if _, err := intune.NewCredential(intune.CredentialConfig{ClientSecret: "s"}); !errors.Is(err, intune.ErrInvalidArgument) {
		t.Errorf("secret without tenant/client = %v", err)
	}
	if _, err := intune.NewCredential(intune.CredentialConfig{AuthorityHost: "http://login.example/"}); !errors.Is(err, intune.ErrInvalidArgument) {
		t.Errorf("http authority = %v", err)
	}
	if _, err := intune.NewCredential(intune.CredentialConfig{AuthorityHost: "https://login.example/tenant"}); !errors.Is(err, intune.ErrInvalidArgument) {
		t.Errorf("authority with path = %v", err)
	}
	if _, err := intune.NewCredential(intune.CredentialConfig{Kind: intune.CredentialClientCertificate, TenantID: "t", ClientID: "c", Certificate: []byte("junk")}); !errors.Is(err, intune.ErrInvalidArgument) {
		t.Errorf("junk certificate = %v", err)
	}
	cred, err := intune.NewCredential(intune.CredentialConfig{})
	if err != nil {
		t.Fatalf("managed identity: %v", err)
	}
	if _, ok := cred.(*azidentity.ManagedIdentityCredential); !ok {
		t.Errorf("empty config built %T, want a managed identity credential", cred)
	}
	cred, err = intune.NewCredential(intune.CredentialConfig{ClientID: "user-assigned-id"})
	if err != nil {
		t.Fatalf("user-assigned managed identity: %v", err)
	}
	if _, ok := cred.(*azidentity.ManagedIdentityCredential); !ok {
		t.Errorf("client ID only built %T, want a managed identity credential", cred)
	}
}

// private_key_jwt against the fake: the assertion is verified with the
// registered certificate.
func TestClientCertificateCredential(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "azscep-intune"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)

	f := newFake(t, intunefake.Options{ClientCertificate: cert, JWTTokens: true})
	cc := secretCredential(t, f, "")
	cc.Kind = "" // inferred from the certificate
	cc.Certificate = bundle
	c, _ := newClient(t, f, cc, nil)
	if err := c.ValidateRequest(t.Context(), "tx", validCSR(t, f)); err != nil {
		t.Fatalf("ValidateRequest with a certificate credential: %v", err)
	}
	for _, tr := range f.Requests(intunefake.RouteToken) {
		if tr.Form.Get("client_assertion") != "REDACTED" || tr.Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Errorf("token request form = %v", tr.Form)
		}
	}
	// JWT-shaped tokens carry the Intune audience.
	auth := f.Requests(intunefake.RouteValidate)[0].Header.Get("Authorization")
	parts := strings.Split(strings.TrimPrefix(auth, "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("token is not JWT-shaped: %q", auth)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Aud   string   `json:"aud"`
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Aud != intunefake.IntuneAudience {
		t.Errorf("token claims = %s (%v)", payload, err)
	}

	// A different key is refused: ErrAuth.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherPKCS8, _ := x509.MarshalPKCS8PrivateKey(other)
	otherDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &other.PublicKey, other)
	cc.Certificate = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: otherDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherPKCS8})...)
	c2, _ := newClient(t, f, cc, nil)
	if err := c2.ValidateRequest(t.Context(), "tx", validCSR(t, f)); !errors.Is(err, intune.ErrAuth) {
		t.Errorf("wrong certificate = %v, want ErrAuth", err)
	}
}

// Tokens shorter-lived than MSAL's 5-minute refresh margin are fetched
// again on each call: the client keeps working across token expiry.
func TestShortLivedTokensAreRefreshed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{TokenLifetime: time.Minute}, nil)
	csr := validCSR(t, e.fake)
	for i := 0; i < 3; i++ {
		if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.fake.Count(intunefake.RouteToken); n != 4 { // Graph once + Intune per call
		t.Errorf("token requests = %d, want 4", n)
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 1 {
		t.Errorf("discovery calls = %d, want 1", n)
	}
}

// One structured line per call, with the correlation fields, and nothing
// secret: no token, no client secret, no challenge password, no CSR.
func TestLogging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	register(t, e.fake, intunefake.Challenge{Password: "S3cret-Challenge"})
	csr := makeCSR(t, csrSpec{password: "S3cret-Challenge", subject: pkix.Name{CommonName: "dev"}})
	if err := e.client.ValidateRequest(t.Context(), "tx-log", csr); err != nil {
		t.Fatal(err)
	}
	e.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: 200, Body: `{"code":"ChallengeExpired","errorDescription":"too late"}`})
	_ = e.client.ValidateRequest(t.Context(), "tx-log-2", csr)

	var calls []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["operation"] == "validateRequest" {
			calls = append(calls, m)
		}
	}
	if len(calls) != 2 {
		t.Fatalf("validateRequest log lines = %d, want 2", len(calls))
	}
	posts := e.fake.Requests(intunefake.RouteValidate)
	for i, m := range calls {
		if m["clientRequestId"] != posts[i].Header.Get("client-request-id") {
			t.Errorf("line %d clientRequestId = %v, want %s", i, m["clientRequestId"], posts[i].Header.Get("client-request-id"))
		}
		if m["status"] != float64(200) || m["duration"] == nil {
			t.Errorf("line %d = %v", i, m)
		}
	}
	if calls[0]["transactionId"] != "tx-log" || calls[0]["code"] != "Success" || calls[0]["level"] != "INFO" {
		t.Errorf("success line = %v", calls[0])
	}
	if calls[1]["code"] != "ChallengeExpired" || calls[1]["level"] != "WARN" {
		t.Errorf("rejection line = %v", calls[1])
	}
	all := e.logs.String()
	token := strings.TrimPrefix(posts[0].Header.Get("Authorization"), "Bearer ")
	for _, secret := range []string{token, e.fake.ClientSecret(), "S3cret-Challenge", base64.StdEncoding.EncodeToString(csr)} {
		if strings.Contains(all, secret) {
			t.Errorf("logs contain a secret (%.12s...)", secret)
		}
	}
}

func TestIsRejection(t *testing.T) {
	t.Parallel()
	rej := &intune.ValidationError{Code: intune.CodeChallengeExpired}
	if !intune.IsRejection(rej) || !intune.IsRejection(errors.Join(errors.New("ctx"), rej)) {
		t.Error("IsRejection misses a (wrapped) ValidationError")
	}
	for _, err := range []error{nil, intune.ErrUnavailable, intune.ErrAuth, intune.ErrMalformedResponse, &intune.HTTPError{Status: 500}} {
		if intune.IsRejection(err) {
			t.Errorf("IsRejection(%v) = true", err)
		}
	}
	if !errors.Is(&intune.HTTPError{Status: 429}, intune.ErrUnavailable) || errors.Is(&intune.HTTPError{Status: 400}, intune.ErrUnavailable) {
		t.Error("HTTPError status classification is wrong")
	}
}
