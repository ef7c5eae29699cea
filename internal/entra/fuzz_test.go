package entra_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// FuzzVerify drives the Authorization-header and JWT parsing path. Properties:
// no panic; every rejection is a 401 *AuthError with a header-safe challenge;
// and nothing verifies except the one genuinely signed token (any mutation of
// a signed token must fail).
func FuzzVerify(f *testing.F) {
	clock := newFakeClock()
	fake := entrafake.New(f, entrafake.WithClock(clock.Now))
	v, err := entra.NewVerifier(entra.Config{
		TenantID:      fake.TenantID,
		Audiences:     []string{fake.ClientID, fake.AppIDURI},
		AuthorityHost: fake.Authority(),
		HTTPClient:    fake.Client(),
		Clock:         clock.Now,
	})
	if err != nil {
		f.Fatal(err)
	}
	valid := fake.MintUser(entrafake.NewGUID(), "fuzz@contoso.example", []string{entra.RoleCSRSelfService})
	oid := entrafake.NewGUID()
	for _, s := range []string{
		"Bearer " + valid,
		"bearer  " + valid,
		valid,
		"",
		"Bearer",
		"Bearer ",
		"Basic dXNlcjpwYXNz",
		"Bearer a.b.c",
		"Bearer ..",
		"Bearer " + valid + "." + valid,
		"Bearer " + valid[:len(valid)/2],
		"Bearer " + valid + "A",
		"Bearer " + fake.MintUser(oid, "u@contoso.example", nil, entrafake.AlgNone()),
		"Bearer " + fake.MintUser(oid, "u@contoso.example", nil, entrafake.HS256WithPublicKey()),
		"Bearer " + fake.MintUser(oid, "u@contoso.example", nil, entrafake.Expired()),
		"Bearer " + fake.MintUser(oid, "u@contoso.example", nil, entrafake.UnknownKID()),
		"Bearer " + fake.MintUser(oid, "u@contoso.example", nil, entrafake.V1(), entrafake.FromTenant(entrafake.NewGUID())),
		"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6W119.e30.AAAA",
		"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJleHAiOiJzb29uIn0.AAAA",
		"Bearer " + strings.Repeat("A", 20000),
	} {
		f.Add(s, false)
	}
	f.Add("Bearer "+valid, true)

	f.Fuzz(func(t *testing.T, header string, twice bool) {
		values := []string{header}
		if twice {
			values = append(values, header)
		}
		c, err := v.Verify(context.Background(), values)
		if err == nil {
			fields := strings.Fields(header)
			if twice || len(fields) != 2 || fields[1] != valid {
				t.Fatalf("accepted %q (twice=%v) as %+v", header, twice, c)
			}
			return
		}
		if c != nil {
			t.Fatal("caller returned with an error")
		}
		var ae *entra.AuthError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Fatalf("rejection is not a 401 AuthError: %v", err)
		}
		for _, r := range ae.WWWAuthenticate() {
			if r < 0x20 || r > 0x7e {
				t.Fatalf("challenge contains %q", r)
			}
		}
	})
}
