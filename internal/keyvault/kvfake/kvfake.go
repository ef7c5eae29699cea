// Package kvfake is a strict, in-process HTTPS fake of the Azure Key Vault keys
// data plane, for tests and benchmarks.
//
// It speaks the real REST protocol to the real azkeys client rather than faking
// the SDK (as azkeys/fake does), so the code under test exercises everything
// that can break against the real service: the bearer challenge handshake, the
// api-version query parameter, the JSON body shapes with base64url values, the
// error body shape, per-key allowed operations (key_ops), and status codes such
// as 429 with Retry-After. Cryptography is real (in-memory RSA and ECDSA keys),
// so signatures verify and ciphertexts decrypt.
//
// Everything a test may want to observe is recorded: per-operation counters, a
// request journal, and injectable faults (throttling, server errors, latency).
//
// The fake is deliberately pickier than the service in one way: it accepts only
// the exact shapes the azkeys v1.5.0 client produces, so a change in what our
// code sends shows up as a test failure instead of passing silently.
//
// It is test support only (it imports package testing); never import it from
// production code.
package kvfake

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// APIVersion is the only api-version the fake accepts: the one azkeys v1.5.0
// sends. A client upgrade that changes it must be noticed, not ignored.
const APIVersion = "2025-07-01"

// Tenant is the tenant ID the fake names in its bearer challenge.
const Tenant = "00000000-0000-0000-0000-00000000a2ce"

// Resource is the resource the fake names in its bearer challenge, the same as
// public-cloud Key Vault. Clients must set DisableChallengeResourceVerification
// because the fake's host (127.0.0.1) is not a subdomain of it.
const Resource = "https://vault.azure.net"

// Scope is the token scope a correctly behaving client requests after the
// challenge; the fake's credential refuses any other.
const Scope = Resource + "/.default"

// Operation names used by Count, the journal and fault injection. They match
// the last path segment of the REST route, lower-cased.
const (
	OpGet       = "get"       // GET /keys/{name}[/{version}]
	OpVersions  = "versions"  // GET /keys/{name}/versions
	OpCreate    = "create"    // POST /keys/{name}/create
	OpSign      = "sign"      // POST /keys/{name}/{version}/sign
	OpDecrypt   = "decrypt"   // POST /keys/{name}/{version}/decrypt
	OpEncrypt   = "encrypt"   // POST /keys/{name}/{version}/encrypt
	OpWrapKey   = "wrapkey"   // POST /keys/{name}/{version}/wrapkey
	OpUnwrapKey = "unwrapkey" // POST /keys/{name}/{version}/unwrapkey
	OpGetSecret = "getsecret" // GET /secrets/{name}[/{version}]
)

// SecretsAPIVersion is the only api-version the fake accepts on the secrets routes: the one azsecrets v1.5.1
// sends (the keys routes take APIVersion, azkeys').
const SecretsAPIVersion = "2026-04-01"

// Key operation names as they appear in a JSON Web Key's key_ops.
const (
	KeyOpSign      = "sign"
	KeyOpVerify    = "verify"
	KeyOpEncrypt   = "encrypt"
	KeyOpDecrypt   = "decrypt"
	KeyOpWrapKey   = "wrapKey"
	KeyOpUnwrapKey = "unwrapKey"
)

// maxBody bounds request bodies; the largest legitimate body (a 4096-bit
// ciphertext, base64url in JSON) is well under 1 KiB.
const maxBody = 64 << 10

// Request is one journal entry: what the fake saw and how it answered.
type Request struct {
	Method string
	// Path is the URL path, without the query.
	Path string
	// Op is the operation the route maps to, "" when the route is unknown.
	Op string
	// Authenticated reports whether the request carried the expected bearer token.
	Authenticated bool
	// BodyLen is the request body size; the challenge-eliciting request has 0.
	BodyLen int
	// Status is the HTTP status the fake answered with.
	Status int
	// Injected reports whether the answer came from an injected fault.
	Injected bool
}

// fault is one armed fault-injection rule.
type fault struct {
	op         string // "" matches every operation
	status     int
	retryAfter time.Duration
	inner      string // 403: Key Vault's inner error code (ForbiddenByFirewall, ForbiddenByRbac)
	remaining  int    // < 0: unlimited
}

