package config

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Offline checks of the operator-facing pieces of the deployment (issue 12): the workbook and its queries, the
// admin credential the scripts pick, Windows fail-fast, and the documentation/parameter fixes a check can catch.

// logSource is what the handler writes: every slog message (with the packages that log it) and every string
// literal of those packages (the attribute keys are among them; a package may build attributes in several files).
type logSource struct {
	messages map[string][]string        // message -> package directories
	literals map[string]map[string]bool // package directory -> literals
	all      map[string]bool            // every literal of every file
}

var (
	logCall    = regexp.MustCompile(`\.(?:Info|Warn|Error|Debug)(?:Context)?\((?:ctx, |parent, |r\.Context\(\), )?"([^"]+)"`)
	logAttrs   = regexp.MustCompile(`LogAttrs\([^,]+, slog\.Level\w+, "([^"]+)"`)
	strLiteral = regexp.MustCompile(`"([A-Za-z_][A-Za-z0-9_]*)"`)
)

func readLogSource(t *testing.T) logSource {
	t.Helper()
	src := logSource{messages: map[string][]string{}, literals: map[string]map[string]bool{}, all: map[string]bool{}}
	root := repoRoot(t)
	for _, dir := range []string{"internal", "handler"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			code := string(data)
			for _, re := range []*regexp.Regexp{logCall, logAttrs} {
				for _, m := range re.FindAllStringSubmatch(code, -1) {
					src.messages[m[1]] = append(src.messages[m[1]], filepath.Dir(path))
				}
			}
			lits := src.literals[filepath.Dir(path)]
			if lits == nil {
				lits = map[string]bool{}
				src.literals[filepath.Dir(path)] = lits
			}
			for _, m := range strLiteral.FindAllStringSubmatch(code, -1) {
				lits[m[1]], src.all[m[1]] = true, true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(src.messages) < 20 {
		t.Fatalf("found only %d log messages; the scanner is broken", len(src.messages))
	}
	return src
}

// fencedBlocks returns the bodies of the ```lang blocks of a markdown text.
func fencedBlocks(doc, lang string) []string {
	var out []string
	for _, part := range strings.Split(doc, "```"+lang+"\n")[1:] {
		if end := strings.Index(part, "```"); end >= 0 {
			out = append(out, part[:end])
		}
	}
	return out
}

var (
	kqlMessage = regexp.MustCompile(`'"msg":"([^"']+)`)
	kqlMsgEq   = regexp.MustCompile(`tostring\(j\.msg\) == "([^"]+)"`)
	kqlField   = regexp.MustCompile(`\bj\.([A-Za-z_][A-Za-z0-9_]*)`)
)

// checkQuery returns the problems of a query: every log line it filters on must be one the handler writes, and
// every field it reads an attribute key of those lines (or one slog adds itself: msg, level, time).
func checkQuery(query string, src logSource) []string {
	var problems []string
	keys := map[string]bool{"msg": true, "level": true, "time": true}
	var prefixes []string
	for _, m := range kqlMessage.FindAllStringSubmatch(query, -1) {
		prefixes = append(prefixes, m[1])
	}
	for _, m := range kqlMsgEq.FindAllStringSubmatch(query, -1) {
		if _, ok := src.messages[m[1]]; !ok {
			problems = append(problems, fmt.Sprintf("compares msg with %q, which no log call writes", m[1]))
		}
	}
	for _, p := range prefixes {
		found := false
		for msg, files := range src.messages {
			if strings.HasPrefix(msg, p) {
				found = true
				for _, f := range files {
					for k := range src.literals[f] {
						keys[k] = true
					}
				}
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("filters on log line %q, which no log call writes", p))
		}
	}
	if len(prefixes) == 0 {
		keys = src.all // a query that searches text (e.g. Key Vault throttling) may read any attribute
	}
	for _, m := range kqlField.FindAllStringSubmatch(query, -1) {
		if !keys[m[1]] {
			problems = append(problems, fmt.Sprintf("reads field j.%s, which the log lines it filters on do not write", m[1]))
		}
	}
	return problems
}

// TestDeployWorkbookQueries (issue 12.7): the workbook in monitoring.bicep loads every query in infra/workbook,
// docs/deployment.md shows each of them verbatim, and every KQL query in the guide reads only log lines and fields
// the handler writes, so renaming a log attribute breaks this test rather than the operator's dashboards.
func TestDeployWorkbookQueries(t *testing.T) {
	mon := loadBicep(t, "infra/modules/monitoring.bicep")
	wbs := mon.resourcesOfType("Microsoft.Insights/workbooks")
	if len(wbs) != 1 {
		t.Fatalf("monitoring.bicep: want one Microsoft.Insights/workbooks resource, found %d", len(wbs))
	}
	for path, want := range map[string]string{"kind": "'shared'", "properties.category": "'workbook'",
		"properties.sourceId": "appInsights.id"} {
		if got := mustLookup(t, "workbook", wbs[0].Value, strings.Split(path, ".")...); got != want {
			t.Errorf("workbook %s = %s, want %s", path, got, want)
		}
	}
	if name := mustLookup(t, "workbook", wbs[0].Value, "name"); !strings.HasPrefix(name, "guid(") {
		t.Errorf("workbook name = %s, want a deterministic guid(...)", name)
	}
	code := readRepoFile(t, "infra/modules/monitoring.bicep")
	loaded := map[string]bool{}
	for _, m := range regexp.MustCompile(`loadTextContent\('\.\./workbook/([^']+)'\)`).FindAllStringSubmatch(code, -1) {
		loaded[m[1]] = true
	}
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "infra", "workbook", "*.kql"))
	if err != nil || len(files) < 5 {
		t.Fatalf("infra/workbook holds %d queries (%v); want the five operational views and more", len(files), err)
	}
	src := readLogSource(t)
	doc := readRepoFile(t, "docs/deployment.md")
	blocks := fencedBlocks(doc, "kusto")
	var names []string
	for _, f := range files {
		name := filepath.Base(f)
		names = append(names, name)
		if !loaded[name] {
			t.Errorf("infra/workbook/%s is not loaded by the workbook in monitoring.bicep", name)
		}
		delete(loaded, name)
		query := readRepoFile(t, "infra/workbook/"+name)
		found := false
		for _, b := range blocks {
			found = found || b == query
		}
		if !found {
			t.Errorf("docs/deployment.md does not show infra/workbook/%s verbatim in a ```kusto block", name)
		}
	}
	for name := range loaded {
		t.Errorf("monitoring.bicep loads infra/workbook/%s, which does not exist", name)
	}
	sort.Strings(names)
	for _, want := range []string{"enrollments.kql", "intune-failures.kql", "keyvault-throttling.kql",
		"revocation-sync.kql", "stale-pending.kql"} {
		if sort.SearchStrings(names, want) == len(names) || names[sort.SearchStrings(names, want)] != want {
			t.Errorf("the workbook lacks %s", want)
		}
	}
	if len(blocks) < len(files) {
		t.Fatalf("docs/deployment.md has %d kusto blocks", len(blocks))
	}
	for _, b := range blocks {
		for _, p := range checkQuery(b, src) {
			t.Errorf("docs/deployment.md, query %q: %s", strings.SplitN(b, "\n", 2)[0], p)
		}
	}
	// The throttling view searches the text of the error Key Vault throttling produces.
	if !strings.Contains(readRepoFile(t, "internal/keyvault/errors.go"), "throttled after") {
		t.Error("keyvault-throttling.kql searches for \"throttled\", which internal/keyvault/errors.go no longer writes")
	}
}

