package keyvault_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // RSA-OAEP with SHA-1 is a Key Vault algorithm under test.
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
)

// Test keys are generated once per process: RSA generation dominates run time.
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	p256Key  *ecdsa.PrivateKey
	p384Key  *ecdsa.PrivateKey
	p521Key  *ecdsa.PrivateKey
)

var keysErr error

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() { keysErr = generateKeys() })
	if keysErr != nil {
		t.Fatal(keysErr)
	}
}

func generateKeys() error {
	var err error
	if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return err
	}
	if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return err
	}
	if p256Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return err
	}
	if p384Key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return err
	}
	p521Key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	return err
}

// sleepRecorder replaces real waits so retry tests are fast and can check
// exactly how long the Key would have waited.
type sleepRecorder struct {
	mu     sync.Mutex
	sleeps []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.sleeps = append(s.sleeps, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.sleeps...)
}

type env struct {
	fake   *kvfake.Server
	client *azkeys.Client
	sleeps *sleepRecorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testKeys(t)
	f := kvfake.New(t)
	c, err := keyvault.NewClient(f.URL(), f.Credential(), f.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return &env{fake: f, client: c, sleeps: &sleepRecorder{}}
}

// key installs priv under name and loads it as a keyvault.Key (current version).
func (e *env) key(t *testing.T, name string, priv crypto.Signer, kopts kvfake.KeyOptions, opts keyvault.Options) *keyvault.Key {
	t.Helper()
	e.fake.MustImportKey(t, name, priv, kopts)
	if opts.Sleep == nil {
		opts.Sleep = e.sleeps.sleep
	}
	k, err := keyvault.New(context.Background(), e.client, name, "", opts)
	if err != nil {
		t.Fatalf("keyvault.New(%s): %v", name, err)
	}
	return k
}

func digest(h crypto.Hash, msg string) []byte {
	hh := h.New()
	hh.Write([]byte(msg))
	return hh.Sum(nil)
}

func TestNewPinsVersionAndFetchesPublicKeyOnce(t *testing.T) {
	e := newEnv(t)
	kid1 := e.fake.MustImportKey(t, "ca", rsaKey, kvfake.KeyOptions{HSM: true})
	k, err := keyvault.New(context.Background(), e.client, "ca", "", keyvault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if k.KID() != kid1 {
		t.Fatalf("KID = %q, want %q", k.KID(), kid1)
	}
	if !strings.HasSuffix(kid1, "/"+k.Version()) || k.Name() != "ca" || k.KeyType() != "RSA-HSM" {
		t.Fatalf("name/version/kty = %s/%s/%s, kid %s", k.Name(), k.Version(), k.KeyType(), kid1)
	}
	if !rsaKey.PublicKey.Equal(k.Public()) {
		t.Fatal("Public() differs from the vault key")
	}

	// Rotate: the pinned Key must keep using the first version.
	e.fake.MustImportKey(t, "ca", rsaKey2, kvfake.KeyOptions{})
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := digest(crypto.SHA256, "msg"+string(rune('a'+i)))
			sig, err := k.Sign(rand.Reader, d, crypto.SHA256)
			if err == nil {
				err = rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA256, d, sig)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent sign: %v", err)
		}
	}
	if got := e.fake.Count(kvfake.OpGet); got != 1 {
		t.Fatalf("GetKey calls = %d, want 1 (public key cached)", got)
	}
	if got := e.fake.Count(kvfake.OpSign); got != n {
		t.Fatalf("sign calls = %d, want %d", got, n)
	}
	for _, r := range e.fake.Journal() {
		if r.Op == kvfake.OpSign && !strings.Contains(r.Path, "/keys/ca/"+k.Version()+"/sign") {
			t.Fatalf("sign sent to %s, want the pinned version %s", r.Path, k.Version())
		}
	}

	// An explicit older version loads that version's public key.
	old, err := keyvault.New(context.Background(), e.client, "ca", k.Version(), keyvault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rsaKey.PublicKey.Equal(old.Public()) || old.Version() != k.Version() {
		t.Fatal("explicit version did not load the old key")
	}
	cur, err := keyvault.New(context.Background(), e.client, "ca", "", keyvault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rsaKey2.PublicKey.Equal(cur.Public()) || cur.Version() == k.Version() {
		t.Fatal("empty version did not resolve the current (rotated) key")
	}
}

func TestNewErrors(t *testing.T) {
	e := newEnv(t)
	e.fake.MustImportKey(t, "off", rsaKey, kvfake.KeyOptions{Disabled: true})
	ctx := context.Background()

	if _, err := keyvault.New(ctx, e.client, "missing", "", keyvault.Options{}); !errors.Is(err, keyvault.ErrNotFound) {
		t.Fatalf("missing key: err = %v, want ErrNotFound", err)
	}
	if _, err := keyvault.New(ctx, e.client, "off", "", keyvault.Options{}); !errors.Is(err, keyvault.ErrDisabled) ||
		errors.Is(err, keyvault.ErrForbidden) {
		t.Fatalf("disabled key: err = %v, want ErrDisabled (and not ErrForbidden, which start-up retries)", err)
	}
	if _, err := keyvault.New(ctx, e.client, "a/b", "", keyvault.Options{}); !errors.Is(err, keyvault.ErrInvalidInput) {
		t.Fatalf("bad name: err = %v, want ErrInvalidInput", err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	e.fake.MustImportKey(t, "small", small, kvfake.KeyOptions{})
	if _, err := keyvault.New(ctx, e.client, "small", "", keyvault.Options{}); !errors.Is(err, keyvault.ErrUnsupported) {
		t.Fatalf("1024-bit key: err = %v, want ErrUnsupported", err)
	}
}

func TestSignRSA(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "rsa", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	for _, tc := range []struct {
		name string
		opts crypto.SignerOpts
	}{
		{"RS256", crypto.SHA256},
		{"RS384", crypto.SHA384},
		{"RS512", crypto.SHA512},
		{"PS256", &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}},
		{"PS384-auto", &rsa.PSSOptions{Hash: crypto.SHA384, SaltLength: rsa.PSSSaltLengthAuto}},
		{"PS512-hashsize", &rsa.PSSOptions{Hash: crypto.SHA512, SaltLength: 64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.opts.HashFunc()
			d := digest(h, tc.name)
			sig, err := k.Sign(rand.Reader, d, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if pss, ok := tc.opts.(*rsa.PSSOptions); ok {
				err = rsa.VerifyPSS(&rsaKey.PublicKey, h, d, sig, &rsa.PSSOptions{SaltLength: pss.SaltLength})
			} else {
				err = rsa.VerifyPKCS1v15(&rsaKey.PublicKey, h, d, sig)
			}
			if err != nil {
				t.Fatalf("signature does not verify: %v", err)
			}
			last := e.fake.Journal()[len(e.fake.Journal())-1]
			if last.Op != kvfake.OpSign || last.Status != http.StatusOK {
				t.Fatalf("last request %+v", last)
			}
		})
	}
}

func TestSignEC(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		priv *ecdsa.PrivateKey
		hash crypto.Hash
	}{
		{"P-256", p256Key, crypto.SHA256},
		{"P-384", p384Key, crypto.SHA384},
		{"P-521", p521Key, crypto.SHA512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := e.key(t, "ec"+tc.name[2:], tc.priv, kvfake.KeyOptions{HSM: true}, keyvault.Options{})
			if !tc.priv.PublicKey.Equal(k.Public()) {
				t.Fatal("public key mismatch")
			}
			d := digest(tc.hash, "hello")
			sig, err := k.Sign(nil, d, tc.hash)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(&tc.priv.PublicKey, d, sig) {
				t.Fatal("ecdsa.VerifyASN1 rejected the DER signature")
			}
			if !k.CanSign() || k.CanDecrypt() {
				t.Fatalf("CanSign/CanDecrypt = %v/%v for an EC key", k.CanSign(), k.CanDecrypt())
			}
		})
	}
}

// TestLocalRejections: requests Key Vault cannot serve fail before any
// network call.
func TestLocalRejections(t *testing.T) {
	e := newEnv(t)
	rk := e.key(t, "rsa", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	ek := e.key(t, "ec", p256Key, kvfake.KeyOptions{}, keyvault.Options{})
	e.fake.Reset()

	sha1Digest := digest(crypto.SHA1, "x")
	for _, tc := range []struct {
		name string
		run  func() error
		want error
	}{
		{"sha1", func() error { _, err := rk.Sign(nil, sha1Digest, crypto.SHA1); return err }, keyvault.ErrUnsupported},
		{"sha1-pss", func() error {
			_, err := rk.Sign(nil, sha1Digest, &rsa.PSSOptions{Hash: crypto.SHA1})
			return err
		}, keyvault.ErrUnsupported},
		{"md5", func() error { _, err := rk.Sign(nil, make([]byte, 16), crypto.MD5); return err }, keyvault.ErrUnsupported},
		{"no-hash", func() error { _, err := rk.Sign(nil, make([]byte, 32), crypto.Hash(0)); return err }, keyvault.ErrUnsupported},
		{"nil-opts", func() error { _, err := rk.Sign(nil, make([]byte, 32), nil); return err }, keyvault.ErrUnsupported},
		{"digest-length", func() error { _, err := rk.Sign(nil, make([]byte, 20), crypto.SHA256); return err }, keyvault.ErrInvalidInput},
		{"pss-salt", func() error {
			_, err := rk.Sign(nil, make([]byte, 32), &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 10})
			return err
		}, keyvault.ErrUnsupported},
		{"ec-wrong-hash", func() error { _, err := ek.Sign(nil, make([]byte, 48), crypto.SHA384); return err }, keyvault.ErrUnsupported},
		{"ec-pss", func() error {
			_, err := ek.Sign(nil, make([]byte, 32), &rsa.PSSOptions{Hash: crypto.SHA256})
			return err
		}, keyvault.ErrUnsupported},
		{"ec-decrypt", func() error { _, err := ek.Decrypt(nil, make([]byte, 32), nil); return err }, keyvault.ErrUnsupported},
		{"oaep-label", func() error {
			_, err := rk.Decrypt(nil, make([]byte, 256), &rsa.OAEPOptions{Hash: crypto.SHA256, Label: []byte("l")})
			return err
		}, keyvault.ErrUnsupported},
		{"oaep-sha512", func() error {
			_, err := rk.Decrypt(nil, make([]byte, 256), &rsa.OAEPOptions{Hash: crypto.SHA512})
			return err
		}, keyvault.ErrUnsupported},
		{"oaep-mgf", func() error {
			_, err := rk.Decrypt(nil, make([]byte, 256), &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
			return err
		}, keyvault.ErrUnsupported},
		{"ciphertext-too-long", func() error { _, err := rk.Decrypt(nil, make([]byte, 257), nil); return err }, keyvault.ErrInvalidInput},
		{"wrap-too-long", func() error { _, err := rk.WrapKey(context.Background(), make([]byte, 191)); return err }, keyvault.ErrInvalidInput},
		{"wrap-ec", func() error { _, err := ek.WrapKey(context.Background(), make([]byte, 32)); return err }, keyvault.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if n := e.fake.Total(); n != 0 || len(e.fake.Journal()) != 0 {
		t.Fatalf("locally refused operations reached the vault: %d requests", n)
	}
}

func TestDecrypt(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ra", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	if !k.CanDecrypt() || !k.CanSign() || !k.CanUnwrapKey() {
		t.Fatal("default RSA key should allow decrypt, sign, unwrapKey")
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	pub := &rsaKey.PublicKey
	for _, tc := range []struct {
		name    string
		encrypt func() ([]byte, error)
		opts    crypto.DecrypterOpts
	}{
		{"RSA1_5-nil", func() ([]byte, error) { return rsa.EncryptPKCS1v15(rand.Reader, pub, secret) }, nil},
		{"RSA1_5", func() ([]byte, error) { return rsa.EncryptPKCS1v15(rand.Reader, pub, secret) }, &rsa.PKCS1v15DecryptOptions{}},
		{"RSA1_5-session", func() ([]byte, error) { return rsa.EncryptPKCS1v15(rand.Reader, pub, secret) },
			&rsa.PKCS1v15DecryptOptions{SessionKeyLen: len(secret)}},
		{"RSA-OAEP", func() ([]byte, error) { return rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, secret, nil) },
			&rsa.OAEPOptions{Hash: crypto.SHA1}},
		{"RSA-OAEP-256", func() ([]byte, error) { return rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, secret, nil) },
			&rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, err := tc.encrypt()
			if err != nil {
				t.Fatal(err)
			}
			pt, err := k.Decrypt(rand.Reader, ct, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pt, secret) {
				t.Fatalf("plaintext = %x, want %x", pt, secret)
			}
		})
	}
	if got := e.fake.Count(kvfake.OpDecrypt); got != 5 {
		t.Fatalf("decrypt calls = %d, want 5", got)
	}
}

func TestDecryptBadCiphertext(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ra", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	garbage := make([]byte, 256)
	garbage[0] = 1 // below the modulus, but not valid padding

	_, err := k.Decrypt(nil, garbage, nil)
	if !errors.Is(err, keyvault.ErrRejected) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || re.ErrorCode != "BadParameter" {
		t.Fatalf("want the 400 BadParameter response error, got %v", err)
	}
	// The session-key contract: a random key instead of an error.
	a, err := k.Decrypt(nil, garbage, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 16})
	if err != nil || len(a) != 16 {
		t.Fatalf("session key decrypt = %x, %v; want 16 random bytes", a, err)
	}
	b, _ := k.Decrypt(nil, garbage, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 16})
	if bytes.Equal(a, b) {
		t.Fatal("session key fallback is not random")
	}
	if got := e.fake.Count(kvfake.OpDecrypt); got != 3 {
		t.Fatalf("decrypt calls = %d, want 3 (no retries on 400)", got)
	}
}

