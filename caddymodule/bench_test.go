package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// benchHandler provisions h as Caddy does, on the process's memory store,
// with a silent logger (an audit line per redemption would be the benchmark).
func benchHandler(b *testing.B, h *Handler) *Handler {
	b.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		b.Fatalf("provision: %v", err)
	}
	b.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Validate(); err != nil {
		b.Fatalf("validate: %v", err)
	}
	h.logger = zap.NewNop()
	return h
}

// benchSession signs a user in and returns the Cookie header a browser on a
// portal would send: the session among the portal's own cookies.
func benchSession(b *testing.B, h *Handler) string {
	b.Helper()
	id, err := h.newSession(context.Background(), store.Token{UserID: "bench-user", Claims: map[string]string{"group": "org-a", "role": "hcp"}})
	if err != nil {
		b.Fatal(err)
	}
	return "portal_sid=0123456789abcdef; _ga=GA1.1.123456789.1700000000; " + h.CookieName + "=" + id + "; lang=en"
}

// benchRequest is a request as Caddy's server hands it to a handler.
func benchRequest(method, target, cookie string) *http.Request {
	r := httptest.NewRequest(method, "https://portal.test"+target, nil)
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	r.Header.Set("Accept", "text/html")
	r.Header.Set("User-Agent", "Mozilla/5.0")
	asBrowserNavigation(r)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
	return r.WithContext(ctx)
}

// BenchmarkSessionLookup is the gate's cookie scan and session lookup alone.
func BenchmarkSessionLookup(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache *SessionCache
	}{
		{"cached", nil},
		{"uncached", &SessionCache{Disabled: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchHandler(b, &Handler{SessionCache: tc.cache})
			r := benchRequest(http.MethodGet, "/patients", benchSession(b, h))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.requestSession(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGate is a signed-in request through ServeHTTP to a next handler
// that does nothing: everything the gateway adds to a proxied request.
func BenchmarkGate(b *testing.B) {
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	for _, tc := range []struct {
		name string
		h    *Handler
	}{
		{"cached", &Handler{}},
		{"uncached", &Handler{SessionCache: &SessionCache{Disabled: true}}},
		{"cached_embed", &Handler{EmbedFrom: []string{"https://emr.test"}}},
		{"cached_assertion", &Handler{IdentityAssertion: &IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: assertionKeyFile(b)}}}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchHandler(b, tc.h)
			cookie := benchSession(b, h)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := httptest.NewRecorder()
				r := benchRequest(http.MethodGet, "/patients", cookie)
				// The gate takes its own cookie out of what the upstream
				// receives; each request brings it again, as a browser does.
				cookies := r.Header["Cookie"]
				for pb.Next() {
					r.Header["Cookie"] = cookies
					if err := h.ServeHTTP(w, r, next); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRedeem is a whole redemption on the memory store: a token minted
// straight into the store, redeemed through the path route, answered 302
// with a fresh session cookie. Tokens and requests are made in batches with
// the timer stopped (stopping it per iteration would cost more than a
// redemption).
func BenchmarkRedeem(b *testing.B) {
	h := benchHandler(b, &Handler{RedeemRateLimit: &RedeemRateLimit{Disabled: true}})
	ctx := context.Background()
	const batch = 1024
	reqs := make([]*http.Request, 0, batch)
	ws := make([]*httptest.ResponseRecorder, 0, batch)
	b.ReportAllocs()
	for b.Loop() {
		if len(reqs) == 0 {
			b.StopTimer()
			for range batch {
				tok := token.New()
				if err := h.store.AddToken(ctx, token.Hash(tok), store.Token{UserID: "bench-user", Redirect: "/patients"}, time.Minute); err != nil {
					b.Fatal(err)
				}
				reqs = append(reqs, benchRequest(http.MethodGet, "/redirect/"+tok, ""))
				ws = append(ws, httptest.NewRecorder())
			}
			b.StartTimer()
		}
		r, w := reqs[len(reqs)-1], ws[len(ws)-1]
		reqs, ws = reqs[:len(reqs)-1], ws[:len(ws)-1]
		if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusFound {
			b.Fatalf("redeem: %d %v", w.Code, err)
		}
	}
}

// BenchmarkEmbedWriter is the response side with embed_from: an upstream
// answer with a CSP, X-Frame-Options and two cookies, rewritten as it goes
// out through the embed writer (the recorder's own allocations included).
func BenchmarkEmbedWriter(b *testing.B) {
	h := benchHandler(b, &Handler{EmbedFrom: []string{"https://emr.test:9443", "https://*.example.com"}})
	body := make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		ew := h.wrapResponse(w)
		hdr := ew.Header()
		hdr["Content-Security-Policy"] = []string{"default-src 'self'; frame-ancestors 'none'"}
		hdr["X-Frame-Options"] = []string{"DENY"}
		hdr["Set-Cookie"] = []string{"portal_sid=abc; Path=/; HttpOnly; SameSite=Lax", "lang=en; Path=/"}
		ew.WriteHeader(http.StatusOK)
		_, _ = ew.Write(body)
	}
}
