package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/plugins/store"
)

// connections shares clients between configs, keyed by their settings, so a
// reload keeps its connection pool and its pub/sub subscription.
var connections = caddy.NewUsagePool()

// connection is one client and the subscription that turns other instances'
// logouts and revocations into invalidations.
type connection struct {
	key     string
	channel string
	client  goredis.UniversalClient
	subs    store.Subscribers
	stop    context.CancelFunc
	done    chan struct{}

	mu     sync.Mutex // guards pubsub, which listen replaces when it goes silent
	pubsub *goredis.PubSub
}

// connect returns the connection for key (the store's settings), making it with
// opts when no config has it yet.
func connect(key string, opts *goredis.UniversalOptions, channel string, logger *zap.Logger) (*connection, error) {
	val, _, err := connections.LoadOrNew(key, func() (caddy.Destructor, error) {
		ctx, stop := context.WithCancel(context.Background())
		c := &connection{key: key, channel: channel, client: goredis.NewUniversalClient(opts), stop: stop, done: make(chan struct{})}
		c.pubsub = c.client.Subscribe(ctx, channel)
		go c.listen(ctx, logger)
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*connection), nil
}

func (c *connection) release() error {
	_, err := connections.Delete(c.key)
	return err
}

// Destruct implements caddy.Destructor.
func (c *connection) Destruct() error {
	c.stop()
	// Closing the subscription ends a receive that would otherwise wait
	// out its heartbeat.
	c.mu.Lock()
	_ = c.pubsub.Close()
	c.mu.Unlock()
	<-c.done
	return c.client.Close()
}

// heartbeat is how long the subscription may stay quiet before it is pinged;
// silentLimit is how many quiet heartbeats in a row, pings unanswered, mean the
// connection is dead even though no error says so (a partition drops packets
// without resetting anything).
const (
	heartbeat   = time.Second
	silentLimit = 3
)

// listen forwards invalidations until ctx ends. Whenever the subscription may
// have missed messages (it broke, went silent, or was just made again),
// subscribers are told to forget everything: a cache must never outlive a
// revocation it did not hear.
func (c *connection) listen(ctx context.Context, logger *zap.Logger) {
	defer close(c.done)
	c.mu.Lock()
	ps := c.pubsub
	c.mu.Unlock()
	broken := false
	silent := 0
	for {
		msg, err := ps.ReceiveTimeout(ctx, heartbeat)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var netErr interface{ Timeout() bool }
			if errors.As(err, &netErr) && netErr.Timeout() {
				silent++
				if silent < silentLimit {
					// Quiet channel: the PONG, or anything, resets silent.
					if err = ps.Ping(ctx); err == nil {
						continue
					}
				} else {
					err = fmt.Errorf("no reply to pings for %s", silentLimit*heartbeat)
				}
			}
			if !broken {
				logger.Warn("session invalidation channel lost; in-memory session caches are flushed until it is back", zap.Error(err))
				broken = true
			}
			c.subs.Publish(store.Invalidation{All: true})
			if silent >= silentLimit {
				// go-redis only reconnects on an error; a silent
				// connection has to be replaced.
				ps, silent = c.resubscribe(ctx), 0
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		silent = 0
		switch m := msg.(type) {
		case *goredis.Subscription:
			if broken {
				logger.Info("session invalidation channel back")
				broken = false
			}
			c.subs.Publish(store.Invalidation{All: true})
		case *goredis.Message:
			if k, ok := strings.CutPrefix(m.Payload, "s:"); ok {
				c.subs.Publish(store.Invalidation{SessionKey: k})
			} else if u, ok := strings.CutPrefix(m.Payload, "u:"); ok {
				c.subs.Publish(store.Invalidation{UserID: u})
			}
		}
	}
}

// resubscribe closes the subscription and makes a new one on a new connection.
func (c *connection) resubscribe(ctx context.Context) *goredis.PubSub {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx.Err() != nil {
		return c.pubsub // Destruct is closing it
	}
	_ = c.pubsub.Close()
	c.pubsub = c.client.Subscribe(ctx, c.channel)
	return c.pubsub
}

// Interface guard
var _ caddy.Destructor = (*connection)(nil)
