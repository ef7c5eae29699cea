package loadgen

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lastCPU is the highest CPU this process may run on, and the CPU list of its mask as /proc writes it: pinning
// to that CPU changes the list on any machine with two CPUs or more.
func lastCPU(t *testing.T) (int, string) {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	last := -1
	for c := range len(set) * 64 {
		if set.IsSet(c) {
			last = c
		}
	}
	all, err := AllowedCPUs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return last, all
}

// pinHelperChild starts the test binary as pinHelper, pinned to cpus when cpus is not nil; it returns the
// child, its stdin, its output lines and the GOMAXPROCS it printed.
func pinHelperChild(t *testing.T, cpus []int) (*exec.Cmd, io.WriteCloser, *bufio.Scanner, int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), pinHelperEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cpus == nil {
		err = cmd.Start()
	} else {
		err = StartPinned(cmd, cpus)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewScanner(outPipe)
	if !out.Scan() {
		t.Fatalf("helper printed nothing: %v", out.Err())
	}
	procs, err := strconv.Atoi(out.Text())
	if err != nil {
		t.Fatalf("helper printed %q", out.Text())
	}
	return cmd, in, out, procs
}

// spawn has the helper lock four goroutines to OS threads, which starts new threads once the idle ones are taken.
func spawn(t *testing.T, in io.Writer, out *bufio.Scanner) {
	t.Helper()
	if _, err := io.WriteString(in, "spawn\n"); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() || out.Text() != "spawned" {
		t.Fatalf("helper answered %q, %v", out.Text(), out.Err())
	}
}

// allThreadsOn fails unless every thread of pid may run on exactly the CPUs of list, and returns their number.
func allThreadsOn(t *testing.T, pid int, list string) int {
	t.Helper()
	threads, err := ThreadsAllowedCPUs(pid)
	if err != nil {
		t.Fatal(err)
	}
	for tid, got := range threads {
		if got != list {
			t.Errorf("thread %d of %d may run on %q, want %q", tid, pid, got, list)
		}
	}
	return len(threads)
}

// A child started pinned runs on its CPU from the start: its main thread, every thread its runtime starts, the
// threads it starts later, and its GOMAXPROCS (1: Go sizes it from the mask it starts with).
func TestStartPinnedChildRunsOnlyOnItsCPU(t *testing.T) {
	cpu, _ := lastCPU(t)
	want := strconv.Itoa(cpu)
	cmd, in, out, procs := pinHelperChild(t, []int{cpu})
	if procs != 1 {
		t.Errorf("pinned child's GOMAXPROCS %d, want 1", procs)
	}
	if got, err := AllowedCPUs(cmd.Process.Pid); err != nil || got != want {
		t.Fatalf("Cpus_allowed_list %q (%v), want %q", got, err, want)
	}
	before := allThreadsOn(t, cmd.Process.Pid, want)
	spawn(t, in, out)
	if after := allThreadsOn(t, cmd.Process.Pid, want); after <= before {
		t.Fatalf("%d threads after locking four goroutines to threads, %d before: no new thread to check", after, before)
	}
	// The starting thread was this process's, and it was discarded: this process is still on all its CPUs.
	_, all := lastCPU(t)
	allThreadsOn(t, os.Getpid(), all)
}

// PinProcess moves a running process: every thread it has, and every thread it starts afterwards.
func TestPinProcessPinsEveryThread(t *testing.T) {
	cpu, all := lastCPU(t)
	want := strconv.Itoa(cpu)
	cmd, in, out, procs := pinHelperChild(t, nil)
	_ = procs
	threads := allThreadsOn(t, cmd.Process.Pid, all)
	if threads < 2 {
		t.Fatalf("helper has %d threads; the test needs a process with several", threads)
	}
	if err := PinProcess(cmd.Process.Pid, []int{cpu}); err != nil {
		t.Fatal(err)
	}
	allThreadsOn(t, cmd.Process.Pid, want)
	spawn(t, in, out)
	if after := allThreadsOn(t, cmd.Process.Pid, want); after <= threads {
		t.Fatalf("%d threads after locking four goroutines to threads, %d before: no new thread to check", after, threads)
	}
	if err := PinProcess(cmd.Process.Pid, nil); err == nil {
		t.Fatal("pinning to no CPU was accepted")
	}
}

// PinSelf pins this process, its GOMAXPROCS and the other processes named; restore puts all of them back.
func TestPinSelfAndRestore(t *testing.T) {
	cpu, all := lastCPU(t)
	other, _, _, _ := pinHelperChild(t, nil)
	procs := runtime.GOMAXPROCS(0)
	restore, err := PinSelf([]int{cpu}, other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	allThreadsOn(t, os.Getpid(), strconv.Itoa(cpu))
	allThreadsOn(t, other.Process.Pid, strconv.Itoa(cpu))
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS %d while pinned to one CPU", got)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	allThreadsOn(t, os.Getpid(), all)
	allThreadsOn(t, other.Process.Pid, all)
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d after restore, want %d", got, procs)
	}
	if _, err := PinSelf([]int{cpu}, 1<<30); err == nil { // no such process
		t.Fatal("pinning a process that does not exist was accepted")
	}
	allThreadsOn(t, os.Getpid(), all) // and the failed call left this process as it was
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d after a failed PinSelf, want %d", got, procs)
	}
}

// The one-CPU floor runs on one thread pinned to the CPU asked for, and leaves the caller's thread as it was.
func TestMeasureOnOneCPU(t *testing.T) {
	cpu, all := lastCPU(t)
	var seen string
	err := onCPUs([]int{cpu}, func() error {
		var err error
		seen, err = allowedCPUs("/proc/thread-self/status")
		return err
	})
	if err != nil || seen != strconv.Itoa(cpu) {
		t.Fatalf("f ran on a thread allowed %q (%v), want %q", seen, err, strconv.Itoa(cpu))
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := NewFloorMeter(2048, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.MeasureOn(50*time.Millisecond, cpu)
	if err != nil {
		t.Fatal(err)
	}
	if f.CPUs != 1 || f.EnrollmentsPerSecond <= 0 || f.Decrypt <= 0 || f.SignCA <= 0 || f.SignRA <= 0 {
		t.Fatalf("one-CPU floor %+v", f)
	}
	if got, err := allowedCPUs("/proc/thread-self/status"); err != nil || got != all {
		t.Fatalf("the caller's thread is allowed %q after MeasureOn (%v), want %q", got, err, all)
	}
	if _, err := m.MeasureOn(0, cpu); err == nil {
		t.Fatal("a zero duration was accepted")
	}
}
