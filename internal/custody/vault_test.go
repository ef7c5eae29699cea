package custody_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/keyvault/kvfake"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/testca"
)

// vaultEnv is one CA deployment: a fake Key Vault reached through the real azkeys client, and a store.
type vaultEnv struct {
	fake *kvfake.Server
	meta *memstore.Store
	v    *custody.Vault
}

func newVaultEnv(t *testing.T) *vaultEnv {
	t.Helper()
	e := &vaultEnv{fake: kvfake.New(t), meta: memstore.New()}
	e.v = e.instance(t)
	return e
}

// instance is a fresh Vault with its own azkeys client, as a newly started Function instance has.
func (e *vaultEnv) instance(t *testing.T) *custody.Vault {
	t.Helper()
	client, err := keyvault.NewClient(e.fake.URL(), e.fake.Credential(), e.fake.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	v := &custody.Vault{Client: client, Meta: e.meta, CAKeyName: "ca", KEKName: "kek",
		KeyOptions: keyvault.Options{MaxAttempts: 1}}
	if e.v != nil {
		v.CAKeyVer, v.CADecrypts = e.v.CAKeyVer, e.v.CADecrypts
	}
	return v
}

// importKey installs priv into the fake and returns its key ID.
func (e *vaultEnv) importKey(t *testing.T, name string, priv crypto.Signer, ops ...string) string {
	t.Helper()
	return e.fake.MustImportKey(t, name, priv, kvfake.KeyOptions{Ops: ops})
}

// importKEK installs a 2048-bit key-encryption key (Key Vault would create a 3072-bit one; 2048 keeps tests fast).
func (e *vaultEnv) importKEK(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k := testRSAKey(t, 9)
	e.importKey(t, "kek", k, kvfake.KeyOpWrapKey, kvfake.KeyOpUnwrapKey)
	return k
}

func (e *vaultEnv) get(t *testing.T, name string) ([]byte, string) {
	t.Helper()
	raw, etag, err := e.meta.GetMeta(context.Background(), name)
	if err != nil {
		t.Fatalf("reading meta %q: %v", name, err)
	}
	return raw, etag
}

func (e *vaultEnv) put(t *testing.T, name string, raw []byte) {
	t.Helper()
	_, etag := e.get(t, name)
	if _, err := e.meta.PutMeta(context.Background(), name, raw, etag); err != nil {
		t.Fatal(err)
	}
}

func (e *vaultEnv) absent(t *testing.T, name string) {
	t.Helper()
	if _, _, err := e.meta.GetMeta(context.Background(), name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("meta %q: err = %v, want not found", name, err)
	}
}

// kvKey loads a key as custody sees it, to inspect its type and key_ops.
func (e *vaultEnv) kvKey(t *testing.T, name, version string) *keyvault.Key {
	t.Helper()
	k, err := keyvault.New(context.Background(), e.v.Client, name, version, keyvault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// counts snapshots the fake's counters for the operations custody may cause.
func (e *vaultEnv) counts() map[string]int {
	out := map[string]int{}
	for _, op := range []string{kvfake.OpCreate, kvfake.OpSign, kvfake.OpDecrypt, kvfake.OpWrapKey, kvfake.OpUnwrapKey} {
		out[op] = e.fake.Count(op)
	}
	return out
}

func (e *vaultEnv) wantCounts(t *testing.T, want map[string]int) {
	t.Helper()
	got := e.counts()
	for op, n := range want {
		if got[op] != n {
			t.Errorf("Key Vault %s calls = %d, want %d (all: %v)", op, got[op], n, got)
		}
	}
}

func (e *vaultEnv) load(t *testing.T) *custody.Keys {
	t.Helper()
	k, err := e.v.Load(context.Background(), now)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return k
}

// TestVaultLoadRefusesAKEKThatCannotUnwrap: key_ops changed after ca init so that the KEK no longer allows
// unwrapKey stop Load with a named error, before Key Vault is asked (its 403 would read as a role still spreading).
func TestVaultLoadRefusesAKEKThatCannotUnwrap(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	mustInit(t, e.v, rootInit("RSA"))
	e.fake.SetKeyOps("kek", kvfake.KeyOpWrapKey)
	e.fake.Reset()
	_, err := e.v.Load(context.Background(), now)
	if err == nil || errors.Is(err, keyvault.ErrForbidden) || !strings.Contains(err.Error(), "does not allow unwrapKey") {
		t.Fatalf("Load = %v, want the KEK's missing unwrapKey named (and not Key Vault's forbidden)", err)
	}
	if n := e.fake.Count(kvfake.OpUnwrapKey); n != 0 {
		t.Errorf("unwrapKey asked %d times of a KEK that does not allow it", n)
	}
}

// TestVaultInitRefusesADisabledKey: an existing CA key that is disabled is an operator's setting, not an outage:
// ca init fails with ErrInitOptions (exit 2), which the postprovision hook does not retry, and creates nothing.
func TestVaultInitRefusesADisabledKey(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.fake.MustImportKey(t, "ca", testRSAKey(t, 10), kvfake.KeyOptions{Disabled: true})
	_, err := e.v.Init(context.Background(), rootInit("RSA"), now)
	if !errors.Is(err, custody.ErrInitOptions) || !errors.Is(err, keyvault.ErrDisabled) {
		t.Fatalf("Init = %v, want ErrInitOptions wrapping ErrDisabled", err)
	}
	e.absent(t, "ca")
	e.wantCounts(t, map[string]int{kvfake.OpCreate: 0, kvfake.OpSign: 0})
}

// TestVaultInitNamesASoftDeletedKey: a CA key deleted from the vault keeps its name while it is recoverable, so
// creating it again gets 409. ca init says what to do (recover or purge it) with ErrInitOptions (exit 2, which the
// postprovision hook does not retry), instead of passing on Key Vault's conflict.
func TestVaultInitNamesASoftDeletedKey(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.fake.MustImportKey(t, "ca", testRSAKey(t, 11), kvfake.KeyOptions{})
	e.fake.SoftDelete("ca")
	_, err := e.v.Init(context.Background(), rootInit("RSA"), now)
	if !errors.Is(err, custody.ErrInitOptions) || !strings.Contains(err.Error(), "recover") {
		t.Fatalf("Init = %v, want ErrInitOptions saying to recover or purge the key", err)
	}
	e.absent(t, "ca")
	e.wantCounts(t, map[string]int{kvfake.OpCreate: 1, kvfake.OpSign: 0})
}

// TestVaultInitRetriesOtherConflicts: a 409 is not always a soft-deleted key. Key Vault also answers 409 while a key
// is being recovered (the operator ran the recover command and re-ran ca init at once) and for concurrent
// operations on one name; those are over by the next attempt, so ca init fails retryably (the postprovision hook
// tries again), not with ErrInitOptions advising a recovery.
func TestVaultInitRetriesOtherConflicts(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.fake.Fail(kvfake.OpCreate, 1, http.StatusConflict)
	if _, err := e.v.Init(context.Background(), rootInit("RSA"), now); err == nil || errors.Is(err, custody.ErrInitOptions) {
		t.Fatalf("Init after a transient 409 = %v; want a retryable error, not ErrInitOptions", err)
	}
	mustInit(t, e.v, rootInit("RSA")) // the next attempt creates the key
}

// TestVaultLoadsCAKeyNamedInOtherCase: Key Vault names are case-insensitive; an instance configured as "ca-signing"
// names the key initialised as "CA-Signing" (the spelling Key Vault keeps), loads it, and may re-run ca init.
func TestVaultLoadsCAKeyNamedInOtherCase(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.v.CAKeyName = "CA-Signing"
	res := mustInit(t, e.v, rootInit("RSA"))
	e.v = e.instance(t)
	e.v.CAKeyName = "ca-signing"
	checkLoaded(t, e.load(t), res.KID)
	if _, err := e.v.Init(context.Background(), rootInit("RSA"), now); err != nil {
		t.Fatalf("re-running Init configured as ca-signing: %v", err)
	}
}

func rootInit(kty string) custody.VaultInitOptions {
	return custody.VaultInitOptions{KeyType: kty,
		Root:     custody.RootOptions{Subject: pkix.Name{CommonName: "Test Root CA", Organization: []string{"Example Org"}}, Validity: tenYears},
		RACommon: "Test SCEP RA"}
}

func mustInit(t *testing.T, v *custody.Vault, opts custody.VaultInitOptions) *custody.InitResult {
	t.Helper()
	res, err := v.Init(context.Background(), opts, now)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return res
}

func caKeyOf(t *testing.T, k *custody.Keys) *keyvault.Key {
	t.Helper()
	kv, ok := k.CASigner.(*keyvault.Key)
	if !ok {
		t.Fatalf("CA signer is %T, want the Key Vault key", k.CASigner)
	}
	return kv
}

// checkLoaded runs the checks every successfully loaded Key Vault CA must pass.
func checkLoaded(t *testing.T, k *custody.Keys, kid string) {
	t.Helper()
	if err := k.Check(now); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := caKeyOf(t, k).KID(); got != kid {
		t.Fatalf("CA signer is %s, want %s", got, kid)
	}
	if k.RACert == nil || k.RAKey == nil {
		t.Fatal("no RA loaded")
	}
	// The RA chains to the CA under Go's own path validation, not only Check's signature test.
	roots := x509.NewCertPool()
	roots.AddCert(k.Chain[len(k.Chain)-1])
	inter := x509.NewCertPool()
	for _, c := range k.Chain[:len(k.Chain)-1] {
		inter.AddCert(c)
	}
	if _, err := k.RACert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("RA certificate does not verify to the CA chain: %v", err)
	}
	checkEnvelopeOpens(t, k.RACert, k.RAKey)
}

// TestVaultInitRSAOnEmptyVault: `ca init` on an empty vault creates the RSA CA key, the root, the KEK and the RA
// envelope; Load gives back keys that pass Check, sign with the Key Vault key and open SCEP envelopes.
func TestVaultInitRSAOnEmptyVault(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	opts := rootInit("RSA")
	opts.KeySize = 3072
	res := mustInit(t, e.v, opts)
	if !res.KeyCreated || !res.RootCreated || !res.RACreated || res.CSR != nil {
		t.Fatalf("Init result %+v, want key, root and RA created", res)
	}
	if !strings.HasPrefix(res.KID, e.fake.URL()+"/keys/ca/") {
		t.Fatalf("KID %q is not a version of key ca", res.KID)
	}
	// Two keys created (CA, KEK); two signatures (root, RA certificate); one wrap (the RA data key).
	e.wantCounts(t, map[string]int{kvfake.OpCreate: 2, kvfake.OpSign: 2, kvfake.OpWrapKey: 1, kvfake.OpUnwrapKey: 0})

	ca := e.kvKey(t, "ca", "")
	if pub, ok := ca.Public().(*rsa.PublicKey); !ok || pub.N.BitLen() != 3072 || ca.KeyType() != "RSA" {
		t.Errorf("CA key %s %T, want RSA 3072", ca.KeyType(), ca.Public())
	}
	if ops := ca.KeyOps(); !slices.Equal(ops, []string{"sign", "verify"}) {
		t.Errorf("CA key_ops %v, want [sign verify]", ops)
	}
	kek := e.kvKey(t, "kek", "")
	if pub, ok := kek.Public().(*rsa.PublicKey); !ok || pub.N.BitLen() != 3072 {
		t.Errorf("KEK %T, want RSA 3072", kek.Public())
	}
	if ops := kek.KeyOps(); !slices.Equal(ops, []string{"wrapKey", "unwrapKey"}) {
		t.Errorf("KEK key_ops %v, want [wrapKey unwrapKey]", ops)
	}

	k := e.load(t)
	checkLoaded(t, k, res.KID)
	root := k.CA()
	if len(k.Chain) != 1 || root.Subject.CommonName != "Test Root CA" || root.CheckSignatureFrom(root) != nil {
		t.Errorf("chain of %d, CA %q: want one self-signed root", len(k.Chain), root.Subject)
	}
	if !ca.Public().(*rsa.PublicKey).Equal(root.PublicKey) || root.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Error("root is not for the Key Vault key with SHA256WithRSA")
	}
	if k.RACert.Subject.CommonName != "Test SCEP RA" {
		t.Errorf("RA subject %q", k.RACert.Subject)
	}

	// The store holds the RA key only encrypted.
	raw, _ := e.get(t, "ra")
	plain, err := x509.MarshalPKCS8PrivateKey(k.RAKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{plain, []byte(base64.StdEncoding.EncodeToString(plain))} {
		if bytes.Contains(raw, secret) {
			t.Fatal("the stored RA envelope contains the RA private key in the clear")
		}
	}

	chain, kid, ra, err := e.v.Show(context.Background())
	if err != nil || kid != res.KID || len(chain) != 1 || !chain[0].Equal(root) || ra == nil || !ra.Equal(k.RACert) {
		t.Errorf("Show = %d certs, %q, RA %v, %v", len(chain), kid, ra != nil, err)
	}
}

// TestVaultInitEC: an EC CA key (created in the vault) signs the root and the RSA RA certificate with ECDSA.
func TestVaultInitEC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kty, curve string
		bits       int
		alg        x509.SignatureAlgorithm
	}{
		{"EC", "P-256", 256, x509.ECDSAWithSHA256},
		{"EC-HSM", "P-384", 384, x509.ECDSAWithSHA384},
	} {
		t.Run(tc.kty+"/"+tc.curve, func(t *testing.T) {
			t.Parallel()
			e := newVaultEnv(t)
			e.importKEK(t)
			opts := rootInit(tc.kty)
			opts.Curve = tc.curve
			res := mustInit(t, e.v, opts)
			if !res.KeyCreated || !res.RootCreated || !res.RACreated {
				t.Fatalf("Init result %+v", res)
			}
			e.wantCounts(t, map[string]int{kvfake.OpCreate: 1, kvfake.OpSign: 2, kvfake.OpWrapKey: 1})
			ca := e.kvKey(t, "ca", "")
			pub, ok := ca.Public().(*ecdsa.PublicKey)
			if !ok || pub.Curve.Params().BitSize != tc.bits || ca.KeyType() != tc.kty {
				t.Fatalf("CA key %s %T, want %s %s", ca.KeyType(), ca.Public(), tc.kty, tc.curve)
			}
			k := e.load(t)
			checkLoaded(t, k, res.KID)
			if !pub.Equal(k.CA().PublicKey) || k.CA().SignatureAlgorithm != tc.alg || k.RACert.SignatureAlgorithm != tc.alg {
				t.Errorf("CA %s, RA %s, want %s from the Key Vault key", k.CA().SignatureAlgorithm, k.RACert.SignatureAlgorithm, tc.alg)
			}
			if _, ok := k.RACert.PublicKey.(*rsa.PublicKey); !ok {
				t.Error("RA key is not RSA")
			}
		})
	}
}

