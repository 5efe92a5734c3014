package caddymodule

import (
	"context"
	"encoding/json"
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
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// rlClock is a clock the test moves by hand.
type rlClock struct {
	mu sync.Mutex
	t  time.Time
}

func newRLClock() *rlClock { return &rlClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *rlClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *rlClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// rlFail runs one whole failed redemption for key, as serveRedeem does.
func rlFail(t *testing.T, l *failureLimiter, key string) {
	t.Helper()
	if retry, _, ok := l.begin(key); !ok {
		t.Fatalf("%s refused (retry %v) before its limit", key, retry)
	}
	l.fail(key)
	l.done(key)
}

func TestLimiterCountsFailuresInASlidingWindow(t *testing.T) {
	clock := newRLClock()
	l := newFailureLimiter(3, time.Minute, 100, clock.now)
	for range 3 {
		rlFail(t, l, "192.0.2.1")
		clock.advance(10 * time.Second) // failures at 0s, 10s, 20s
	}
	// At 30s the fourth is refused until the first leaves the window (60s).
	retry, first, ok := l.begin("192.0.2.1")
	if ok || !first || retry != 30*time.Second {
		t.Fatalf("4th attempt: ok %v first %v retry %v, want refused, first refusal, 30s", ok, first, retry)
	}
	if _, first, _ := l.begin("192.0.2.1"); first {
		t.Error("2nd refusal in a row reported as the first")
	}
	// Another client is not affected.
	rlFail(t, l, "192.0.2.2")

	clock.advance(30*time.Second - time.Nanosecond)
	if _, _, ok := l.begin("192.0.2.1"); ok {
		t.Fatal("let through a nanosecond before the oldest failure left the window")
	}
	clock.advance(time.Nanosecond)
	// One slot is free: one more failure, then refused until the 10s one
	// leaves (at 70s, 10s from now).
	rlFail(t, l, "192.0.2.1")
	if retry, _, ok := l.begin("192.0.2.1"); ok || retry != 10*time.Second {
		t.Fatalf("after refilling the freed slot: ok %v retry %v, want refused for 10s", ok, retry)
	}
}

func TestLimiterReservesSlotsForRequestsInFlight(t *testing.T) {
	clock := newRLClock()
	l := newFailureLimiter(3, time.Minute, 100, clock.now)
	// Three concurrent redemptions from one client, none finished: a
	// fourth must wait, or a burst could try any number of tokens before
	// the first failure is counted.
	for i := range 3 {
		if _, _, ok := l.begin("c"); !ok {
			t.Fatalf("reservation %d refused", i)
		}
	}
	retry, _, ok := l.begin("c")
	if ok || retry != time.Second {
		t.Fatalf("4th concurrent: ok %v retry %v, want refused for 1s", ok, retry)
	}
	// Successes give their slots back and leave nothing behind.
	for range 3 {
		l.done("c")
	}
	if n := l.size(); n != 0 {
		t.Fatalf("%d clients tracked after three successes, want 0", n)
	}
	if _, _, ok := l.begin("c"); !ok {
		t.Fatal("refused after every reservation was given back")
	}
}

func TestLimiterForgetsIdleClientsAndStaysBounded(t *testing.T) {
	clock := newRLClock()
	l := newFailureLimiter(2, time.Minute, 4, clock.now)
	for i := range 4 {
		rlFail(t, l, fmt.Sprint("10.0.0.", i))
		clock.advance(time.Second)
	}
	// A fifth client pushes out the longest idle one.
	rlFail(t, l, "10.0.0.9")
	if n := l.size(); n != 4 {
		t.Fatalf("%d clients tracked, want the cap of 4", n)
	}
	l.mu.Lock()
	_, kept := l.clients["10.0.0.0"]
	l.mu.Unlock()
	if kept {
		t.Error("the longest idle client was kept over the cap")
	}
	// A window later every client has aged out, without any sweeper.
	clock.advance(time.Minute)
	rlFail(t, l, "10.0.0.10")
	if n := l.size(); n != 1 {
		t.Fatalf("%d clients tracked a window later, want only the new one", n)
	}
}

func TestLimiterIsSafeForConcurrentUse(t *testing.T) {
	l := newFailureLimiter(50, time.Minute, 64, time.Now)
	var refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprint("198.51.100.", (g*200+i)%100)
				if _, _, ok := l.begin(key); !ok {
					refused.Add(1)
					continue
				}
				if i%2 == 0 {
					l.fail(key)
				}
				l.done(key)
			}
		})
	}
	wg.Wait()
	if n := l.size(); n > 64 {
		t.Fatalf("%d clients tracked, over the cap of 64", n)
	}
	t.Logf("%d of 1600 refused", refused.Load())
}

