package scep

import (
	"context"
	"crypto/x509"
	"errors"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/issuance"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
)

// IntuneChallenge connects the SCEP flow to the Intune client: validate before signing, report the issued
// certificate (and the exact serial string, which the revocation sync later matches) before it leaves.
type IntuneChallenge struct {
	Client *intune.Client
	// CAConfiguration identifies this CA in Intune's revocation queue: intune.CAConfiguration of the CA certificate.
	CAConfiguration string
}

// Validate asks Intune whether the challenge in the CSR is good for this request.
func (c *IntuneChallenge) Validate(ctx context.Context, transactionID string, csrDER []byte) error {
	return c.Client.ValidateRequest(ctx, transactionID, csrDER)
}

// NotifySuccess sends successNotification and records on rec what was reported.
func (c *IntuneChallenge) NotifySuccess(ctx context.Context, transactionID string, csrDER []byte, rec *store.Record, cert *x509.Certificate) error {
	rec.IntuneSerial = rec.Serial
	rec.CAConfiguration = c.CAConfiguration
	err := c.Client.NotifySuccess(ctx, intune.SuccessNotification{TransactionID: transactionID, CSR: csrDER,
		Certificate: cert, SerialNumber: rec.Serial, CAConfiguration: c.CAConfiguration,
		CertificateAuthority: c.CAConfiguration})
	rec.IntuneNotified = err == nil
	return err
}

// NotifyFailure sends failureNotification with an HRESULT chosen from the cause.
func (c *IntuneChallenge) NotifyFailure(ctx context.Context, transactionID string, csrDER []byte, cause error) error {
	code := intune.HResultIssuanceFailed
	if _, ok := policy.AsRejection(cause); ok {
		code = intune.HResultPolicyRejected
	} else if errors.Is(cause, issuance.ErrSigner) {
		code = intune.HResultSigningFailed
	} else if errors.Is(cause, store.ErrUnavailable) {
		// The record could not be written: the admin console should point at Table Storage, not the CA key.
		code = intune.HResultStorageFailed
	}
	return c.Client.NotifyFailure(ctx, transactionID, csrDER, code, intune.TruncateDescription(cause.Error()))
}