// TestVaultInitIsIdempotent: a second `ca init` changes nothing, in the store or in Key Vault.
func TestVaultInitIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10), kvfake.KeyOpSign, kvfake.KeyOpVerify)
	e.importKEK(t)
	first := mustInit(t, e.v, rootInit("RSA"))
	caRaw, caTag := e.get(t, "ca")
	raRaw, raTag := e.get(t, "ra")

	e.fake.Reset()
	for i := range 2 {
		res := mustInit(t, e.instance(t), rootInit("RSA"))
		if res.KeyCreated || res.RootCreated || res.RACreated || res.CSR != nil || res.KID != first.KID {
			t.Fatalf("re-run %d: result %+v, want nothing created and KID %s", i, res, first.KID)
		}
	}
	e.wantCounts(t, map[string]int{kvfake.OpCreate: 0, kvfake.OpSign: 0, kvfake.OpWrapKey: 0, kvfake.OpUnwrapKey: 0})
	if raw, tag := e.get(t, "ca"); tag != caTag || !bytes.Equal(raw, caRaw) {
		t.Error("re-running Init rewrote the CA record")
	}
	if raw, tag := e.get(t, "ra"); tag != raTag || !bytes.Equal(raw, raRaw) {
		t.Error("re-running Init rewrote the RA envelope")
	}
}

