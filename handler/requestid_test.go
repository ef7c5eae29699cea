package main

import (
	"crypto/x509/pkix"
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/testca"
)

// TestDetailLinesCarryTheRequestID: the lines a request writes beyond its access line (the SCEP outcome with its
// refusal reason, the issued certificate, an /api/csr refusal) carry the request ID the client got in X-Request-Id, so that an operator
// handed that ID finds why a request failed (reliability.md §4: a generic answer, the detail and the ID in the logs).
func TestDetailLinesCarryTheRequestID(t *testing.T) {
	s := startNames(t)
	issued := s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "printer-7"}, DNSNames: []string{"printer-7.example.net"}})
	issued.mustSucceed(t, s.ra)
	refused := s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "printer-8"}, Emails: []string{"ceo@example.net"}})
	refused.mustFail(t, s.ra, testca.FailBadRequest)

	// And /api/csr: a self-service user asking for another user's name.
	tok := s.entra.MintUser(entrafake.NewGUID(), "alice@contoso.example", selfServiceRole)
	status, _, h := s.apiCall(t, tok, testca.CSROptions{UPNs: []string{"bob@contoso.example"}})
	if status != http.StatusForbidden {
		t.Fatalf("/api/csr for another user's UPN: %d, want 403", status)
	}
	ids := map[string]string{"issued": issued.resp.Header.Get("X-Request-Id"),
		"refused": refused.resp.Header.Get("X-Request-Id"), "csr": h.Get("X-Request-Id")}
	for name, id := range ids {
		if id == "" {
			t.Fatalf("%s: no X-Request-Id", name)
		}
		msgs := map[string]bool{}
		for _, l := range s.logLines(t) {
			if l["request_id"] == id {
				msgs[l["msg"].(string)] = true
			}
		}
		want := map[string][]string{"issued": {"request", "scep pkioperation", "certificate issued"},
			"refused": {"request", "scep pkioperation"}, "csr": {"request", "csr refused"}}[name]
		for _, m := range want {
			if !msgs[m] {
				t.Errorf("%s: no %q line with the request's ID %s (lines with it: %v)", name, m, id, msgs)
			}
		}
	}
}
