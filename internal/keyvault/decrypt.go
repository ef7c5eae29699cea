package keyvault

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// Decrypt implements crypto.Decrypter for RSA keys, as smallstep/pkcs7 calls
// it for SCEP envelopes: nil or *rsa.PKCS1v15DecryptOptions → RSA1_5;
// *rsa.OAEPOptions with SHA-1 → RSA-OAEP, with SHA-256 → RSA-OAEP-256 (MGF1
// with the same hash). OAEP labels, other hashes and EC keys are refused
// without a network call. The random source is ignored.
//
// With PKCS1v15DecryptOptions.SessionKeyLen > 0 the crypto.Decrypter
// contract for session keys is kept: when Key Vault reports that the
// ciphertext does not decrypt, or the plaintext has another length, a random
// key of that length is returned instead of an error, so a padding failure is
// indistinguishable to the caller's peer from a wrong key (Bleichenbacher).
func (k *Key) Decrypt(_ io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return k.DecryptContext(context.Background(), ciphertext, opts)
}

// DecryptContext is Decrypt with a caller context.
func (k *Key) DecryptContext(ctx context.Context, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	alg, sessionKeyLen, err := decryptAlgorithm(opts)
	if err == nil {
		err = k.checkCiphertext(ciphertext)
	}
	if err != nil {
		return nil, fmt.Errorf("keyvault decrypt %s: %w", k.ref(), err)
	}
	pt, err := k.cipherOp(ctx, "decrypt", alg, ciphertext)
	if sessionKeyLen > 0 && (errors.Is(err, ErrRejected) || (err == nil && len(pt) != sessionKeyLen)) {
		key := make([]byte, sessionKeyLen)
		if _, rerr := rand.Read(key); rerr != nil {
			return nil, fmt.Errorf("keyvault decrypt %s: generating random session key: %w", k.ref(), rerr)
		}
		return key, nil
	}
	return pt, err
}

// decryptAlgorithm maps Go's decrypter options to a Key Vault algorithm.
func decryptAlgorithm(opts crypto.DecrypterOpts) (azkeys.EncryptionAlgorithm, int, error) {
	switch o := opts.(type) {
	case nil:
		return azkeys.EncryptionAlgorithmRSA15, 0, nil
	case *rsa.PKCS1v15DecryptOptions:
		if o.SessionKeyLen < 0 {
			return "", 0, fmt.Errorf("negative SessionKeyLen: %w", ErrInvalidInput)
		}
		return azkeys.EncryptionAlgorithmRSA15, o.SessionKeyLen, nil
	case *rsa.OAEPOptions:
		if len(o.Label) != 0 {
			return "", 0, fmt.Errorf("OAEP labels are not available in Key Vault: %w", ErrUnsupported)
		}
		if o.MGFHash != 0 && o.MGFHash != o.Hash {
			return "", 0, fmt.Errorf("OAEP MGF1 hash %s differs from %s: %w", o.MGFHash, o.Hash, ErrUnsupported)
		}
		switch o.Hash {
		case crypto.SHA1:
			return azkeys.EncryptionAlgorithmRSAOAEP, 0, nil
		case crypto.SHA256:
			return azkeys.EncryptionAlgorithmRSAOAEP256, 0, nil
		}
		return "", 0, fmt.Errorf("OAEP with %s (Key Vault offers SHA-1 and SHA-256): %w", o.Hash, ErrUnsupported)
	default:
		return "", 0, fmt.Errorf("decrypter options %T: %w", opts, ErrUnsupported)
	}
}

// checkCiphertext refuses what cannot be an RSA ciphertext for this key.
func (k *Key) checkCiphertext(ct []byte) error {
	pub, ok := k.pub.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("decryption needs an RSA key, this is %s: %w", k.kty, ErrUnsupported)
	}
	if len(ct) == 0 || len(ct) > pub.Size() {
		return fmt.Errorf("ciphertext is %d bytes for a %d-byte modulus: %w", len(ct), pub.Size(), ErrInvalidInput)
	}
	return nil
}

// WrapKey encrypts a data key in Key Vault with RSA-OAEP-256, e.g. the data
// key protecting the SCEP RA private key at rest. It needs the wrapKey
// operation; only UnwrapKey can undo it.
func (k *Key) WrapKey(ctx context.Context, plaintext []byte) ([]byte, error) {
	pub, ok := k.pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("keyvault wrapkey %s: needs an RSA key: %w", k.ref(), ErrUnsupported)
	}
	// RFC 8017 §7.1.1: mLen ≤ k − 2hLen − 2, hLen = 32 for SHA-256.
	if maxLen := pub.Size() - 2*32 - 2; len(plaintext) == 0 || len(plaintext) > maxLen {
		return nil, fmt.Errorf("keyvault wrapkey %s: key material is %d bytes, want 1..%d: %w",
			k.ref(), len(plaintext), maxLen, ErrInvalidInput)
	}
	return k.cipherOp(ctx, "wrapkey", azkeys.EncryptionAlgorithmRSAOAEP256, plaintext)
}

// UnwrapKey reverses WrapKey (RSA-OAEP-256) in Key Vault. It needs the
// unwrapKey operation.
func (k *Key) UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error) {
	if err := k.checkCiphertext(wrapped); err != nil {
		return nil, fmt.Errorf("keyvault unwrapkey %s: %w", k.ref(), err)
	}
	return k.cipherOp(ctx, "unwrapkey", azkeys.EncryptionAlgorithmRSAOAEP256, wrapped)
}

// cipherOp runs decrypt, wrapkey or unwrapkey with retries.
func (k *Key) cipherOp(ctx context.Context, op string, alg azkeys.EncryptionAlgorithm, value []byte) ([]byte, error) {
	params := azkeys.KeyOperationParameters{Algorithm: &alg, Value: value}
	var do func(context.Context) (azkeys.KeyOperationResult, error)
	switch op {
	case "decrypt":
		do = func(ctx context.Context) (azkeys.KeyOperationResult, error) {
			r, err := k.client.Decrypt(ctx, k.name, k.version, params, nil)
			return r.KeyOperationResult, err
		}
	case "wrapkey":
		do = func(ctx context.Context) (azkeys.KeyOperationResult, error) {
			r, err := k.client.WrapKey(ctx, k.name, k.version, params, nil)
			return r.KeyOperationResult, err
		}
	case "unwrapkey":
		do = func(ctx context.Context) (azkeys.KeyOperationResult, error) {
			r, err := k.client.UnwrapKey(ctx, k.name, k.version, params, nil)
			return r.KeyOperationResult, err
		}
	default:
		return nil, fmt.Errorf("keyvault: unknown operation %q: %w", op, ErrUnsupported)
	}
	var out []byte
	err := k.call(ctx, op, func(ctx context.Context) error {
		res, err := do(ctx)
		if err != nil {
			return err
		}
		out = res.Result
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("keyvault %s %s: empty result: %w", op, k.ref(), ErrInvalidResponse)
	}
	return out, nil
}
