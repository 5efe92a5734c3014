// Package tokenbucket is a rate limit of n events per window, as a token
// bucket: a burst of up to n at once, then one every window/n. It imports
// nothing of Caddy.
package tokenbucket

import (
	"sync"
	"time"
)

// Bucket allows n events per window. Safe for concurrent use.
type Bucket struct {
	n     float64
	every time.Duration // one token comes back this often
	now   func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// New returns a full bucket of n tokens refilled over window, reading the
// time from now.
func New(n int, window time.Duration, now func() time.Time) *Bucket {
	return &Bucket{n: float64(n), every: window / time.Duration(n), now: now, tokens: float64(n), last: now()}
}

// Take spends one token. When none is left it reports false and how long
// until one is back.
func (b *Bucket) Take() (retry time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.n, b.tokens+float64(d)/float64(b.every))
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) * float64(b.every)), false
}
