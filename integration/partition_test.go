package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// SPEC "Sessions and cookies": logout and revocation reach every instance
// within one second, also when an instance's link to Redis silently stops
// delivering. Instance B reaches Redis through a proxy the test pauses: the
// connections stay open and nothing errors, as in a partition that drops
// packets. B must stop serving the ended session within a second of its end
// on A (refusing it with 401, or 503 while Redis cannot be asked), and must
// never serve it again once the link is back.

// frozenLinkPair is A on Redis directly and B through a pausable proxy, both
// with the session cache on, and a session signed in on A that B has cached.
func frozenLinkPair(t *testing.T, user string) (a, b *gateway, proxy *harness.Proxy, c *http.Cookie) {
	t.Helper()
	rds := harness.StartRedis(t)
	proxy = harness.StartProxy(t, rds.Addr())
	a = startGateway(t, gatewayOptions{store: "store redis " + rds.URL()})
	b = startGateway(t, gatewayOptions{store: "store redis " + proxy.URL()})
	c = a.signIn(t, user)
	cacheWarm(t, b, rds, c)
	return a, b, proxy, c
}

// stopsServing polls g with c until it no longer answers 200, and fails if
// it still served the session after limit from since.
func stopsServing(t *testing.T, g *gateway, c *http.Cookie, since time.Time, limit time.Duration, what string) {
	t.Helper()
	var lastServed time.Duration
	for {
		sent := time.Now()
		resp := g.do(t, http.MethodGet, "/patients/1", "", c, "Accept: application/json")
		_, _ = io.Copy(io.Discard, resp.Body)
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusServiceUnavailable:
			t.Logf("%s: last served a request sent %v after the session ended; refused (%d) one sent %v after, answered %v after",
				what, lastServed.Round(time.Millisecond), resp.StatusCode, sent.Sub(since).Round(time.Millisecond), time.Since(since).Round(time.Millisecond))
			return
		case http.StatusOK:
			lastServed = sent.Sub(since)
			if lastServed > limit {
				t.Fatalf("%s: the frozen instance still serves the ended session %v after it ended", what, sent.Sub(since).Round(time.Millisecond))
			}
		default:
			t.Fatalf("%s: status %d, want 200, then 401 or 503", what, resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// afterResume checks that once the link is back, B refuses the session for
// good (401), however many requests it sees.
func afterResume(t *testing.T, b *gateway, proxy *harness.Proxy, c *http.Cookie) {
	t.Helper()
	proxy.Resume()
	harness.Eventually(t, "recovery from the partition", 15*time.Second, func() error {
		s := b.status(t, c)
		if s == http.StatusOK {
			t.Fatal("after the link came back, the ended session was served again")
		}
		if s != http.StatusUnauthorized {
			return fmt.Errorf("the instance never recovered from the partition: %d", s)
		}
		return nil
	})
	for range 5 {
		if s := b.status(t, c); s != http.StatusUnauthorized {
			t.Fatalf("after recovery: %d, want 401", s)
		}
	}
}

func TestFrozenLinkLogout(t *testing.T) {
	t.Parallel()
	a, b, proxy, c := frozenLinkPair(t, "frozen-logout")
	proxy.Pause()
	resp := a.do(t, http.MethodPost, "/sso/logout", "", c, "Accept: application/json")
	ended := time.Now()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout on A: %s, want 204", resp.Status)
	}
	stopsServing(t, b, c, ended, cacheInvalidationDeadline, "logout on A, B's link frozen")
	afterResume(t, b, proxy, c)
}

func TestFrozenLinkRevoke(t *testing.T) {
	t.Parallel()
	a, b, proxy, c := frozenLinkPair(t, "frozen-revoke")
	proxy.Pause()
	if n := a.revokeUser(t, orgAKey, "frozen-revoke"); n != 1 {
		t.Fatalf("revoke on A counted %d, want 1", n)
	}
	ended := time.Now()
	stopsServing(t, b, c, ended, cacheInvalidationDeadline, "revocation on A, B's link frozen")
	afterResume(t, b, proxy, c)
}
