package keyvault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/azscep/azscep/internal/ctxtime"
	"github.com/azscep/azscep/internal/transport"
)

// call runs one Key Vault operation with a deadline per attempt and our own
// retry policy: 429, 408 and 5xx answers and transport failures are retried
// with exponential backoff (honouring Retry-After) until MaxAttempts requests
// were sent or the next wait would exceed MaxWait in total. Everything else
// fails at once. The returned error is classified (see the sentinels).
//
// A failed lookup of the vault's host is a transport failure too, even a name
// that does not exist (a private DNS zone may not be linked yet); its
// *net.DNSError stays reachable with errors.As, so that a one-shot admin
// command can report a mistyped vault name as a configuration error instead.
func (k *Key) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	var (
		waited     time.Duration
		lastErr    error
		retryAfter time.Duration // server's last Retry-After, 0 if none
		throttled  bool
	)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, k.opts.CallTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			k.noteOutcome(nil)
			return nil
		}
		if ctx.Err() != nil {
			// The caller gave up; do not dress that up as an outage.
			return fmt.Errorf("keyvault %s %s: %w", op, k.ref(), ctx.Err())
		}

		var re *azcore.ResponseError
		isResp := errors.As(err, &re)
		switch {
		case isResp && re.StatusCode == http.StatusTooManyRequests:
			throttled = true
		case isResp && (re.StatusCode >= 500 || re.StatusCode == http.StatusRequestTimeout):
			throttled = false
		case isResp:
			if re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden ||
				(re.StatusCode == http.StatusNotFound && op != "get") {
				code := re.ErrorCode
				if c := serviceErrorOf(re).Error.InnerError.Code; c != "" {
					code = c
				}
				k.noteOutcome(&Refusal{Op: op, Status: re.StatusCode, Code: code, Since: time.Now()})
			}
			return k.classify(op, re, err)
		case errors.Is(err, transport.ErrAnswerTooLarge):
			// What answered would answer the same again: an outage for the caller, without the retries' reads.
			return fmt.Errorf("keyvault %s %s: %w: %w", op, k.ref(), ErrUnavailable, err)
		default:
			// Transport failure or the per-attempt deadline: retryable.
			throttled = false
		}
		lastErr = err
		retryAfter = 0
		if isResp {
			retryAfter = retryAfterOf(re.RawResponse)
		}

		wait := retryAfter
		if wait == 0 {
			wait = k.backoff(attempt)
		}
		if attempt >= k.opts.MaxAttempts || waited+wait > k.opts.MaxWait {
			return k.exhausted(op, attempt, throttled, retryAfter, wait, lastErr)
		}
		if err := k.opts.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("keyvault %s %s: waiting to retry: %w", op, k.ref(), err)
		}
		waited += wait
	}
}

// exhausted builds the error returned when the retry budget is spent.
func (k *Key) exhausted(op string, attempts int, throttled bool, retryAfter, next time.Duration, last error) error {
	if throttled {
		ra := retryAfter
		if ra == 0 {
			ra = next
		}
		return &ThrottledError{
			Op:         op,
			Key:        k.ref(),
			Attempts:   attempts,
			RetryAfter: ceilSeconds(ra),
			Err:        last,
		}
	}
	return &opError{
		op:     op,
		key:    k.ref(),
		kind:   ErrUnavailable,
		detail: fmt.Sprintf("after %d attempt(s): %s", attempts, summarize(last)),
		cause:  last,
	}
}

