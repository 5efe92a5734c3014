package redis

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/plugins/store"
)

// freezableRelay forwards TCP to a Redis server until frozen; frozen, it keeps
// every connection open but drops all bytes, as a network partition does.
type freezableRelay struct {
	l      net.Listener
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func startRelay(t *testing.T, target string) *freezableRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &freezableRelay{l: l}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, in, out)
			r.mu.Unlock()
			go r.pipe(out, in)
			go r.pipe(in, out)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
	return r
}

func (r *freezableRelay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

// TestSilentSubscriptionIsReplaced: when the subscription's connection goes
// silent without an error, caches are told to forget everything, and once the
// network is back a fresh subscription delivers events again.
func TestSilentSubscriptionIsReplaced(t *testing.T) {
	addr := startServer(t)
	relay := startRelay(t, addr)
	s := open(t, &Redis{URL: "redis://" + relay.l.Addr().String()})

	var flushed atomic.Int32
	logouts := make(chan string, 16)
	cancel := s.Subscribe(func(inv store.Invalidation) {
		switch {
		case inv.All:
			flushed.Add(1)
		case inv.SessionKey != "":
			select {
			case logouts <- inv.SessionKey:
			default:
			}
		}
	})
	defer cancel()
	direct := goredis.NewClient(&goredis.Options{Addr: addr})
	defer direct.Close()
	ctx := context.Background()

	// Live: a logout published by another instance arrives.
	waitEvent := func(key string, limit time.Duration) bool {
		deadline := time.After(limit)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case k := <-logouts:
				if k == key {
					return true
				}
			case <-tick.C:
				direct.Publish(ctx, "ssogate:events", "s:"+key)
			case <-deadline:
				return false
			}
		}
	}
	if !waitEvent("before", 5*time.Second) {
		t.Fatal("the subscription never delivered a logout")
	}

	relay.frozen.Store(true)
	before := flushed.Load()
	deadline := time.Now().Add(10 * time.Second) // three heartbeats, then a reconnect
	for flushed.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("a silent subscription was never reported as lost")
		}
		time.Sleep(50 * time.Millisecond)
	}

	relay.frozen.Store(false)
	if !waitEvent("after", 10*time.Second) {
		t.Fatal("no logout delivered after the network came back")
	}
}
