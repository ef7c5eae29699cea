package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
