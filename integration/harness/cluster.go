package harness

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster owned by the test: masters, each with as many
// replicas as asked (none by default), the 16384 slots spread over the
// masters by redis-cli, all on 127.0.0.1.
type Cluster struct {
	t      testing.TB
	addrs  []string // the nodes StartCluster started, masters and replicas
	client *redis.ClusterClient

	mu    sync.Mutex
	nodes map[string]*process // every node by host:port, AddReplica's too
}

// StartCluster starts masters redis-server nodes (--cluster-enabled yes, each
// with its own nodes.conf), joins them with
//
//	redis-cli --cluster create 127.0.0.1:p1 … --cluster-replicas 0 --cluster-yes
//
// and returns once CLUSTER INFO says cluster_state:ok and knows every node,
// on every node. Redis needs at least 3 masters.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return StartClusterReplicas(t, masters, 0)
}

// StartClusterReplicas is StartCluster with replicas replicas per master
// (--cluster-replicas), and returns once every replica's link to its master
// is up too. Its nodes time out after 2 s (cluster-node-timeout), so a
// killed master's replica is promoted within a few seconds.
func StartClusterReplicas(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("harness: StartCluster(%d): Redis Cluster needs at least 3 masters", masters)
	}
	requireCommand(t, "redis-server", "redis-server")
	requireCommand(t, "redis-cli", "redis-tools")
	c := &Cluster{t: t, nodes: map[string]*process{}}
	var procs []*process
	for i := range masters * (1 + replicas) {
		a, p := c.startNode(fmt.Sprintf("cluster-%d", i))
		c.addrs = append(c.addrs, a)
		procs = append(procs, p)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, c.addrs...), "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		var tails []string
		for _, p := range procs {
			tails = append(tails, logTail(p.logPath))
		}
		t.Fatalf("harness: redis-cli %s: %v\n%s\n%s", strings.Join(args, " "), err, out, strings.Join(tails, "\n"))
	}

	for i, a := range c.addrs {
		waitFor(t, "cluster_state:ok on "+a, 30*time.Second, func() error {
			info, err := redisDo(a, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok\r\n") {
				return fmt.Errorf("cluster not ok yet:\n%s", info)
			}
			if want := fmt.Sprintf("cluster_known_nodes:%d\r\n", len(c.addrs)); !strings.Contains(info, want) {
				return fmt.Errorf("node does not know all %d nodes yet", len(c.addrs))
			}
			// Each node learns the others' roles by gossip: until it
			// knows every replica, a client asking it would not either.
			nodes, err := redisDo(a, "CLUSTER", "NODES")
			if err != nil {
				return err
			}
			if n := countReplicas(nodes); n != masters*replicas {
				return fmt.Errorf("node knows %d replicas, want %d", n, masters*replicas)
			}
			if role, err := Role(a); err != nil {
				return err
			} else if role == "slave" {
				return replicaLinkUp(a)
			}
			return nil
		}, procs[i])
	}

	c.client = redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:       c.addrs,
		DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second,
	})
	t.Cleanup(func() { c.client.Close() })
	return c
}

// startNode starts one empty cluster node and returns its address.
func (c *Cluster) startNode(name string) (string, *process) {
	c.t.Helper()
	dir := tempDir(c.t, name)
	port, p := startRedisServer(c.t, "redis "+name, filepath.Join(dir, "redis.log"), func(port int) []string {
		// The bus port is set explicitly: the default, port+10000, may
		// be taken or above 65535 for a port from the ephemeral range.
		return append(redisBaseArgs(port, dir),
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(FreePort(c.t)),
			"--cluster-node-timeout", "2000",
			"--repl-diskless-sync-delay", "0",
		)
	})
	c.mu.Lock()
	c.nodes[addr(port)] = p
	c.mu.Unlock()
	return addr(port), p
}

// Addrs are the host:port addresses of the nodes, for ClusterOptions.Addrs
// or a cluster store URL.
func (c *Cluster) Addrs() []string { return slices.Clone(c.addrs) }

// Client is a go-redis cluster client to the nodes, closed at cleanup.
func (c *Cluster) Client() *redis.ClusterClient { return c.client }

// node returns the process at a, failing the test if the harness did not
// start one there.
func (c *Cluster) node(a string) *process {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[a]
	if !ok {
		c.t.Fatalf("harness: no cluster node at %s", a)
	}
	return p
}

