package azuritetest

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts Azurite in its own process group (so Stop reaches anything it forks) and has the kernel
// kill it if the test binary dies without running Main's cleanup.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
