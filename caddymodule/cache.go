package caddymodule

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ssogate/ssogate/plugins/store"
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
	// maxCacheShards bounds the lock striping: enough that concurrent
	// requests seldom meet on one lock, few enough that a revocation
	// (which walks every shard) stays cheap.
	maxCacheShards = 64
	// minShardSize keeps small caches in one or few shards, so that the
	// size bound stays close to what was asked.
	minShardSize = 32
	// cacheDistrustFor is how long the cache is bypassed after the store
	// says events may have been missed. The redis store repeats that signal
	// every ~200ms plus a dial timeout while its channel is down, so this
	// spans the gaps and the cache stays off for the whole outage.
	cacheDistrustFor = 3 * time.Second
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
	h.cache = newSessionCache(size, ttl, time.Duration(h.SessionIdle), time.Now)
	h.unsubscribe = h.store.Subscribe(h.cache.invalidate)
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

// sessionCache is a bounded map of validated sessions, split in shards each
// with its own lock, evicting by CLOCK (an approximate LRU that needs no
// write on a hit beyond setting a flag once).
type sessionCache struct {
	shards []cacheShard
	mask   uint64
	every  int64 // ask the store again after this long, nanoseconds
	idle   int64 // session_idle, nanoseconds
	now    func() time.Time

	// epoch counts invalidations. A session read from the store is only
	// cached if no invalidation came in between, which could have been
	// meant for it.
	epoch atomic.Uint64
	// distrustUntil (unix nanoseconds) is the end of the bypass that
	// follows a possible loss of events.
	distrustUntil atomic.Int64
}

type cacheShard struct {
	mu   sync.RWMutex
	m    map[sessionKey]*cacheEntry
	ring []*cacheEntry // CLOCK slots; nil is free
	hand int
	_    [40]byte // keeps neighbouring shards' locks off one cache line
}

type cacheEntry struct {
	key sessionKey
	id  *identity
	// pushed is when the store last confirmed the session and pushed its
	// idle expiry (unix nanoseconds).
	pushed atomic.Int64
	// used is CLOCK's reference bit: set on a hit, cleared as the hand
	// passes; the hand evicts entries not used since its last pass.
	used atomic.Bool
	slot int // index in ring, under the shard's lock
}

// newSessionCache returns a cache of about size sessions, each served for at
// most every after the store confirmed it, and never past idle after that.
func newSessionCache(size int, every, idle time.Duration, now func() time.Time) *sessionCache {
	shards := 1
	for shards < maxCacheShards && shards*2*minShardSize <= size {
		shards *= 2
	}
	per := (size + shards - 1) / shards
	c := &sessionCache{
		shards: make([]cacheShard, shards),
		mask:   uint64(shards - 1),
		every:  int64(every),
		idle:   int64(idle),
		now:    now,
	}
	for i := range c.shards {
		c.shards[i].m = make(map[sessionKey]*cacheEntry, per)
		c.shards[i].ring = make([]*cacheEntry, per)
	}
	return c
}

func (c *sessionCache) shard(k sessionKey) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint64(k[:8])&c.mask]
}

// lookupResult says what get found.
type lookupResult int

const (
	// cacheMiss: ask the store, then put.
	cacheMiss lookupResult = iota
	// cacheHit: serve the entry.
	cacheHit
	// cacheRevalidate: the entry is due for a store check and this caller
	// won the right to make it (see revalidated); concurrent callers get
	// cacheHit meanwhile.
	cacheRevalidate
)

// get looks k up at now.
func (c *sessionCache) get(k sessionKey, now int64) (*cacheEntry, lookupResult) {
	if now < c.distrustUntil.Load() {
		return nil, cacheMiss
	}
	sh := c.shard(k)
	sh.mu.RLock()
	e := sh.m[k]
	sh.mu.RUnlock()
	if e == nil {
		return nil, cacheMiss
	}
	pushed := e.pushed.Load()
	if now >= e.id.expires || now >= pushed+c.idle {
		// Past its absolute expiry, or the store has let it expire.
		c.remove(e)
		return nil, cacheMiss
	}
	if !e.used.Load() {
		e.used.Store(true)
	}
	if now-pushed < c.every || !e.pushed.CompareAndSwap(pushed, now) {
		return e, cacheHit
	}
	return e, cacheRevalidate
}

// put caches id under k, confirmed by the store at now, unless an
// invalidation has come in since epoch was read.
func (c *sessionCache) put(k sessionKey, id *identity, now int64, epoch uint64) {
	if now < c.distrustUntil.Load() {
		return
	}
	e := &cacheEntry{key: k, id: id}
	e.pushed.Store(now)
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Checked under the shard's lock: an invalidation bumps the epoch
	// before it takes the locks, so either this sees it, or the
	// invalidation removes this entry after.
	if c.epoch.Load() != epoch {
		return
	}
	if old := sh.m[k]; old != nil {
		e.slot = old.slot
		sh.ring[e.slot] = e
		sh.m[k] = e
		return
	}
	for {
		slot := sh.hand
		sh.hand++
		if sh.hand == len(sh.ring) {
			sh.hand = 0
		}
		old := sh.ring[slot]
		if old != nil && old.used.Load() {
			old.used.Store(false)
			continue
		}
		if old != nil {
			delete(sh.m, old.key)
		}
		e.slot = slot
		sh.ring[slot] = e
		sh.m[k] = e
		return
	}
}

// remove drops e, unless it was replaced meanwhile.
func (c *sessionCache) remove(e *cacheEntry) {
	sh := c.shard(e.key)
	sh.mu.Lock()
	if sh.m[e.key] == e {
		delete(sh.m, e.key)
		sh.ring[e.slot] = nil
	}
	sh.mu.Unlock()
}

// currentEpoch is read before asking the store, and given to put.
func (c *sessionCache) currentEpoch() uint64 { return c.epoch.Load() }

// invalidate applies one store event. It is the store's subscriber, so it
// must not block: it only takes the shards' locks.
func (c *sessionCache) invalidate(inv store.Invalidation) {
	c.epoch.Add(1)
	switch {
	case inv.All:
		c.distrustUntil.Store(c.now().Add(cacheDistrustFor).UnixNano())
		c.epoch.Add(1) // puts racing the store read of this moment lose too
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.Lock()
			clear(sh.m)
			clear(sh.ring)
			sh.mu.Unlock()
		}
	case inv.UserID != "":
		// A walk, not a per-user index: revocation is rare, and an
		// index would cost memory and a lock on every insert.
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.Lock()
			for k, e := range sh.m {
				if e.id.userID == inv.UserID {
					delete(sh.m, k)
					sh.ring[e.slot] = nil
				}
			}
			sh.mu.Unlock()
		}
	case inv.SessionKey != "":
		var k sessionKey
		if len(inv.SessionKey) != 2*len(k) {
			return
		}
		if _, err := hex.Decode(k[:], []byte(inv.SessionKey)); err != nil {
			return
		}
		c.drop(k)
	}
}

// drop forgets one session.
func (c *sessionCache) drop(k sessionKey) {
	c.epoch.Add(1)
	sh := c.shard(k)
	sh.mu.Lock()
	if e := sh.m[k]; e != nil {
		delete(sh.m, k)
		sh.ring[e.slot] = nil
	}
	sh.mu.Unlock()
}

// len counts the cached sessions (for tests and benchmarks).
func (c *sessionCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
