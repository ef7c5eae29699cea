package kvfake_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/testca"
)

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	keyErr  error
)

func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() { rsaKey, keyErr = rsa.GenerateKey(rand.Reader, 2048) })
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return rsaKey
}

type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r rawResponse) errorCode(t *testing.T) (code, inner string) {
	t.Helper()
	var eb struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError *struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body %q is not Key Vault's error JSON: %v", r.body, err)
	}
	if eb.Error.Message == "" {
		t.Fatalf("error body %q has no message", r.body)
	}
	if eb.Error.InnerError != nil {
		inner = eb.Error.InnerError.Code
	}
	return eb.Error.Code, inner
}

// raw sends a hand-made request to the fake, bypassing azkeys.
func raw(t *testing.T, f *kvfake.Server, method, path, query, token, contentType, body string) rawResponse {
	t.Helper()
	if query == "" {
		query = "api-version=" + kvfake.APIVersion
	}
	req, err := http.NewRequest(method, f.URL()+path+"?"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := f.ClientOptions().Transport.(*http.Client)
	resp, b := testca.Do(t, hc, req)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

func signBody(alg string, value []byte) string {
	return `{"alg":"` + alg + `","value":"` + base64.RawURLEncoding.EncodeToString(value) + `"}`
}

func TestAuthentication(t *testing.T) {
	f := kvfake.New(t)
	f.MustImportKey(t, "ca", testRSAKey(t), kvfake.KeyOptions{})

	r := raw(t, f, http.MethodGet, "/keys/ca", "", "", "", "")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("unauthenticated: status %d, want 401", r.status)
	}
	want := `Bearer authorization="https://login.microsoftonline.com/` + kvfake.Tenant + `" resource="https://vault.azure.net"`
	if got := r.header.Get("WWW-Authenticate"); got != want {
		t.Fatalf("WWW-Authenticate = %q, want %q", got, want)
	}
	if code, _ := r.errorCode(t); code != "Unauthorized" {
		t.Fatalf("code = %q", code)
	}
	if r := raw(t, f, http.MethodGet, "/keys/ca", "", "wrong", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong token: status %d, want 401", r.status)
	}
	if f.Total() != 0 {
		t.Fatalf("unauthenticated requests counted as operations: %d", f.Total())
	}
	if r := raw(t, f, http.MethodGet, "/keys/ca", "", f.Token(), "", ""); r.status != http.StatusOK {
		t.Fatalf("authenticated: status %d, body %s", r.status, r.body)
	}
	if f.Count(kvfake.OpGet) != 1 || f.Total() != 1 {
		t.Fatalf("counts get=%d total=%d, want 1/1", f.Count(kvfake.OpGet), f.Total())
	}

	// The credential only serves the scope and tenant of the challenge.
	cred := f.Credential()
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}, TenantID: kvfake.Tenant}); err == nil {
		t.Fatal("credential served a token for the wrong scope")
	}
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{kvfake.Scope}}); err == nil {
		t.Fatal("credential served a token without the challenge's tenant")
	}
}

