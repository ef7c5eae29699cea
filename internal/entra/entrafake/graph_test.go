package entrafake_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra/entrafake"
)

// graphGET sends an authenticated (unless tok is "") GET to the Graph fake and decodes the JSON answer.
func graphGET(t *testing.T, g *entrafake.Graph, tok, pathAndQuery string, header ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(g.URL(), "/")+pathAndQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := g.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", pathAndQuery, err)
	}
	return resp.StatusCode, m
}

func errorCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// TestGraphDeviceState: a device's accountEnabled is served by either key, true by default and false once disabled;
// registered owners survive disabling; $select is honoured.
func TestGraphDeviceState(t *testing.T) {
	g := entrafake.NewGraph(t)
	dev, owner := entrafake.NewGUID(), entrafake.NewGUID()
	obj := g.AddDevice(dev, owner)

	code, m := graphGET(t, g, g.Token, "/v1.0/devices(deviceId='"+dev+"')?$select=id,accountEnabled")
	if code != http.StatusOK || m["id"] != obj || m["accountEnabled"] != true || len(m) != 3 ||
		!strings.HasSuffix(m["@odata.context"].(string), "/v1.0/$metadata#devices(id,accountEnabled)/$entity") {
		t.Fatalf("enabled device = %d %v", code, m)
	}
	g.SetAccountEnabled(strings.ToUpper(dev), false)
	for _, path := range []string{"/v1.0/devices(deviceId='" + strings.ToUpper(dev) + "')", "/v1.0/devices/" + obj} {
		code, m = graphGET(t, g, g.Token, path)
		if code != http.StatusOK || m["id"] != obj || m["deviceId"] != dev || m["accountEnabled"] != false {
			t.Fatalf("GET %s after disabling = %d %v", path, code, m)
		}
	}
	code, m = graphGET(t, g, g.Token, "/v1.0/devices?$filter=deviceId%20eq%20'"+dev+"'")
	if v, _ := m["value"].([]any); code != http.StatusOK || len(v) != 1 || v[0].(map[string]any)["accountEnabled"] != false {
		t.Fatalf("$filter after disabling = %d %v", code, m)
	}
	code, m = graphGET(t, g, g.Token, "/v1.0/devices(deviceId='"+dev+"')/registeredOwners?$select=id")
	if v, _ := m["value"].([]any); code != http.StatusOK || len(v) != 1 || v[0].(map[string]any)["id"] != owner {
		t.Fatalf("a disabled device's owners = %d %v", code, m)
	}
	code, m = graphGET(t, g, g.Token, "/v1.0/devices(deviceId='"+dev+"')?$select=accountEnabled")
	if code != http.StatusOK || len(m) != 2 || m["accountEnabled"] != false {
		t.Fatalf("$select=accountEnabled = %d %v", code, m)
	}
}

// TestGraphStrictQueries: what the fake does not model is an error, not a silently wrong answer.
func TestGraphStrictQueries(t *testing.T) {
	g := entrafake.NewGraph(t)
	dev, intune := entrafake.NewGUID(), entrafake.NewGUID()
	g.AddDevice(dev, entrafake.NewGUID())
	g.AddManagedDevice(entrafake.ManagedDevice{ID: intune, UserID: entrafake.NewGUID(), AzureADDeviceID: dev})
	alt := "/v1.0/devices(deviceId='" + dev + "')"
	for _, tc := range []struct {
		tok, path string
		status    int
		code      string
	}{
		{"", alt + "?$select=id,accountEnabled", http.StatusUnauthorized, "InvalidAuthenticationToken"},
		{"stolen", alt, http.StatusUnauthorized, "InvalidAuthenticationToken"},
		{g.Token, alt + "?$select=id,isEnabled", http.StatusBadRequest, "Request_BadRequest"},
		{g.Token, alt + "?$select=", http.StatusBadRequest, "Request_BadRequest"},
		{g.Token, alt + "?$select=id&$select=accountEnabled", http.StatusBadRequest, "Request_BadRequest"},
		{g.Token, alt + "?$select=id,accountEnabled&$expand=registeredOwners", http.StatusBadRequest, "Request_UnsupportedQuery"},
		{g.Token, alt + "/registeredOwners?$select=displayName", http.StatusBadRequest, "Request_BadRequest"},
		{g.Token, alt + "/registeredOwners?$top=1", http.StatusBadRequest, "Request_UnsupportedQuery"},
		{g.Token, "/v1.0/deviceManagement/managedDevices/" + intune + "?$select=id,complianceState", http.StatusBadRequest, "Request_BadRequest"},
		{g.Token, "/v1.0/devices(deviceId='" + entrafake.NewGUID() + "')?$select=id,accountEnabled", http.StatusNotFound, "Request_ResourceNotFound"},
		{g.Token, "/v1.0/devices(id='" + dev + "')", http.StatusBadRequest, "BadRequest"},
	} {
		code, m := graphGET(t, g, tc.tok, tc.path)
		if code != tc.status || errorCode(m) != tc.code {
			t.Errorf("GET %s = %d %v, want %d %s", tc.path, code, m, tc.status, tc.code)
		}
	}
	// $select on a managed device is honoured.
	code, m := graphGET(t, g, g.Token, "/v1.0/deviceManagement/managedDevices/"+intune+"?$select=id,azureADDeviceId")
	if _, hasUser := m["userId"]; code != http.StatusOK || hasUser || m["azureADDeviceId"] != dev {
		t.Fatalf("managed device with $select = %d %v", code, m)
	}
}

