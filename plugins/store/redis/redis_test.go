package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
	"github.com/ssogate/ssogate/plugins/store/storetest"
)

// startServer runs a redis-server of the test's own on a free port, with
// extra arguments appended.
func startServer(t testing.TB, extra ...string) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (the README's test command installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	cmd.Args = append(cmd.Args, extra...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr
}

// open provisions a store the way Caddy would, minus the caddy.Context.
func open(t testing.TB, r *Redis) *Redis {
	t.Helper()
	opts, err := r.options()
	if err != nil {
		t.Fatal(err)
	}
	r.prefix = r.KeyPrefix
	if r.prefix == "" {
		r.prefix = "ssogate:"
	}
	r.events = r.prefix + "events"
	if r.conn, err = connect(r.poolKey(), opts, r.events, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	r.confirm = newConfirm(r, opts)
	t.Cleanup(func() {
		if err := r.Cleanup(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		addr := startServer(t)
		s := open(t, &Redis{URL: "redis://" + addr + "/0"})
		// A peer is another instance: its own client and subscription,
		// which different settings (a longer timeout) guarantee.
		return s, func() store.Store {
			return open(t, &Redis{URL: "redis://" + addr + "/0", ReadTimeout: 999_000_000})
		}
	})
}

func TestKeySchema(t *testing.T) {
	addr := startServer(t)
	s := open(t, &Redis{Addrs: []string{addr}, KeyPrefix: "gw1:"})
	ctx := context.Background()
	raw := token.New()
	// A direct minter's write, exactly as the README documents it.
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	if err := c.SetArgs(ctx, "gw1:tok:"+token.Hash(raw), `{"userId":"u9","claims":{"g":"x"},"future":1}`, goredis.SetArgs{Mode: "NX", TTL: 30 * time.Second}).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeToken(ctx, token.Hash(raw))
	if err != nil || got.UserID != "u9" || got.Claims["g"] != "x" {
		t.Fatalf("TakeToken of a directly minted token = %+v, %v", got, err)
	}

	sess := token.Hash(token.New())
	if err := s.AddSession(ctx, sess, store.Session{UserID: "u9", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, "gw1:sess:"+sess).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("session TTL = %v, want within the idle minute", ttl)
	}
	if ok := c.SIsMember(ctx, "gw1:user:"+token.Hash("u9"), sess).Val(); !ok {
		t.Fatal("session missing from the user index")
	}
	if ttl := c.PTTL(ctx, "gw1:user:"+token.Hash("u9")).Val(); ttl < 59*time.Minute {
		t.Fatalf("user index TTL = %v, want the session's absolute life", ttl)
	}
	keys := c.Keys(ctx, "*").Val()
	for _, k := range keys {
		if !strings.HasPrefix(k, "gw1:") {
			t.Fatalf("key %q outside the prefix", k)
		}
	}
}

func TestGarbageRecordsAreNotTokens(t *testing.T) {
	addr := startServer(t)
	s := open(t, &Redis{URL: "redis://" + addr})
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	for i, v := range []string{"not json", `{"claims":{}}`, `{"userId":""}`, `{"userId":"u","claims":{"a":1}}`} {
		k := token.Hash(fmt.Sprint("garbage", i))
		c.Set(ctx, "ssogate:tok:"+k, v, time.Minute)
		if _, err := s.TakeToken(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("record %q: TakeToken = %v, want ErrNotFound", v, err)
		}
		if c.Exists(ctx, "ssogate:tok:"+k).Val() != 0 {
			t.Errorf("record %q: still stored after a failed redemption", v)
		}
	}
}

func TestUnreachableFailsFastAsUnavailable(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	s := open(t, &Redis{URL: "redis://" + addr, DialTimeout: 200_000_000})
	start := time.Now()
	_, err := s.TakeToken(context.Background(), token.Hash("x"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("TakeToken with Redis down = %v, want ErrUnavailable", err)
	}
	if _, err := s.Session(context.Background(), token.Hash("x"), time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Session with Redis down = %v, want ErrUnavailable", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping with Redis down = %v, want ErrUnavailable", err)
	}
	t.Logf("failed in %v", time.Since(start))
}

func TestParseURL(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{in: "redis://127.0.0.1:6379/2", want: "addrs=[127.0.0.1:6379] db=2 master= tls=false"},
		{in: "rediss://u:p@h:6380", want: "addrs=[h:6380] db=0 master= tls=true user=u pass=p"},
		{in: "redis-sentinel://a:26379,b:26380/mymaster/1", want: "addrs=[a:26379 b:26380] db=1 master=mymaster tls=false"},
		{in: "redis-sentinel://:pw@a/m", want: "addrs=[a:26379] db=0 master=m tls=false pass=pw"},
		{in: "redis-sentinel://a:1/", err: "must name the master"},
		{in: "redis-sentinel://a:1/m/x", err: "not a number"},
		{in: "http://h", err: "scheme"},
		{in: "redis://h/notadb", err: "invalid"},
	}
	for _, c := range cases {
		o, err := parseURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseURL(%q) error = %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseURL(%q): %v", c.in, err)
			continue
		}
		got := fmt.Sprintf("addrs=%v db=%d master=%s tls=%v", o.Addrs, o.DB, o.MasterName, o.TLSConfig != nil)
		if o.Username != "" {
			got += " user=" + o.Username
		}
		if o.Password != "" {
			got += " pass=" + o.Password
		}
		if got != c.want {
			t.Errorf("parseURL(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	var r Redis
	d := caddyfile.NewTestDispenser(`redis redis://127.0.0.1:6379/0 {
		addrs 10.0.0.1:26379 10.0.0.2:26379
		master_name mymaster
		password secret
		key_prefix gw:
		read_timeout 250ms
		tls
	}`)
	if err := r.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if r.URL != "redis://127.0.0.1:6379/0" || len(r.Addrs) != 2 || r.MasterName != "mymaster" || r.Password != "secret" ||
		r.KeyPrefix != "gw:" || time.Duration(r.ReadTimeout) != 250*time.Millisecond || !r.TLS {
		t.Fatalf("parsed %+v", r)
	}
	for _, bad := range []string{
		"redis a b",
		"redis {\n bogus\n}",
		"redis {\n db x\n}",
		"redis {\n cluster yes\n}",
		"redis {\n read_timeout soon\n}",
	} {
		if err := new(Redis).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
	if err := (&Redis{MasterName: "m", Cluster: true}).Validate(); err == nil {
		t.Error("Sentinel and Cluster together validated")
	}
}