func TestRequestStrictness(t *testing.T) {
	f := kvfake.New(t)
	kid := f.MustImportKey(t, "ca", testRSAKey(t), kvfake.KeyOptions{})
	version := kid[strings.LastIndex(kid, "/")+1:]
	signPath := "/keys/ca/" + version + "/sign"
	digest := make([]byte, 32)
	tok := f.Token()

	for _, tc := range []struct {
		name                             string
		method, path, query, ctype, body string
		status                           int
		code                             string
	}{
		{"ok", http.MethodPost, signPath, "", "application/json", signBody("RS256", digest), 200, ""},
		{"no-api-version", http.MethodPost, signPath, "x=1", "application/json", signBody("RS256", digest), 400, "BadParameter"},
		{"old-api-version", http.MethodPost, signPath, "api-version=7.4", "application/json", signBody("RS256", digest), 400, "BadParameter"},
		{"no-content-type", http.MethodPost, signPath, "", "", signBody("RS256", digest), 415, "UnsupportedMediaType"},
		{"text-content-type", http.MethodPost, signPath, "", "text/plain", signBody("RS256", digest), 415, "UnsupportedMediaType"},
		{"unknown-alg", http.MethodPost, signPath, "", "application/json", signBody("RS1", digest), 400, "BadParameter"},
		{"es-alg-rsa-key", http.MethodPost, signPath, "", "application/json", signBody("ES256", digest), 400, "BadParameter"},
		{"digest-length", http.MethodPost, signPath, "", "application/json", signBody("RS384", digest), 400, "BadParameter"},
		{"padded-base64", http.MethodPost, signPath, "", "application/json",
			`{"alg":"RS256","value":"` + base64.URLEncoding.EncodeToString(digest[:31]) + `"}`, 400, "BadParameter"},
		{"std-base64", http.MethodPost, signPath, "", "application/json",
			`{"alg":"RS256","value":"` + strings.Repeat("+", 43) + `"}`, 400, "BadParameter"},
		{"unknown-field", http.MethodPost, signPath, "", "application/json",
			`{"alg":"RS256","value":"` + base64.RawURLEncoding.EncodeToString(digest) + `","iv":"AA"}`, 400, "BadParameter"},
		{"missing-value", http.MethodPost, signPath, "", "application/json", `{"alg":"RS256"}`, 400, "BadParameter"},
		{"wrong-method", http.MethodGet, signPath, "", "", "", 405, "MethodNotAllowed"},
		{"unknown-key", http.MethodPost, "/keys/nope/" + version + "/sign", "", "application/json", signBody("RS256", digest), 404, "KeyNotFound"},
		{"unknown-version", http.MethodPost, "/keys/ca/0123/sign", "", "application/json", signBody("RS256", digest), 404, "KeyNotFound"},
		{"unknown-route", http.MethodGet, "/certificates/x", "", "", "", 404, "NotFound"},
		{"unknown-decrypt-alg", http.MethodPost, "/keys/ca/" + version + "/decrypt", "", "application/json", signBody("A256GCM", make([]byte, 256)), 400, "BadParameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := raw(t, f, tc.method, tc.path, tc.query, tok, tc.ctype, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, _ := r.errorCode(t); code != tc.code {
					t.Fatalf("error code %q, want %q", code, tc.code)
				}
			}
		})
	}
}

func TestKeyOpsForbidden(t *testing.T) {
	f := kvfake.New(t)
	kid := f.MustImportKey(t, "ca", testRSAKey(t), kvfake.KeyOptions{Ops: []string{kvfake.KeyOpSign}})
	version := kid[strings.LastIndex(kid, "/")+1:]
	for _, op := range []string{"decrypt", "unwrapkey", "wrapkey", "encrypt"} {
		r := raw(t, f, http.MethodPost, "/keys/ca/"+version+"/"+op, "", f.Token(), "application/json",
			signBody("RSA-OAEP-256", make([]byte, 256)))
		if r.status != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", op, r.status)
		}
		if code, inner := r.errorCode(t); code != "Forbidden" || inner != "KeyOperationForbidden" {
			t.Fatalf("%s: error %q/%q, want Forbidden/KeyOperationForbidden", op, code, inner)
		}
	}
	if r := raw(t, f, http.MethodPost, "/keys/ca/"+version+"/sign", "", f.Token(), "application/json",
		signBody("RS256", make([]byte, 32))); r.status != http.StatusOK {
		t.Fatalf("sign: status %d", r.status)
	}

	f.MustImportKey(t, "off", testRSAKey(t), kvfake.KeyOptions{Disabled: true})
	r := raw(t, f, http.MethodPost, "/keys/off/sign", "", f.Token(), "application/json", signBody("RS256", make([]byte, 32)))
	if code, inner := r.errorCode(t); r.status != http.StatusForbidden || code != "Forbidden" || inner != "KeyDisabled" {
		t.Fatalf("disabled key: %d %s/%s", r.status, code, inner)
	}
}

