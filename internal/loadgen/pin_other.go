//go:build !linux

package loadgen

import (
	"errors"
	"os/exec"
)

// errNoPinning: CPU pinning (AZSCEP_BENCH_PIN) reads and sets thread affinity the Linux way.
var errNoPinning = errors.New("loadgen: CPU pinning needs Linux")

// PinProcess needs Linux.
func PinProcess(pid int, cpus []int) error { return errNoPinning }

// PinSelf needs Linux.
func PinSelf(cpus []int, others ...int) (restore func() error, err error) { return nil, errNoPinning }

// StartPinned needs Linux.
func StartPinned(cmd *exec.Cmd, cpus []int) error { return errNoPinning }

// AllowedCPUs needs Linux.
func AllowedCPUs(pid int) (string, error) { return "", errNoPinning }

// ThreadsAllowedCPUs needs Linux.
func ThreadsAllowedCPUs(pid int) (map[int]string, error) { return nil, errNoPinning }

func onCPUs(cpus []int, f func() error) error { return errNoPinning }
