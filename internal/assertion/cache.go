package assertion

import (
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// Cache keeps one signed assertion per session and hands it out again until
// half its lifetime has passed, so that a signed-in request normally costs a
// map lookup, not a signature, and the upstream always receives an assertion
// with at least half its ttl left. An assertion never outlives its session.
//
// It is bounded: past its size, an arbitrary entry of the full shard is
// forgotten (and signed again when its session comes back).
type Cache struct {
	signer   *Signer
	issuer   string // fixed issuer; empty: the request's origin
	audience string // fixed audience; empty: the issuer
	handle   func(key [32]byte) string
	now      func() time.Time
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*cacheEntry
	_  [32]byte // keeps neighbouring shards' locks off one cache line
}

// cacheEntry is immutable once made.
type cacheEntry struct {
	token   string
	issuer  string
	refresh int64 // sign again from this instant on, unix nanoseconds
}

// CacheConfig says how a Cache makes its assertions.
type CacheConfig struct {
	// Issuer is every assertion's iss. Empty: the origin of the request
	// (scheme://host[:port]).
	Issuer string
	// Audience is every assertion's aud. Empty: the issuer.
	Audience string
	// Size is the number of sessions kept at most (at least one per shard).
	Size int
	// Handle is the session's public handle (the sid claim), from its
	// store key.
	Handle func(key [32]byte) string
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Session is who an assertion is about.
type Session struct {
	Subject string
	Claims  map[string]string
	Expires int64 // the session's absolute expiry, unix nanoseconds
}

// NewCache returns a cache of assertions signed by s.
func NewCache(s *Signer, cfg CacheConfig) *Cache {
	c := &Cache{
		signer:   s,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		handle:   cfg.Handle,
		now:      cfg.Now,
		perShard: max(1, (cfg.Size+cacheShards-1)/cacheShards),
	}
	if c.now == nil {
		c.now = time.Now
	}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*cacheEntry)
	}
	return c
}

// Signer is the cache's signer.
func (c *Cache) Signer() *Signer { return c.signer }

// Get returns the assertion for the session stored under key, as seen by a
// request to scheme://host (ignored with a fixed issuer). signed says it was
// signed for this call rather than reused.
func (c *Cache) Get(key [32]byte, scheme, host string, s Session) (token string, signed bool, err error) {
	now := c.now().UnixNano()
	sh := &c.shards[binary.LittleEndian.Uint64(key[:8])%cacheShards]
	sh.mu.RLock()
	e := sh.m[key]
	sh.mu.RUnlock()
	if e != nil && now < e.refresh && c.sameIssuer(e.issuer, scheme, host) {
		return e.token, false, nil
	}

	issuer := c.issuer
	if issuer == "" {
		issuer = scheme + "://" + strings.ToLower(host)
	}
	aud := c.audience
	if aud == "" {
		aud = issuer
	}
	iat := now / int64(time.Second)
	exp := iat + c.signer.ttl
	if end := s.Expires / int64(time.Second); end < exp {
		exp = max(end, iat+1)
	}
	token, err = c.signer.Sign(Claims{
		Issuer:    issuer,
		Audience:  aud,
		Subject:   s.Subject,
		Claims:    s.Claims,
		SessionID: c.handle(key),
		IssuedAt:  iat,
		Expiry:    exp,
	})
	if err != nil {
		return "", false, err
	}
	refresh := min(now+c.signer.ttl*int64(time.Second)/2, exp*int64(time.Second))
	ne := &cacheEntry{token: token, issuer: issuer, refresh: refresh}
	sh.mu.Lock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[key] = ne
	sh.mu.Unlock()
	return token, true, nil
}

// sameIssuer tells whether an entry made for issuer serves a request to
// scheme://host, without building the request's origin.
func (c *Cache) sameIssuer(issuer, scheme, host string) bool {
	if c.issuer != "" {
		return true
	}
	rest, ok := strings.CutPrefix(issuer, scheme)
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, "://")
	return ok && strings.EqualFold(rest, host)
}

// Len counts the cached assertions.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