func TestWrapUnwrap(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "kek", rsaKey, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpWrapKey, kvfake.KeyOpUnwrapKey}},
		keyvault.Options{})
	if !k.CanWrapKey() || !k.CanUnwrapKey() || k.CanSign() || k.CanDecrypt() {
		t.Fatalf("key ops = %v", k.KeyOps())
	}
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wrapped, err := k.WrapKey(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	// It really is RSA-OAEP-256 under the vault key.
	local, err := rsa.DecryptOAEP(sha256.New(), nil, rsaKey, wrapped, nil)
	if err != nil || !bytes.Equal(local, dek) {
		t.Fatalf("wrapped key is not RSA-OAEP-256: %v", err)
	}
	got, err := k.UnwrapKey(ctx, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, dek) {
		t.Fatal("unwrap did not return the data key")
	}
	if e.fake.Count(kvfake.OpWrapKey) != 1 || e.fake.Count(kvfake.OpUnwrapKey) != 1 {
		t.Fatalf("wrap/unwrap counts = %d/%d", e.fake.Count(kvfake.OpWrapKey), e.fake.Count(kvfake.OpUnwrapKey))
	}
	// A key allowed only to wrap/unwrap refuses sign in the vault.
	_, err = k.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	if !errors.Is(err, keyvault.ErrForbidden) {
		t.Fatalf("sign with a wrap-only key: err = %v, want ErrForbidden", err)
	}
}

