package redis

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func TestOptionsBoundAnOutage(t *testing.T) {
	for name, r := range map[string]*Redis{
		"url":      {URL: "redis://127.0.0.1:1/0"},
		"sentinel": {Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, MasterName: "m"},
		"cluster":  {Addrs: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, Cluster: true},
	} {
		o, err := r.options()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if o.DialTimeout != time.Second || o.ReadTimeout != 500*time.Millisecond || o.WriteTimeout != 500*time.Millisecond ||
			o.PoolTimeout != 1500*time.Millisecond || o.MaxRetries != 1 || o.DialerRetries != 1 || !o.ContextTimeoutEnabled {
			t.Errorf("%s: dial %v read %v write %v pool %v retries %d dial retries %d context timeouts %v; want 1s 500ms 500ms 1.5s 1 1 true",
				name, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled)
		}
	}
}

// A command against a server that cannot be reached dials twice (one attempt,
// one retry), not go-redis's default of five dials per attempt: that is what
// keeps a 503 within about two dial timeouts.
func TestOutageDialsTwicePerCommand(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens here now
	o, err := (&Redis{URL: "redis://" + dead + "/0"}).options()
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return new(net.Dialer).DialContext(ctx, network, addr)
	}
	c := goredis.NewUniversalClient(o)
	defer c.Close()
	if err := c.GetDel(context.Background(), "k").Err(); err == nil {
		t.Fatal("GETDEL against no server succeeded")
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials for one command, want 2", n)
	}
}
