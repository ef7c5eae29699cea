package intune

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors. Every error returned by Client wraps at least one of them
// (or is a *ValidationError / *HTTPError), so callers can classify failures
// with errors.Is / errors.As without parsing messages. Whatever the class, a
// caller on the issuance path must fail closed: only a nil error means
// "Intune said Success".
var (
	// ErrInvalidArgument reports a local precondition failure; nothing was sent.
	ErrInvalidArgument = errors.New("intune: invalid argument")
	// ErrUnavailable reports that Intune (or Graph) could not be reached or
	// did not answer in time: DNS, connection, TLS, timeout, 5xx, 429.
	ErrUnavailable = errors.New("intune: service unavailable")
	// ErrAuth reports that no access token could be obtained, or that Intune
	// or Graph refused the token (HTTP 401/403).
	ErrAuth = errors.New("intune: authentication failed")
	// ErrDiscovery reports that the Graph service-discovery step failed.
	ErrDiscovery = errors.New("intune: service discovery failed")
	// ErrServiceNotFound reports that Graph discovery succeeded but did not
	// list the Intune service this operation needs.
	ErrServiceNotFound = errors.New("intune: service not listed in Graph discovery")
	// ErrMalformedResponse reports a 2xx answer that is not the documented
	// JSON shape (empty, not JSON, missing or mistyped members, too large).
	ErrMalformedResponse = errors.New("intune: malformed response")
	// ErrUploadNotAccepted reports that uploadRevocationResults answered
	// with a well-formed "value": false; the results must be uploaded again.
	ErrUploadNotAccepted = errors.New("intune: revocation results not accepted")
)

// ValidationError is Intune's definitive "no": a 2xx answer whose code is
// anything but Success. It is the only error for which IsRejection is true.
type ValidationError struct {
	// Operation is the Intune action, e.g. "validateRequest".
	Operation string
	// Code is the code Intune returned, verbatim (e.g. "ChallengeExpired");
	// unknown codes are kept as received.
	Code Code
	// Description is Intune's errorDescription.
	Description string
	// TransactionID is the SCEP transaction the call was about.
	TransactionID string
	// ActivityID is the client-request-id of the HTTP call, for Microsoft support.
	ActivityID string
}

// Error includes the code, Intune's description and the client-request-id
// (needed by Microsoft support), never request content.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("intune: %s rejected transaction %q: %s: %s (client-request-id %s)",
		e.Operation, e.TransactionID, e.Code, e.Description, e.ActivityID)
}

// HTTPError reports a non-2xx answer from Intune or Graph. It matches
// ErrAuth for 401/403 and ErrUnavailable for 5xx and 429 under errors.Is,
// so callers can classify it without a type switch.
type HTTPError struct {
	// Operation is the call that failed ("validateRequest", "discovery", ...).
	Operation string
	// Status is the HTTP status code.
	Status int
	// ActivityID is the client-request-id sent with the request.
	ActivityID string
	// Body is what the error answer said (errorSummary: its error code and message, never the raw body).
	Body string
	// RetryAfter is the wait the answer asked for (Retry-After or retry-after-ms, at most an hour), 0 when it
	// asked for none: a caller that gives up passes it on to its own client (a 429 or 503 from Intune).
	RetryAfter time.Duration
}

// Error includes the status, the client-request-id and what the answer said.
func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("intune: %s: HTTP %d %s (client-request-id %s)",
		e.Operation, e.Status, http.StatusText(e.Status), e.ActivityID)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Is lets errors.Is(err, ErrAuth) and errors.Is(err, ErrUnavailable) see
// through an HTTPError with the corresponding status class.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrAuth:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrUnavailable:
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return false
}

// IsRejection reports whether err is Intune's definitive rejection of the
// request (a *ValidationError). Anything else — transport failures, HTTP
// errors, malformed answers, auth problems — means "Intune did not decide";
// callers log those as unavailability, but fail closed either way.
func IsRejection(err error) bool {
	var ve *ValidationError
	return errors.As(err, &ve)
}

// retryable reports whether an attempt that failed with err may be repeated.
func retryable(err error) bool {
	if IsRejection(err) || errors.Is(err, ErrMalformedResponse) || errors.Is(err, ErrInvalidArgument) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status >= 500 || he.Status == http.StatusTooManyRequests || he.Status == http.StatusNotFound
	}
	return errors.Is(err, ErrUnavailable)
}