func TestKeyWithoutDecryptRefuses(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{Ops: []string{kvfake.KeyOpSign, kvfake.KeyOpVerify}}, keyvault.Options{})
	if k.CanDecrypt() || !k.CanSign() {
		t.Fatalf("CanDecrypt/CanSign = %v/%v for key_ops %v", k.CanDecrypt(), k.CanSign(), k.KeyOps())
	}
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, &rsaKey.PublicKey, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Decrypt(nil, ct, nil)
	if !errors.Is(err, keyvault.ErrForbidden) || errors.Is(err, keyvault.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrForbidden", err)
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || re.ErrorCode != "Forbidden" {
		t.Fatalf("want the 403 Forbidden response, got %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error message should be one line: %q", err.Error())
	}
	if got := e.fake.Count(kvfake.OpDecrypt); got != 1 {
		t.Fatalf("decrypt calls = %d, want 1 (403 is not retried)", got)
	}
}

func TestThrottledThenSuccess(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", p256Key, kvfake.KeyOptions{}, keyvault.Options{})
	e.fake.Throttle(kvfake.OpSign, 2, time.Second)

	d := digest(crypto.SHA256, "x")
	sig, err := k.Sign(nil, d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&p256Key.PublicKey, d, sig) {
		t.Fatal("signature does not verify")
	}
	if got := e.fake.Count(kvfake.OpSign); got != 3 {
		t.Fatalf("sign calls = %d, want 3", got)
	}
	if got := e.sleeps.get(); len(got) != 2 || got[0] != time.Second || got[1] != time.Second {
		t.Fatalf("waits = %v, want [1s 1s] from Retry-After", got)
	}
}

