package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/store/storetest"
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

// slowBatches holds every entity-group transaction for delay before passing it on: an operator's slow link, over
// which a restore's transaction of up to 1 MiB takes seconds to send.
type slowBatches struct{ delay time.Duration }

func (s slowBatches) Do(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/$batch") {
		select {
		case <-time.After(s.delay):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestRestoreOverASlowLink: `azscep restore` runs on an operator's machine, where a transaction of 100 records can
// take longer to send than the 5-second try and 10-second call the service's own small calls inside Azure get. A
// restore over such a link completes instead of failing on every try.
func TestRestoreOverASlowLink(t *testing.T) {
	src, _ := azuriteStore(t)
	ctx := t.Context()
	for range 3 {
		if err := src.Insert(ctx, storetest.FullRecord(storetest.NewSerial())); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "backup.jsonl")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Backup(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, dstEnv := azuriteStore(t)
	cfg, err := config.Load(append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t)}, dstEnv...))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = backupCommand(ctx, cfg, true, []string{"-in", file}, &out, buildOptions{tablesTransport: slowBatches{delay: 6 * time.Second}})
	if err != nil || !strings.Contains(out.String(), "restored: certs 3") {
		t.Fatalf("restore over a slow link: %v\n%s", err, out.String())
	}
}