// TestGraphFaultAfter: Fault.After lets the first requests through, then fails the rest until cleared.
func TestGraphFaultAfter(t *testing.T) {
	g := entrafake.NewGraph(t)
	dev := entrafake.NewGUID()
	g.AddDevice(dev)
	path := "/v1.0/devices(deviceId='" + dev + "')"
	g.SetFault(entrafake.Fault{Status: http.StatusServiceUnavailable, After: 2})
	for i, want := range []int{200, 200, 503, 503} {
		if code, _ := graphGET(t, g, g.Token, path); code != want {
			t.Fatalf("request %d = %d, want %d", i+1, code, want)
		}
	}
	g.SetFault(entrafake.Fault{})
	if code, _ := graphGET(t, g, g.Token, path); code != http.StatusOK {
		t.Fatalf("after clearing = %d", code)
	}
	// A fault for one path counts and fails only requests for it.
	other := entrafake.NewGUID()
	g.AddDevice(other)
	otherPath := "/v1.0/devices(deviceId='" + other + "')"
	g.SetFault(entrafake.Fault{Status: http.StatusServiceUnavailable, After: 1, Path: otherPath})
	for i, step := range []struct {
		path string
		want int
	}{{path, 200}, {otherPath, 200}, {path, 200}, {otherPath, 503}, {path, 200}} {
		if code, _ := graphGET(t, g, g.Token, step.path); code != step.want {
			t.Fatalf("path fault, request %d = %d, want %d", i+1, code, step.want)
		}
	}
}

// TestGraphUsers: a user's accountEnabled, userType and signInSessionsValidFromDateTime come back only when
// selected, as in Graph; unknown users are Graph's 404; a tenant linked with WithGraph creates the users it mints
// tokens for and leaves existing ones alone.
func TestGraphUsers(t *testing.T) {
	g := entrafake.NewGraph(t)
	tenant := entrafake.New(t, entrafake.WithGraph(g))
	oid := entrafake.NewGUID()
	tenant.MintUser(oid, "alice@contoso.test", nil)
	guest := entrafake.NewGUID()
	tenant.MintUser(guest, "bob_fabrikam.test#EXT#@contoso.test", nil)

	code, m := graphGET(t, g, g.Token, "/v1.0/users/"+oid)
	if _, has := m["accountEnabled"]; code != http.StatusOK || has || m["userPrincipalName"] != "alice@contoso.test" ||
		!strings.HasSuffix(m["@odata.context"].(string), "/v1.0/$metadata#users/$entity") {
		t.Fatalf("GET user without $select = %d %v", code, m)
	}
	const sel = "?$select=id,accountEnabled,userPrincipalName,userType,signInSessionsValidFromDateTime"
	code, m = graphGET(t, g, g.Token, "/v1.0/users/"+strings.ToUpper(oid)+sel)
	if code != http.StatusOK || m["id"] != oid || m["accountEnabled"] != true || m["userType"] != "Member" ||
		m["signInSessionsValidFromDateTime"] == nil || len(m) != 6 {
		t.Fatalf("GET user with $select = %d %v", code, m)
	}
	if _, m = graphGET(t, g, g.Token, "/v1.0/users/"+guest+"?$select=userType"); m["userType"] != "Guest" {
		t.Fatalf("a guest's token made user %v", m)
	}
	g.UpdateUser(oid, func(u *entrafake.User) { u.Enabled = false })
	tenant.MintUser(oid, "alice@contoso.test", nil)
	if _, m = graphGET(t, g, g.Token, "/v1.0/users/"+oid+"?$select=accountEnabled"); m["accountEnabled"] != false {
		t.Fatalf("minting a token re-enabled the user: %v", m)
	}
	g.DeleteUser(oid)
	if code, m = graphGET(t, g, g.Token, "/v1.0/users/"+oid+sel); code != http.StatusNotFound || errorCode(m) != "Request_ResourceNotFound" {
		t.Fatalf("deleted user = %d %v", code, m)
	}
	if code, m = graphGET(t, g, g.Token, "/v1.0/users/"+guest+"?$select=id,mail"); code != http.StatusBadRequest {
		t.Fatalf("$select of an unmodelled property = %d %v", code, m)
	}
}

