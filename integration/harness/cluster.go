package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster owned by the test: masters only, no replicas,
// the 16384 slots spread over them by redis-cli, all on 127.0.0.1.
type Cluster struct {
	addrs  []string
	client *redis.ClusterClient
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
	if masters < 3 {
		t.Fatalf("harness: StartCluster(%d): Redis Cluster needs at least 3 masters", masters)
	}
	requireCommand(t, "redis-server", "redis-server")
	requireCommand(t, "redis-cli", "redis-tools")
	c := &Cluster{}
	var procs []*process
	for i := range masters {
		dir := tempDir(t, fmt.Sprintf("cluster-%d", i))
		port, p := startRedisServer(t, fmt.Sprintf("redis cluster node %d", i), filepath.Join(dir, "redis.log"), func(port int) []string {
			// The bus port is set explicitly: the default, port+10000, may
			// be taken or above 65535 for a port from the ephemeral range.
			return append(redisBaseArgs(port, dir),
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-port", strconv.Itoa(FreePort(t)),
				"--cluster-node-timeout", "2000",
			)
		})
		c.addrs = append(c.addrs, addr(port))
		procs = append(procs, p)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, c.addrs...), "--cluster-replicas", "0", "--cluster-yes")
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
			if want := fmt.Sprintf("cluster_known_nodes:%d\r\n", masters); !strings.Contains(info, want) {
				return fmt.Errorf("node does not know all %d nodes yet", masters)
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

// Addrs are the host:port addresses of the nodes, for ClusterOptions.Addrs
// or a cluster store URL.
func (c *Cluster) Addrs() []string { return slices.Clone(c.addrs) }

// Client is a go-redis cluster client to the nodes, closed at cleanup.
func (c *Cluster) Client() *redis.ClusterClient { return c.client }
