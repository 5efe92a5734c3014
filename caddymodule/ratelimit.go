package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ssogate/ssogate/internal/failurelimit"
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
	h.limiter = failurelimit.New(n, window, rateLimitClients(n), time.Now)
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
	key := failurelimit.ClientKey(clientIP(r))
	if retry, first, ok := h.limiter.Begin(key); !ok {
		return nil, retry, first, false
	}
	return func() { h.limiter.Done(key) }, 0, false, true
}

// redeemFailed counts a failed redemption of r's client.
func (h *Handler) redeemFailed(r *http.Request) {
	h.limiter.Fail(failurelimit.ClientKey(clientIP(r)))
}

// clientIP is the client's address as Caddy determines it, so the server's
// trusted_proxies and client_ip_headers are honoured behind a load balancer.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}