// TestGraphServicePrincipals: a tenant linked with WithGraph creates the service principal of the apps it mints
// tokens for; accountEnabled follows PutServicePrincipal; unknown ones are Graph's 404.
func TestGraphServicePrincipals(t *testing.T) {
	g := entrafake.NewGraph(t)
	tenant := entrafake.New(t, entrafake.WithGraph(g))
	tenant.MintApp(nil)
	code, m := graphGET(t, g, g.Token, "/v1.0/servicePrincipals/"+tenant.AppObjectID+"?$select=id,accountEnabled")
	if code != http.StatusOK || m["id"] != tenant.AppObjectID || m["accountEnabled"] != true || len(m) != 3 {
		t.Fatalf("minted app's service principal = %d %v", code, m)
	}
	g.PutServicePrincipal(tenant.AppObjectID, false)
	tenant.MintApp(nil)
	if _, m = graphGET(t, g, g.Token, "/v1.0/servicePrincipals/"+tenant.AppObjectID); m["accountEnabled"] != false {
		t.Fatalf("minting a token re-enabled the application: %v", m)
	}
	if code, m = graphGET(t, g, g.Token, "/v1.0/servicePrincipals/"+entrafake.NewGUID()); code != http.StatusNotFound || errorCode(m) != "Request_ResourceNotFound" {
		t.Fatalf("unknown service principal = %d %v", code, m)
	}
}

// TestGraphAppRoleAssignments: the API's service principal by appId carries its app roles; an application's
// appRoleAssignments list the API roles assigned to it (and one to another resource); a tenant linked with
// WithGraph assigns the roles of the app-only tokens it mints, except those RemoveAppRole took away.
func TestGraphAppRoleAssignments(t *testing.T) {
	g := entrafake.NewGraph(t)
	tenant := entrafake.New(t, entrafake.WithGraph(g))
	tenant.MintApp([]string{"CSR.Request.Db"})
	code, api := graphGET(t, g, g.Token, "/v1.0/servicePrincipals(appId='"+tenant.ClientID+"')?$select=id,appRoles")
	roles, _ := api["appRoles"].([]any)
	if code != http.StatusOK || len(roles) != 4 {
		t.Fatalf("API service principal = %d %v", code, api)
	}
	roleID := map[string]string{}
	for _, r := range roles {
		m := r.(map[string]any)
		roleID[m["value"].(string)] = m["id"].(string)
	}
	assigned := func() []string {
		t.Helper()
		code, m := graphGET(t, g, g.Token, "/v1.0/servicePrincipals/"+tenant.AppObjectID+"/appRoleAssignments?$select=resourceId,appRoleId")
		if code != http.StatusOK {
			t.Fatalf("appRoleAssignments = %d %v", code, m)
		}
		var out []string
		for _, a := range m["value"].([]any) {
			a := a.(map[string]any)
			if a["resourceId"] != api["id"] {
				continue
			}
			for v, id := range roleID {
				if id == a["appRoleId"] {
					out = append(out, v)
				}
			}
		}
		return out
	}
	if got := assigned(); len(got) != 1 || got[0] != "CSR.Request.Db" {
		t.Fatalf("assigned = %v", got)
	}
	g.RemoveAppRole(tenant.AppObjectID, "CSR.Request.Db")
	tenant.MintApp([]string{"CSR.Request.Db", "Certificates.Manage"})
	if got := assigned(); len(got) != 1 || got[0] != "Certificates.Manage" {
		t.Fatalf("after RemoveAppRole and a new token: assigned = %v", got)
	}
	if code, _ := graphGET(t, g, g.Token, "/v1.0/servicePrincipals(appId='"+entrafake.NewGUID()+"')"); code != http.StatusNotFound {
		t.Fatalf("unknown appId = %d", code)
	}
}

