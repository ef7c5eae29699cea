// Package keyvault wraps an Azure Key Vault key as a crypto.Signer and
// crypto.Decrypter, so the CA key and (in no-RA mode) the SCEP decryption key
// never leave Key Vault while the rest of the code base sees only the standard
// interfaces (x509.CreateCertificate, smallstep/pkcs7, smallstep/scep).
//
// A Key pins one key version and caches its public key: fetched once at
// construction, so signatures cannot silently switch to a rotated key that no
// longer matches the CA certificate, and so each private-key operation costs
// exactly one Key Vault round trip.
//
// The crypto interfaces carry no context, so every remote call gets its own
// deadline (Options.CallTimeout). Retries are ours, not azcore's (see
// NewClient): 429 and 5xx are retried with exponential backoff that honours
// Retry-After, within a bounded number of attempts and total wait. Failures
// come back classified (ErrThrottled with a *ThrottledError carrying
// Retry-After, ErrUnavailable, ErrForbidden, ErrNotFound, ErrRejected), which
// the HTTP edge maps to 503 + Retry-After or a configuration error.
package keyvault

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/azscep/azscep/internal/ctxtime"
)

// Options tunes a Key's remote calls. The zero value selects the defaults.
type Options struct {
	// CallTimeout bounds each HTTP attempt. Default 10 s.
	CallTimeout time.Duration
	// MaxAttempts is the maximum number of requests per operation, the first
	// included. Default 4; 1 disables retries.
	MaxAttempts int
	// MaxWait bounds the sum of the waits between attempts. When the server's
	// Retry-After would exceed what is left, the call fails at once with a
	// *ThrottledError instead of sleeping, so an HTTP client can be told to
	// come back later without holding the request open. Default 5 s.
	MaxWait time.Duration
	// BaseBackoff is the first wait when the server sends no Retry-After; it
	// doubles per retry up to MaxBackoff, with jitter. Defaults 200 ms / 2 s.
	BaseBackoff time.Duration
	// MaxBackoff caps a single computed wait (see BaseBackoff).
	MaxBackoff time.Duration
	// Sleep waits between attempts; nil means a real timer. Tests inject a
	// recorder here to check the waits without spending them.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o Options) withDefaults() Options {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 4
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Second
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Second
	}
	if o.MaxBackoff < o.BaseBackoff {
		o.MaxBackoff = o.BaseBackoff
	}
	if o.Sleep == nil {
		o.Sleep = ctxtime.Sleep
	}
	return o
}

// Key operation names as Key Vault reports them in key_ops.
const (
	OpSign      = "sign"
	OpVerify    = "verify"
	OpEncrypt   = "encrypt"
	OpDecrypt   = "decrypt"
	OpWrapKey   = "wrapKey"
	OpUnwrapKey = "unwrapKey"
)

// Key is one pinned version of a Key Vault key. It implements crypto.Signer
// and crypto.Decrypter and is safe for concurrent use.
type Key struct {
	client  *azkeys.Client
	name    string
	version string
	kid     string
	kty     string
	pub     crypto.PublicKey
	ops     []string  // nil: the key does not restrict operations
	nbf     time.Time // attributes.nbf at load time; zero: none
	exp     time.Time // attributes.exp at load time; zero: none
	opts    Options

	refusedMu sync.Mutex
	refused   *Refusal // the standing refusal since the last answered operation, nil when there is none
}

// Refusal is Key Vault refusing a Key's operations with an answer that no retry or wait by itself ends: 401/403 (a
// role removed or still spreading, the firewall, the key disabled, expired or its key_ops narrowed) or 404 (the key
// deleted since it was loaded). It holds no message text: Key Vault's messages name the caller's identity and
// address, and the health answer that reports a Refusal is anonymous.
type Refusal struct {
	Op     string    // the operation refused, e.g. "sign"
	Status int       // Key Vault's HTTP status
	Code   string    // Key Vault's inner error code (ForbiddenByFirewall, ForbiddenByRbac, KeyDisabled…), or its code
	Since  time.Time // the first refusal since the last operation Key Vault carried out
}

// Refused returns the standing refusal: set by an operation Key Vault refused (see Refusal), cleared by the next
// one it carries out. Between start-up and that operation, a service reporting health has nothing else that tells
// the operator every signature is being refused.
func (k *Key) Refused() *Refusal {
	k.refusedMu.Lock()
	defer k.refusedMu.Unlock()
	if k.refused == nil {
		return nil
	}
	r := *k.refused
	return &r
}

