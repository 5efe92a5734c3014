package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
	"github.com/ssogate/ssogate/internal/token"
)

// cacheInvalidationDeadline is the SPEC's bound: logout and revocation reach
// every instance within one second.
const cacheInvalidationDeadline = time.Second

// cachePair is two gateway instances sharing one Redis, as behind a load
// balancer, each with the session cache on (the default).
func cachePair(t *testing.T) (a, b *gateway, rds *harness.Redis) {
	t.Helper()
	rds = harness.StartRedis(t)
	a = startGateway(t, gatewayOptions{store: "store redis " + rds.URL()})
	b = startGateway(t, gatewayOptions{store: "store redis " + rds.URL()})
	return a, b, rds
}

// cacheStatus is the status of a signed-in GET on g.
func cacheStatus(t *testing.T, g *gateway, c *http.Cookie) int {
	t.Helper()
	resp := g.do(t, http.MethodGet, "/patients/1", "", c, "Accept: application/json")
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// cacheWarm makes g cache c's session, and proves it: a request then costs
// Redis no command. The gateway bypasses its cache for a few seconds after
// its subscription is made, so this polls.
func cacheWarm(t *testing.T, g *gateway, rds *harness.Redis, c *http.Cookie) {
	t.Helper()
	ctx := context.Background()
	harness.Eventually(t, "the session cached", 15*time.Second, func() error {
		before, err := rds.CommandStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s := cacheStatus(t, g, c); s != http.StatusOK {
			t.Fatalf("warming the cache: %d, want 200", s)
		}
		after, err := rds.CommandStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after["getex"] == before["getex"] && after["get"] == before["get"] {
			return nil
		}
		return errors.New("the session never got cached: every request still reads Redis")
	})
}

// cacheRefusedBy polls g with c until it answers 401, and fails if it still
// serves the session within after of since.
func cacheRefusedBy(t *testing.T, g *gateway, c *http.Cookie, since time.Time, after time.Duration, what string) {
	t.Helper()
	harness.Eventually(t, what, time.Until(since.Add(after)), func() error {
		s := cacheStatus(t, g, c)
		if s == http.StatusUnauthorized {
			return nil
		}
		if s != http.StatusOK {
			t.Fatalf("%s: the other instance answered %d, want 200 then 401", what, s)
		}
		return fmt.Errorf("the other instance still serves the session %s later", after)
	})
}

func TestCacheLogoutReachesEveryInstance(t *testing.T) {
	t.Parallel()
	a, b, rds := cachePair(t)
	c := a.signIn(t, "cache-logout")
	cacheWarm(t, b, rds, c)

	resp := a.do(t, http.MethodPost, "/sso/logout", "", c, "Accept: application/json")
	done := time.Now()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout on A: %s, want 204", resp.Status)
	}
	if s := cacheStatus(t, a, c); s != http.StatusUnauthorized {
		t.Errorf("A after its own logout: %d, want 401 at once", s)
	}
	cacheRefusedBy(t, b, c, done, cacheInvalidationDeadline, "logout on A")
}

func TestCacheRevocationReachesEveryInstance(t *testing.T) {
	t.Parallel()
	a, b, rds := cachePair(t)
	user := "cache-revoked"
	c1 := a.signIn(t, user)
	c2 := b.signIn(t, user)
	other := a.signIn(t, "cache-bystander")
	for _, c := range []*http.Cookie{c1, c2, other} {
		cacheWarm(t, a, rds, c)
		cacheWarm(t, b, rds, c)
	}

	resp := a.do(t, http.MethodDelete, "/sso/sessions?userId="+user, "", nil, "Authorization: Bearer "+orgAKey)
	done := time.Now()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke on A: %s, want 200", resp.Status)
	}
	for _, c := range []*http.Cookie{c1, c2} {
		if s := cacheStatus(t, a, c); s != http.StatusUnauthorized {
			t.Errorf("A after its own revocation: %d, want 401 at once", s)
		}
		cacheRefusedBy(t, b, c, done, cacheInvalidationDeadline, "revocation on A")
	}
	for _, g := range []*gateway{a, b} {
		if s := cacheStatus(t, g, other); s != http.StatusOK {
			t.Errorf("another user's session after the revocation: %d, want 200", s)
		}
	}
}

// When the invalidation channel breaks, events may be lost, so the cache must
// be emptied: a session removed from Redis without any event (as if its event
// had been lost) stops working once the subscription is broken.
func TestCacheFlushedWhenSubscriptionLost(t *testing.T) {
	t.Parallel()
	_, b, rds := cachePair(t)
	c := b.signIn(t, "cache-lost-event")
	cacheWarm(t, b, rds, c)
	ctx := context.Background()
	if err := rds.Client().Del(ctx, "ssogate:sess:"+token.Hash(c.Value)).Err(); err != nil {
		t.Fatal(err)
	}
	// The precondition that makes this test mean something: without an
	// event, the cached session is still served.
	if s := cacheStatus(t, b, c); s != http.StatusOK {
		t.Fatalf("cached session after a silent delete: %d, want 200 (served from the cache)", s)
	}
	if err := rds.Client().ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
	}
	// The subscriber notices a closed connection at once and reconnects
	// within a few hundred milliseconds; the bound is generous for a
	// loaded machine.
	cacheRefusedBy(t, b, c, time.Now(), 10*time.Second, "subscription lost")
}
