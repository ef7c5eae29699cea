package httpx_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/httpx"
)

// TestAccountProblem: each reason the account re-read gives is answered the same way at every door; anything else
// is not this function's to answer.
func TestAccountProblem(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", entra.ErrAccountDisabled), http.StatusForbidden, httpx.CodeAccountDisabled},
		{entra.ErrAccountGone, http.StatusForbidden, httpx.CodeAccountDisabled},
		{entra.ErrSessionsRevoked, http.StatusUnauthorized, httpx.CodeSessionsRevoked},
		{entra.ErrRoleRemoved, http.StatusForbidden, httpx.CodeRoleRemoved},
		{entra.ErrGuestAccount, http.StatusForbidden, httpx.CodeGuest},
		{fmt.Errorf("%w: %w", entra.ErrUnavailable, entra.ErrWrongTenant), http.StatusServiceUnavailable, "unavailable"},
	} {
		p := httpx.AccountProblem(tc.err)
		if p == nil || p.Status != tc.status || p.Code != tc.code {
			t.Errorf("AccountProblem(%v) = %+v, want %d %s", tc.err, p, tc.status, tc.code)
			continue
		}
		if tc.status == http.StatusUnauthorized && !strings.Contains(strings.Join(p.Header["WWW-Authenticate"], " "), `error="invalid_token"`) {
			t.Errorf("401 without an invalid_token challenge: %v", p.Header)
		}
		if tc.status == http.StatusServiceUnavailable && p.RetryAfter == 0 {
			t.Error("503 without Retry-After")
		}
	}
	if p := httpx.AccountProblem(errors.New("something else")); p != nil {
		t.Errorf("AccountProblem(other) = %+v, want nil", p)
	}
}
