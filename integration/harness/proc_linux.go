package harness

import "syscall"

// sysProcAttr makes the kernel kill our servers when the test binary dies
// without running its cleanups (a go test -timeout panic, a SIGKILL from CI),
// so no redis-server or caddy outlives the run holding a port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
