package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupFileIsPrivate: `azscep backup` writes the CA's records (subjects, UPNs, device IDs, the wrapped RA key)
// into a file only its owner reads (mode 0600, as its help says), whatever already lies beside the target: a
// readable leftover at the temporary name kept its mode, and a symbolic link there sent the records wherever it
// pointed.
func TestBackupFileIsPrivate(t *testing.T) {
	env, _ := binaryEnv(t)
	if code, stdout, stderr := runCLI(t, env, "ca", "init"); code != 0 {
		t.Fatalf("ca init: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, tmp string) (elsewhere string)
	}{
		{"readable leftover", func(t *testing.T, tmp string) string {
			if err := os.WriteFile(tmp, []byte("stale"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(tmp, 0o644); err != nil { // whatever the umask
				t.Fatal(err)
			}
			return ""
		}},
		{"symbolic link", func(t *testing.T, tmp string) string {
			elsewhere := filepath.Join(t.TempDir(), "public.jsonl")
			if err := os.WriteFile(elsewhere, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, tmp); err != nil {
				t.Fatal(err)
			}
			return elsewhere
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "backup.jsonl")
			elsewhere := tc.plant(t, file+".tmp")
			code, stdout, stderr := runCLI(t, env, "backup", "-out", file)
			if code != 0 || !strings.Contains(stdout, "backed up to "+file) {
				t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
			}
			fi, err := os.Lstat(file)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Errorf("backup file mode %v, want a regular file with 0600", fi.Mode())
			}
			if data, err := os.ReadFile(file); err != nil || !strings.Contains(string(data), `"table":"certs"`) {
				t.Errorf("backup file holds no certs entity (the RA certificate's record) (%v): %.200s", err, data)
			}
			if elsewhere != "" {
				if data, err := os.ReadFile(elsewhere); err != nil || len(data) != 0 {
					t.Errorf("the backup was written through the link to %s (%v): %.200s", elsewhere, err, data)
				}
			}
		})
	}
}
