package entrafake_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestDeltaProtocol: the users and devices delta routes want the bearer token, refuse a $select of a property they
// do not model and options beside a link's token, answer only the selected properties, and answer a link made before
// ExpireDeltaLinks 410 resyncRequired.
func TestDeltaProtocol(t *testing.T) {
	g := entrafake.NewGraph(t)
	g.PutUser(entrafake.User{ID: entrafake.NewGUID(), UPN: "a@contoso.example", Enabled: true})
	g.AddDevice(entrafake.NewGUID())
	for _, set := range []string{"users", "devices"} {
		path := "/v1.0/" + set + "/delta"
		if st, m := graphGET(t, g, "", path); st != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d %v", set, st, m)
		}
		if st, m := graphGET(t, g, g.Token, path+"?$select=id,mail"); st != http.StatusBadRequest {
			t.Errorf("%s with an unmodelled $select: %d %v", set, st, m)
		}
		st, m := graphGET(t, g, g.Token, path+"?$select=id,accountEnabled")
		value, _ := m["value"].([]any)
		if st != http.StatusOK || len(value) != 1 {
			t.Fatalf("%s enumeration: %d %v", set, st, m)
		}
		if item := value[0].(map[string]any); len(item) != 2 || item["accountEnabled"] != true {
			t.Errorf("%s entry %v, want only id and accountEnabled", set, item)
		}
		link, _ := m["@odata.deltaLink"].(string)
		u, err := url.Parse(link)
		if err != nil || !strings.HasSuffix(u.Path, path) || !u.Query().Has("$deltatoken") {
			t.Fatalf("%s delta link %q", set, link)
		}
		if st, m := graphGET(t, g, g.Token, u.RequestURI()+"&$select=id"); st != http.StatusBadRequest {
			t.Errorf("%s link with another option: %d %v", set, st, m)
		}
		g.ExpireDeltaLinks()
		if st, m := graphGET(t, g, g.Token, u.RequestURI()); st != http.StatusGone || errorCode(m) != "resyncRequired" {
			t.Errorf("%s expired link: %d %v", set, st, m)
		}
	}
}
