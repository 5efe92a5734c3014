package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/plugins/store"
)

// Exactly once through a failover.
//
// Redis replicates asynchronously: a master acknowledges a GETDEL before any
// replica has it. If the master then dies, the replica promoted in its place
// still holds the token, and the same link signs in a second time. So a
// command that consumes something (the GETDEL of an opaque token, the SET NX
// of a signed token's jti) is followed, on the same connection to the same
// node, by WAIT <n> <timeout>: the redeem succeeds only once n replicas have
// acknowledged everything the connection wrote. Fewer in time is an error
// wrapping store.ErrUnavailable (the gateway answers 503 and creates no
// session); the token is gone on the master, and if a failover brings it
// back, it can be consumed exactly once there.
//
// How many replicas (consume_replicas, when not set):
//   - standalone: 0. There is nothing to fail over to.
//   - Sentinel: 1. A Sentinel deployment exists to promote a replica; if no
//     replica acknowledges, none can safely be promoted either.
//   - Cluster: 1 on a shard that lists a replica in CLUSTER SHARDS, 0 on a
//     shard that has none (it cannot fail over). The topology, not the live
//     connected_slaves count, decides: a replica whose link is cut is still
//     listed, so losing the link does not lower the bar at the very moment
//     the hole opens. The topology is re-read at most every topologyTTL.

// Defaults of the confirmation.
const (
	defaultConsumeTimeout = 250 * time.Millisecond
	topologyTTL           = 2 * time.Second
)

// confirm holds what the store needs to confirm a consumption.
type confirm struct {
	timeout time.Duration
	fixed   int // replicas to wait for; -1: per shard (Cluster default)
	topo    topology
}

// newConfirm works out the confirmation from the settings and the options
// the client is made with.
func newConfirm(r *Redis, o *goredis.UniversalOptions) *confirm {
	c := &confirm{timeout: time.Duration(r.ConsumeTimeout)}
	if c.timeout <= 0 {
		c.timeout = defaultConsumeTimeout
	}
	switch {
	case r.ConsumeReplicas != nil:
		c.fixed = *r.ConsumeReplicas
	case o.MasterName != "":
		c.fixed = 1 // Sentinel
	case o.IsClusterMode || len(o.Addrs) > 1:
		c.fixed = -1 // Cluster: per shard
	}
	return c
}

// validateConsume checks consume_replicas and consume_timeout.
func (r *Redis) validateConsume() error {
	if r.ConsumeReplicas != nil && *r.ConsumeReplicas < 0 {
		return fmt.Errorf("redis store: consume_replicas %d: want 0 or more", *r.ConsumeReplicas)
	}
	if r.ConsumeTimeout < 0 {
		return fmt.Errorf("redis store: consume_timeout %s: want a positive duration", time.Duration(r.ConsumeTimeout))
	}
	o, err := r.options()
	if err != nil {
		return err
	}
	if c := newConfirm(r, o); c.fixed != 0 && c.timeout >= o.ReadTimeout {
		return fmt.Errorf("redis store: consume_replicas timeout %s: must be shorter than read_timeout (%s), or the client gives up first", c.timeout, o.ReadTimeout)
	}
	return nil
}

// consumeOn runs the commands queue adds, then WAIT for the replicas the
// node owning key needs, in one pipeline on one connection of that node. The
// caller reads its own commands' results; consumeOn returns how many
// replicas were wanted and how many acknowledged, or the error of the WAIT
// (which a broken connection gives every command of the pipeline).
func (r *Redis) consumeOn(ctx context.Context, key string, queue func(p goredis.Pipeliner)) (want, got int, err error) {
	c := r.confirm
	node := goredis.Cmdable(r.conn.client)
	addr := ""
	if cc, ok := r.conn.client.(*goredis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			cc.ReloadState(ctx)
			return 0, 0, err
		}
		node, addr = m, m.Options().Addr
	}
	want = c.fixed
	if want < 0 {
		want = min(1, c.topo.replicas(ctx, r.conn.client, addr))
	}
	var wait *goredis.Cmd
	// Errors are in the commands; the caller reads its own.
	_, _ = node.Pipelined(ctx, func(p goredis.Pipeliner) error {
		queue(p)
		if want > 0 {
			wait = p.Do(ctx, "wait", want, c.timeout.Milliseconds())
		}
		return nil
	})
	if wait == nil {
		return 0, 0, nil
	}
	if err := wait.Err(); err != nil {
		r.reloadOnError(err)
		return want, 0, err
	}
	n, err := wait.Int()
	return want, n, err
}