// TestVaultInitResumesAfterFailure: an Init that dies between the CA record and the RA envelope is finished by the
// next run, which keeps the root it already made.
func TestVaultInitResumesAfterFailure(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	e.fake.Fail(kvfake.OpWrapKey, 1, http.StatusInternalServerError)
	_, err := e.v.Init(context.Background(), rootInit("RSA"), now)
	wantErr(t, err, keyvault.ErrUnavailable, "wrapping RA data key")
	_, caTag := e.get(t, "ca")
	e.absent(t, "ra")
	_, err = e.v.Load(context.Background(), now)
	wantErr(t, err, custody.ErrNotInitialized, "no RA key stored")

	res := mustInit(t, e.v, rootInit("RSA"))
	if res.KeyCreated || res.RootCreated || !res.RACreated {
		t.Fatalf("resumed Init result %+v, want only the RA created", res)
	}
	if _, tag := e.get(t, "ca"); tag != caTag {
		t.Error("the resumed Init replaced the root")
	}
	checkLoaded(t, e.load(t), res.KID)
}

// TestVaultInitAdoptsExistingKey: a key already in the vault is used (its current version), not replaced.
func TestVaultInitAdoptsExistingKey(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 11))
	current := testRSAKey(t, 10)
	kid := e.importKey(t, "ca", current, kvfake.KeyOpSign, kvfake.KeyOpVerify)
	e.importKEK(t)

	res := mustInit(t, e.v, rootInit("RSA"))
	if res.KeyCreated || res.KID != kid {
		t.Fatalf("Init result %+v, want the adopted key %s", res, kid)
	}
	e.wantCounts(t, map[string]int{kvfake.OpCreate: 0})
	k := e.load(t)
	checkLoaded(t, k, kid)
	if !current.PublicKey.Equal(k.CA().PublicKey) {
		t.Error("the root is not for the adopted key")
	}
}

// TestVaultInitRefusesUnfitKeys: adopted keys that cannot do their job, and options that would make a broken CA,
// are refused with a clear error before anything depends on them.
func TestVaultInitRefusesUnfitKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("CA key without sign", func(t *testing.T) {
		t.Parallel()
		e := newVaultEnv(t)
		e.importKey(t, "ca", testRSAKey(t, 10), kvfake.KeyOpVerify, kvfake.KeyOpDecrypt)
		_, err := e.v.Init(ctx, rootInit("RSA"), now)
		wantErr(t, err, custody.ErrInitOptions, "does not allow sign (key_ops: verify, decrypt)")
		e.absent(t, "ca")
		e.wantCounts(t, map[string]int{kvfake.OpSign: 0, kvfake.OpCreate: 0})
	})
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		ops  []string
	}{
		{"EC KEK", testECKey(t, elliptic.P256()), nil},
		{"KEK without unwrapKey", testRSAKey(t, 9), []string{kvfake.KeyOpWrapKey, kvfake.KeyOpEncrypt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newVaultEnv(t)
			e.importKey(t, "ca", testRSAKey(t, 10))
			e.importKey(t, "kek", tc.key, tc.ops...)
			_, err := e.v.Init(ctx, rootInit("RSA"), now)
			wantErr(t, err, nil, "the key-encryption key "+e.fake.URL()+"/keys/kek/")
			wantErr(t, err, custody.ErrInitOptions, "must be RSA with wrapKey and unwrapKey")
			e.absent(t, "ra")
			e.wantCounts(t, map[string]int{kvfake.OpWrapKey: 0})
		})
	}
	t.Run("options", func(t *testing.T) {
		t.Parallel()
		e := newVaultEnv(t)
		noSubject := rootInit("RSA")
		noSubject.Root.Subject = pkix.Name{}
		noValidity := rootInit("RSA")
		noValidity.Root.Validity = 0
		for _, tc := range []struct {
			opts   custody.VaultInitOptions
			substr string
		}{
			{noSubject, "the CA subject is empty"},
			{noValidity, "the root validity must be positive"},
			{custody.VaultInitOptions{KeyType: "RSA", KeySize: 2048, Root: rootInit("").Root}, "RSA key size 2048 is not 3072 or 4096"},
			{custody.VaultInitOptions{KeyType: "EC", Curve: "P-521", Root: rootInit("").Root}, `curve "P-521" is not P-256 or P-384`},
			{custody.VaultInitOptions{KeyType: "oct", Root: rootInit("").Root}, `key type "oct" is not`},
		} {
			_, err := e.v.Init(ctx, tc.opts, now)
			wantErr(t, err, custody.ErrInitOptions, tc.substr)
		}
		e.absent(t, "ca")
		e.wantCounts(t, map[string]int{kvfake.OpCreate: 0, kvfake.OpSign: 0})
	})
}

