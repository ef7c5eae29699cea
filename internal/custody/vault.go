package custody

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/store"
)

// Meta document names in the store.
const (
	metaCA = "ca" // caRecord: the public chain and the pinned key version
	metaRA = "ra" // raEnvelope: the RA certificate and its wrapped private key
)

// ErrNotInitialized means `ca init` has not run (or a subordinate CA awaits `ca import`).
var ErrNotInitialized = errors.New("custody: the CA is not initialised; run `azscep ca init`")

// ErrEnvelope means the wrapped RA key could not be opened or does not match its certificate (tampering or the
// wrong key-encryption key). Start-up stops on it.
var ErrEnvelope = errors.New("custody: RA key envelope cannot be opened")

// ErrInitOptions means `ca init` was asked for something it cannot make or adopt (an empty subject, an unknown key
// type, size or curve, an EC key in CA-decrypt mode, an existing key that is disabled or whose type or key_ops cannot
// do its job): a configuration error that no retry fixes. The options are checked before anything is created; an
// existing key-encryption key is only met after the CA key and root, which the next `ca init` adopts.
var ErrInitOptions = errors.New("custody: ca init options")

// caRecord is the public half of the CA, stored under meta "ca".
type caRecord struct {
	Version    int      `json:"version"`
	KeyName    string   `json:"keyName"`
	KeyVersion string   `json:"keyVersion"`
	KID        string   `json:"kid"`
	Chain      [][]byte `json:"chain,omitempty"`      // DER, CA first
	PendingCSR []byte   `json:"pendingCsr,omitempty"` // subordinate CA awaiting its certificate
}

