package integration

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// TestFlow is the first end-to-end slice on each store: mint → redeem → session
// → proxy, and everything that must be refused along the way.
func TestFlow(t *testing.T) {
	stores := map[string]func(t *testing.T) string{
		"redis":  func(t *testing.T) string { return "store redis " + harness.StartRedis(t).URL() },
		"memory": func(*testing.T) string { return "store memory" },
	}
	for name, storeLine := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, gatewayOptions{store: storeLine(t)})
			t.Run("SignInAndProxy", func(t *testing.T) { flowSignInAndProxy(t, g) })
			t.Run("Replay", func(t *testing.T) { flowReplay(t, g) })
			t.Run("SpoofedIdentityNeverReachesUpstream", func(t *testing.T) { flowSpoofing(t, g) })
			t.Run("NoCookie", func(t *testing.T) { flowNoCookie(t, g) })
			t.Run("Logout", func(t *testing.T) { flowLogout(t, g) })
			t.Run("ConcurrentRedeemsExactlyOneWins", func(t *testing.T) { flowConcurrentRedeems(t, g) })
			t.Run("ExpiredToken", func(t *testing.T) {
				short := startGateway(t, gatewayOptions{store: storeLine(t), extra: "token_ttl 1s"})
				m := short.mint(t, orgAKey, `{"userId":"late"}`)
				time.Sleep(1500 * time.Millisecond) // past the 1s TTL
				resp := short.do(t, http.MethodGet, m.URL, "", nil)
				if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
					t.Fatalf("token past its TTL: %s, cookie %v; want 403 and no cookie", resp.Status, sessionCookie(resp))
				}
			})
		})
	}
}

func flowSignInAndProxy(t *testing.T, g *gateway) {
	m := g.mint(t, orgAKey, `{"userId":"alice","redirect":"/app/"}`)
	if !strings.HasPrefix(m.URL, g.base+"/redirect/") || m.UserID != "alice" || m.CreatedByApplicationID != "emr-org-a" {
		t.Fatalf("mint answer %+v", m)
	}
	created, err1 := time.Parse(time.RFC3339, m.CreationTimestamp)
	expires, err2 := time.Parse(time.RFC3339, m.ExpiresAt)
	if err1 != nil || err2 != nil || expires.Sub(created) != 30*time.Second || !strings.HasSuffix(m.ExpiresAt, "Z") {
		t.Fatalf("timestamps %q → %q: want RFC 3339 UTC, 30s apart", m.CreationTimestamp, m.ExpiresAt)
	}

	resp := g.do(t, http.MethodGet, m.URL, "", nil)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app/" || c == nil {
		t.Fatalf("redeem: %s to %q, cookie %v; want 302 to /app/ with a cookie", resp.Status, resp.Header.Get("Location"), c)
	}
	set := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(set, attr) {
			t.Errorf("Set-Cookie %q lacks %s", set, attr)
		}
	}
	if len(c.Value) != 43 {
		t.Errorf("session id %d characters long, want 43 (256 bits base64url)", len(c.Value))
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("redeem %s = %q, want %q", h, got, want)
		}
	}

	g.upstream.Reset()
	saw := readUpstream(t, g.do(t, http.MethodGet, "/app/", "", c))
	if saw.User != "alice" || saw.Claims != "group=org-a" || saw.Path != "/app/" {
		t.Fatalf("upstream saw %+v; want alice with group=org-a at /app/", saw)
	}
	reqs := g.upstream.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get("X-Auth-Id") != "alice" || reqs[0].Header.Get("X-Auth-Group") != "org-a" {
		t.Fatalf("placeholders {http.auth.user.id}/{http.auth.user.group} reached the upstream as %v", reqs)
	}
}

func flowReplay(t *testing.T, g *gateway) {
	m := g.mint(t, orgAKey, `{"userId":"bob"}`)
	if resp := g.do(t, http.MethodGet, m.URL, "", nil); resp.StatusCode != http.StatusFound {
		t.Fatalf("first redeem: %s", resp.Status)
	}
	resp := g.do(t, http.MethodGet, m.URL, "", nil)
	if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("replay: %s, cookie %v, Cache-Control %q; want 403, no cookie, no-store",
			resp.Status, sessionCookie(resp), resp.Header.Get("Cache-Control"))
	}
	for _, bad := range []string{"/redirect/short", "/redirect/" + strings.Repeat("a", 129), "/redirect/abc%2Fdefghijklmnopqrs", "/redirect/"} {
		if resp := g.do(t, http.MethodGet, bad, "", nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("malformed %s: %s, want 403", bad, resp.Status)
		}
	}
}

func flowSpoofing(t *testing.T, g *gateway) {
	c := g.signIn(t, "carol")
	g.upstream.Reset()
	spoof := []string{"X-Forwarded-User: admin", "X-Forwarded-Claims: group=root", "X_Forwarded_User: admin"}
	saw := readUpstream(t, g.do(t, http.MethodGet, "/records", "", c, spoof...))
	if saw.User != "carol" || saw.Claims != "group=org-a" {
		t.Fatalf("signed in with spoofed headers, upstream saw %+v; want carol, group=org-a", saw)
	}
	if resp := g.do(t, http.MethodGet, "/records", "", nil, spoof...); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("spoofed headers without a session: %s, want 401", resp.Status)
	}
	for _, r := range g.upstream.Requests() {
		for name, vals := range r.Header {
			n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			if (n == "x-forwarded-user" || n == "x-forwarded-claims") && (strings.Contains(strings.Join(vals, ","), "admin") || strings.Contains(strings.Join(vals, ","), "root")) {
				t.Fatalf("the upstream received a client's %s: %v", name, vals)
			}
		}
	}
}

func flowNoCookie(t *testing.T, g *gateway) {
	g.upstream.Reset()
	resp := g.do(t, http.MethodGet, "/records", "", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no cookie: %s, want 401", resp.Status)
	}
	forged := &http.Cookie{Name: "__Host-ssogate", Value: strings.Repeat("A", 43)}
	if resp := g.do(t, http.MethodGet, "/records", "", forged); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown session id: %s, want 401", resp.Status)
	}
	if n := len(g.upstream.Requests()); n != 0 {
		t.Fatalf("%d requests without a session reached the upstream", n)
	}
}

func flowLogout(t *testing.T, g *gateway) {
	c := g.signIn(t, "dave")
	if resp := g.do(t, http.MethodGet, "/", "", c); resp.StatusCode != http.StatusOK {
		t.Fatalf("before logout: %s", resp.Status)
	}
	resp := g.do(t, http.MethodPost, "/sso/logout", "", c)
	if cleared := sessionCookie(resp); cleared == nil || cleared.MaxAge >= 0 {
		t.Fatalf("logout: %s, cookie %v; want the cookie cleared", resp.Status, cleared)
	}
	if resp := g.do(t, http.MethodGet, "/", "", c); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the cookie still works after logout: %s", resp.Status)
	}
	if resp := g.do(t, http.MethodGet, "/sso/logout", "", c); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /sso/logout: %s, want 405", resp.Status)
	}
}

func flowConcurrentRedeems(t *testing.T, g *gateway) {
	m := g.mint(t, orgAKey, `{"userId":"erin"}`)
	var wins, refusals atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := g.client.Get(m.URL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusFound:
				wins.Add(1)
			case http.StatusForbidden:
				refusals.Add(1)
			default:
				t.Errorf("concurrent redeem: %s", resp.Status)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || refusals.Load() != 99 {
		t.Fatalf("100 concurrent redeems: %d won, %d refused; want exactly 1 and 99", wins.Load(), refusals.Load())
	}
}
