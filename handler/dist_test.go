package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
)

// TestDistLayout builds the package `make dist` produces (what azd zips and deploys) and checks its layout: the
// binary named in host.json at the root, linux/amd64, mode 0755; host.json; one folder per function with its
// function.json; nothing else.
func TestDistLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command("make", "-s", "-C", "..", "dist", "DIST="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "azscep")
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %v, want 0755", st.Mode().Perm())
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("binary is not ELF: %v", err)
	}
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		t.Errorf("binary is %v/%v, want x86-64", f.Machine, f.Class)
	}
	f.Close()
	var want, got []string
	want = append(want, "azscep", "host.json")
	fns, _ := filepath.Glob("../functions/*/function.json")
	for _, fn := range fns {
		want = append(want, filepath.Join(filepath.Base(filepath.Dir(fn)), "function.json"))
	}
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got = append(got, rel)
		if rel != "azscep" && info.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", rel, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	sort.Strings(got)
	if len(got) != len(want) {
		t.Fatalf("dist holds %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("dist holds %v, want %v", got, want)
		}
	}
}
