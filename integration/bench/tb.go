package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"
)

// benchTB lets the integration harness, which is written for tests, run in
// this program. testing.TB cannot be implemented outside package testing (it
// has an unexported method), so the interface is embedded, nil, and every
// method the harness calls is defined here; one it does not call would panic,
// which the harness's own tests would show first.
//
// Fatal unwinds with a panic that run recovers; cleanups then run in reverse
// order, as in a test. Like a test's, they must be called from run's
// goroutine.
type benchTB struct {
	testing.TB

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	ctx      context.Context
	cancel   context.CancelFunc
}

// fatal is the panic value of benchTB.FailNow.
type fatal struct{}

func newBenchTB() *benchTB {
	ctx, cancel := context.WithCancel(context.Background())
	return &benchTB{ctx: ctx, cancel: cancel}
}

// run calls f, then the cleanups, and reports whether f succeeded.
func (t *benchTB) run(f func()) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if _, isFatal := v.(fatal); !isFatal {
				t.cleanup()
				panic(v)
			}
			t.failed = true
		}
		t.cleanup()
		ok = !t.failed
	}()
	f()
	return
}

func (t *benchTB) cleanup() {
	t.cancel()
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		f()
	}
}

func (t *benchTB) Helper()      {}
func (t *benchTB) Name() string { return "bench" }

func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *benchTB) Context() context.Context { return t.ctx }

func (t *benchTB) Log(args ...any)                 { log.Print(args...) }
func (t *benchTB) Logf(format string, args ...any) { log.Printf(format, args...) }

func (t *benchTB) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

func (t *benchTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *benchTB) Error(args ...any)                 { log.Print(args...); t.Fail() }
func (t *benchTB) Errorf(format string, args ...any) { log.Printf(format, args...); t.Fail() }
func (t *benchTB) FailNow()                          { panic(fatal{}) }
func (t *benchTB) Fatal(args ...any)                 { log.Print(args...); t.FailNow() }
func (t *benchTB) Fatalf(format string, args ...any) { log.Printf(format, args...); t.FailNow() }

// A benchmark that cannot run what it measures has failed: skips are fatal.
func (t *benchTB) Skip(args ...any)                 { t.Fatal(append([]any{"skip: "}, args...)...) }
func (t *benchTB) Skipf(format string, args ...any) { t.Fatalf("skip: "+format, args...) }
func (t *benchTB) SkipNow()                         { t.Fatal("skip") }
func (t *benchTB) Skipped() bool                    { return false }

func (t *benchTB) TempDir() string {
	dir, err := os.MkdirTemp("", "ssogate-bench-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (t *benchTB) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		t.Fatalf("setenv %s: %v", key, err)
	}
	t.Cleanup(func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	})
}

// check fails the run with a message when err is not nil.
func (t *benchTB) check(err error, what string, args ...any) {
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
