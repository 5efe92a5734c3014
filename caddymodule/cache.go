package caddymodule

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ssogate/ssogate/internal/sessioncache"
)

// SessionCache keeps sessions the store has confirmed in this instance's
// memory, so that a signed-in request normally needs no store round trip.
//
// A cached session is served for at most TTL (and at most a tenth of
// session_idle) after the store last confirmed it; the next request after
// that asks the store again, which also pushes the session's idle expiry
// forward. So the idle expiry still slides, in steps: a session may end up to
// that much earlier than session_idle after its last request, never later.
// A session past its absolute expiry (session_ttl) is never served.
//
// Logout and revocation reach every instance through the store's
// invalidation events (Redis pub/sub on <prefix>events), normally within
// milliseconds; the instance that ends a session forgets it at once. When
// events may have been missed (the redis store's channel was lost, or was
// just made, as at start-up), the cache is emptied and not used for 3
// seconds; while the channel stays down that repeats, so the cache is
// bypassed for the whole outage and every request asks the store. When
// Redis itself goes down the channel breaks with it, and requests get 503;
// whatever happens, no session is served from memory for longer than TTL
// without the store confirming it.
type SessionCache struct {
	// Sessions kept at most. Past it, the least recently used are
	// forgotten (approximately). Default: 10000.
	Size int `json:"size,omitempty"`
	// How long a cached session is served without asking the store again.
	// At most a tenth of session_idle is used. Default: 30s.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// Turns the cache off: every signed-in request asks the store.
	Disabled bool `json:"disabled,omitempty"`
}

const (
	defaultCacheSize = 10000
	defaultCacheTTL  = 30 * time.Second
)

// provisionSessionCache sets up session_cache and subscribes it to the
// store's invalidations; Cleanup ends the subscription.
func (h *Handler) provisionSessionCache() error {
	c := h.SessionCache
	if c == nil {
		c = &SessionCache{}
	}
	if c.Disabled {
		h.cache = nil
		return nil
	}
	size, ttl := c.Size, time.Duration(c.TTL)
	if size == 0 {
		size = defaultCacheSize
	}
	if ttl == 0 {
		ttl = defaultCacheTTL
	}
	if size < 0 {
		return fmt.Errorf("session_cache: size %d: must be positive", size)
	}
	if ttl < 0 {
		return fmt.Errorf("session_cache: ttl %s: must be positive", ttl)
	}
	if tenth := time.Duration(h.SessionIdle) / 10; tenth > 0 && tenth < ttl {
		ttl = tenth
	}
	now := h.clock
	if now == nil {
		now = time.Now
	}
	h.cache = sessioncache.New[*identity](size, ttl, time.Duration(h.SessionIdle), now)
	h.unsubscribe = h.store.Subscribe(h.cache.Invalidate)
	return nil
}

// unmarshalSessionCache parses `session_cache <size> <ttl> | off`.
func (h *Handler) unmarshalSessionCache(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		h.SessionCache = &SessionCache{Disabled: true}
		return nil
	case len(args) != 2:
		return d.ArgErr()
	}
	size, err := strconv.Atoi(args[0])
	if err != nil || size < 1 {
		return d.Errf("session_cache: size %q: want a positive number", args[0])
	}
	ttl, err := caddy.ParseDuration(args[1])
	if err != nil || ttl <= 0 {
		return d.Errf("session_cache: ttl %q: want a positive duration", args[1])
	}
	h.SessionCache = &SessionCache{Size: size, TTL: caddy.Duration(ttl)}
	return nil
}
