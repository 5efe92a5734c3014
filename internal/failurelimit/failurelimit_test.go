package failurelimit

import (
	"fmt"
	"github.com/ssogate/ssogate/internal/testclock"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rlFail runs one whole failed redemption for key, as a redemption does.
func rlFail(t *testing.T, l *Limiter, key string) {
	t.Helper()
	if retry, _, ok := l.Begin(key); !ok {
		t.Fatalf("%s refused (retry %v) before its limit", key, retry)
	}
	l.Fail(key)
	l.Done(key)
}

func TestLimiterCountsFailuresInASlidingWindow(t *testing.T) {
	clock := testclock.New()
	l := New(3, time.Minute, 100, clock.Now)
	for range 3 {
		rlFail(t, l, "192.0.2.1")
		clock.Add(10 * time.Second) // failures at 0s, 10s, 20s
	}
	// At 30s the fourth is refused until the first leaves the window (60s).
	retry, first, ok := l.Begin("192.0.2.1")
	if ok || !first || retry != 30*time.Second {
		t.Fatalf("4th attempt: ok %v first %v retry %v, want refused, first refusal, 30s", ok, first, retry)
	}
	if _, first, _ := l.Begin("192.0.2.1"); first {
		t.Error("2nd refusal in a row reported as the first")
	}
	// Another client is not affected.
	rlFail(t, l, "192.0.2.2")

	clock.Add(30*time.Second - time.Nanosecond)
	if _, _, ok := l.Begin("192.0.2.1"); ok {
		t.Fatal("let through a nanosecond before the oldest failure left the window")
	}
	clock.Add(time.Nanosecond)
	// One slot is free: one more failure, then refused until the 10s one
	// leaves (at 70s, 10s from now).
	rlFail(t, l, "192.0.2.1")
	if retry, _, ok := l.Begin("192.0.2.1"); ok || retry != 10*time.Second {
		t.Fatalf("after refilling the freed slot: ok %v retry %v, want refused for 10s", ok, retry)
	}
}

func TestLimiterReservesSlotsForRequestsInFlight(t *testing.T) {
	clock := testclock.New()
	l := New(3, time.Minute, 100, clock.Now)
	// Three concurrent redemptions from one client, none finished: a
	// fourth must wait, or a burst could try any number of tokens before
	// the first failure is counted.
	for i := range 3 {
		if _, _, ok := l.Begin("c"); !ok {
			t.Fatalf("reservation %d refused", i)
		}
	}
	retry, _, ok := l.Begin("c")
	if ok || retry != time.Second {
		t.Fatalf("4th concurrent: ok %v retry %v, want refused for 1s", ok, retry)
	}
	// Successes give their slots back and leave nothing behind.
	for range 3 {
		l.Done("c")
	}
	if n := l.Size(); n != 0 {
		t.Fatalf("%d clients tracked after three successes, want 0", n)
	}
	if _, _, ok := l.Begin("c"); !ok {
		t.Fatal("refused after every reservation was given back")
	}
}

func TestLimiterForgetsIdleClientsAndStaysBounded(t *testing.T) {
	clock := testclock.New()
	l := New(2, time.Minute, 4, clock.Now)
	for i := range 4 {
		rlFail(t, l, fmt.Sprint("10.0.0.", i))
		clock.Add(time.Second)
	}
	// A fifth client pushes out the longest idle one.
	rlFail(t, l, "10.0.0.9")
	if n := l.Size(); n != 4 {
		t.Fatalf("%d clients tracked, want the cap of 4", n)
	}
	l.mu.Lock()
	_, kept := l.clients["10.0.0.0"]
	l.mu.Unlock()
	if kept {
		t.Error("the longest idle client was kept over the cap")
	}
	// A window later every client has aged out, without any sweeper.
	clock.Add(time.Minute)
	rlFail(t, l, "10.0.0.10")
	if n := l.Size(); n != 1 {
		t.Fatalf("%d clients tracked a window later, want only the new one", n)
	}
}

func TestLimiterIsSafeForConcurrentUse(t *testing.T) {
	l := New(50, time.Minute, 64, time.Now)
	var refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprint("198.51.100.", (g*200+i)%100)
				if _, _, ok := l.Begin(key); !ok {
					refused.Add(1)
					continue
				}
				if i%2 == 0 {
					l.Fail(key)
				}
				l.Done(key)
			}
		})
	}
	wg.Wait()
	if n := l.Size(); n > 64 {
		t.Fatalf("%d clients tracked, over the cap of 64", n)
	}
	t.Logf("%d of 1600 refused", refused.Load())
}

func TestNilLimiterAllowsEverything(t *testing.T) {
	var l *Limiter
	if _, _, ok := l.Begin("x"); !ok {
		t.Fatal("redeem_rate_limit off refused a request")
	}
	l.Fail("x")
	l.Done("x")
}

func TestRateLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                "192.0.2.1",
		"::ffff:192.0.2.1":         "192.0.2.1", // the same client over a dual-stack socket
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":     "2001:db8:1:2::/64", // same /64, same client
		"2001:db8:1:3::1":          "2001:db8:1:3::/64",
		"fe80::1%eth0":             "fe80::/64",
		"not an ip (no client ip)": "not an ip (no client ip)",
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}