func TestRateLimitTableSize(t *testing.T) {
	for n, want := range map[int]int{1: 1 << 16, 30: 1 << 16, 100: 32 << 20 / 1056, 1000: 1 << 12} {
		if got := rateLimitClients(n); got != want {
			t.Errorf("rateLimitClients(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestNilLimiterAllowsEverything(t *testing.T) {
	var l *failureLimiter
	if _, _, ok := l.begin("x"); !ok {
		t.Fatal("redeem_rate_limit off refused a request")
	}
	l.fail("x")
	l.done("x")
}

func TestRateLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                "192.0.2.1",
		"::ffff:192.0.2.1":         "192.0.2.1", // the same client over a dual-stack socket
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":     "2001:db8:1:2::/64", // same /64, same client
		"2001:db8:1:3::1":          "2001:db8:1:3::/64",
		"fe80::1%eth0":             "fe80::/64",
		"not an ip (no client ip)": "not an ip (no client ip)",
	} {
		if got := rateLimitKey(in); got != want {
			t.Errorf("rateLimitKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRateLimitCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // JSON of redeem_rate_limit, or "error: <part of it>"
	}{
		{"redeem_rate_limit 5 10s", `{"failures":5,"window":10000000000}`},
		{"redeem_rate_limit 100 1h", `{"failures":100,"window":3600000000000}`},
		{"redeem_rate_limit off", `{"disabled":true}`},
		{"redeem_rate_limit", "error: wrong argument count"},
		{"redeem_rate_limit 5", "error: wrong argument count"},
		{"redeem_rate_limit 5 1m 2", "error: wrong argument count"},
		{"redeem_rate_limit off now", "error: wrong argument count"},
		{"redeem_rate_limit 0 1m", "error: want a positive number"},
		{"redeem_rate_limit -3 1m", "error: want a positive number"},
		{"redeem_rate_limit many 1m", "error: want a positive number"},
		{"redeem_rate_limit 5 soon", "error: want a positive duration"},
		{"redeem_rate_limit 5 0s", "error: want a positive duration"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ssogate {\n" + tc.in + "\n}"))
		if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%q: err = %v, want one containing %q", tc.in, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		got, _ := json.Marshal(h.RedeemRateLimit)
		if string(got) != tc.want {
			t.Errorf("%q: %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestRateLimitProvision(t *testing.T) {
	for _, tc := range []struct {
		json   string
		limit  int // 0: no limiter
		window time.Duration
		err    string
	}{
		{json: `{}`, limit: 30, window: time.Minute},
		{json: `{"redeem_rate_limit":{"failures":5}}`, limit: 5, window: time.Minute},
		{json: `{"redeem_rate_limit":{"window":"10s"}}`, limit: 30, window: 10 * time.Second},
		{json: `{"redeem_rate_limit":{"disabled":true}}`},
		{json: `{"redeem_rate_limit":{"failures":-1}}`, err: "want 1 to"},
		{json: `{"redeem_rate_limit":{"failures":1001}}`, err: "want 1 to"},
		{json: `{"redeem_rate_limit":{"window":"-1s"}}`, err: "must be positive"},
	} {
		var h Handler
		if err := json.Unmarshal([]byte(tc.json), &h); err != nil {
			t.Fatal(err)
		}
		err := h.provisionRateLimit()
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want one containing %q", tc.json, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.json, err)
		case tc.limit == 0 && h.limiter != nil:
			t.Errorf("%s: a limiter although disabled", tc.json)
		case tc.limit != 0 && (h.limiter == nil || h.limiter.limit != tc.limit || h.limiter.window != tc.window):
			t.Errorf("%s: limiter %+v, want %d per %v", tc.json, h.limiter, tc.limit, tc.window)
		}
	}
}

// counterValue reads a counter's current value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// rlCountingStore counts the store calls a redemption makes.
type rlCountingStore struct {
	store.Store
	takes atomic.Int64
}

func (s *rlCountingStore) TakeToken(ctx context.Context, key string) (store.Token, error) {
	s.takes.Add(1)
	return s.Store.TakeToken(ctx, key)
}

// rlRedeem sends GET target from client ip through h.
func rlRedeem(t *testing.T, h *Handler, ip, target string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://portal.test"+target, nil)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatalf("GET %s reached next", target)
		return nil
	})
	if err := h.ServeHTTP(w, r.WithContext(ctx), next); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return w
}

func TestRedeemRateLimit(t *testing.T) {
	h := &Handler{RedeemRateLimit: &RedeemRateLimit{Failures: 3, Window: caddy.Duration(time.Minute)}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	h.logger = zap.NewNop()
	clock := newRLClock()
	h.limiter = newFailureLimiter(3, time.Minute, 100, clock.now)
	counting := &rlCountingStore{Store: h.store}
	h.store = counting

	good := token.New()
	if err := h.store.AddToken(context.Background(), token.Hash(good), store.Token{UserID: "rl-user"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	const attacker = "203.0.113.7"
	limited := redemptions.WithLabelValues("redirect", redeemRateLimited)
	before := counterValue(t, limited)

	// Bad redirect targets are the link's fault, not a guess: they do not
	// count, however many.
	for range 5 {
		if w := rlRedeem(t, h, attacker, "/auth?sso_token="+good+"&next=https://evil.test/"); w.Code != http.StatusBadRequest {
			t.Fatalf("bad redirect: %d, want 400", w.Code)
		}
	}
	// A malformed, an unknown and a used token: 403 each, all counted.
	for _, bad := range []string{"/redirect/short", "/redirect/" + token.New(), "/consume_ssotoken?ssoToken=" + token.New()} {
		if w := rlRedeem(t, h, attacker, bad); w.Code != http.StatusForbidden {
			t.Fatalf("GET %s: %d, want 403", bad, w.Code)
		}
	}
	takes := counting.takes.Load()
	// Past the limit even a good token gets 429, without a store lookup.
	w := rlRedeem(t, h, attacker, "/redirect/"+good)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" {
		t.Fatalf("good token past the limit: %d Retry-After %q, want 429 and 60", w.Code, w.Header().Get("Retry-After"))
	}
	if !strings.Contains(w.Body.String(), "rate_limited") || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("429 page: Cache-Control %q, body %q", w.Header().Get("Cache-Control"), w.Body)
	}
	if n := counting.takes.Load() - takes; n != 0 {
		t.Fatalf("%d store lookups past the limit, want none", n)
	}
	if got := counterValue(t, limited) - before; got != 1 {
		t.Errorf("rate_limited counter moved by %v, want 1", got)
	}
	// Another client is not limited; the token is still good for it.
	if w := rlRedeem(t, h, "203.0.113.8", "/redirect/"+good); w.Code != http.StatusFound {
		t.Fatalf("other client: %d, want 302", w.Code)
	}
	// The window passes: the attacker may try again.
	clock.advance(time.Minute)
	if w := rlRedeem(t, h, attacker, "/redirect/"+good); w.Code != http.StatusForbidden {
		t.Fatalf("after the window: %d, want 403 (used token)", w.Code)
	}
}
