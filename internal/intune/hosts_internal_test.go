package intune

import "testing"

// TestIntuneHost: where the Intune token may go, for the resources operators set (commercial, US Government,
// Microsoft's dogfood) and the scale-unit hosts discovery names in each; look-alike domains and a resource without
// its "api." label do not widen it.
func TestIntuneHost(t *testing.T) {
	for _, tc := range []struct {
		resource, graph, host string
		want                  bool
	}{
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "fef.msub01.manage.microsoft.com", true},
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "FEF.MSUB01.Manage.Microsoft.COM.", true},
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "manage.microsoft.com", true},
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "graph.microsoft.com", true},
		{"https://api.manage.microsoft.us/", "https://graph.microsoft.us/", "fef.msua01.manage.microsoft.us", true},
		{"https://api.manage-dogfood.microsoft.com/", "https://graph.microsoft.com/", "fef.dmsua01.manage-dogfood.microsoft.com", true},
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "evilmanage.microsoft.com", false},
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "fef.msub01.manage.microsoft.com.example.net", false},
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "login.microsoftonline.com", false},
		{"https://api.manage.microsoft.us/", "https://graph.microsoft.us/", "fef.msub01.manage.microsoft.com", false},
		{"https://manage.microsoft.com/", "https://graph.microsoft.com/", "evilmanage.microsoft.com", false},
		{"https://manage.microsoft.com/", "https://graph.microsoft.com/", "outlook.microsoft.com", false},
		{"https://manage.microsoft.com/", "https://graph.microsoft.com/", "fef.msub01.manage.microsoft.com", true},
		{"https://api.manage.microsoft.com/", "https://graph.microsoft.com/", "", false},
	} {
		c := &Client{serviceDomain: serviceDomain(tc.resource), graphHost: hostOf(tc.graph)}
		if got := c.intuneHost(tc.host); got != tc.want {
			t.Errorf("resource %s: intuneHost(%q) = %v, want %v (domain %q)", tc.resource, tc.host, got, tc.want, c.serviceDomain)
		}
	}
}
