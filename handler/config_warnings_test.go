package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/entra"
)

// warnSecret is the challenge two endpoints share in these tests; no four characters of it in a row may appear
// in a log line, an API answer or the CLI's output.
const warnSecret = "Qz7xVw9kPj2mHs4R"

// hazardEnv has both kinds of warning: gear and wide share warnSecret, and profile wide has a dead pattern.
var hazardEnv = []string{"AZSCEP_DEV_ISSUER=true", "AZSCEP_SCEP_ENDPOINTS=static,gear,wide",
	"AZSCEP_SCEP_GEAR_SECRET=" + warnSecret, "AZSCEP_SCEP_WIDE=profile=wide", "AZSCEP_SCEP_WIDE_SECRET=" + warnSecret,
	"AZSCEP_PROFILE_WIDE=dns=*.corp.example.com,10.0.0.1"}

func assertNoSecret(t *testing.T, where, text, secret string) {
	t.Helper()
	for i := 0; i+4 <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+4]) {
			t.Errorf("%s shows part of a secret (%q):\n%s", where, secret[i:i+4], text)
			return
		}
	}
}

// TestConfigWarningsLoggedAndListed: the service logs each configuration warning once at start, at WARN, naming
// the endpoints and never the secret, and the admin overview lists them for the console; a clean configuration
// lists none.
func TestConfigWarningsLoggedAndListed(t *testing.T) {
	svc := startLocal(t, hazardEnv...)
	if len(svc.cfg.Warnings) != 2 {
		t.Fatalf("config warnings = %+v, want the shared challenge and the dead pattern", svc.cfg.Warnings)
	}
	lines := svc.logs.Records("setting weakens authorization or does not work as written")
	codes := map[string]int{}
	for _, l := range lines {
		codes[fmt.Sprint(l["code"])]++
		if l["level"] != "WARN" {
			t.Errorf("log line %v is not at WARN", l)
		}
	}
	if len(lines) != 2 || codes[config.WarnSharedChallenge] != 1 || codes[config.WarnUnmatchablePattern] != 1 {
		t.Errorf("logged warnings %v, want each once:\n%s", codes, svc.logs.String())
	}
	for _, l := range lines {
		if l["code"] == config.WarnSharedChallenge && fmt.Sprint(l["endpoints"]) != "[gear wide]" {
			t.Errorf("shared challenge line names endpoints %v, want gear and wide", l["endpoints"])
		}
	}
	assertNoSecret(t, "the log", svc.logs.String(), warnSecret)

	ov := getOverview(t, svc.base)
	if len(ov.Warnings) != 2 || ov.Warnings[0].Code != config.WarnSharedChallenge ||
		!slices.Equal(ov.Warnings[0].Endpoints, []string{"gear", "wide"}) || ov.Warnings[1].Code != config.WarnUnmatchablePattern ||
		!strings.Contains(ov.Warnings[1].Message, "dns=10.0.0.1") || !slices.Equal(ov.Warnings[1].Endpoints, []string{"wide"}) {
		t.Errorf("overview warnings = %+v", ov.Warnings)
	}

	clean := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	if ov := getOverview(t, clean.base); ov.Warnings == nil || len(ov.Warnings) != 0 {
		t.Errorf("clean overview warnings = %#v, want an empty list", ov.Warnings)
	}
	if n := len(clean.logs.Records("setting weakens authorization or does not work as written")); n != 0 {
		t.Errorf("clean configuration logged %d warnings", n)
	}
}

// getOverview reads GET /api/certificates/overview as an administrator, and checks the raw answer for secrets.
func getOverview(t *testing.T, base string) admin.Overview {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/certificates/overview", nil)
	req.Header.Set("Authorization", "Bearer "+devTokenAs(t, base, "admin@example.test", entra.RoleCertificatesManage))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("overview: %d %v", resp.StatusCode, err)
	}
	assertNoSecret(t, "the overview", string(raw), warnSecret)
	var ov admin.Overview
	if err := json.Unmarshal(raw, &ov); err != nil {
		t.Fatal(err)
	}
	return ov
}

