package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
func checkConsumedStaysConsumed(t *testing.T, g *gateway, s failoverSteps) {
	m := g.mintUser(t, "once")
	key := "ssogate:tok:" + harness.KeyHash(m.SSOToken)
	master, replica := s.shard(key)
	harness.WaitReplicated(t, master, replica)

	s.freeze(replica)
	harness.CutReplicas(t, master)
	sessions := 0
	first := g.read(t, http.MethodGet, "/redirect/"+m.SSOToken, nil, "", navigate...)
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
	harness.Eventually(t, "sign-in on the new master", 20*time.Second, func() error {
		p, err := g.tryMint("probe")
		if err != nil {
			return err
		}
		if pm, _ := s.shard("ssogate:tok:" + harness.KeyHash(p.SSOToken)); pm != replica {
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

	second := g.read(t, http.MethodGet, "/redirect/"+m.SSOToken, nil, "", navigate...)
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

// chaosLoad runs sign-ins at a steady rate against gateways while a test
// breaks something, and counts what must never happen: a token signing in
// twice, a request reaching the upstream without a session, a 5xx other than
// 503. Every tick mints a token (round robin over the gateways) and redeems it
// twice at once on two gateways; a session it gets is used once, and so is
// no session at all.
type chaosLoad struct {
	gws      []*gateway
	up       *harness.Upstream
	interval time.Duration

	mu       sync.Mutex
	minted   []string       // every token minted
	sessions map[string]int // token → sessions it made
	ticks    []chaosTick
	statuses map[int]int // every answer, by status
	errs     int         // requests without an answer (a gateway killed)
	wrong    []string    // session served as another user, 5xx other than 503
}

// chaosTick is the outcome of one tick: whether a session was made.
type chaosTick struct {
	at time.Time
	ok bool
}

func newChaosLoad(up *harness.Upstream, interval time.Duration, gws ...*gateway) *chaosLoad {
	return &chaosLoad{gws: gws, up: up, interval: interval, sessions: map[string]int{}, statuses: map[int]int{}}
}

// target replaces the gateways the next ticks use, as a load balancer
// taking a dead instance out does.
func (l *chaosLoad) target(gws ...*gateway) {
	l.mu.Lock()
	l.gws = gws
	l.mu.Unlock()
}

// note counts one answer.
func (l *chaosLoad) note(what string, r reply, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs++
		return
	}
	l.statuses[r.status]++
	if r.status >= 500 && r.status != http.StatusServiceUnavailable {
		l.wrong = append(l.wrong, fmt.Sprintf("%s: %d %s", what, r.status, r.body))
	}
}

// redeem redeems tok on g as a browser's navigation and counts a session.
func (l *chaosLoad) redeem(g *gateway, tok, user string) bool {
	r, err := g.try(http.MethodGet, "/redirect/"+tok, nil, "", navigate...)
	l.note("redeem", r, err)
	if err != nil || r.cookie() == nil {
		return false
	}
	l.mu.Lock()
	l.sessions[tok]++
	l.mu.Unlock()
	// The session is the user's, or the store cannot say (503).
	w, err := g.try(http.MethodGet, "/whoami", r.cookie(), "")
	l.note("session", w, err)
	if err == nil && w.status == http.StatusOK && user != "" {
		var saw struct{ User string }
		if json.Unmarshal([]byte(w.body), &saw); saw.User != user {
			l.mu.Lock()
			l.wrong = append(l.wrong, fmt.Sprintf("session of %s served as %q", user, saw.User))
			l.mu.Unlock()
		}
	}
	return true
}

// tick is one sign-in attempt.
func (l *chaosLoad) tick(i int) {
	l.mu.Lock()
	g := l.gws[i%len(l.gws)]
	other := l.gws[(i+1)%len(l.gws)]
	l.mu.Unlock()
	user := fmt.Sprintf("load-%d", i)
	ok := false
	r, err := g.try(http.MethodPost, "/sso/tokens", nil, `{"userId":"`+user+`"}`,
		"Authorization: Bearer "+scaleKey, "Content-Type: application/json")
	l.note("mint", r, err)
	var m harness.MintAnswer
	if err == nil && r.status == http.StatusCreated {
		err = json.Unmarshal([]byte(r.body), &m)
	} else if err == nil {
		err = fmt.Errorf("mint: %d", r.status)
	}
	if err == nil {
		l.mu.Lock()
		l.minted = append(l.minted, m.SSOToken)
		l.mu.Unlock()
		var wg sync.WaitGroup
		var won atomic.Int32
		for _, gw := range []*gateway{g, other} {
			wg.Go(func() {
				if l.redeem(gw, m.SSOToken, user) {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		ok = won.Load() > 0
	}
	// No session, no upstream.
	r, err = g.try(http.MethodGet, "/whoami", nil, "")
	l.note("no session", r, err)
	l.mu.Lock()
	l.ticks = append(l.ticks, chaosTick{at: time.Now(), ok: ok})
	l.mu.Unlock()
}

// run ticks every interval until stop is closed or max ticks were started,
// then waits for the ticks under way.
func (l *chaosLoad) run(stop <-chan struct{}, max int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	next := time.Now()
	for i := range max {
		select {
		case <-stop:
			wg.Wait()
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(l.interval)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			l.tick(i)
		})
	}
	wg.Wait()
}

// recovered returns when sign-ins worked again after from: the first tick
// after the last failed one, if a success follows it.
func (l *chaosLoad) recovered(from time.Time) (time.Duration, bool) {
	l.mu.Lock()
	ticks := append([]chaosTick(nil), l.ticks...)
	l.mu.Unlock()
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].at.Before(ticks[j].at) })
	var lastFail time.Time
	for _, tk := range ticks {
		if !tk.ok && tk.at.After(from) {
			lastFail = tk.at
		}
	}
	if lastFail.IsZero() {
		return 0, true
	}
	for _, tk := range ticks {
		if tk.ok && tk.at.After(lastFail) {
			return tk.at.Sub(from), true
		}
	}
	return 0, false
}

// replay redeems every minted token once more, after the deployment has
// settled: a token whose consumption a failover lost would sign in again.
func (l *chaosLoad) replay(g *gateway) {
	l.mu.Lock()
	minted := append([]string(nil), l.minted...)
	l.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, tok := range minted {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			l.redeem(g, tok, "")
		})
	}
	wg.Wait()
}

// check asserts the invariants and logs the figures.
func (l *chaosLoad) check(t *testing.T, what string, from time.Time) {
	t.Helper()
	rec, recovered := l.recovered(from)
	l.mu.Lock()
	defer l.mu.Unlock()
	double := 0
	for _, n := range l.sessions {
		if n > 1 {
			double++
		}
	}
	unauth := 0
	for _, r := range l.up.Requests() {
		if r.Header.Get("X-Forwarded-User") == "" {
			unauth++
		}
	}
	ok := 0
	for _, tk := range l.ticks {
		if tk.ok {
			ok++
		}
	}
	t.Logf("%s: %d sign-ins attempted, %d signed in, %d tokens minted; double redemptions %d; proxied without a session %d; "+
		"5xx other than 503 or wrong user %d; answers by status %v, %d requests unanswered; signs in again %v after the fault",
		what, len(l.ticks), ok, len(l.minted), double, unauth, len(l.wrong), l.statuses, l.errs, rec.Round(time.Millisecond))
	if double > 0 {
		t.Errorf("%d tokens signed in more than once", double)
	}
	if unauth > 0 {
		t.Errorf("%d requests reached the upstream without a session", unauth)
	}
	for i, w := range l.wrong {
		if i < 5 {
			t.Errorf("%s", w)
		}
	}
	if !recovered {
		t.Errorf("sign-ins did not work again after the fault")
	}
}

// TestChaosSentinelFailoverUnderLoad kills the Sentinel master while sign-ins
// run at 40/s; the operator's replacement replica is attached as soon as the
// sentinels have promoted the old one.
func TestChaosSentinelFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	s := harness.StartSentinel(t)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	store := fmt.Sprintf("store redis redis-sentinel://%s/%s", strings.Join(s.SentinelAddrs(), ","), s.MasterName())
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), scaleSite{port: p, store: store, extra: "redeem_rate_limit off"}), harness.CaddyOptions{}, p)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	l := newChaosLoad(up, 25*time.Millisecond, g)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { l.run(stop, 1600); close(done) }()
	time.Sleep(2 * time.Second)
	killed := time.Now()
	old := s.KillMaster()
	newMaster, err := s.WaitFailover(ctx)
	if err != nil {
		close(stop)
		<-done
		t.Fatal(err)
	}
	promoted := time.Since(killed)
	s.AddReplica(newMaster)
	t.Logf("master %s killed; sentinels promoted %s after %v, fresh replica attached after %v",
		old, newMaster, promoted.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	l.replay(g)
	l.check(t, "Sentinel failover", killed)
}