// ceilSeconds rounds d up to whole seconds, at least one: Retry-After
// headers carry whole seconds and must never promise less than was asked.
func ceilSeconds(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// classify maps a non-retryable HTTP answer to a sentinel.
func (k *Key) classify(op string, re *azcore.ResponseError, err error) error {
	var kind, also error
	switch {
	case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
		kind = ErrForbidden
		if IsForbiddenByFirewall(re) {
			also = ErrFirewall
		}
	case re.StatusCode == http.StatusNotFound && op != "get":
		// The version was there when New loaded it: it has been deleted since (soft delete keeps it recoverable
		// for 90 days) or its vault moved. Until an operator recovers it, the caller is in a dependency outage, as
		// with a key disabled meanwhile (403): not a request of the client's that was wrong.
		return &opError{op: op, key: k.ref(), kind: ErrUnavailable, detail: "the key version is no longer in the " +
			"vault (deleted since it was loaded? `az keyvault key recover` brings it back): " + summarize(err), cause: err}
	case re.StatusCode == http.StatusNotFound:
		kind = ErrNotFound
	default:
		kind = ErrRejected
	}
	return &opError{op: op, key: k.ref(), kind: kind, also: also, detail: summarize(err), cause: err}
}

// IsForbiddenByFirewall reports whether re is Key Vault's network rules refusing the caller's address: 403 with the
// inner code ForbiddenByFirewall, where a missing role or access policy answers ForbiddenByRbac or AccessDenied.
func IsForbiddenByFirewall(re *azcore.ResponseError) bool {
	return re.StatusCode == http.StatusForbidden && serviceErrorOf(re).Error.InnerError.Code == "ForbiddenByFirewall"
}

// backoff is the exponential wait before retry number attempt (1-based) when
// the server gave no Retry-After: BaseBackoff·2^(attempt-1), capped at
// MaxBackoff, with "equal jitter" (half fixed, half random) so that many
// instances throttled together do not retry in lockstep.
func (k *Key) backoff(attempt int) time.Duration {
	return ctxtime.Backoff(k.opts.BaseBackoff, k.opts.MaxBackoff, attempt-1)
}

// summarize renders an error in one line. azcore's ResponseError message is a
// multi-line dump of the whole response; we keep status, Key Vault error code,
// inner code and message only (none of which carry secrets). The inner code is
// what tells a 403 of the firewall (ForbiddenByFirewall) from one of a missing
// role (ForbiddenByRbac) or a disabled key (KeyDisabled): different fixes.
func summarize(err error) string {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return err.Error()
	}
	msg := fmt.Sprintf("HTTP %d", re.StatusCode)
	if re.ErrorCode != "" {
		msg += " " + re.ErrorCode
	}
	se := serviceErrorOf(re)
	if c := se.Error.InnerError.Code; c != "" {
		msg += " (" + c + ")"
	}
	// Key Vault's messages put each fact on a line of its own ("Client address: …\r\nCaller: …").
	if m := strings.Join(strings.Fields(strings.ReplaceAll(se.Error.Message, "\r\n", "; ")), " "); m != "" {
		if len(m) > 200 {
			m = m[:200] + "…"
		}
		msg += ": " + m
	}
	return msg
}

// serviceError is Key Vault's error answer: {"error":{"code","message","innererror":{"code"}}}.
type serviceError struct {
	Error struct {
		Message    string `json:"message"`
		InnerError struct {
			Code string `json:"code"`
		} `json:"innererror"`
	} `json:"error"`
}

// serviceErrorOf reads the error answer behind re (azcore keeps its body); the zero value when there is none.
func serviceErrorOf(re *azcore.ResponseError) serviceError {
	var se serviceError
	if re.RawResponse != nil {
		if body, err := runtime.Payload(re.RawResponse); err == nil {
			_ = json.Unmarshal(body, &se)
		}
	}
	return se
}

// IsDeletedButRecoverable reports whether Key Vault refused to create an object because a soft-deleted one holds
// its name (409, inner code ObjectIsDeletedButRecoverable) until it is recovered or purged. Other conflicts are not:
// an object being recovered right now (ObjectIsBeingRecovered) or a concurrent operation on the name is over by
// the next attempt.
func IsDeletedButRecoverable(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusConflict &&
		serviceErrorOf(re).Error.InnerError.Code == "ObjectIsDeletedButRecoverable"
}

// retryAfterOf is the delay a failed answer asks for (0 without an answer).
func retryAfterOf(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	return transport.RetryAfter(resp.Header, time.Now())
}
