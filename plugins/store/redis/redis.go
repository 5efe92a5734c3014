// Package redis is the ssogate store for any number of gateway instances:
// standalone Redis, Sentinel or Cluster through go-redis's UniversalClient.
//
// Key schema (part of the contract; see the README for direct minting):
//
//	<prefix>tok:<sha256hex(token)>   token JSON, TTL ≤ token_ttl, taken with GETDEL
//	<prefix>jti:<jti>                "1", until a signed token's exp (SET NX)
//	<prefix>sess:<sha256hex(id)>     session JSON, TTL = idle expiry (GETEX)
//	<prefix>user:<sha256hex(userId)> set of session hashes, for listing and revocation,
//	                                 TTL ≥ the longest-lived session's
//	<prefix>sid:<handle>             session hash of a public handle (store.SessionHandle)
//	<prefix>revoked:<sha256hex(userId)> hash: JSON of a tenant's claims → unix ms of its
//	                                 last revocation ("revoked before" marks), TTL ≥ token_ttl
//	<prefix>events                   pub/sub channel: "s:<hash>" logout, "u:<userId>" revocation
//	<prefix>events:heartbeat:<id>    pub/sub channel of one instance's freshness heartbeats
//
// Every operation that must be atomic touches a single key (GETDEL, SET NX,
// GETEX), so the schema works unchanged on Cluster, where multi-key operations
// would need every key in one slot; the keys carry no hash tags, and are
// exactly the names above. A session, its user index and a logout's event are
// written with a plain pipeline (no MULTI), which go-redis's cluster client
// splits by slot and sends to each node; only the session record itself must
// be whole. Events use classic PUBLISH, which a Cluster forwards to every
// node, so an instance hears them whichever node it subscribed on.
//
// With Sentinel, go-redis asks the sentinels for the master and follows their
// +switch-master announcements, so a failover needs no restart: requests that
// meet the old master fail closed (503) until the new one answers.
//
// Timeouts are short on purpose (dial 1s, read and write 500ms, one dial per
// attempt, one retry): when Redis is gone the gateway must say so within about
// two seconds at worst, not hold every request and its connection.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

func init() {
	caddy.RegisterModule(Redis{})
}

// Redis keeps tokens and sessions in Redis, shared by every gateway instance
// that uses the same server and key prefix. When Redis cannot be reached, every
// operation fails with store.ErrUnavailable within the configured timeouts, and
// the gateway fails closed.
type Redis struct {
	// A redis://, rediss:// (TLS) or redis-sentinel:// URL. The sentinel
	// form is redis-sentinel://[user:password@]host:port[,host:port…]/<master name>[/<db>].
	// Fields set below override what the URL says.
	URL string `json:"url,omitempty"`
	// Addresses (host:port) of the servers: one for a standalone server,
	// several for Cluster seeds, or the sentinels when master_name is set.
	Addrs []string `json:"addrs,omitempty"`
	// The Sentinel master name. Setting it selects Sentinel.
	MasterName string `json:"master_name,omitempty"`
	// Selects Cluster even with a single address (a configuration endpoint).
	Cluster bool `json:"cluster,omitempty"`
	// ACL username and password of the Redis servers.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Password of the sentinels, if they have one of their own.
	SentinelPassword string `json:"sentinel_password,omitempty"`
	// Database number (standalone and Sentinel only). Default: 0.
	DB int `json:"db,omitempty"`
	// Connect with TLS, as rediss:// does.
	TLS bool `json:"tls,omitempty"`
	// Prefix of every key and of the pub/sub channel. Default: "ssogate:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// How long to wait to connect, and for a reply. A redeem or a session
	// check answers 503 at once when Redis refuses connections, and within
	// about two dial timeouts when its host does not answer at all.
	// Defaults: 1s, 500ms, 500ms.
	DialTimeout  caddy.Duration `json:"dial_timeout,omitempty"`
	ReadTimeout  caddy.Duration `json:"read_timeout,omitempty"`
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	// How many replicas must acknowledge a consumed token (WAIT) before its
	// redeem succeeds: the deletion of an opaque token, or the used-mark of
	// a signed token's jti. With fewer in time (consume_timeout) the redeem
	// answers 503 and creates no session, and a failover cannot bring the
	// token back for a second sign-in. 0 turns the wait off.
	// Default: 0 on a standalone server; 1 with Sentinel; with Cluster, 1 on
	// the shards that have replicas and 0 on those that have none.
	ConsumeReplicas *int `json:"consume_replicas,omitempty"`
	// How long a redeem waits for those acknowledgements. It must be shorter
	// than read_timeout. Default: 250ms.
	ConsumeTimeout caddy.Duration `json:"consume_timeout,omitempty"`

	conn   *connection
	prefix string
	events string

	confirm *confirm // wait.go
	// tokenTTL is the handler's token_ttl (SetTokenTTL): a direct token
	// living longer is refused. Zero: maxTokenTTL.
	tokenTTL time.Duration
}

