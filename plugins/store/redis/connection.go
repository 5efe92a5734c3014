package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// logouts and revocations into invalidations, and proves that it is current.
//
// Proof of currency: every heartbeatEvery the connection PUBLISHes the time
// on a channel of its own (<events>:heartbeat:<random id>), to which its
// subscription listens besides the events channel. Redis delivers a
// subscriber's messages in the order it executed the PUBLISHes, so hearing
// back a heartbeat sent at time t proves that every event published before t
// has been heard. proven holds the latest such t; the store is current while
// it is younger than store.CurrentWithin. A link that goes silent (a
// partition that drops packets without resetting anything) thus stops the
// caches within that bound, long before the subscription is found lost.
type connection struct {
	key     string
	channel string
	beat    string // this connection's heartbeat channel
	client  goredis.UniversalClient
	subs    store.Subscribers
	stop    context.CancelFunc
	done    chan struct{}

	// logger is the one of the config provisioned last, so that a reload
	// that changes logging takes effect on a kept connection.
	logger atomic.Pointer[zap.Logger]
	// proven is the send time (unix nanoseconds) of the last heartbeat
	// heard back on the subscription.
	proven atomic.Int64

	mu     sync.Mutex // guards pubsub, which listen replaces when it goes silent
	pubsub *goredis.PubSub
}

// connect returns the connection for key (the store's settings), making it with
// opts when no config has it yet, and makes logger its logger.
func connect(key string, opts *goredis.UniversalOptions, channel string, logger *zap.Logger) (*connection, error) {
	if err := holdRouter(); err != nil {
		return nil, err
	}
	val, _, err := connections.LoadOrNew(key, func() (caddy.Destructor, error) {
		var id [8]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, err
		}
		ctx, stop := context.WithCancel(context.Background())
		c := &connection{
			key:     key,
			channel: channel,
			beat:    channel + ":heartbeat:" + hex.EncodeToString(id[:]),
			client:  goredis.NewUniversalClient(opts),
			stop:    stop,
			done:    make(chan struct{}),
		}
		c.logger.Store(logger)
		c.client.AddHook(clientHook{c})
		ctx = context.WithValue(ctx, connKey{}, c)
		c.pubsub = c.client.Subscribe(ctx, c.channel, c.beat)
		go c.listen(ctx)
		go c.heartbeat(ctx)
		return c, nil
	})
	if err != nil {
		_ = releaseRouter()
		return nil, err
	}
	c := val.(*connection)
	c.logger.Store(logger)
	return c, nil
}

func (c *connection) release() error {
	_, err := connections.Delete(c.key)
	if rerr := releaseRouter(); err == nil {
		err = rerr
	}
	return err
}

// Destruct implements caddy.Destructor.
func (c *connection) Destruct() error {
	c.stop()
	// Closing the subscription ends a receive that would otherwise wait
	// out its timeout.
	c.mu.Lock()
	_ = c.pubsub.Close()
	c.mu.Unlock()
	<-c.done
	return c.client.Close()
}

// heartbeatEvery is how often the connection proves it is current, well
// inside store.CurrentWithin so that a late heartbeat or two under load does
// not turn the caches off; lostAfter is how long without a heartbeat heard
// back means the subscription is dead even though no error says so (go-redis
// only reconnects on an error, so a silent connection has to be replaced).
const (
	heartbeatEvery = 100 * time.Millisecond
	lostAfter      = time.Second
)

// heartbeat publishes the time on the heartbeat channel until ctx ends.
func (c *connection) heartbeat(ctx context.Context) {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// Errors show in the missing proof; the outage itself is
			// logged by the listener and by the handler's store watch.
			_ = c.client.Publish(ctx, c.beat, strconv.FormatInt(time.Now().UnixNano(), 10)).Err()
		}
	}
}

// listen forwards invalidations and heartbeats until ctx ends. Whenever the
// subscription may have missed messages (it broke, went silent, or was just
// made again), subscribers are told to forget everything: a cache must never
// outlive a revocation it did not hear.
func (c *connection) listen(ctx context.Context) {
	defer close(c.done)
	c.mu.Lock()
	ps := c.pubsub
	c.mu.Unlock()
	broken := false
	since := time.Now() // the subscription's start, or its last heartbeat
	for {
		msg, err := ps.ReceiveTimeout(ctx, 2*heartbeatEvery)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			silent := false
			var netErr interface{ Timeout() bool }
			if errors.As(err, &netErr) && netErr.Timeout() {
				if time.Since(since) < lostAfter {
					continue
				}
				silent = true
				err = fmt.Errorf("no heartbeat heard back for %s", lostAfter)
			}
			if !broken {
				c.logger.Load().Warn("session invalidation channel lost; in-memory session caches are flushed until it is back", zap.Error(err))
				broken = true
			}
			c.subs.Publish(store.Invalidation{All: true})
			if silent {
				ps, since = c.resubscribe(ctx), time.Now()
			}
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
				c.logger.Load().Info("session invalidation channel back")
				broken = false
			}
			c.subs.Publish(store.Invalidation{All: true})
		case *goredis.Message:
			if m.Channel == c.beat {
				if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && sent > c.proven.Load() {
					c.proven.Store(sent)
					since = time.Now()
				}
			} else if k, ok := strings.CutPrefix(m.Payload, "s:"); ok {
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
	c.pubsub = c.client.Subscribe(ctx, c.channel, c.beat)
	return c.pubsub
}

// Interface guard
var _ caddy.Destructor = (*connection)(nil)