// TestChaosGatewayKilledUnderLoad kills one of two gateway instances on one
// Redis mid-load (SIGKILL); the load balancer's part is played by the load,
// which moves to the survivor. Tokens minted on the dead one still work on
// the other.
func TestChaosGatewayKilledUnderLoad(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	pa, pb := harness.FreePort(t), harness.FreePort(t)
	site := func(p int) scaleSite {
		return scaleSite{port: p, store: "store redis " + rd.URL(), extra: "redeem_rate_limit off"}
	}
	a := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), site(pa)), harness.CaddyOptions{}, pa)[0]
	b := scaleTwin(t, a, scaleCaddyfile("admin off", up.Addr(), site(pb)), pb)

	l := newChaosLoad(up, 25*time.Millisecond, a, b)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { l.run(stop, 1000); close(done) }()
	time.Sleep(2 * time.Second)
	killed := time.Now()
	a.caddy.Kill()
	l.target(b)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	l.replay(b)
	l.check(t, "gateway killed", killed)
}

// TestChaosClusterFailoverUnderLoad runs sign-ins at 40/s on a Cluster of
// three masters with a replica each, while one shard fails over by hand
// (CLUSTER FAILOVER) and then another shard's master is killed.
func TestChaosClusterFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	cl := harness.StartClusterReplicas(t, 3, 1)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	store := fmt.Sprintf("store redis {\n\t\t\taddrs %s\n\t\t\tcluster\n\t\t}", strings.Join(cl.Addrs(), " "))
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), scaleSite{port: p, store: store, extra: "redeem_rate_limit off"}), harness.CaddyOptions{}, p)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// Two keys in different shards ({a} and {b} hash to slots 15495 and
	// 3300, served by the third and the first master).
	m1, r1, err := cl.Shard(ctx, "{a}")
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := cl.Shard(ctx, "{b}")
	if err != nil || m2 == m1 || len(r1) == 0 {
		t.Fatalf("shards: %s %v / %s %v", m1, r1, m2, err)
	}

	l := newChaosLoad(up, 25*time.Millisecond, g)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { l.run(stop, 1600); close(done) }()
	halt := func(err error) {
		close(stop)
		<-done
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	if err := cl.Failover(ctx, r1[0]); err != nil {
		halt(err)
	}
	t.Logf("CLUSTER FAILOVER: %s took over from %s in %v", r1[0], m1, time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	_, r2, err := cl.Shard(ctx, "{b}")
	if err != nil || len(r2) == 0 {
		halt(fmt.Errorf("shard of {b}: %v %v", r2, err))
	}
	killed := time.Now()
	cl.Kill(m2)
	if err := cl.WaitMaster(ctx, r2[0]); err != nil {
		halt(err)
	}
	t.Logf("master %s killed; %s promoted after %v", m2, r2[0], time.Since(killed).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	l.replay(g)
	l.check(t, "Cluster failovers", killed)
}
