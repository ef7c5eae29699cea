package csrapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/testca"
)

// TestSIDInAnyURIRefusedAtTheAPI: the api profile (uri=*, no identity_uris) lets a CSR.Request.Db caller name URIs,
// never an account's SID: not in Intune's tag:microsoft.com,2022-09-14:sid: form, and not in a form a mapper that
// looks for a SID wherever it is would read as well (a path, a query, a tag:microsoft.com URI written another way).
// Each is refused with 400 subject_alt_name_not_allowed and a detail that names the SID; before, every form but the
// tag:microsoft.com,… one was issued as an ordinary URI. A user's own UPN certificate beside an ordinary URI is not
// affected.
func TestSIDInAnyURIRefusedAtTheAPI(t *testing.T) {
	e := newEnv(t)
	const sid = "S-1-5-21-1004336348-1177238915-682003330-500"
	for _, raw := range []string{
		"tag:microsoft.com,2022-09-14:sid:" + sid,
		"tag://microsoft.com,2022-09-14/sid/" + sid,
		"tag:microsoft.com:sid:" + sid,
		"https://dc.corp.example/sid/" + sid,
		"https://dc.corp.example/map?sid=" + sid,
		"urn:sid:" + sid,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		r := e.post(e.appToken(), csrDER(t, ecKey(t, "sid"), testca.CSROptions{Subject: cn("svc-7"), URIs: []*url.URL{u}}))
		if p := wantProblem(t, r, http.StatusBadRequest, string(policy.CodeSAN)); !strings.Contains(p.Detail, "SID") {
			t.Errorf("%s: detail %q does not name the SID", raw, p.Detail)
		}
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("%d records after refused requests, want 0", n)
	}
	u, _ := url.Parse("https://dc.corp.example/devices/svc-7")
	e.wantCert(e.post(e.appToken(), csrDER(t, ecKey(t, "sid"), testca.CSROptions{Subject: cn("svc-7"), URIs: []*url.URL{u}})))
}
