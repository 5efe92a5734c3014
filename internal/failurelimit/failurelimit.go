// Package failurelimit counts failures per client in a sliding window, so that
// nobody can guess sign-in tokens by trying many, in bounded memory and without
// a sweeper goroutine.
package failurelimit

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// ClientKey is what a client is counted by: its IP, or its /64 for IPv6,
// since one host usually holds a whole /64 and could rotate through it.
func ClientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip // not expected from Caddy; count the string as it is
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64) // cannot fail for an IPv6 address and 64
		return p.String()
	}
	return addr.String()
}

// Limiter is a sliding-window log of failures per client. An attempt first
// reserves a slot (Begin), so that a burst of concurrent requests cannot all
// slip past the check before the first of them fails; Fail records the failure
// and Done gives the reservation back. A nil *Limiter allows everything.
//
// Clients are kept in a list ordered by last activity, so that idle ones are
// forgotten from its front as the window passes, and the oldest one when the
// table is full, without a sweeper goroutine.
type Limiter struct {
	limit  int
	window time.Duration
	max    int
	now    func() time.Time
	epoch  time.Time // times are kept as durations since, monotonic

	mu      sync.Mutex
	clients map[string]*list.Element // of *failureLog
	idle    list.List                // front: longest idle
}

// failureLog is one client's recent failures.
type failureLog struct {
	key      string
	times    []time.Duration // at most limit, oldest first
	last     time.Duration   // last activity: a reservation or a failure
	inflight int             // reservations not yet given back
	limited  bool            // refused since its last reservation
}

func New(limit int, window time.Duration, maxClients int, now func() time.Time) *Limiter {
	return &Limiter{
		limit:   limit,
		window:  window,
		max:     maxClients,
		now:     now,
		epoch:   now(),
		clients: make(map[string]*list.Element),
	}
}

// begin reserves a redemption for key. When the client is over the limit it
// returns ok false, how long until a slot frees, and whether this is the first
// refusal since the client was last let through (worth one log line).
func (l *Limiter) Begin(key string) (retry time.Duration, first, ok bool) {
	if l == nil {
		return 0, false, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().Sub(l.epoch)
	l.expire(now)
	e := l.clients[key]
	if e == nil {
		if len(l.clients) >= l.max {
			l.forget(l.idle.Front())
		}
		e = l.idle.PushBack(&failureLog{key: key})
		l.clients[key] = e
	}
	f := e.Value.(*failureLog)
	f.prune(now, l.window)
	if used := len(f.times) + f.inflight; used >= l.limit {
		first = !f.limited
		f.limited = true
		// The slot frees when the oldest failure that keeps the client
		// at the limit leaves the window; reservations end within a
		// store timeout, so a second is enough for them.
		retry = time.Second
		if i := used - l.limit; i < len(f.times) {
			retry = max(f.times[i]+l.window-now, time.Second)
		}
		return retry, first, false
	}
	f.limited = false
	f.inflight++
	f.last = now
	l.idle.MoveToBack(e)
	return 0, false, true
}

// fail records a failed redemption of key.
func (l *Limiter) Fail(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.clients[key]
	if e == nil {
		return // forgotten while the table was full
	}
	f := e.Value.(*failureLog)
	now := l.now().Sub(l.epoch)
	f.prune(now, l.window)
	f.push(now, l.limit)
	f.last = now
	l.idle.MoveToBack(e)
}

// done gives back the reservation of begin.
func (l *Limiter) Done(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.clients[key]
	if e == nil {
		return
	}
	f := e.Value.(*failureLog)
	if f.inflight > 0 {
		f.inflight--
	}
	if f.inflight == 0 && len(f.times) == 0 {
		// A successful client leaves nothing behind.
		l.forget(e)
	}
}

// expire forgets clients idle for a whole window: they have no failure left
// in it. Clients with a redemption in flight stay, and so does everyone behind
// them in the list (they are younger).
func (l *Limiter) expire(now time.Duration) {
	for e := l.idle.Front(); e != nil; e = l.idle.Front() {
		f := e.Value.(*failureLog)
		if f.inflight > 0 || now-f.last < l.window {
			return
		}
		l.forget(e)
	}
}

func (l *Limiter) forget(e *list.Element) {
	delete(l.clients, e.Value.(*failureLog).key)
	l.idle.Remove(e)
}

// size is the number of clients tracked, for tests.
func (l *Limiter) Size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// prune drops failures that left the window. Times are in order, oldest first.
func (f *failureLog) prune(now, window time.Duration) {
	i := 0
	for i < len(f.times) && now-f.times[i] >= window {
		i++
	}
	if i > 0 {
		f.times = f.times[:copy(f.times, f.times[i:])]
	}
}

// push appends a failure, dropping the oldest when limit are kept: only the
// newest limit failures can decide when the client may try again.
func (f *failureLog) push(t time.Duration, limit int) {
	if len(f.times) == limit {
		f.times = f.times[:copy(f.times, f.times[1:])]
	}
	f.times = append(f.times, t)
}

// Limit returns the failures allowed per window, and the window.
func (l *Limiter) Limit() (int, time.Duration) { return l.limit, l.window }
