package keyvault

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// Sign implements crypto.Signer: it signs digest (already hashed with
// opts.HashFunc()) in Key Vault. RSA keys sign RS256/384/512, or PS256/384/512
// when opts is *rsa.PSSOptions; EC keys sign ES256/384/512 (the hash must match
// the curve) and the result is returned as ASN.1 DER, as Go expects. The
// random source is ignored: Key Vault supplies its own randomness. SHA-1 is
// refused without a network call because Key Vault has no SHA-1 signature
// algorithm (smallstep/pkcs7 defaults to SHA-1: call
// pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256) at start-up).
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign with a caller context, e.g. to bound signing by an HTTP
// request's lifetime on top of the per-attempt CallTimeout.
func (k *Key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, hash, pss, err := k.signatureAlgorithm(digest, opts)
	if err != nil {
		return nil, fmt.Errorf("keyvault sign %s: %w", k.ref(), err)
	}
	var sig []byte
	err = k.call(ctx, "sign", func(ctx context.Context) error {
		resp, err := k.client.Sign(ctx, k.name, k.version, azkeys.SignParameters{Algorithm: &alg, Value: digest}, nil)
		if err != nil {
			return err
		}
		sig = resp.Result
		return nil
	})
	if err != nil {
		return nil, err
	}
	out, err := k.checkSignature(digest, sig, hash, pss)
	if err != nil {
		return nil, fmt.Errorf("keyvault sign %s (%s): %w", k.ref(), alg, err)
	}
	return out, nil
}

// signatureAlgorithm maps Go's signer options to a Key Vault algorithm.
func (k *Key) signatureAlgorithm(digest []byte, opts crypto.SignerOpts) (azkeys.SignatureAlgorithm, crypto.Hash, bool, error) {
	if opts == nil {
		return "", 0, false, fmt.Errorf("nil SignerOpts: %w", ErrUnsupported)
	}
	hash := opts.HashFunc()
	switch hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	case crypto.SHA1:
		return "", 0, false, fmt.Errorf("SHA-1 signatures are not available in Key Vault; use SHA-256 or stronger: %w", ErrUnsupported)
	default:
		// crypto.Hash(0).String() and unknown values format safely.
		return "", 0, false, fmt.Errorf("hash %s: %w", hash, ErrUnsupported)
	}
	if len(digest) != hash.Size() {
		return "", 0, false, fmt.Errorf("digest is %d bytes, %s needs %d: %w", len(digest), hash, hash.Size(), ErrInvalidInput)
	}
	pssOpts, pss := opts.(*rsa.PSSOptions)
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if pss {
			// Key Vault's PS* use a salt as long as the hash (RFC 7518 §3.5);
			// accept only options that such a signature satisfies.
			switch pssOpts.SaltLength {
			case rsa.PSSSaltLengthAuto, rsa.PSSSaltLengthEqualsHash, hash.Size():
			default:
				return "", 0, false, fmt.Errorf("PSS salt length %d (Key Vault uses the hash length): %w", pssOpts.SaltLength, ErrUnsupported)
			}
			return map[crypto.Hash]azkeys.SignatureAlgorithm{
				crypto.SHA256: azkeys.SignatureAlgorithmPS256,
				crypto.SHA384: azkeys.SignatureAlgorithmPS384,
				crypto.SHA512: azkeys.SignatureAlgorithmPS512,
			}[hash], hash, true, nil
		}
		return map[crypto.Hash]azkeys.SignatureAlgorithm{
			crypto.SHA256: azkeys.SignatureAlgorithmRS256,
			crypto.SHA384: azkeys.SignatureAlgorithmRS384,
			crypto.SHA512: azkeys.SignatureAlgorithmRS512,
		}[hash], hash, false, nil
	case *ecdsa.PublicKey:
		if pss {
			return "", 0, false, fmt.Errorf("PSS options with an EC key: %w", ErrUnsupported)
		}
		// Key Vault binds each ES* algorithm to one curve (RFC 7518 §3.4).
		var alg azkeys.SignatureAlgorithm
		var want crypto.Hash
		switch pub.Curve.Params().BitSize {
		case 256:
			alg, want = azkeys.SignatureAlgorithmES256, crypto.SHA256
		case 384:
			alg, want = azkeys.SignatureAlgorithmES384, crypto.SHA384
		case 521:
			alg, want = azkeys.SignatureAlgorithmES512, crypto.SHA512
		}
		if hash != want {
			return "", 0, false, fmt.Errorf("curve %s signs only %s digests in Key Vault, got %s: %w",
				pub.Curve.Params().Name, want, hash, ErrUnsupported)
		}
		return alg, hash, false, nil
	default:
		return "", 0, false, fmt.Errorf("public key type %T: %w", k.pub, ErrUnsupported)
	}
}

// checkSignature normalises Key Vault's signature to Go's encoding and
// verifies it under the pinned public key. Verification is cheap next to the
// round trip and turns a wrong key or a corrupted answer into an error here,
// instead of a certificate nobody can validate.
func (k *Key) checkSignature(digest, sig []byte, hash crypto.Hash, pss bool) ([]byte, error) {
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		size := pub.Size()
		if len(sig) == 0 || len(sig) > size {
			return nil, fmt.Errorf("RSA signature is %d bytes for a %d-byte modulus: %w", len(sig), size, ErrInvalidResponse)
		}
		if len(sig) < size { // tolerate a stripped leading zero
			sig = append(make([]byte, size-len(sig)), sig...)
		}
		var err error
		if pss {
			err = rsa.VerifyPSS(pub, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(pub, hash, digest, sig)
		}
		if err != nil {
			return nil, fmt.Errorf("signature does not verify under the pinned public key: %w", ErrInvalidResponse)
		}
		return sig, nil
	case *ecdsa.PublicKey:
		der, err := rawToDER(sig, (pub.Curve.Params().BitSize+7)/8)
		if err != nil {
			return nil, err
		}
		if !ecdsa.VerifyASN1(pub, digest, der) {
			return nil, fmt.Errorf("signature does not verify under the pinned public key: %w", ErrInvalidResponse)
		}
		return der, nil
	}
	return nil, fmt.Errorf("public key type %T: %w", k.pub, ErrUnsupported)
}

// rawToDER converts a JOSE ECDSA signature (r || s, each size bytes) to the
// ASN.1 SEQUENCE { r INTEGER, s INTEGER } that crypto/x509 and pkcs7 expect.
func rawToDER(sig []byte, size int) ([]byte, error) {
	if len(sig) != 2*size {
		return nil, fmt.Errorf("ECDSA signature is %d bytes, want %d: %w", len(sig), 2*size, ErrInvalidResponse)
	}
	var v struct{ R, S *big.Int }
	v.R = new(big.Int).SetBytes(sig[:size])
	v.S = new(big.Int).SetBytes(sig[size:])
	der, err := asn1.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding ECDSA signature: %w", err)
	}
	return der, nil
}
