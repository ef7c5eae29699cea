package issuance

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/azscep/azscep/internal/lint"
)

// sign has the CA key sign the planned certificate's own to-be-signed bytes, the ones the linter linted, and
// returns the Certificate DER. There is no second x509.CreateCertificate, so nothing is rebuilt between the lint
// and the signature (Boulder's tbsCertIsDeterministic check holds by construction).
//
// The signature is verified exactly once, against the CA certificate's public key, before the caller records the
// certificate as issued: by the signer itself when custody vouches that it checks its own output (Key Vault's
// client, crypto/rsa; see custody.SignerVerifiesItself), otherwise here. Any other crypto.Signer (a wrapper, a
// local ECDSA key, an HSM) therefore cannot hand back a wrong signature unnoticed.
func (i *Issuer) sign(plan *lint.Planned) ([]byte, error) {
	// lint.Check set Hash only for an algorithm it accepts; a Planned from anywhere else never reaches the key.
	hash := plan.Hash
	if !hash.Available() {
		return nil, errors.New("planned certificate has no signature hash: it was not built by lint.Check")
	}
	h := hash.New()
	h.Write(plan.TBSCertificate)
	digest := h.Sum(nil)
	sig, err := i.ca.Signer.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, err
	}
	if !i.signerVerifies {
		// crypto/x509 verifies as it would for the certificate itself: the TBS under the CA certificate's key.
		if err := i.ca.Cert.CheckSignature(plan.Cert.SignatureAlgorithm, plan.TBSCertificate, sig); err != nil {
			return nil, fmt.Errorf("signature does not verify against the CA certificate: %w", err)
		}
	}
	der, err := plan.WithSignature(sig)
	if err != nil {
		return nil, fmt.Errorf("assembling the signed certificate: %w", err)
	}
	return der, nil
}