// reloadOnError makes a Cluster client re-read the slot map after an error:
// go-redis otherwise keeps sending a dead master's slots to it until its
// periodic reload (every 60 s), so a failover would cost a minute of 503s.
// The session operations can call it for the same reason.
func (r *Redis) reloadOnError(err error) {
	if err == nil || errors.Is(err, goredis.Nil) {
		return
	}
	if cc, ok := r.conn.client.(*goredis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// unconfirmed is the error of a consumption fewer replicas acknowledged than
// wanted.
func unconfirmed(op string, want, got int, timeout time.Duration) error {
	return store.Unavailable(op, fmt.Errorf("%d of %d replicas acknowledged within %s (WAIT)", got, want, timeout))
}

// topology is how many replicas each Cluster master has, from CLUSTER
// SHARDS, re-read in the background when older than topologyTTL.
type topology struct {
	mu       sync.Mutex
	byMaster map[string]int // host:port of a master → its replicas
	read     time.Time
	busy     atomic.Bool
}

// replicas returns how many replicas master has. Unknown (no answer yet, or
// a master the last read did not list) counts as 1: a redeem that cannot be
// confirmed answers 503, one that is wrongly left unconfirmed could sign in
// twice.
func (t *topology) replicas(ctx context.Context, client goredis.UniversalClient, master string) int {
	t.mu.Lock()
	n, known := t.byMaster[master]
	age := time.Since(t.read)
	t.mu.Unlock()
	switch {
	case !known && age > 200*time.Millisecond:
		// A new master (a failover), or the first redeem: read now.
		if t.refresh(ctx, client) == nil {
			t.mu.Lock()
			n, known = t.byMaster[master]
			t.mu.Unlock()
		}
	case age > topologyTTL && t.busy.CompareAndSwap(false, true):
		go func() {
			defer t.busy.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = t.refresh(ctx, client)
		}()
	}
	if !known {
		return 1
	}
	return n
}

// refresh reads CLUSTER SHARDS. A replica counts whatever its health: one
// that is down or cut off is exactly the case WAIT is for.
func (t *topology) refresh(ctx context.Context, client goredis.UniversalClient) error {
	shards, err := client.ClusterShards(ctx).Result()
	if err != nil {
		return err
	}
	by := map[string]int{}
	for _, s := range shards {
		if len(s.Slots) == 0 {
			continue // a node that serves nothing: an empty or failed master
		}
		master, replicas := "", 0
		for _, n := range s.Nodes {
			if n.Role == "master" {
				master = fmt.Sprintf("%s:%d", n.IP, n.Port)
			} else {
				replicas++
			}
		}
		if master != "" {
			by[master] = replicas
		}
	}
	t.mu.Lock()
	t.byMaster, t.read = by, time.Now()
	t.mu.Unlock()
	return nil
}

// waitReplicas runs the commands queue adds and a WAIT on the node owning
// key, in one pipeline, and returns an error wrapping store.ErrUnavailable
// unless as many replicas as a consumption needs acknowledged them. It is
// for the other records whose loss in a failover would hurt (a logout, a
// revocation): every command queue adds must touch key's node (on Cluster,
// key's slot), since WAIT counts what one connection wrote. The caller reads
// its commands' own results.
func (r *Redis) waitReplicas(ctx context.Context, op, key string, queue func(p goredis.Pipeliner)) error {
	want, got, err := r.consumeOn(ctx, key, queue)
	if err != nil {
		return store.Unavailable(op, err)
	}
	if got < want {
		return unconfirmed(op, want, got, r.confirm.timeout)
	}
	return nil
}
