package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/integration/harness"
	"github.com/ssogate/ssogate/internal/token"
)

// minterACL is the README's ACL for a minting backend, as written there:
// SET only, write-only on token keys (%W~), no pub/sub.
const minterACL = "ACL SETUSER minter on >minter-secret resetkeys %W~ssogate:tok:* resetchannels -@all +set"

// directToken writes a token record straight into Redis, as a backend
// minting with the documented schema does, and returns the token.
func directToken(t *testing.T, c *redis.Client, rec map[string]any, ttl time.Duration) string {
	t.Helper()
	tok := token.New()
	b, _ := json.Marshal(rec)
	if err := c.SetArgs(context.Background(), "ssogate:tok:"+harness.KeyHash(tok), b, redis.SetArgs{TTL: ttl, Mode: "NX"}).Err(); err != nil {
		t.Fatalf("direct mint: %v", err)
	}
	return tok
}

// TestDirectMintHeldToTokenTTL: a direct token signs in only if it lives no
// longer than token_ttl (30s here) and its iat is no older.
func TestDirectMintHeldToTokenTTL(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	g := startGateway(t, gatewayOptions{store: "store redis " + rd.URL()})
	now := time.Now().UTC()
	for _, c := range []struct {
		name string
		rec  map[string]any
		ttl  time.Duration
		want int
	}{
		{"fresh, EX 30", map[string]any{"userId": "u1", "iat": now.Format(time.RFC3339)}, 30 * time.Second, http.StatusFound},
		{"no iat, EX 20", map[string]any{"userId": "u1"}, 20 * time.Second, http.StatusFound},
		{"one hour TTL", map[string]any{"userId": "u1", "iat": now.Format(time.RFC3339)}, time.Hour, http.StatusForbidden},
		{"TTL above token_ttl", map[string]any{"userId": "u1"}, 45 * time.Second, http.StatusForbidden},
		{"no TTL", map[string]any{"userId": "u1"}, 0, http.StatusForbidden},
		{"iat nine days old", map[string]any{"userId": "u1", "iat": now.Add(-9 * 24 * time.Hour).Format(time.RFC3339)}, 30 * time.Second, http.StatusForbidden},
	} {
		tok := directToken(t, rd.Client(), c.rec, c.ttl)
		resp := g.do(t, http.MethodGet, "/redirect/"+tok, "", nil, navigate...)
		if resp.StatusCode != c.want || (c.want == http.StatusForbidden) != (sessionCookie(resp) == nil) {
			t.Errorf("%s: %s, cookie %v; want %d", c.name, resp.Status, sessionCookie(resp) != nil, c.want)
		}
	}
}

// TestDirectMintACLUser: the README's ACL lets a backend mint and nothing
// else: it cannot read tokens or sessions, write sessions, or listen to the
// gateway's events.
func TestDirectMintACLUser(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	ctx := context.Background()
	args := []any{}
	for _, f := range strings.Fields(minterACL) {
		args = append(args, f)
	}
	if err := rd.Client().Do(ctx, args...).Err(); err != nil {
		t.Fatalf("%s: %v", minterACL, err)
	}
	minter := redis.NewClient(&redis.Options{Addr: rd.Addr(), Username: "minter", Password: "minter-secret", DisableIdentity: true})
	defer minter.Close()

	g := startGateway(t, gatewayOptions{store: "store redis " + rd.URL()})
	c := g.signIn(t, "someone") // a session the minter must not reach
	sess := "ssogate:sess:" + harness.KeyHash(c.Value)

	tok := directToken(t, minter, map[string]any{"userId": "minted-by-acl", "iat": time.Now().UTC().Format(time.RFC3339)}, 30*time.Second)
	resp := g.do(t, http.MethodGet, "/redirect/"+tok, "", nil, navigate...)
	if resp.StatusCode != http.StatusFound || sessionCookie(resp) == nil {
		t.Fatalf("token minted by the ACL user: %s; want 302 with a session", resp.Status)
	}

	tokKey := "ssogate:tok:" + harness.KeyHash(token.New())
	for name, err := range map[string]error{
		"GET a session":        minter.Get(ctx, sess).Err(),
		"GETEX a session":      minter.GetEx(ctx, sess, time.Minute).Err(),
		"SET a session":        minter.Set(ctx, sess, `{"userId":"admin"}`, time.Hour).Err(),
		"DEL a session":        minter.Del(ctx, sess).Err(),
		"GET a token":          minter.Get(ctx, tokKey).Err(),
		"SET … GET on a token": minter.SetArgs(ctx, tokKey, "{}", redis.SetArgs{TTL: 30 * time.Second, Get: true}).Err(),
		"SCAN":                 minter.Scan(ctx, 0, "ssogate:*", 10).Err(),
		"KEYS":                 minter.Keys(ctx, "*").Err(),
		"SUBSCRIBE events":     subscribeErr(ctx, minter, "ssogate:events"),
		"PUBLISH an event":     minter.Publish(ctx, "ssogate:events", "u:someone").Err(),
		"SET another prefix":   minter.Set(ctx, "other:tok:x", "{}", 30*time.Second).Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s as the minting user: %v; want NOPERM", name, err)
		}
	}
	// The session is untouched.
	if user, status := g.whoami(t, c); user != "someone" {
		t.Errorf("the session after the minter's attempts: %d %q", status, user)
	}
}

// subscribeErr is the answer to SUBSCRIBE channel.
func subscribeErr(ctx context.Context, c *redis.Client, channel string) error {
	ps := c.Subscribe(ctx, channel)
	defer ps.Close()
	_, err := ps.Receive(ctx)
	return err
}
