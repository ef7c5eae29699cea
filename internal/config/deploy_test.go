package config

// Offline checks of the deployment files (azure.yaml, infra/, local.settings.sample.json) against the settings
// parser. The Bicep CLI cannot run here (azure-functions.md §5), so the Bicep is read as text with a small
// scanner that understands strings (including ${} interpolation), comments and bracket nesting: enough to pull out
// top-level declarations, decorators and object properties reliably. What these tests cannot see (ARM validation,
// API versions, region support) is left to `az bicep build` and `azd provision --preview` (docs/deployment.md).

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/robfig/cron/v3"

	"github.com/azscep/azscep/internal/store/tables"
)

// --- repository files --------------------------------------------------------------------------------------------

// repoRoot is the module root; tests run in internal/config.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("reading %s: %v", rel, err)
	}
	return string(b)
}

// bicepFiles lists every .bicep file under infra/, relative to the repository root with forward slashes.
func bicepFiles(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	var files []string
	err := filepath.WalkDir(filepath.Join(root, "infra"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".bicep") {
			rel, _ := filepath.Rel(root, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatal("no .bicep files under infra/")
	}
	return files
}

// --- a small Bicep reader ----------------------------------------------------------------------------------------

// skipString returns the index just after the Bicep string that starts at s[i] (a single quote). Multi-line
// strings (three quotes) have no escapes; ordinary strings have \ escapes and ${...} interpolations that may contain strings themselves.
func skipString(s string, i int) int {
	if strings.HasPrefix(s[i:], "'''") {
		if end := strings.Index(s[i+3:], "'''"); end >= 0 {
			return i + 3 + end + 3
		}
		return len(s)
	}
	for j := i + 1; j < len(s); {
		switch {
		case s[j] == '\\':
			j += 2
		case s[j] == '$' && j+1 < len(s) && s[j+1] == '{':
			j = skipBalanced(s, j+1)
		case s[j] == '\'':
			return j + 1
		default:
			j++
		}
	}
	return len(s)
}

// skipBalanced returns the index just after the bracket that closes s[i] (one of "([{"), skipping strings.
func skipBalanced(s string, i int) int {
	depth := 0
	for j := i; j < len(s); {
		switch s[j] {
		case '\'':
			j = skipString(s, j)
			continue
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
		j++
	}
	return len(s)
}

// stripComments removes // and /* */ comments outside strings, keeping line breaks.
func stripComments(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case s[i] == '\'':
			j := skipString(s, i)
			b.WriteString(s[i:j])
			i = j
		case strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				end = len(s) - i - 2
			}
			b.WriteString(strings.Repeat("\n", strings.Count(s[i:i+2+end], "\n")))
			i += 2 + end + 2
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

// scanTop calls f for every top-level index of s (outside strings and brackets); f returns false to stop.
func scanTop(s string, f func(i int) bool) {
	for i := 0; i < len(s); {
		switch s[i] {
		case '\'':
			i = skipString(s, i)
			continue
		case '(', '[', '{':
			i = skipBalanced(s, i)
			continue
		}
		if !f(i) {
			return
		}
		i++
	}
}

// splitTop splits s at top-level newlines and commas, dropping empty parts.
func splitTop(s string) []string {
	var parts []string
	start := 0
	scanTop(s, func(i int) bool {
		if s[i] == '\n' || s[i] == ',' {
			if p := strings.TrimSpace(s[start:i]); p != "" {
				parts = append(parts, p)
			}
			start = i + 1
		}
		return true
	})
	if p := strings.TrimSpace(s[start:]); p != "" {
		parts = append(parts, p)
	}
	return parts
}

// indexTop returns the first top-level index of c in s, or -1.
func indexTop(s string, c byte) int {
	at := -1
	scanTop(s, func(i int) bool {
		if s[i] == c {
			at = i
			return false
		}
		return true
	})
	return at
}

// decl is one top-level Bicep statement: param, var, resource, module, output, targetScope...
type decl struct {
	Kind       string   // first keyword
	Name       string   // symbolic name (empty for targetScope)
	Header     string   // text between the name and "=" (type, resource type string, "existing")
	Value      string   // expression after "=" (default value for params), trimmed
	Decorators []string // "@secure()", "@metadata({...})", ...
}

// assignIndex finds the top-level "=" of a statement (not ==, !=, <=, >=, =~).
func assignIndex(stmt string) int {
	at := -1
	scanTop(stmt, func(i int) bool {
		if stmt[i] != '=' {
			return true
		}
		prev, next := byte(' '), byte(' ')
		if i > 0 {
			prev = stmt[i-1]
		}
		if i+1 < len(stmt) {
			next = stmt[i+1]
		}
		if next == '=' || next == '~' || strings.IndexByte("=!<>", prev) >= 0 {
			return true
		}
		at = i
		return false
	})
	return at
}

// parseBicep splits a Bicep file into its top-level declarations.
func parseBicep(src string) []decl {
	s := stripComments(src)
	var out []decl
	var pending []string
	for i := 0; i < len(s); {
		if c := s[i]; c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			i++
			continue
		}
		if s[i] == '@' {
			j := i + 1
			for j < len(s) && (isLetter(s[j]) || s[j] == '.' || s[j] == '_') {
				j++
			}
			if j < len(s) && s[j] == '(' {
				j = skipBalanced(s, j)
			}
			pending = append(pending, s[i:j])
			i = j
			continue
		}
		j := i
		for j < len(s) && s[j] != '\n' {
			switch s[j] {
			case '\'':
				j = skipString(s, j)
			case '(', '[', '{':
				j = skipBalanced(s, j)
			default:
				j++
			}
		}
		stmt := strings.TrimSpace(s[i:j])
		i = j
		d := decl{Decorators: pending}
		pending = nil
		head := stmt
		if a := assignIndex(stmt); a >= 0 {
			head, d.Value = strings.TrimSpace(stmt[:a]), strings.TrimSpace(stmt[a+1:])
		}
		fields := strings.Fields(head)
		if len(fields) > 0 {
			d.Kind = fields[0]
		}
		if len(fields) > 1 {
			d.Name = fields[1]
			d.Header = strings.TrimSpace(strings.Join(fields[2:], " "))
		}
		out = append(out, d)
	}
	return out
}

// bicepFile is a parsed Bicep file.
type bicepFile struct {
	Path  string
	Decls []decl
}

func loadBicep(t *testing.T, rel string) bicepFile {
	t.Helper()
	return bicepFile{Path: rel, Decls: parseBicep(readRepoFile(t, rel))}
}

// find returns the declaration of a kind and name; it fails the test when there is none.
func (f bicepFile) find(t *testing.T, kind, name string) decl {
	t.Helper()
	for _, d := range f.Decls {
		if d.Kind == kind && d.Name == name {
			return d
		}
	}
	t.Fatalf("%s: no %s %s", f.Path, kind, name)
	return decl{}
}

func (f bicepFile) has(kind, name string) bool {
	for _, d := range f.Decls {
		if d.Kind == kind && d.Name == name {
			return true
		}
	}
	return false
}

// resourcesOfType returns the resources whose type string starts with typ + "@".
func (f bicepFile) resourcesOfType(typ string) []decl {
	var out []decl
	for _, d := range f.Decls {
		if d.Kind == "resource" && strings.HasPrefix(d.Header, "'"+typ+"@") {
			out = append(out, d)
		}
	}
	return out
}

// prop is one object property.
type prop struct{ Key, Value string }

// parseObject returns the properties of an object literal "{ ... }" in source order.
func parseObject(expr string) ([]prop, error) {
	expr = strings.TrimSpace(expr)
	if !strings.HasPrefix(expr, "{") || skipBalanced(expr, 0) != len(expr) {
		return nil, fmt.Errorf("not an object literal: %.60q", expr)
	}
	var props []prop
	for _, part := range splitTop(expr[1 : len(expr)-1]) {
		c := indexTop(part, ':')
		if c < 0 {
			return nil, fmt.Errorf("object entry without a key: %.60q", part)
		}
		key := strings.TrimSpace(part[:c])
		if lit, ok := stringLiteral(key); ok {
			key = lit
		}
		props = append(props, prop{Key: key, Value: strings.TrimSpace(part[c+1:])})
	}
	return props, nil
}

// parseArray returns the items of an array literal "[ ... ]".
func parseArray(expr string) ([]string, error) {
	expr = strings.TrimSpace(expr)
	if !strings.HasPrefix(expr, "[") || skipBalanced(expr, 0) != len(expr) {
		return nil, fmt.Errorf("not an array literal: %.60q", expr)
	}
	return splitTop(expr[1 : len(expr)-1]), nil
}

// lookup follows a path of property names through nested object literals.
func lookup(expr string, path ...string) (string, error) {
	for _, key := range path {
		props, err := parseObject(expr)
		if err != nil {
			return "", err
		}
		found := false
		for _, p := range props {
			if p.Key == key {
				expr, found = p.Value, true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("no property %q", key)
		}
	}
	return expr, nil
}

func mustLookup(t *testing.T, where, expr string, path ...string) string {
	t.Helper()
	v, err := lookup(expr, path...)
	if err != nil {
		t.Fatalf("%s: %s: %v", where, strings.Join(path, "."), err)
	}
	return v
}

// loopBody splits "[ for x in source: body ]" into the source expression and the body.
func loopBody(expr string) (source, body string, err error) {
	items, err := parseArray(expr)
	if err != nil || len(items) != 1 {
		return "", "", fmt.Errorf("not a for-expression: %.60q", expr)
	}
	m := regexp.MustCompile(`^for\s+\w+\s+in\s+`).FindStringIndex(items[0])
	if m == nil {
		return "", "", fmt.Errorf("not a for-expression: %.60q", expr)
	}
	rest := items[0][m[1]:]
	c := indexTop(rest, ':')
	if c < 0 {
		return "", "", fmt.Errorf("for-expression without body: %.60q", expr)
	}
	return strings.TrimSpace(rest[:c]), strings.TrimSpace(rest[c+1:]), nil
}

// stringLiteral returns the value of a plain string literal without interpolation.
func stringLiteral(expr string) (string, bool) {
	expr = strings.TrimSpace(expr)
	if len(expr) < 2 || expr[0] != '\'' || skipString(expr, 0) != len(expr) || strings.HasPrefix(expr, "'''") {
		return "", false
	}
	inner := expr[1 : len(expr)-1]
	if strings.Contains(inner, "${") {
		return "", false
	}
	r := strings.NewReplacer(`\'`, `'`, `\\`, `\`, `\$`, `$`, `\n`, "\n", `\t`, "\t")
	return r.Replace(inner), true
}

func TestBicepReader(t *testing.T) {
	src := `// comment with 'quote
@description('a // not a comment')
@secure()
param p string = 'x=${f('}')}y' /* block
comment */
var o = {
  'k-1': 'v: 1'
  k2: a ? 'b' : 'c'
  k3: {
    inner: [
      1
      2
    ]
  }
}
resource r 'Microsoft.X/y@2024-01-01' = [
  for i in (empty(p) ? [] : list): {
    name: i
  }
]
output q bool = p == 'a'
`
	f := parseBicep(src)
	if len(f) != 4 {
		t.Fatalf("got %d declarations: %+v", len(f), f)
	}
	if f[0].Kind != "param" || f[0].Name != "p" || f[0].Header != "string" || f[0].Value != `'x=${f('}')}y'` ||
		len(f[0].Decorators) != 2 || f[0].Decorators[1] != "@secure()" {
		t.Errorf("param: %+v", f[0])
	}
	props, err := parseObject(f[1].Value)
	if err != nil || len(props) != 3 || props[0].Key != "k-1" || props[0].Value != "'v: 1'" || props[1].Value != "a ? 'b' : 'c'" {
		t.Errorf("object: %+v %v", props, err)
	}
	if v, err := lookup(f[1].Value, "k3", "inner"); err != nil || !strings.HasPrefix(v, "[") {
		t.Errorf("lookup: %q %v", v, err)
	}
	src2, body, err := loopBody(f[2].Value)
	if err != nil || src2 != "(empty(p) ? [] : list)" || mustLookup(t, "loop", body, "name") != "i" {
		t.Errorf("loop: %q %q %v", src2, body, err)
	}
	if f[3].Kind != "output" || f[3].Value != "p == 'a'" {
		t.Errorf("output: %+v", f[3])
	}
	if v, ok := stringLiteral(`'it\'s'`); !ok || v != "it's" {
		t.Errorf("literal: %q %v", v, ok)
	}
	if _, ok := stringLiteral(`'a${b}'`); ok {
		t.Error("an interpolated string is not a literal")
	}
}

// --- settings ----------------------------------------------------------------------------------------------------

const functionAppModule = "infra/modules/functionapp.bicep"

// appSettings returns the app settings object of the function app module, in source order.
func appSettings(t *testing.T) []prop {
	t.Helper()
	f := loadBicep(t, functionAppModule)
	props, err := parseObject(f.find(t, "var", "appSettings").Value)
	if err != nil {
		t.Fatalf("%s: appSettings: %v", functionAppModule, err)
	}
	// The object must be what the appsettings resource applies.
	var applied bool
	for _, r := range f.resourcesOfType("Microsoft.Web/sites/config") {
		if name, _ := lookup(r.Value, "name"); name == "'appsettings'" {
			v, err := lookup(r.Value, "properties")
			applied = err == nil && regexp.MustCompile(`^union\(\s*appSettings\s*,`).MatchString(v)
		}
	}
	if !applied {
		t.Fatalf("%s: no sites/config 'appsettings' resource applying union(appSettings, ...)", functionAppModule)
	}
	seen := map[string]bool{}
	for _, p := range props {
		if seen[p.Key] {
			t.Errorf("app setting %s is set twice", p.Key)
		}
		seen[p.Key] = true
	}
	return props
}

func settingValue(props []prop, name string) (string, bool) {
	for _, p := range props {
		if p.Key == name {
			return p.Value, true
		}
	}
	return "", false
}

// settingPattern turns a config.Settings name into a matcher: exact, or a family such as AZSCEP_SCEP_<NAME>_SECRET.
func settingPattern(s Setting) *regexp.Regexp {
	name := regexp.QuoteMeta(s.Name)
	if s.Prefixed {
		if strings.Contains(s.Name, "<NAME>") {
			name = strings.ReplaceAll(name, "<NAME>", "[A-Z0-9]+")
		} else {
			name += "[A-Z0-9_]+"
		}
	}
	return regexp.MustCompile("^" + name + "$")
}

func knownSetting(name string) (Setting, bool) {
	for _, s := range Settings {
		if settingPattern(s).MatchString(name) {
			return s, true
		}
	}
	return Setting{}, false
}

// platformSetting: settings read by the Functions host or the App Insights agent, not by azscep.
func platformSetting(name string) bool {
	return strings.HasPrefix(name, "AzureWebJobsStorage__") || strings.HasPrefix(name, "APPLICATIONINSIGHTS_")
}

// forbiddenFlexSettings must not appear anywhere in the Bicep: Flex Consumption rejects or ignores them, and the
// plain AzureWebJobsStorage connection string would need the shared key that the storage account disables.
var forbiddenFlexSettings = []string{
	"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
	"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "WEBSITE_NODE_DEFAULT_VERSION",
	"linuxFxVersion", "AzureWebJobsDashboard",
}

func TestDeployAppSettingsMatchConfig(t *testing.T) {
	props := appSettings(t)
	for _, s := range Settings {
		if s.Azure == "required" && !s.Prefixed {
			if _, ok := settingValue(props, s.Name); !ok {
				t.Errorf("%s is required in Azure (config.Settings) but the function app does not set it", s.Name)
			}
		}
	}
	for _, p := range props {
		if platformSetting(p.Key) {
			continue
		}
		s, ok := knownSetting(p.Key)
		switch {
		case !ok:
			t.Errorf("app setting %s is neither in config.Settings nor a platform setting", p.Key)
		case s.Azure == "local-only":
			t.Errorf("app setting %s is local-only and must not be set in Azure", p.Key)
		}
	}
	if v, _ := settingValue(props, "AZSCEP_MODE"); v != "'azure'" {
		t.Errorf("AZSCEP_MODE = %s, want 'azure'", v)
	}
	for _, name := range []string{"AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
		"AzureWebJobsStorage__blobServiceUri", "APPLICATIONINSIGHTS_CONNECTION_STRING",
		"APPLICATIONINSIGHTS_AUTHENTICATION_STRING"} {
		if _, ok := settingValue(props, name); !ok {
			t.Errorf("platform setting %s is missing (identity-based host storage, Entra-authenticated telemetry)", name)
		}
	}
	if v, _ := settingValue(props, "AzureWebJobsStorage__credential"); v != "'managedidentity'" {
		t.Errorf("AzureWebJobsStorage__credential = %s, want 'managedidentity'", v)
	}
	if v, _ := settingValue(props, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"); !regexp.MustCompile(
		`^'ClientId=\$\{\w+\};Authorization=AAD'$`).MatchString(v) {
		t.Errorf("APPLICATIONINSIGHTS_AUTHENTICATION_STRING = %s, want 'ClientId=${<client id>};Authorization=AAD'", v)
	}
	// The client ID the host uses for storage and the one azscep uses must be the same identity.
	a, _ := settingValue(props, "AZURE_CLIENT_ID")
	b, _ := settingValue(props, "AzureWebJobsStorage__clientId")
	if a != b || a == "" {
		t.Errorf("AZURE_CLIENT_ID (%s) and AzureWebJobsStorage__clientId (%s) must be the same identity", a, b)
	}
}

func TestDeployNoForbiddenOrNondeterministicBicep(t *testing.T) {
	for _, rel := range bicepFiles(t) {
		code := stripComments(readRepoFile(t, rel))
		for _, bad := range forbiddenFlexSettings {
			if strings.Contains(code, bad) {
				t.Errorf("%s sets %s, which Flex Consumption does not allow", rel, bad)
			}
		}
		if regexp.MustCompile(`\bAzureWebJobsStorage\b[^_]`).MatchString(code) {
			t.Errorf("%s sets the AzureWebJobsStorage connection string; use the identity-based __ settings", rel)
		}
		for _, fn := range []string{"utcNow(", "newGuid("} {
			if strings.Contains(code, fn) {
				t.Errorf("%s calls %s: resource properties must be identical on every deployment", rel, fn)
			}
		}
	}
}

// TestDeployHostSettingReferences: every %NAME% a function.json reads is an app setting; an unresolvable one
// disables the function with an indexing error (azure-functions.md §1.7).
func TestDeployHostSettingReferences(t *testing.T) {
	props := appSettings(t)
	dirs, err := os.ReadDir(filepath.Join(repoRoot(t), "functions"))
	if err != nil {
		t.Fatal(err)
	}
	refs := 0
	for _, d := range dirs {
		body := readRepoFile(t, "functions/"+d.Name()+"/function.json")
		for _, m := range regexp.MustCompile(`%([A-Za-z0-9_]+)%`).FindAllStringSubmatch(body, -1) {
			refs++
			if _, ok := settingValue(props, m[1]); !ok {
				t.Errorf("functions/%s/function.json reads %%%s%% but the function app does not set it", d.Name(), m[1])
			}
		}
	}
	if refs == 0 {
		t.Error("no %SETTING% reference found; the revocation-sync schedule is expected to use %REVOCATION_SCHEDULE%")
	}
	v, ok := settingValue(props, "REVOCATION_SCHEDULE")
	lit, isLit := stringLiteral(v)
	if !ok || !isLit {
		t.Fatalf("REVOCATION_SCHEDULE must be set to a literal NCRONTAB, got %q", v)
	}
	if _, err := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).Parse(lit); err != nil {
		t.Errorf("REVOCATION_SCHEDULE %q is not a 6-field NCRONTAB: %v", lit, err)
	}
}

// TestDeployStaticChallengeIsKeyVaultReference: the challenge reaches the app only through a Key Vault reference
// to a secret the template creates from a @secure() parameter; no secret-bearing setting holds a literal.
func TestDeployStaticChallengeIsKeyVaultReference(t *testing.T) {
	props := appSettings(t)
	ref := regexp.MustCompile(`^'@Microsoft\.KeyVault\(SecretUri=\$\{(\w+)\}/\)'$`)
	v, ok := settingValue(props, "AZSCEP_SCEP_STATIC_SECRET")
	m := ref.FindStringSubmatch(v)
	if !ok || m == nil {
		t.Fatalf("AZSCEP_SCEP_STATIC_SECRET = %q, want '@Microsoft.KeyVault(SecretUri=${...}/)' (the versionless URI with its trailing slash)", v)
	}
	for _, p := range props {
		if strings.HasSuffix(p.Key, "_SECRET") && !ref.MatchString(p.Value) {
			t.Errorf("%s must be a Key Vault reference, not %s", p.Key, p.Value)
		}
	}

	app := loadBicep(t, functionAppModule)
	app.find(t, "param", m[1])
	site := app.resourcesOfType("Microsoft.Web/sites")
	if len(site) != 1 {
		t.Fatalf("want one Microsoft.Web/sites resource, found %d", len(site))
	}
	if v := mustLookup(t, "site", site[0].Value, "properties", "keyVaultReferenceIdentity"); v == "" {
		t.Error("keyVaultReferenceIdentity must name the user-assigned identity (references default to a system identity)")
	}

	// main.bicep feeds the secret URI from the Key Vault module's secret, created from a @secure() parameter.
	main := loadBicep(t, "infra/main.bicep")
	passed := mustLookup(t, "module functionApp", main.find(t, "module", "functionApp").Value, "params", m[1])
	om := regexp.MustCompile(`^(\w+)\.outputs\.(\w+)$`).FindStringSubmatch(passed)
	if om == nil {
		t.Fatalf("main.bicep passes %s = %s, want <module>.outputs.<name>", m[1], passed)
	}
	kvMod := main.find(t, "module", om[1])
	kvPath := "infra/" + strings.Trim(kvMod.Header, "'")
	kv := loadBicep(t, kvPath)
	out := kv.find(t, "output", om[2])
	sm := regexp.MustCompile(`^(\w+)\.properties\.secretUri$`).FindStringSubmatch(out.Value)
	if sm == nil {
		t.Fatalf("%s: output %s = %s, want <secret>.properties.secretUri (versionless)", kvPath, om[2], out.Value)
	}
	secret := kv.find(t, "resource", sm[1])
	if !strings.HasPrefix(secret.Header, "'Microsoft.KeyVault/vaults/secrets@") {
		t.Fatalf("%s: %s is %s, not a Key Vault secret", kvPath, sm[1], secret.Header)
	}
	valueParam := mustLookup(t, kvPath, secret.Value, "properties", "value")
	if !hasDecorator(kv.find(t, "param", valueParam), "@secure()") {
		t.Errorf("%s: the secret value comes from %s, which must be @secure()", kvPath, valueParam)
	}
	mainParam := mustLookup(t, "module "+om[1], kvMod.Value, "params", valueParam)
	if !hasDecorator(main.find(t, "param", mainParam), "@secure()") {
		t.Errorf("main.bicep: %s must be @secure()", mainParam)
	}
}

func hasDecorator(d decl, dec string) bool {
	for _, x := range d.Decorators {
		if x == dec {
			return true
		}
	}
	return false
}

// TestDeployedSettingsLoad evaluates the app settings the template produces (literals as written, parameters at
// their defaults, deployment-time values from representative samples) and loads them with config.Load: the
// deployed app must start, with and without the optional Intune and API settings.
func TestDeployedSettingsLoad(t *testing.T) {
	props := appSettings(t)
	app := loadBicep(t, functionAppModule)
	// Values known only at deployment time.
	samples := map[string]string{
		"AzureWebJobsStorage__clientId":         "00000000-0000-0000-0000-0000000000c1",
		"AzureWebJobsStorage__blobServiceUri":   "https://staz.blob.core.windows.net/",
		"AzureWebJobsStorage__queueServiceUri":  "https://staz.queue.core.windows.net/",
		"AzureWebJobsStorage__tableServiceUri":  "https://staz.table.core.windows.net/",
		"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
		"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=00000000-0000-0000-0000-0000000000c1;" +
			"Authorization=AAD",
		"AZURE_CLIENT_ID":        "00000000-0000-0000-0000-0000000000c1",
		"AZSCEP_BASE_URL":        "https://func-az.azurewebsites.net",
		"AZSCEP_TABLES_ENDPOINT": "https://staz.table.core.windows.net",
		"AZSCEP_TABLES_PREFIX":   "azscep",
		"AZSCEP_KEYVAULT_URL":    "https://kv-az.vault.azure.net/",
		"AZSCEP_CA_KEY_NAME":     "azscep-ca",
		"AZSCEP_KEK_NAME":        "azscep-kek",
		"AZSCEP_RA_MODE":         "envelope",
		// What App Service substitutes for the Key Vault reference.
		"AZSCEP_SCEP_STATIC_SECRET": "resolved-static-challenge-0123456789",
	}
	scenarios := []struct {
		name     string
		override map[string]string
		params   map[string]string // module parameters that feed no setting directly
		extra    map[string]string // additionalAppSettings
		intune   bool
		api      bool
		// endpoints are the SCEP endpoints that must load (default: static, and intune with Intune).
		endpoints []string
	}{
		{name: "minimal", override: map[string]string{}},
		{name: "intune and API", intune: true, api: true, override: map[string]string{
			"AZSCEP_INTUNE_TENANT_ID": "11111111-1111-1111-1111-111111111111",
			"AZSCEP_API_TENANT_ID":    "11111111-1111-1111-1111-111111111111",
			"AZSCEP_API_AUDIENCES":    "22222222-2222-2222-2222-222222222222,api://22222222-2222-2222-2222-222222222222",
		}},
		// An endpoint of the operator's own: named by extraScepEndpoints (AZSCEP_EXTRA_SCEP_ENDPOINTS), configured
		// by additionalAppSettings; the computed intune endpoint stays.
		{name: "extra endpoints", intune: true, endpoints: []string{"static", "intune", "routers", "gear"},
			override: map[string]string{"AZSCEP_INTUNE_TENANT_ID": "11111111-1111-1111-1111-111111111111"},
			params:   map[string]string{"extraScepEndpoints": "routers, gear"},
			extra: map[string]string{"AZSCEP_SCEP_ROUTERS": "profile=net", "AZSCEP_SCEP_ROUTERS_SECRET": "router-secret-0123",
				"AZSCEP_PROFILE_NET": "eku=clientAuth;dns=*.net.example.com", "AZSCEP_SCEP_GEAR_SECRET": "gear-secret-0123"}},
		{name: "extra endpoint without intune", endpoints: []string{"static", "routers"},
			override: map[string]string{}, params: map[string]string{"extraScepEndpoints": "routers"},
			extra: map[string]string{"AZSCEP_SCEP_ROUTERS_SECRET": "router-secret-0123"}},
	}
	// paramDefault resolves a bare identifier to the module parameter's literal default.
	paramDefault := func(ident string) (string, bool) {
		if !app.has("param", ident) {
			return "", false
		}
		return stringLiteral(app.find(t, "param", ident).Value)
	}
	operand := `(\w+|'(?:[^'\\]|\\.)*')`
	ternary := regexp.MustCompile(`^empty\((\w+)\)\s*\?\s*` + operand + `\s*:\s*` + operand + `$`)
	ident := regexp.MustCompile(`^\w+$`)
	interpolation := regexp.MustCompile(`\$\{(\w+)\}`)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			// identValue: the value a bare identifier has in this scenario (through the setting it feeds).
			identValue := func(ident string) (string, bool) {
				if v, ok := sc.params[ident]; ok {
					return v, true
				}
				for _, p := range props {
					if p.Value == ident {
						if v, ok := sc.override[p.Key]; ok {
							return v, true
						}
					}
				}
				return paramDefault(ident)
			}
			// eval: the value of a string literal (its ${identifier} parts evaluated), a variable, a parameter, or
			// empty(x) ? a : b of those; false for anything else (deployment-time values).
			var eval func(expr string) (string, bool)
			eval = func(expr string) (string, bool) {
				expr = strings.TrimSpace(expr)
				switch m := ternary.FindStringSubmatch(expr); {
				case m != nil:
					cond, known := identValue(m[1])
					if !known {
						return "", false
					}
					if cond == "" {
						return eval(m[2])
					}
					return eval(m[3])
				case ident.MatchString(expr) && app.has("var", expr):
					return eval(app.find(t, "var", expr).Value)
				case ident.MatchString(expr):
					return identValue(expr)
				case strings.HasPrefix(expr, "'") && !strings.HasPrefix(expr, "'''") && skipString(expr, 0) == len(expr):
					inner := expr[1 : len(expr)-1]
					var b strings.Builder
					last := 0
					for _, loc := range interpolation.FindAllStringSubmatchIndex(inner, -1) {
						lit, ok1 := stringLiteral("'" + inner[last:loc[0]] + "'")
						v, ok2 := eval(inner[loc[2]:loc[3]])
						if !ok1 || !ok2 {
							return "", false
						}
						b.WriteString(lit + v)
						last = loc[1]
					}
					lit, ok := stringLiteral("'" + inner[last:] + "'")
					b.WriteString(lit)
					return b.String(), ok
				}
				return "", false
			}
			env := []string{}
			for _, p := range props {
				v, ok := sc.override[p.Key]
				if !ok {
					v, ok = eval(p.Value)
				}
				if !ok {
					v, ok = samples[p.Key]
				}
				if !ok {
					t.Fatalf("no sample value for app setting %s = %s; add one to this test", p.Key, p.Value)
				}
				env = append(env, p.Key+"="+v)
			}
			for k, v := range sc.extra {
				env = append(env, k+"="+v)
			}
			c, err := Load(env)
			if err != nil {
				t.Fatalf("the deployed settings do not load: %v\n%s", err, strings.Join(env, "\n"))
			}
			if err := c.CheckServe(); err != nil {
				t.Fatal(err)
			}
			if len(c.Faults) != 0 {
				t.Fatalf("the deployed settings disable features: %v", c.Faults)
			}
			if c.Mode != ModeAzure || c.Intune.Enabled != sc.intune || c.API.Enabled != sc.api {
				t.Errorf("mode %s, intune %t, api %t; want azure, %t, %t", c.Mode, c.Intune.Enabled, c.API.Enabled,
					sc.intune, sc.api)
			}
			var static bool
			var names []string
			for _, e := range c.Endpoints {
				if e.Name == "static" && e.Secret == samples["AZSCEP_SCEP_STATIC_SECRET"] {
					static = true
				}
				names = append(names, e.Name)
			}
			if !static {
				t.Errorf("the static endpoint must exist and use the Key Vault secret: %+v", c.Endpoints)
			}
			want := sc.endpoints
			if want == nil {
				want = []string{"static"}
				if sc.intune {
					want = append(want, "intune")
				}
			}
			if !slices.Equal(names, want) {
				t.Errorf("endpoints %v, want %v", names, want)
			}
		})
	}
}

