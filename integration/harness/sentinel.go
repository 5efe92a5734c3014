package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelMaster is the name the sentinels monitor the master under.
const sentinelMaster = "mymaster"

// Sentinel is a Redis Sentinel deployment owned by the test: one master, one
// replica and three sentinels with a quorum of two, all on 127.0.0.1. Its
// timings are tight (down after 1 s, failover timeout 5 s) so that a failover
// test takes a few seconds.
type Sentinel struct {
	t         testing.TB
	sentinels []string // host:port of each sentinel

	mu       sync.Mutex
	nodes    map[string]*process // data nodes by host:port
	lastDown string              // master address KillMaster killed
}

// StartSentinel starts the master, the replica (--replicaof the master) and
// three sentinels (redis-server sentinel.conf --sentinel), and returns once
// every sentinel sees the master, the replica and the two other sentinels,
// so that a failover can happen at once. Everything is killed at cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	requireCommand(t, "redis-server", "redis-server")
	s := &Sentinel{t: t, nodes: map[string]*process{}}

	// Redis waits 5 s by default before a diskless full sync, in case more
	// replicas come; that would be most of the start-up time here.
	syncNow := []string{"--repl-diskless-sync-delay", "0"}
	masterDir := tempDir(t, "sentinel-master")
	mport, mproc := startRedisServer(t, "redis master", filepath.Join(masterDir, "redis.log"), func(port int) []string {
		return append(redisBaseArgs(port, masterDir), syncNow...)
	})
	s.nodes[addr(mport)] = mproc

	replicaDir := tempDir(t, "sentinel-replica")
	rport, rproc := startRedisServer(t, "redis replica", filepath.Join(replicaDir, "redis.log"), func(port int) []string {
		return append(append(redisBaseArgs(port, replicaDir), syncNow...), "--replicaof", "127.0.0.1", strconv.Itoa(mport))
	})
	s.nodes[addr(rport)] = rproc

	// Sentinels learn replicas from the master's INFO, which they read when
	// they connect and then only every 10 s: the replica must be attached
	// before the first sentinel starts, or the wait below takes 10 s.
	waitFor(t, "replica attached to master", 10*time.Second, func() error {
		info, err := redisDo(addr(rport), "INFO", "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica link not up yet")
		}
		info, err = redisDo(addr(mport), "INFO", "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
			return fmt.Errorf("master does not list an online replica yet")
		}
		return nil
	}, mproc, rproc)

	var sprocs []*process
	for i := range 3 {
		dir := tempDir(t, fmt.Sprintf("sentinel-%d", i))
		conf := filepath.Join(dir, "sentinel.conf")
		port, p := startRedisServer(t, fmt.Sprintf("redis-sentinel %d", i), filepath.Join(dir, "sentinel.log"), func(port int) []string {
			// Sentinel rewrites its config file at run time, so each one
			// needs its own, written anew for each port tried.
			writeFile(t, conf, sentinelConf(port, dir, mport))
			return []string{conf, "--sentinel"}
		})
		s.sentinels = append(s.sentinels, addr(port))
		sprocs = append(sprocs, p)
	}

	for i, sa := range s.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: sa, DialTimeout: time.Second, MaxRetries: -1})
		waitFor(t, fmt.Sprintf("sentinel %s sees master, replica and the other sentinels", sa), 20*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			replicas, err := sc.Replicas(ctx, sentinelMaster).Result()
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(replicas, func(r map[string]string) bool {
				return r["flags"] == "slave" && r["master-link-status"] == "ok"
			}) {
				return fmt.Errorf("no healthy replica known yet: %v", replicas)
			}
			others, err := sc.Sentinels(ctx, sentinelMaster).Result()
			if err != nil {
				return err
			}
			if len(others) != 2 {
				return fmt.Errorf("knows %d other sentinels, want 2", len(others))
			}
			return nil
		}, sprocs[i], mproc, rproc)
		sc.Close()
	}
	return s
}

// sentinelConf is the configuration of one sentinel. resolve-hostnames is
// off: everything is an IP, and a failed lookup must not slow a failover.
func sentinelConf(port int, dir string, masterPort int) string {
	return fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel resolve-hostnames no
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, dir, filepath.Join(dir, "sentinel.log"), sentinelMaster, masterPort,
		sentinelMaster, sentinelMaster, sentinelMaster)
}

// MasterName is the name the sentinels monitor the master under, for
// go-redis FailoverOptions.MasterName or a sentinel store URL.
func (s *Sentinel) MasterName() string { return sentinelMaster }

// SentinelAddrs are the host:port addresses of the three sentinels.
func (s *Sentinel) SentinelAddrs() []string { return slices.Clone(s.sentinels) }