// key is one version of a key held by the fake.
type key struct {
	name    string
	version string
	kty     string // RSA, RSA-HSM, EC, EC-HSM
	priv    crypto.Signer
	ops     []string
	enabled bool
	created time.Time
	nbf     time.Time // zero: none
	exp     time.Time // zero: none
}

// Server is a fake Key Vault. All methods are safe for concurrent use.
type Server struct {
	srv   *httptest.Server
	token string

	mu      sync.Mutex
	keys    map[string][]*key // folded name (objectName) → versions, oldest first
	counts  map[string]int
	total   int
	journal []Request
	faults  []*fault
	latency map[string]time.Duration // op ("" = all) → added latency
	secrets map[string][]secret      // folded name (objectName) → versions, oldest first
	deleted map[string]bool          // folded names of soft-deleted keys
	binned  map[string][]*key        // soft-deleted keys' versions, for Recover
}

// SoftDelete deletes key name as Key Vault does with soft delete on (always, in new vaults): the key is gone (404),
// and its name cannot be used for a new key until it is recovered or purged (409 ObjectIsDeletedButRecoverable).
func (s *Server) SoftDelete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vs, ok := s.keys[objectName(name)]; ok {
		s.binned[objectName(name)] = vs
	}
	delete(s.keys, objectName(name))
	s.deleted[objectName(name)] = true
}

// Recover brings a soft-deleted key back with all its versions, as `az keyvault key recover` does.
func (s *Server) Recover(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vs, ok := s.binned[objectName(name)]; ok {
		s.keys[objectName(name)] = vs
	}
	delete(s.binned, objectName(name))
	delete(s.deleted, objectName(name))
}

// objectName is how Key Vault tells objects apart: "uniquely identified within Key Vault using a case-insensitive
// identifier", while the identifiers it answers with keep the name as it was created.
func objectName(name string) string { return strings.ToLower(name) }

// secret is one version of a secret held by the fake.
type secret struct {
	name    string // as created
	version string
	value   string
	created time.Time
}

// SetSecret stores a new version of the secret name, as `az keyvault secret set` would, and returns its version.
func (s *Server) SetSecret(name, value string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := randomHex(16)
	if vs := s.secrets[objectName(name)]; len(vs) > 0 {
		name = vs[0].name
	}
	s.secrets[objectName(name)] = append(s.secrets[objectName(name)], secret{name: name, version: v, value: value,
		created: time.Now()})
	return v
}

// New starts a fake Key Vault and stops it when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := NewServer()
	tb.Cleanup(s.Close)
	return s
}

// NewServer starts a fake Key Vault; the caller must Close it.
func NewServer() *Server {
	s := &Server{
		token:   "kvfake-" + randomHex(16),
		keys:    make(map[string][]*key),
		counts:  make(map[string]int),
		latency: make(map[string]time.Duration),
		secrets: make(map[string][]secret),
		deleted: make(map[string]bool),
		binned:  make(map[string][]*key),
	}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// Close shuts the server down and waits for in-flight requests.
func (s *Server) Close() { s.srv.Close() }

// URL is the vault URL to give azkeys.NewClient (https://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// Token is the bearer token the fake accepts.
func (s *Server) Token() string { return s.token }

// Credential returns a token credential that hands out the fake's token. It
// refuses requests for any scope or tenant other than the ones in the fake's
// challenge, which proves the client actually parsed the challenge.
func (s *Server) Credential() azcore.TokenCredential { return &credential{token: s.token} }

// ClientOptions returns azkeys client options wired to the fake: its TLS
// transport, challenge resource verification off (127.0.0.1 is not under
// vault.azure.net), and azcore's retry policy off, like keyvault.NewClient,
// so retries are the caller's own and observable.
func (s *Server) ClientOptions() *azkeys.ClientOptions {
	return &azkeys.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: s.srv.Client(),
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
		DisableChallengeResourceVerification: true,
	}
}