// --- resources ---------------------------------------------------------------------------------------------------

func TestDeployFunctionApp(t *testing.T) {
	app := loadBicep(t, functionAppModule)
	plans := app.resourcesOfType("Microsoft.Web/serverfarms")
	sites := app.resourcesOfType("Microsoft.Web/sites")
	if len(plans) != 1 || len(sites) != 1 {
		t.Fatalf("want one plan and one site, found %d and %d", len(plans), len(sites))
	}
	plan, site := plans[0].Value, sites[0].Value
	checks := []struct {
		where, expr string
		path        []string
		want        string
	}{
		{"plan", plan, []string{"sku", "name"}, "'FC1'"},
		{"plan", plan, []string{"sku", "tier"}, "'FlexConsumption'"},
		{"plan", plan, []string{"properties", "reserved"}, "true"},
		{"site", site, []string{"kind"}, "'functionapp,linux'"},
		{"site", site, []string{"identity", "type"}, "'UserAssigned'"},
		{"site", site, []string{"properties", "httpsOnly"}, "true"},
		{"site", site, []string{"properties", "functionAppConfig", "runtime", "name"}, "'custom'"},
		{"site", site, []string{"properties", "functionAppConfig", "runtime", "version"}, "'1.0'"},
		{"site", site, []string{"properties", "functionAppConfig", "deployment", "storage", "type"}, "'blobContainer'"},
		{"site", site, []string{"properties", "functionAppConfig", "deployment", "storage", "authentication", "type"},
			"'UserAssignedIdentity'"},
	}
	for _, c := range checks {
		if got := mustLookup(t, c.where, c.expr, c.path...); got != c.want {
			t.Errorf("%s %s = %s, want %s", c.where, strings.Join(c.path, "."), got, c.want)
		}
	}
	for _, p := range [][]string{
		{"properties", "functionAppConfig", "scaleAndConcurrency", "maximumInstanceCount"},
		{"properties", "functionAppConfig", "scaleAndConcurrency", "instanceMemoryMB"},
		{"properties", "functionAppConfig", "deployment", "storage", "authentication", "userAssignedIdentityResourceId"},
	} {
		mustLookup(t, "site", site, p...)
	}
	if _, err := lookup(site, "properties", "siteConfig", "linuxFxVersion"); err == nil {
		t.Error("linuxFxVersion must not be set on Flex Consumption")
	}
}

