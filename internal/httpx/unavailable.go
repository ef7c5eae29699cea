package httpx

import (
	"context"
	"errors"
	"time"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/store"
)

// DefaultRetryAfter is what a 503 advertises when the failing dependency named no time.
const DefaultRetryAfter = 30 * time.Second

// Unavailable reports whether err means a dependency (Table Storage, Key Vault) could not serve the request
// right now, and how long the client should wait. Such failures happen before any certificate leaves, so the
// client may simply retry: the edge answers 503 with Retry-After.
func Unavailable(err error) (time.Duration, bool) {
	var t *keyvault.ThrottledError
	switch {
	case errors.As(err, &t):
		return t.RetryAfter, true
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, keyvault.ErrUnavailable),
		errors.Is(err, keyvault.ErrThrottled), errors.Is(err, context.DeadlineExceeded),
		// Key Vault refusing the service's identity: a role still spreading after a deployment, or one an operator
		// must restore. Either way the client did nothing wrong and may retry; a SCEP FAILURE badRequest (or a
		// 500) would tell it its request was at fault.
		errors.Is(err, keyvault.ErrForbidden):
		return DefaultRetryAfter, true
	}
	return 0, false
}