// TestCheckQueryCatchesRenames: the check refuses a field or a log line the handler does not write.
func TestCheckQueryCatchesRenames(t *testing.T) {
	src := readLogSource(t)
	for _, q := range []string{
		"traces | where message contains '\"msg\":\"revocation sync\"' | project toint(j.revoked_count)",
		"traces | where message contains '\"msg\":\"certificate minted\"' | project tostring(j.serial)",
		"traces | where tostring(j.msg) == \"intune call failed badly\"",
	} {
		if len(checkQuery(q, src)) == 0 {
			t.Errorf("query passed: %s", q)
		}
	}
	if p := checkQuery("traces | where message contains '\"msg\":\"revocation sync\"' | project toint(j.revoked)", src); len(p) != 0 {
		t.Errorf("a good query was refused: %v", p)
	}
}

// markdownSection returns the text of the section whose heading starts with heading, up to the next heading of
// the same level.
func markdownSection(t *testing.T, doc, heading string) string {
	t.Helper()
	start := strings.Index(doc, "\n"+heading)
	if start < 0 {
		t.Fatalf("no section %q", heading)
	}
	level := heading[:strings.Index(heading, " ")+1]
	rest := doc[start+1:]
	if end := strings.Index(rest[len(heading):], "\n"+level); end >= 0 {
		return rest[:len(heading)+end]
	}
	return rest
}

