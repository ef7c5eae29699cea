package admin_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

func TestOverview(t *testing.T) {
	var calls int
	e := newEnv(t, func(c *admin.Config) {
		c.Now = func() time.Time { return time.Now() }
		c.Overview = func(context.Context) (*admin.Overview, error) {
			calls++
			return &admin.Overview{Mode: "local", URLs: map[string]string{}}, nil
		}
	})
	e.insert(t, store.Record{Subject: "CN=old-pending", Status: store.StatusPending, Created: time.Now().Add(-time.Hour)}, false)
	e.insert(t, store.Record{Subject: "CN=fresh-pending", Status: store.StatusPending, Created: time.Now()}, false)
	e.insert(t, store.Record{Subject: "CN=issued", Created: time.Now().Add(-time.Hour)}, true)

	resp, body := e.do(t, http.MethodGet, "/api/certificates/overview", e.admin, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("overview: %d %s", resp.StatusCode, body)
	}
	var ov admin.Overview
	if err := json.Unmarshal(body, &ov); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || ov.Mode != "local" || !ov.IntuneSync || ov.StalePendingMinutes != 30 {
		t.Errorf("overview = %+v (calls %d)", ov, calls)
	}
	if len(ov.StalePending) != 1 || ov.StalePending[0].Subject != "CN=old-pending" {
		t.Errorf("stale pending = %+v, want only the hour-old pending record", ov.StalePending)
	}

	// Only Certificates.Manage reads it; the route refuses other methods.
	requester := e.fake.MintUser(aliceOID, aliceUPN, []string{entra.RoleCSRRequestDb})
	resp, body = e.do(t, http.MethodGet, "/api/certificates/overview", requester, "")
	wantProblem(t, resp, body, http.StatusForbidden, entra.CodeInsufficientScope)
	resp, body = e.do(t, http.MethodGet, "/api/certificates/overview", "", "")
	wantProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
	resp, body = e.do(t, http.MethodPost, "/api/certificates/overview", e.admin, "")
	wantProblem(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")

	// A store outage is a 503, never a partial overview.
	e.faults.FailMethod("Pending", store.ErrUnavailable)
	resp, body = e.do(t, http.MethodGet, "/api/certificates/overview", e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
}

func TestOverviewNotConfigured(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.do(t, http.MethodGet, "/api/certificates/overview", e.admin, "")
	wantProblem(t, resp, body, http.StatusNotFound, "not_found")
	e = newEnv(t, func(c *admin.Config) {
		c.Overview = func(context.Context) (*admin.Overview, error) { return nil, errors.New("boom") }
	})
	resp, body = e.do(t, http.MethodGet, "/api/certificates/overview", e.admin, "")
	wantProblem(t, resp, body, http.StatusInternalServerError, "internal_error")
}

func TestSyncRuns(t *testing.T) {
	e := newEnv(t, nil)
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		if err := e.st.RecordRun(context.Background(), store.SyncRun{ID: string(rune('a' + i)), Started: start.Add(time.Duration(i) * time.Hour),
			Trigger: "timer", Revoked: i, Errors: []string{"e"}[:i%2]}); err != nil {
			t.Fatal(err)
		}
	}
	resp, body := e.do(t, http.MethodGet, "/api/certificates/revocation-sync?limit=2", e.admin, "")
	var out struct {
		Items   []admin.SyncRunView `json:"items"`
		Enabled bool                `json:"enabled"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
		t.Fatalf("runs: %d %s", resp.StatusCode, body)
	}
	if len(out.Items) != 2 || out.Items[0].Revoked != 2 || !out.Enabled || len(out.Items[1].Errors) != 1 {
		t.Errorf("runs = %+v", out)
	}
	for _, bad := range []string{"0", "101", "x"} {
		resp, body := e.do(t, http.MethodGet, "/api/certificates/revocation-sync?limit="+bad, e.admin, "")
		wantProblem(t, resp, body, http.StatusBadRequest, "bad_limit")
	}
	// POST still starts a run.
	if resp, _ := e.do(t, http.MethodPost, "/api/certificates/revocation-sync", e.admin, ""); resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST revocation-sync: %d", resp.StatusCode)
	}
	e = newEnv(t, func(c *admin.Config) { c.Sync = nil })
	resp, body = e.do(t, http.MethodGet, "/api/certificates/revocation-sync", e.admin, "")
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Enabled || len(out.Items) != 0 {
		t.Errorf("runs without Intune: %d %s", resp.StatusCode, body)
	}
}

// TestSyncRunStates: the list and the status of a run say whether it is running, finished, failed or was
// interrupted (never finished within the longest a run takes, its process gone).
func TestSyncRunStates(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	e := newEnv(t, func(c *admin.Config) { c.Now = func() time.Time { return now } })
	limit := e.sync.Limit()
	for _, run := range []store.SyncRun{
		{ID: "running", Started: now.Add(-limit)},
		{ID: "interrupted", Started: now.Add(-limit - 2*time.Minute)},
		{ID: "finished", Started: now.Add(-3 * time.Hour), Finished: now.Add(-3*time.Hour + time.Minute), Failed: 1, Errors: []string{"item failed"}},
		{ID: "failed", Started: now.Add(-4 * time.Hour), Finished: now.Add(-4*time.Hour + time.Minute), Errors: []string{"downloading: boom"}, Error: "downloading: boom"},
	} {
		run.Trigger = "timer"
		if err := e.st.RecordRun(t.Context(), run); err != nil {
			t.Fatal(err)
		}
	}
	resp, body := e.do(t, http.MethodGet, "/api/certificates/revocation-sync", e.admin, "")
	var out struct{ Items []admin.SyncRunView }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || len(out.Items) != 4 {
		t.Fatalf("runs: %d %s", resp.StatusCode, body)
	}
	for _, v := range out.Items {
		if v.State != v.ID {
			t.Errorf("listed run %s is %q", v.ID, v.State)
		}
		resp, body := e.do(t, http.MethodGet, "/api/certificates/revocation-sync/"+v.ID, e.admin, "")
		var one admin.SyncRunView
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &one) != nil || one.State != v.ID || one.ID != v.ID {
			t.Errorf("status of %s: %d %s", v.ID, resp.StatusCode, body)
		}
		if v.ID == "failed" && one.Error != "downloading: boom" {
			t.Errorf("failed run's error %q", one.Error)
		}
	}
	e.faults.FailMethod(storetest.MethodRunByID, store.ErrUnavailable)
	resp, body = e.do(t, http.MethodGet, "/api/certificates/revocation-sync/running", e.admin, "")
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
}

// TestSearchConsoleFilters: name matches the subject or any SAN (a UPN), endpoint and source filter exactly.
func TestSearchConsoleFilters(t *testing.T) {
	e := newEnv(t, nil)
	e.insert(t, store.Record{Subject: "CN=laptop-1", SANs: []string{"upn:Alice@Contoso.example"}, Source: store.SourceSCEP, Endpoint: "intune"}, false)
	e.insert(t, store.Record{Subject: "CN=web.contoso.example", Source: store.SourceAPI, Endpoint: "api"}, false)
	e.insert(t, store.Record{Subject: "CN=printer", Source: store.SourceSCEP, Endpoint: "static"}, false)
	for query, want := range map[string][]string{
		"name=alice@contoso":        {"CN=laptop-1"},
		"name=CONTOSO":              {"CN=laptop-1", "CN=web.contoso.example"},
		"source=scep":               {"CN=laptop-1", "CN=printer"},
		"endpoint=static":           {"CN=printer"},
		"source=scep&endpoint=api":  {},
		"name=printer&source=scep":  {"CN=printer"},
		"name=nothing-matches-this": {},
	} {
		resp, body := e.do(t, http.MethodGet, "/api/certificates?"+query, e.admin, "")
		var p page
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &p) != nil {
			t.Fatalf("%s: %d %s", query, resp.StatusCode, body)
		}
		got := map[string]bool{}
		for _, it := range p.Items {
			got[it.Subject] = true
		}
		if len(got) != len(want) {
			t.Errorf("%s: got %v, want %v", query, got, want)
		}
		for _, w := range want {
			if !got[w] {
				t.Errorf("%s: %s missing (got %v)", query, w, got)
			}
		}
	}
}

func TestSummarizeCertificate(t *testing.T) {
	e := newEnv(t, nil)
	s := admin.SummarizeCertificate(e.ca.Cert)
	if s.Subject != e.ca.Cert.Subject.String() || s.Serial != store.SerialString(e.ca.Cert.SerialNumber) || len(s.SHA256) != 64 || s.Key == "" {
		t.Errorf("summary = %+v", s)
	}
	if got := admin.KeyUsageNames(x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment); len(got) != 2 || got[1] != "keyEncipherment" {
		t.Errorf("KeyUsageNames = %v", got)
	}
	if admin.ExtKeyUsageName(x509.ExtKeyUsageOCSPSigning) != "OCSPSigning" || admin.ExtKeyUsageName(x509.ExtKeyUsage(99)) != "eku(99)" {
		t.Error("ExtKeyUsageName")
	}
}
