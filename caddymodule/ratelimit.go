package caddymodule

import (
	"container/list"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// RedeemRateLimit bounds failed redemptions per client IP, so that nobody can
// guess tokens by trying many. A failure is a redeem that creates no session
// (malformed, unknown, used or expired token); a bad redirect target is not one.
// Past the limit, redeem routes answer 429 with Retry-After and do not ask the
// store. Counted in memory, per instance: with N instances behind a load
// balancer a client may fail up to N times the limit.
//
// The client IP is the one Caddy determines, so the server's trusted_proxies
// and client_ip_headers are honoured. IPv6 clients are counted per /64, the
// smallest network a single host is normally given.
type RedeemRateLimit struct {
	// Failed redemptions allowed per client IP within Window, at most
	// 1000. Default: 30.
	Failures int `json:"failures,omitempty"`
	// The sliding window the failures are counted in. Default: 1m.
	Window caddy.Duration `json:"window,omitempty"`
	// Turns the limit off.
	Disabled bool `json:"disabled,omitempty"`
}

const (
	defaultRedeemFailures = 30
	defaultRedeemWindow   = time.Minute
	// maxRedeemFailures bounds the memory one client can take (a timestamp
	// per failure).
	maxRedeemFailures = 1000
	// rateLimitMemory is what the table of clients may take at most; past
	// it, the longest-idle client is forgotten. It holds 65536 clients at
	// the default limit, fewer for higher limits.
	rateLimitMemory = 32 << 20
	// maxRateLimitClients caps the table however low the limit, and
	// minRateLimitClients keeps a useful table however high.
	maxRateLimitClients = 1 << 16
	minRateLimitClients = 1 << 12
)

// rateLimitClients is how many clients the table keeps at a limit of n
// failures: each costs a timestamp per failure plus about 256 bytes of map,
// list and record.
func rateLimitClients(n int) int {
	return min(max(rateLimitMemory/(8*n+256), minRateLimitClients), maxRateLimitClients)
}

// provisionRateLimit sets up the limiter of redeem_rate_limit.
func (h *Handler) provisionRateLimit() error {
	c := h.RedeemRateLimit
	if c == nil {
		c = &RedeemRateLimit{}
	}
	if c.Disabled {
		h.limiter = nil
		return nil
	}
	n, window := c.Failures, time.Duration(c.Window)
	if n == 0 {
		n = defaultRedeemFailures
	}
	if window == 0 {
		window = defaultRedeemWindow
	}
	if n < 0 || n > maxRedeemFailures {
		return fmt.Errorf("redeem_rate_limit: failures %d: want 1 to %d", n, maxRedeemFailures)
	}
	if window < 0 {
		return fmt.Errorf("redeem_rate_limit: window %s: must be positive", window)
	}
	h.limiter = newFailureLimiter(n, window, rateLimitClients(n), time.Now)
	return nil
}

// unmarshalRateLimit parses `redeem_rate_limit <failures> <window> | off`.
func (h *Handler) unmarshalRateLimit(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) > 0 && args[0] == "off":
		if len(args) != 1 {
			return d.ArgErr()
		}
		h.RedeemRateLimit = &RedeemRateLimit{Disabled: true}
		return nil
	case len(args) != 2:
		return d.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("redeem_rate_limit: failures %q: want a positive number", args[0])
	}
	window, err := caddy.ParseDuration(args[1])
	if err != nil || window <= 0 {
		return d.Errf("redeem_rate_limit: window %q: want a positive duration", args[1])
	}
	h.RedeemRateLimit = &RedeemRateLimit{Failures: n, Window: caddy.Duration(window)}
	return nil
}

// admitRedeem reserves a slot for a redemption of r's client, or says how
// long it must wait (first: the first refusal of a streak, worth a log line).
func (h *Handler) admitRedeem(r *http.Request) (release func(), retry time.Duration, first, ok bool) {
	if h.limiter == nil {
		return func() {}, 0, false, true
	}
	key := rateLimitKey(clientIP(r))
	if retry, first, ok := h.limiter.begin(key); !ok {
		return nil, retry, first, false
	}
	return func() { h.limiter.done(key) }, 0, false, true
}

// redeemFailed counts a failed redemption of r's client.
func (h *Handler) redeemFailed(r *http.Request) {
	h.limiter.fail(rateLimitKey(clientIP(r)))
}

// clientIP is the client's address as Caddy determines it, so the server's
// trusted_proxies and client_ip_headers are honoured behind a load balancer.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// rateLimitKey is what a client is counted by: its IP, or its /64 for IPv6,
// since one host usually holds a whole /64 and could rotate through it.
func rateLimitKey(ip string) string {
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

// failureLimiter is a sliding-window log of failures per client. A redemption
// first reserves a slot (begin), so that a burst of concurrent requests cannot
// all slip past the check before the first of them fails; fail records the
// failure and done gives the reservation back.
//
// Clients are kept in a list ordered by last activity, so that idle ones are
// forgotten from its front as the window passes, and the oldest one when the
// table is full, without a sweeper goroutine.
type failureLimiter struct {
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

func newFailureLimiter(limit int, window time.Duration, maxClients int, now func() time.Time) *failureLimiter {
	return &failureLimiter{
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
func (l *failureLimiter) begin(key string) (retry time.Duration, first, ok bool) {
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
func (l *failureLimiter) fail(key string) {
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
func (l *failureLimiter) done(key string) {
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
func (l *failureLimiter) expire(now time.Duration) {
	for e := l.idle.Front(); e != nil; e = l.idle.Front() {
		f := e.Value.(*failureLog)
		if f.inflight > 0 || now-f.last < l.window {
			return
		}
		l.forget(e)
	}
}

func (l *failureLimiter) forget(e *list.Element) {
	delete(l.clients, e.Value.(*failureLog).key)
	l.idle.Remove(e)
}

// size is the number of clients tracked, for tests.
func (l *failureLimiter) size() int {
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