// TestConfigCheckCommand: `azscep config check` prints the warnings (endpoint names, never the secret) and exits 0
// with warnings, 1 with errors (a disabled feature, a configuration that does not load), 2 for a wrong command line.
func TestConfigCheckCommand(t *testing.T) {
	local := []string{"AZSCEP_MODE=local", "AZSCEP_TABLES_CONNECTION=unused", "AZSCEP_LOCAL_KEY_DIR=" + t.TempDir()}

	code, stdout, stderr := runCLI(t, local, "config", "check")
	if code != 0 || stderr != "" || !strings.Contains(stdout, "0 errors, 0 warnings") {
		t.Errorf("clean: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	code, stdout, stderr = runCLI(t, append(local, hazardEnv...), "config", "check")
	if code != 0 || stderr != "" || !strings.Contains(stdout, "0 errors, 2 warnings") ||
		!strings.Contains(stdout, "warning: scep/gear (shared_challenge): SCEP endpoints gear (profile device), wide (profile wide)") ||
		!strings.Contains(stdout, "warning: profile/wide (unmatchable_pattern): profile wide: dns=10.0.0.1") {
		t.Errorf("warnings: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	assertNoSecret(t, "config check", stdout+stderr, warnSecret)

	code, stdout, _ = runCLI(t, append(local, "AZSCEP_SCEP_ENDPOINTS=static,gear", "AZSCEP_SCEP_GEAR=profile=nope",
		"AZSCEP_SCEP_GEAR_SECRET="+warnSecret), "config", "check")
	if code != 1 || !strings.Contains(stdout, "error: scep/gear is disabled: setting AZSCEP_SCEP_GEAR") {
		t.Errorf("fault: exit %d, stdout %q", code, stdout)
	}
	assertNoSecret(t, "config check", stdout, warnSecret)
	if code, _, stderr := runCLI(t, []string{"AZSCEP_MODE=bogus"}, "config", "check"); code != 1 || !strings.Contains(stderr, "AZSCEP_MODE") {
		t.Errorf("load error: exit %d, stderr %q", code, stderr)
	}
	for _, args := range [][]string{{"config"}, {"config", "bogus"}, {"config", "check", "extra"}} {
		if code, stdout, stderr := runCLI(t, local, args...); code != 2 || stdout != "" || !strings.Contains(stderr, "Usage: azscep config check") {
			t.Errorf("azscep %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	if code, stdout, _ := runCLI(t, []string{}, "config", "check", "--help"); code != 0 || !strings.Contains(stdout, "Usage: azscep config check") {
		t.Errorf("help: exit %d, stdout %q", code, stdout)
	}
}

// TestConsoleShowsConfigWarnings: the console's CA overview shows each configuration warning above the rest.
func TestConsoleShowsConfigWarnings(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, hazardEnv...)
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.do("overview", chromedp.Navigate(page+"#/overview"))
	b.waitFor("warnings", `!!document.querySelector("main .notice.warn ul.config-warnings")`)
	items := eval[[]string](b, `[...document.querySelectorAll("main .notice.warn ul.config-warnings li")].map(li => li.textContent)`)
	if len(items) != 2 || !strings.Contains(items[0], "gear (profile device), wide (profile wide)") || !strings.Contains(items[1], "dns=10.0.0.1") {
		t.Errorf("console warnings = %q", items)
	}
	// Not all of them are refused by a future release (README, Operations): the console does not say so.
	if text := eval[string](b, `document.querySelector("main .notice.warn").innerText`); strings.Contains(text, "later release refuses these") {
		t.Errorf("the console promises every warning will be refused: %q", text)
	}
	assertNoSecret(t, "the console", eval[string](b, `document.querySelector("main").innerText`), warnSecret)
	b.wantNoProblems(t)
}