// TestVaultLoadUnwrapsOncePerInstance: start-up costs one unwrapKey and nothing else private; SCEP work with the
// RA key afterwards costs no Key Vault operation; every new instance unwraps once.
func TestVaultLoadUnwrapsOncePerInstance(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	res := mustInit(t, e.v, rootInit("RSA"))

	e.fake.Reset()
	k := e.load(t)
	e.wantCounts(t, map[string]int{kvfake.OpUnwrapKey: 1, kvfake.OpSign: 0, kvfake.OpDecrypt: 0, kvfake.OpWrapKey: 0, kvfake.OpCreate: 0})

	// The RA decrypts envelopes and signs CertReps locally.
	checkEnvelopeOpens(t, k.RACert, k.RAKey)
	digest := sha256.Sum256([]byte("CertRep"))
	if _, err := k.RAKey.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	e.wantCounts(t, map[string]int{kvfake.OpUnwrapKey: 1, kvfake.OpSign: 0, kvfake.OpDecrypt: 0})

	// A restart (new instance, new client) unwraps once more and gets the same RA.
	k2, err := e.instance(t).Load(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	checkLoaded(t, k2, res.KID)
	if !k2.RACert.Equal(k.RACert) {
		t.Error("the restarted instance loaded another RA")
	}
	e.wantCounts(t, map[string]int{kvfake.OpUnwrapKey: 2, kvfake.OpSign: 0, kvfake.OpDecrypt: 0})
}

// mutateEnvelope rewrites the stored RA envelope through its JSON fields.
func mutateEnvelope(t *testing.T, raw []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func field(t *testing.T, m map[string]any, name string) []byte {
	t.Helper()
	s, ok := m[name].(string)
	if !ok {
		t.Fatalf("envelope has no field %q", name)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setField(m map[string]any, name string, b []byte) {
	m[name] = base64.StdEncoding.EncodeToString(b)
}

func flip(t *testing.T, name string) func(m map[string]any) {
	return func(m map[string]any) {
		b := field(t, m, name)
		b[len(b)/2] ^= 0x01
		setField(m, name, b)
	}
}

// TestVaultLoadRejectsTamperedEnvelope: any change to the stored envelope stops start-up with ErrEnvelope; a Key
// Vault outage during the unwrap does not masquerade as tampering.
func TestVaultLoadRejectsTamperedEnvelope(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	caPriv := testRSAKey(t, 10)
	e.importKey(t, "ca", caPriv)
	kekPriv := e.importKEK(t)
	mustInit(t, e.v, rootInit("RSA"))
	orig, _ := e.get(t, "ra")
	k := e.load(t)

	// Another genuine RA certificate from the same CA, for another key.
	otherRA := testRA(t, k.CA(), caPriv, testRSAKey(t, 12).Public())

	// A well-formed envelope, wrapped under the real KEK and bound to the real certificate, that holds a key
	// which is not the certificate's: only the final key check catches it.
	foreignKey := func(m map[string]any) {
		plain, err := x509.MarshalPKCS8PrivateKey(testRSAKey(t, 12))
		if err != nil {
			t.Fatal(err)
		}
		dek := make([]byte, 32)
		_, _ = rand.Read(dek)
		wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &kekPriv.PublicKey, dek, nil)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := aes.NewCipher(dek)
		gcm, _ := cipher.NewGCM(block)
		nonce := make([]byte, gcm.NonceSize())
		_, _ = rand.Read(nonce)
		aad := sha256.Sum256(field(t, m, "cert"))
		setField(m, "wrappedKey", wrapped)
		setField(m, "nonce", nonce)
		setField(m, "ciphertext", gcm.Seal(nil, nonce, plain, aad[:]))
	}

	for _, tc := range []struct {
		name   string
		mutate func(m map[string]any)
		also   error
		substr string
	}{
		{"ciphertext byte flipped", flip(t, "ciphertext"), nil, "authentication failed"},
		{"nonce byte flipped", flip(t, "nonce"), nil, "authentication failed"},
		{"wrapped key byte flipped", flip(t, "wrappedKey"), keyvault.ErrRejected, "the data key does not unwrap with"},
		{"wrapped key truncated", func(m map[string]any) { setField(m, "wrappedKey", field(t, m, "wrappedKey")[:100]) },
			keyvault.ErrRejected, "the data key does not unwrap"},
		{"wrapped key too long", func(m map[string]any) { setField(m, "wrappedKey", append(field(t, m, "wrappedKey"), 0)) },
			keyvault.ErrInvalidInput, "the data key does not unwrap"},
		{"certificate swapped", func(m map[string]any) { setField(m, "cert", otherRA.Raw) }, nil, "authentication failed"},
		{"certificate garbage", func(m map[string]any) { setField(m, "cert", []byte("junk")) }, nil, "RA certificate does not parse"},
		{"key for another certificate", foreignKey, custody.ErrKeyMismatch, "RA key does not match its certificate"},
		{"algorithm changed", func(m map[string]any) { m["alg"] = "RSA1_5" }, nil, "envelope is malformed"},
		{"version changed", func(m map[string]any) { m["version"] = 2 }, nil, "envelope is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.put(t, "ra", mutateEnvelope(t, orig, tc.mutate))
			_, err := e.v.Load(context.Background(), now)
			wantErr(t, err, custody.ErrEnvelope, "custody: RA key envelope cannot be opened: "+tc.substr)
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Errorf("error %q does not match %v", err, tc.also)
			}
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		e.put(t, "ra", []byte("{"))
		_, err := e.v.Load(context.Background(), now)
		wantErr(t, err, custody.ErrEnvelope, "envelope is malformed")
	})

	// The untouched envelope still opens: the failures above came from the changes alone.
	e.put(t, "ra", orig)
	e.load(t)

	// Throttling and outages are not tampering: the caller must be able to tell them apart and retry.
	e.fake.Fail(kvfake.OpUnwrapKey, 1, http.StatusServiceUnavailable)
	_, err := e.v.Load(context.Background(), now)
	if err == nil || errors.Is(err, custody.ErrEnvelope) || !errors.Is(err, keyvault.ErrUnavailable) {
		t.Fatalf("Load during an outage: %v; want ErrUnavailable, not ErrEnvelope", err)
	}
	e.fake.Throttle(kvfake.OpUnwrapKey, 1, 30*time.Second)
	_, err = e.v.Load(context.Background(), now)
	if err == nil || errors.Is(err, custody.ErrEnvelope) || !errors.Is(err, keyvault.ErrThrottled) {
		t.Fatalf("Load while throttled: %v; want ErrThrottled, not ErrEnvelope", err)
	}
}

// TestVaultCAKeyVersionPinning: the CA key version recorded by `ca init` is what loads, even after the key is
// rotated in the vault; pinning a version whose key is not the certificate's stops start-up.
func TestVaultCAKeyVersionPinning(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	res := mustInit(t, e.v, rootInit("RSA"))
	good := e.load(t)

	// A new version appears (someone rotated the key in the portal).
	rotated := e.importKey(t, "ca", testRSAKey(t, 11))
	checkLoaded(t, e.load(t), res.KID)

	// AZSCEP_CA_KEY_VERSION pinned to the new version: the key does not match the stored chain.
	e.v.CAKeyVer = path.Base(rotated)
	_, err := e.v.Load(context.Background(), now)
	wantErr(t, err, custody.ErrKeyMismatch, "the CA key ("+rotated+") does not match the CA certificate \"CN=Test Root CA,O=Example Org\"")

	// The same through Check directly, as start-up code that assembles Keys itself would see it.
	swapped := &custody.Keys{Chain: good.Chain, CASigner: e.kvKey(t, "ca", path.Base(rotated)), RACert: good.RACert, RAKey: good.RAKey}
	wantErr(t, swapped.Check(now), custody.ErrKeyMismatch, "does not match the CA certificate")

	// Pinning the right version explicitly works; an unknown version is a clear not-found.
	e.v.CAKeyVer = path.Base(res.KID)
	checkLoaded(t, e.load(t), res.KID)
	e.v.CAKeyVer = "0123456789abcdef0123456789abcdef"
	_, err = e.v.Load(context.Background(), now)
	wantErr(t, err, keyvault.ErrNotFound, "loading CA key ca/0123456789abcdef0123456789abcdef")

	// A configuration that names another CA key is refused rather than half-loaded.
	e.v.CAKeyVer = ""
	e.v.CAKeyName = "other-ca"
	_, err = e.v.Load(context.Background(), now)
	wantErr(t, err, nil, `the CA key is configured as "other-ca" but the CA was initialised with "ca"`)
	_, err = e.v.Init(context.Background(), rootInit("RSA"), now)
	wantErr(t, err, nil, `the CA key is configured as "other-ca"`)
}

// caKeyVersionsUsed lists the CA key versions the requests since the last Reset named ("" for a request without
// one), each once, in order.
func (e *vaultEnv) caKeyVersionsUsed() []string {
	var out []string
	for _, r := range e.fake.Journal() {
		rest, ok := strings.CutPrefix(r.Path, "/keys/ca")
		if !r.Authenticated || !ok || rest == "/versions" {
			continue
		}
		version, _, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
		if !slices.Contains(out, version) {
			out = append(out, version)
		}
	}
	return out
}

// TestVaultRACertificatesUseThePinnedCAKeyVersion: with AZSCEP_CA_KEY_VERSION pinned to a version holding the same
// key material as the recorded one (a BYOK re-import or a restore makes one), `ca import`, `ca rotate-ra` and the
// hourly RA renewal sign with the pinned version, as start-up does: the recorded version may be disabled once the
// pin is in place, and RA renewal would then fail every hour until the RA expired.
func TestVaultRACertificatesUseThePinnedCAKeyVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVaultEnv(t)
	caPriv := testRSAKey(t, 10)
	e.importKey(t, "ca", caPriv, kvfake.KeyOpSign, kvfake.KeyOpVerify)
	e.importKEK(t)
	opts := custody.VaultInitOptions{Subordinate: true, Root: custody.RootOptions{Subject: pkix.Name{CommonName: "Issuing CA"}}}
	csr, err := x509.ParseCertificateRequest(mustInit(t, e.v, opts).CSR)
	if err != nil {
		t.Fatal(err)
	}
	pinned := path.Base(e.importKey(t, "ca", caPriv, kvfake.KeyOpSign, kvfake.KeyOpVerify))
	e.v.CAKeyVer = pinned
	wantPinned := func(t *testing.T, step string) {
		t.Helper()
		if got := e.caKeyVersionsUsed(); !slices.Equal(got, []string{pinned}) {
			t.Errorf("%s used CA key versions %q, want only the pinned %s", step, got, pinned)
		}
		if e.fake.Count(kvfake.OpSign) != 1 {
			t.Errorf("%s: %d signatures, want 1 (the RA certificate)", step, e.fake.Count(kvfake.OpSign))
		}
	}

	parentKey := testRSAKey(t, 13)
	parent := parentCA(t, parentKey, "Parent Root")
	sub := subCert(t, csr, csr.PublicKey, parent, parentKey, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, now.Add(tenYears))
	e.fake.Reset()
	if err := e.v.Import(ctx, []*x509.Certificate{sub, parent}, "", now); err != nil {
		t.Fatalf("Import: %v", err)
	}
	wantPinned(t, "ca import")

	e.fake.Reset()
	if err := e.v.RotateRA(ctx, "", now); err != nil {
		t.Fatalf("RotateRA: %v", err)
	}
	wantPinned(t, "ca rotate-ra")

	k := e.load(t)
	if got := caKeyOf(t, k).Version(); got != pinned {
		t.Fatalf("start-up loaded CA key version %s, want the pinned %s", got, pinned)
	}
	clock := testca.NewClock(now)
	keeper := &custody.RAKeeper{Store: e.v, Keys: k, Now: clock.Now,
		Revoke:  func(context.Context, string, string) error { return nil },
		Revoked: func(context.Context, string) (bool, error) { return false, nil }}
	if _, err := keeper.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ra, _ := k.RA()
	clock.Set(ra.NotAfter.Add(-29 * 24 * time.Hour))
	e.fake.Reset()
	if lines, err := keeper.Maintain(ctx); err != nil || len(lines) != 1 || !strings.Contains(lines[0], "RA certificate renewed") {
		t.Fatalf("Maintain 29 days before the RA expires: %v %v", lines, err)
	}
	wantPinned(t, "the hourly RA renewal")
}

// parentCA is a throwaway offline root standing in for the enterprise CA that signs the subordinate.
func parentCA(t *testing.T, key crypto.Signer, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * tenYears),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	tmpl.SerialNumber = big.NewInt(1)
	return issue(t, tmpl, tmpl, key.Public(), key)
}

