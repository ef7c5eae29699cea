package entra_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// newFakeClock is a settable clock shared by the verifier and the fake issuer.
func newFakeClock() *testca.Clock {
	return testca.NewClock(time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC))
}

type env struct {
	fake  *entrafake.Server
	clock *testca.Clock
	v     *entra.Verifier
	cfg   entra.Config
}

func newEnv(t *testing.T, mutate ...func(*entra.Config)) *env {
	t.Helper()
	clock := newFakeClock()
	fake := entrafake.New(t, entrafake.WithClock(clock.Now))
	cfg := entra.Config{
		TenantID:      fake.TenantID,
		Audiences:     []string{fake.ClientID, fake.AppIDURI},
		AuthorityHost: fake.Authority(),
		HTTPClient:    fake.Client(),
		Clock:         clock.Now,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	v, err := entra.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return &env{fake: fake, clock: clock, v: v, cfg: cfg}
}

func (e *env) verify(tok string) (*entra.Caller, error) {
	return e.v.Verify(context.Background(), []string{"Bearer " + tok})
}

// mustAuthError asserts err is a 401/403 *entra.AuthError with the code and
// returns it.
func mustAuthError(t *testing.T, err error, status int, code string) *entra.AuthError {
	t.Helper()
	var ae *entra.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v (%T), want *entra.AuthError", err, err)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("AuthError = {%d %q %q}, want {%d %q}", ae.Status, ae.Code, ae.Description, status, code)
	}
	if errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("AuthError must not wrap ErrUnavailable: %v", err)
	}
	return ae
}

func (e *env) mustVerify(t *testing.T, tok string) *entra.Caller {
	t.Helper()
	c, err := e.verify(tok)
	return mustCaller(t, c, err)
}

func mustCaller(t *testing.T, c *entra.Caller, err error) *entra.Caller {
	t.Helper()
	if err != nil {
		t.Fatalf("Verify: unexpected error: %v", err)
	}
	if c == nil {
		t.Fatal("Verify returned nil caller and nil error")
	}
	return c
}
