package loadgen

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cpuSet is the affinity mask of cpus.
func cpuSet(cpus []int) (unix.CPUSet, error) {
	var set unix.CPUSet
	if len(cpus) == 0 {
		return set, errors.New("loadgen: no CPUs to pin to")
	}
	for _, c := range cpus {
		if c < 0 || c >= len(set)*64 {
			return set, fmt.Errorf("loadgen: CPU %d out of range", c)
		}
		set.Set(c)
	}
	return set, nil
}

// PinProcess sets the CPU affinity of every thread of process pid to cpus. Affinity is a property of each
// thread, not of the process, and a new thread inherits the mask of the thread that creates it: so once every
// thread is pinned the process stays pinned. Threads created while the list is walked are caught by walking it
// again until a pass finds no thread it has not pinned.
func PinProcess(pid int, cpus []int) error {
	set, err := cpuSet(cpus)
	if err != nil {
		return err
	}
	dir := fmt.Sprintf("/proc/%d/task", pid)
	pinned := map[int]bool{}
	for pass := 0; ; pass++ {
		if pass == 10 {
			return fmt.Errorf("loadgen: process %d keeps starting threads while being pinned", pid)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("loadgen: listing threads of %d: %w", pid, err)
		}
		fresh := 0
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || pinned[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) { // ESRCH: it ended
				return fmt.Errorf("loadgen: pinning thread %d of %d: %w", tid, pid, err)
			}
			pinned[tid] = true
			fresh++
		}
		if fresh == 0 {
			return nil
		}
	}
}

// PinSelf pins this process to cpus (PinProcess) and sets GOMAXPROCS to their number, so that the Go scheduler
// does not run more goroutines at once than the process has CPUs; it pins the processes others to cpus too.
// restore puts every one of them back on the CPUs the calling thread had at the time of the call, and puts
// GOMAXPROCS back.
func PinSelf(cpus []int, others ...int) (restore func() error, err error) {
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		return nil, fmt.Errorf("loadgen: reading this process's affinity: %w", err)
	}
	var all []int
	for c := range len(before) * 64 {
		if before.IsSet(c) {
			all = append(all, c)
		}
	}
	procs := runtime.GOMAXPROCS(0)
	pids := append([]int{os.Getpid()}, others...)
	restore = func() error {
		var errs []error
		for _, pid := range pids {
			errs = append(errs, PinProcess(pid, all))
		}
		runtime.GOMAXPROCS(procs)
		return errors.Join(errs...)
	}
	for _, pid := range pids {
		if err := PinProcess(pid, cpus); err != nil {
			return nil, errors.Join(err, restore())
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return restore, nil
}

// StartPinned starts cmd with its CPU affinity set to cpus from its first instruction: the fork happens on an OS
// thread pinned to cpus, whose mask the child inherits. A Go child therefore sizes GOMAXPROCS to those CPUs at
// start-up, as it would on a machine that had only them.
func StartPinned(cmd *exec.Cmd, cpus []int) error {
	return onCPUs(cpus, cmd.Start)
}

// AllowedCPUs is the Cpus_allowed_list line of /proc/<pid>/status (for example "1" or "0-1"): the CPUs the
// process's main thread may run on.
func AllowedCPUs(pid int) (string, error) {
	return allowedCPUs(fmt.Sprintf("/proc/%d/status", pid))
}

// ThreadsAllowedCPUs is the Cpus_allowed_list of every thread of process pid, by thread ID.
func ThreadsAllowedCPUs(pid int) (map[int]string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loadgen: listing threads of %d: %w", pid, err)
	}
	out := map[int]string{}
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		list, err := allowedCPUs(dir + "/" + e.Name() + "/status")
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended
		}
		if err != nil {
			return nil, err
		}
		out[tid] = list
	}
	return out, nil
}

func allowedCPUs(statusPath string) (string, error) {
	data, err := os.ReadFile(statusPath)
	if err != nil {
		return "", fmt.Errorf("loadgen: reading %s: %w", statusPath, err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("loadgen: no Cpus_allowed_list in %s", statusPath)
}

// onCPUs runs f on an OS thread pinned to cpus, and gives the thread its mask back afterwards. Should that
// fail, the thread stays locked to its goroutine, and Go ends it (or, for the main thread, parks it for good)
// rather than hand a pinned thread to other goroutines.
func onCPUs(cpus []int, f func() error) error {
	set, err := cpuSet(cpus)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var before unix.CPUSet
		if err := unix.SchedGetaffinity(0, &before); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("loadgen: reading a thread's affinity: %w", err)
			return
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			runtime.UnlockOSThread() // its mask did not change
			done <- fmt.Errorf("loadgen: pinning a thread to CPUs %v: %w", cpus, err)
			return
		}
		err := f()
		if unix.SchedSetaffinity(0, &before) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}