func subCert(t *testing.T, csr *x509.CertificateRequest, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer,
	usage x509.KeyUsage, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return issue(t, &x509.Certificate{Subject: csr.Subject, NotBefore: now.Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: usage}, parent, pub, parentKey)
}

// TestVaultSubordinate: init prints a CSR for the Key Vault key; nothing loads until the signed certificate is
// imported; imports for another key, of a non-CA certificate, or with a broken chain are refused; the right one
// installs [sub, parent] and the RA; importing again changes nothing.
func TestVaultSubordinate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVaultEnv(t)
	caPriv := testRSAKey(t, 10)
	kid := e.importKey(t, "ca", caPriv, kvfake.KeyOpSign, kvfake.KeyOpVerify)
	e.importKEK(t)
	opts := custody.VaultInitOptions{Subordinate: true, RACommon: "Sub RA",
		Root: custody.RootOptions{Subject: pkix.Name{CommonName: "Issuing CA", Organization: []string{"Example Org"}}}}

	res := mustInit(t, e.v, opts)
	if res.CSR == nil || res.RootCreated || res.RACreated || res.KeyCreated || res.KID != kid {
		t.Fatalf("Init result %+v, want a CSR for the adopted key", res)
	}
	csr, err := x509.ParseCertificateRequest(res.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if csr.Subject.CommonName != "Issuing CA" || csr.Subject.Organization[0] != "Example Org" || csr.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("CSR subject %q alg %s", csr.Subject, csr.SignatureAlgorithm)
	}
	if !caPriv.PublicKey.Equal(csr.PublicKey) {
		t.Fatal("the CSR is not for the Key Vault key")
	}
	e.wantCounts(t, map[string]int{kvfake.OpSign: 1, kvfake.OpWrapKey: 0})
	e.absent(t, "ra")

	_, err = e.v.Load(ctx, now)
	wantErr(t, err, custody.ErrNotInitialized, "awaits `azscep ca import`")
	wantErr(t, e.v.RotateRA(ctx, "", now), custody.ErrNotInitialized, "awaits `azscep ca import`")

	// Re-running init hands out the same CSR without signing again.
	e.fake.Reset()
	again := mustInit(t, e.v, opts)
	if !bytes.Equal(again.CSR, res.CSR) {
		t.Error("re-run Init made a different CSR")
	}
	e.wantCounts(t, map[string]int{kvfake.OpSign: 0})

	parentKey := testRSAKey(t, 13)
	parent := parentCA(t, parentKey, "Parent Root")
	otherParentKey := testRSAKey(t, 14)
	otherParent := parentCA(t, otherParentKey, "Parent Root")
	usage := x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	sub := subCert(t, csr, csr.PublicKey, parent, parentKey, usage, now.Add(tenYears))

	_, pendingTag := e.get(t, "ca")
	for _, tc := range []struct {
		name   string
		chain  []*x509.Certificate
		target error
		substr string
	}{
		{"nothing", nil, nil, "no certificate to import"},
		{"certificate for another key", []*x509.Certificate{
			subCert(t, csr, testRSAKey(t, 12).Public(), parent, parentKey, usage, now.Add(tenYears)), parent},
			custody.ErrKeyMismatch, `the certificate "CN=Issuing CA,O=Example Org" is not for the CA key ` + kid},
		{"no keyCertSign", []*x509.Certificate{
			subCert(t, csr, csr.PublicKey, parent, parentKey, x509.KeyUsageDigitalSignature, now.Add(tenYears)), parent},
			nil, "not a CA certificate with keyCertSign"},
		// The CA signs its CRLs with this key: a certificate without cRLSign would publish CRLs that relying
		// parties reject (RFC 5280 §4.2.1.3; Go's and OpenSSL's CRL checks both refuse them).
		{"no cRLSign", []*x509.Certificate{
			subCert(t, csr, csr.PublicKey, parent, parentKey, x509.KeyUsageCertSign, now.Add(tenYears)), parent},
			nil, "without cRLSign"},
		{"expired", []*x509.Certificate{subCert(t, csr, csr.PublicKey, parent, parentKey, usage, now.Add(-time.Minute)), parent},
			nil, "the certificate expired at"},
		{"wrong parent", []*x509.Certificate{sub, otherParent}, nil, "chain link 0 does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, e.v.Import(ctx, tc.chain, "", now), tc.target, tc.substr)
			if _, tag := e.get(t, "ca"); tag != pendingTag {
				t.Fatal("a refused import changed the CA record")
			}
			e.absent(t, "ra")
		})
	}

	e.fake.Reset()
	if err := e.v.Import(ctx, []*x509.Certificate{sub, parent}, "Sub RA", now); err != nil {
		t.Fatalf("Import: %v", err)
	}
	e.wantCounts(t, map[string]int{kvfake.OpSign: 1, kvfake.OpWrapKey: 1, kvfake.OpCreate: 0}) // the RA certificate
	k := e.load(t)
	checkLoaded(t, k, kid)
	if len(k.Chain) != 2 || !k.Chain[0].Equal(sub) || !k.Chain[1].Equal(parent) {
		t.Fatalf("chain is %d certificates, want [sub, parent]", len(k.Chain))
	}
	if k.RACert.Subject.CommonName != "Sub RA" || !bytes.Equal(k.RACert.RawIssuer, sub.RawSubject) {
		t.Errorf("RA %q issued by %q, want Sub RA from the subordinate", k.RACert.Subject, k.RACert.Issuer)
	}

	// Importing the same chain again, or re-running init, is a no-op.
	_, caTag := e.get(t, "ca")
	_, raTag := e.get(t, "ra")
	e.fake.Reset()
	if err := e.v.Import(ctx, []*x509.Certificate{sub, parent}, "Sub RA", now); err != nil {
		t.Fatalf("second Import: %v", err)
	}
	res = mustInit(t, e.v, opts)
	if res.CSR != nil || res.RACreated || res.RootCreated {
		t.Errorf("Init after import: %+v", res)
	}
	e.wantCounts(t, map[string]int{kvfake.OpSign: 0, kvfake.OpWrapKey: 0, kvfake.OpCreate: 0})
	if _, tag := e.get(t, "ca"); tag != caTag {
		t.Error("second Import rewrote the CA record")
	}
	if _, tag := e.get(t, "ra"); tag != raTag {
		t.Error("second Import rewrote the RA envelope")
	}
}

