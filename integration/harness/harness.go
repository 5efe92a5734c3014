// Package harness starts the real processes that ssogate's integration tests
// and load benchmark run against: a Caddy binary, redis-server (alone, with
// Sentinel, or as a Cluster), an upstream portal over HTTP, and Chromium.
//
// Every helper takes a testing.TB, binds to 127.0.0.1 on ports it picks itself
// (never the system Redis on 6379), and registers t.Cleanup to kill what it
// started and remove its temporary files, so a test only says what it needs.
// Every wait polls against a deadline; a failure reports the log tail of the
// process that did not come up, because "timed out" alone is useless in CI.
//
// Helpers call t.Fatal on failure, so call them from the test's goroutine.
package harness

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// portsMu guards portsGiven.
var portsMu sync.Mutex

// portsGiven remembers every port FreePort returned in this process. A port
// is free only until someone binds it, and a cluster or sentinel setup asks
// for several before starting anything: without this, the kernel may hand
// the same ephemeral port out twice.
var portsGiven = map[int]bool{}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now and that
// FreePort has not returned before in this process.
//
// Another process may still take it before the caller binds it; the helpers
// that start servers detect that from the server's exit and fail with its log.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("harness: no free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		seen := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !seen {
			return port
		}
	}
	t.Fatal("harness: no unused free port after 100 attempts")
	return 0
}

// addr is the loopback host:port of a port.
func addr(port int) string {
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
}

// tempDir makes a temporary directory removed at cleanup. It is not
// t.TempDir, whose removal fails the test when a just-killed process still
// writes into it (Chromium does); here that is only logged.
func tempDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ssogate-"+pattern+"-")
	if err != nil {
		t.Fatalf("harness: temp dir: %v", err)
	}
	t.Cleanup(func() {
		var err error
		for range 5 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("harness: could not remove %s: %v", dir, err)
	})
	return dir
}

// process is a child process we own: its output goes to a log file, and it
// is killed at cleanup whatever state the test left it in.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// startProcess runs name with args, stdout and stderr appended to logPath.
// The process is killed (and reaped) at cleanup unless it exited before.
func startProcess(t testing.TB, what, logPath string, env []string, name string, args ...string) *process {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("harness: %s: log file: %v", what, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("harness: %s: start %s: %v", what, name, err)
	}
	p := &process{name: what, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be reaped, so that its
// port is released when kill returns.
func (p *process) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to exit with SIGTERM and kills it if it has not
// exited within grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// status describes whether the process runs, for failure messages.
func (p *process) status() string {
	if p.exited() {
		return fmt.Sprintf("%s exited (%v)", p.name, p.waitErr)
	}
	return p.name + " still running"
}

// logTail returns the last lines of a log file, for failure messages.
func logTail(path string) string {
	const maxBytes, maxLines = 8 << 10, 40
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log %s: %v)", path, err)
	}
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return "--- " + filepath.Base(path) + " (tail) ---\n" + strings.Join(lines, "\n")
}

// waitFor polls cond until it returns nil, with a short growing interval.
// It fails the test after timeout, or at once when one of procs exits
// (nothing will come up then), with each process's log tail.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() error, procs ...*process) {
	t.Helper()
	if err := poll(timeout, cond, procs...); err != nil {
		var b bytes.Buffer
		fmt.Fprintf(&b, "harness: %s: %v", what, err)
		for _, p := range procs {
			fmt.Fprintf(&b, "\n%s\n%s", p.status(), logTail(p.logPath))
		}
		t.Fatal(b.String())
	}
}

// poll is waitFor without the test: it returns the last error of cond on
// timeout, or an error naming the process that exited.
func poll(timeout time.Duration, cond func() error, procs ...*process) error {
	deadline := time.Now().Add(timeout)
	interval := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("%s before it was ready (last check: %v)", p.status(), err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(interval)
		interval = min(interval*2, 200*time.Millisecond)
	}
}

// ModuleRoot finds the directory holding go.mod by walking up from the
// working directory, which go test sets to the package being tested.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
