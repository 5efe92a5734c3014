package sessioncache

import (
	"fmt"
	"github.com/ssogate/ssogate/internal/testclock"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssogate/ssogate/plugins/store"
)

// testSession is a cached value: a user and an absolute expiry.
type testSession struct {
	userID  string
	expires int64
}

func (s *testSession) UserID() string   { return s.userID }
func (s *testSession) ExpiresAt() int64 { return s.expires }

type sessionCache = Cache[*testSession]

// cacheKey is the key of a made-up session id.
func cacheKey(i int) Key { return KeyOf(fmt.Sprintf("session-%d", i)) }

// cacheIdentity is a session of user, expiring at exp.
func cacheIdentity(user string, exp int64) *testSession {
	return &testSession{userID: user, expires: exp}
}

func newSessionCache(size int, every, idle time.Duration, now func() time.Time) *sessionCache {
	return New[*testSession](size, every, idle, now)
}

func cacheGet(c *sessionCache, k Key, now int64) Result {
	_, res := c.Get(k, now)
	return res
}

func TestCacheHitAndMiss(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(100, time.Minute, 30*time.Minute, clk.Now)
	k := cacheKey(1)
	if got := cacheGet(c, k, clk.Nanos()); got != Miss {
		t.Fatalf("empty cache: %v, want miss", got)
	}
	c.Put(k, cacheIdentity("u1", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	e, res := c.Get(k, clk.Nanos())
	if res != Hit || e.Value.userID != "u1" {
		t.Fatalf("after put: %v %v, want a hit for u1", res, e)
	}
	if got := cacheGet(c, cacheKey(2), clk.Nanos()); got != Miss {
		t.Errorf("other key: %v, want miss", got)
	}
}

func TestCacheNeverServesPastAbsoluteExpiry(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(100, time.Hour, time.Hour, clk.Now)
	k := cacheKey(1)
	c.Put(k, cacheIdentity("u1", clk.In(10*time.Second)), clk.Nanos(), c.Epoch())
	clk.Add(10*time.Second - 1)
	if got := cacheGet(c, k, clk.Nanos()); got != Hit {
		t.Fatalf("1ns before expiry: %v, want hit", got)
	}
	clk.Add(1)
	if got := cacheGet(c, k, clk.Nanos()); got != Miss {
		t.Fatalf("at expiry: %v, want miss", got)
	}
	if n := c.Len(); n != 0 {
		t.Errorf("expired entry kept: %d entries", n)
	}
}

func TestCacheNeverServesPastStoreIdleExpiry(t *testing.T) {
	clk := testclock.New()
	// every > idle only to show that idle alone ends the entry.
	c := newSessionCache(100, time.Hour, time.Minute, clk.Now)
	k := cacheKey(1)
	c.Put(k, cacheIdentity("u1", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	clk.Add(time.Minute)
	if got := cacheGet(c, k, clk.Nanos()); got != Miss {
		t.Fatalf("idle since the last push: %v, want miss (the store has let it expire)", got)
	}
}

func TestCacheRevalidatesOnceAfterEvery(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(100, 30*time.Second, 30*time.Minute, clk.Now)
	k := cacheKey(1)
	c.Put(k, cacheIdentity("u1", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	clk.Add(29 * time.Second)
	if got := cacheGet(c, k, clk.Nanos()); got != Hit {
		t.Fatalf("before every: %v, want hit", got)
	}
	clk.Add(time.Second)
	if got := cacheGet(c, k, clk.Nanos()); got != Revalidate {
		t.Fatalf("at every: %v, want revalidate", got)
	}
	// The revalidating request has pushed the clock of the entry: the
	// others are served meanwhile, and for another period after.
	if got := cacheGet(c, k, clk.Nanos()); got != Hit {
		t.Fatalf("second request at every: %v, want hit", got)
	}
	clk.Add(29 * time.Second)
	if got := cacheGet(c, k, clk.Nanos()); got != Hit {
		t.Fatalf("29s after the revalidation: %v, want hit", got)
	}
}

func TestCacheRevalidationRace(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(100, time.Second, time.Hour, clk.Now)
	k := cacheKey(1)
	c.Put(k, cacheIdentity("u1", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	clk.Add(2 * time.Second)
	var revalidations atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if cacheGet(c, k, clk.Nanos()) == Revalidate {
				revalidations.Add(1)
			}
		})
	}
	wg.Wait()
	if n := revalidations.Load(); n != 1 {
		t.Errorf("%d of 16 concurrent requests revalidate, want exactly 1", n)
	}
}

func TestCacheEvictsWithinSize(t *testing.T) {
	clk := testclock.New()
	const size = 1000
	c := newSessionCache(size, time.Hour, time.Hour, clk.Now)
	capacity := len(c.shards) * len(c.shards[0].ring)
	if capacity < size || capacity > size+len(c.shards) {
		t.Fatalf("capacity %d for size %d", capacity, size)
	}
	// A working set of hot sessions, used between every insert of a cold one.
	hot := 100
	for i := range hot {
		c.Put(cacheKey(i), cacheIdentity("hot", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	}
	for i := hot; i < 20*size; i++ {
		c.Put(cacheKey(i), cacheIdentity("cold", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
		cacheGet(c, cacheKey(i%hot), clk.Nanos())
	}
	if n := c.Len(); n > capacity {
		t.Errorf("%d entries, capacity %d", n, capacity)
	}
	kept := 0
	for i := range hot {
		if cacheGet(c, cacheKey(i), clk.Nanos()) == Hit {
			kept++
		}
	}
	// CLOCK keeps what is used; a plain FIFO would have lost them all.
	if kept < hot*9/10 {
		t.Errorf("%d of %d hot sessions kept after %d cold inserts", kept, hot, 20*size)
	}
}

func TestCacheSmallSizes(t *testing.T) {
	clk := testclock.New()
	for _, size := range []int{1, 2, 63, 64, 10000} {
		c := newSessionCache(size, time.Hour, time.Hour, clk.Now)
		for i := range 3 * size {
			c.Put(cacheKey(i), cacheIdentity("u", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
		}
		capacity := len(c.shards) * len(c.shards[0].ring)
		if n := c.Len(); n == 0 || n > capacity || capacity >= size+len(c.shards) {
			t.Errorf("size %d: %d entries, capacity %d in %d shards", size, n, capacity, len(c.shards))
		}
	}
}

func TestCacheInvalidation(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(100, time.Hour, time.Hour, clk.Now)
	put := func(i int, user string) {
		c.Put(cacheKey(i), cacheIdentity(user, clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	}
	put(1, "alice")
	put(2, "alice")
	put(3, "bob")
	put(4, "bob")

	c.Invalidate(store.Invalidation{SessionKey: cacheKey(3).Hex()})
	if cacheGet(c, cacheKey(3), clk.Nanos()) != Miss || cacheGet(c, cacheKey(4), clk.Nanos()) != Hit {
		t.Fatal("SessionKey: want only that session dropped")
	}
	c.Invalidate(store.Invalidation{UserID: "alice"})
	if cacheGet(c, cacheKey(1), clk.Nanos()) != Miss || cacheGet(c, cacheKey(2), clk.Nanos()) != Miss {
		t.Fatal("UserID: want every session of the user dropped")
	}
	if cacheGet(c, cacheKey(4), clk.Nanos()) != Hit {
		t.Fatal("UserID: another user's session dropped")
	}
	// Keys that are no session key are ignored.
	for _, bad := range []string{"zz", strings.Repeat("g", 64), strings.Repeat("a", 66)} {
		c.Invalidate(store.Invalidation{SessionKey: bad})
	}
	if cacheGet(c, cacheKey(4), clk.Nanos()) != Hit {
		t.Fatal("malformed SessionKey dropped something")
	}
}

func TestCacheAllFlushesAndDistrusts(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(100, time.Hour, time.Hour, clk.Now)
	for i := range 10 {
		c.Put(cacheKey(i), cacheIdentity("u", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	}
	c.Invalidate(store.Invalidation{All: true})
	if n := c.Len(); n != 0 {
		t.Fatalf("All: %d entries left", n)
	}
	// Bypassed: what the store says now is not kept, since the events that
	// would correct it may still be missing.
	c.Put(cacheKey(1), cacheIdentity("u", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	if got := cacheGet(c, cacheKey(1), clk.Nanos()); got != Miss {
		t.Fatalf("right after All: %v, want miss", got)
	}
	clk.Add(DistrustFor)
	c.Put(cacheKey(1), cacheIdentity("u", clk.In(time.Hour)), clk.Nanos(), c.Epoch())
	if got := cacheGet(c, cacheKey(1), clk.Nanos()); got != Hit {
		t.Fatalf("%s after All: %v, want the cache back", DistrustFor, got)
	}
}

func TestCacheRefusesReadsOlderThanAnInvalidation(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(100, time.Hour, time.Hour, clk.Now)
	for _, inv := range []store.Invalidation{
		{SessionKey: cacheKey(1).Hex()},
		{SessionKey: cacheKey(99).Hex()}, // any invalidation: they are rare
		{UserID: "someone"},
	} {
		// A request read the session, then the logout's event came in,
		// then the request wants to cache what it read.
		epoch := c.Epoch()
		c.Invalidate(inv)
		c.Put(cacheKey(1), cacheIdentity("u", clk.In(time.Hour)), clk.Nanos(), epoch)
		if got := cacheGet(c, cacheKey(1), clk.Nanos()); got != Miss {
			t.Errorf("%+v during the read: %v, want miss", inv, got)
		}
	}
}

func TestCacheConcurrentUse(t *testing.T) {
	clk := testclock.New()
	c := newSessionCache(256, time.Millisecond, time.Hour, clk.Now)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				k := cacheKey((w*7 + i) % 1000)
				switch i % 100 {
				case 0:
					c.Invalidate(store.Invalidation{UserID: fmt.Sprint("u", i%3)})
				case 1:
					c.Invalidate(store.Invalidation{SessionKey: k.Hex()})
				case 2:
					if w == 0 {
						c.Invalidate(store.Invalidation{All: true})
						clk.Add(DistrustFor)
					}
				}
				clk.Add(time.Microsecond)
				e, res := c.Get(k, clk.Nanos())
				switch res {
				case Miss:
					c.Put(k, cacheIdentity(fmt.Sprint("u", i%3), clk.In(time.Hour)), clk.Nanos(), c.Epoch())
				case Revalidate:
					if i%2 == 0 {
						c.Remove(e)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > len(c.shards)*len(c.shards[0].ring) {
		t.Errorf("%d entries over capacity", n)
	}
}

// BenchmarkCacheGet is the cache lookup alone, from every CPU at once, on one
// hot session (all on one shard's lock) and on many.
func BenchmarkCacheGet(b *testing.B) {
	now := time.Now().UnixNano()
	c := newSessionCache(10000, time.Hour, time.Hour, time.Now)
	keys := make([]Key, 1000)
	for i := range keys {
		keys[i] = cacheKey(i)
		c.Put(keys[i], cacheIdentity("bench-user", now+int64(time.Hour)), now, c.Epoch())
	}
	for _, n := range []int{1, len(keys)} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					if _, res := c.Get(keys[i%n], now); res != Hit {
						b.Errorf("lookup %d: %v", i, res)
						return
					}
				}
			})
		})
	}
}