// raEnvelope is the SCEP RA key, encrypted: AES-256-GCM under a random data key, the data key wrapped by the
// Key Vault key-encryption key with RSA-OAEP-256. The GCM additional data is the RA certificate's SHA-256, so a
// ciphertext moved next to another certificate does not open.
type raEnvelope struct {
	Version    int    `json:"version"`
	Cert       []byte `json:"cert"`
	KEKName    string `json:"kekName"`
	KEKVersion string `json:"kekVersion"`
	Alg        string `json:"alg"`
	WrappedKey []byte `json:"wrappedKey"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
	// Previous is the RA this one replaced, kept (wrapped the same way) for the overlap after a rotation: the stored
	// envelope as it was, so that fields a newer version wrote in it stay (asPrevious).
	Previous json.RawMessage `json:"previous,omitempty"`
}

// Vault is the Key Vault custody backend.
type Vault struct {
	Client     *azkeys.Client
	Meta       store.Meta
	CAKeyName  string
	CAKeyVer   string // pin; "" = the version recorded by `ca init`
	KEKName    string
	CADecrypts bool // RA mode "ca": no RA key; the CA key decrypts and signs CertReps
	KeyOptions keyvault.Options
	// Recorder, when set, records every RA certificate (pending before the CA key signs, issued after).
	Recorder Recorder

	openedMu sync.Mutex
	opened   map[[32]byte]RAKey // RA keys already unwrapped, by envelope SHA-256: one unwrap per key per instance
}

var _ RAStore = (*Vault)(nil)

// Load reads the public chain and the RA envelope from the store, pins the CA key version, unwraps the RA key
// once (one Key Vault operation per instance) and checks everything fits together.
func (v *Vault) Load(ctx context.Context, now time.Time) (*Keys, error) {
	rec, _, err := v.readCA(ctx)
	if err != nil {
		return nil, err
	}
	if len(rec.Chain) == 0 {
		return nil, fmt.Errorf("%w (a subordinate CA awaits `azscep ca import`)", ErrNotInitialized)
	}
	chain, err := parseDERs(rec.Chain)
	if err != nil {
		return nil, err
	}
	caKey, err := v.caKey(ctx, rec, now)
	if err != nil {
		return nil, err
	}
	if !caKey.CanSign() {
		return nil, fmt.Errorf("custody: the CA key %s does not allow sign (key_ops: %s)", caKey.KID(), describeOps(caKey))
	}
	k := &Keys{Chain: chain, CASigner: caKey}
	if !v.CADecrypts {
		raw, _, err := v.Meta.GetMeta(ctx, metaRA)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: no RA key stored", ErrNotInitialized)
		}
		if err != nil {
			return nil, fmt.Errorf("custody: reading RA envelope: %w", err)
		}
		v.openedMu.Lock()
		v.opened = nil // start-up opens the envelope afresh; the cache only spares periodic re-reads
		v.openedMu.Unlock()
		st, err := v.openState(ctx, raw)
		if err != nil {
			return nil, err
		}
		k.loadRA(st)
	}
	if err := k.Check(now); err != nil {
		return nil, err
	}
	return k, nil
}

// caKey loads the CA key version that signs: the pinned one (AZSCEP_CA_KEY_VERSION), else the one `ca init`
// recorded. Start-up, `ca import` and every RA certificate load it here, so the pin holds for all of them: once an
// operator pins a new version and disables the recorded one, a renewal loading the recorded version would fail
// every hour until the RA expired. It is loaded afresh rather than taken from the signer start-up loaded because
// the commands (`ca import`, `ca rotate-ra`) have no start-up, and an RA certificate costs one key read in years.
//
// A version past its expiry (attributes.exp, which a rotation policy's expiryTime sets on every version it makes) or
// before its nbf is refused here with the remedy: Key Vault would answer each signature 403, which start-up waits out
// and the edges answer 503, as for a role still spreading, and no role fixes it. Pinning another version is no
// remedy either: it is another key pair, which the CA certificate does not certify.
func (v *Vault) caKey(ctx context.Context, rec *caRecord, now time.Time) (*keyvault.Key, error) {
	name, err := v.caKeyName(rec)
	if err != nil {
		return nil, err
	}
	version := cmp.Or(v.CAKeyVer, rec.KeyVersion)
	key, err := keyvault.New(ctx, v.Client, name, version, v.KeyOptions)
	if err != nil {
		return nil, fmt.Errorf("custody: loading CA key %s/%s: %w", name, version, err)
	}
	if err := key.ActiveAt(now); err != nil {
		return nil, fmt.Errorf("custody: the CA key cannot sign: %w; change the version's expiry (az keyvault key "+
			"set-attributes --vault-name <vault> --name %s --version %s --expires <date>, or the portal): another "+
			"version is another key pair, which the CA certificate does not certify", err, key.Name(), key.Version())
	}
	return key, nil
}

// caKeyName is the CA key the record was initialised with. A configured name that differs is refused: loading
// the recorded version under another name could only fail later with a confusing "not found". Key Vault names
// are case-insensitive, so a configured name that differs only in case is the same key.
func (v *Vault) caKeyName(rec *caRecord) (string, error) {
	if v.CAKeyName != "" && rec.KeyName != "" && !strings.EqualFold(v.CAKeyName, rec.KeyName) {
		return "", fmt.Errorf("custody: the CA key is configured as %q but the CA was initialised with %q",
			v.CAKeyName, rec.KeyName)
	}
	if rec.KeyName != "" {
		return rec.KeyName, nil
	}
	return v.CAKeyName, nil
}

// openState opens the stored RA document: the current RA and, during an overlap, the previous one.
func (v *Vault) openState(ctx context.Context, raw []byte) (*RAState, error) {
	var env raEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope is malformed", ErrEnvelope)
	}
	cert, key, err := v.open(ctx, &env)
	if err != nil {
		return nil, err
	}
	st := &RAState{Current: RA{Cert: cert, Key: key}}
	if len(env.Previous) > 0 {
		var prev raEnvelope
		if err := json.Unmarshal(env.Previous, &prev); err != nil {
			return nil, fmt.Errorf("previous RA: %w: envelope is malformed", ErrEnvelope)
		}
		pc, pk, err := v.open(ctx, &prev)
		if err != nil {
			return nil, fmt.Errorf("previous RA: %w", err)
		}
		st.Previous = &RA{Cert: pc, Key: pk}
	}
	return st, nil
}

func (v *Vault) open(ctx context.Context, env *raEnvelope) (*x509.Certificate, RAKey, error) {
	if env.Version != 1 || env.Alg != "RSA-OAEP-256" {
		return nil, nil, fmt.Errorf("%w: envelope is malformed", ErrEnvelope)
	}
	cert, err := x509.ParseCertificate(env.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: RA certificate does not parse", ErrEnvelope)
	}
	// The cache is keyed on the whole envelope, so a changed byte anywhere is opened (and checked) afresh.
	id := sha256.Sum256(slices.Concat(env.Cert, []byte(env.KEKName+"/"+env.KEKVersion), env.WrappedKey, env.Nonce, env.Ciphertext))
	v.openedMu.Lock()
	known := v.opened[id]
	v.openedMu.Unlock()
	if known != nil {
		return cert, known, nil
	}
	kek, err := keyvault.New(ctx, v.Client, env.KEKName, env.KEKVersion, v.KeyOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("custody: loading key-encryption key %s: %w", env.KEKName, err)
	}
	// Checked here, not left to Key Vault's 403: start-up waits a 403 out as a role still spreading, while key_ops
	// without unwrapKey is an operator's setting that no wait changes.
	if !kek.CanUnwrapKey() {
		return nil, nil, fmt.Errorf("custody: the key-encryption key %s does not allow unwrapKey (key_ops: %s)",
			kek.KID(), describeOps(kek))
	}
	dek, err := kek.UnwrapKey(ctx, env.WrappedKey)
	if err != nil {
		// A wrapped key Key Vault cannot unwrap (400) or that cannot even be an RSA ciphertext for the KEK is a
		// damaged envelope; throttling, outages and missing permissions are not, and keep their own class.
		if errors.Is(err, keyvault.ErrRejected) || errors.Is(err, keyvault.ErrInvalidInput) {
			return nil, nil, fmt.Errorf("%w: the data key does not unwrap with %s: %w", ErrEnvelope, kek.KID(), err)
		}
		return nil, nil, fmt.Errorf("custody: unwrapping RA data key: %w", err)
	}
	defer clear(dek)
	block, err := aes.NewCipher(dek)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: data key is not AES-256", ErrEnvelope)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil || len(env.Nonce) != gcm.NonceSize() {
		return nil, nil, fmt.Errorf("%w: bad nonce", ErrEnvelope)
	}
	aad := sha256.Sum256(env.Cert)
	plain, err := gcm.Open(nil, env.Nonce, env.Ciphertext, aad[:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: authentication failed", ErrEnvelope)
	}
	defer clear(plain)
	key, err := x509.ParsePKCS8PrivateKey(plain)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: RA key does not parse", ErrEnvelope)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok || !rk.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: RA key does not match its certificate: %w", ErrEnvelope, ErrKeyMismatch)
	}
	v.openedMu.Lock()
	if v.opened == nil {
		v.opened = map[[32]byte]RAKey{}
	}
	v.opened[id] = rk
	v.openedMu.Unlock()
	return cert, rk, nil
}

// asPrevious is the stored RA envelope raw without its previous RA: to keep it as the previous RA of a new one, or
// to store it alone once the overlap is over. Every other field stays as stored, those this version does not know
// too: an instance of a newer version, serving beside this one while a deployment rolls, may have written them,
// and its envelope must still open there once this version has written it back.
func asPrevious(raw []byte) (json.RawMessage, error) {
	var known raEnvelope
	var env map[string]json.RawMessage
	if json.Unmarshal(raw, &known) != nil || json.Unmarshal(raw, &env) != nil || env == nil {
		return nil, fmt.Errorf("%w: envelope is malformed", ErrEnvelope)
	}
	delete(env, "previous")
	out, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("custody: encoding RA envelope: %w", err)
	}
	return out, nil
}

// ReadRA implements RAStore: one store read; the keys are unwrapped only for an RA not opened before.
func (v *Vault) ReadRA(ctx context.Context, known string) (*RAState, string, error) {
	raw, etag, err := v.Meta.GetMeta(ctx, metaRA)
	if err != nil {
		return nil, "", fmt.Errorf("custody: reading RA envelope: %w", err)
	}
	if etag == known {
		return nil, etag, nil
	}
	st, err := v.openState(ctx, raw)
	return st, etag, err
}

// StoreRA implements RAStore.
func (v *Vault) StoreRA(ctx context.Context, rec Recorder, version string, keepCurrent bool, cn string, now time.Time) (*x509.Certificate, error) {
	ca, _, err := v.readCA(ctx)
	if err != nil {
		return nil, err
	}
	raw, etag, err := v.Meta.GetMeta(ctx, metaRA)
	if err != nil {
		return nil, fmt.Errorf("custody: reading RA envelope: %w", err)
	}
	if etag != version {
		return nil, ErrRAChanged
	}
	var prev json.RawMessage
	if keepCurrent {
		if prev, err = asPrevious(raw); err != nil {
			return nil, err
		}
	}
	cert, err := v.issueRA(ctx, ca, rec, cn, etag, prev, now)
	if errors.Is(err, store.ErrConflict) {
		return nil, ErrRAChanged
	}
	return cert, err
}

// ForgetPreviousRA implements RAStore.
func (v *Vault) ForgetPreviousRA(ctx context.Context, version string) error {
	raw, etag, err := v.Meta.GetMeta(ctx, metaRA)
	if err != nil {
		return fmt.Errorf("custody: reading RA envelope: %w", err)
	}
	if etag != version {
		return ErrRAChanged
	}
	out, err := asPrevious(raw) // the current RA alone
	if err != nil {
		return err
	}
	if _, err := v.Meta.PutMeta(ctx, metaRA, out, etag); errors.Is(err, store.ErrConflict) {
		return ErrRAChanged
	} else if err != nil {
		return fmt.Errorf("custody: storing RA envelope: %w", err)
	}
	return nil
}

// seal wraps an RA key for the store.
func (v *Vault) seal(ctx context.Context, kek *keyvault.Key, cert *x509.Certificate, key *rsa.PrivateKey) (*raEnvelope, error) {
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	defer clear(dek)
	block, _ := aes.NewCipher(dek)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	aad := sha256.Sum256(cert.Raw)
	wrapped, err := kek.WrapKey(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("custody: wrapping RA data key: %w", err)
	}
	return &raEnvelope{Version: 1, Cert: cert.Raw, KEKName: kek.Name(), KEKVersion: kek.Version(),
		Alg: "RSA-OAEP-256", WrappedKey: wrapped, Nonce: nonce, Ciphertext: gcm.Seal(nil, nonce, plain, aad[:])}, nil
}

func (v *Vault) readCA(ctx context.Context) (*caRecord, string, error) {
	raw, etag, err := v.Meta.GetMeta(ctx, metaCA)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", ErrNotInitialized
	}
	if err != nil {
		return nil, "", fmt.Errorf("custody: reading CA record: %w", err)
	}
	var rec caRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, "", fmt.Errorf("custody: CA record is malformed: %w", err)
	}
	return &rec, etag, nil
}

// VaultInitOptions are the `ca init` flags.
type VaultInitOptions struct {
	KeyType     string // RSA-HSM, EC-HSM, RSA or EC
	KeySize     int    // RSA: 3072 or 4096
	Curve       string // EC: P-256 or P-384
	Subordinate bool   // print a CSR instead of making a root
	Root        RootOptions
	RACommon    string
}

// InitResult says what `ca init` did; a second run reports nothing created.
type InitResult struct {
	KeyCreated  bool
	RootCreated bool
	CSR         []byte // subordinate: the CSR to have signed (also on re-runs until imported)
	RACreated   bool
	KID         string
}

// Init creates or adopts the CA key, then makes a root or a subordinate CSR, then the RA. Every step checks
// what already exists first, so re-running it changes nothing.
func (v *Vault) Init(ctx context.Context, opts VaultInitOptions, now time.Time) (*InitResult, error) {
	res := &InitResult{}
	rec, _, err := v.readCA(ctx)
	if err != nil && !errors.Is(err, ErrNotInitialized) {
		return nil, err
	}
	if rec != nil {
		if _, err := v.caKeyName(rec); err != nil {
			return nil, err
		}
	}
	if rec == nil {
		if err := v.checkInitOptions(opts); err != nil {
			return nil, err
		}
		ops := []azkeys.KeyOperation{azkeys.KeyOperationSign, azkeys.KeyOperationVerify}
		if v.CADecrypts {
			ops = append(ops, azkeys.KeyOperationDecrypt)
		}
		key, created, err := v.ensureKey(ctx, v.CAKeyName, opts.KeyType, opts.KeySize, opts.Curve, ops, v.checkCAKey, now)
		if err != nil {
			return nil, err
		}
		res.KeyCreated = created
		rec = &caRecord{Version: 1, KeyName: key.Name(), KeyVersion: key.Version(), KID: key.KID()}
		if opts.Subordinate {
			if rec.PendingCSR, err = NewSubordinateCSR(key, opts.Root.Subject); err != nil {
				return nil, err
			}
		} else {
			root, err := NewRoot(key, opts.Root, now)
			if err != nil {
				return nil, err
			}
			rec.Chain = [][]byte{root.Raw}
			res.RootCreated = true
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("custody: encoding CA record: %w", err)
		}
		if _, err := v.Meta.PutMeta(ctx, metaCA, raw, ""); err != nil {
			return nil, fmt.Errorf("custody: storing CA record: %w", err)
		}
	}
	res.KID = rec.KID
	if len(rec.Chain) == 0 {
		res.CSR = rec.PendingCSR
		return res, nil
	}
	created, err := v.ensureRA(ctx, rec, opts.RACommon, now, false)
	res.RACreated = created
	return res, err
}

// checkInitOptions refuses `ca init` options that would create a key and then fail (or make a certificate that is
// expired from birth), before anything is created.
func (v *Vault) checkInitOptions(opts VaultInitOptions) error {
	if v.CAKeyName == "" {
		return fmt.Errorf("%w: no CA key name configured", ErrInitOptions)
	}
	if !v.CADecrypts && v.KEKName == "" {
		return fmt.Errorf("%w: no key-encryption key name configured", ErrInitOptions)
	}
	if len(opts.Root.Subject.ToRDNSequence()) == 0 {
		return fmt.Errorf("%w: the CA subject is empty", ErrInitOptions)
	}
	if !opts.Subordinate && opts.Root.Validity <= 0 {
		return fmt.Errorf("%w: the root validity must be positive", ErrInitOptions)
	}
	if v.CADecrypts && (opts.KeyType == "EC" || opts.KeyType == "EC-HSM") {
		return fmt.Errorf("%w: CA-decrypt mode needs an RSA CA key (SCEP clients encrypt to it)", ErrInitOptions)
	}
	_, err := keyParameters(opts.KeyType, opts.KeySize, opts.Curve)
	return err
}

// checkCAKey accepts a CA key for `ca init`, adopted or new: it must sign, and in CA-decrypt mode decrypt too.
func (v *Vault) checkCAKey(k *keyvault.Key) error {
	if !k.CanSign() {
		return fmt.Errorf("%w: the CA key %s does not allow sign (key_ops: %s)", ErrInitOptions, k.KID(), describeOps(k))
	}
	// Key Vault holds P-521 keys too, but the CA signs with ECDSA SHA-256 or SHA-384 only (SignatureAlgorithmFor),
	// and Key Vault binds ES512 to P-521: every signature would be refused, the root's first.
	if pub, ok := k.Public().(*ecdsa.PublicKey); ok && pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() {
		return fmt.Errorf("%w: the CA key %s is on curve %s; the CA signs with P-256 or P-384 keys", ErrInitOptions,
			k.KID(), pub.Curve.Params().Name)
	}
	if v.CADecrypts && !k.CanDecrypt() {
		return fmt.Errorf("%w: CA-decrypt mode needs an RSA CA key that allows decrypt; %s is %s with key_ops %s",
			ErrInitOptions, k.KID(), k.KeyType(), describeOps(k))
	}
	return nil
}

// checkKEK accepts a key-encryption key: RSA with wrapKey and unwrapKey.
func checkKEK(k *keyvault.Key) error {
	if !k.CanWrapKey() || !k.CanUnwrapKey() {
		return fmt.Errorf("%w: the key-encryption key %s must be RSA with wrapKey and unwrapKey; it is %s with key_ops %s",
			ErrInitOptions, k.KID(), k.KeyType(), describeOps(k))
	}
	return nil
}

// Import installs the signed subordinate certificate (and its issuers) after checking it is for the CA key.
func (v *Vault) Import(ctx context.Context, chain []*x509.Certificate, raCommon string, now time.Time) error {
	rec, etag, err := v.readCA(ctx)
	if err != nil {
		return err
	}
	key, err := v.caKey(ctx, rec, now)
	if err != nil {
		return err
	}
	if len(chain) == 0 {
		return errors.New("custody: no certificate to import")
	}
	if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return fmt.Errorf("%w: the certificate %q is not for the CA key %s", ErrKeyMismatch, chain[0].Subject.String(), key.KID())
	}
	if !chain[0].IsCA || chain[0].KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("custody: the certificate is not a CA certificate with keyCertSign")
	}
	// The CA signs its CRLs with this key; relying parties reject a CRL whose issuer certificate lacks cRLSign,
	// so a certificate without it would publish no usable revocation list.
	if chain[0].KeyUsage&x509.KeyUsageCRLSign == 0 {
		return errors.New("custody: the certificate is a CA certificate without cRLSign: its CRLs would be refused; have the parent CA sign it with keyUsage keyCertSign and cRLSign")
	}
	if now.After(chain[0].NotAfter) {
		return fmt.Errorf("custody: the certificate expired at %s", chain[0].NotAfter.UTC().Format(time.RFC3339))
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("custody: chain link %d does not verify: %w", i, err)
		}
	}
	if len(rec.Chain) > 0 && string(rec.Chain[0]) == string(chain[0].Raw) {
		_, err := v.ensureRA(ctx, rec, raCommon, now, false)
		return err // already imported
	}
	rec.Chain = nil
	for _, c := range chain {
		rec.Chain = append(rec.Chain, c.Raw)
	}
	rec.PendingCSR = nil
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("custody: encoding CA record: %w", err)
	}
	if _, err := v.Meta.PutMeta(ctx, metaCA, raw, etag); err != nil {
		return fmt.Errorf("custody: storing imported chain: %w", err)
	}
	_, err = v.ensureRA(ctx, rec, raCommon, now, false)
	return err
}

// RotateRA issues a new RA key and certificate and replaces the envelope.
func (v *Vault) RotateRA(ctx context.Context, raCommon string, now time.Time) error {
	if v.CADecrypts {
		return errors.New("custody: CA-decrypt mode has no RA key to rotate")
	}
	rec, _, err := v.readCA(ctx)
	if err != nil {
		return err
	}
	if len(rec.Chain) == 0 {
		return fmt.Errorf("%w (a subordinate CA awaits `azscep ca import`)", ErrNotInitialized)
	}
	_, err = v.ensureRA(ctx, rec, raCommon, now, true)
	return err
}

func (v *Vault) ensureRA(ctx context.Context, rec *caRecord, cn string, now time.Time, rotate bool) (bool, error) {
	if v.CADecrypts {
		return false, nil
	}
	raw, etag, err := v.Meta.GetMeta(ctx, metaRA)
	switch {
	case err == nil && !rotate:
		return false, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("custody: reading RA envelope: %w", err)
	}
	var prev json.RawMessage
	if err == nil {
		// Rotating: the current RA stays as the previous one for the overlap; a damaged envelope is replaced, not kept.
		prev, _ = asPrevious(raw)
	}
	if _, err := v.issueRA(ctx, rec, v.Recorder, cn, etag, prev, now); err != nil {
		return false, err
	}
	return true, nil
}

// issueRA makes a new RA key and certificate (recorded with recorder), wraps the key and stores the envelope —
// with prev as the previous RA — conditioned on etag ("" = create).
func (v *Vault) issueRA(ctx context.Context, rec *caRecord, recorder Recorder, cn, etag string, prev json.RawMessage, now time.Time) (*x509.Certificate, error) {
	chain, err := parseDERs(rec.Chain)
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, ErrNotInitialized
	}
	caKey, err := v.caKey(ctx, rec, now)
	if err != nil {
		return nil, err
	}
	kek, _, err := v.ensureKey(ctx, v.KEKName, "RSA", 3072, "",
		[]azkeys.KeyOperation{azkeys.KeyOperationWrapKey, azkeys.KeyOperationUnwrapKey}, checkKEK, now)
	if err != nil {
		return nil, err
	}
	raKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if cn == "" {
		cn = defaultRACommonName
	}
	raCert, err := IssueRACertificate(ctx, recorder, chain[0], caKey, raKey.Public(), cn, now)
	if err != nil {
		return nil, err
	}
	env, err := v.seal(ctx, kek, raCert, raKey)
	if err != nil {
		return nil, err
	}
	env.Previous = prev
	sealed, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("custody: encoding RA envelope: %w", err)
	}
	if _, err := v.Meta.PutMeta(ctx, metaRA, sealed, etag); err != nil {
		return nil, fmt.Errorf("custody: storing RA envelope: %w", err)
	}
	return raCert, nil
}

// keyParameters are the parameters of a new key of type kty ("" is RSA) with size (RSA, 0 is 3072) or curve (EC,
// "" is P-256); anything else is ErrInitOptions.
func keyParameters(kty string, size int, curve string) (azkeys.CreateKeyParameters, error) {
	var params azkeys.CreateKeyParameters
	switch kty {
	case "RSA", "RSA-HSM", "":
		if kty == "" {
			kty = "RSA"
		}
		if size == 0 {
			size = 3072
		}
		if size != 3072 && size != 4096 {
			return params, fmt.Errorf("%w: RSA key size %d is not 3072 or 4096", ErrInitOptions, size)
		}
		s := int32(size)
		params.KeySize = &s
	case "EC", "EC-HSM":
		c := azkeys.CurveName(curve)
		if curve == "" {
			c = azkeys.CurveNameP256
		}
		if c != azkeys.CurveNameP256 && c != azkeys.CurveNameP384 {
			return params, fmt.Errorf("%w: curve %q is not P-256 or P-384", ErrInitOptions, curve)
		}
		params.Curve = &c
	default:
		return params, fmt.Errorf("%w: key type %q is not RSA-HSM, EC-HSM, RSA or EC", ErrInitOptions, kty)
	}
	k := azkeys.KeyType(kty)
	params.Kty = &k
	return params, nil
}

// ensureKey adopts the current version of name or creates it. check vets an adopted key before it is used, so
// a key that cannot do its job (wrong type, missing key_ops, expired at now) is refused before anything is signed
// or stored.
func (v *Vault) ensureKey(ctx context.Context, name, kty string, size int, curve string, ops []azkeys.KeyOperation,
	check func(*keyvault.Key) error, now time.Time) (*keyvault.Key, bool, error) {
	key, err := keyvault.New(ctx, v.Client, name, "", v.KeyOptions)
	if err == nil {
		if err := check(key); err != nil {
			return nil, false, err
		}
		// Key Vault refuses sign and wrapKey outside the version's nbf/exp window, with a 403 no role fixes.
		if err := key.ActiveAt(now); err != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrInitOptions, err)
		}
		return key, false, nil
	}
	if errors.Is(err, keyvault.ErrDisabled) {
		return nil, false, fmt.Errorf("%w: key %s: %w", ErrInitOptions, name, err)
	}
	if !errors.Is(err, keyvault.ErrNotFound) {
		return nil, false, fmt.Errorf("custody: looking up key %s: %w", name, err)
	}
	params, err := keyParameters(kty, size, curve)
	if err != nil {
		return nil, false, err
	}
	params.KeyOps = ptrs(ops)
	if _, err := v.Client.CreateKey(ctx, name, params, nil); err != nil {
		if keyvault.IsDeletedButRecoverable(err) {
			// Soft delete keeps a deleted key's name for its retention period (90 days by default).
			return nil, false, fmt.Errorf("%w: key %s was deleted and is still recoverable: recover it (az keyvault "+
				"key recover --vault-name <vault> --name %s) or purge it before creating a new one: %w",
				ErrInitOptions, name, name, err)
		}
		return nil, false, fmt.Errorf("custody: creating key %s: %w", name, err)
	}
	key, err = keyvault.New(ctx, v.Client, name, "", v.KeyOptions)
	if err != nil {
		return nil, false, fmt.Errorf("custody: loading new key %s: %w", name, err)
	}
	if err := check(key); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// Show describes the stored CA for `ca show`.
func (v *Vault) Show(ctx context.Context) (chain []*x509.Certificate, kid string, ra *x509.Certificate, err error) {
	rec, _, err := v.readCA(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	chain, err = parseDERs(rec.Chain)
	if err != nil {
		return nil, "", nil, err
	}
	raw, _, err := v.Meta.GetMeta(ctx, metaRA)
	if err == nil {
		var env raEnvelope
		if json.Unmarshal(raw, &env) == nil {
			ra, _ = x509.ParseCertificate(env.Cert)
		}
	}
	return chain, rec.KID, ra, nil
}

func ptrs[T any](in []T) []*T {
	out := make([]*T, len(in))
	for i := range in {
		out[i] = &in[i]
	}
	return out
}

func parseDERs(ders [][]byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("custody: stored certificate does not parse: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}
