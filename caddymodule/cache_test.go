package caddymodule

import (
	"context"
	"github.com/ssogate/ssogate/internal/testclock"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ssogate/ssogate/internal/sessioncache"
	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
	"github.com/ssogate/ssogate/plugins/store/memory"
)

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
func cacheHandler(t *testing.T, cfg *SessionCache) (*Handler, *cacheCountingStore, *testclock.Clock, *http.Cookie) {
	t.Helper()
	clk := testclock.New()
	mem := memory.New(clk.Now, time.Hour)
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
		clock:        clk.Now,
	}
	if err := h.provisionSessionCache(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	id := token.New()
	now := clk.Now()
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
	clk.Add(31 * time.Second)
	if u := cacheCheck(t, h, hdr); u != "u1" {
		t.Fatalf("after the TTL: user %q", u)
	}
	if n := st.sessions.Load(); n != 2 {
		t.Errorf("after the TTL the store was asked %d times in all, want 2", n)
	}
	// Active for longer than session_idle: the slide kept it alive.
	for range 70 {
		clk.Add(31 * time.Second)
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
		now := clk.Now()
		s := store.Session{UserID: "u2", CreatedAt: now, ExpiresAt: now.Add(10 * time.Second)}
		if err := st.AddSession(ctx, token.Hash(id), s, time.Hour); err != nil {
			t.Fatal(err)
		}
		hdr := h.CookieName + "=" + id
		if u := cacheCheck(t, h, hdr); u != "u2" {
			t.Fatalf("fresh session: user %q", u)
		}
		clk.Add(10*time.Second - 1)
		if u := cacheCheck(t, h, hdr); u != "u2" {
			t.Fatalf("1ns before session_ttl: user %q", u)
		}
		clk.Add(1)
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
		clk.Add(31 * time.Second)
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
	if n := h.cache.Len(); n != 0 {
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
	clk.Add(sessioncache.DistrustFor)
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
	if n := h.cache.Len(); n != 1 {
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
		if got := h.cache.Every(); got != tc.wantEvery {
			t.Errorf("%s: revalidates every %s, want %s", tc.name, got, tc.wantEvery)
		}
		_ = h.Cleanup()
	}
}