// CaddyModule returns the Caddy module information.
func (Redis) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ssogate.stores.redis",
		New: func() caddy.Module { return new(Redis) },
	}
}

// Provision connects, or reuses the connection of an earlier config with the
// same settings, so a reload keeps its pool and its subscription.
func (r *Redis) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	r.URL = repl.ReplaceKnown(r.URL, "")
	r.Password = repl.ReplaceKnown(r.Password, "")
	r.SentinelPassword = repl.ReplaceKnown(r.SentinelPassword, "")
	opts, err := r.options()
	if err != nil {
		return err
	}
	r.prefix = r.KeyPrefix
	if r.prefix == "" {
		r.prefix = "ssogate:"
	}
	r.events = r.prefix + "events"
	conn, err := connect(r.poolKey(), opts, r.events, ctx.Logger())
	if err != nil {
		return err
	}
	r.conn = conn
	r.confirm = newConfirm(r, opts)
	return nil
}

// Validate checks that the settings describe one kind of deployment.
func (r *Redis) Validate() error {
	if r.MasterName != "" && r.Cluster {
		return errors.New("redis store: master_name (Sentinel) and cluster exclude each other")
	}
	if r.DB != 0 && r.Cluster {
		return errors.New("redis store: Cluster has no database numbers")
	}
	return r.validateConsume()
}

// Cleanup lets go of the connection; the last config using it closes it.
func (r *Redis) Cleanup() error {
	if r.conn == nil {
		return nil
	}
	return r.conn.release()
}

// poolKey identifies the settings: configs with equal settings share a client.
func (r *Redis) poolKey() string {
	b, _ := json.Marshal(r) // only strings, numbers and bools: cannot fail
	return string(b)
}

func (r *Redis) key(kind, id string) string { return r.prefix + kind + ":" + id }

// AddToken implements store.Store.
func (r *Redis) AddToken(ctx context.Context, key string, t store.Token, ttl time.Duration) error {
	val, err := json.Marshal(t)
	if err != nil {
		return err
	}
	ok, err := r.conn.client.SetNX(ctx, r.key("tok", key), val, ttl).Result()
	if err != nil {
		r.reloadOnError(err)
		return store.Unavailable("add token", err)
	}
	if !ok {
		return store.ErrExists
	}
	return nil
}

// TakeToken implements store.Store with one script on the token's key (GET,
// PTTL, DEL): of any number of instances asking at once, exactly one gets
// the token, and with it the TTL it had left, which holds direct minters to
// token_ttl (see direct.go). The deletion is confirmed by replicas (WAIT)
// before the token is returned; see wait.go.
func (r *Redis) TakeToken(ctx context.Context, key string) (store.Token, error) {
	k := r.key("tok", key)
	var take *goredis.Cmd
	want, got, err := r.consumeOn(ctx, k, func(p goredis.Pipeliner) {
		take = p.EvalSha(ctx, takeScript.Hash(), []string{k})
	})
	if err == nil && isNoScript(take.Err()) {
		// A node that has not seen the script yet (a new master, a
		// restart): nothing ran. EVAL runs it and caches it there.
		want, got, err = r.consumeOn(ctx, k, func(p goredis.Pipeliner) {
			take = p.Eval(ctx, takeSource, []string{k})
		})
	}
	if err != nil {
		return store.Token{}, store.Unavailable("take token", err)
	}
	val, left, err := takeResult(take)
	if errors.Is(err, goredis.Nil) {
		return store.Token{}, store.ErrNotFound
	}
	if err != nil {
		r.reloadOnError(err)
		return store.Token{}, store.Unavailable("take token", err)
	}
	if got < want {
		return store.Token{}, unconfirmed("take token", want, got, r.confirm.timeout)
	}
	var t store.Token
	if err := json.Unmarshal(val, &t); err != nil || t.UserID == "" {
		// A record nobody can use is the same as none; it is gone now.
		return store.Token{}, store.ErrNotFound
	}
	if err := r.checkLife(t, left, time.Now()); err != nil {
		return store.Token{}, err
	}
	return t, nil
}