// TestAzkeysClient drives the fake with the real azkeys client: create,
// adopt (list versions, get current), sign and verify, and the challenge flow
// for a POST as the first request.
func TestAzkeysClient(t *testing.T) {
	f := kvfake.New(t)
	c := f.Client(t)
	ctx := context.Background()

	// The first request of a new client is a bodyless, unauthenticated copy.
	cr, err := c.CreateKey(ctx, "ca", azkeys.CreateKeyParameters{
		Kty:    to(azkeys.KeyTypeECHSM),
		Curve:  to(azkeys.CurveNameP384),
		KeyOps: []*azkeys.KeyOperation{to(azkeys.KeyOperationSign), to(azkeys.KeyOperationVerify)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := f.Journal()
	if len(j) != 2 || j[0].Authenticated || j[0].BodyLen != 0 || j[0].Status != 401 || !j[1].Authenticated || j[1].BodyLen == 0 {
		t.Fatalf("challenge flow journal = %+v", j)
	}
	if *cr.Key.Kty != azkeys.KeyTypeECHSM || *cr.Key.Crv != azkeys.CurveNameP384 || len(cr.Key.X) != 48 || len(cr.Key.KeyOps) != 2 {
		t.Fatalf("created key = %+v", cr.Key)
	}
	if cr.Attributes == nil || cr.Attributes.Enabled == nil || !*cr.Attributes.Enabled || cr.Attributes.Created == nil {
		t.Fatalf("attributes = %+v", cr.Attributes)
	}
	pub := &ecdsa.PublicKey{Curve: elliptic.P384(), X: new(big.Int).SetBytes(cr.Key.X), Y: new(big.Int).SetBytes(cr.Key.Y)}

	d := sha512_384(t, "hello")
	sr, err := c.Sign(ctx, "ca", cr.Key.KID.Version(), azkeys.SignParameters{Algorithm: to(azkeys.SignatureAlgorithmES384), Value: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Result) != 96 {
		t.Fatalf("ES384 signature is %d bytes, want 96 (raw r||s)", len(sr.Result))
	}
	r, s := new(big.Int).SetBytes(sr.Result[:48]), new(big.Int).SetBytes(sr.Result[48:])
	if !ecdsa.Verify(pub, d, r, s) {
		t.Fatal("ES384 signature does not verify")
	}
	if *sr.KID != *cr.Key.KID {
		t.Fatalf("sign kid %s, want %s", *sr.KID, *cr.Key.KID)
	}

	// A second version; adoption finds both and GetKey("") returns the newer.
	cr2, err := c.CreateKey(ctx, "ca", azkeys.CreateKeyParameters{Kty: to(azkeys.KeyTypeEC), Curve: to(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	pager := c.NewListKeyPropertiesVersionsPager("ca", nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Value {
			versions = append(versions, p.KID.Version())
		}
	}
	if len(versions) != 2 || versions[0] != cr.Key.KID.Version() || versions[1] != cr2.Key.KID.Version() {
		t.Fatalf("versions = %v", versions)
	}
	gr, err := c.GetKey(ctx, "ca", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *gr.Key.KID != *cr2.Key.KID {
		t.Fatalf("current version = %s, want %s", *gr.Key.KID, *cr2.Key.KID)
	}
	if ops := gr.Key.KeyOps; len(ops) != 2 || *ops[0] != azkeys.KeyOperationSign {
		t.Fatalf("default EC key_ops = %v", ops)
	}
	empty := c.NewListKeyPropertiesVersionsPager("unknown", nil)
	page, err := empty.NextPage(ctx)
	if err != nil || len(page.Value) != 0 {
		t.Fatalf("versions of an unknown key: %v, %v", page.Value, err)
	}

	// RSA creation with a size and restricted ops.
	rr, err := c.CreateKey(ctx, "ra", azkeys.CreateKeyParameters{
		Kty:     to(azkeys.KeyTypeRSA),
		KeySize: to(int32(2048)),
		KeyOps:  []*azkeys.KeyOperation{to(azkeys.KeyOperationSign), to(azkeys.KeyOperationDecrypt)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := new(big.Int).SetBytes(rr.Key.N).BitLen(); n != 2048 || len(rr.Key.E) != 3 {
		t.Fatalf("RSA key: %d bits, e %x", n, rr.Key.E)
	}
	rsaPub := &rsa.PublicKey{N: new(big.Int).SetBytes(rr.Key.N), E: 65537}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, rsaPub, []byte("dek"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := c.Decrypt(ctx, "ra", "", azkeys.KeyOperationParameters{Algorithm: to(azkeys.EncryptionAlgorithmRSAOAEP256), Value: ct}, nil)
	if err != nil || string(dr.Result) != "dek" {
		t.Fatalf("decrypt = %q, %v", dr.Result, err)
	}
	_, err = c.UnwrapKey(ctx, "ra", "", azkeys.KeyOperationParameters{Algorithm: to(azkeys.EncryptionAlgorithmRSAOAEP256), Value: ct}, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 403 || re.ErrorCode != "Forbidden" {
		t.Fatalf("unwrap without unwrapKey: %v", err)
	}

	for _, bad := range []azkeys.CreateKeyParameters{
		{Kty: to(azkeys.KeyTypeRSA), KeySize: to(int32(1024))},
		{Kty: to(azkeys.KeyTypeEC), Curve: to(azkeys.CurveNameP256K)},
		{Kty: to(azkeys.KeyTypeEC), KeyOps: []*azkeys.KeyOperation{to(azkeys.KeyOperationDecrypt)}},
		{Kty: to(azkeys.KeyTypeOct)},
		{Kty: to(azkeys.KeyTypeRSA), KeyOps: []*azkeys.KeyOperation{to(azkeys.KeyOperation("fly"))}},
	} {
		_, err := c.CreateKey(ctx, "bad", bad, nil)
		if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "BadParameter" {
			t.Fatalf("create %+v: err = %v, want 400 BadParameter", bad, err)
		}
	}
	if _, err := c.CreateKey(ctx, "bad_name", azkeys.CreateKeyParameters{Kty: to(azkeys.KeyTypeEC)}, nil); err == nil {
		t.Fatal("key name with underscore accepted")
	}
}

func TestFaultsCountersJournal(t *testing.T) {
	f := kvfake.New(t)
	kid := f.MustImportKey(t, "ca", testRSAKey(t), kvfake.KeyOptions{})
	version := kid[strings.LastIndex(kid, "/")+1:]
	sign := func() rawResponse {
		return raw(t, f, http.MethodPost, "/keys/ca/"+version+"/sign", "", f.Token(), "application/json", signBody("RS256", make([]byte, 32)))
	}
	get := func() rawResponse { return raw(t, f, http.MethodGet, "/keys/ca/"+version, "", f.Token(), "", "") }

	f.Throttle(kvfake.OpSign, 1, 2500*time.Millisecond)
	if r := get(); r.status != 200 {
		t.Fatalf("get hit a sign-only fault: %d", r.status)
	}
	r := sign()
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" {
		t.Fatalf("throttled sign: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if code, _ := r.errorCode(t); code != "Throttled" {
		t.Fatalf("throttle code %q", code)
	}
	if r := sign(); r.status != 200 {
		t.Fatalf("fault outlived its count: %d", r.status)
	}

	f.Fail("", 2, http.StatusInternalServerError)
	if get().status != 500 || sign().status != 500 || sign().status != 200 {
		t.Fatal("Fail(\"\", 2, 500) did not hit exactly the next two requests")
	}

	f.Fail(kvfake.OpSign, -1, http.StatusServiceUnavailable)
	for range 3 {
		if r := sign(); r.status != 503 || r.header.Get("Retry-After") != "" {
			t.Fatalf("unlimited fault: %d", r.status)
		}
	}
	f.ClearFaults()
	if sign().status != 200 {
		t.Fatal("ClearFaults did not disarm")
	}

	if f.Count(kvfake.OpSign) != 8 || f.Count(kvfake.OpGet) != 2 || f.Total() != 10 {
		t.Fatalf("counts sign=%d get=%d total=%d, want 8/2/10", f.Count(kvfake.OpSign), f.Count(kvfake.OpGet), f.Total())
	}
	j := f.Journal()
	injected := 0
	for _, e := range j {
		if e.Injected {
			injected++
		}
	}
	if len(j) != 10 || injected != 6 || !j[1].Injected || j[1].Status != 429 {
		t.Fatalf("journal: %d entries, %d injected: %+v", len(j), injected, j)
	}
	f.Reset()
	if f.Total() != 0 || f.Count(kvfake.OpSign) != 0 || len(f.Journal()) != 0 {
		t.Fatal("Reset did not clear counters and journal")
	}
	if _, err := f.ImportKey("x", nil, kvfake.KeyOptions{}); err == nil {
		t.Fatal("ImportKey accepted a nil key")
	}
	if _, err := f.ImportKey("x", testRSAKey(t), kvfake.KeyOptions{Ops: []string{"fly"}}); err == nil {
		t.Fatal("ImportKey accepted an unknown key operation")
	}
}

func TestLatencyDelaysAnswer(t *testing.T) {
	f := kvfake.New(t)
	f.MustImportKey(t, "ca", testRSAKey(t), kvfake.KeyOptions{})
	c := f.Client(t)
	// Authenticate first so the delayed request is the operation itself.
	if _, err := c.GetKey(context.Background(), "ca", "", nil); err != nil {
		t.Fatal(err)
	}
	f.SetLatency(kvfake.OpSign, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Sign(ctx, "ca", "", azkeys.SignParameters{Algorithm: to(azkeys.SignatureAlgorithmRS256), Value: make([]byte, 32)}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client deadline to expire during the added latency", err)
	}
	// Latency is per operation: GetKey is not delayed.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := c.GetKey(ctx2, "ca", "", nil); err != nil {
		t.Fatal(err)
	}
	f.SetLatency(kvfake.OpSign, 0)
	if _, err := c.Sign(ctx2, "ca", "", azkeys.SignParameters{Algorithm: to(azkeys.SignatureAlgorithmRS256), Value: make([]byte, 32)}, nil); err != nil {
		t.Fatal(err)
	}
}

func sha512_384(t *testing.T, s string) []byte {
	t.Helper()
	h := crypto.SHA384.New()
	h.Write([]byte(s))
	return h.Sum(nil)
}

func to[T any](v T) *T { return &v }
