package entra

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// App roles defined on the API app registration (SPEC.md §4.5, README).
const (
	// RoleCSRRequestDb lets an app or user submit any CSR the API profile
	// allows.
	RoleCSRRequestDb = "CSR.Request.Db"
	// RoleCSRSelfService lets a user obtain clientAuth certificates bound to
	// themselves or to devices they own.
	RoleCSRSelfService = "CSR.SelfService"
	// RoleCertificatesManage grants the whole admin API: what Certificates.Read
	// grants, and every change (revoke, start the revocation sync).
	RoleCertificatesManage = "Certificates.Manage"
	// RoleCertificatesRead grants the admin API's reads only (search, details,
	// overview, sync runs), for auditors and help desks.
	RoleCertificatesRead = "Certificates.Read"
)

// RequireRole returns nil if the caller holds at least one of roles, else a
// 403 *AuthError with code insufficient_scope. A nil caller is a 401: the
// handler forgot to authenticate, which must not read as "allowed".
func RequireRole(caller *Caller, roles ...string) error {
	if caller == nil {
		return &AuthError{Status: http.StatusUnauthorized, Description: "bearer token required",
			err: errors.New("no authenticated caller")}
	}
	for _, r := range roles {
		if caller.HasRole(r) {
			return nil
		}
	}
	return forbidden("caller lacks a required role",
		fmt.Errorf("caller %s has none of the roles [%s]", caller.ObjectID, strings.Join(roles, ", ")))
}