// UseOnce implements store.Store with SET NX, confirmed by replicas (WAIT)
// when it marks a jti used for the first time.
func (r *Redis) UseOnce(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	k := r.key("jti", id)
	var set *goredis.BoolCmd
	want, got, err := r.consumeOn(ctx, k, func(p goredis.Pipeliner) {
		set = p.SetNX(ctx, k, "1", ttl)
	})
	if err == nil {
		err = set.Err()
	}
	if err != nil {
		r.reloadOnError(err)
		return false, store.Unavailable("use once", err)
	}
	if !set.Val() {
		return false, nil // used before: nothing of ours to confirm
	}
	if got < want {
		return false, unconfirmed("use once", want, got, r.confirm.timeout)
	}
	return true, nil
}

// AddSession implements store.Store. The user index and the handle are kept
// as long as the session can live at most; the index's TTL is only ever
// extended (see extendIndex), so a session created under a shorter
// session_ttl cannot make the index expire before an older, longer session.
// Entries of ended sessions are pruned on listing and revocation.
func (r *Redis) AddSession(ctx context.Context, key string, s store.Session, idle time.Duration) error {
	val, err := json.Marshal(s)
	if err != nil {
		return err
	}
	userKey := r.key("user", token.Hash(s.UserID))
	life := time.Until(s.ExpiresAt)
	if life < idle {
		life = idle
	}
	// A plain pipeline, not a transaction: the keys live in different Cluster
	// slots, and only the session record itself needs to be whole.
	_, err = r.conn.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, r.key("sess", key), val, idle)
		p.Eval(ctx, extendIndex, []string{userKey}, key, life.Milliseconds())
		p.Set(ctx, r.key("sid", store.SessionHandle(key)), key, life)
		return nil
	})
	if err != nil {
		return store.Unavailable("add session", err)
	}
	return nil
}

// Session implements store.Store with GETEX, reading and touching in one command.
func (r *Redis) Session(ctx context.Context, key string, idle time.Duration) (store.Session, error) {
	var cmd *goredis.StringCmd
	if idle > 0 {
		cmd = r.conn.client.GetEx(ctx, r.key("sess", key), idle)
	} else {
		cmd = r.conn.client.Get(ctx, r.key("sess", key))
	}
	val, err := cmd.Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.Session{}, store.ErrNotFound
	}
	if err != nil {
		return store.Session{}, store.Unavailable("get session", err)
	}
	var s store.Session
	if err := json.Unmarshal(val, &s); err != nil || s.UserID == "" {
		return store.Session{}, store.ErrNotFound
	}
	return s, nil
}

// DeleteSession implements store.Store.
func (r *Redis) DeleteSession(ctx context.Context, key string) error {
	_, err := r.conn.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, r.key("sess", key))
		p.Del(ctx, r.key("sid", store.SessionHandle(key)))
		p.Publish(ctx, r.events, "s:"+key)
		return nil
	})
	if err != nil {
		return store.Unavailable("delete session", err)
	}
	return nil
}

// RevokeUser implements store.Store. Only the index entries read here are
// removed, so a session created while this runs is not forgotten by the index.
func (r *Redis) RevokeUser(ctx context.Context, userID string) (int, error) {
	userKey := r.key("user", token.Hash(userID))
	members, err := r.conn.client.SMembers(ctx, userKey).Result()
	if err != nil {
		return 0, store.Unavailable("revoke: read index", err)
	}
	var dels []*goredis.IntCmd
	_, err = r.conn.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, m := range members {
			dels = append(dels, p.Del(ctx, r.key("sess", m)))
			p.Del(ctx, r.key("sid", store.SessionHandle(m)))
		}
		if len(members) > 0 {
			p.SRem(ctx, userKey, members)
		}
		p.Publish(ctx, r.events, "u:"+userID)
		return nil
	})
	if err != nil {
		return 0, store.Unavailable("revoke", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

// Ping implements store.Store with PING, one round trip to the server (the
// master, with Sentinel; a node, with Cluster).
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.conn.client.Ping(ctx).Err(); err != nil {
		return store.Unavailable("ping", err)
	}
	return nil
}

// Subscribe implements store.Store.
func (r *Redis) Subscribe(fn func(store.Invalidation)) func() {
	return r.conn.subs.Add(fn)
}

// Interface guards
var (
	_ store.Store        = (*Redis)(nil)
	_ caddy.Provisioner  = (*Redis)(nil)
	_ caddy.Validator    = (*Redis)(nil)
	_ caddy.CleanerUpper = (*Redis)(nil)
)