func TestThrottledExhausted(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{MaxAttempts: 3, MaxWait: time.Minute})
	e.fake.Throttle("", -1, 2*time.Second)

	_, err := k.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	if !errors.Is(err, keyvault.ErrThrottled) || errors.Is(err, keyvault.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrThrottled", err)
	}
	var te *keyvault.ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("err %T is not a *ThrottledError", err)
	}
	if te.RetryAfter != 2*time.Second || te.Attempts != 3 || te.Op != "sign" {
		t.Fatalf("ThrottledError = %+v", te)
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("underlying 429 not reachable: %v", err)
	}
	if got := e.fake.Count(kvfake.OpSign); got != 3 {
		t.Fatalf("sign calls = %d, want 3", got)
	}
	if got := e.sleeps.get(); len(got) != 2 {
		t.Fatalf("waits = %v, want 2", got)
	}
}

// TestThrottledBeyondBudget: a Retry-After longer than the wait budget fails
// at once (no pointless sleep) and passes the server's value on.
func TestThrottledBeyondBudget(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{MaxWait: 5 * time.Second})
	e.fake.Throttle(kvfake.OpSign, -1, 30*time.Second)

	_, err := k.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	var te *keyvault.ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, keyvault.ErrThrottled) {
		t.Fatalf("err = %v, want *ThrottledError", err)
	}
	if te.RetryAfter != 30*time.Second || te.Attempts != 1 {
		t.Fatalf("ThrottledError = %+v, want RetryAfter 30s after 1 attempt", te)
	}
	if got := e.sleeps.get(); len(got) != 0 {
		t.Fatalf("waits = %v, want none", got)
	}
}