// noteOutcome records whether Key Vault carried out an operation or refused it (Refused).
func (k *Key) noteOutcome(r *Refusal) {
	k.refusedMu.Lock()
	defer k.refusedMu.Unlock()
	switch {
	case r == nil:
		k.refused = nil
	case k.refused == nil:
		k.refused = r
	default:
		since := k.refused.Since
		k.refused = r
		k.refused.Since = since
	}
}

var (
	_ crypto.Signer    = (*Key)(nil)
	_ crypto.Decrypter = (*Key)(nil)
)

// New loads key name from Key Vault with one GetKey call and pins its
// version. If version is "", the key's current version is resolved by that
// same call and pinned, so later rotations do not affect this Key. The key
// must be enabled and be an RSA (2048 bits or more) or EC P-256/P-384/P-521 key.
func New(ctx context.Context, client *azkeys.Client, name, version string, opts Options) (*Key, error) {
	if client == nil {
		return nil, fmt.Errorf("keyvault: nil azkeys client: %w", ErrInvalidInput)
	}
	if name == "" || strings.Contains(name, "/") || strings.Contains(version, "/") {
		return nil, fmt.Errorf("keyvault: invalid key name %q / version %q: %w", name, version, ErrInvalidInput)
	}
	k := &Key{client: client, name: name, version: version, opts: opts.withDefaults()}

	var resp azkeys.GetKeyResponse
	err := k.call(ctx, "get", func(ctx context.Context) error {
		var err error
		resp, err = client.GetKey(ctx, name, version, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("loading key: %w", err)
	}
	jwk := resp.Key
	if jwk == nil || jwk.KID == nil {
		return nil, fmt.Errorf("keyvault get %s: response has no key: %w", k.ref(), ErrInvalidResponse)
	}
	// Key Vault names and versions are case-insensitive identifiers, and its answers spell the name as the key was
	// created, not as it was asked for.
	if got := jwk.KID.Name(); !strings.EqualFold(got, name) {
		return nil, fmt.Errorf("keyvault get %s: response is for key %q: %w", k.ref(), got, ErrInvalidResponse)
	}
	gotVersion := jwk.KID.Version()
	if gotVersion == "" || (version != "" && !strings.EqualFold(gotVersion, version)) {
		return nil, fmt.Errorf("keyvault get %s: response has version %q: %w", k.ref(), gotVersion, ErrInvalidResponse)
	}
	k.version = gotVersion
	k.kid = string(*jwk.KID)
	if resp.Attributes != nil && resp.Attributes.Enabled != nil && !*resp.Attributes.Enabled {
		return nil, fmt.Errorf("keyvault get %s: key is disabled: %w", k.ref(), ErrDisabled)
	}
	if a := resp.Attributes; a != nil {
		if a.NotBefore != nil {
			k.nbf = *a.NotBefore
		}
		if a.Expires != nil {
			k.exp = *a.Expires
		}
	}
	if jwk.Kty != nil {
		k.kty = string(*jwk.Kty)
	}
	if k.pub, err = publicKey(jwk); err != nil {
		return nil, fmt.Errorf("keyvault get %s: %w", k.ref(), err)
	}
	if jwk.KeyOps != nil {
		k.ops = make([]string, 0, len(jwk.KeyOps))
		for _, op := range jwk.KeyOps {
			if op != nil {
				k.ops = append(k.ops, string(*op))
			}
		}
	}
	return k, nil
}

// publicKey converts Key Vault's JWK to a Go public key, validating it.
func publicKey(jwk *azkeys.JSONWebKey) (crypto.PublicKey, error) {
	if jwk.Kty == nil {
		return nil, fmt.Errorf("key has no kty: %w", ErrInvalidResponse)
	}
	switch *jwk.Kty {
	case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
		if len(jwk.N) == 0 || len(jwk.E) == 0 || len(jwk.E) > 4 {
			return nil, fmt.Errorf("RSA key has invalid n/e: %w", ErrInvalidResponse)
		}
		e := 0
		for _, b := range jwk.E {
			e = e<<8 | int(b)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(jwk.N), E: e}
		if pub.N.BitLen() < 2048 || e < 3 || e%2 == 0 {
			return nil, fmt.Errorf("RSA key too small (%d bits) or bad exponent: %w", pub.N.BitLen(), ErrUnsupported)
		}
		return pub, nil
	case azkeys.KeyTypeEC, azkeys.KeyTypeECHSM:
		if jwk.Crv == nil {
			return nil, fmt.Errorf("EC key has no crv: %w", ErrInvalidResponse)
		}
		var curve elliptic.Curve
		switch *jwk.Crv {
		case azkeys.CurveNameP256:
			curve = elliptic.P256()
		case azkeys.CurveNameP384:
			curve = elliptic.P384()
		case azkeys.CurveNameP521:
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("EC curve %s: %w", *jwk.Crv, ErrUnsupported)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(jwk.X) > size || len(jwk.Y) > size {
			return nil, fmt.Errorf("EC coordinates too long: %w", ErrInvalidResponse)
		}
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		copy(raw[1+size-len(jwk.X):1+size], jwk.X)
		copy(raw[1+2*size-len(jwk.Y):], jwk.Y)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, fmt.Errorf("EC point: %v: %w", err, ErrInvalidResponse)
		}
		return pub, nil
	default:
		return nil, fmt.Errorf("key type %s: %w", *jwk.Kty, ErrUnsupported)
	}
}

// Public returns the cached public key: *rsa.PublicKey or *ecdsa.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// KID is the full key identifier including the pinned version, e.g.
// https://myvault.vault.azure.net/keys/ca/0123…; record it in audit logs.
func (k *Key) KID() string { return k.kid }

// Name is the key's name in the vault.
func (k *Key) Name() string { return k.name }

// Version is the pinned key version.
func (k *Key) Version() string { return k.version }

// KeyType is Key Vault's kty: RSA, RSA-HSM, EC or EC-HSM.
func (k *Key) KeyType() string { return k.kty }

// KeyOps returns the key's allowed operations as reported at load time, or
// nil when Key Vault reported none (then the key itself restricts nothing).
func (k *Key) KeyOps() []string { return slices.Clone(k.ops) }

// Can reports whether the key's key_ops allow op (one of the Op constants).
// Start-up checks use it to refuse a misconfigured key early instead of
// failing the first enrollment. Vault access policies / RBAC are separate and
// only show up as ErrForbidden on use.
func (k *Key) Can(op string) bool { return k.ops == nil || slices.Contains(k.ops, op) }

// CanSign reports whether key_ops allow signing.
func (k *Key) CanSign() bool { return k.Can(OpSign) }

// CanDecrypt reports whether key_ops allow decryption (RSA keys only).
func (k *Key) CanDecrypt() bool {
	_, rsaKey := k.pub.(*rsa.PublicKey)
	return rsaKey && k.Can(OpDecrypt)
}

// CanWrapKey reports whether key_ops allow wrapKey (RSA keys only).
func (k *Key) CanWrapKey() bool {
	_, rsaKey := k.pub.(*rsa.PublicKey)
	return rsaKey && k.Can(OpWrapKey)
}

// CanUnwrapKey reports whether key_ops allow unwrapKey (RSA keys only).
func (k *Key) CanUnwrapKey() bool {
	_, rsaKey := k.pub.(*rsa.PublicKey)
	return rsaKey && k.Can(OpUnwrapKey)
}

// Expires is the key version's expiry (attributes.exp) as loaded, zero when it has none. From then on Key Vault
// refuses it sign, encrypt and wrapKey (403), while verify, decrypt and unwrapKey still work.
func (k *Key) Expires() time.Time { return k.exp }

// ActiveAt returns nil when Key Vault lets the key version sign, encrypt and wrap at t: t inside its nbf/exp window
// as loaded. Otherwise an ErrExpired error naming the bound: a key version that a rotation policy's expiryTime or
// an operator's --expires ended, or one not yet valid. Checked before the key is put to work, so that start-up and
// `ca` commands say so instead of meeting Key Vault's bare 403 at the first signature.
func (k *Key) ActiveAt(t time.Time) error {
	if !k.exp.IsZero() && !t.Before(k.exp) {
		return fmt.Errorf("keyvault: key %s expired at %s (attributes.exp): %w", k.ref(),
			k.exp.UTC().Format(time.RFC3339), ErrExpired)
	}
	if !k.nbf.IsZero() && t.Before(k.nbf) {
		return fmt.Errorf("keyvault: key %s is not valid before %s (attributes.nbf): %w", k.ref(),
			k.nbf.UTC().Format(time.RFC3339), ErrExpired)
	}
	return nil
}

// ref is name/version for error messages.
func (k *Key) ref() string {
	if k.version == "" {
		return k.name
	}
	return k.name + "/" + k.version
}
