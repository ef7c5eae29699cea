package scep

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"github.com/azscep/azscep/internal/httpx"
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

// intuneUndecided reports whether err, from Validate or NotifySuccess, means that Intune did not decide the request
// (or the notification), and the wait to advertise (Intune's own Retry-After when it sent one). Only Intune's answer code for a refused request
// (intune.IsRejection: expired challenge, another device, a CSR that does not match) and a request the client could
// not even send (an unusable transaction ID or CSR) are the device's to hear as a FAILURE. Everything else is
// Intune or this CA failing, and a retry can succeed: transport errors, timeouts, 5xx and 429, a malformed answer,
// the token or Graph discovery failing — and a 401/403, Intune refusing this CA's identity (a missing
// scep_challenge_provider grant, or one still reaching the token), which an operator fixes and /api/health names.
func intuneUndecided(err error) (time.Duration, bool) {
	if intune.IsRejection(err) {
		return 0, false
	}
	if errors.Is(err, intune.ErrInvalidArgument) && !errors.Is(err, intune.ErrDiscovery) {
		return 0, false // nothing was sent: the request's own transaction ID or CSR cannot be
	}
	var he *intune.HTTPError
	if errors.As(err, &he) && he.RetryAfter > 0 {
		return he.RetryAfter, true
	}
	return httpx.DefaultRetryAfter, true
}

// notificationUndecided is intuneUndecided for an error of NotifySuccess, but for a 4xx Intune answered the
// notification itself with, other than 401/403 (this CA's identity refused), 404 (the service moved), 408 and 429:
// that is Intune refusing this notification, which the next one, for the device's retry, would meet again at the
// price of another signature. So it withholds the certificate for good, as a refusal code does.
func notificationUndecided(err error) (time.Duration, bool) {
	var he *intune.HTTPError
	if errors.As(err, &he) && he.Operation == intune.OpSuccessNotification && he.Status >= 400 && he.Status < 500 {
		switch he.Status {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusRequestTimeout,
			http.StatusTooManyRequests:
		default:
			return 0, false
		}
	}
	return intuneUndecided(err)
}