// NewAzkeysClient returns a new azkeys client talking to the fake. Each client
// starts unauthenticated, so its first request elicits the bearer challenge.
func (s *Server) NewAzkeysClient() (*azkeys.Client, error) {
	c, err := azkeys.NewClient(s.URL(), s.Credential(), s.ClientOptions())
	if err != nil {
		return nil, fmt.Errorf("kvfake: creating azkeys client: %w", err)
	}
	return c, nil
}

// Client is NewAzkeysClient for tests: it fails the test on error.
func (s *Server) Client(tb testing.TB) *azkeys.Client {
	tb.Helper()
	c, err := s.NewAzkeysClient()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// KeyOptions describes a key installed with ImportKey.
type KeyOptions struct {
	// Ops are the allowed key operations (key_ops). Nil means the Key Vault
	// default for the key type: all of them for RSA, sign/verify for EC.
	Ops []string
	// HSM marks the key as hardware-protected (kty RSA-HSM / EC-HSM).
	HSM bool
	// Disabled installs the key with attributes.enabled = false.
	Disabled bool
	// NotBefore and Expires set attributes.nbf and attributes.exp (zero: none). Outside them Key Vault refuses
	// sign, encrypt and wrapKey (403) and still allows verify, decrypt and unwrapKey.
	NotBefore, Expires time.Time
}

// ImportKey installs a known private key as a new version of name (creating
// the key if needed) and returns the new version's key ID. Tests use it to
// hold the private half, e.g. to compare public keys. priv must be an
// *rsa.PrivateKey or an *ecdsa.PrivateKey on P-256, P-384 or P-521.
func (s *Server) ImportKey(name string, priv crypto.Signer, opts KeyOptions) (string, error) {
	var kty string
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		kty = "RSA"
	case *ecdsa.PrivateKey:
		if curveName(k.Curve) == "" {
			return "", fmt.Errorf("kvfake: unsupported curve %s", k.Curve.Params().Name)
		}
		kty = "EC"
	default:
		return "", fmt.Errorf("kvfake: unsupported key type %T", priv)
	}
	if opts.HSM {
		kty += "-HSM"
	}
	ops := opts.Ops
	if ops == nil {
		ops = defaultOps(kty)
	}
	for _, op := range ops {
		if !validKeyOp(op) {
			return "", fmt.Errorf("kvfake: unknown key operation %q", op)
		}
	}
	k := &key{name: name, kty: kty, priv: priv, ops: slices.Clone(ops), enabled: !opts.Disabled,
		nbf: opts.NotBefore, exp: opts.Expires}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(k)
	return s.kid(k), nil
}

// MustImportKey is ImportKey for tests: it fails the test on error.
func (s *Server) MustImportKey(tb testing.TB, name string, priv crypto.Signer, opts KeyOptions) string {
	tb.Helper()
	kid, err := s.ImportKey(name, priv, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return kid
}

// SetEnabled enables or disables every version of key name, as an operator does in the portal.
func (s *Server) SetEnabled(name string, enabled bool) {
	s.eachVersion(name, func(k *key) { k.enabled = enabled })
}

// SetKeyOps replaces the permitted operations of every version of key name, as `az keyvault key set-attributes
// --ops` does.
func (s *Server) SetKeyOps(name string, ops ...string) {
	s.eachVersion(name, func(k *key) { k.ops = slices.Clone(ops) })
}

// SetExpires sets attributes.exp of every version of key name (zero removes it), as `az keyvault key set-attributes
// --expires` does, or as a rotation policy's expiryTime does for the versions it makes.
func (s *Server) SetExpires(name string, exp time.Time) {
	s.eachVersion(name, func(k *key) { k.exp = exp })
}

// eachVersion changes every version of key name under the lock.
func (s *Server) eachVersion(name string, change func(*key)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys[objectName(name)] {
		change(k)
	}
}

// addLocked assigns a fresh version to k and makes it the current version.
func (s *Server) addLocked(k *key) {
	k.version = randomHex(16) // 32 hex characters, like Key Vault
	k.created = time.Now().UTC().Truncate(time.Second)
	if vs := s.keys[objectName(k.name)]; len(vs) > 0 {
		k.name = vs[0].name // a new version keeps the name as the key was created
	}
	s.keys[objectName(k.name)] = append(s.keys[objectName(k.name)], k)
}

// kid is the key identifier Key Vault reports: vault URL + /keys/name/version.
func (s *Server) kid(k *key) string {
	return s.srv.URL + "/keys/" + k.name + "/" + k.version
}

// Count is the number of authenticated requests routed to op, including those
// answered by an injected fault.
func (s *Server) Count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// Total is the sum of Count over all operations.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Journal returns a copy of every request seen since the start or last Reset,
// including unauthenticated ones.
func (s *Server) Journal() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.journal)
}