// TestVaultRotateRA: rotation replaces the RA key, certificate and envelope; the next Load gets the new RA.
func TestVaultRotateRA(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVaultEnv(t)
	wantErr(t, e.v.RotateRA(ctx, "", now), custody.ErrNotInitialized, "not initialised")

	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	res := mustInit(t, e.v, rootInit("RSA"))
	old := e.load(t)
	_, caTag := e.get(t, "ca")
	_, raTag := e.get(t, "ra")

	e.fake.Reset()
	later := now.Add(30 * time.Minute) // the new RA is valid from 30 minutes before now
	if err := e.v.RotateRA(ctx, "Rotated RA", later); err != nil {
		t.Fatalf("RotateRA: %v", err)
	}
	e.wantCounts(t, map[string]int{kvfake.OpSign: 1, kvfake.OpWrapKey: 1, kvfake.OpCreate: 0})
	if _, tag := e.get(t, "ra"); tag == raTag {
		t.Fatal("the RA envelope was not replaced")
	}
	if _, tag := e.get(t, "ca"); tag != caTag {
		t.Error("RA rotation touched the CA record")
	}

	k := e.load(t)
	checkLoaded(t, k, res.KID)
	if k.RACert.SerialNumber.Cmp(old.RACert.SerialNumber) == 0 || k.RACert.Equal(old.RACert) {
		t.Fatal("Load returned the old RA certificate")
	}
	if k.RAKey.(*rsa.PrivateKey).Equal(old.RAKey) {
		t.Fatal("the rotated RA has the old key")
	}
	if k.RACert.Subject.CommonName != "Rotated RA" || !k.RACert.NotBefore.Equal(later.Add(-time.Hour)) {
		t.Errorf("rotated RA %q from %s", k.RACert.Subject, k.RACert.NotBefore)
	}
}

// TestVaultCADecryptMode: with CADecrypts the CA key in Key Vault is the SCEP identity; no KEK or RA exist, and a
// CA key that Key Vault would not let decrypt is refused at init and at start-up, not at the first enrollment.
func TestVaultCADecryptMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("created key", func(t *testing.T) {
		t.Parallel()
		e := newVaultEnv(t)
		e.v.CADecrypts = true
		opts := rootInit("RSA-HSM")
		opts.KeySize = 3072
		res := mustInit(t, e.v, opts)
		if !res.KeyCreated || !res.RootCreated || res.RACreated {
			t.Fatalf("Init result %+v, want key and root but no RA", res)
		}
		e.wantCounts(t, map[string]int{kvfake.OpCreate: 1, kvfake.OpWrapKey: 0})
		e.absent(t, "ra")
		ca := e.kvKey(t, "ca", "")
		if ca.KeyType() != "RSA-HSM" || !slices.Equal(ca.KeyOps(), []string{"sign", "verify", "decrypt"}) {
			t.Fatalf("CA key %s with key_ops %v, want RSA-HSM [sign verify decrypt]", ca.KeyType(), ca.KeyOps())
		}
		if _, err := keyvault.New(ctx, e.v.Client, "kek", "", keyvault.Options{}); !errors.Is(err, keyvault.ErrNotFound) {
			t.Fatalf("a KEK exists in CA-decrypt mode: %v", err)
		}

		e.fake.Reset()
		k := e.load(t)
		if err := k.Check(now); err != nil {
			t.Fatal(err)
		}
		if k.RACert != nil || k.RAKey != nil {
			t.Fatal("an RA was loaded in CA-decrypt mode")
		}
		e.wantCounts(t, map[string]int{kvfake.OpUnwrapKey: 0, kvfake.OpDecrypt: 0, kvfake.OpSign: 0})
		cert, key, err := k.SCEPIdentity()
		if err != nil {
			t.Fatalf("SCEPIdentity: %v", err)
		}
		if !cert.Equal(k.CA()) {
			t.Fatal("SCEP identity is not the CA certificate")
		}
		if kv, ok := key.(*keyvault.Key); !ok || kv.KID() != res.KID {
			t.Fatalf("SCEP identity key is %T, want the Key Vault CA key", key)
		}
		checkEnvelopeOpens(t, cert, key)
		e.wantCounts(t, map[string]int{kvfake.OpDecrypt: 1})

		wantErr(t, e.v.RotateRA(ctx, "", now), nil, "CA-decrypt mode has no RA key to rotate")
		if again := mustInit(t, e.v, opts); again.KeyCreated || again.RootCreated || again.RACreated {
			t.Errorf("re-run Init result %+v", again)
		}
	})

	t.Run("sign-only key", func(t *testing.T) {
		t.Parallel()
		e := newVaultEnv(t)
		e.importKey(t, "ca", testRSAKey(t, 10), kvfake.KeyOpSign, kvfake.KeyOpVerify)
		e.importKEK(t)
		e.v.CADecrypts = true
		_, err := e.v.Init(ctx, rootInit("RSA"), now)
		wantErr(t, err, nil, "CA-decrypt mode needs an RSA CA key that allows decrypt")
		e.absent(t, "ca")

		// The same key initialised for RA mode, then started in CA-decrypt mode: Load refuses it.
		e.v.CADecrypts = false
		res := mustInit(t, e.v, rootInit("RSA"))
		e.v.CADecrypts = true
		_, err = e.v.Load(ctx, now)
		wantErr(t, err, nil, "CA-decrypt mode needs a CA key whose key_ops allow decrypt; "+res.KID+" allows only sign, verify")

		// What that check prevents: Key Vault refuses the decrypt an enrollment would need.
		e.v.CADecrypts = false
		keys := &custody.Keys{Chain: e.load(t).Chain, CASigner: e.kvKey(t, "ca", "")}
		_, _, err = keys.SCEPIdentity()
		wantErr(t, err, nil, "key_ops allow decrypt")
		_, err = keys.CASigner.(crypto.Decrypter).Decrypt(rand.Reader, make([]byte, 256), nil)
		if !errors.Is(err, keyvault.ErrForbidden) {
			t.Fatalf("decrypt with a sign-only key: %v, want ErrForbidden", err)
		}
	})

	t.Run("EC key", func(t *testing.T) {
		t.Parallel()
		e := newVaultEnv(t)
		e.v.CADecrypts = true
		opts := rootInit("EC")
		_, err := e.v.Init(ctx, opts, now)
		wantErr(t, err, nil, "CA-decrypt mode needs an RSA CA key")
		e.wantCounts(t, map[string]int{kvfake.OpCreate: 0})

		// An adopted EC key is refused as well.
		e.importKey(t, "ca", testECKey(t, elliptic.P256()))
		_, err = e.v.Init(ctx, rootInit("RSA"), now)
		wantErr(t, err, nil, "CA-decrypt mode needs an RSA CA key that allows decrypt")
		e.absent(t, "ca")
	})
}

