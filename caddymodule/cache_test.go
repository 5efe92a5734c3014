package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
	"github.com/ssogate/ssogate/plugins/store/memory"
)

// cacheClock is a clock the tests move by hand.
type cacheClock struct{ t atomic.Int64 }

func newCacheClock() *cacheClock {
	c := &cacheClock{}
	// Real time, since the handler without a cache reads the real clock.
	c.t.Store(time.Now().UnixNano())
	return c
}

func (c *cacheClock) now() time.Time           { return time.Unix(0, c.t.Load()) }
func (c *cacheClock) add(d time.Duration)      { c.t.Add(int64(d)) }
func (c *cacheClock) nanos() int64             { return c.t.Load() }
func (c *cacheClock) in(d time.Duration) int64 { return c.t.Load() + int64(d) }

// cacheKey is the key of a made-up session id.
func cacheKey(i int) sessionKey { return keyOf(fmt.Sprintf("session-%d", i)) }

// cacheIdentity is a session of user, expiring at exp.
func cacheIdentity(user string, exp int64) *identity {
	return &identity{userID: user, expires: exp}
}

func cacheGet(c *sessionCache, k sessionKey, now int64) lookupResult {
	_, res := c.get(k, now)
	return res
}

func TestCacheHitAndMiss(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(100, time.Minute, 30*time.Minute, clk.now)
	k := cacheKey(1)
	if got := cacheGet(c, k, clk.nanos()); got != cacheMiss {
		t.Fatalf("empty cache: %v, want miss", got)
	}
	c.put(k, cacheIdentity("u1", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	e, res := c.get(k, clk.nanos())
	if res != cacheHit || e.id.userID != "u1" {
		t.Fatalf("after put: %v %v, want a hit for u1", res, e)
	}
	if got := cacheGet(c, cacheKey(2), clk.nanos()); got != cacheMiss {
		t.Errorf("other key: %v, want miss", got)
	}
}

func TestCacheNeverServesPastAbsoluteExpiry(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(100, time.Hour, time.Hour, clk.now)
	k := cacheKey(1)
	c.put(k, cacheIdentity("u1", clk.in(10*time.Second)), clk.nanos(), c.currentEpoch())
	clk.add(10*time.Second - 1)
	if got := cacheGet(c, k, clk.nanos()); got != cacheHit {
		t.Fatalf("1ns before expiry: %v, want hit", got)
	}
	clk.add(1)
	if got := cacheGet(c, k, clk.nanos()); got != cacheMiss {
		t.Fatalf("at expiry: %v, want miss", got)
	}
	if n := c.len(); n != 0 {
		t.Errorf("expired entry kept: %d entries", n)
	}
}

func TestCacheNeverServesPastStoreIdleExpiry(t *testing.T) {
	clk := newCacheClock()
	// every > idle only to show that idle alone ends the entry.
	c := newSessionCache(100, time.Hour, time.Minute, clk.now)
	k := cacheKey(1)
	c.put(k, cacheIdentity("u1", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	clk.add(time.Minute)
	if got := cacheGet(c, k, clk.nanos()); got != cacheMiss {
		t.Fatalf("idle since the last push: %v, want miss (the store has let it expire)", got)
	}
}

func TestCacheRevalidatesOnceAfterEvery(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(100, 30*time.Second, 30*time.Minute, clk.now)
	k := cacheKey(1)
	c.put(k, cacheIdentity("u1", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	clk.add(29 * time.Second)
	if got := cacheGet(c, k, clk.nanos()); got != cacheHit {
		t.Fatalf("before every: %v, want hit", got)
	}
	clk.add(time.Second)
	if got := cacheGet(c, k, clk.nanos()); got != cacheRevalidate {
		t.Fatalf("at every: %v, want revalidate", got)
	}
	// The revalidating request has pushed the clock of the entry: the
	// others are served meanwhile, and for another period after.
	if got := cacheGet(c, k, clk.nanos()); got != cacheHit {
		t.Fatalf("second request at every: %v, want hit", got)
	}
	clk.add(29 * time.Second)
	if got := cacheGet(c, k, clk.nanos()); got != cacheHit {
		t.Fatalf("29s after the revalidation: %v, want hit", got)
	}
}

func TestCacheRevalidationRace(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(100, time.Second, time.Hour, clk.now)
	k := cacheKey(1)
	c.put(k, cacheIdentity("u1", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	clk.add(2 * time.Second)
	var revalidations atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if cacheGet(c, k, clk.nanos()) == cacheRevalidate {
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
	clk := newCacheClock()
	const size = 1000
	c := newSessionCache(size, time.Hour, time.Hour, clk.now)
	capacity := len(c.shards) * len(c.shards[0].ring)
	if capacity < size || capacity > size+len(c.shards) {
		t.Fatalf("capacity %d for size %d", capacity, size)
	}
	// A working set of hot sessions, used between every insert of a cold one.
	hot := 100
	for i := range hot {
		c.put(cacheKey(i), cacheIdentity("hot", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	}
	for i := hot; i < 20*size; i++ {
		c.put(cacheKey(i), cacheIdentity("cold", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
		cacheGet(c, cacheKey(i%hot), clk.nanos())
	}
	if n := c.len(); n > capacity {
		t.Errorf("%d entries, capacity %d", n, capacity)
	}
	kept := 0
	for i := range hot {
		if cacheGet(c, cacheKey(i), clk.nanos()) == cacheHit {
			kept++
		}
	}
	// CLOCK keeps what is used; a plain FIFO would have lost them all.
	if kept < hot*9/10 {
		t.Errorf("%d of %d hot sessions kept after %d cold inserts", kept, hot, 20*size)
	}
}

func TestCacheSmallSizes(t *testing.T) {
	clk := newCacheClock()
	for _, size := range []int{1, 2, 63, 64, 10000} {
		c := newSessionCache(size, time.Hour, time.Hour, clk.now)
		for i := range 3 * size {
			c.put(cacheKey(i), cacheIdentity("u", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
		}
		capacity := len(c.shards) * len(c.shards[0].ring)
		if n := c.len(); n == 0 || n > capacity || capacity >= size+len(c.shards) {
			t.Errorf("size %d: %d entries, capacity %d in %d shards", size, n, capacity, len(c.shards))
		}
	}
}

func TestCacheInvalidation(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(100, time.Hour, time.Hour, clk.now)
	put := func(i int, user string) {
		c.put(cacheKey(i), cacheIdentity(user, clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	}
	put(1, "alice")
	put(2, "alice")
	put(3, "bob")
	put(4, "bob")

	c.invalidate(store.Invalidation{SessionKey: cacheKey(3).hex()})
	if cacheGet(c, cacheKey(3), clk.nanos()) != cacheMiss || cacheGet(c, cacheKey(4), clk.nanos()) != cacheHit {
		t.Fatal("SessionKey: want only that session dropped")
	}
	c.invalidate(store.Invalidation{UserID: "alice"})
	if cacheGet(c, cacheKey(1), clk.nanos()) != cacheMiss || cacheGet(c, cacheKey(2), clk.nanos()) != cacheMiss {
		t.Fatal("UserID: want every session of the user dropped")
	}
	if cacheGet(c, cacheKey(4), clk.nanos()) != cacheHit {
		t.Fatal("UserID: another user's session dropped")
	}
	// Keys that are no session key are ignored.
	for _, bad := range []string{"zz", strings.Repeat("g", 64), strings.Repeat("a", 66)} {
		c.invalidate(store.Invalidation{SessionKey: bad})
	}
	if cacheGet(c, cacheKey(4), clk.nanos()) != cacheHit {
		t.Fatal("malformed SessionKey dropped something")
	}
}

func TestCacheAllFlushesAndDistrusts(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(100, time.Hour, time.Hour, clk.now)
	for i := range 10 {
		c.put(cacheKey(i), cacheIdentity("u", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	}
	c.invalidate(store.Invalidation{All: true})
	if n := c.len(); n != 0 {
		t.Fatalf("All: %d entries left", n)
	}
	// Bypassed: what the store says now is not kept, since the events that
	// would correct it may still be missing.
	c.put(cacheKey(1), cacheIdentity("u", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	if got := cacheGet(c, cacheKey(1), clk.nanos()); got != cacheMiss {
		t.Fatalf("right after All: %v, want miss", got)
	}
	clk.add(cacheDistrustFor)
	c.put(cacheKey(1), cacheIdentity("u", clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
	if got := cacheGet(c, cacheKey(1), clk.nanos()); got != cacheHit {
		t.Fatalf("%s after All: %v, want the cache back", cacheDistrustFor, got)
	}
}

func TestCacheRefusesReadsOlderThanAnInvalidation(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(100, time.Hour, time.Hour, clk.now)
	for _, inv := range []store.Invalidation{
		{SessionKey: cacheKey(1).hex()},
		{SessionKey: cacheKey(99).hex()}, // any invalidation: they are rare
		{UserID: "someone"},
	} {
		// A request read the session, then the logout's event came in,
		// then the request wants to cache what it read.
		epoch := c.currentEpoch()
		c.invalidate(inv)
		c.put(cacheKey(1), cacheIdentity("u", clk.in(time.Hour)), clk.nanos(), epoch)
		if got := cacheGet(c, cacheKey(1), clk.nanos()); got != cacheMiss {
			t.Errorf("%+v during the read: %v, want miss", inv, got)
		}
	}
}

func TestCacheConcurrentUse(t *testing.T) {
	clk := newCacheClock()
	c := newSessionCache(256, time.Millisecond, time.Hour, clk.now)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				k := cacheKey((w*7 + i) % 1000)
				switch i % 100 {
				case 0:
					c.invalidate(store.Invalidation{UserID: fmt.Sprint("u", i%3)})
				case 1:
					c.invalidate(store.Invalidation{SessionKey: k.hex()})
				case 2:
					if w == 0 {
						c.invalidate(store.Invalidation{All: true})
						clk.add(cacheDistrustFor)
					}
				}
				clk.add(time.Microsecond)
				e, res := c.get(k, clk.nanos())
				switch res {
				case cacheMiss:
					c.put(k, cacheIdentity(fmt.Sprint("u", i%3), clk.in(time.Hour)), clk.nanos(), c.currentEpoch())
				case cacheRevalidate:
					if i%2 == 0 {
						c.remove(e)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > len(c.shards)*len(c.shards[0].ring) {
		t.Errorf("%d entries over capacity", n)
	}
}

// cacheCountingStore counts Session calls, the ones a cache must spare, and
// lets a test send invalidations as a store whose channel broke would.
type cacheCountingStore struct {
	store.Store
	sessions atomic.Int64
	events   store.Subscribers
}

func (s *cacheCountingStore) Subscribe(fn func(store.Invalidation)) func() {
	a, b := s.Store.Subscribe(fn), s.events.Add(fn)
	return func() { a(); b() }
}

func (s *cacheCountingStore) Session(ctx context.Context, key string, idle time.Duration) (store.Session, error) {
	s.sessions.Add(1)
	return s.Store.Session(ctx, key, idle)
}

// cacheHandler is a provisioned-enough Handler on a memory store of its own,
// with a hand-moved clock for both, and a signed-in session.
func cacheHandler(t *testing.T, cfg *SessionCache) (*Handler, *cacheCountingStore, *cacheClock, *http.Cookie) {
	t.Helper()
	clk := newCacheClock()
	mem := memory.New(clk.now, time.Hour)
	t.Cleanup(func() { _ = mem.Close() })
	st := &cacheCountingStore{Store: mem}
	h := &Handler{
		SessionCache: cfg,
		SessionIdle:  caddy.Duration(30 * time.Minute),
		SessionTTL:   caddy.Duration(time.Hour),
		CookieName:   defaultCookieName,
		UserHeader:   "X-Forwarded-User",
		ClaimsHeader: "X-Forwarded-Claims",
		store:        st,
	}
	if err := h.provisionSessionCache(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	if h.cache != nil {
		h.cache.now = clk.now
	}
	id := token.New()
	now := clk.now()
	s := store.Session{UserID: "u1", Claims: map[string]string{"group": "org-a"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := mem.AddSession(context.Background(), token.Hash(id), s, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	return h, st, clk, &http.Cookie{Name: h.CookieName, Value: id}
}

// cacheCheck runs the gate's session check for a request with cookie header
// values hdr, and returns the user it found ("" for none).
func cacheCheck(t *testing.T, h *Handler, hdr ...string) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://portal.test/", nil)
	r.Header["Cookie"] = hdr
	id, err := h.requestSession(r)
	if err != nil {
		return ""
	}
	return id.userID
}

func TestGateUsesTheCache(t *testing.T) {
	h, st, clk, c := cacheHandler(t, nil)
	hdr := c.Name + "=" + c.Value
	for range 10 {
		if u := cacheCheck(t, h, hdr); u != "u1" {
			t.Fatalf("signed-in request: user %q", u)
		}
	}
	if n := st.sessions.Load(); n != 1 {
		t.Errorf("10 requests asked the store %d times, want 1", n)
	}
	// Once the cache TTL (30s; a tenth of 30m idle is longer) is past, one
	// request asks the store again, which pushes the idle expiry.
	clk.add(31 * time.Second)
	if u := cacheCheck(t, h, hdr); u != "u1" {
		t.Fatalf("after the TTL: user %q", u)
	}
	if n := st.sessions.Load(); n != 2 {
		t.Errorf("after the TTL the store was asked %d times in all, want 2", n)
	}
	// Active for longer than session_idle: the slide kept it alive.
	for range 70 {
		clk.add(31 * time.Second)
		if u := cacheCheck(t, h, hdr); u != "u1" {
			t.Fatalf("an active session ended: user %q", u)
		}
	}
}

func TestGateOffAsksTheStoreEveryTime(t *testing.T) {
	h, st, _, c := cacheHandler(t, &SessionCache{Disabled: true})
	for range 3 {
		if u := cacheCheck(t, h, c.Name+"="+c.Value); u != "u1" {
			t.Fatalf("user %q", u)
		}
	}
	if n := st.sessions.Load(); n != 3 {
		t.Errorf("store asked %d times, want 3", n)
	}
}

func TestGateCacheHonoursTheStore(t *testing.T) {
	ctx := context.Background()
	t.Run("logout", func(t *testing.T) {
		h, st, _, c := cacheHandler(t, nil)
		cacheCheck(t, h, c.Name+"="+c.Value)
		if err := st.DeleteSession(ctx, token.Hash(c.Value)); err != nil {
			t.Fatal(err)
		}
		if u := cacheCheck(t, h, c.Name+"="+c.Value); u != "" {
			t.Errorf("after logout: signed in as %q", u)
		}
	})
	t.Run("revocation", func(t *testing.T) {
		h, st, _, c := cacheHandler(t, nil)
		cacheCheck(t, h, c.Name+"="+c.Value)
		if _, err := st.RevokeUser(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
		if u := cacheCheck(t, h, c.Name+"="+c.Value); u != "" {
			t.Errorf("after revocation: signed in as %q", u)
		}
	})
	t.Run("absolute expiry", func(t *testing.T) {
		h, st, clk, _ := cacheHandler(t, &SessionCache{Size: 10, TTL: caddy.Duration(time.Hour)})
		id := token.New()
		now := clk.now()
		s := store.Session{UserID: "u2", CreatedAt: now, ExpiresAt: now.Add(10 * time.Second)}
		if err := st.AddSession(ctx, token.Hash(id), s, time.Hour); err != nil {
			t.Fatal(err)
		}
		hdr := h.CookieName + "=" + id
		if u := cacheCheck(t, h, hdr); u != "u2" {
			t.Fatalf("fresh session: user %q", u)
		}
		clk.add(10*time.Second - 1)
		if u := cacheCheck(t, h, hdr); u != "u2" {
			t.Fatalf("1ns before session_ttl: user %q", u)
		}
		clk.add(1)
		if u := cacheCheck(t, h, hdr); u != "" {
			t.Errorf("at session_ttl: signed in as %q", u)
		}
	})
	t.Run("gone from the store at revalidation", func(t *testing.T) {
		h, st, clk, c := cacheHandler(t, nil)
		cacheCheck(t, h, c.Name+"="+c.Value)
		// Removed without an event reaching this cache.
		h.unsubscribe()
		h.unsubscribe = nil
		if err := st.DeleteSession(ctx, token.Hash(c.Value)); err != nil {
			t.Fatal(err)
		}
		clk.add(31 * time.Second)
		if u := cacheCheck(t, h, c.Name+"="+c.Value); u != "" {
			t.Errorf("after the TTL: signed in as %q", u)
		}
	})
}

func TestGateFlushedWhenEventsMayBeLost(t *testing.T) {
	h, st, clk, c := cacheHandler(t, nil)
	hdr := c.Name + "=" + c.Value
	cacheCheck(t, h, hdr)
	// The store's channel broke: every cached session is dropped, and while
	// it may be missing events every request asks the store.
	st.events.Publish(store.Invalidation{All: true})
	if n := h.cache.len(); n != 0 {
		t.Fatalf("%d sessions cached after All", n)
	}
	before := st.sessions.Load()
	for range 3 {
		if u := cacheCheck(t, h, hdr); u != "u1" {
			t.Fatalf("during the bypass: user %q", u)
		}
	}
	if n := st.sessions.Load() - before; n != 3 {
		t.Errorf("during the bypass the store was asked %d times for 3 requests", n)
	}
	clk.add(cacheDistrustFor)
	cacheCheck(t, h, hdr)
	before = st.sessions.Load()
	cacheCheck(t, h, hdr)
	if n := st.sessions.Load() - before; n != 0 {
		t.Errorf("after the bypass the store was asked %d times for a cached session", n)
	}
	// After Cleanup, the handler hears nothing more.
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	st.events.Publish(store.Invalidation{All: true})
	if n := h.cache.len(); n != 1 {
		t.Errorf("an event reached a cleaned-up handler: %d sessions left", n)
	}
}

func TestGateCookieScan(t *testing.T) {
	h, _, _, c := cacheHandler(t, nil)
	other := token.New()
	for _, tc := range []struct {
		name string
		hdr  []string
		want string
	}{
		{"only cookie", []string{c.Name + "=" + c.Value}, "u1"},
		{"among others", []string{"a=1; portal_sid=xyz;" + c.Name + "=" + c.Value + "; b=2"}, "u1"},
		{"second header line", []string{"a=1", c.Name + "=" + c.Value}, "u1"},
		{"quoted", []string{c.Name + `="` + c.Value + `"`}, "u1"},
		{"stale copy first", []string{c.Name + "=" + other + "; " + c.Name + "=" + c.Value}, "u1"},
		{"unknown session", []string{c.Name + "=" + other}, ""},
		{"malformed value", []string{c.Name + "=" + c.Value[:42] + "!"}, ""},
		{"truncated value", []string{c.Name + "=" + c.Value[:42]}, ""},
		{"name as prefix", []string{c.Name + "x=" + c.Value}, ""},
		{"other case", []string{strings.ToLower(c.Name) + "=" + c.Value}, ""},
		{"no value", []string{c.Name}, ""},
		{"no cookie", nil, ""},
	} {
		if got := cacheCheck(t, h, tc.hdr...); got != tc.want {
			t.Errorf("%s: user %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestGateAtMostTwoLookups: however many session cookies a request carries,
// it costs at most two store lookups, and a duplicate costs one.
func TestGateAtMostTwoLookups(t *testing.T) {
	h, st, _, c := cacheHandler(t, &SessionCache{Disabled: true})
	flood := make([]string, 0, 261)
	for range 260 {
		flood = append(flood, c.Name+"="+token.New())
	}
	unknown := token.New()
	for _, tc := range []struct {
		name    string
		hdr     []string
		want    string
		lookups int64
	}{
		{"260 unknown, then the real one", []string{strings.Join(append(flood, c.Name+"="+c.Value), "; ")}, "", 2},
		{"260 on as many lines", append(flood, c.Name+"="+c.Value), "", 2},
		{"stale, then the real one", []string{c.Name + "=" + unknown + "; " + c.Name + "=" + c.Value}, "u1", 2},
		{"the real one twice", []string{c.Name + "=" + c.Value + "; " + c.Name + "=" + c.Value}, "u1", 1},
		{"the same unknown one twice, then the real one", []string{c.Name + "=" + unknown + "; " + c.Name + "=" + unknown + "; " + c.Name + "=" + c.Value}, "u1", 2},
	} {
		st.sessions.Store(0)
		if got := cacheCheck(t, h, tc.hdr...); got != tc.want {
			t.Errorf("%s: user %q, want %q", tc.name, got, tc.want)
		}
		if n := st.sessions.Load(); n != tc.lookups {
			t.Errorf("%s: %d store lookups, want %d", tc.name, n, tc.lookups)
		}
	}
}

func TestGateIdentityFromCache(t *testing.T) {
	h, _, _, c := cacheHandler(t, nil)
	for range 2 { // a miss, then a hit
		r := httptest.NewRequest(http.MethodGet, "https://portal.test/", nil)
		r.AddCookie(c)
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		id, err := h.requestSession(r)
		if err != nil {
			t.Fatal(err)
		}
		h.applyIdentity(r, id)
		if got := r.Header.Get("X-Forwarded-User"); got != "u1" {
			t.Errorf("user header %q", got)
		}
		if got := r.Header.Get("X-Forwarded-Claims"); got != "group=org-a" {
			t.Errorf("claims header %q", got)
		}
		if got, _ := repl.GetString("http.auth.user.group"); got != "org-a" {
			t.Errorf("{http.auth.user.group} = %q", got)
		}
		if got, _ := repl.GetString("http.auth.user.id"); got != "u1" {
			t.Errorf("{http.auth.user.id} = %q", got)
		}
	}
}

func TestSessionCacheCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    *SessionCache
		wantErr string
	}{
		{"session_cache 5000 1m", &SessionCache{Size: 5000, TTL: caddy.Duration(time.Minute)}, ""},
		{"session_cache off", &SessionCache{Disabled: true}, ""},
		{"session_cache", nil, "wrong argument count"},
		{"session_cache 5000", nil, "wrong argument count"},
		{"session_cache 5000 1m 2", nil, "wrong argument count"},
		{"session_cache 0 1m", nil, "want a positive number"},
		{"session_cache -1 1m", nil, "want a positive number"},
		{"session_cache many 1m", nil, "want a positive number"},
		{"session_cache 10 0s", nil, "want a positive duration"},
		{"session_cache 10 soon", nil, "want a positive duration"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ssogate {\n" + tc.in + "\n}"))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if *h.SessionCache != *tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, *h.SessionCache, *tc.want)
		}
	}
}

func TestSessionCacheProvision(t *testing.T) {
	mem := memory.New(time.Now, time.Hour)
	t.Cleanup(func() { _ = mem.Close() })
	for _, tc := range []struct {
		name      string
		cfg       *SessionCache
		idle      time.Duration
		wantEvery time.Duration
		wantErr   string
	}{
		{"defaults", nil, 30 * time.Minute, defaultCacheTTL, ""},
		{"ttl over a tenth of idle", &SessionCache{TTL: caddy.Duration(time.Hour)}, 30 * time.Minute, 3 * time.Minute, ""},
		{"short idle", nil, time.Minute, 6 * time.Second, ""},
		{"negative size", &SessionCache{Size: -1}, time.Minute, 0, "size -1"},
		{"negative ttl", &SessionCache{TTL: -1}, time.Minute, 0, "ttl -1ns"},
	} {
		h := &Handler{SessionCache: tc.cfg, SessionIdle: caddy.Duration(tc.idle), store: mem}
		err := h.provisionSessionCache()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := time.Duration(h.cache.every); got != tc.wantEvery {
			t.Errorf("%s: revalidates every %s, want %s", tc.name, got, tc.wantEvery)
		}
		_ = h.Cleanup()
	}
}
