package keyvault

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Every error a Key returns for a failed remote call matches
// exactly one of ErrThrottled, ErrUnavailable, ErrForbidden, ErrNotFound,
// ErrDisabled or ErrRejected with errors.Is, so the HTTP edge can choose a status without
// parsing messages; the underlying *azcore.ResponseError (when there is one)
// stays reachable with errors.As.
var (
	// ErrThrottled means Key Vault kept answering 429 after the retry budget
	// was spent. The error is a *ThrottledError carrying the server's
	// Retry-After; the edge answers 503 with that Retry-After.
	ErrThrottled = errors.New("keyvault: throttled")

	// ErrUnavailable means Key Vault answered 5xx, or could not be reached,
	// after the retry budget was spent, or that a loaded key version is gone
	// from the vault (404 to an operation: deleted since, until recovered).
	// Callers treat it like a dependency outage: 503, no partial work.
	ErrUnavailable = errors.New("keyvault: unavailable")

	// ErrForbidden means the caller is not authorized (401/403): a missing
	// access policy or RBAC role, an invalid token, or an operation the key's
	// key_ops do not allow. An operator must fix the configuration, except
	// for the minutes after a role assignment, while it spreads: start-up
	// waits those out.
	ErrForbidden = errors.New("keyvault: forbidden")

	// ErrFirewall means the vault's network rules refused the caller's
	// address (403 with the inner code ForbiddenByFirewall); it matches
	// ErrForbidden too. No role assignment fixes it: the operator allows the
	// app's outbound addresses, a private endpoint or its virtual network in
	// the vault's networking settings.
	ErrFirewall = errors.New("keyvault: refused by the vault's firewall")

	// ErrDisabled means the key (version) is disabled in Key Vault. Nothing
	// spreads that away: an operator must enable it or pin another version.
	ErrDisabled = errors.New("keyvault: key disabled")

	// ErrExpired means the key version is outside its nbf/exp window (Key.ActiveAt), where Key Vault refuses it
	// sign, encrypt and wrapKey. Nothing spreads that away: an operator extends or removes its expiry.
	ErrExpired = errors.New("keyvault: key outside its validity window")

	// ErrNotFound means the key or key version does not exist (404 to New). Bootstrap
	// code uses it to decide between adopting and creating a key.
	ErrNotFound = errors.New("keyvault: key not found")

	// ErrRejected means Key Vault refused the request as invalid (other 4xx,
	// e.g. 400 BadParameter for a ciphertext that does not decrypt).
	ErrRejected = errors.New("keyvault: request rejected")

	// ErrUnsupported means the requested operation cannot be expressed as a Key
	// Vault algorithm for this key (e.g. a SHA-1 signature, OAEP with a label,
	// decryption with an EC key). It is returned before any network call.
	ErrUnsupported = errors.New("keyvault: unsupported operation")

	// ErrInvalidInput means the caller's input is malformed (e.g. a digest
	// whose length does not match the hash). It is returned before any
	// network call.
	ErrInvalidInput = errors.New("keyvault: invalid input")

	// ErrInvalidResponse means Key Vault's answer failed a local check: a
	// signature of the wrong size or one that does not verify under the pinned
	// public key. It signals a serious fault (wrong key, corrupted response)
	// and must never be retried into success silently.
	ErrInvalidResponse = errors.New("keyvault: invalid response")
)

// ThrottledError is returned when Key Vault throttling outlasts the retries.
// It satisfies errors.Is(err, ErrThrottled).
type ThrottledError struct {
	// Op is the Key Vault operation, e.g. "sign".
	Op string
	// Key is "name/version".
	Key string
	// Attempts is how many requests were sent.
	Attempts int
	// RetryAfter is the server's last Retry-After, or our own backoff estimate
	// when it sent none; always at least one second so it can be passed on to
	// HTTP clients as a Retry-After header.
	RetryAfter time.Duration
	// Err is the last underlying error (usually an *azcore.ResponseError).
	Err error
}

// Error implements error.
func (e *ThrottledError) Error() string {
	return fmt.Sprintf("keyvault %s %s: throttled after %d attempt(s), retry after %s",
		e.Op, e.Key, e.Attempts, e.RetryAfter)
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// Unwrap exposes the underlying error.
func (e *ThrottledError) Unwrap() error { return e.Err }

// opError is a classified failure of a remote call: kind is one of the
// sentinels, cause the underlying error.
type opError struct {
	op, key string
	kind    error
	also    error // a finer sentinel that kind's refinement also matches (ErrFirewall), or nil
	detail  string
	cause   error
}

func (e *opError) Error() string {
	msg := fmt.Sprintf("keyvault %s %s: %s", e.op, e.key, strings.TrimPrefix(e.kind.Error(), "keyvault: "))
	if e.detail != "" {
		msg += ": " + e.detail
	}
	return msg
}

// Unwrap lets errors.Is match the sentinel and errors.As reach the cause.
func (e *opError) Unwrap() []error {
	errs := []error{e.kind}
	if e.also != nil {
		errs = append(errs, e.also)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}