// TestThrottledWithoutRetryAfter: with no Retry-After the Key backs off
// exponentially and still reports a usable Retry-After.
func TestThrottledWithoutRetryAfter(t *testing.T) {
	e := newEnv(t)
	opts := keyvault.Options{MaxAttempts: 4, BaseBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, opts)
	e.fake.Throttle(kvfake.OpSign, -1, 0)

	_, err := k.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	var te *keyvault.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter < time.Second {
		t.Fatalf("err = %v, want *ThrottledError with RetryAfter >= 1s", err)
	}
	waits := e.sleeps.get()
	if len(waits) != 3 {
		t.Fatalf("waits = %v, want 3", waits)
	}
	for i, w := range waits {
		full := opts.BaseBackoff << i
		if w < full/2 || w > full {
			t.Fatalf("wait %d = %v, want in [%v, %v]", i, w, full/2, full)
		}
	}
}

func TestServerErrorRetried(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	e.fake.Fail(kvfake.OpSign, 2, http.StatusInternalServerError)

	d := digest(crypto.SHA384, "x")
	sig, err := k.Sign(nil, d, crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA384, d, sig); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Count(kvfake.OpSign); got != 3 {
		t.Fatalf("sign calls = %d, want 3", got)
	}
	if got := len(e.sleeps.get()); got != 2 {
		t.Fatalf("waits = %d, want 2", got)
	}
}

func TestServerErrorExhausted(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{MaxAttempts: 2})
	e.fake.Fail("", -1, http.StatusServiceUnavailable)

	_, err := k.Decrypt(nil, make([]byte, 256), nil)
	if !errors.Is(err, keyvault.ErrUnavailable) || errors.Is(err, keyvault.ErrThrottled) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if got := e.fake.Count(kvfake.OpDecrypt); got != 2 {
		t.Fatalf("decrypt calls = %d, want 2", got)
	}
}