// TestDeployServiceTag: azd finds the app by the azd-service-name tag, which must equal the service in azure.yaml.
func TestDeployServiceTag(t *testing.T) {
	app := loadBicep(t, functionAppModule)
	site := app.resourcesOfType("Microsoft.Web/sites")[0]
	tags := mustLookup(t, "site", site.Value, "tags")
	m := regexp.MustCompile(`^union\(\s*tags\s*,\s*(\{[\s\S]*\})\s*\)$`).FindStringSubmatch(tags)
	if m == nil {
		t.Fatalf("site tags = %s, want union(tags, {'azd-service-name': ...})", tags)
	}
	ident := mustLookup(t, "site tags", m[1], "azd-service-name")
	app.find(t, "param", ident)
	main := loadBicep(t, "infra/main.bicep")
	passed := mustLookup(t, "module functionApp", main.find(t, "module", "functionApp").Value, "params", ident)
	name, ok := stringLiteral(passed)
	if !ok {
		name, ok = stringLiteral(main.find(t, "var", passed).Value)
	}
	if !ok {
		t.Fatalf("main.bicep: the service name %s is not a literal or a literal var", passed)
	}
	services := yamlChildren(parseYAML(t, readRepoFile(t, "azure.yaml")), "services")
	if len(services) != 1 || services[0] != name {
		t.Errorf("azd-service-name tag is %q, azure.yaml services are %v", name, services)
	}
	// The resource group carries azd-env-name so azd finds it.
	rg := main.resourcesOfType("Microsoft.Resources/resourceGroups")
	if len(rg) != 1 || mustLookup(t, "resource group", rg[0].Value, "tags") != "tags" ||
		mustLookup(t, "tags", main.find(t, "var", "tags").Value, "azd-env-name") != "environmentName" {
		t.Error("the resource group must be tagged azd-env-name: environmentName")
	}
	if main.find(t, "targetScope", "").Value != "'subscription'" {
		t.Error("main.bicep must target the subscription (it creates the resource group)")
	}
}

