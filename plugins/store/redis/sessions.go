package redis

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// extendIndex adds ARGV[1] to the set KEYS[1] and makes its TTL at least
// ARGV[2] milliseconds, never shorter than it was: a Lua max rather than
// PEXPIRE GT, which leaves a key without a TTL alone and so would not work
// on the set SADD has just made, and which needs Redis 7.
const extendIndex = `redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`

// markRevoked sets the field ARGV[1] of the hash KEYS[1] to ARGV[2] unless it
// holds a later time, and makes the hash's TTL at least ARGV[3] milliseconds.
const markRevoked = `local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1`

// Sessions implements store.Store: the user index, then every member's record
// and TTL in one pipeline. Members whose session is gone are pruned.
func (r *Redis) Sessions(ctx context.Context, userID string) ([]store.Listed, error) {
	userKey := r.key("user", token.Hash(userID))
	members, err := r.conn.client.SMembers(ctx, userKey).Result()
	if err != nil {
		return nil, store.Unavailable("list sessions: read index", err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	gets := make([]*goredis.StringCmd, len(members))
	ttls := make([]*goredis.DurationCmd, len(members))
	_, err = r.conn.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, m := range members {
			gets[i] = p.Get(ctx, r.key("sess", m))
			ttls[i] = p.PTTL(ctx, r.key("sess", m))
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, store.Unavailable("list sessions", err)
	}
	now := time.Now()
	var out []store.Listed
	var gone []any
	for i, m := range members {
		l, ok := listed(m, gets[i], ttls[i], now)
		if !ok || l.UserID != userID {
			gone = append(gone, m)
			continue
		}
		out = append(out, l)
	}
	if len(gone) > 0 {
		// Best effort: a stale member costs a lookup on the next listing.
		_ = r.conn.client.SRem(ctx, userKey, gone...).Err()
	}
	return out, nil
}

// listed decodes one session read by a pipeline; false if it is gone or
// past its absolute expiry.
func listed(key string, get *goredis.StringCmd, ttl *goredis.DurationCmd, now time.Time) (store.Listed, bool) {
	val, err := get.Bytes()
	if err != nil {
		return store.Listed{}, false
	}
	var s store.Session
	if err := json.Unmarshal(val, &s); err != nil || s.UserID == "" || !now.Before(s.ExpiresAt) {
		return store.Listed{}, false
	}
	left, err := ttl.Result()
	if err != nil || left <= 0 {
		return store.Listed{}, false
	}
	return store.Listed{Key: key, Session: s, IdleUntil: now.Add(left).UTC()}, true
}

// SessionByHandle implements store.Store through <prefix>sid:<handle>.
func (r *Redis) SessionByHandle(ctx context.Context, handle string) (store.Listed, error) {
	key, err := r.conn.client.Get(ctx, r.key("sid", handle)).Result()
	if errors.Is(err, goredis.Nil) {
		return store.Listed{}, store.ErrNotFound
	}
	if err != nil {
		return store.Listed{}, store.Unavailable("find session", err)
	}
	if store.SessionHandle(key) != handle {
		return store.Listed{}, store.ErrNotFound // not written by a store
	}
	var get *goredis.StringCmd
	var ttl *goredis.DurationCmd
	_, err = r.conn.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		get = p.Get(ctx, r.key("sess", key))
		ttl = p.PTTL(ctx, r.key("sess", key))
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return store.Listed{}, store.Unavailable("find session", err)
	}
	l, ok := listed(key, get, ttl, time.Now())
	if !ok {
		return store.Listed{}, store.ErrNotFound
	}
	return l, nil
}

// EndSessions implements store.Store: the records, their handles and index
// entries go in one pipeline, with one logout event per session.
func (r *Redis) EndSessions(ctx context.Context, userID string, keys []string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	userKey := r.key("user", token.Hash(userID))
	dels := make([]*goredis.IntCmd, len(keys))
	members := make([]any, len(keys))
	_, err := r.conn.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			dels[i] = p.Del(ctx, r.key("sess", k))
			p.Del(ctx, r.key("sid", store.SessionHandle(k)))
			p.Publish(ctx, r.events, "s:"+k)
			members[i] = k
		}
		p.SRem(ctx, userKey, members...)
		return nil
	})
	if err != nil {
		return 0, store.Unavailable("end sessions", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

// MarkRevoked implements store.Store in <prefix>revoked:<sha256hex(userId)>,
// one field per tenant (the JSON of its claims, keys sorted).
func (r *Redis) MarkRevoked(ctx context.Context, userID string, rev store.Revocation, ttl time.Duration) error {
	field, err := claimsField(rev.Claims)
	if err != nil {
		return err
	}
	err = r.conn.client.Eval(ctx, markRevoked, []string{r.key("revoked", token.Hash(userID))},
		field, rev.At.UnixMilli(), ttl.Milliseconds()).Err()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return store.Unavailable("mark revoked", err)
	}
	return nil
}

// Revocations implements store.Store.
func (r *Redis) Revocations(ctx context.Context, userID string) ([]store.Revocation, error) {
	fields, err := r.conn.client.HGetAll(ctx, r.key("revoked", token.Hash(userID))).Result()
	if err != nil {
		return nil, store.Unavailable("read revocations", err)
	}
	var out []store.Revocation
	for f, v := range fields {
		var claims map[string]string
		ms, err := strconv.ParseInt(v, 10, 64)
		if json.Unmarshal([]byte(f), &claims) != nil || err != nil {
			// Not written by a store. Refusing is the safe reading: a
			// mark for every token of the user, as of now.
			claims, ms = nil, time.Now().UnixMilli()
		}
		out = append(out, store.Revocation{Claims: claims, At: time.UnixMilli(ms).UTC()})
	}
	return out, nil
}

// claimsField is the hash field of a tenant: the JSON of its claims, which
// encoding/json writes with sorted keys; "{}" for none.
func claimsField(c map[string]string) (string, error) {
	if len(c) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(c)
	return string(b), err
}

// EventsCurrent implements store.Store: true while the last heartbeat heard
// back on the subscription was sent less than store.CurrentWithin ago.
func (r *Redis) EventsCurrent(now int64) bool {
	return now-r.conn.proven.Load() < int64(store.CurrentWithin)
}
