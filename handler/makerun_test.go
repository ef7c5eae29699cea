package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/config"
)

// TestMakeRunRefusesATakenFakePort: `make run` reuses an Intune fake already listening on FAKE_PORT and reads its
// settings from .local/intunefake.env. A fake started with `nohup` outlives a closed terminal, so after the
// printed advice "delete .local/ to start over" the port is taken and the file is gone: the target must stop
// there and say why, not leave `make run` to fail later on a missing file it never mentions.
func TestMakeRunRefusesATakenFakePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	local := t.TempDir()

	cmd := exec.Command("make", "-s", "-C", "..", "intunefake-start", "LOCAL="+local, "FAKE_PORT="+strconv.Itoa(port))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("make intunefake-start succeeded with port %d taken and no intunefake.env; make run would then "+
			"fail on the missing file:\n%s", port, out)
	}
	if !strings.Contains(string(out), "intunefake.env is missing") || !strings.Contains(string(out), "FAKE_PORT=") {
		t.Fatalf("make intunefake-start did not say why it stopped:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(local, "intunefake.env")); !os.IsNotExist(err) {
		t.Fatalf("intunefake.env exists after the refusal (stat: %v)", err)
	}
}

// TestReadmeQuickStartIsLocalHelp: the enrollment command README.md's quick start shows is the one `make run`
// prints (local-help at the default port), line for line, so that neither drifts from the other.
func TestReadmeQuickStartIsLocalHelp(t *testing.T) {
	cfg, err := config.Load([]string{"AZSCEP_MODE=local", "AZSCEP_TABLES_CONNECTION=unused"})
	if err != nil {
		t.Fatal(err)
	}
	var help strings.Builder
	if err := localHelp(cfg, &help); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```sh\nmkdir -p static-demo")
	block, _, closed := strings.Cut(block, "```")
	if !ok || !closed {
		t.Fatal("README.md has no quick-start block starting with `mkdir -p static-demo`")
	}
	printed := map[string]bool{}
	for _, l := range strings.Split(help.String(), "\n") {
		printed[strings.TrimSpace(l)] = true
	}
	for _, l := range strings.Split("mkdir -p static-demo"+block, "\n") {
		if l = strings.TrimSpace(l); l != "" && !printed[l] {
			t.Errorf("README.md's quick start has %q, which `make run` does not print:\n%s", l, help.String())
		}
	}
}