// TestVaultRAKeeper: Key Vault mode end to end through RAKeeper. A renewal keeps the previous RA in the envelope;
// a second instance re-reads it with one store read and one unwrap per new key (an unchanged envelope costs no
// unwrap); after the overlap Maintain revokes the previous RA and drops it from the envelope.
func TestVaultRAKeeper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	mustInit(t, e.v, rootInit("RSA"))
	clock := testca.NewClock(now)
	revoked := map[string]string{}
	keeper := func(v *custody.Vault, k *custody.Keys) *custody.RAKeeper {
		return &custody.RAKeeper{Store: v, Keys: k, Now: clock.Now,
			Revoke:  func(_ context.Context, serial, reason string) error { revoked[serial] = reason; return nil },
			Revoked: func(_ context.Context, serial string) (bool, error) { _, ok := revoked[serial]; return ok, nil }}
	}
	bVault := e.instance(t)
	a, b := e.load(t), e.load(t)
	ka, kb := keeper(e.v, a), keeper(bVault, b)
	for _, k := range []*custody.RAKeeper{ka, kb} {
		if _, err := k.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := a.RA()

	// Not due: nothing happens.
	if lines, err := ka.Maintain(ctx); err != nil || len(lines) != 0 {
		t.Fatalf("Maintain on a fresh RA: %v %v", lines, err)
	}
	clock.Set(old.NotAfter.Add(-29 * 24 * time.Hour))
	lines, err := ka.Maintain(ctx)
	if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "RA certificate renewed") {
		t.Fatalf("Maintain 29 days before expiry: %v %v", lines, err)
	}
	renewed, _ := a.RA()
	if prev, _ := a.PreviousRA(clock.Now()); prev == nil || !prev.Equal(old) {
		t.Fatal("the renewed envelope lost the previous RA")
	}

	e.fake.Reset()
	if changed, err := kb.Refresh(ctx); err != nil || !changed {
		t.Fatalf("B's refresh: %v %v", changed, err)
	}
	e.wantCounts(t, map[string]int{kvfake.OpUnwrapKey: 1}) // B opens the new key; the previous one it had opened
	if cur, _ := b.RA(); !cur.Equal(renewed) {
		t.Fatal("B does not use the renewed RA")
	}
	e.fake.Reset()
	if changed, err := kb.Refresh(ctx); err != nil || changed {
		t.Fatalf("B's second refresh: %v %v", changed, err)
	}
	e.wantCounts(t, map[string]int{kvfake.OpUnwrapKey: 0})

	clock.Advance(custody.RAOverlap + time.Hour)
	lines, err = ka.Maintain(ctx)
	if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "revoked after the overlap") {
		t.Fatalf("Maintain after the overlap: %v %v", lines, err)
	}
	if revoked[strings.ToUpper(old.SerialNumber.Text(16))] != "superseded" {
		t.Fatalf("revoked = %v", revoked)
	}
	if prev, _ := a.PreviousRA(clock.Now()); prev != nil {
		t.Fatal("the retired RA still opens envelopes")
	}
	if _, err := kb.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if prev, _ := b.PreviousRA(clock.Now().Add(-custody.RAOverlap)); prev != nil {
		t.Fatal("B kept the retired RA")
	}
}

// TestVaultRAKeeperInTheCAsLastMonth: an RA certificate never outlives the CA, so once the RA ends with the CA no
// renewal can make it end later. The timer renews an RA that ends before the CA once (its predecessor keeps the
// whole overlap), then keeps the renewed one and says so once, instead of renewing it every hour and revoking the
// RA of the hour before each time (a client's cached GetCACert would last an hour). An admin's revocation still
// replaces the RA at once.
func TestVaultRAKeeperInTheCAsLastMonth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The CA outlives the first RA by 10 days, which one renewal gains.
	_, k, keeper, clock, revoked := shortRootKeeper(t)
	var logs bytes.Buffer
	keeper.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	serial := func(c *x509.Certificate) string { return strings.ToUpper(c.SerialNumber.Text(16)) }
	caEnd := k.CA().NotAfter
	first, _ := k.RA()
	if !first.NotAfter.Equal(caEnd.Add(-10 * 24 * time.Hour)) {
		t.Fatalf("the first RA ends %s, want 10 days before the CA (%s)", first.NotAfter, caEnd)
	}
	// hourly runs Maintain every hour until until, failing on any renewal, and returns its lines.
	hourly := func(until time.Time) []string {
		t.Helper()
		var out []string
		for clock.Advance(time.Hour); clock.Now().Before(until); clock.Advance(time.Hour) {
			lines, err := keeper.Maintain(ctx)
			if err != nil {
				t.Fatalf("Maintain at %s: %v", clock.Now(), err)
			}
			for _, l := range lines {
				if strings.Contains(l, "RA certificate renewed") {
					t.Fatalf("Maintain at %s (the CA ends %s) renewed again: %q; revoked so far %v", clock.Now(), caEnd, l, revoked)
				}
			}
			out = append(out, lines...)
		}
		return out
	}

	clock.Set(first.NotAfter.Add(-29 * 24 * time.Hour))
	lines, err := keeper.Maintain(ctx)
	if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "RA certificate renewed") {
		t.Fatalf("Maintain 29 days before the first RA expires: %v %v", lines, err)
	}
	renewed, _ := k.RA()
	if !renewed.NotAfter.Equal(caEnd) {
		t.Fatalf("the renewed RA ends %s, want with the CA (%s)", renewed.NotAfter, caEnd)
	}

	// The first RA is revoked once its overlap is over; the renewed one is due from 30 days before the CA ends, and
	// is kept and reported once.
	lines = hourly(caEnd.Add(-20 * 24 * time.Hour))
	if len(lines) != 2 || !strings.Contains(lines[0], "previous RA certificate "+serial(first)+" revoked after the overlap") ||
		!strings.Contains(lines[1], "RA certificate "+serial(renewed)+" ends with the CA certificate") {
		t.Fatalf("hourly runs after the renewal: %q", lines)
	}
	if len(revoked) != 1 || revoked[serial(first)] != "superseded" {
		t.Fatalf("revoked = %v, want only the first RA (superseded)", revoked)
	}
	if cur, _ := k.RA(); !cur.Equal(renewed) {
		t.Fatal("the renewed RA was replaced")
	}

	// An admin revokes the RA: it is replaced at once, though the new one cannot end later either.
	revoked[serial(renewed)] = "keyCompromise"
	lines, err = keeper.Maintain(ctx)
	if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "RA certificate renewed (the current RA certificate was revoked)") {
		t.Fatalf("Maintain after an admin revoked the RA: %v %v", lines, err)
	}
	replaced, _ := k.RA()
	if replaced.Equal(renewed) || !replaced.NotAfter.Equal(caEnd) {
		t.Fatalf("the replacement %s ends %s, want a new RA ending with the CA", serial(replaced), replaced.NotAfter)
	}
	lines = hourly(caEnd)
	if len(lines) != 1 || !strings.Contains(lines[0], "RA certificate "+serial(replaced)+" ends with the CA certificate") {
		t.Fatalf("hourly runs after the replacement: %q", lines)
	}
	if n := strings.Count(logs.String(), "ends with the CA certificate"); n != 2 {
		t.Errorf("the log says %d times that an RA ends with the CA, want once per RA certificate (2):\n%s", n, logs.String())
	}
}

