package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// startPair runs a master and a replica of it, and returns their addresses
// once the master counts the replica as online: a WAIT on it has been
// acknowledged. (The replica reports its link up before the master has its
// first ACK, which can take a second; a WAIT in between counts 0.)
func startPair(t testing.TB) (master, replica string) {
	t.Helper()
	master = startServer(t, "--repl-diskless-sync-delay", "0")
	host, port, _ := strings.Cut(master, ":")
	replica = startServer(t, "--replicaof", host, port)
	c := goredis.NewClient(&goredis.Options{Addr: master})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := c.Do(context.Background(), "wait", 1, 200).Int()
		info, _ := c.Info(context.Background(), "replication").Result()
		if err == nil && n == 1 && strings.Contains(info, "state=online") {
			return master, replica
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not synced within 10s: %v %s", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// detachReplica makes the replica a master of its own and waits until the
// master has noticed that it has no replica left.
func detachReplica(t testing.TB, master string, rc *goredis.Client) {
	t.Helper()
	ctx := context.Background()
	if err := rc.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	mc := goredis.NewClient(&goredis.Options{Addr: master})
	defer mc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := mc.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "connected_slaves:0") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the master still counts a replica after 10s: %v %s", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConsumeWaitsForAReplica(t *testing.T) {
	master, replica := startPair(t)
	one := 1
	s := open(t, &Redis{URL: "redis://" + master + "/0", ConsumeReplicas: &one, ConsumeTimeout: caddy.Duration(2 * time.Second), ReadTimeout: caddy.Duration(4 * time.Second)})
	ctx := context.Background()
	rc := goredis.NewClient(&goredis.Options{Addr: replica})
	defer rc.Close()

	if err := s.AddToken(ctx, token.Hash("a"), store.Token{UserID: "u"}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeToken(ctx, token.Hash("a")); err != nil {
		t.Fatalf("TakeToken with a replica: %v", err)
	}
	// Acknowledged means applied: the replica no longer has it.
	if n, err := rc.Exists(ctx, "ssogate:tok:"+token.Hash("a")).Result(); err != nil || n != 0 {
		t.Fatalf("replica still has the taken token: %d %v", n, err)
	}
	if ok, err := s.UseOnce(ctx, "jti-1", time.Minute); !ok || err != nil {
		t.Fatalf("UseOnce with a replica = %v, %v", ok, err)
	}

	// The replica leaves: nothing can confirm any more.
	detachReplica(t, master, rc)
	if err := s.AddToken(ctx, token.Hash("b"), store.Token{UserID: "u"}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := s.TakeToken(ctx, token.Hash("b"))
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("TakeToken without a replica = %v, want ErrUnavailable (0 of 1 replicas)", err)
	}
	// Gone on the master all the same: if no failover brings it back, it
	// is spent; if one does, it is there to be taken once.
	if _, err := s.TakeToken(ctx, token.Hash("b")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second TakeToken = %v, want ErrNotFound", err)
	}
	if _, err := s.UseOnce(ctx, "jti-2", time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("UseOnce without a replica = %v, want ErrUnavailable", err)
	}
	// A jti used before needs no confirmation to be refused.
	if ok, err := s.UseOnce(ctx, "jti-1", time.Minute); ok || err != nil {
		t.Fatalf("UseOnce of a used jti = %v, %v; want false, nil", ok, err)
	}
}

func TestConsumeDefaults(t *testing.T) {
	zero, two := 0, 2
	for _, c := range []struct {
		name string
		r    *Redis
		want int
	}{
		{"standalone", &Redis{URL: "redis://127.0.0.1:1/0"}, 0},
		{"sentinel", &Redis{URL: "redis-sentinel://127.0.0.1:1/m"}, 1},
		{"cluster", &Redis{Addrs: []string{"127.0.0.1:1"}, Cluster: true}, -1},
		{"cluster seeds", &Redis{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, -1},
		{"sentinel off", &Redis{URL: "redis-sentinel://127.0.0.1:1/m", ConsumeReplicas: &zero}, 0},
		{"standalone two", &Redis{URL: "redis://127.0.0.1:1/0", ConsumeReplicas: &two}, 2},
	} {
		o, err := c.r.options()
		if err != nil {
			t.Fatal(err)
		}
		cf := newConfirm(c.r, o)
		if cf.fixed != c.want || cf.timeout != 250*time.Millisecond {
			t.Errorf("%s: replicas %d timeout %v; want %d 250ms", c.name, cf.fixed, cf.timeout, c.want)
		}
	}
}

func TestValidateConsume(t *testing.T) {
	neg, zero, one := -1, 0, 1
	const sentinel = "redis-sentinel://127.0.0.1:1/m"
	for _, r := range []*Redis{
		{URL: sentinel, ConsumeReplicas: &neg},
		{URL: sentinel, ConsumeTimeout: caddy.Duration(500 * time.Millisecond)},
		{URL: sentinel, ConsumeTimeout: caddy.Duration(300 * time.Millisecond), ReadTimeout: caddy.Duration(200 * time.Millisecond)},
		{URL: sentinel, ReadTimeout: caddy.Duration(50 * time.Millisecond)}, // the 250ms default
		{URL: "redis://127.0.0.1:1/0", ConsumeReplicas: &one, ReadTimeout: caddy.Duration(100 * time.Millisecond)},
	} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v validated", r)
		}
	}
	for _, r := range []*Redis{
		{URL: sentinel, ConsumeTimeout: caddy.Duration(400 * time.Millisecond)},
		{URL: sentinel, ConsumeReplicas: &zero, ReadTimeout: caddy.Duration(50 * time.Millisecond)},
		{URL: "redis://127.0.0.1:1/0", ReadTimeout: caddy.Duration(50 * time.Millisecond)}, // no wait on a standalone server
	} {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

func TestCaddyfileConsumeReplicas(t *testing.T) {
	var r Redis
	if err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser("redis redis://h:1/0 {\n consume_replicas 2 250ms\n}")); err != nil {
		t.Fatal(err)
	}
	if r.ConsumeReplicas == nil || *r.ConsumeReplicas != 2 || time.Duration(r.ConsumeTimeout) != 250*time.Millisecond {
		t.Fatalf("parsed %+v", r)
	}
	r = Redis{}
	if err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser("redis {\n consume_replicas 0\n}")); err != nil || r.ConsumeReplicas == nil || *r.ConsumeReplicas != 0 {
		t.Fatalf("consume_replicas 0: %+v %v", r, err)
	}
	for _, bad := range []string{
		"redis {\n consume_replicas\n}",
		"redis {\n consume_replicas x\n}",
		"redis {\n consume_replicas -1\n}",
		"redis {\n consume_replicas 1 soon\n}",
		"redis {\n consume_replicas 1 1s 2\n}",
	} {
		if err := new(Redis).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// A direct minter's record is held to token_ttl: a longer TTL, none at all,
// or an iat older than token_ttl is refused, and the record is gone.
func TestDirectTokenLife(t *testing.T) {
	addr := startServer(t)
	s := open(t, &Redis{URL: "redis://" + addr + "/0"})
	s.SetTokenTTL(30 * time.Second)
	ctx := context.Background()
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	now := time.Now().UTC()
	mint := func(name string, iat string, ttl time.Duration) string {
		rec, _ := json.Marshal(store.Token{UserID: "u", IssuedAt: iat})
		if err := rc.Set(ctx, "ssogate:tok:"+token.Hash(name), rec, ttl).Err(); err != nil {
			t.Fatal(err)
		}
		return token.Hash(name)
	}
	for _, c := range []struct {
		name string
		iat  string
		ttl  time.Duration
		ok   bool
	}{
		{"fresh", now.Format(time.RFC3339), 30 * time.Second, true},
		{"no iat", "", 20 * time.Second, true},
		{"unreadable iat", "yesterday", 20 * time.Second, true},
		{"iat one second back", now.Add(-time.Second).Format(time.RFC3339), 29 * time.Second, true},
		{"one hour TTL", now.Format(time.RFC3339), time.Hour, false},
		{"TTL above token_ttl", now.Format(time.RFC3339), 45 * time.Second, false},
		{"no TTL", now.Format(time.RFC3339), 0, false},
		{"nine days old", now.Add(-9 * 24 * time.Hour).Format(time.RFC3339), 30 * time.Second, false},
		{"older than token_ttl", now.Add(-40 * time.Second).Format(time.RFC3339), 30 * time.Second, false},
	} {
		key := mint(c.name, c.iat, c.ttl)
		_, err := s.TakeToken(ctx, key)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: TakeToken = %v, want ErrNotFound", c.name, err)
		}
		if n, _ := rc.Exists(ctx, "ssogate:tok:"+key).Result(); n != 0 {
			t.Errorf("%s: the record is still there", c.name)
		}
	}
	// Not told token_ttl: the largest token_ttl there is.
	s2 := open(t, &Redis{URL: "redis://" + addr + "/0", KeyPrefix: "ssogate:", ReadTimeout: caddy.Duration(400 * time.Millisecond)})
	if _, err := s2.TakeToken(ctx, mint("four minutes", "", 4*time.Minute)); err != nil {
		t.Errorf("4m TTL without SetTokenTTL: %v", err)
	}
	if _, err := s2.TakeToken(ctx, mint("six minutes", "", 6*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("6m TTL without SetTokenTTL: %v, want ErrNotFound", err)
	}
}

// A server that lost its script cache (a restart, a new master) runs the
// script anyway.
func TestTakeTokenAfterScriptFlush(t *testing.T) {
	addr := startServer(t)
	s := open(t, &Redis{URL: "redis://" + addr + "/0"})
	ctx := context.Background()
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	for i := range 3 {
		if err := rc.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		k := token.Hash("flushed" + strconv.Itoa(i))
		if err := s.AddToken(ctx, k, store.Token{UserID: "u"}, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, err := s.TakeToken(ctx, k); err != nil || got.UserID != "u" {
			t.Fatalf("TakeToken after SCRIPT FLUSH = %+v, %v", got, err)
		}
	}
}

func TestURLQueryOptions(t *testing.T) {
	r := &Redis{URL: "redis://127.0.0.1:1/0?pool_size=7&min_idle_conns=2&max_idle_conns=3&max_active_conns=9&conn_max_idle_time=30s&conn_max_lifetime=5m&client_name=gw&dial_timeout=2s&read_timeout=300ms&write_timeout=1"}
	o, err := r.options()
	if err != nil {
		t.Fatal(err)
	}
	if o.PoolSize != 7 || o.MinIdleConns != 2 || o.MaxIdleConns != 3 || o.MaxActiveConns != 9 || o.ConnMaxIdleTime != 30*time.Second ||
		o.ConnMaxLifetime != 5*time.Minute || o.ClientName != "gw" || o.DialTimeout != 2*time.Second || o.ReadTimeout != 300*time.Millisecond ||
		o.WriteTimeout != time.Second {
		t.Fatalf("options %+v", o)
	}
	// A field beats the URL.
	r.ReadTimeout = caddy.Duration(700 * time.Millisecond)
	if o, _ := r.options(); o.ReadTimeout != 700*time.Millisecond {
		t.Errorf("read_timeout field and URL: %v, want the field's 700ms", o.ReadTimeout)
	}
	if o, err := (&Redis{URL: "redis-sentinel://127.0.0.1:1/m?pool_size=4"}).options(); err != nil || o.PoolSize != 4 {
		t.Errorf("sentinel URL pool_size: %v %v", o, err)
	}
	for in, want := range map[string]string{
		"redis://h:1/0?bogus=1":                   `unknown query option "bogus"`,
		"redis://h:1/0?max_retries=5":             "retries once",
		"redis://h:1/0?pool_timeout=1s":           "dial_timeout + read_timeout",
		"redis://h:1/0?db=2":                      "in the path",
		"rediss://h:1/0?skip_verify=true":         "cannot be turned off",
		"redis://h:1/0?pool_size=x":               "pool_size",
		"redis://h:1/0?pool_size=1&pool_size=2":   "2 times",
		"redis://h:1/0?read_timeout=soon":         "read_timeout",
		"redis-sentinel://h:1/m?max_retries=3":    "retries once",
		"redis://:secret@h:1/0?nope=1":            `"nope"`,
		"redis-sentinel://h:1/m?pool_size=1&z=1":  `"z"`,
		"redis://h:1/0?conn_max_lifetime=-1s":     "conn_max_lifetime",
		"redis://h:1/0?min_idle_conns=-2":         "min_idle_conns",
		"redis://h:1/0?client_name=a&protocol=3":  "RESP2",
		"redis://h:1/0?max_active_conns=1&foo=":   `"foo"`,
		"redis://h:1/0?write_timeout=1s&dial_x=1": `"dial_x"`,
	} {
		_, err := (&Redis{URL: in}).options()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", in, err)
		}
	}
}

// BenchmarkTakeToken is one redeem's store work, with and without a
// replica's acknowledgement (one replica on loopback).
func BenchmarkTakeToken(b *testing.B) {
	for _, n := range []int{0, 1} {
		b.Run(fmt.Sprintf("consume_replicas=%d", n), func(b *testing.B) {
			master, _ := startPair(b)
			s := open(b, &Redis{URL: "redis://" + master + "/0", ConsumeReplicas: &n, ConsumeTimeout: caddy.Duration(400 * time.Millisecond)})
			ctx := context.Background()
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = token.Hash(token.New())
				if err := s.AddToken(ctx, keys[i], store.Token{UserID: "u"}, 30*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := s.TakeToken(ctx, keys[i]); err != nil {
					b.Fatal(err)
				}
				lat[i] = time.Since(start)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// waitReplicas confirms other writes the same way (for logouts and
// revocations).
func TestWaitReplicas(t *testing.T) {
	master, replica := startPair(t)
	one := 1
	s := open(t, &Redis{URL: "redis://" + master + "/0", ConsumeReplicas: &one, ConsumeTimeout: caddy.Duration(2 * time.Second), ReadTimeout: caddy.Duration(4 * time.Second)})
	ctx := context.Background()
	del := func(p goredis.Pipeliner) { p.Del(ctx, "ssogate:sess:x") }
	if err := s.waitReplicas(ctx, "delete session", "ssogate:sess:x", del); err != nil {
		t.Fatalf("with a replica: %v", err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: replica})
	defer rc.Close()
	detachReplica(t, master, rc)
	if err := s.waitReplicas(ctx, "delete session", "ssogate:sess:x", del); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("without a replica: %v, want ErrUnavailable", err)
	}
}

// An unknown URL option stops the config from loading.
func TestProvisionRefusesUnknownURLOption(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	r := &Redis{URL: "redis://127.0.0.1:1/0?pool_size=5&poolsize=5"}
	if err := r.Provision(ctx); err == nil || !strings.Contains(err.Error(), `unknown query option "poolsize"`) {
		t.Fatalf("Provision = %v, want the unknown option named", err)
	}
}
