// Package testclock is a clock that tests move by hand, for the code that takes
// its clock as a func() time.Time. It is imported by tests only.
package testclock

import (
	"sync/atomic"
	"time"
)

// Clock starts at the real time (code without an injected clock reads the real
// one, and the two must agree) and moves only when told. It is safe for
// concurrent use.
type Clock struct{ t atomic.Int64 }

// New returns a clock at the current real time.
func New() *Clock {
	c := &Clock{}
	c.t.Store(time.Now().UnixNano())
	return c
}

// Now is the clock's time; pass c.Now where a func() time.Time is wanted.
func (c *Clock) Now() time.Time { return time.Unix(0, c.t.Load()) }

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) { c.t.Add(int64(d)) }

// Nanos is the clock's time in unix nanoseconds.
func (c *Clock) Nanos() int64 { return c.t.Load() }

// In is the unix nanoseconds d from the clock's time.
func (c *Clock) In(d time.Duration) int64 { return c.t.Load() + int64(d) }
