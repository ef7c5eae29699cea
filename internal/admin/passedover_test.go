package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

// TestPassedOverList: GET /api/certificates/passed-over lists the certificates the Entra sweeps passed over (the
// list the sweeps keep in the meta document entra-passed-over), the longest listed first, to a reader and a manager
// alike; a caller without a token gets 401, one without an admin role 403, another method 405, and a store that
// cannot read the list 503, each as problem+json, never an empty list.
func TestPassedOverList(t *testing.T) {
	e := newEnv(t, nil)
	const path = "/api/certificates/passed-over"
	since := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	doc := map[string]any{"records": []map[string]any{
		{"serial": "0b", "scan": "owners", "reason": 3, "by": "entra-owner", "ref": "x", "since": since.Add(time.Hour),
			"next": since.Add(5 * time.Hour)},
		{"serial": "0a", "scan": "pass", "since": since, "failed": 2, "next": since.Add(26 * time.Hour)},
	}}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.do(t, http.MethodGet, path, e.admin, "")
	if resp.StatusCode != http.StatusOK || string(body) != "{\"items\":[]}\n" {
		t.Fatalf("with no list: %d %s; want 200 and no items", resp.StatusCode, body)
	}
	if _, err := e.st.PutMeta(context.Background(), "entra-passed-over", raw, ""); err != nil {
		t.Fatal(err)
	}
	want := []admin.PassedOverView{
		{Serial: "0a", Scan: "pass", Since: since, Failed: 2, Next: since.Add(26 * time.Hour)},
		{Serial: "0b", Scan: "owners", Since: since.Add(time.Hour), Next: since.Add(5 * time.Hour)},
	}
	const bobOID, bobUPN = "66666666-7777-8888-9999-000000000000", "bob@contoso.example"
	reader := e.fake.MintUser(bobOID, bobUPN, []string{entra.RoleCertificatesRead})
	for name, tok := range map[string]string{"manager": e.admin, "reader": reader,
		"reader app": e.fake.MintApp([]string{entra.RoleCertificatesRead})} {
		resp, body := e.do(t, http.MethodGet, path, tok, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
		var got struct {
			Items []admin.PassedOverView `json:"items"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Items) != len(want) {
			t.Fatalf("%s: %+v, want %+v", name, got.Items, want)
		}
		for i := range want {
			g, w := got.Items[i], want[i]
			if g.Serial != w.Serial || g.Scan != w.Scan || !g.Since.Equal(w.Since) || g.Failed != w.Failed ||
				!g.Next.Equal(w.Next) {
				t.Errorf("%s: item %d is %+v, want %+v", name, i, g, w)
			}
		}
	}

	requester := e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCSRRequestDb})
	resp, body = e.do(t, http.MethodGet, path, requester, "")
	wantProblem(t, resp, body, http.StatusForbidden, entra.CodeInsufficientScope)
	resp, body = e.do(t, http.MethodGet, path, "", "")
	wantProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
	resp, body = e.do(t, http.MethodPost, path, e.admin, "")
	wantProblem(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")
	resp, body = e.do(t, http.MethodPost, path, reader, "")
	wantProblem(t, resp, body, http.StatusForbidden, admin.CodeManageRequired)

	e.faults.FailMethod(storetest.MethodGetMeta, store.ErrUnavailable)
	resp, body = e.do(t, http.MethodGet, path, e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
}
