package intune

import (
	"context"
	"crypto/sha1" // #nosec G505 -- the certificate thumbprint Intune expects is SHA-1 by definition.
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxErrorDescription is Intune's limit on failureNotification's
// errorDescription (§6.3). Intune is a .NET service, so the limit is
// enforced here in UTF-16 code units, which also bounds the rune count.
const MaxErrorDescription = 255

// expiryLayout is RFC 3339 in UTC with a "Z" and exactly milliseconds,
// the format recommended in §6.2 (e.g. 2026-01-31T23:59:59.000Z).
const expiryLayout = "2006-01-02T15:04:05.000Z"

// ValidateRequest asks Intune whether the CSR's challenge is valid for this
// device and profile (ScepActions/validateRequest, §6.1). csrDER must be the
// PKCS#10 exactly as the device sent it, including its challengePassword.
//
// It returns nil only for HTTP 2xx with code "Success". A *ValidationError
// means Intune rejected the request; any other error means it could not be
// asked. In both cases the caller must not issue.
func (c *Client) ValidateRequest(ctx context.Context, transactionID string, csrDER []byte) error {
	if err := requireTxAndCSR(transactionID, csrDER); err != nil {
		return err
	}
	body := map[string]any{"request": map[string]any{
		"transactionId":      transactionID,
		"certificateRequest": base64.StdEncoding.EncodeToString(csrDER),
		"callerInfo":         c.provider,
	}}
	return c.call(ctx, opValidate, transactionID, body, scepParser(opValidate.name, transactionID))
}

// SuccessNotification describes an issued certificate for successNotification.
type SuccessNotification struct {
	// TransactionID is the SCEP transactionID already passed to ValidateRequest.
	TransactionID string
	// CSR is the same DER PKCS#10 passed to ValidateRequest.
	CSR []byte
	// Certificate is the certificate about to be returned to the device.
	Certificate *x509.Certificate
	// SerialNumber is the serial exactly as the CA records it; Intune echoes
	// this string in revocation requests, so it must be the stored form.
	SerialNumber string
	// CAConfiguration identifies the CA for revocation routing (Intune's
	// issuerName filter is matched against it). Sent as null when empty.
	CAConfiguration string
	// CertificateAuthority is the CA name. Sent as null when empty.
	CertificateAuthority string
}

// CAConfiguration is what a CA reports as caConfiguration (and certificateAuthority) in successNotification, and
// what Intune echoes in the revocation requests for that certificate: the CA's subject DN in RFC 2253 form, as the
// reference integrations report it, and the first 8 bytes of the SHA-256 of its public key. The DN alone does not
// tell two CAs apart: two deployments serving one tenant that both keep the default CA name would each take the
// other's revocation requests for their own and answer "certificate not found", and Intune would drop them.
func CAConfiguration(ca *x509.Certificate) string {
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("%s (key %X)", ca.Subject.String(), sum[:8])
}

// NotifySuccess reports an issued certificate (ScepActions/successNotification,
// §6.2). It must succeed before the certificate is released: a non-nil
// error means the certificate must not be delivered.
func (c *Client) NotifySuccess(ctx context.Context, n SuccessNotification) error {
	if err := requireTxAndCSR(n.TransactionID, n.CSR); err != nil {
		return err
	}
	if n.Certificate == nil || len(n.Certificate.Raw) == 0 {
		return fmt.Errorf("%w: successNotification needs the issued certificate", ErrInvalidArgument)
	}
	if strings.TrimSpace(n.SerialNumber) == "" {
		return fmt.Errorf("%w: successNotification needs the certificate serial number", ErrInvalidArgument)
	}
	issuer := n.Certificate.Issuer.String()
	if issuer == "" {
		return fmt.Errorf("%w: certificate has an empty issuer name", ErrInvalidArgument)
	}
	body := map[string]any{"notification": map[string]any{
		"transactionId":                n.TransactionID,
		"certificateRequest":           base64.StdEncoding.EncodeToString(n.CSR),
		"certificateThumbprint":        Thumbprint(n.Certificate),
		"certificateSerialNumber":      n.SerialNumber,
		"certificateExpirationDateUtc": FormatExpiry(n.Certificate.NotAfter),
		"issuingCertificateAuthority":  issuer,
		"callerInfo":                   c.provider,
		"caConfiguration":              nullIfEmpty(n.CAConfiguration),
		"certificateAuthority":         nullIfEmpty(n.CertificateAuthority),
	}}
	return c.call(ctx, opSuccess, n.TransactionID, body, scepParser(opSuccess.name, n.TransactionID))
}

// NotifyFailure reports that issuance failed after a successful validation
// (ScepActions/failureNotification, §6.3). Do not call it for a rejected
// validation or a failed notification. hResult is sent as a non-negative
// JSON integer; description is truncated to MaxErrorDescription.
func (c *Client) NotifyFailure(ctx context.Context, transactionID string, csrDER []byte, hResult uint32, description string) error {
	if err := requireTxAndCSR(transactionID, csrDER); err != nil {
		return err
	}
	description = TruncateDescription(description)
	if strings.TrimSpace(description) == "" {
		return fmt.Errorf("%w: failureNotification needs an error description", ErrInvalidArgument)
	}
	body := map[string]any{"notification": map[string]any{
		"transactionId":      transactionID,
		"certificateRequest": base64.StdEncoding.EncodeToString(csrDER),
		"hResult":            int64(hResult),
		"errorDescription":   description,
		"callerInfo":         c.provider,
	}}
	return c.call(ctx, opFailure, transactionID, body, scepParser(opFailure.name, transactionID))
}

// Thumbprint returns the value sent as certificateThumbprint: the SHA-1 of
// the certificate DER as 40 upper-case hex digits (the .NET Thumbprint form).
func Thumbprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha1.Sum(cert.Raw) // #nosec G401 -- identifier, not a security decision.
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// FormatExpiry renders t as sent in certificateExpirationDateUtc.
func FormatExpiry(t time.Time) string { return t.UTC().Format(expiryLayout) }

// TruncateDescription makes s valid UTF-8 and cuts it, on a rune boundary,
// to at most MaxErrorDescription UTF-16 code units.
func TruncateDescription(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	units := 0
	for i, r := range s {
		n := utf16.RuneLen(r)
		if n < 0 {
			n = 1
		}
		if units+n > MaxErrorDescription {
			return s[:i]
		}
		units += n
	}
	return s
}

func requireTxAndCSR(transactionID string, csrDER []byte) error {
	if strings.TrimSpace(transactionID) == "" {
		return fmt.Errorf("%w: empty transaction ID", ErrInvalidArgument)
	}
	if !utf8.ValidString(transactionID) {
		return fmt.Errorf("%w: transaction ID is not valid UTF-8", ErrInvalidArgument)
	}
	if len(csrDER) == 0 {
		return fmt.Errorf("%w: empty certificate request", ErrInvalidArgument)
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// scepParser interprets {"code": "...", "errorDescription": "..."}. Member
// names are matched exactly (encoding/json would accept "Code"); both members
// must be strings, as Microsoft's Java library requires. Success iff the code
// is exactly "Success".
func scepParser(opName, txID string) parseFunc {
	return func(body []byte, activityID string) ([]slog.Attr, error) {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
			return nil, fmt.Errorf("%w: %s: answer is not a JSON object (client-request-id %s)", ErrMalformedResponse, opName, activityID)
		}
		var code, desc string
		if err := decodeString(doc, "code", &code); err != nil {
			return nil, fmt.Errorf("%w: %s: %v (client-request-id %s)", ErrMalformedResponse, opName, err, activityID)
		}
		attrs := []slog.Attr{slog.String("code", code)}
		if err := decodeString(doc, "errorDescription", &desc); err != nil {
			return attrs, fmt.Errorf("%w: %s: %v (client-request-id %s)", ErrMalformedResponse, opName, err, activityID)
		}
		if Code(code) == CodeSuccess {
			return attrs, nil
		}
		if code == "" {
			return attrs, fmt.Errorf("%w: %s: empty code (client-request-id %s)", ErrMalformedResponse, opName, activityID)
		}
		return attrs, &ValidationError{
			Operation: opName,
			Code:      Code(code),
			// Cleaned like error answers' text (clean): an answer echoing the request would otherwise carry the
			// CSR, and its challenge password, into errors and logs.
			Description:   clean(desc),
			TransactionID: txID,
			ActivityID:    activityID,
		}
	}
}

// decodeString reads the string member name of doc; absent, null and
// non-string members are errors.
func decodeString(doc map[string]json.RawMessage, name string, out *string) error {
	raw, ok := doc[name]
	if !ok {
		return fmt.Errorf("member %q missing", name)
	}
	if err := json.Unmarshal(raw, out); err != nil || string(raw) == "null" {
		return fmt.Errorf("member %q is not a string", name)
	}
	return nil
}