func TestDeployStorageAndKeyVault(t *testing.T) {
	st := loadBicep(t, "infra/modules/storage.bicep")
	accounts := st.resourcesOfType("Microsoft.Storage/storageAccounts")
	if len(accounts) != 1 {
		t.Fatalf("want one storage account, found %d", len(accounts))
	}
	for path, want := range map[string]string{
		"properties.allowSharedKeyAccess":     "false",
		"properties.allowBlobPublicAccess":    "false",
		"properties.minimumTlsVersion":        "'TLS1_2'",
		"properties.supportsHttpsTrafficOnly": "true",
	} {
		if got := mustLookup(t, "storage", accounts[0].Value, strings.Split(path, ".")...); got != want {
			t.Errorf("storage %s = %s, want %s", path, got, want)
		}
	}
	if len(st.resourcesOfType("Microsoft.Storage/storageAccounts/blobServices/containers")) != 1 {
		t.Error("storage.bicep must create the deployment container")
	}
	if len(st.resourcesOfType("Microsoft.Storage/storageAccounts/tableServices/tables")) != 1 {
		t.Error("storage.bicep must create the CA tables")
	}

	// The tables main.bicep creates are the ones internal/store/tables uses.
	main := loadBicep(t, "infra/main.bicep")
	items, err := parseArray(main.find(t, "var", "tableSuffixes").Value)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		lit, ok := stringLiteral(it)
		if !ok {
			t.Fatalf("tableSuffixes item %s is not a literal", it)
		}
		got = append(got, lit)
	}
	want := []string{tables.TableCerts, tables.TableRevoked, tables.TableMeta, tables.TableRevReq,
		tables.TableRuns}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("main.bicep tableSuffixes = %v, internal/store/tables uses %v", got, want)
	}
	prefix, _ := stringLiteral(main.find(t, "param", "tablesPrefix").Value)
	if def, _ := knownSetting("AZSCEP_TABLES_PREFIX"); prefix != def.Default {
		t.Errorf("main.bicep tablesPrefix default %q differs from the AZSCEP_TABLES_PREFIX default %q", prefix, def.Default)
	}

	kv := loadBicep(t, "infra/modules/keyvault.bicep")
	vaults := kv.resourcesOfType("Microsoft.KeyVault/vaults")
	if len(vaults) != 1 {
		t.Fatalf("want one vault, found %d", len(vaults))
	}
	for path, want := range map[string]string{
		"properties.enableRbacAuthorization": "true",
		"properties.enablePurgeProtection":   "true",
		"properties.enableSoftDelete":        "true",
		"properties.sku.name":                "skuName",
	} {
		if got := mustLookup(t, "vault", vaults[0].Value, strings.Split(path, ".")...); got != want {
			t.Errorf("vault %s = %s, want %s", path, got, want)
		}
	}
	// Premium (HSM) exactly when an HSM key type is chosen.
	sku := mustLookup(t, "module keyVault", main.find(t, "module", "keyVault").Value, "params", "skuName")
	if sku != "endsWith(caKeyType, '-HSM') ? 'premium' : 'standard'" {
		t.Errorf("vault SKU = %s; want premium for RSA-HSM/EC-HSM, standard otherwise", sku)
	}
	if len(kv.resourcesOfType("Microsoft.KeyVault/vaults/keys")) != 0 {
		t.Error("the CA key must be created by `azscep ca init`, never by the template (a redeployment could re-version it)")
	}
}

// builtinRoles are the built-in role definition IDs (azure-functions.md §4.3, "Azure built-in roles").
var builtinRoles = map[string]string{
	"keyVaultCryptoUser":          "12338af0-0e69-4776-bea7-57ae8d297424",
	"keyVaultCryptoOfficer":       "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
	"keyVaultSecretsUser":         "4633458b-17de-408a-b874-0445c86b69e6",
	"keyVaultSecretsOfficer":      "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
	"keyVaultCertificatesOfficer": "a4417e6f-fecd-4de8-b567-7b0420556985",
	"keyVaultCertificateUser":     "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
	"keyVaultReader":              "21090545-7ca7-4776-b22c-e363652d74d2",
	"keyVaultAdministrator":       "00482a5a-887f-4fb3-b363-3b7fe8e74483",
	"storageBlobDataOwner":        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
	"storageBlobDataContributor":  "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
	"storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
	"storageTableDataReader":      "76199698-9eea-4c19-bc75-cec21354c6b6",
	"storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
	"monitoringMetricsPublisher":  "3913510d-42f4-4e42-8a64-420c390055eb",
}

// TestDeployRoleAssignments: the GUIDs are the built-in roles they claim to be, and the grants are exactly the
// least-privilege set: nothing missing, nothing extra.
func TestDeployRoleAssignments(t *testing.T) {
	const rolesPath = "infra/modules/roles.bicep"
	rf := loadBicep(t, rolesPath)
	roleProps, err := parseObject(rf.find(t, "var", "roleIds").Value)
	if err != nil {
		t.Fatal(err)
	}
	roleIDs := map[string]string{}
	for _, p := range roleProps {
		guid, ok := stringLiteral(p.Value)
		want, known := builtinRoles[p.Key]
		switch {
		case !ok:
			t.Errorf("roleIds.%s = %s is not a literal", p.Key, p.Value)
		case !known:
			t.Errorf("roleIds.%s is not a built-in role this test knows", p.Key)
		case guid != want:
			t.Errorf("roleIds.%s = %s, want %s", p.Key, guid, want)
		}
		roleIDs[p.Key] = guid
	}
	// No role GUID hides outside the table.
	guidRE := regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	for _, rel := range bicepFiles(t) {
		code := stripComments(readRepoFile(t, rel))
		if rel == rolesPath {
			code = strings.Replace(code, rf.find(t, "var", "roleIds").Value, "", 1)
		}
		if g := guidRE.FindString(code); g != "" {
			t.Errorf("%s: GUID %s outside roles.bicep's roleIds table", rel, g)
		}
	}

	// Resolve each for-loop of role assignments to (principal, scope, role) grants.
	arrays := map[string][]string{}
	for _, d := range rf.Decls {
		if d.Kind != "var" || !strings.HasPrefix(d.Value, "[") {
			continue
		}
		items, err := parseArray(d.Value)
		if err != nil {
			continue
		}
		for _, it := range items {
			m := regexp.MustCompile(`^roleIds\.(\w+)$`).FindStringSubmatch(it)
			if m == nil {
				t.Fatalf("%s: var %s item %s is not roleIds.<name>", rolesPath, d.Name, it)
			}
			arrays[d.Name] = append(arrays[d.Name], m[1])
		}
	}
	got := map[string]bool{}
	assignments := rf.resourcesOfType("Microsoft.Authorization/roleAssignments")
	if len(assignments) == 0 {
		t.Fatal("no role assignments")
	}
	for _, a := range assignments {
		source, body, err := loopBody(a.Value)
		if err != nil {
			t.Fatalf("%s: %s: %v", rolesPath, a.Name, err)
		}
		var roles []string
		for _, w := range regexp.MustCompile(`\w+`).FindAllString(source, -1) {
			roles = append(roles, arrays[w]...)
		}
		if len(roles) == 0 {
			t.Fatalf("%s: %s loops over %s, which names no role array", rolesPath, a.Name, source)
		}
		principal := mustLookup(t, a.Name, body, "properties", "principalId")
		scope := mustLookup(t, a.Name, body, "scope")
		if def := mustLookup(t, a.Name, body, "properties", "roleDefinitionId"); !regexp.MustCompile(
			`^subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions',\s*\w+\)$`).MatchString(def) {
			t.Errorf("%s: roleDefinitionId = %s", a.Name, def)
		}
		if name := mustLookup(t, a.Name, body, "name"); !strings.HasPrefix(name, "guid("+scope+".id, "+principal+",") {
			t.Errorf("%s: name = %s, want guid(<scope>.id, <principal>, <role>) so re-deploys are idempotent", a.Name, name)
		}
		if typ := mustLookup(t, a.Name, body, "properties", "principalType"); principal == "identityPrincipalId" &&
			typ != "'ServicePrincipal'" {
			t.Errorf("%s: principalType for the managed identity = %s, want 'ServicePrincipal'", a.Name, typ)
		}
		for _, r := range roles {
			got[principal+" "+scope+" "+r] = true
		}
	}
	want := []string{
		"identityPrincipalId storage storageBlobDataOwner",
		"identityPrincipalId storage storageTableDataContributor",
		"identityPrincipalId storage storageQueueDataContributor",
		"identityPrincipalId vault keyVaultCryptoUser",
		"identityPrincipalId vault keyVaultSecretsUser",
		"identityPrincipalId appInsights monitoringMetricsPublisher",
		"adminPrincipalId vault keyVaultCryptoOfficer",
		"adminPrincipalId vault keyVaultSecretsOfficer",
		"adminPrincipalId storage storageTableDataContributor",
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing role assignment: %s", w)
		}
		delete(got, w)
	}
	for extra := range got {
		t.Errorf("unexpected role assignment (least privilege): %s", extra)
	}
	// The scopes are the resources of the same names, and main.bicep passes the right principals.
	for scope, typ := range map[string]string{"storage": "Microsoft.Storage/storageAccounts",
		"vault": "Microsoft.KeyVault/vaults", "appInsights": "Microsoft.Insights/components"} {
		if !strings.HasPrefix(rf.find(t, "resource", scope).Header, "'"+typ+"@") {
			t.Errorf("scope %s is not a %s", scope, typ)
		}
	}
	main := loadBicep(t, "infra/main.bicep")
	rolesMod := main.find(t, "module", "roles").Value
	if v := mustLookup(t, "module roles", rolesMod, "params", "identityPrincipalId"); v != "identity.outputs.principalId" {
		t.Errorf("roles identityPrincipalId = %s", v)
	}
	if v := mustLookup(t, "module roles", rolesMod, "params", "adminPrincipalId"); v != "principalId" {
		t.Errorf("roles adminPrincipalId = %s", v)
	}
}

// TestDeployModulesAndParameters: local module files only (no registry modules), none orphaned, and every main
// parameter either has a default or comes from the azd environment.
func TestDeployModulesAndParameters(t *testing.T) {
	referenced := map[string]bool{}
	for _, rel := range bicepFiles(t) {
		code := stripComments(readRepoFile(t, rel))
		if regexp.MustCompile(`'(br|ts)[:/]`).MatchString(code) {
			t.Errorf("%s references a registry module or template spec; keep infra/ plain", rel)
		}
		for _, d := range parseBicep(code) {
			if d.Kind != "module" {
				continue
			}
			path, ok := stringLiteral(d.Header)
			if !ok {
				t.Errorf("%s: module %s has no plain path: %s", rel, d.Name, d.Header)
				continue
			}
			target := filepath.ToSlash(filepath.Join(filepath.Dir(rel), path))
			if _, err := os.Stat(filepath.Join(repoRoot(t), target)); err != nil {
				t.Errorf("%s: module %s: %v", rel, d.Name, err)
			}
			referenced[target] = true
		}
	}
	for _, rel := range bicepFiles(t) {
		if rel != "infra/main.bicep" && !referenced[rel] {
			t.Errorf("%s is not used by any module declaration", rel)
		}
	}

	params := parameterValues(t)
	main := loadBicep(t, "infra/main.bicep")
	for name := range params {
		if !main.has("param", name) {
			t.Errorf("main.parameters.json sets %s, which main.bicep does not declare", name)
		}
	}
	for _, d := range main.Decls {
		if d.Kind != "param" || d.Value != "" {
			continue
		}
		if _, ok := params[d.Name]; !ok {
			t.Errorf("main.bicep param %s has no default and is not in main.parameters.json (azd would prompt)", d.Name)
		}
	}
	for name, env := range map[string]string{"environmentName": "${AZURE_ENV_NAME}", "location": "${AZURE_LOCATION}",
		"principalId": "${AZURE_PRINCIPAL_ID}"} {
		if v, _ := params[name].(string); v != env {
			t.Errorf("main.parameters.json %s = %v, want %s", name, params[name], env)
		}
	}
}

// TestDeployOutputs: the outputs the scripts and the operator's guide rely on exist, and AZURE_CLIENT_ID is not
// one of them (the admin CLI would then try the app's managed identity instead of the admin's credential).
func TestDeployOutputs(t *testing.T) {
	main := loadBicep(t, "infra/main.bicep")
	outputs := map[string]bool{}
	for _, d := range main.Decls {
		if d.Kind == "output" {
			outputs[d.Name] = true
		}
	}
	for _, name := range []string{"SCEP_URL_STATIC", "SCEP_URL_INTUNE", "CSR_URL", "AZURE_MANAGED_IDENTITY_CLIENT_ID",
		"AZURE_MANAGED_IDENTITY_PRINCIPAL_ID", "AZSCEP_KEYVAULT_URL", "AZSCEP_TABLES_ENDPOINT", "AZURE_FUNCTION_APP_NAME",
		"AZSCEP_BASE_URL", "AZURE_TENANT_ID", "AZURE_KEY_VAULT_NAME"} {
		if !outputs[name] {
			t.Errorf("main.bicep has no output %s", name)
		}
	}
	if outputs["AZURE_CLIENT_ID"] {
		t.Error("main.bicep must not output AZURE_CLIENT_ID")
	}
	// publicBaseUrl loses a trailing slash before anything joins a path to it (https://ca.contoso.com//api/ca
	// otherwise): the module gets it normalised, and every URL output joins the module's baseUrl.
	passed := mustLookup(t, "module functionApp", main.find(t, "module", "functionApp").Value, "params", "publicBaseUrl")
	norm := regexp.MustCompile(`^endsWith\(publicBaseUrl, '/'\) \? substring\(publicBaseUrl, 0, length\(publicBaseUrl\) - 1\) : publicBaseUrl$`)
	if !regexp.MustCompile(`^\w+$`).MatchString(passed) || !main.has("var", passed) || !norm.MatchString(main.find(t, "var", passed).Value) {
		t.Errorf("main.bicep passes publicBaseUrl: %s, want a var that strips a trailing slash from publicBaseUrl", passed)
	}
	for _, d := range main.Decls {
		if d.Kind == "param" || (d.Kind == "var" && d.Name == passed) {
			continue
		}
		// Only the normalising var reads the raw parameter ("publicBaseUrl:" is a property name, not a use).
		if regexp.MustCompile(`\bpublicBaseUrl\b`).MatchString(regexp.MustCompile(`\bpublicBaseUrl\s*:`).ReplaceAllString(d.Value, "")) {
			t.Errorf("main.bicep %s %s uses the raw publicBaseUrl; use %s", d.Kind, d.Name, passed)
		}
		if d.Kind == "output" && strings.Contains(d.Value, "/api/") && !strings.HasPrefix(d.Value, "'${functionApp.outputs.baseUrl}/api/") {
			t.Errorf("main.bicep output %s = %s, want '${functionApp.outputs.baseUrl}/api/...'", d.Name, d.Value)
		}
	}
	// Every variable a script requires from the azd environment is an output.
	dir := filepath.Join(repoRoot(t), "infra", "scripts")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	required := 0
	for _, e := range entries {
		body := readRepoFile(t, "infra/scripts/"+e.Name())
		for _, m := range regexp.MustCompile(`(?m)^\s*require_vars\s+([A-Z0-9_ ]+)$`).FindAllStringSubmatch(body, -1) {
			for _, v := range strings.Fields(m[1]) {
				required++
				if !outputs[v] {
					t.Errorf("infra/scripts/%s requires %s, which main.bicep does not output", e.Name(), v)
				}
			}
		}
	}
	if required == 0 {
		t.Error("no require_vars found in infra/scripts; the admin scripts need the provisioned endpoints")
	}
}

