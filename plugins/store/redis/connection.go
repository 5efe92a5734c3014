package redis

import (
	"context"
	"errors"
	"strings"
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
	key    string
	client goredis.UniversalClient
	subs   store.Subscribers
	pubsub *goredis.PubSub
	stop   context.CancelFunc
	done   chan struct{}
}

// connect returns the connection for key (the store's settings), making it with
// opts when no config has it yet.
func connect(key string, opts *goredis.UniversalOptions, channel string, logger *zap.Logger) (*connection, error) {
	val, _, err := connections.LoadOrNew(key, func() (caddy.Destructor, error) {
		ctx, stop := context.WithCancel(context.Background())
		c := &connection{key: key, client: goredis.NewUniversalClient(opts), stop: stop, done: make(chan struct{})}
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
	_ = c.pubsub.Close()
	<-c.done
	return c.client.Close()
}

// listen forwards invalidations until ctx ends. Whenever the subscription may
// have missed messages (it broke, or was just made again), subscribers are told
// to forget everything: a cache must never outlive a revocation it did not hear.
func (c *connection) listen(ctx context.Context, logger *zap.Logger) {
	defer close(c.done)
	ps := c.pubsub
	const heartbeat = time.Second
	broken := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, heartbeat)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var netErr interface{ Timeout() bool }
			if errors.As(err, &netErr) && netErr.Timeout() {
				// Quiet channel: make sure the connection is still alive.
				if err = ps.Ping(ctx); err == nil {
					continue
				}
			}
			if !broken {
				logger.Warn("session invalidation channel lost; in-memory session caches are flushed until it is back", zap.Error(err))
				broken = true
			}
			c.subs.Publish(store.Invalidation{All: true})
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
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

// Interface guard
var _ caddy.Destructor = (*connection)(nil)
