package caddymodule

import (
	"context"
	"encoding/json"
	"github.com/ssogate/ssogate/internal/testclock"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/failurelimit"
	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

func TestRateLimitTableSize(t *testing.T) {
	for n, want := range map[int]int{1: 1 << 16, 30: 1 << 16, 100: 32 << 20 / 1056, 1000: 1 << 12} {
		if got := rateLimitClients(n); got != want {
			t.Errorf("rateLimitClients(%d) = %d, want %d", n, got, want)
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
		case tc.limit != 0 && h.limiter == nil:
			t.Errorf("%s: no limiter, want %d per %v", tc.json, tc.limit, tc.window)
		case tc.limit != 0:
			if n, window := h.limiter.Limit(); n != tc.limit || window != tc.window {
				t.Errorf("%s: limiter %d per %v, want %d per %v", tc.json, n, window, tc.limit, tc.window)
			}
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
	asBrowserNavigation(r)
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
	clock := testclock.New()
	h.limiter = failurelimit.New(3, time.Minute, 100, clock.Now)
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
	clock.Add(time.Minute)
	if w := rlRedeem(t, h, attacker, "/redirect/"+good); w.Code != http.StatusForbidden {
		t.Fatalf("after the window: %d, want 403 (used token)", w.Code)
	}
}