// TestDeployAdminCredential (issue 12.2): the admin commands started by azd run with azd's credential — the
// principal main.bicep grants the admin roles to — in a form the azidentity version in go.mod accepts, and the
// guide no longer requires an Azure CLI sign-in for `azd up`.
func TestDeployAdminCredential(t *testing.T) {
	admin := readRepoFile(t, "infra/scripts/azscep-admin.sh")
	m := regexp.MustCompile(`(?m)^\s*export AZURE_TOKEN_CREDENTIALS=(\S+)$`).FindStringSubmatch(admin)
	if m == nil || m[1] != "AzureDeveloperCLICredential" {
		t.Fatalf("azscep-admin.sh must export AZURE_TOKEN_CREDENTIALS=AzureDeveloperCLICredential, got %v", m)
	}
	// azidentity validates the value when the credential is built: an unknown one is an error.
	t.Setenv("AZURE_TOKEN_CREDENTIALS", m[1])
	if _, err := azidentity.NewDefaultAzureCredential(nil); err != nil {
		t.Errorf("azidentity refuses AZURE_TOKEN_CREDENTIALS=%s: %v", m[1], err)
	}
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "AzureDeveloperCredential")
	if _, err := azidentity.NewDefaultAzureCredential(nil); err == nil {
		t.Error("azidentity accepted a misspelt AZURE_TOKEN_CREDENTIALS: this check proves nothing")
	}
	// The admin roles go to azd's principal, which azd fills in itself.
	params := parameterValues(t)
	for name, want := range map[string]string{"principalId": "${AZURE_PRINCIPAL_ID}", "principalType": "${AZURE_PRINCIPAL_TYPE}"} {
		if got, _ := params[name].(string); got != want {
			t.Errorf("main.parameters.json %s = %v, want %s (detected by azd from its sign-in)", name, params[name], want)
		}
	}
	doc := readRepoFile(t, "docs/deployment.md")
	for _, f := range []string{"docs/deployment.md", "README.md"} {
		text := readRepoFile(t, f)
		if regexp.MustCompile("azd env set AZURE_PRINCIPAL_|AZURE_PRINCIPAL_TYPE=|\\| `AZURE_PRINCIPAL_(TYPE|ID)` \\|").MatchString(text) {
			t.Errorf("%s tells the operator to set AZURE_PRINCIPAL_TYPE/ID, which azd detects and overrides", f)
		}
	}
	deploy := markdownSection(t, doc, "## 4. Deploy")
	if blocks := fencedBlocks(deploy, "sh"); len(blocks) == 0 || strings.Contains(blocks[0], "az login") ||
		!strings.Contains(blocks[0], "azd auth login") {
		t.Errorf("the azd up commands must sign in with azd only: %q", blocks)
	}
}

// TestDeployWindowsFailsFast (issue 12.3): native Windows stops at once with one message — every windows hook of
// azure.yaml and the Makefile — instead of calling a bash that is WSL's or zipping a package without the
// executable bit; the guide says so.
func TestDeployWindowsFailsFast(t *testing.T) {
	doc := parseYAML(t, readRepoFile(t, "azure.yaml"))
	var windows, posix int
	for key, run := range doc {
		switch {
		case strings.HasSuffix(key, ".windows.run"):
			windows++
			if !strings.Contains(run, "exit 1") || !strings.Contains(run, "WSL") || strings.Contains(run, "bash") ||
				strings.Contains(run, "make") && !strings.Contains(run, "make dist need") {
				t.Errorf("azure.yaml %s = %q: want one message naming WSL and exit 1, without bash or make", key, run)
			}
			if doc[strings.TrimSuffix(key, ".run")+".shell"] != "pwsh" {
				t.Errorf("azure.yaml %s must run in pwsh (always there on Windows)", key)
			}
		case strings.HasSuffix(key, ".posix.run"):
			posix++
		}
	}
	if windows == 0 || windows != posix {
		t.Errorf("azure.yaml has %d windows and %d posix hook variants; every hook needs the Windows stop", windows, posix)
	}
	mk := readRepoFile(t, "Makefile")
	if !regexp.MustCompile(`(?m)^ifeq \(\$\(OS\),Windows_NT\)\n\$\(error [^\n]*WSL[^\n]*\)\nendif$`).MatchString(mk) {
		t.Error("Makefile must stop on Windows_NT with one $(error ...) naming WSL")
	}
	if sec := markdownSection(t, readRepoFile(t, "docs/deployment.md"), "## 2. Prerequisites"); !strings.Contains(sec, "WSL") ||
		!strings.Contains(sec, "executable bit") {
		t.Error("docs/deployment.md section 2 must say why Windows is refused and that WSL works")
	}
}

