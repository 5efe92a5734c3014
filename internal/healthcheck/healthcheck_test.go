package healthcheck

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssogate/ssogate/internal/testclock"
)

func TestReusedForMaxAge(t *testing.T) {
	clk := testclock.New()
	var runs atomic.Int32
	var fail atomic.Bool
	down := errors.New("down")
	c := New(func(context.Context) error {
		runs.Add(1)
		if fail.Load() {
			return down
		}
		return nil
	}, time.Second, time.Second, clk.Now)
	ctx := context.Background()
	for range 100 {
		if err := c.Result(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d checks for 100 calls within maxAge, want 1", n)
	}
	fail.Store(true)
	clk.Add(999 * time.Millisecond)
	if err := c.Result(ctx); err != nil {
		t.Fatalf("within maxAge: %v, want the cached ok", err)
	}
	clk.Add(time.Millisecond)
	if err := c.Result(ctx); !errors.Is(err, down) {
		t.Fatalf("at maxAge: %v, want a fresh check's failure", err)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d checks, want 2", n)
	}
	fail.Store(false)
	clk.Add(time.Second)
	if err := c.Result(ctx); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestConcurrentCallersShareOneCheck(t *testing.T) {
	clk := testclock.New()
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	var runs atomic.Int32
	c := New(func(ctx context.Context) error {
		runs.Add(1)
		started <- struct{}{}
		<-release
		return nil
	}, time.Second, time.Minute, clk.Now)
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() { errs <- c.Result(context.Background()) })
	}
	<-started
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d checks for %d concurrent callers, want 1", n, callers)
	}
}

func TestCheckBoundedByTimeout(t *testing.T) {
	clk := testclock.New()
	c := New(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, time.Second, 20*time.Millisecond, clk.Now)
	if err := c.Result(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging check: %v, want its timeout", err)
	}
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	clk := testclock.New()
	release := make(chan struct{})
	started := make(chan struct{})
	c := New(func(ctx context.Context) error {
		close(started)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, time.Second, time.Minute, clk.Now)
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() { leader <- c.Result(leaderCtx) }()
	<-started
	waiterCtx, cancelWaiter := context.WithCancel(context.Background())
	cancelWaiter()
	if err := c.Result(waiterCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose request ended: %v, want context.Canceled", err)
	}
	cancelLeader()
	close(release)
	if err := <-leader; err != nil {
		t.Fatalf("the check was cancelled with its first caller: %v", err)
	}
}
