package redis

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// A reload keeps the connection but must bring its own logger: the
// connection's lines go to the config provisioned last.
func TestConnectionTakesTheNewConfigsLogger(t *testing.T) {
	addr := startServer(t)
	first := open(t, &Redis{URL: "redis://" + addr})
	core, logs := observer.New(zap.InfoLevel)
	r := &Redis{URL: "redis://" + addr}
	opts, err := r.options()
	if err != nil {
		t.Fatal(err)
	}
	second, err := connect(r.poolKey(), opts, "ssogate:events", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer second.release()
	if second != first.conn {
		t.Fatal("equal settings got a connection of their own")
	}
	second.logger.Load().Info("probe")
	if logs.Len() != 1 {
		t.Fatal("the kept connection still logs to the first config's logger")
	}
}

// EventsCurrent holds while heartbeats come back, and stops within
// store.CurrentWithin of the last one heard.
func TestEventsCurrentFollowsHeartbeats(t *testing.T) {
	addr := startServer(t)
	relay := startRelay(t, addr)
	s := open(t, &Redis{URL: "redis://" + relay.l.Addr().String()})
	deadline := time.Now().Add(5 * time.Second)
	for !s.EventsCurrent(time.Now().UnixNano()) {
		if time.Now().After(deadline) {
			t.Fatal("never current")
		}
		time.Sleep(20 * time.Millisecond)
	}
	relay.frozen.Store(true)
	frozen := time.Now()
	for s.EventsCurrent(time.Now().UnixNano()) {
		if time.Since(frozen) > 2*time.Second {
			t.Fatal("still current 2s after the link froze")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("not current %v after the freeze", time.Since(frozen))
}

// go-redis's lines about a store's client go to that store's logger, at
// debug level, instead of stderr.
func TestGoRedisLinesGoToTheStoresLogger(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	core, logs := observer.New(zap.DebugLevel)
	r := open(t, &Redis{URL: "redis://" + addr, DialTimeout: 200_000_000})
	r.conn.logger.Store(zap.New(core)) // as a config provisioned with it would
	if _, err := r.TakeToken(context.Background(), token.Hash("x")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("TakeToken with Redis down = %v, want ErrUnavailable", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("go-redis").FilterFieldKey("message").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("go-redis's failed dial never reached the store's logger")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, e := range logs.FilterMessage("go-redis").All() {
		if e.Level != zap.DebugLevel {
			t.Fatalf("go-redis line at %v, want debug", e.Level)
		}
	}
}
