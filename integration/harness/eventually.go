package harness

import (
	"testing"
	"time"
)

// Eventually polls cond until it returns nil, with a short growing interval
// (10 ms up to 200 ms), and fails the test with cond's last error after
// timeout. It is the one poll loop of the integration tests: use it for
// every "becomes true within" check instead of a deadline loop of one's own.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	waitFor(t, what, timeout, cond)
}