// Reset clears counters and the journal. Keys, faults and latency stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.total = 0
	s.journal = nil
}

// Throttle makes the next n authenticated requests for op ("" = any) answer
// 429 with the Key Vault throttling body and a Retry-After of retryAfter
// (whole seconds, rounded up; omitted when retryAfter is 0). n < 0 throttles
// until ClearFaults.
func (s *Server) Throttle(op string, n int, retryAfter time.Duration) {
	s.inject(&fault{op: op, status: http.StatusTooManyRequests, retryAfter: retryAfter, remaining: n})
}

// Fail makes the next n authenticated requests for op ("" = any) answer with
// status (e.g. 500 or 503). n < 0 fails until ClearFaults.
func (s *Server) Fail(op string, n int, status int) {
	s.inject(&fault{op: op, status: status, remaining: n})
}

// Inner error codes of Key Vault's 403 answers, for Forbid.
const (
	// ForbiddenByFirewall: the vault's network rules refuse the caller's address.
	ForbiddenByFirewall = "ForbiddenByFirewall"
	// ForbiddenByRbac: the caller's identity has no role that allows the operation.
	ForbiddenByRbac = "ForbiddenByRbac"
)

// Forbid makes the next n authenticated requests for op ("" = any) answer 403 with Key Vault's body for inner
// (ForbiddenByFirewall or ForbiddenByRbac). n < 0 refuses until ClearFaults.
func (s *Server) Forbid(op string, n int, inner string) {
	s.inject(&fault{op: op, status: http.StatusForbidden, inner: inner, remaining: n})
}

func (s *Server) inject(f *fault) {
	if f.remaining == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// ClearFaults disarms every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetLatency delays every authenticated request for op ("" = all operations)
// by d before it is answered, to model the network round trip in benchmarks.
// A per-operation setting wins over the "" setting; d = 0 removes it.
func (s *Server) SetLatency(op string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.latency, op)
		return
	}
	s.latency[op] = d
}

// credential is the fake's static token credential.
type credential struct{ token string }

// GetToken implements azcore.TokenCredential.
func (c *credential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 || opts.Scopes[0] != Scope {
		return azcore.AccessToken{}, fmt.Errorf("kvfake credential: unexpected scopes %q, want [%q]", opts.Scopes, Scope)
	}
	if opts.TenantID != Tenant {
		return azcore.AccessToken{}, fmt.Errorf("kvfake credential: unexpected tenant %q, want %q", opts.TenantID, Tenant)
	}
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// defaultOps are the key_ops Key Vault assigns when a create request has none.
func defaultOps(kty string) []string {
	if strings.HasPrefix(kty, "EC") {
		return []string{KeyOpSign, KeyOpVerify}
	}
	return []string{KeyOpEncrypt, KeyOpDecrypt, KeyOpSign, KeyOpVerify, KeyOpWrapKey, KeyOpUnwrapKey}
}

func validKeyOp(op string) bool {
	switch op {
	case KeyOpSign, KeyOpVerify, KeyOpEncrypt, KeyOpDecrypt, KeyOpWrapKey, KeyOpUnwrapKey, "import", "export":
		return true
	}
	return false
}

// curveName maps a Go curve to its JWK name, "" when the fake does not support it.
func curveName(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "P-256"
	case elliptic.P384():
		return "P-384"
	case elliptic.P521():
		return "P-521"
	}
	return ""
}

func curveByName(name string) elliptic.Curve {
	switch name {
	case "P-256":
		return elliptic.P256()
	case "P-384":
		return elliptic.P384()
	case "P-521":
		return elliptic.P521()
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // documented never to return an error since Go 1.24
	return hex.EncodeToString(b)
}