// --- azure.yaml --------------------------------------------------------------------------------------------------

// parseYAML reads the block-mapping subset of YAML azure.yaml uses into dotted paths ("services.azscep.host").
// Sequences and flow collections are rejected so that a later edit cannot silently escape the checks.
func parseYAML(t *testing.T, src string) map[string]string {
	t.Helper()
	out := map[string]string{}
	type level struct {
		indent int
		key    string
	}
	var stack []level
	for n, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasPrefix(trimmed, "- ") || strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[") {
			t.Fatalf("azure.yaml line %d: sequences and flow collections are not supported by this check", n+1)
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		key, value, ok := strings.Cut(trimmed, ":")
		if !ok {
			t.Fatalf("azure.yaml line %d: not key: value", n+1)
		}
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		path := key
		if len(stack) > 0 {
			path = stack[len(stack)-1].key + "." + key
		}
		value = strings.TrimSpace(value)
		if i := strings.Index(value, " #"); i >= 0 {
			value = strings.TrimSpace(value[:i])
		}
		if strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">") {
			t.Fatalf("azure.yaml line %d: block scalars are not supported by this check", n+1)
		}
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		if value == "" {
			stack = append(stack, level{indent, path})
			continue
		}
		out[path] = value
	}
	return out
}

// yamlChildren lists the direct child keys of a path.
func yamlChildren(doc map[string]string, parent string) []string {
	seen := map[string]bool{}
	var out []string
	for path := range doc {
		if rest, ok := strings.CutPrefix(path, parent+"."); ok {
			child, _, _ := strings.Cut(rest, ".")
			if !seen[child] {
				seen[child] = true
				out = append(out, child)
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestDeployAzureYAML(t *testing.T) {
	doc := parseYAML(t, readRepoFile(t, "azure.yaml"))
	if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(doc["name"]) {
		t.Errorf("azure.yaml name %q is not a valid azd project name", doc["name"])
	}
	// language: custom exists since azd 1.20.0: an older azd must refuse the project rather than fail at packaging.
	if v := doc["requiredVersions.azd"]; v != ">= 1.20.0" {
		t.Errorf("azure.yaml requiredVersions.azd = %q, want \">= 1.20.0\" (language: custom)", v)
	}
	services := yamlChildren(doc, "services")
	if len(services) != 1 {
		t.Fatalf("want one service, got %v", services)
	}
	svc := "services." + services[0] + "."
	for key, want := range map[string]string{"host": "function", "language": "custom", "project": ".", "dist": "dist",
		"hooks.prepackage.posix.run": "make dist"} {
		if got := doc[svc+key]; got != want {
			t.Errorf("azure.yaml %s%s = %q, want %q", svc, key, got, want)
		}
	}
	// The prepackage hook needs the target (its layout is checked by the handler's dist test).
	if !regexp.MustCompile(`(?m)^dist:`).MatchString(readRepoFile(t, "Makefile")) {
		t.Error("Makefile has no dist target for the prepackage hook")
	}

	// The windows variants only stop with a message (TestDeployWindowsFailsFast).
	for _, shell := range []string{"posix"} {
		run := doc["hooks.postprovision."+shell+".run"]
		m := regexp.MustCompile(`^bash \./(infra/scripts/postprovision\.sh)$`).FindStringSubmatch(run)
		if m == nil {
			t.Errorf("azure.yaml hooks.postprovision.%s.run = %q, want bash ./infra/scripts/postprovision.sh", shell, run)
			continue
		}
		readRepoFile(t, m[1])
	}
}

// TestDeployScripts: the scripts azure.yaml and the guide name exist, are bash, and the postprovision hook runs
// the admin CLI's idempotent `ca init` built from ./handler.
func TestDeployScripts(t *testing.T) {
	for _, name := range []string{"postprovision.sh", "azscep-admin.sh", "create-api-app.sh", "grant-intune.sh"} {
		body := readRepoFile(t, "infra/scripts/"+name)
		if !strings.HasPrefix(body, "#!/usr/bin/env bash\n") || !strings.Contains(body, "set -euo pipefail") {
			t.Errorf("%s must be a bash script with set -euo pipefail", name)
		}
	}
	common := readRepoFile(t, "infra/scripts/common.sh")
	if !strings.Contains(common, "go build -o .local/bin/azscep ./handler") {
		t.Error("common.sh must build the admin CLI from ./handler into .local/bin/azscep")
	}
	post := readRepoFile(t, "infra/scripts/postprovision.sh")
	if !strings.Contains(post, "args=(ca init") || !strings.Contains(post, "azscep-admin.sh") {
		t.Error("postprovision.sh must run `ca init` through azscep-admin.sh")
	}
	// Azure documents up to 10 minutes for a role assignment to apply: the hook's retries must outlast that, or a
	// first `azd up` stops at postprovision and never deploys the code.
	tries := regexp.MustCompile(`attempts=\$\{AZSCEP_CA_INIT_ATTEMPTS:-(\d+)\}`).FindStringSubmatch(post)
	delay := regexp.MustCompile(`(?m)^delay=(\d+)$`).FindStringSubmatch(post)
	if tries == nil || delay == nil {
		t.Error("postprovision.sh must set attempts=${AZSCEP_CA_INIT_ATTEMPTS:-N} and delay=S")
	} else {
		n, _ := strconv.Atoi(tries[1])
		d, _ := strconv.Atoi(delay[1])
		if (n-1)*d < 600 {
			t.Errorf("postprovision.sh tries ca init %d times %d s apart: under the 10 minutes a role assignment may take", n, d)
		}
	}
	admin := readRepoFile(t, "infra/scripts/azscep-admin.sh")
	if !strings.Contains(admin, "-u AZURE_CLIENT_ID") || !strings.Contains(admin, "AZSCEP_MODE=azure") {
		t.Error("azscep-admin.sh must run in azure mode without AZURE_CLIENT_ID (the admin's own credential)")
	}
	intune := readRepoFile(t, "infra/scripts/grant-intune.sh")
	for _, s := range []string{"c161e42e-d4df-4a3d-9b42-e7a3c31f59d4", "39d724e8-6a34-4930-9a36-364082c35716",
		"scep_challenge_provider", "Application.Read.All", "User.Read.All", "Directory.Read.All", "Device.Read.All", "DeviceManagementManagedDevices.Read.All"} {
		if !strings.Contains(intune, s) {
			t.Errorf("grant-intune.sh does not mention %s", s)
		}
	}
	api := readRepoFile(t, "infra/scripts/create-api-app.sh")
	for _, s := range []string{"CSR.Request.Db", "CSR.SelfService", "Certificates.Manage", "Certificates.Read", "requestedAccessTokenVersion: 2",
		"api://", "AZSCEP_API_TENANT_ID", "AZSCEP_API_AUDIENCES",
		// The optional access-token claims /api/csr relies on: app vs user, the binding UPN, guest status.
		`("idtyp", "upn", "acct")`} {
		if !strings.Contains(api, s) {
			t.Errorf("create-api-app.sh does not mention %s", s)
		}
	}
}

// TestPostprovisionRetries runs infra/scripts/postprovision.sh with a stand-in for azscep-admin.sh (and go, sleep
// and azd that do nothing): a failure such as a role assignment not applied yet (exit 1) is retried up to
// AZSCEP_CA_INIT_ATTEMPTS times; a configuration error (exit 2) stops at once, except a host that "does not
// resolve", which a vault created or recovered minutes ago may not do yet: that one is retried for the first 9 tries.
func TestPostprovisionRetries(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run the infra scripts")
	}
	const unresolved = `echo "azscep: configuration error: Key Vault host kv-x.vault.azure.net does not resolve (no such host): check AZSCEP_KEYVAULT_URL (the vault name)"; exit 2`
	// What the CLI prints when azd's credential gets no Key Vault token (handler/azure.go, describeIdentity): no role
	// assignment fixes that, so the hook must not wait 12 minutes on it.
	const signin = `echo "azscep: signing in for Key Vault: AzureDeveloperCLICredential: ERROR: AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication"; exit 1`
	if !strings.Contains(readRepoFile(t, "handler/azure.go"), `"signing in for Key Vault: %w"`) {
		t.Fatal(`handler/azure.go no longer says "signing in for Key Vault", which postprovision.sh recognises a failed sign-in by`)
	}
	for _, tc := range []struct {
		name     string
		admin    string // the stand-in's body; $n is the try, from 1
		attempts string // AZSCEP_CA_INIT_ATTEMPTS
		tries    int
		ok       bool
		says     string // in the output when it fails
	}{
		{"first try", `exit 0`, "", 1, true, ""},
		{"role assignment applies", `[ "$n" -ge 4 ] && exit 0; echo "403 Forbidden"; exit 1`, "", 4, true, ""},
		{"role assignment never applies", `exit 1`, "5", 5, false, ""},
		{"configuration error", `echo "azscep: configuration error: setting AZSCEP_CA_SUBJECT: bad"; exit 2`, "", 1, false, ""},
		{"new vault appears in DNS", `[ "$n" -ge 3 ] && exit 0; ` + unresolved, "", 3, true, ""},
		{"name never resolves", unresolved, "", 9, false, ""},
		{"fewer attempts asked for", unresolved, "4", 4, false, ""},
		{"resolves, then another configuration error", `[ "$n" -ge 2 ] && { echo "azscep: configuration error: other"; exit 2; }; ` + unresolved, "", 2, false, ""},
		// A sign-in azd cannot complete stops after three tries with what to do, not after 36 (12 minutes).
		{"sign-in refused", signin, "", 3, false, "azd auth login"},
		{"sign-in blip", `[ "$n" -ge 2 ] && exit 0; ` + signin, "", 2, true, ""},
		{"sign-in refused, fewer attempts asked for", signin, "2", 2, false, "azd auth login"},
		{"signs in, then waits for its role", `[ "$n" -ge 5 ] && exit 0; [ "$n" -ge 2 ] && { echo "403 Forbidden"; exit 1; }; ` + signin, "", 5, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			scripts := filepath.Join(dir, "infra", "scripts")
			stubs := filepath.Join(dir, "stubs")
			count := filepath.Join(dir, "count")
			for _, d := range []string{scripts, stubs} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			files := map[string]string{
				filepath.Join(scripts, "postprovision.sh"): readRepoFile(t, "infra/scripts/postprovision.sh"),
				filepath.Join(scripts, "common.sh"):        readRepoFile(t, "infra/scripts/common.sh"),
				filepath.Join(scripts, "azscep-admin.sh"): "#!/usr/bin/env bash\nn=$(($(cat \"$COUNT\" 2>/dev/null || echo 0) + 1))\n" +
					"echo \"$n\" >\"$COUNT\"\n" + tc.admin + "\n",
				filepath.Join(stubs, "go"):    "#!/bin/sh\nexit 0\n",
				filepath.Join(stubs, "sleep"): "#!/bin/sh\nexit 0\n",
				filepath.Join(stubs, "azd"):   "#!/bin/sh\nexit 1\n", // no azd environment to load
			}
			for name, body := range files {
				if err := os.WriteFile(name, []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(bash, filepath.Join(scripts, "postprovision.sh"))
			cmd.Env = []string{"PATH=" + stubs + string(os.PathListSeparator) + os.Getenv("PATH"), "COUNT=" + count,
				"AZSCEP_BASE_URL=https://func-x.azurewebsites.net", "AZSCEP_TABLES_ENDPOINT=https://stx.table.core.windows.net",
				"AZSCEP_KEYVAULT_URL=https://kv-x.vault.azure.net/", "AZURE_TENANT_ID=11111111-1111-1111-1111-111111111111"}
			if tc.attempts != "" {
				cmd.Env = append(cmd.Env, "AZSCEP_CA_INIT_ATTEMPTS="+tc.attempts)
			}
			out, err := cmd.CombinedOutput()
			data, _ := os.ReadFile(count)
			tries, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			if tries != tc.tries || (err == nil) != tc.ok {
				t.Errorf("%d tries, err %v; want %d tries, success %t\n%s", tries, err, tc.tries, tc.ok, out)
			}
			if !tc.ok && !strings.Contains(string(out), "azscep ca init failed") {
				t.Errorf("no failure message:\n%s", out)
			}
			if tc.says != "" && !strings.Contains(string(out), tc.says) {
				t.Errorf("the failure does not say %q:\n%s", tc.says, out)
			}
		})
	}
}

// --- local.settings.sample.json ----------------------------------------------------------------------------------

func TestLocalSettingsSample(t *testing.T) {
	var sample struct {
		IsEncrypted *bool             `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"` // Core Tools requires string values
	}
	if err := json.Unmarshal([]byte(readRepoFile(t, "local.settings.sample.json")), &sample); err != nil {
		t.Fatalf("local.settings.sample.json: %v (all Values must be strings)", err)
	}
	if sample.IsEncrypted == nil || *sample.IsEncrypted {
		t.Error("IsEncrypted must be false")
	}
	for _, s := range Settings {
		if s.Prefixed {
			continue
		}
		if _, ok := sample.Values[s.Name]; !ok {
			t.Errorf("local.settings.sample.json does not list %s", s.Name)
		}
	}
	if v := sample.Values["FUNCTIONS_WORKER_RUNTIME"]; !strings.EqualFold(v, "custom") {
		t.Errorf("FUNCTIONS_WORKER_RUNTIME = %q, want custom (Core Tools)", v)
	}
	if v := sample.Values["AzureWebJobsStorage"]; v != "UseDevelopmentStorage=true" {
		t.Errorf("AzureWebJobsStorage = %q, want UseDevelopmentStorage=true (Azurite)", v)
	}
	for name := range sample.Values {
		if _, ok := knownSetting(name); !ok && name != "FUNCTIONS_WORKER_RUNTIME" && name != "AzureWebJobsStorage" {
			t.Errorf("local.settings.sample.json lists %s, which no one reads", name)
		}
	}
}

// TestGrantIntuneScript runs infra/scripts/grant-intune.sh against a stand-in for the Azure CLI that records the
// app role assignments it is asked to make: with Intune in the tenant, the Intune role and five Graph permissions;
// in a tenant without Intune, only the five Graph permissions the REST API needs (User.Read.All and
// Application.Read.All for the account re-read among them, Directory.Read.All for the admin API's users' roles),
// and --set-azd-env, which would enable the Intune endpoint, fails.
func TestGrantIntuneScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run the infra scripts")
	}
	const principal = "22222222-2222-2222-2222-222222222222"
	// az answers by what it is asked: the tenant, a service principal by appId (Intune's only when INTUNE=1), an
	// app role's ID by value, no existing assignments; a POST records its body.
	az := `#!/usr/bin/env bash
args="$*"
case "$args" in
"account show"*) echo 11111111-1111-1111-1111-111111111111 ;;
"cloud show"*) echo https://graph.microsoft.com/ ;;
*"appId eq 'c161e42e-d4df-4a3d-9b42-e7a3c31f59d4'"*) [ "$INTUNE" = fail ] && { echo "throttled" >&2; exit 1; }; [ "$INTUNE" = 1 ] && echo intune-sp; exit 0 ;;
*"appId eq '00000003-0000-0000-c000-000000000000'"*) echo graph-sp ;;
*"--method GET"*"/appRoleAssignments"*) ;;
*"--method GET"*"appRoles"*) v=${args#*value==\'}; v=${v%%\'*}; [ "$v" = "$NOROLE" ] || echo "role-$v" ;;
*"--method POST"*)
	# A managed identity created minutes ago: Graph refuses the first assignment until it has replicated it.
	if [ -n "$REPLICATING" ] && [ ! -e "$GRANTS.seen" ]; then
		touch "$GRANTS.seen"; echo 'ERROR: Bad Request({"error":{"code":"Request_BadRequest","message":"Not a valid reference update."}})' >&2; exit 1
	fi
	b=${args#*--body }; echo "$b" >>"$GRANTS" ;;
*) echo "unexpected az $args" >&2; exit 3 ;;
esac
`
	for _, tc := range []struct {
		name   string
		intune bool
		args   []string
		want   []string
		ok     bool
		env    []string
	}{
		{"tenant with Intune", true, nil, []string{"intune-sp/role-scep_challenge_provider", "graph-sp/role-Application.Read.All",
			"graph-sp/role-User.Read.All", "graph-sp/role-Directory.Read.All", "graph-sp/role-Device.Read.All", "graph-sp/role-DeviceManagementManagedDevices.Read.All"}, true, nil},
		{"tenant without Intune", false, nil, []string{"graph-sp/role-Application.Read.All", "graph-sp/role-User.Read.All",
			"graph-sp/role-Directory.Read.All", "graph-sp/role-Device.Read.All", "graph-sp/role-DeviceManagementManagedDevices.Read.All"}, true, nil},
		{"without Intune, --set-azd-env", false, []string{"--set-azd-env"}, nil, false, nil},
		// A failing lookup is not "no Intune here": the script stops before granting anything.
		{"the Intune lookup fails", false, []string{"fail"}, nil, false, nil},
		// The identity is new to Graph: the refused assignment is retried, and every permission is granted once.
		{"identity not replicated yet", false, nil, []string{"graph-sp/role-Application.Read.All", "graph-sp/role-User.Read.All",
			"graph-sp/role-Directory.Read.All", "graph-sp/role-Device.Read.All", "graph-sp/role-DeviceManagementManagedDevices.Read.All"}, true, []string{"REPLICATING=1"}},
		// Graph does not offer one of the permissions (or the lookup failed): the script stops there, naming it,
		// and never asks Graph for an assignment without a role ID.
		{"a Graph permission not found", false, nil, []string{"graph-sp/role-Application.Read.All", "graph-sp/role-User.Read.All"},
			false, []string{"NOROLE=Directory.Read.All"}},
		// az signed in to another tenant than the deployment's: nothing is granted, and the operator is told which
		// tenant to sign in to (Graph would answer there that the identity does not exist, which looks like replication).
		{"az in another tenant", true, nil, nil, false, []string{"AZURE_TENANT_ID=99999999-9999-9999-9999-999999999999"}},
		{"az in the deployment's tenant", false, nil, []string{"graph-sp/role-Application.Read.All", "graph-sp/role-User.Read.All",
			"graph-sp/role-Directory.Read.All", "graph-sp/role-Device.Read.All", "graph-sp/role-DeviceManagementManagedDevices.Read.All"},
			true, []string{"AZURE_TENANT_ID=11111111-1111-1111-1111-111111111111"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			scripts := filepath.Join(dir, "infra", "scripts")
			stubs := filepath.Join(dir, "stubs")
			grants := filepath.Join(dir, "grants")
			for _, d := range []string{scripts, stubs} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, body := range map[string]string{
				filepath.Join(scripts, "grant-intune.sh"): readRepoFile(t, "infra/scripts/grant-intune.sh"),
				filepath.Join(scripts, "common.sh"):       readRepoFile(t, "infra/scripts/common.sh"),
				filepath.Join(stubs, "az"):                az,
				filepath.Join(stubs, "sleep"):             "#!/bin/sh\nexit 0\n",
				filepath.Join(stubs, "azd"):               "#!/bin/sh\nexit 1\n", // no azd environment to load
			} {
				if err := os.WriteFile(name, []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			intune, args := "0", tc.args
			if tc.intune {
				intune = "1"
			}
			if slices.Equal(args, []string{"fail"}) {
				intune, args = "fail", nil
			}
			cmd := exec.Command(bash, append([]string{filepath.Join(scripts, "grant-intune.sh"), principal}, args...)...)
			cmd.Env = append([]string{"PATH=" + stubs + string(os.PathListSeparator) + os.Getenv("PATH"), "GRANTS=" + grants,
				"INTUNE=" + intune}, tc.env...)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want success %t\n%s", err, tc.ok, out)
			}
			for _, e := range tc.env {
				if role, ok := strings.CutPrefix(e, "NOROLE="); ok && !strings.Contains(string(out), "has no application role "+role) {
					t.Errorf("the missing permission %s is not named:\n%s", role, out)
				}
				if tenant, ok := strings.CutPrefix(e, "AZURE_TENANT_ID="); ok && !tc.ok && !strings.Contains(string(out), "az login --tenant "+tenant) {
					t.Errorf("the deployment's tenant %s is not named:\n%s", tenant, out)
				}
			}
			data, _ := os.ReadFile(grants)
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var a struct{ PrincipalID, ResourceID, AppRoleID string }
				if line == "" {
					continue
				}
				if err := json.Unmarshal([]byte(line), &a); err != nil || a.PrincipalID != principal {
					t.Fatalf("assignment %q (%v)", line, err)
				}
				got = append(got, a.ResourceID+"/"+a.AppRoleID)
			}
			// The script compares and sends IDs lower-cased (they are GUIDs in Graph).
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = strings.ToLower(w)
			}
			if !slices.Equal(got, want) {
				t.Errorf("assignments %v, want %v\n%s", got, want, out)
			}
			if !tc.intune && tc.ok && !strings.Contains(string(out), "no service principal for the Microsoft Intune API") {
				t.Errorf("no warning about the missing Intune service principal:\n%s", out)
			}
		})
	}
}

// TestAdminScriptCommands runs infra/scripts/azscep-admin.sh with a stand-in for the azscep CLI: the ca commands,
// the break-glass revoke, backup and restore reach the CLI, in azure mode and with every argument; anything else is a usage error.
func TestAdminScriptCommands(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run the infra scripts")
	}
	dir := t.TempDir()
	scripts, bin, stubs := filepath.Join(dir, "infra", "scripts"), filepath.Join(dir, ".local", "bin"), filepath.Join(dir, "stubs")
	for _, d := range []string{scripts, bin, stubs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		filepath.Join(scripts, "azscep-admin.sh"): readRepoFile(t, "infra/scripts/azscep-admin.sh"),
		filepath.Join(scripts, "common.sh"):       readRepoFile(t, "infra/scripts/common.sh"),
		filepath.Join(bin, "azscep"):              "#!/bin/sh\necho \"mode=$AZSCEP_MODE args=$*\"\n",
		filepath.Join(stubs, "azd"):               "#!/bin/sh\nexit 1\n",
	} {
		if err := os.WriteFile(name, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"revoke", "-serial", "0A", "-reason", "keyCompromise"}, 0, "mode=azure args=revoke -serial 0A -reason keyCompromise"},
		{[]string{"ca", "show"}, 0, "mode=azure args=ca show"},
		{[]string{"backup", "-out", "b.jsonl"}, 0, "mode=azure args=backup -out b.jsonl"},
		{[]string{"restore", "-in", "b.jsonl"}, 0, "mode=azure args=restore -in b.jsonl"},
		{[]string{"ca"}, 2, "usage:"},
		{[]string{"bogus"}, 2, "usage:"},
	} {
		cmd := exec.Command(bash, append([]string{filepath.Join(scripts, "azscep-admin.sh")}, tc.args...)...)
		cmd.Env = []string{"PATH=" + stubs + string(os.PathListSeparator) + os.Getenv("PATH"), "AZSCEP_SKIP_BUILD=1",
			"AZSCEP_BASE_URL=https://func-x.azurewebsites.net", "AZSCEP_TABLES_ENDPOINT=https://stx.table.core.windows.net",
			"AZSCEP_KEYVAULT_URL=https://kv-x.vault.azure.net/", "AZURE_TENANT_ID=11111111-1111-1111-1111-111111111111"}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("azscep-admin.sh %s: exit %d, output %q; want %d and %q", strings.Join(tc.args, " "), code, out, tc.code, tc.want)
		}
	}
}

