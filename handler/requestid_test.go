package main

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/testca"
)

// TestDetailLinesCarryTheRequestID: the lines a request writes beyond its access line (the SCEP outcome with its
// refusal reason, the issued certificate) carry the request ID the client got in X-Request-Id, so that an operator
// handed that ID finds why a request failed (reliability.md §4: a generic answer, the detail and the ID in the logs).
func TestDetailLinesCarryTheRequestID(t *testing.T) {
	s := startNames(t)
	issued := s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "printer-7"}, DNSNames: []string{"printer-7.example.net"}})
	issued.mustSucceed(t, s.ra)
	refused := s.static(t, testca.CSROptions{Subject: pkix.Name{CommonName: "printer-8"}, Emails: []string{"ceo@example.net"}})
	refused.mustFail(t, s.ra, testca.FailBadRequest)

	for name, x := range map[string]*exchange{"issued": issued, "refused": refused} {
		id := x.resp.Header.Get("X-Request-Id")
		if id == "" {
			t.Fatalf("%s: no X-Request-Id", name)
		}
		msgs := map[string]bool{}
		for _, l := range s.logLines(t) {
			if l["request_id"] == id {
				msgs[l["msg"].(string)] = true
			}
		}
		want := []string{"request", "scep pkioperation"}
		if name == "issued" {
			want = append(want, "certificate issued")
		}
		for _, m := range want {
			if !msgs[m] {
				t.Errorf("%s: no %q line with the request's ID %s (lines with it: %v)", name, m, id, msgs)
			}
		}
	}
}
