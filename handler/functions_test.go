package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/robfig/cron/v3"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/timer"
)

// hostJSON is the subset of host.json the Functions host reads for a custom handler; decoding is strict so a
// typo (which the host would silently ignore) fails the test.
type hostJSON struct {
	Version string `json:"version"`
	Logging struct {
		LogLevel            map[string]string `json:"logLevel"`
		ApplicationInsights struct {
			SamplingSettings struct {
				IsEnabled bool `json:"isEnabled"`
			} `json:"samplingSettings"`
		} `json:"applicationInsights"`
	} `json:"logging"`
	FunctionTimeout string `json:"functionTimeout"`
	Extensions      struct {
		HTTP struct {
			RoutePrefix string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
	CustomHandler struct {
		Description struct {
			DefaultExecutablePath string   `json:"defaultExecutablePath"`
			WorkingDirectory      string   `json:"workingDirectory"`
			Arguments             []string `json:"arguments"`
		} `json:"description"`
		EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
	} `json:"customHandler"`
}

type binding struct {
	Type         string   `json:"type"`
	Direction    string   `json:"direction"`
	Name         string   `json:"name"`
	AuthLevel    string   `json:"authLevel,omitempty"`
	Methods      []string `json:"methods,omitempty"`
	Route        string   `json:"route,omitempty"`
	Schedule     string   `json:"schedule,omitempty"`
	UseMonitor   *bool    `json:"useMonitor,omitempty"`
	RunOnStartup *bool    `json:"runOnStartup,omitempty"`
}

type functionJSON struct {
	Bindings []binding `json:"bindings"`
}

func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestHostJSON(t *testing.T) {
	var h hostJSON
	decodeStrict(t, "../host.json", &h)
	if h.Version != "2.0" {
		t.Errorf("version = %q, want 2.0", h.Version)
	}
	if h.CustomHandler.Description.DefaultExecutablePath != "azscep" {
		t.Errorf("defaultExecutablePath = %q, want the binary name azscep", h.CustomHandler.Description.DefaultExecutablePath)
	}
	if !h.CustomHandler.EnableForwardingHTTPRequest {
		t.Error("enableForwardingHttpRequest must be true: SCEP bodies are binary")
	}
	if h.Extensions.HTTP.RoutePrefix != "api" {
		t.Errorf("routePrefix = %q, want api", h.Extensions.HTTP.RoutePrefix)
	}
	if h.Logging.LogLevel["default"] == "" {
		t.Error("logging.logLevel.default missing")
	}
	// The timer's handler keeps its connection writable for this long (timer.FunctionTimeout); the revocation
	// sync's budget is planned inside it.
	if want := fmt.Sprintf("%02d:%02d:00", int(timer.FunctionTimeout.Hours()), int(timer.FunctionTimeout.Minutes())%60); h.FunctionTimeout != want {
		t.Errorf("functionTimeout = %q, want %s (timer.FunctionTimeout)", h.FunctionTimeout, want)
	}
}

var (
	functionName = regexp.MustCompile(`(?i)^[a-z][a-z0-9_\-]{0,127}$`)
	bindingName  = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$`)
)

// wantFunctions is SPEC §3: function folder → a public path the handler must serve (empty for the timer).
var wantFunctions = map[string]string{
	"scep":            "/api/scep/static/pkiclient.exe",
	"csr":             "/api/csr",
	"ocsp":            "/api/ocsp/MEMwQTA",
	"crl":             "/api/crl",
	"ca":              "/api/ca",
	"certificates":    "/api/certificates/5C01/revoke",
	"console":         "/api/console/",
	"health":          "/api/health",
	"revocation-sync": "/revocation-sync",
}

func TestFunctionJSON(t *testing.T) {
	dirs, err := filepath.Glob("../functions/*/function.json")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, path := range dirs {
		name := filepath.Base(filepath.Dir(path))
		names = append(names, name)
		t.Run(name, func(t *testing.T) {
			if !functionName.MatchString(name) || strings.EqualFold(name, "host") {
				t.Fatalf("function name %q is not allowed by the host", name)
			}
			var f functionJSON
			decodeStrict(t, path, &f)
			for _, b := range f.Bindings {
				if !bindingName.MatchString(b.Name) {
					t.Errorf("binding name %q is not allowed", b.Name)
				}
			}
			if name == "revocation-sync" {
				checkTimer(t, f)
				return
			}
			// Forwarding applies only to HTTP in-and-out functions: exactly httpTrigger in + http out.
			if len(f.Bindings) != 2 || f.Bindings[0].Type != "httpTrigger" || f.Bindings[0].Direction != "in" ||
				f.Bindings[1].Type != "http" || f.Bindings[1].Direction != "out" {
				t.Fatalf("want exactly httpTrigger in + http out, got %+v", f.Bindings)
			}
			in := f.Bindings[0]
			if in.AuthLevel != "anonymous" {
				t.Errorf("authLevel = %q, want anonymous (the app authenticates callers)", in.AuthLevel)
			}
			route := strings.ToLower(in.Route)
			if route == "" || strings.HasPrefix(route, "admin") || strings.HasPrefix(route, "runtime") {
				t.Errorf("route %q is empty or reserved", in.Route)
			}
			if !strings.HasPrefix("/api/"+strings.Split(route, "{")[0], strings.TrimSuffix("/api/"+strings.Split(route, "/")[0], "/")) {
				t.Errorf("route %q does not match the function's public path", in.Route)
			}
			for _, m := range in.Methods {
				if !slices.Contains([]string{"get", "post", "head", "put", "delete", "patch", "options"}, m) {
					t.Errorf("method %q unknown", m)
				}
			}
		})
	}
	for name := range wantFunctions {
		if !slices.Contains(names, name) {
			t.Errorf("function %s from SPEC §3 is missing", name)
		}
	}
}

func checkTimer(t *testing.T, f functionJSON) {
	if len(f.Bindings) != 1 || f.Bindings[0].Type != "timerTrigger" || f.Bindings[0].Direction != "in" {
		t.Fatalf("timer function wants one timerTrigger binding, got %+v", f.Bindings)
	}
	b := f.Bindings[0]
	if b.RunOnStartup != nil && *b.RunOnStartup {
		t.Error("runOnStartup would run the sync on every scale-out")
	}
	schedule := b.Schedule
	if m := regexp.MustCompile(`^%([A-Z0-9_]+)%$`).FindStringSubmatch(schedule); m != nil {
		// The host resolves %SETTING%; the setting must be known and have a default the host can use.
		found := false
		for _, s := range config.Settings {
			if s.Name == m[1] {
				found, schedule = true, s.Default
			}
		}
		if !found {
			t.Fatalf("schedule setting %s is not in config.Settings", m[1])
		}
	}
	if _, err := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).Parse(schedule); err != nil {
		t.Errorf("schedule %q is not a 6-field NCRONTAB: %v", schedule, err)
	}
	if schedule != "0 0 * * * *" {
		t.Errorf("default schedule %q, want hourly 0 0 * * * *", schedule)
	}
}

// TestRoutesServeEveryFunction: each function's public path reaches a real handler, not the 404 fallback.
func TestRoutesServeEveryFunction(t *testing.T) {
	mux := routes(&deps{cfg: &config.Config{}})
	for name, path := range wantFunctions {
		method := "GET"
		if name == "revocation-sync" || name == "csr" {
			method = "POST"
		}
		_, pattern := mux.Handler(httptest.NewRequest(method, path, nil))
		if pattern == "" || pattern == "/" {
			t.Errorf("function %s: %s %s is not routed (pattern %q)", name, method, path, pattern)
		}
	}
}

// TestFunctionMethodsMatchTheHandler: the host forwards only the methods a function.json lists, so every method the
// handler answers with success at a function's public path must be listed (else the host answers 404 where the
// handler, and the README, promise an answer), and none it refuses with 405.
func TestFunctionMethodsMatchTheHandler(t *testing.T) {
	in := startInstance(t, localEnv(t))
	for name, path := range wantFunctions {
		if name == "revocation-sync" {
			continue // a timer: the host posts to it, no HTTP trigger
		}
		var f functionJSON
		decodeStrict(t, "../functions/"+name+"/function.json", &f)
		listed := f.Bindings[0].Methods
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"} {
			req, _ := http.NewRequest(m, in.base+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			isListed := slices.Contains(listed, strings.ToLower(m))
			if (resp.StatusCode < 400 && !isListed) || (resp.StatusCode == http.StatusMethodNotAllowed && isListed) {
				t.Errorf("function %s: %s %s answers %d, and function.json lists %v", name, m, path, resp.StatusCode, listed)
			}
		}
	}
}
