package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// A redeem as a browser's navigation sends it: redeemed at once, whatever
// redeem_confirm says.
var navigate = []string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document", "Sec-Fetch-Site: none"}

// failoverSteps are what a reproduction of the lost GETDEL does to one
// Redis shard, for Sentinel and Cluster alike.
type failoverSteps struct {
	// shard is the master holding key and one of its replicas.
	shard func(key string) (master, replica string)
	// freeze and thaw stop and resume a node (SIGSTOP, SIGCONT).
	freeze, thaw func(a string)
	// killMaster kills the master with SIGKILL.
	killMaster func(master string)
	// promoted waits until the replica is the shard's master.
	promoted func(replica string)
	// addReplica attaches a fresh replica to the new master.
	addReplica func(master string)
}

// checkConsumedStaysConsumed is issue 14's reproduction: mint T, wait until
// the replica has it, freeze the replica and cut its replication link, redeem
// T (the master deletes it; the replica never hears), kill the master, thaw
// the replica and let it be promoted (it still holds T), attach a fresh
// replica, redeem T again. Before the gateway waited for a replica's
// acknowledgement, both redeems signed in: one link, two sessions. Now the
// first answers 503 (no replica confirmed) and creates nothing, and T signs
// in exactly once in total.
func checkConsumedStaysConsumed(t *testing.T, g *scaleGW, s failoverSteps) {
	m := g.mint(t, "once")
	key := "ssogate:tok:" + scaleHash(m.SSOToken)
	master, replica := s.shard(key)
	harness.WaitReplicated(t, master, replica)

	s.freeze(replica)
	harness.CutReplicas(t, master)
	sessions := 0
	first := g.do(t, http.MethodGet, "/redirect/"+m.SSOToken, nil, "", navigate...)
	if first.cookie() != nil {
		sessions++
	}
	t.Logf("redeem with the replica frozen and cut off: %d, cookie %v", first.status, first.cookie() != nil)

	t.Cleanup(func() {
		if t.Failed() {
			l := g.caddy.Logs()
			t.Log(l[max(0, len(l)-6000):])
		}
	})
	s.killMaster(master)
	s.thaw(replica)
	start := time.Now()
	s.promoted(replica)
	s.addReplica(replica)
	t.Logf("replica %s promoted and given a fresh replica %v after the master died", replica, time.Since(start).Round(time.Millisecond))

	// The gateway reaches the new master: a fresh token of the same shard
	// signs in (after an outage answered 503, as it should).
	scaleEventually(t, "sign-in on the new master", 20*time.Second, func() error {
		p, err := g.tryMint("probe")
		if err != nil {
			return err
		}
		if pm, _ := s.shard("ssogate:tok:" + scaleHash(p.SSOToken)); pm != replica {
			return fmt.Errorf("probe token on another shard")
		}
		r, err := g.try(http.MethodGet, "/redirect/"+p.SSOToken, nil, "", navigate...)
		if err != nil {
			return err
		}
		if r.status != http.StatusFound {
			return fmt.Errorf("probe redeem: %d", r.status)
		}
		return nil
	})

	second := g.do(t, http.MethodGet, "/redirect/"+m.SSOToken, nil, "", navigate...)
	if second.cookie() != nil {
		sessions++
	}
	t.Logf("redeem of the same link after the failover: %d, cookie %v", second.status, second.cookie() != nil)

	if sessions > 1 {
		t.Fatalf("one link created %d sessions across the failover: the redeem before it was acknowledged by a master whose delete never reached the replica", sessions)
	}
	if first.status != http.StatusServiceUnavailable || first.cookie() != nil {
		t.Errorf("redeem while no replica could confirm: %d, cookie %v; want 503 and no cookie", first.status, first.cookie() != nil)
	}
	if sessions != 1 {
		t.Errorf("the link never signed in: after a failover that brought it back it must work exactly once (second redeem %d)", second.status)
	}
}

// TestFailoverSentinelConsumedTokenStaysConsumed runs the reproduction on a
// Sentinel deployment (master, replica, three sentinels).
func TestFailoverSentinelConsumedTokenStaysConsumed(t *testing.T) {
	t.Parallel()
	s := harness.StartSentinel(t)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	store := fmt.Sprintf("store redis redis-sentinel://%s/%s", strings.Join(s.SentinelAddrs(), ","), s.MasterName())
	// token_ttl 2m: the token must outlive the failover on the replica.
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), scaleSite{port: p, store: store, extra: "token_ttl 2m\n\t\tredeem_rate_limit off"}), harness.CaddyOptions{}, p)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	checkConsumedStaysConsumed(t, g, failoverSteps{
		shard: func(string) (string, string) {
			master, err := s.MasterAddr(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var replica string
			for _, r := range s.Replicas() {
				if r != master {
					replica = r
				}
			}
			if replica == "" {
				t.Fatal("no replica")
			}
			return master, replica
		},
		freeze:     s.Freeze,
		thaw:       s.Thaw,
		killMaster: func(string) { s.KillMaster() },
		promoted: func(replica string) {
			got, err := s.WaitFailover(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != replica {
				t.Fatalf("sentinels promoted %s, not the replica %s", got, replica)
			}
		},
		addReplica: func(master string) { s.AddReplica(master) },
	})
}

// TestFailoverClusterConsumedTokenStaysConsumed runs the reproduction on the
// shard of a Redis Cluster (three masters, one replica each) that holds the
// token.
func TestFailoverClusterConsumedTokenStaysConsumed(t *testing.T) {
	t.Parallel()
	cl := harness.StartClusterReplicas(t, 3, 1)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	store := fmt.Sprintf("store redis {\n\t\t\taddrs %s\n\t\t\tcluster\n\t\t}", strings.Join(cl.Addrs(), " "))
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), scaleSite{port: p, store: store, extra: "token_ttl 2m\n\t\tredeem_rate_limit off"}), harness.CaddyOptions{}, p)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	checkConsumedStaysConsumed(t, g, failoverSteps{
		shard: func(key string) (string, string) {
			master, replicas, err := cl.Shard(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(replicas) == 0 {
				return master, ""
			}
			return master, replicas[0]
		},
		freeze:     cl.Freeze,
		thaw:       cl.Thaw,
		killMaster: cl.Kill,
		promoted: func(replica string) {
			if err := cl.WaitMaster(ctx, replica); err != nil {
				t.Fatal(err)
			}
		},
		addReplica: func(master string) { cl.AddReplica(master) },
	})
}