// TestDeployDocumentedFixes (issue 12.5): the parts of the guide and parameters that a check can hold to the
// template.
func TestDeployDocumentedFixes(t *testing.T) {
	// basicPublishingCredentialsPolicies carry a location like their site.
	app := loadBicep(t, functionAppModule)
	policies := app.resourcesOfType("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
	if len(policies) != 2 {
		t.Fatalf("want the ftp and scm publishing policies, found %d", len(policies))
	}
	for _, p := range policies {
		if v, err := lookup(p.Value, "location"); err != nil || v != "location" {
			t.Errorf("basicPublishingCredentialsPolicies %s: location = %q (%v), want location", p.Name, v, err)
		}
	}
	// additionalAppSettings, which the guide tells the operator to use, is mapped in main.parameters.json.
	params := parameterValues(t)
	if v, ok := params["additionalAppSettings"].(map[string]any); !ok || v == nil {
		t.Error("main.parameters.json must map additionalAppSettings (an object; azd has no env value for it)")
	}
	doc := readRepoFile(t, "docs/deployment.md")
	// Every parameter of main.bicep the guide names is one main.parameters.json sets, or it could not be used.
	main := loadBicep(t, "infra/main.bicep")
	for _, d := range main.Decls {
		if d.Kind == "param" && strings.Contains(doc, "`"+d.Name+"`") {
			if _, ok := params[d.Name]; !ok {
				t.Errorf("docs/deployment.md names parameter %s, which main.parameters.json does not set", d.Name)
			}
		}
	}
	// Commands take the app's address from the azd environment, never a hard-coded host.
	for _, f := range []string{"docs/deployment.md", "README.md"} {
		for _, b := range fencedBlocks(readRepoFile(t, f), "sh") {
			if strings.Contains(b, "azurewebsites.net") || strings.Contains(b, "<app>") {
				t.Errorf("%s: a command hard-codes the app's host (use azd env get-value): %s", f, b)
			}
		}
	}
	// azd up packages first: the guide lists the steps in the order azd runs them, from the repository root.
	deploy := markdownSection(t, doc, "## 4. Deploy")
	pk, pv, pp, dp := strings.Index(deploy, "**package**"), strings.Index(deploy, "**provision**"),
		strings.Index(deploy, "**postprovision**"), strings.Index(deploy, "**deploy**")
	if pk < 0 || !(pk < pv && pv < pp && pp < dp) {
		t.Errorf("section 4 must list package, provision, postprovision, deploy in that order (%d %d %d %d)", pk, pv, pp, dp)
	}
	if !strings.Contains(deploy, "repository root") {
		t.Error("section 4 must say that azd runs from the repository root")
	}
	// The CI static challenge, vault recovery and http publication notes.
	flat := strings.Join(strings.Fields(doc), " ")
	for _, want := range []string{"pipeline secret", "az group create", "cannot be used again for 90 days", "Front Door",
		"az functionapp restart", "blob, queue and table"} {
		if !strings.Contains(flat, want) {
			t.Errorf("docs/deployment.md lacks %q", want)
		}
	}
	if i, j := strings.Index(doc, "az group create"), strings.Index(doc, "az keyvault recover --name"); i < 0 || j < i {
		t.Error("the vault recovery must re-create the resource group before az keyvault recover")
	}
	// After azd down the tables are gone as well: the provision after a vault recovery must not let the hook's
	// ca init write a new root and RA into empty tables before the backup is restored.
	recovery := markdownSection(t, doc, "## 10. Backup and recovery")
	if i := strings.Index(recovery, "az keyvault recover --name"); i < 0 ||
		!strings.Contains(recovery[i:], "AZSCEP_SKIP_CA_INIT true") || !strings.Contains(recovery[i:], "azscep-admin.sh restore -in") {
		t.Error("section 10: the vault recovery after azd down must skip ca init (AZSCEP_SKIP_CA_INIT true) until the backup is restored (azscep-admin.sh restore)")
	}
	// The backup is azscep's own, which keeps the property types the records need, not a generic export.
	if !strings.Contains(recovery, "azscep-admin.sh backup -out") || strings.Contains(recovery, "jq -c '.items[]'") {
		t.Error("section 10: the tables are backed up with azscep-admin.sh backup, not az storage entity query")
	}
	for _, s := range Settings {
		if s.Name == "AZSCEP_PUBLICATION_URL" && !strings.Contains(s.Doc, "front end") {
			t.Error("AZSCEP_PUBLICATION_URL's doc must say that an http URL needs a front end (the app is HTTPS-only)")
		}
	}
}

// parameterValues reads the values infra/main.parameters.json gives main.bicep's parameters.
func parameterValues(t *testing.T) map[string]any {
	t.Helper()
	var file struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(readRepoFile(t, "infra/main.parameters.json")), &file); err != nil {
		t.Fatalf("main.parameters.json: %v", err)
	}
	out := map[string]any{}
	for name, p := range file.Parameters {
		out[name] = p.Value
	}
	return out
}
