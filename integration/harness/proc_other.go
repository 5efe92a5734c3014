//go:build !linux

package harness

import "syscall"

// sysProcAttr is empty where there is no parent-death signal: processes are
// still killed at cleanup, only not when the test binary itself is killed.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}
