package main

import (
	"crypto/x509/pkix"
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/testca"
)

// TestStaticAndAPIDoorNamesDeviceIDFormCN: a CN in the ID:<product>:GUID:<id> form names an Entra or Intune device to
// the readers that take the device ID from the CN as from the SAN URIs, so the static SCEP door and /api/csr
// (CSR.Request.Db, built-in profiles) refuse it like a GUID CN, and a static profile that opts in with
// identity_uris=devicecn issues it.
func TestStaticAndAPIDoorNamesDeviceIDFormCN(t *testing.T) {
	o := testca.CSROptions{Subject: pkix.Name{CommonName: "ID:Intune:GUID:" + entrafake.NewGUID()}}
	s := startNames(t)
	t.Run("static", func(t *testing.T) { s.refused(t, s.static(t, o), policy.CodeSubject) })
	t.Run("api", func(t *testing.T) {
		tok := s.entra.MintUser(entrafake.NewGUID(), "alice@contoso.example", []string{entra.RoleCSRRequestDb})
		s.wantAPIProblem(t, tok, o, http.StatusBadRequest, string(policy.CodeSubject))
	})
	t.Run("static with devicecn", func(t *testing.T) {
		fleet := startNames(t, "AZSCEP_PROFILE_DEVICE=validity=90d;ku=digitalSignature;eku=clientAuth;identity_uris=devicecn")
		if cert := fleet.static(t, o).mustSucceed(t, fleet.ra); cert.Subject.CommonName != o.Subject.CommonName {
			t.Fatalf("CN %q", cert.Subject.CommonName)
		}
	})
}
