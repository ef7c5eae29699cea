package main

import (
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/loadgen"
	"github.com/azscep/azscep/internal/store/azuritetest"
)

// TestBenchPinPlacesServersAndLoad checks the placement AZSCEP_BENCH_PIN=1 gives BenchmarkPeers, by
// /proc/<pid>/task/*/status: a server started for the pinned run (here the stand-in) has every thread on
// benchServerCPUs from its start, and still answers; for a pinned turn the load generator (this process) and the
// shared Azurite have every thread on benchLoadCPUs, and afterwards on every CPU again.
func TestBenchPinPlacesServersAndLoad(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Fatalf("the pinned bench needs two CPUs; this machine has %d", runtime.NumCPU())
	}
	onAll := func(pid int, want string) {
		t.Helper()
		threads, err := loadgen.ThreadsAllowedCPUs(pid)
		if err != nil {
			t.Fatal(err)
		}
		for tid, got := range threads {
			if got != want {
				t.Errorf("thread %d of process %d may run on CPUs %q, want %q", tid, pid, got, want)
			}
		}
	}
	everyCPU, err := loadgen.AllowedCPUs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if everyCPU == benchCPUList(benchLoadCPUs) {
		t.Fatalf("this process is already on CPU %s only", everyCPU)
	}

	stand := startFloorChild(t, benchServerCPUs)
	onAll(stand.cmd.Process.Pid, benchCPUList(benchServerCPUs))
	resp, err := http.Post(stand.base+"/", "application/x-pki-message", strings.NewReader("request"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != benchFloorAnswerBytes {
		t.Fatalf("pinned stand-in answered %d with %d bytes", resp.StatusCode, len(body))
	}
	onAll(stand.cmd.Process.Pid, benchCPUList(benchServerCPUs)) // and the threads serving that request

	azuritetest.ConnectionString(t)    // starts the shared Azurite, unless AZSCEP_TABLES_CONNECTION names another
	azurite := azuritetest.SharedPID() // 0 with AZSCEP_TABLES_CONNECTION: no process of ours to pin
	unpin := benchPinLoad(t)
	onAll(os.Getpid(), benchCPUList(benchLoadCPUs))
	if azurite != 0 {
		onAll(azurite, benchCPUList(benchLoadCPUs))
	}
	if got := runtime.GOMAXPROCS(0); got != len(benchLoadCPUs) {
		t.Errorf("GOMAXPROCS %d during a pinned turn, want %d", got, len(benchLoadCPUs))
	}
	unpin()
	onAll(os.Getpid(), everyCPU)
	if azurite != 0 {
		onAll(azurite, everyCPU)
	}
}
