package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/integration/harness"
)

// SPEC "Sessions and cookies": a request's session cookies cost at most two
// store lookups, however many it carries. Counted as Redis commands, with
// the session cache off so that every check reaches Redis.

// cookieCommands runs send and returns the Redis commands it caused, by
// name, without those of the harness itself (INFO, CONFIG RESETSTAT) and
// connection upkeep (PING, HELLO, CLIENT).
func cookieCommands(t *testing.T, rds *harness.Redis, send func()) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	if err := rds.ResetCommandStats(ctx); err != nil {
		t.Fatal(err)
	}
	send()
	stats, err := rds.CommandStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name := range stats {
		if name == "info" || name == "ping" || name == "hello" || strings.HasPrefix(name, "config|") || strings.HasPrefix(name, "client|") {
			delete(stats, name)
		}
	}
	return stats
}

// total sums the calls of the commands named, or of all without names.
func total(stats map[string]int64, names ...string) int64 {
	var n int64
	for name, calls := range stats {
		if names == nil || slices.Contains(names, name) {
			n += calls
		}
	}
	return n
}

// manyCookies is a Cookie header of n __Host-ssogate cookies: n-1 random,
// well-formed session ids (256 bits, base64url, 43 characters), then real.
func manyCookies(t *testing.T, n int, real *http.Cookie) string {
	t.Helper()
	parts := make([]string, 0, n)
	for range n - 1 {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		parts = append(parts, real.Name+"="+base64.RawURLEncoding.EncodeToString(b))
	}
	return strings.Join(append(parts, real.Name+"="+real.Value), "; ")
}

// TestCookiesManySessionCookies: 50 and 260 session cookies on one request
// cost at most two session lookups, on the gate and on /sso/logout. The
// requests go over HTTP/1.1 as written: the Go client's HTTP/2 refuses a
// header list that large before it is sent.
func TestCookiesManySessionCookies(t *testing.T) {
	rds := harness.StartRedis(t)
	g := startGateway(t, gatewayOptions{store: "store redis " + rds.URL(), extra: "session_cache off"})

	c := g.signIn(t, "cookie-user")
	one := cookieCommands(t, rds, func() {
		if saw := readUpstream(t, g.do(t, http.MethodGet, "/records", "", c, "Accept: application/json")); saw.User != "cookie-user" {
			t.Fatalf("one cookie: upstream saw %+v", saw)
		}
	})
	t.Logf("one session cookie: Redis commands %v", one)
	if n := total(one); n > 2 {
		t.Errorf("one session cookie: %d Redis commands %v, want at most 2", n, one)
	}

	for _, n := range []int{50, 260} {
		header := manyCookies(t, n, c)
		var resp *http.Response
		stats := cookieCommands(t, rds, func() {
			resp, _ = g.raw(t, g.rawGET("/records", nil, "Cookie: "+header))
		})
		t.Logf("%d session cookies, the real one last: %s, Redis commands %v", n, resp.Status, stats)
		if got := total(stats); got > 2 {
			t.Errorf("%d session cookies: %d Redis commands %v, want at most 2", n, got, stats)
		}
		switch resp.StatusCode {
		case http.StatusOK, http.StatusUnauthorized, http.StatusBadRequest:
		default:
			t.Errorf("%d session cookies: %s, want 200, 401 or 400", n, resp.Status)
		}
		for _, r := range g.upstream.Requests() {
			if u := r.Header.Get("X-Forwarded-User"); u != "" && u != "cookie-user" {
				t.Errorf("%d session cookies: the upstream received user %q", n, u)
			}
		}
	}

	// 50 cookies, each on its own Cookie line.
	lines := strings.ReplaceAll("Cookie: "+manyCookies(t, 50, c), "; ", "\r\nCookie: ")
	stats := cookieCommands(t, rds, func() { g.raw(t, g.rawGET("/records", nil, lines)) })
	if got := total(stats); got > 2 {
		t.Errorf("50 Cookie lines: %d Redis commands %v, want at most 2", got, stats)
	}

	// The two a browser may really hold (a partitioned and an unpartitioned
	// cookie), the stale one first: the session works, and logout ends it.
	two := manyCookies(t, 2, c)
	resp, body := g.raw(t, g.rawGET("/records", nil, "Cookie: "+two))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"user":"cookie-user"`) {
		t.Errorf("a stale session cookie, then the live one: %s %.120q, want 200 as cookie-user", resp.Status, body)
	}
	if resp, _ := g.raw(t, "POST /sso/logout HTTP/1.1\r\nHost: "+strings.TrimPrefix(g.base, "https://")+
		"\r\nContent-Length: 0\r\nCookie: "+two+"\r\nConnection: close\r\n\r\n"); resp.StatusCode != http.StatusOK {
		t.Errorf("logout with a stale session cookie, then the live one: %s", resp.Status)
	}
	if resp, _ := g.raw(t, g.rawGET("/records", c)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout with a stale cookie first, the session still answers %s, want 401", resp.Status)
	}

	// Logout with one session cookie is the unit: what ending one session
	// costs the store (its key, its public handle, the invalidation).
	logout := func(header string) (*http.Response, map[string]int64) {
		var resp *http.Response
		stats := cookieCommands(t, rds, func() {
			resp, _ = g.raw(t, "POST /sso/logout HTTP/1.1\r\nHost: "+strings.TrimPrefix(g.base, "https://")+
				"\r\nContent-Length: 0\r\nCookie: "+header+"\r\nConnection: close\r\n\r\n")
		})
		return resp, stats
	}
	resp, oneLogout := logout(manyCookies(t, 1, g.signIn(t, "cookie-user")))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout with one session cookie: %s", resp.Status)
	}
	t.Logf("logout with one session cookie: Redis commands %v", oneLogout)

	for _, n := range []int{50, 260} {
		victim := g.signIn(t, "cookie-user")
		resp, stats := logout(manyCookies(t, n, victim))
		t.Logf("logout with %d session cookies, the real one last: %s, Redis commands %v", n, resp.Status, stats)
		if got := total(stats, "get", "getex", "getdel", "mget"); got > 2 {
			t.Errorf("logout with %d session cookies: %d session lookups %v, want at most 2", n, got, stats)
		}
		// At most two sessions ended: twice the commands of one logout.
		for name, calls := range stats {
			if calls > 2*oneLogout[name] && calls > 2 {
				t.Errorf("logout with %d session cookies: %d %s (one logout: %d), want at most two sessions' worth %v", n, calls, name, oneLogout[name], stats)
			}
		}
		if resp.StatusCode >= 500 {
			t.Errorf("logout with %d session cookies: %s", n, resp.Status)
		}
	}
}