// MasterAddr asks the sentinels for the current master's host:port.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var lastErr error
	for _, sa := range s.sentinels {
		a, err := s.masterFrom(ctx, sa)
		if err == nil {
			return a, nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("no sentinel answered: %w", lastErr)
}

// masterFrom asks one sentinel for the master's address.
func (s *Sentinel) masterFrom(ctx context.Context, sentinelAddr string) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinelAddr, DialTimeout: time.Second, MaxRetries: -1})
	defer sc.Close()
	hp, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s answered %v", sentinelAddr, hp)
	}
	return hp[0] + ":" + hp[1], nil
}

// KillMaster kills the current master with SIGKILL and returns its address.
// The sentinels notice after down-after-milliseconds (1 s) and promote the
// replica; WaitFailover waits for that.
func (s *Sentinel) KillMaster() string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := s.MasterAddr(ctx)
	if err != nil {
		s.t.Fatalf("harness: KillMaster: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.nodes[a]
	if !ok {
		s.t.Fatalf("harness: KillMaster: sentinels report master %s, which the harness did not start", a)
	}
	p.kill()
	s.lastDown = a
	return a
}

// WaitFailover waits until every sentinel reports a master other than the
// one KillMaster killed, and that master answers PING and ROLE says master.
// It returns the new master's address. Waiting for all three sentinels, not
// one, means a client that asks any of them afterwards gets the new master.
// Without a deadline on ctx it gives up after 30 s.
func (s *Sentinel) WaitFailover(ctx context.Context) (string, error) {
	s.mu.Lock()
	old := s.lastDown
	s.mu.Unlock()
	if old == "" {
		return "", fmt.Errorf("WaitFailover: no master was killed")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	var last error
	for {
		newAddr, err := s.failedOver(ctx, old)
		if err == nil {
			return newAddr, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no failover from %s: %w (last check: %v)", old, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// failedOver checks once whether the failover away from old is complete.
func (s *Sentinel) failedOver(ctx context.Context, old string) (string, error) {
	var agreed string
	for _, sa := range s.sentinels {
		a, err := s.masterFrom(ctx, sa)
		if err != nil {
			return "", err
		}
		if a == old {
			return "", fmt.Errorf("sentinel %s still reports %s", sa, old)
		}
		if agreed != "" && a != agreed {
			return "", fmt.Errorf("sentinels disagree: %s and %s", agreed, a)
		}
		agreed = a
	}
	c := redis.NewClient(&redis.Options{Addr: agreed, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return "", fmt.Errorf("new master %s: %w", agreed, err)
	}
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", fmt.Errorf("new master %s: ROLE: %w", agreed, err)
	}
	if len(role) == 0 || role[0] != "master" {
		return "", fmt.Errorf("new master %s: ROLE %v", agreed, role)
	}
	return agreed, nil
}

// writeFile writes a file the test needs, failing the test on error.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("harness: write %s: %v", path, err)
	}
}

// node returns the process of the data node at a, failing the test if the
// harness did not start one there.
func (s *Sentinel) node(a string) *process {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.nodes[a]
	if !ok {
		s.t.Fatalf("harness: no Sentinel data node at %s", a)
	}
	return p
}

// Replicas are the addresses of the data nodes that run and say they are
// replicas (ROLE), whatever the state of their link.
func (s *Sentinel) Replicas() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for a, p := range s.nodes {
		if p.exited() {
			continue
		}
		if role, err := Role(a); err == nil && role == "slave" {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Freeze stops the data node at a with SIGSTOP (see Thaw). A frozen replica
// still receives its master's stream into its socket buffer: cut the link
// with CutReplicas to keep writes from reaching it.
func (s *Sentinel) Freeze(a string) { s.node(a).freeze() }

// Thaw resumes a node Freeze stopped.
func (s *Sentinel) Thaw(a string) { s.node(a).thaw() }

// AddReplica starts a fresh, empty data node as a replica of master and
// returns its address once its initial sync is done. Sentinels learn of it
// from the master's INFO; the master can count its acknowledgements (WAIT)
// at once.
func (s *Sentinel) AddReplica(master string) string {
	s.t.Helper()
	host, mport, ok := strings.Cut(master, ":")
	if !ok {
		s.t.Fatalf("harness: AddReplica(%q): want host:port", master)
	}
	dir := tempDir(s.t, "sentinel-replica")
	rport, p := startRedisServer(s.t, "redis replica", filepath.Join(dir, "redis.log"), func(port int) []string {
		return append(redisBaseArgs(port, dir), "--repl-diskless-sync-delay", "0", "--replicaof", host, mport)
	})
	waitFor(s.t, "fresh replica synced with "+master, 10*time.Second, func() error { return replicaLinkUp(addr(rport)) }, p)
	s.mu.Lock()
	s.nodes[addr(rport)] = p
	s.mu.Unlock()
	return addr(rport)
}
