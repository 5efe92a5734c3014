//go:build !linux

package bench

import "time"

// sleepUntil sleeps until t; see sleep_linux.go for why it is its own
// function there.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