// TestGraphUserAppRoleAssignments: a user's appRoleAssignments list the roles assigned to the user, and, only as an
// advanced query ($count=true with ConsistencyLevel: eventual, which $count needs), those assigned to the groups the
// user is a direct member of; a minted user token assigns its roles unless RemoveAppRole took them away.
func TestGraphUserAppRoleAssignments(t *testing.T) {
	g := entrafake.NewGraph(t)
	tenant := entrafake.New(t, entrafake.WithGraph(g))
	user, group := entrafake.NewGUID(), entrafake.NewGUID()
	tenant.MintUser(user, "a@contoso.test", []string{"Certificates.Read"})
	g.AssignAppRole(group, "Certificates.Manage")
	g.AddGroupMember(group, user)
	path := "/v1.0/users/" + user + "/appRoleAssignments?$select=resourceId,appRoleId,principalType"
	count := func(m map[string]any) (user, group int) {
		for _, a := range m["value"].([]any) {
			switch a.(map[string]any)["principalType"] {
			case "User":
				user++
			case "Group":
				group++
			}
		}
		return user, group
	}
	code, m := graphGET(t, g, g.Token, path+"&$count=true", "ConsistencyLevel", "eventual")
	if u, gr := count(m); code != http.StatusOK || u != 2 || gr != 1 || m["@odata.count"] != float64(3) {
		t.Fatalf("advanced query = %d %v", code, m)
	}
	code, m = graphGET(t, g, g.Token, path)
	if u, gr := count(m); code != http.StatusOK || u != 2 || gr != 0 {
		t.Fatalf("plain query = %d %v; want the group's assignment left out", code, m)
	}
	if code, m = graphGET(t, g, g.Token, path+"&$count=true"); code != http.StatusBadRequest {
		t.Fatalf("$count without ConsistencyLevel = %d %v", code, m)
	}
	if code, m = graphGET(t, g, g.Token, path+"&$top=5", "ConsistencyLevel", "eventual"); code != http.StatusBadRequest {
		t.Fatalf("$top = %d %v", code, m)
	}
	if code, m = graphGET(t, g, g.Token, "/v1.0/users/"+entrafake.NewGUID()+"/appRoleAssignments"); code != http.StatusNotFound {
		t.Fatalf("unknown user = %d %v", code, m)
	}
	g.RemoveAppRole(user, "Certificates.Read")
	tenant.MintUser(user, "a@contoso.test", []string{"Certificates.Read"})
	if _, m = graphGET(t, g, g.Token, path); len(m["value"].([]any)) != 1 {
		t.Fatalf("after RemoveAppRole and a new token: %v; want only the foreign assignment", m)
	}
}

// TestGraphAssignmentFilter: $filter=resourceId eq <guid> keeps a list of appRoleAssignments to that resource, paged
// and counted after the filter; any other filter, a quoted GUID among them, is a 400, and so is every filter once
// RefuseAssignmentFilter is set.
func TestGraphAssignmentFilter(t *testing.T) {
	g := entrafake.NewGraph(t)
	tenant := entrafake.New(t, entrafake.WithGraph(g))
	user := entrafake.NewGUID()
	tenant.MintUser(user, "a@contoso.test", []string{"Certificates.Read", "Certificates.Manage"})
	g.AssignForeignRoles(user, 7)
	g.SetPageSize(1)
	_, api := graphGET(t, g, g.Token, "/v1.0/servicePrincipals(appId='"+tenant.ClientID+"')?$select=id")
	apiID := api["id"].(string)
	path := "/v1.0/users/" + user + "/appRoleAssignments?$select=resourceId&$count=true&$filter="
	code, m := graphGET(t, g, g.Token, path+"resourceId%20eq%20"+strings.ToUpper(apiID), "ConsistencyLevel", "eventual")
	if code != http.StatusOK || m["@odata.count"] != float64(2) || len(m["value"].([]any)) != 1 ||
		m["value"].([]any)[0].(map[string]any)["resourceId"] != apiID || m["@odata.nextLink"] == nil {
		t.Fatalf("filtered = %d %v", code, m)
	}
	if code, m = graphGET(t, g, g.Token, strings.Replace(path, "$filter=", "$filter=resourceId%20eq%20"+entrafake.NewGUID(), 1),
		"ConsistencyLevel", "eventual"); code != http.StatusOK || m["@odata.count"] != float64(0) {
		t.Fatalf("another resource = %d %v", code, m)
	}
	if code, _ = graphGET(t, g, g.Token, "/v1.0/users/"+user+"/appRoleAssignments?$select=resourceId"); code != http.StatusOK {
		t.Fatalf("unfiltered = %d", code)
	}
	for _, bad := range []string{"resourceId%20eq%20'" + apiID + "'", "appRoleId%20eq%20" + apiID, "resourceId%20ne%20" + apiID} {
		if code, m = graphGET(t, g, g.Token, path+bad, "ConsistencyLevel", "eventual"); code != http.StatusBadRequest || errorCode(m) != "Request_UnsupportedQuery" {
			t.Fatalf("$filter=%s = %d %v", bad, code, m)
		}
	}
	g.RefuseAssignmentFilter(true)
	if code, _ = graphGET(t, g, g.Token, "/v1.0/servicePrincipals/"+apiID+"/appRoleAssignments?$filter=resourceId%20eq%20"+apiID); code != http.StatusBadRequest {
		t.Fatalf("after RefuseAssignmentFilter = %d", code)
	}
}
