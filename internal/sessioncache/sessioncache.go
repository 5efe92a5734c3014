// Package sessioncache keeps sessions a store has confirmed in memory, so that
// a signed-in request normally needs no store round trip, without ever serving
// one longer than the store allows: a bounded map split in shards each with its
// own lock, evicting by CLOCK (an approximate LRU that needs no write on a hit
// beyond setting a flag once), with an epoch that keeps a read made before an
// invalidation from being cached after it.
package sessioncache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssogate/ssogate/plugins/store"
)

// Value is what the cache holds for a session: the user it is for (so that a
// revocation finds it) and its absolute expiry.
type Value interface {
	UserID() string
	// ExpiresAt is the absolute expiry, unix nanoseconds.
	ExpiresAt() int64
}

// Key is the store key of a session id as bytes: its SHA-256. The cache is
// keyed by it rather than by its hex form, which would cost an allocation per
// request.
type Key [sha256.Size]byte

// KeyOf hashes a session id without allocating: an id longer than the stack
// buffer (never a valid one) takes the slower path.
func KeyOf(id string) Key {
	var buf [64]byte
	if len(id) <= len(buf) {
		n := copy(buf[:], id)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(id))
}

// Hex is the key as stores and invalidation events name it.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

const (
	// maxShards bounds the lock striping: enough that concurrent requests
	// seldom meet on one lock, few enough that a revocation (which walks
	// every shard) stays cheap.
	maxShards = 64
	// minShardSize keeps small caches in one or few shards, so that the
	// size bound stays close to what was asked.
	minShardSize = 32
	// DistrustFor is how long the cache is bypassed after the store says
	// events may have been missed. The redis store repeats that signal
	// every ~200ms plus a dial timeout while its channel is down, so this
	// spans the gaps and the cache stays off for the whole outage.
	DistrustFor = 3 * time.Second
)

// Cache is a bounded map of validated sessions.
type Cache[V Value] struct {
	shards []shard[V]
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

type shard[V Value] struct {
	mu   sync.RWMutex
	m    map[Key]*Entry[V]
	ring []*Entry[V] // CLOCK slots; nil is free
	hand int
	_    [40]byte // keeps neighbouring shards' locks off one cache line
}

// Entry is a cached session.
type Entry[V Value] struct {
	key Key
	// Value is what was cached.
	Value V
	// pushed is when the store last confirmed the session and pushed its
	// idle expiry (unix nanoseconds).
	pushed atomic.Int64
	// used is CLOCK's reference bit: set on a hit, cleared as the hand
	// passes; the hand evicts entries not used since its last pass.
	used atomic.Bool
	slot int // index in ring, under the shard's lock
}

// New returns a cache of about size sessions, each served for at
// most every after the store confirmed it, and never past idle after that.
func New[V Value](size int, every, idle time.Duration, now func() time.Time) *Cache[V] {
	shards := 1
	for shards < maxShards && shards*2*minShardSize <= size {
		shards *= 2
	}
	per := (size + shards - 1) / shards
	c := &Cache[V]{
		shards: make([]shard[V], shards),
		mask:   uint64(shards - 1),
		every:  int64(every),
		idle:   int64(idle),
		now:    now,
	}
	for i := range c.shards {
		c.shards[i].m = make(map[Key]*Entry[V], per)
		c.shards[i].ring = make([]*Entry[V], per)
	}
	return c
}

func (c *Cache[V]) shard(k Key) *shard[V] {
	return &c.shards[binary.LittleEndian.Uint64(k[:8])&c.mask]
}

// Result says what Get found.
type Result int

const (
	// Miss: ask the store, then put.
	Miss Result = iota
	// Hit: serve the entry.
	Hit
	// Revalidate: the entry is due for a store check and this caller
	// won the right to make it ; concurrent callers get
	// Hit meanwhile.
	Revalidate
)

// Get looks k up at now (unix nanoseconds).
func (c *Cache[V]) Get(k Key, now int64) (*Entry[V], Result) {
	if now < c.distrustUntil.Load() {
		return nil, Miss
	}
	sh := c.shard(k)
	sh.mu.RLock()
	e := sh.m[k]
	sh.mu.RUnlock()
	if e == nil {
		return nil, Miss
	}
	pushed := e.pushed.Load()
	if now >= e.Value.ExpiresAt() || now >= pushed+c.idle {
		// Past its absolute expiry, or the store has let it expire.
		c.Remove(e)
		return nil, Miss
	}
	if !e.used.Load() {
		e.used.Store(true)
	}
	if now-pushed < c.every || !e.pushed.CompareAndSwap(pushed, now) {
		return e, Hit
	}
	return e, Revalidate
}

// Put caches v under k, confirmed by the store at now, unless an
// invalidation has come in since epoch was read.
func (c *Cache[V]) Put(k Key, v V, now int64, epoch uint64) {
	if now < c.distrustUntil.Load() {
		return
	}
	e := &Entry[V]{key: k, Value: v}
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

// Remove drops e, unless it was replaced meanwhile.
func (c *Cache[V]) Remove(e *Entry[V]) {
	sh := c.shard(e.key)
	sh.mu.Lock()
	if sh.m[e.key] == e {
		delete(sh.m, e.key)
		sh.ring[e.slot] = nil
	}
	sh.mu.Unlock()
}

// Epoch is read before asking the store, and given to Put.
func (c *Cache[V]) Epoch() uint64 { return c.epoch.Load() }

// Invalidate applies one store event. It is the store's subscriber, so it
// must not block: it only takes the shards' locks.
func (c *Cache[V]) Invalidate(inv store.Invalidation) {
	c.epoch.Add(1)
	switch {
	case inv.All:
		c.distrustUntil.Store(c.now().Add(DistrustFor).UnixNano())
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
				if e.Value.UserID() == inv.UserID {
					delete(sh.m, k)
					sh.ring[e.slot] = nil
				}
			}
			sh.mu.Unlock()
		}
	case inv.SessionKey != "":
		var k Key
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
func (c *Cache[V]) drop(k Key) {
	c.epoch.Add(1)
	sh := c.shard(k)
	sh.mu.Lock()
	if e := sh.m[k]; e != nil {
		delete(sh.m, k)
		sh.ring[e.slot] = nil
	}
	sh.mu.Unlock()
}

// Len counts the cached sessions.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Now is the cache's clock.
func (c *Cache[V]) Now() time.Time { return c.now() }

// Every is how long a cached session is served before the store is asked again.
func (c *Cache[V]) Every() time.Duration { return time.Duration(c.every) }
