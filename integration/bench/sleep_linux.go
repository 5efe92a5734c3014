package bench

import (
	"syscall"
	"time"
)

// sleepUntil sleeps until t with a nanosleep of the calling thread: the Go
// runtime's timers wake at millisecond granularity, which at 1,000 requests a
// second would add up to a millisecond of the generator's own lateness to
// every latency measured from the schedule. The caller locks its OS thread.
func sleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(d))
		if err := syscall.Nanosleep(&ts, nil); err != syscall.EINTR {
			return
		}
	}
}
