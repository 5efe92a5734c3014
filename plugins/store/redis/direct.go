package redis

import (
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/plugins/store"
)

// Direct minting is held to token_ttl.
//
// A backend that writes <prefix>tok:<hash> itself bypasses the API, which
// sets the TTL to token_ttl and iat to the time of minting. A record whose
// TTL is longer than token_ttl (or has none), or whose iat is older, is not
// what a short-lived link is: it is refused (and gone). The TTL is read in
// the same script that takes the token, so this costs no round trip.

// maxTokenTTL bounds direct tokens when the handler has not said its
// token_ttl (the most token_ttl may be).
const maxTokenTTL = 5 * time.Minute

// iatSlack allows for iat's whole seconds and for clocks of minters and
// gateways a second apart.
const iatSlack = 2 * time.Second

// takeSource returns {value, ms left} and deletes the key, or nil: one key,
// so it runs unchanged on Cluster.
const takeSource = `local v = redis.call('GET', KEYS[1])
if not v then return false end
local left = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return {v, left}`

var takeScript = goredis.NewScript(takeSource)

// SetTokenTTL tells the store the handler's token_ttl: a token taken with a
// longer TTL left, or an iat older than that, is refused. The handler calls
// it after provisioning the store.
func (r *Redis) SetTokenTTL(d time.Duration) { r.tokenTTL = d }

// checkLife refuses a token that outlives token_ttl. The error wraps
// store.ErrNotFound: to the redeemer it is an unusable link like any other.
func (r *Redis) checkLife(t store.Token, left time.Duration, now time.Time) error {
	limit := r.tokenTTL
	if limit <= 0 {
		limit = maxTokenTTL
	}
	switch {
	case left < 0:
		return fmt.Errorf("direct token without a TTL (want EX ≤ token_ttl %s): %w", limit, store.ErrNotFound)
	case left > limit:
		return fmt.Errorf("direct token with %s left, more than token_ttl %s: %w", left.Round(time.Millisecond), limit, store.ErrNotFound)
	}
	if t.IssuedAt == "" {
		return nil
	}
	// iat is optional, and an unreadable one is left alone (the TTL bounds
	// the token's life anyway): a minter's format must not make it unusable.
	iat, err := time.Parse(time.RFC3339, t.IssuedAt)
	if err == nil && now.Sub(iat) > limit+iatSlack {
		return fmt.Errorf("direct token issued %s ago, longer than token_ttl %s: %w", now.Sub(iat).Round(time.Second), limit, store.ErrNotFound)
	}
	return nil
}

// takeResult reads the script's answer.
func takeResult(cmd *goredis.Cmd) (val []byte, left time.Duration, err error) {
	res, err := cmd.Slice()
	if err != nil {
		return nil, 0, err
	}
	if len(res) != 2 {
		return nil, 0, fmt.Errorf("take token: script answered %d values", len(res))
	}
	s, ok1 := res[0].(string)
	ms, ok2 := res[1].(int64)
	if !ok1 || !ok2 {
		return nil, 0, fmt.Errorf("take token: script answered %T, %T", res[0], res[1])
	}
	if ms < 0 {
		return []byte(s), -1, nil
	}
	return []byte(s), time.Duration(ms) * time.Millisecond, nil
}

// isNoScript reports a script the server does not have cached.
func isNoScript(err error) bool {
	return err != nil && !errors.Is(err, goredis.Nil) && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
