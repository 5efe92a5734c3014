// Package healthcheck runs a health check at most once per interval, however
// many callers ask: a load balancer polling every gateway instance, often
// from several nodes, must not load the store it is checking.
package healthcheck

import (
	"context"
	"sync"
	"time"
)

// Cached is a check whose result is reused for MaxAge. Concurrent callers
// that find no fresh result share one in-flight check. Safe for concurrent use.
type Cached struct {
	check   func(context.Context) error
	maxAge  time.Duration
	timeout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	have    bool
	at      time.Time     // when the last result came in
	err     error         // the last result
	running chan struct{} // closed when the in-flight check ends; nil when none runs
}

// New returns a Cached running check, each run bounded by timeout, its result
// reused for maxAge after it came in, timed by now.
func New(check func(context.Context) error, maxAge, timeout time.Duration, now func() time.Time) *Cached {
	return &Cached{check: check, maxAge: maxAge, timeout: timeout, now: now}
}

// Result returns the result of a check that ended at most maxAge ago,
// running one if there is none. If ctx ends first, Result returns ctx's
// error; the check itself runs on, for the other callers, to its own timeout.
func (c *Cached) Result(ctx context.Context) error {
	c.mu.Lock()
	if c.have && c.now().Sub(c.at) < c.maxAge {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if ch := c.running; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	c.running = ch
	c.mu.Unlock()

	// The first caller runs the check, detached from its own cancellation
	// so that the callers waiting on it get an answer.
	runCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	err := c.check(runCtx)
	cancel()

	c.mu.Lock()
	c.have, c.at, c.err, c.running = true, c.now(), err, nil
	c.mu.Unlock()
	close(ch)
	return err
}