// fakeGraphAz is a stand-in for the Azure CLI that keeps one app registration and its service principal in files
// under $STATE, answering the calls infra/scripts/create-api-app.sh makes the way Microsoft Graph does: an
// application's app roles come back with the read-only "origin" property, which Graph documents as never to be
// sent in a POST or PATCH. Every PATCH body is appended to $STATE/patches, one per line. Delegated-permission grants
// (admin consent) live in $STATE/grants, one per line, and every body written to them in $STATE/grant-writes.
const fakeGraphAz = `#!/usr/bin/env bash
set -euo pipefail
method="" uri="" body="" query="" filter="" id=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	case "${args[i]}" in
	--method) method=${args[i + 1]} ;;
	--uri) uri=${args[i + 1]} ;;
	--body) body=${args[i + 1]} ;;
	--query) query=${args[i + 1]} ;;
	--filter) filter=${args[i + 1]} ;;
	--id) id=${args[i + 1]} ;;
	esac
done
app=$STATE/app.json sp=$STATE/sp.json
# lag fails the first try of call $1 with Graph's answer $2 while REPLICATING is set (a new object not replicated yet).
lag() {
	[[ -n ${REPLICATING:-} && ! -e $STATE/seen-$1 ]] || return 0
	touch "$STATE/seen-$1"
	echo "ERROR: $2" >&2
	exit 1
}
case "$1 $2" in
"cloud show") echo https://graph.microsoft.com/ ;;
"account show") echo 11111111-1111-1111-1111-111111111111 ;;
"ad app")
	case "$3" in
	list) [[ -f $app ]] && jq -r .appId "$app"; exit 0 ;;
	create)
		jq -n '{appId: "33333333-3333-3333-3333-333333333333", id: "44444444-4444-4444-4444-444444444444",
			identifierUris: [], appRoles: [], optionalClaims: null, spa: {redirectUris: []},
			api: {acceptMappedClaims: null, knownClientApplications: [], requestedAccessTokenVersion: null,
				oauth2PermissionScopes: [], preAuthorizedApplications: []}}' >"$app"
		jq -r .appId "$app" ;;
	show)
		lag app-show "Resource '33333333-3333-3333-3333-333333333333' does not exist or one of its queried reference-property objects are not present."
		jq -r .id "$app" ;;
	esac ;;
"ad sp")
	case "$3" in
	list)
		[[ $filter == *00000003-0000-0000-c000-000000000000* ]] && { echo 66666666-6666-6666-6666-666666666666; exit 0; } # Microsoft Graph
		[[ -f $sp ]] && jq -r .id "$sp"; exit 0 ;;
	create)
		lag sp-create "The appId '33333333-3333-3333-3333-333333333333' of the service principal does not reference a valid application object."
		echo '{"id": "55555555-5555-5555-5555-555555555555", "appRoleAssignmentRequired": false}' >"$sp"
		jq -r .id "$sp" ;;
	esac ;;
"rest --method")
	[[ $body == @* ]] && body=$(cat "${body#@}")
	case "$method $uri" in
	"GET "*/applications/*'$select=spa') jq '{spa}' "$app" ;;
	"GET "*/applications/*) jq '{identifierUris, appRoles: (.appRoles | map(. + {origin: "Application"})), api, optionalClaims}' "$app" ;;
	"PATCH "*/applications/*)
		[[ -z ${FORBID_PATCH:-} ]] || { echo "ERROR: Forbidden({\"error\":{\"code\":\"Authorization_RequestDenied\",\"message\":\"Insufficient privileges to complete the operation.\"}})" >&2; exit 1; }
		printf '%s\n' "$(jq -c . <<<"$body")" >>"$STATE/patches"
		jq --argjson b "$body" '. + $b' "$app" >"$app.new" && mv "$app.new" "$app" ;;
	"GET "*/oauth2PermissionGrants) jq -s '{value: .}' "$STATE/grants" 2>/dev/null || echo '{"value": []}' ;;
	"POST "*/oauth2PermissionGrants)
		[[ -z ${FORBID_GRANT:-} ]] || { echo "ERROR: Forbidden({\"error\":{\"code\":\"Authorization_RequestDenied\",\"message\":\"Insufficient privileges to complete the operation.\"}})" >&2; exit 1; }
		printf '%s\n' "$(jq -c --arg id "grant-$(($(wc -l <"$STATE/grants" 2>/dev/null || echo 0) + 1))" '. + {id: $id}' <<<"$body")" >>"$STATE/grants"
		printf '%s\n' "$(jq -c . <<<"$body")" >>"$STATE/grant-writes" ;;
	"PATCH "*/oauth2PermissionGrants/*)
		printf '%s\n' "$(jq -c . <<<"$body")" >>"$STATE/grant-writes"
		jq -c --argjson b "$body" --arg id "${uri##*/}" 'if .id == $id then . + $b else . end' "$STATE/grants" >"$STATE/grants.new" &&
			mv "$STATE/grants.new" "$STATE/grants" ;;
	"GET "*/servicePrincipals/*)
		lag sp-get "Not Found({\"error\":{\"code\":\"Request_ResourceNotFound\",\"message\":\"Resource '55555555-5555-5555-5555-555555555555' does not exist.\"}})"
		jq -r ".$query" "$sp" ;;
	"PATCH "*/servicePrincipals/*) jq --argjson b "$body" '. + $b' "$sp" >"$sp.new" && mv "$sp.new" "$sp" ;;
	*) echo "unexpected az rest $method $uri" >&2; exit 3 ;;
	esac ;;
*) echo "unexpected az $*" >&2; exit 3 ;;
esac
`

