package entra_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/entra"
)

func TestRequireRole(t *testing.T) {
	c := &entra.Caller{ObjectID: "o", Roles: []string{entra.RoleCSRSelfService}}
	if err := entra.RequireRole(c, entra.RoleCSRRequestDb, entra.RoleCSRSelfService); err != nil {
		t.Fatalf("any-of role check failed: %v", err)
	}
	err := entra.RequireRole(c, entra.RoleCertificatesManage)
	ae := mustAuthError(t, err, http.StatusForbidden, entra.CodeInsufficientScope)
	if got := ae.WWWAuthenticate(); got != `Bearer error="insufficient_scope", error_description="caller lacks a required role"` {
		t.Fatalf("WWW-Authenticate = %q", got)
	}
	if err := entra.RequireRole(c); err == nil {
		t.Fatal("no roles listed must not mean allowed")
	}
	if err := entra.RequireRole(nil, entra.RoleCSRSelfService); err == nil {
		t.Fatal("nil caller allowed")
	} else {
		mustAuthError(t, err, http.StatusUnauthorized, "")
	}
	// Role names are exact.
	if c.HasRole("csr.selfservice") || (*entra.Caller)(nil).HasRole(entra.RoleCSRSelfService) {
		t.Fatal("HasRole must be exact and nil-safe")
	}
}

func TestAuthErrorRendering(t *testing.T) {
	ae := &entra.AuthError{Status: 401, Code: entra.CodeInvalidToken, Description: "bad \"quote\" \\ and\nnewline é"}
	if got, want := ae.WWWAuthenticate(), `Bearer error="invalid_token", error_description="bad quote  andnewline "`; got != want {
		t.Fatalf("WWW-Authenticate = %q, want %q", got, want)
	}
	if (&entra.AuthError{Status: 401}).WWWAuthenticate() != "Bearer" {
		t.Fatal("no-credentials challenge must carry no error code")
	}
	if errors.Unwrap(ae) != nil {
		t.Fatal("unexpected cause")
	}
}