// Shard returns the master serving key's slot and that master's replicas,
// as CLUSTER SHARDS reports them (replicas whatever their health).
func (c *Cluster) Shard(ctx context.Context, key string) (master string, replicas []string, err error) {
	slot, err := c.client.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", nil, fmt.Errorf("CLUSTER KEYSLOT: %w", err)
	}
	shards, err := c.client.ClusterShards(ctx).Result()
	if err != nil {
		return "", nil, fmt.Errorf("CLUSTER SHARDS: %w", err)
	}
	for _, s := range shards {
		if !slices.ContainsFunc(s.Slots, func(r redis.SlotRange) bool { return r.Start <= slot && slot <= r.End }) {
			continue
		}
		for _, n := range s.Nodes {
			a := fmt.Sprintf("%s:%d", n.IP, n.Port)
			if n.Role == "master" {
				master = a
			} else {
				replicas = append(replicas, a)
			}
		}
		if master == "" {
			return "", nil, fmt.Errorf("slot %d: shard without a master", slot)
		}
		return master, replicas, nil
	}
	return "", nil, fmt.Errorf("no shard serves slot %d", slot)
}

// Freeze stops the node at a with SIGSTOP (see Thaw, and CutReplicas to keep
// a frozen replica from catching up on thaw).
func (c *Cluster) Freeze(a string) { c.node(a).freeze() }

// Thaw resumes a node Freeze stopped.
func (c *Cluster) Thaw(a string) { c.node(a).thaw() }

// Kill ends the node at a with SIGKILL and returns once it has exited.
func (c *Cluster) Kill(a string) { c.node(a).kill() }

// WaitMaster waits until the node at a says it is a master (ROLE) and every
// running node reports cluster_state:ok, as after its promotion. Without a
// deadline on ctx it gives up after 30 s.
func (c *Cluster) WaitMaster(ctx context.Context, a string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	check := func() error {
		if role, err := Role(a); err != nil {
			return err
		} else if role != "master" {
			return fmt.Errorf("%s is still a %s", a, role)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for na, p := range c.nodes {
			if p.exited() {
				continue
			}
			info, err := redisDo(na, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok\r\n") {
				return fmt.Errorf("%s: cluster not ok yet", na)
			}
		}
		return nil
	}
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not promoted: %w (last check: %v)", a, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Failover promotes the replica at a with CLUSTER FAILOVER (a manual
// failover: the master stops writes until the replica has caught up, then
// they swap roles) and waits until it is the master.
func (c *Cluster) Failover(ctx context.Context, a string) error {
	if _, err := redisDo(a, "CLUSTER", "FAILOVER"); err != nil {
		return fmt.Errorf("CLUSTER FAILOVER on %s: %w", a, err)
	}
	return c.WaitMaster(ctx, a)
}

// AddReplica starts a fresh node, introduces it to the cluster
// (CLUSTER MEET) and makes it a replica of master (CLUSTER REPLICATE), and
// returns its address once its initial sync is done.
func (c *Cluster) AddReplica(master string) string {
	c.t.Helper()
	c.mu.Lock()
	name := fmt.Sprintf("cluster-extra-%d", len(c.nodes))
	c.mu.Unlock()
	a, p := c.startNode(name)
	masterID, err := redisDo(master, "CLUSTER", "MYID")
	if err != nil {
		c.t.Fatalf("harness: CLUSTER MYID on %s: %v", master, err)
	}
	host, port, _ := strings.Cut(master, ":")
	// MEET needs the bus port, which is not port+10000 here (startNode).
	nodes, err := redisDo(master, "CLUSTER", "NODES")
	if err != nil {
		c.t.Fatalf("harness: CLUSTER NODES on %s: %v", master, err)
	}
	var busPort string
	for line := range strings.SplitSeq(nodes, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(f[2], "myself") {
			_, busPort, _ = strings.Cut(f[1], "@")
			busPort, _, _ = strings.Cut(busPort, ",")
		}
	}
	if _, err := redisDo(a, "CLUSTER", "MEET", host, port, busPort); err != nil {
		c.t.Fatalf("harness: CLUSTER MEET from %s: %v", a, err)
	}
	waitFor(c.t, a+" replicates "+master, 20*time.Second, func() error {
		// REPLICATE needs the master known first: retried until it is.
		if role, err := Role(a); err != nil {
			return err
		} else if role != "slave" {
			_, err := redisDo(a, "CLUSTER", "REPLICATE", masterID)
			if err == nil {
				err = errors.New("replication just asked for")
			}
			return err
		}
		return replicaLinkUp(a)
	}, p)
	return a
}

// countReplicas counts the replicas in a CLUSTER NODES reply, whose third
// field is the node's flags ("slave", "myself,slave", "slave,fail"…).
func countReplicas(nodes string) int {
	n := 0
	for line := range strings.SplitSeq(nodes, "\n") {
		if f := strings.Fields(line); len(f) > 2 && slices.Contains(strings.Split(f[2], ","), "slave") {
			n++
		}
	}
	return n
}