// TestVaultRAKeeperAfterTheCAExpired: once the CA certificate has expired no RA certificate can be valid, so an admin
// revoking the RA then (or any other reason to replace it) must not have the CA key sign one — a certificate whose
// notBefore (an hour back-dated) lies after its notAfter (the CA's), recorded and installed as the current RA.
func TestVaultRAKeeperAfterTheCAExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, k, keeper, clock, revoked := shortRootKeeper(t)
	before, _ := k.RA()
	clock.Set(k.CA().NotAfter.Add(2 * time.Hour))
	revoked[strings.ToUpper(before.SerialNumber.Text(16))] = "keyCompromise"
	signs := e.fake.Count(kvfake.OpSign)
	lines, err := keeper.Maintain(ctx)
	if n := e.fake.Count(kvfake.OpSign) - signs; n != 0 {
		cur, _ := k.RA()
		t.Fatalf("Maintain two hours after the CA expired made %d CA signatures (lines %q, err %v); the RA is now valid %s – %s",
			n, lines, err, cur.NotBefore, cur.NotAfter)
	}
	if err == nil || !strings.Contains(err.Error(), "the CA certificate expired") {
		t.Errorf("Maintain after the CA expired: lines %q, err %v; want an error saying the CA expired", lines, err)
	}
	if cur, _ := k.RA(); !cur.Equal(before) {
		t.Error("the RA was replaced after the CA expired")
	}
	if _, _, err := keeper.Rotate(ctx, "test", false); err == nil || !strings.Contains(err.Error(), "the CA certificate expired") {
		t.Errorf("Rotate after the CA expired: err %v, want an error saying the CA expired", err)
	}
}

// shortRootKeeper is a vault-backed CA whose root outlives the first RA certificate by 10 days, with an RA keeper
// on a test clock that records revocations in revoked, refreshed once.
func shortRootKeeper(t *testing.T) (*vaultEnv, *custody.Keys, *custody.RAKeeper, *testca.Clock, map[string]string) {
	t.Helper()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	mustInit(t, e.v, custody.VaultInitOptions{KeyType: "RSA", RACommon: "Test SCEP RA",
		Root: custody.RootOptions{Subject: pkix.Name{CommonName: "Short Root"}, Validity: custody.RAValidity + 10*24*time.Hour}})
	clock := testca.NewClock(now)
	revoked := map[string]string{}
	k := e.load(t)
	keeper := &custody.RAKeeper{Store: e.v, Keys: k, Now: clock.Now,
		Revoke:  func(_ context.Context, serial, reason string) error { revoked[serial] = reason; return nil },
		Revoked: func(_ context.Context, serial string) (bool, error) { _, ok := revoked[serial]; return ok, nil }}
	if _, err := keeper.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, k, keeper, clock, revoked
}

// wrappedSigner hides the concrete key type, as a test's or an HSM's wrapper would.
type wrappedSigner struct{ crypto.Signer }

// TestSignerVerifiesItself: only a Key Vault key and a crypto/rsa key, each for the CA certificate's own public
// key, count as verifying their signatures; a local ECDSA key, any wrapper and a key for another certificate do
// not, so issuance verifies those.
func TestSignerVerifiesItself(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	e.importKEK(t)
	opts := rootInit("EC")
	opts.Curve = "P-256"
	mustInit(t, e.v, opts)
	k := e.load(t)
	if _, ok := k.CASigner.(*keyvault.Key); !ok {
		t.Fatalf("CA signer is %T, want *keyvault.Key", k.CASigner)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root := func(key crypto.Signer) *x509.Certificate {
		c, err := custody.NewRoot(key, custody.RootOptions{Subject: pkix.Name{CommonName: "local"},
			Validity: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rsaCA, ecCA := root(rsaKey), root(ecKey)
	for _, tc := range []struct {
		name   string
		signer crypto.Signer
		ca     *x509.Certificate
		want   bool
	}{
		{"keyvault", k.CASigner, k.CA(), true},
		{"keyvault/other-certificate", k.CASigner, ecCA, false},
		{"keyvault/wrapped", wrappedSigner{k.CASigner}, k.CA(), false},
		{"rsa", rsaKey, rsaCA, true},
		{"rsa/other-certificate", rsaKey, k.CA(), false},
		{"rsa/wrapped", wrappedSigner{rsaKey}, rsaCA, false},
		{"ecdsa", ecKey, ecCA, false},
	} {
		if got := custody.SignerVerifiesItself(tc.signer, tc.ca); got != tc.want {
			t.Errorf("%s: SignerVerifiesItself = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// withField returns the JSON object raw with name set to value, as a newer version that added the field writes it.
func withField(t *testing.T, raw []byte, name, value string) []byte {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc[name] = json.RawMessage(value)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// envelopeField returns the JSON field name of the object raw (or of its previous RA, with previous), "" when absent.
func envelopeField(t *testing.T, raw []byte, name string, previous bool) string {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if previous {
		if len(doc["previous"]) == 0 {
			return ""
		}
		prev := doc["previous"]
		doc = nil
		if err := json.Unmarshal(prev, &doc); err != nil {
			t.Fatal(err)
		}
	}
	return string(doc[name])
}

// While a deployment rolls, an instance of this version may renew the RA (the current envelope becomes the previous
// one) or retire the previous RA (the current envelope is written back alone) after an instance of a newer version
// wrote an envelope with a field this version does not know. The field stays with its envelope in both: decoding
// into this version's struct and encoding again would drop it.
func TestVaultRAEnvelopeKeepsNewerFields(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVaultEnv(t)
	e.importKey(t, "ca", testRSAKey(t, 10))
	e.importKEK(t)
	mustInit(t, e.v, rootInit("RSA"))
	const newer = `{"origin":"tpm","n":2}`
	raw, _ := e.get(t, "ra")
	e.put(t, "ra", withField(t, raw, "attestation", newer))
	e.load(t)

	_, tag := e.get(t, "ra")
	if _, err := e.v.StoreRA(ctx, nil, tag, true, "", now); err != nil {
		t.Fatalf("StoreRA: %v", err)
	}
	raw, _ = e.get(t, "ra")
	if got := envelopeField(t, raw, "attestation", true); got != newer {
		t.Errorf("the envelope kept as the previous RA holds attestation %q, want %s", got, newer)
	}
	e.put(t, "ra", withField(t, raw, "attestation", newer))
	_, tag = e.get(t, "ra")
	if err := e.v.ForgetPreviousRA(ctx, tag); err != nil {
		t.Fatalf("ForgetPreviousRA: %v", err)
	}
	raw, _ = e.get(t, "ra")
	if got := envelopeField(t, raw, "attestation", false); got != newer {
		t.Errorf("the envelope written back without its previous RA holds attestation %q, want %s", got, newer)
	}
	if envelopeField(t, raw, "previous", false) != "" {
		t.Error("the previous RA was not dropped")
	}
	if k := e.load(t); k.RACert == nil {
		t.Fatal("no RA after the previous one was dropped")
	}
}