func TestTransportFailureUnavailable(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{MaxAttempts: 3})
	e.fake.Close()

	_, err := k.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	if !errors.Is(err, keyvault.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if got := len(e.sleeps.get()); got != 2 {
		t.Fatalf("waits = %d, want 2 (3 attempts)", got)
	}
}

// TestDNSFailuresRetried: a failed lookup of the vault's host is a transport failure like any other — retried
// within the budget, then ErrUnavailable — whether the resolver timed out, failed temporarily or answered that the
// name does not exist; the *net.DNSError stays reachable with errors.As, so a one-shot admin command can tell a
// vault name that does not exist (a configuration error) from a resolver that is down.
func TestDNSFailuresRetried(t *testing.T) {
	testKeys(t)
	f := kvfake.New(t)
	for name, dnsErr := range map[string]net.DNSError{
		"temporary": {Err: "server misbehaving", IsTemporary: true},
		"timeout":   {Err: "i/o timeout", IsTimeout: true, IsTemporary: true},
		"not found": {Err: "no such host", IsNotFound: true},
	} {
		t.Run(name, func(t *testing.T) {
			dials := 0
			dial := func(_ context.Context, network, addr string) (net.Conn, error) {
				dials++
				e := dnsErr
				e.Name, _, _ = net.SplitHostPort(addr)
				return nil, &net.OpError{Op: "dial", Net: network, Err: &e}
			}
			c, err := keyvault.NewClient("https://kv-azscep.vault.invalid/", f.Credential(), &azkeys.ClientOptions{
				ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: &http.Transport{DialContext: dial}}}})
			if err != nil {
				t.Fatal(err)
			}
			sleeps := &sleepRecorder{}
			_, err = keyvault.New(context.Background(), c, "ca", "", keyvault.Options{MaxAttempts: 3, Sleep: sleeps.sleep})
			if !errors.Is(err, keyvault.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			var got *net.DNSError
			if !errors.As(err, &got) || got.Name != "kv-azscep.vault.invalid" || got.IsNotFound != dnsErr.IsNotFound ||
				got.IsTemporary != dnsErr.IsTemporary || got.IsTimeout != dnsErr.IsTimeout {
				t.Fatalf("err = %v: the *net.DNSError is lost or changed (%+v)", err, got)
			}
			if dials != 3 || len(sleeps.get()) != 2 {
				t.Fatalf("%d dials and %d waits, want 3 attempts", dials, len(sleeps.get()))
			}
		})
	}
}

func TestCallTimeoutPerAttempt(t *testing.T) {
	e := newEnv(t)
	// 250 ms, not less: on two loaded cores a shorter attempt can end before its request reaches the fake, which
	// then counts one sign call for two attempts.
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{CallTimeout: 250 * time.Millisecond, MaxAttempts: 2})
	e.fake.SetLatency(kvfake.OpSign, 5*time.Second)

	_, err := k.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	if !errors.Is(err, keyvault.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable after per-attempt timeouts", err)
	}
	if got := e.fake.Count(kvfake.OpSign); got != 2 {
		t.Fatalf("sign calls = %d, want 2", got)
	}
}

func TestCallerContextCancelled(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := k.SignContext(ctx, digest(crypto.SHA256, "x"), crypto.SHA256)
	if !errors.Is(err, context.Canceled) || errors.Is(err, keyvault.ErrUnavailable) {
		t.Fatalf("err = %v, want context.Canceled, not ErrUnavailable", err)
	}
	if got := len(e.sleeps.get()); got != 0 {
		t.Fatalf("waits = %d, want 0", got)
	}
}