// newCreateAPIApp sets up infra/scripts/create-api-app.sh with fakeGraphAz (and a sleep that returns at once) in a
// temporary tree: it returns the fake's state directory and a function that runs the script with extra environment.
func newCreateAPIApp(t *testing.T) (state string, run func(env ...string) (string, error)) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run the infra scripts")
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("jq is needed to run the infra scripts (make test installs it)")
	}
	dir := t.TempDir()
	scripts, stubs := filepath.Join(dir, "infra", "scripts"), filepath.Join(dir, "stubs")
	state = filepath.Join(dir, "state")
	for _, d := range []string{scripts, stubs, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		filepath.Join(scripts, "create-api-app.sh"): readRepoFile(t, "infra/scripts/create-api-app.sh"),
		filepath.Join(scripts, "common.sh"):         readRepoFile(t, "infra/scripts/common.sh"),
		filepath.Join(stubs, "az"):                  fakeGraphAz,
		filepath.Join(stubs, "sleep"):               "#!/bin/sh\nexit 0\n",
		filepath.Join(stubs, "azd"):                 "#!/bin/sh\nexit 1\n", // no azd environment to load
	} {
		if err := os.WriteFile(name, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return state, func(env ...string) (string, error) {
		cmd := exec.Command(bash, filepath.Join(scripts, "create-api-app.sh"), "--name", "azscep-api-test")
		cmd.Env = append([]string{"PATH=" + stubs + string(os.PathListSeparator) + os.Getenv("PATH"), "STATE=" + state,
			"AZSCEP_BASE_URL=https://func-x.azurewebsites.net"}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// TestCreateAPIAppScriptWaitsForReplication: in a tenant where a new registration and its service principal take a
// while to replicate, the calls on them that Graph answers "does not exist" (or, creating the service principal,
// "does not reference a valid application object") are retried, and the run completes; any other refusal stops the
// script at once.
func TestCreateAPIAppScriptWaitsForReplication(t *testing.T) {
	state, run := newCreateAPIApp(t)
	out, err := run("REPLICATING=1")
	if err != nil {
		t.Fatalf("create-api-app.sh on a registration still replicating: %v\n%s", err, out)
	}
	if n := strings.Count(out, "has not replicated a new object yet"); n != 3 {
		t.Errorf("%d retries logged, want 3 (app show, sp create, sp read):\n%s", n, out)
	}
	var sp struct {
		Required bool `json:"appRoleAssignmentRequired"`
	}
	if data, err := os.ReadFile(filepath.Join(state, "sp.json")); err != nil || json.Unmarshal(data, &sp) != nil || !sp.Required {
		t.Errorf("service principal %s (%v): want one that requires an assignment", data, err)
	}
	// A refusal is not replication: the first one ends the run.
	if err := os.Remove(filepath.Join(state, "app.json")); err != nil {
		t.Fatal(err)
	}
	out, err = run("FORBID_PATCH=1")
	if err == nil || !strings.Contains(out, "Insufficient privileges") || strings.Contains(out, "has not replicated") {
		t.Errorf("a refused PATCH: err %v, want the refusal, not retried\n%s", err, out)
	}
}

// TestCreateAPIAppScriptChecksTenant: with az signed in to another tenant than the deployment's (AZURE_TENANT_ID
// from the azd environment), create-api-app.sh registers nothing and names the tenant to sign in to: the service
// checks tokens' accounts in Graph in its own tenant, so an API registered elsewhere would refuse every token.
func TestCreateAPIAppScriptChecksTenant(t *testing.T) {
	state, run := newCreateAPIApp(t)
	out, err := run("AZURE_TENANT_ID=99999999-9999-9999-9999-999999999999")
	if err == nil || !strings.Contains(out, "az login --tenant 99999999-9999-9999-9999-999999999999") {
		t.Errorf("az in another tenant: err %v, want a failure naming the deployment's tenant\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(state, "app.json")); !os.IsNotExist(err) {
		t.Errorf("an app registration was created in the wrong tenant (%v)", err)
	}
	if out, err := run("AZURE_TENANT_ID=11111111-1111-1111-1111-111111111111"); err != nil {
		t.Errorf("az in the deployment's tenant: %v\n%s", err, out)
	}
}

// TestCreateAPIAppScript runs infra/scripts/create-api-app.sh twice against a fake Graph (fakeGraphAz): the first
// run creates the registration, its roles, claims and console redirect URI; the second finds it up to date and
// writes nothing, although Graph returns the roles with their read-only "origin"; and no PATCH ever sends "origin".
func TestCreateAPIAppScript(t *testing.T) {
	state, script := newCreateAPIApp(t)
	patches := func() []string {
		data, _ := os.ReadFile(filepath.Join(state, "patches"))
		if len(data) == 0 {
			return nil
		}
		return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	run := func() string {
		t.Helper()
		out, err := script()
		if err != nil {
			t.Fatalf("create-api-app.sh: %v\n%s", err, out)
		}
		return out
	}
	run()
	first := patches()
	if len(first) != 2 {
		t.Fatalf("first run: %d PATCHes of the application, want 2 (roles and claims, console redirect URI): %v", len(first), first)
	}
	var app struct {
		AppRoles []struct{ Value, ID string } `json:"appRoles"`
	}
	if err := json.Unmarshal([]byte(first[0]), &app); err != nil || len(app.AppRoles) != 4 {
		t.Fatalf("first PATCH: %v, %d roles, want 4\n%s", err, len(app.AppRoles), first[0])
	}
	ids := map[string]bool{}
	for _, r := range app.AppRoles {
		ids[r.ID] = true
	}
	if !slices.ContainsFunc(app.AppRoles, func(r struct{ Value, ID string }) bool { return r.Value == "Certificates.Read" }) ||
		len(ids) != 4 {
		t.Fatalf("first PATCH: roles %+v; want Certificates.Read among four roles with distinct IDs", app.AppRoles)
	}
	out := run()
	if again := patches()[len(first):]; len(again) != 0 {
		t.Errorf("second run on an up-to-date registration wrote it again: %v\n%s", again, out)
	}
	if !strings.Contains(out, "up to date") {
		t.Errorf("second run does not say the registration is up to date:\n%s", out)
	}
	// A registration with a role of someone else's and an outdated one of ours: both keep their IDs, and neither
	// is sent with its origin.
	seeded := `{"appId": "33333333-3333-3333-3333-333333333333", "id": "44444444-4444-4444-4444-444444444444",
		"identifierUris": [], "optionalClaims": null, "spa": {"redirectUris": []},
		"api": {"requestedAccessTokenVersion": null, "oauth2PermissionScopes": []},
		"appRoles": [{"allowedMemberTypes": ["User"], "description": "theirs", "displayName": "Theirs",
			"id": "66666666-6666-6666-6666-666666666666", "isEnabled": true, "value": "Other.Role"},
		{"allowedMemberTypes": ["User"], "description": "old", "displayName": "Old",
			"id": "77777777-7777-7777-7777-777777777777", "isEnabled": true, "value": "CSR.Request.Db"}]}`
	if err := os.WriteFile(filepath.Join(state, "app.json"), []byte(seeded), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(patches())
	run()
	after := patches()[before:]
	if len(after) != 2 {
		t.Fatalf("run on an outdated registration: %d PATCHes, want 2: %v", len(after), after)
	}
	for _, id := range []string{"66666666-6666-6666-6666-666666666666", "77777777-7777-7777-7777-777777777777"} {
		if !strings.Contains(after[0], id) {
			t.Errorf("the PATCH drops or renumbers role %s: %s", id, after[0])
		}
	}
	for _, p := range patches() {
		if strings.Contains(p, `"origin"`) {
			t.Errorf("a PATCH sends the read-only origin property: %s", p)
		}
	}
}

// TestCreateAPIAppScopeAdminConsent: the access_as_user scope is one only an administrator can consent to, so no
// user can be talked into handing their app roles (certificates in their name) to a third-party client; a
// registration made before, whose scope users could consent to, is changed in place, keeping the scope's ID. The
// console, which is the app asking for its own scope, gets the tenant-wide consent to it and to the sign-in scopes
// MSAL adds (Microsoft Graph's openid, profile, offline_access) once, or has what is missing added to a tenant-wide
// consent that lacks it: without it every user's sign-in stops at "Need admin approval".
func TestCreateAPIAppScopeAdminConsent(t *testing.T) {
	state, script := newCreateAPIApp(t)
	run := func() string {
		t.Helper()
		out, err := script()
		if err != nil {
			t.Fatalf("create-api-app.sh: %v\n%s", err, out)
		}
		return out
	}
	type scope struct{ ID, Value, Type string }
	scopes := func() []scope {
		t.Helper()
		var app struct {
			API struct {
				Scopes []scope `json:"oauth2PermissionScopes"`
			} `json:"api"`
		}
		data, err := os.ReadFile(filepath.Join(state, "app.json"))
		if err != nil || json.Unmarshal(data, &app) != nil {
			t.Fatalf("app registration %s: %v", data, err)
		}
		return app.API.Scopes
	}
	type grant struct{ ClientID, ConsentType, ResourceID, Scope string }
	grants := func() []grant {
		t.Helper()
		data, _ := os.ReadFile(filepath.Join(state, "grants"))
		var out []grant
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var g grant
			if line == "" {
				continue
			}
			if err := json.Unmarshal([]byte(line), &g); err != nil {
				t.Fatalf("grant %q: %v", line, err)
			}
			out = append(out, g)
		}
		return out
	}
	writes := func() int {
		data, _ := os.ReadFile(filepath.Join(state, "grant-writes"))
		return strings.Count(string(data), "\n")
	}
	const sp, graph = "55555555-5555-5555-5555-555555555555", "66666666-6666-6666-6666-666666666666"
	console := []grant{{ClientID: sp, ConsentType: "AllPrincipals", ResourceID: sp, Scope: "access_as_user"},
		{ClientID: sp, ConsentType: "AllPrincipals", ResourceID: graph, Scope: "openid profile offline_access"}}

	run()
	if got := scopes(); len(got) != 1 || got[0].Value != "access_as_user" || got[0].Type != "Admin" {
		t.Errorf("new registration: scopes %+v, want access_as_user of type Admin", got)
	}
	if got := grants(); !slices.Equal(got, console) {
		t.Errorf("new registration: consents %+v, want the console's tenant-wide consents %+v", got, console)
	}
	before := writes()
	if out := run(); writes() != before || strings.Count(out, "admin consent for the console is granted") != 2 {
		t.Errorf("second run wrote the consent again (%d writes, was %d)\n%s", writes(), before, out)
	}

	// A registration made by an earlier version: users could consent to the scope, and the tenant-wide consent of the
	// console holds other scopes only.
	seeded := `{"appId": "33333333-3333-3333-3333-333333333333", "id": "44444444-4444-4444-4444-444444444444",
		"identifierUris": ["api://33333333-3333-3333-3333-333333333333"], "optionalClaims": null, "spa": {"redirectUris": []},
		"appRoles": [], "api": {"requestedAccessTokenVersion": 2, "oauth2PermissionScopes": [
			{"id": "88888888-8888-8888-8888-888888888888", "value": "access_as_user", "type": "User", "isEnabled": true,
			 "adminConsentDisplayName": "x", "adminConsentDescription": "x", "userConsentDisplayName": "x", "userConsentDescription": "x"}]}}`
	if err := os.WriteFile(filepath.Join(state, "app.json"), []byte(seeded), 0o644); err != nil {
		t.Fatal(err)
	}
	old := `{"id": "grant-1", "clientId": "` + sp + `", "consentType": "AllPrincipals", "resourceId": "` + sp + `", "scope": "other"}` + "\n" +
		`{"id": "grant-2", "clientId": "` + sp + `", "consentType": "AllPrincipals", "resourceId": "` + graph + `", "scope": "User.Read openid"}` + "\n"
	if err := os.WriteFile(filepath.Join(state, "grants"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	run()
	if got := scopes(); len(got) != 1 || got[0].ID != "88888888-8888-8888-8888-888888888888" || got[0].Type != "Admin" {
		t.Errorf("earlier registration: scopes %+v, want access_as_user keeping its ID, now of type Admin", got)
	}
	want := []grant{{ClientID: sp, ConsentType: "AllPrincipals", ResourceID: sp, Scope: "other access_as_user"},
		{ClientID: sp, ConsentType: "AllPrincipals", ResourceID: graph, Scope: "User.Read openid profile offline_access"}}
	if got := grants(); !slices.Equal(got, want) {
		t.Errorf("earlier consents: %+v, want the same two with what was missing added: %+v", got, want)
	}
}

// TestCreateAPIAppScriptConsentRefused: run by an owner of the registration who may not give tenant-wide consent,
// the script still brings the registration up to date and prints the settings, then fails naming the console and
// the roles that can give the consent, rather than stopping half-way at Graph's refusal.
func TestCreateAPIAppScriptConsentRefused(t *testing.T) {
	state, script := newCreateAPIApp(t)
	out, err := script("FORBID_GRANT=1")
	if err == nil || !strings.Contains(out, "users cannot sign in to the console") || !strings.Contains(out, "Application Administrator") {
		t.Errorf("consent refused: err %v, want a failure naming the console and who can consent\n%s", err, out)
	}
	if !strings.Contains(out, "azd env set AZSCEP_API_AUDIENCES") || strings.Count(out, "Insufficient privileges") != 2 {
		t.Errorf("want both refusals shown and the settings printed:\n%s", out)
	}
	if data, _ := os.ReadFile(filepath.Join(state, "patches")); !strings.Contains(string(data), `"type":"Admin"`) {
		t.Errorf("the registration was not brought up to date: %s", data)
	}
}

// dotenvLine is one line of `azd env get-values`, which prints the environment with godotenv.Marshal: a value that
// is an integer as it is, any other in double quotes with a backslash before \ " ! $ and `, and line breaks as \n
// and \r.
func dotenvLine(key, value string) string {
	if n, err := strconv.Atoi(value); err == nil {
		return fmt.Sprintf("%s=%d", key, n)
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, `"`, `\"`, `!`, `\!`, `$`, `\$`, "`", "\\`")
	return fmt.Sprintf(`%s="%s"`, key, r.Replace(value))
}

// TestLoadAzdEnv runs common.sh's load_azd_env (which the scripts use when run by hand) against a stand-in azd that
// prints values the way azd does: each comes back as it was set, whatever characters it holds, and a value already
// in the environment wins. A CA subject read wrongly here would be written into the root certificate for good.
func TestLoadAzdEnv(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run the infra scripts")
	}
	values := map[string]string{
		"AZSCEP_CA_SUBJECT":    `CN=Yahoo! $Corp "Devices" CA,O=Back\slash`,
		"AZSCEP_TABLES_PREFIX": "azscep",
		"AZSCEP_CA_KEY_SIZE":   "4096",
		"TRICKY_BACKSLASHES":   `a\"b\\c\` + "`d`\\",
		"TRICKY_ESCAPE_LIKE":   `\n is not a line break, \$ is not a dollar`,
		"TWO_LINES":            "first\nsecond",
		"CALLER_WINS":          "from azd",
		"EMPTY":                "",
	}
	var lines []string
	for k, v := range values {
		lines = append(lines, dotenvLine(k, v))
	}
	sort.Strings(lines)
	dir := t.TempDir()
	stubs := filepath.Join(dir, "stubs")
	if err := os.MkdirAll(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(dir, "env")
	if err := os.WriteFile(env, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	azd := "#!/bin/sh\n[ \"$1 $2\" = \"env get-values\" ] || exit 1\ncat \"$AZD_ENV\"\n"
	if err := os.WriteFile(filepath.Join(stubs, "azd"), []byte(azd), 0o755); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(values))
	// Each value is printed NUL-terminated, so that line breaks and trailing characters survive.
	script := `. "$COMMON"; load_azd_env; for k in ` + strings.Join(keys, " ") + `; do printf '%s\0' "${!k-unset}"; done`
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = []string{"PATH=" + stubs + string(os.PathListSeparator) + os.Getenv("PATH"), "AZD_ENV=" + env,
		"COMMON=" + filepath.Join(repoRoot(t), "infra", "scripts", "common.sh"), "CALLER_WINS=from the caller"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("load_azd_env: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(keys) {
		t.Fatalf("%d values printed, want %d: %q", len(got), len(keys), got)
	}
	for i, k := range keys {
		want := values[k]
		if k == "CALLER_WINS" {
			want = "from the caller"
		}
		if got[i] != want {
			t.Errorf("%s = %q, want %q (azd printed %s)", k, got[i], want, dotenvLine(k, values[k]))
		}
	}
}

// TestScriptsPassShellCheck: docs/deployment.md says the infra scripts pass ShellCheck; a quoting or word-splitting
// mistake in a script the operator runs against a live tenant is the kind it catches.
func TestScriptsPassShellCheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is needed to check the infra scripts (make test installs it)")
	}
	root := repoRoot(t)
	scripts, err := filepath.Glob(filepath.Join(root, "infra", "scripts", "*.sh"))
	if err != nil || len(scripts) < 5 {
		t.Fatalf("infra/scripts holds %d scripts (%v)", len(scripts), err)
	}
	for i, s := range scripts {
		scripts[i], _ = filepath.Rel(root, s)
	}
	cmd := exec.Command(sc, append([]string{"-x", "--format=gcc"}, scripts...)...)
	cmd.Dir = root // -x follows the scripts' `# shellcheck source=infra/scripts/common.sh` from the repository's root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// TestScriptHelpIsTheHeader: the scripts' --help prints their whole header comment (every line from the second to the
// first that is not a comment), so a header that grows is not cut short, as a fixed line range was.
func TestScriptHelpIsTheHeader(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run the infra scripts")
	}
	for _, name := range []string{"grant-intune.sh", "create-api-app.sh"} {
		t.Run(name, func(t *testing.T) {
			var want strings.Builder
			for _, line := range strings.Split(readRepoFile(t, "infra/scripts/"+name), "\n")[1:] {
				if !strings.HasPrefix(line, "#") {
					break
				}
				want.WriteString(line + "\n")
			}
			cmd := exec.Command(bash, filepath.Join(repoRoot(t), "infra", "scripts", name), "--help")
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("--help: %v", err)
			}
			if string(out) != want.String() {
				t.Fatalf("--help printed\n%s\nwant the header\n%s", out, want.String())
			}
		})
	}
}