// TestNewClientDisablesAzcoreRetries compares keyvault.NewClient with a plain
// azkeys client built from the same options: only the latter retries a 500 on
// its own.
func TestNewClientDisablesAzcoreRetries(t *testing.T) {
	testKeys(t)
	f := kvfake.New(t)
	f.MustImportKey(t, "ca", rsaKey, kvfake.KeyOptions{})
	opts := &azkeys.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: f.ClientOptions().Transport,
			Retry:     policy.RetryOptions{RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond},
		},
		DisableChallengeResourceVerification: true,
	}
	params := azkeys.SignParameters{Algorithm: to(azkeys.SignatureAlgorithmRS256), Value: make([]byte, 32)}
	f.Fail(kvfake.OpSign, -1, http.StatusInternalServerError)

	plain, err := azkeys.NewClient(f.URL(), f.Credential(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Sign(context.Background(), "ca", "", params, nil); err == nil {
		t.Fatal("sign succeeded against a failing vault")
	}
	if got := f.Count(kvfake.OpSign); got != 4 {
		t.Fatalf("plain azkeys client: sign calls = %d, want 4 (azcore default retries)", got)
	}

	f.Reset()
	ours, err := keyvault.NewClient(f.URL(), f.Credential(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ours.Sign(context.Background(), "ca", "", params, nil); err == nil {
		t.Fatal("sign succeeded against a failing vault")
	}
	if got := f.Count(kvfake.OpSign); got != 1 {
		t.Fatalf("keyvault.NewClient: sign calls = %d, want 1", got)
	}
	if opts.Retry.MaxRetries != 0 {
		t.Fatal("NewClient modified the caller's options")
	}
}

// TestChallengeFlow: the real azkeys client elicits the bearer challenge with
// an unauthenticated, bodyless request before sending the real one.
func TestChallengeFlow(t *testing.T) {
	e := newEnv(t)
	k := e.key(t, "ca", rsaKey, kvfake.KeyOptions{}, keyvault.Options{})
	if _, err := k.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	j := e.fake.Journal()
	if len(j) != 3 {
		t.Fatalf("journal = %+v, want challenge, get, sign", j)
	}
	if j[0].Authenticated || j[0].Status != http.StatusUnauthorized || j[0].Method != http.MethodGet || j[0].BodyLen != 0 {
		t.Fatalf("first request = %+v, want an unauthenticated GET answered 401", j[0])
	}
	if !j[1].Authenticated || j[1].Op != kvfake.OpGet || j[1].Status != http.StatusOK {
		t.Fatalf("second request = %+v, want the authenticated GetKey", j[1])
	}
	if !j[2].Authenticated || j[2].Op != kvfake.OpSign || j[2].BodyLen == 0 {
		t.Fatalf("third request = %+v, want an authenticated sign with a body", j[2])
	}
}

func TestCreateCertificate(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		priv crypto.Signer
		alg  x509.SignatureAlgorithm
	}{
		{"rsa-sha256", rsaKey, x509.SHA256WithRSA},
		{"rsa-pss", rsaKey, x509.SHA256WithRSAPSS},
		{"rsa-sha512", rsaKey, x509.SHA512WithRSA},
		{"p256", p256Key, x509.ECDSAWithSHA256},
		{"p384", p384Key, x509.ECDSAWithSHA384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := e.key(t, tc.name, tc.priv, kvfake.KeyOptions{}, keyvault.Options{})
			cert := selfSigned(t, k, tc.alg)
			if cert.SignatureAlgorithm != tc.alg {
				t.Fatalf("signature algorithm = %v, want %v", cert.SignatureAlgorithm, tc.alg)
			}
			if err := cert.CheckSignatureFrom(cert); err != nil {
				t.Fatalf("certificate signature: %v", err)
			}
		})
	}
}

func BenchmarkSignRS256(b *testing.B) {
	testKeys(b)
	f := kvfake.New(b)
	f.MustImportKey(b, "ca", rsaKey, kvfake.KeyOptions{})
	c, err := keyvault.NewClient(f.URL(), f.Credential(), f.ClientOptions())
	if err != nil {
		b.Fatal(err)
	}
	k, err := keyvault.New(context.Background(), c, "ca", "", keyvault.Options{})
	if err != nil {
		b.Fatal(err)
	}
	d := sha512.Sum512_256([]byte("x"))
	b.ResetTimer()
	for b.Loop() {
		if _, err := k.Sign(nil, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func to[T any](v T) *T { return &v }
