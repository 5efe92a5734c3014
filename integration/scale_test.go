package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// The API key of the scale tests' credential; only its hash is configured.
const scaleKey = "it-scale-5c4b3a29180f7e6d5c4b3a29180f7e6d"

// scaleSite is one https://portal.test:<port> site of a scale test's Caddyfile.
type scaleSite struct {
	port  int
	store string // the store line or block
	extra string // more ssogate subdirectives
	site  string // more site directives
}

// scaleCaddyfile is a Caddyfile with the given global options (admin stays on
// unless they turn it off, at the harness's port) and sites, all in front of
// upstream.
func scaleCaddyfile(global, upstream string, sites ...scaleSite) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tskip_install_trust\n\tauto_https disable_redirects\n\t%s\n}\n", global)
	for _, s := range sites {
		fmt.Fprintf(&b, `https://portal.test:%d {
	tls internal
	%s
	ssogate {
		%s
		credential scale-partner {
			key_sha256 %s
			users *
			claims group=scale
			allow mint revoke
		}
		%s
	}
	reverse_proxy %s
}
`, s.port, s.site, s.store, harness.KeyHash(scaleKey), s.extra, upstream)
	}
	return b.String()
}

// scaleStart runs caddyfile, waits for each port's site to serve HTTPS and
// returns one gateway per port, in order, minting with scaleKey.
func scaleStart(t *testing.T, caddyfile string, opt harness.CaddyOptions, ports ...int) []*gateway {
	t.Helper()
	c := harness.StartCaddy(t, caddyfile, opt)
	client := c.Client(t)
	var gws []*gateway
	for _, p := range ports {
		gws = append(gws, newGateway(t, c, p, scaleKey, client, nil))
	}
	return gws
}

// scaleTwin starts a second Caddy from caddyfile, serving port, that shares
// a's data dir (one internal CA, which the second must find made by the
// first) and a's client: a second instance behind a load balancer.
func scaleTwin(t *testing.T, a *gateway, caddyfile string, port int) *gateway {
	t.Helper()
	b := scaleStart(t, caddyfile, harness.CaddyOptions{DataDir: a.caddy.DataDir()}, port)[0]
	b.client = a.client
	return b
}

// TestScaleTwoInstancesShareRedis runs two Caddy processes on one Redis, as
// behind a load balancer: a token is redeemed exactly once across both, and a
// session made on one works on the other.
func TestScaleTwoInstancesShareRedis(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	pa, pb := harness.FreePort(t), harness.FreePort(t)
	// Every redeem of the race below fails but one, all from 127.0.0.1.
	site := func(p int) scaleSite {
		return scaleSite{port: p, store: "store redis " + rd.URL(), extra: "redeem_rate_limit off"}
	}
	a := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), site(pa)), harness.CaddyOptions{}, pa)[0]
	// The same data dir: one internal CA, which B must find made by A.
	b := scaleTwin(t, a, scaleCaddyfile("admin off", up.Addr(), site(pb)), pb)

	t.Run("ConcurrentRedeemsAcrossInstancesExactlyOneWins", func(t *testing.T) {
		m := a.mintUser(t, "racer")
		const n = 500
		var won, refused atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		var errs sync.Map
		for i := range n {
			gw := a
			if i%2 == 1 {
				gw = b
			}
			wg.Go(func() {
				<-start
				r, err := gw.try(http.MethodGet, "/redirect/"+m.SSOToken, nil, "")
				switch {
				case err != nil:
					errs.Store(i, err)
				case r.status == http.StatusFound && r.cookie() != nil:
					won.Add(1)
				case r.status == http.StatusForbidden && r.cookie() == nil:
					refused.Add(1)
				default:
					errs.Store(i, fmt.Errorf("status %d", r.status))
				}
			})
		}
		close(start)
		wg.Wait()
		errs.Range(func(k, v any) bool {
			t.Errorf("redeem %d: %v", k, v)
			return true
		})
		if won.Load() != 1 || refused.Load() != n-1 {
			t.Fatalf("%d concurrent redeems over two instances: %d won, %d refused; want 1 and %d", n, won.Load(), refused.Load(), n-1)
		}
	})

	t.Run("MintedOnARedeemedOnBWorksOnBoth", func(t *testing.T) {
		m := a.mintUser(t, "roamer")
		c := b.redeem(t, "/redirect/"+m.SSOToken)
		for _, gw := range []*gateway{a, b} {
			if user, status := gw.whoami(t, c); user != "roamer" {
				t.Fatalf("session made on B, request to %s: %d as %q; want roamer", gw.base, status, user)
			}
		}
		// A logout on A ends the session on B too (B may have it cached
		// until the invalidation arrives: SPEC allows a second).
		if r := a.read(t, http.MethodPost, "/sso/logout", c, ""); r.status >= 300 && r.status != http.StatusSeeOther {
			t.Fatalf("logout on A: %d", r.status)
		}
		harness.Eventually(t, "logout on A reaching B", time.Second, func() error {
			if _, status := b.whoami(t, c); status != http.StatusUnauthorized {
				return fmt.Errorf("B answers %d", status)
			}
			return nil
		})
	})
}

// TestScaleRedisOutage kills Redis under a running gateway: redeems and session
// checks answer 503 at once, nothing reaches the upstream without a session,
// the outage is logged once, and the gateway recovers by itself.
func TestScaleRedisOutage(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(),
		scaleSite{port: p, store: "store redis " + rd.URL(), extra: "redeem_rate_limit off"}), harness.CaddyOptions{}, p)[0]

	good := g.signIn(t, "steady")
	pending := g.mintUser(t, "pending")
	if user, _ := g.whoami(t, good); user != "steady" {
		t.Fatalf("before the outage: whoami %q", user)
	}
	rd.Kill()
	up.Reset()

	forged := &http.Cookie{Name: "__Host-ssogate", Value: strings.Repeat("Q", 43)}
	var took []time.Duration
	for i := range 20 {
		// Redeem: the token cannot be checked.
		r := g.read(t, http.MethodGet, "/redirect/"+pending.SSOToken, nil, "", "Accept: application/json")
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "store_unavailable") || r.cookie() != nil {
			t.Fatalf("redeem %d during the outage: %d %s, cookie %v; want 503 store_unavailable, no cookie", i, r.status, r.body, r.cookie())
		}
		took = append(took, r.took)
		// A cookie that cannot be checked is not let through.
		r = g.read(t, http.MethodGet, "/records", forged, "")
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("unknown cookie during the outage: %d, want 503", r.status)
		}
		took = append(took, r.took)
		// No cookie needs no store: 401 as always.
		if r := g.read(t, http.MethodGet, "/records", nil, ""); r.status != http.StatusUnauthorized {
			t.Fatalf("no cookie during the outage: %d, want 401", r.status)
		}
		// A real session may be served from this instance's cache for
		// an instant; after that it waits for the store too.
		if r := g.read(t, http.MethodGet, "/records", good, ""); r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
			t.Fatalf("valid cookie during the outage: %d, want 503 (or 200 from the cache)", r.status)
		}
		// Minting needs the store as well.
		if _, err := g.tryMint("nobody"); err == nil || !strings.Contains(err.Error(), "503") {
			t.Fatalf("mint during the outage: %v, want 503", err)
		}
	}
	for _, r := range up.Requests() {
		if u := r.Header.Get("X-Forwarded-User"); u != "steady" {
			t.Fatalf("during the outage the upstream got %s %s as %q: only the signed-in session may pass", r.Method, r.Path, u)
		}
	}
	slices.Sort(took)
	t.Logf("503 answers during the outage: median %v, max %v (of %d)", took[len(took)/2], took[len(took)-1], len(took))
	logs := g.caddy.Logs()
	if n := strings.Count(logs, `"store unavailable`); n != 1 {
		t.Errorf("%d store unavailable lines for one outage of 100 failed requests, want 1", n)
	}
	// Nor does the Redis client print each failed dial.
	if n := strings.Count(logs, "failed to dial"); n != 0 {
		t.Errorf("%d lines of go-redis dial errors in the log, want none at the default level", n)
	}

	rd.Restart()
	// The data is gone with the restart (no persistence), so a fresh sign-in
	// proves the recovery, without restarting Caddy.
	start := time.Now()
	harness.Eventually(t, "sign-in after Redis restarted", 15*time.Second, func() error {
		m, err := g.tryMint("after")
		if err != nil {
			return err
		}
		r, err := g.try(http.MethodGet, "/redirect/"+m.SSOToken, nil, "")
		if err != nil || r.status != http.StatusFound {
			return fmt.Errorf("redeem: %d %v", r.status, err)
		}
		if user, status := g.whoami(t, r.cookie()); user != "after" {
			return fmt.Errorf("whoami: %d %q", status, user)
		}
		return nil
	})
	t.Logf("recovered %v after Redis answered again", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(g.caddy.Logs(), `"store recovered"`) {
		t.Error(`no "store recovered" line after the outage`)
	}
}

// TestScaleSentinelFailover kills the Sentinel master under two gateways (one
// configured with the block form, one with a redis-sentinel:// URL): after the
// failover both mint and redeem again.
func TestScaleSentinelFailover(t *testing.T) {
	t.Parallel()
	s := harness.StartSentinel(t)
	up := harness.StartUpstream(t)
	pa, pb := harness.FreePort(t), harness.FreePort(t)
	addrs := s.SentinelAddrs()
	block := fmt.Sprintf("store redis {\n\t\t\taddrs %s\n\t\t\tmaster_name %s\n\t\t}", strings.Join(addrs, " "), s.MasterName())
	url := fmt.Sprintf("store redis redis-sentinel://%s/%s", strings.Join(addrs, ","), s.MasterName())
	gws := scaleStart(t, scaleCaddyfile("admin off", up.Addr(),
		scaleSite{port: pa, store: block}, scaleSite{port: pb, store: url}), harness.CaddyOptions{}, pa, pb)

	for _, g := range gws {
		if user, _ := g.whoami(t, g.signIn(t, "before")); user != "before" {
			t.Fatalf("%s before the failover: whoami %q", g.base, user)
		}
	}
	// Minted on one, redeemed on the other: both reach the same master.
	if user, _ := gws[1].whoami(t, gws[1].redeem(t, "/redirect/"+gws[0].mintUser(t, "crossed").SSOToken)); user != "crossed" {
		t.Fatalf("token minted via the block form, redeemed via the URL form: whoami %q", user)
	}

	old := s.KillMaster()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	newMaster, err := s.WaitFailover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover %s → %s", old, newMaster)
	// A redeem needs a replica's acknowledgement (consume_replicas): the
	// operator's replacement for the dead master.
	s.AddReplica(newMaster)
	for _, g := range gws {
		start := time.Now()
		harness.Eventually(t, g.base+" sign-in after the failover", 20*time.Second, func() error {
			m, err := g.tryMint("after-failover")
			if err != nil {
				return err
			}
			r, err := g.try(http.MethodGet, "/redirect/"+m.SSOToken, nil, "")
			if err != nil || r.status != http.StatusFound {
				return fmt.Errorf("redeem: %d %v", r.status, err)
			}
			if user, status := g.whoami(t, r.cookie()); user != "after-failover" {
				return fmt.Errorf("whoami: %d %q", status, user)
			}
			return nil
		})
		t.Logf("%s signs in again %v after the failover completed", g.base, time.Since(start).Round(time.Millisecond))
	}
}

// TestScaleCluster runs the whole flow on a 3-master Redis Cluster: the
// contract's keys are single keys in whatever slot they hash to, and the user
// index, in another slot, is written by a plain pipeline that go-redis splits
// by node.
func TestScaleCluster(t *testing.T) {
	t.Parallel()
	cl := harness.StartCluster(t, 3)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	store := fmt.Sprintf("store redis {\n\t\t\taddrs %s\n\t\t\tcluster\n\t\t}", strings.Join(cl.Addrs(), " "))
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), scaleSite{port: p, store: store}), harness.CaddyOptions{}, p)[0]
	ctx := context.Background()
	cc := cl.Client()

	// Mint: the token is under the contract's key, as written.
	m := g.mintUser(t, "clustered")
	tokKey := "ssogate:tok:" + harness.KeyHash(m.SSOToken)
	if n, err := cc.Exists(ctx, tokKey).Result(); err != nil || n != 1 {
		t.Fatalf("EXISTS %s = %d, %v; want the minted token under the SPEC key", tokKey, n, err)
	}
	// Redeem and a gated request.
	c := g.redeem(t, "/redirect/"+m.SSOToken)
	if user, status := g.whoami(t, c); user != "clustered" {
		t.Fatalf("gated request: %d as %q", status, user)
	}
	if n, _ := cc.Exists(ctx, tokKey).Result(); n != 0 {
		t.Fatal("the token key is still there after the redemption")
	}
	if n, err := cc.Exists(ctx, "ssogate:sess:"+harness.KeyHash(c.Value)).Result(); err != nil || n != 1 {
		t.Fatalf("session key: EXISTS = %d, %v", n, err)
	}

	// Logout.
	if r := g.read(t, http.MethodPost, "/sso/logout", c, "", "Accept: application/json"); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	harness.Eventually(t, "cookie refused after logout", time.Second, func() error {
		if _, status := g.whoami(t, c); status != http.StatusUnauthorized {
			return fmt.Errorf("answers %d", status)
		}
		return nil
	})

	// Revoke: several sessions of one user, whose keys land on different
	// nodes, all end.
	var cookies []*http.Cookie
	nodes := map[string]bool{}
	for range 8 {
		c := g.signIn(t, "revokee")
		cookies = append(cookies, c)
		slot, err := cc.ClusterKeySlot(ctx, "ssogate:sess:"+harness.KeyHash(c.Value)).Result()
		if err != nil {
			t.Fatal(err)
		}
		nodes[scaleSlotOwner(t, cl, slot)] = true
	}
	if len(nodes) < 2 {
		t.Logf("all 8 sessions landed on one node (possible, unlikely)")
	}
	r := g.read(t, http.MethodDelete, "/sso/sessions?userId=revokee", nil, "", "Authorization: Bearer "+scaleKey)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"revoked":8`) {
		t.Fatalf("revoke: %d %s; want 200 with 8 revoked", r.status, r.body)
	}
	harness.Eventually(t, "every revoked session refused", time.Second, func() error {
		for i, c := range cookies {
			if _, status := g.whoami(t, c); status != http.StatusUnauthorized {
				return fmt.Errorf("session %d answers %d", i, status)
			}
		}
		return nil
	})
	t.Logf("8 revoked sessions were spread over %d of 3 nodes", len(nodes))
}

// scaleSlotOwner is the address of the cluster node serving slot.
func scaleSlotOwner(t *testing.T, cl *harness.Cluster, slot int64) string {
	t.Helper()
	shards, err := cl.Client().ClusterShards(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		for _, r := range s.Slots {
			if r.Start <= slot && slot <= r.End && len(s.Nodes) > 0 {
				return fmt.Sprintf("%s:%d", s.Nodes[0].IP, s.Nodes[0].Port)
			}
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return ""
}

// scaleAccessLog is the access log the README documents: Caddy logs each
// request's URI as it arrived, before any handler runs, so the tokens in
// redeem links must be filtered out of it by the log's own encoder.
const scaleAccessLog = `log {
		format filter {
			request>uri regexp "(/redirect/|[?&](?:ssoToken|sso_token)=)[^/?&#]+" "${1}REDACTED"
		}
	}`

// TestScaleLogsHoldNoSecrets runs every kind of request with debug logging and
// the documented access log on, then searches everything Caddy wrote for the
// tokens, session ids and API key it saw.
func TestScaleLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	g := scaleStart(t, scaleCaddyfile("admin off\n\tlog {\n\t\tlevel DEBUG\n\t}", up.Addr(),
		scaleSite{port: p, store: "store redis " + rd.URL(), site: scaleAccessLog}), harness.CaddyOptions{}, p)[0]

	var secrets []string
	keep := func(s string) string { secrets = append(secrets, s); return s }
	for i, route := range []string{"/redirect/%s", "/consume_ssotoken/?ssoToken=%s&redirect=/app", "/auth?sso_token=%s&next=/home"} {
		tok := keep(g.mintUser(t, fmt.Sprint("logged-", i)).SSOToken)
		r := g.read(t, http.MethodGet, fmt.Sprintf(route, tok), nil, "")
		c := r.cookie()
		if r.status != http.StatusFound || c == nil {
			t.Fatalf("redeem %s: %d", route, r.status)
		}
		keep(c.Value)
		if user, _ := g.whoami(t, c); user == "" {
			t.Fatalf("session of %s does not work", route)
		}
		// A replay and a bad redirect are logged as rejections.
		g.read(t, http.MethodGet, fmt.Sprintf(route, tok), nil, "")
		g.read(t, http.MethodGet, "/auth?sso_token="+tok+"&next=https://evil.test/", nil, "")
	}
	c := g.signIn(t, "leaver")
	keep(c.Value)
	g.read(t, http.MethodPost, "/sso/logout", c, "")
	g.read(t, http.MethodDelete, "/sso/sessions?userId=logged-0", nil, "", "Authorization: Bearer "+scaleKey)
	keep(scaleKey)

	logs := g.caddy.Logs()
	for _, want := range []string{`"minted"`, `"redeemed"`, `"rejected"`, `"logout"`, `"revoked"`, `"handled request"`, `"uri":"/redirect/REDACTED"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %s event in the logs: is debug and access logging on?", want)
		}
	}
	for _, s := range secrets {
		if i := strings.Index(logs, s); i >= 0 {
			t.Errorf("a secret is in Caddy's logs: …%s…", logs[max(0, i-200):min(len(logs), i+60)])
		}
	}
	// Audit events name who did what: the user, and the credential where the
	// event has one.
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) != nil || e["audit"] == nil {
			continue
		}
		switch e["audit"] {
		case "minted", "redeemed", "revoked":
			if e["user"] == "" || e["user"] == nil || e["credential"] == nil {
				t.Errorf("%s event without user or credential: %s", e["audit"], sc.Text())
			}
		case "logout":
			if e["user"] != "leaver" {
				t.Errorf("logout event without its user: %s", sc.Text())
			}
		case "rejected":
			if e["reason"] == nil {
				t.Errorf("rejected event without a reason: %s", sc.Text())
			}
		}
	}
	t.Logf("searched %d bytes of logs for %d secrets", len(logs), len(secrets))
}

// scaleScrape reads the admin endpoint's /metrics into series → value.
func scaleScrape(t *testing.T, adminPort int) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ssogate_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// scaleMetricDelta lists the series that changed between two scrapes.
func scaleMetricDelta(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// TestScaleMetrics scrapes Caddy's admin /metrics around a mint, a redeem, a
// rejection, a logout and a revocation, and across a reload.
func TestScaleMetrics(t *testing.T) {
	t.Parallel()
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	cf := scaleCaddyfile("", up.Addr(), scaleSite{port: p, store: "store memory"})
	g := scaleStart(t, cf, harness.CaddyOptions{}, p)[0]
	admin := g.caddy.AdminPort()

	before := scaleScrape(t, admin)
	for _, s := range []string{
		`ssogate_tokens_minted_total{credential="scale-partner"}`,
		`ssogate_redemptions_total{result="success",route="auth"}`,
		`ssogate_store_errors_total{op="take_token"}`,
		`ssogate_sessions_created_total`,
		`ssogate_redeem_duration_seconds_count`,
	} {
		if _, ok := before[s]; !ok {
			t.Errorf("%s not exposed before any traffic", s)
		}
	}

	c := g.signIn(t, "counted")
	g.read(t, http.MethodGet, "/redirect/"+strings.Repeat("x", 43), nil, "")
	g.read(t, http.MethodGet, "/auth?sso_token="+strings.Repeat("y", 43)+"&next=https://evil.test/", nil, "")
	g.read(t, http.MethodPost, "/sso/logout", c, "")
	g.read(t, http.MethodDelete, "/sso/sessions?userId=counted", nil, "", "Authorization: Bearer "+scaleKey)

	delta := scaleMetricDelta(before, scaleScrape(t, admin))
	for series, want := range map[string]float64{
		`ssogate_tokens_minted_total{credential="scale-partner"}`:       1,
		`ssogate_redemptions_total{result="success",route="redirect"}`:  1,
		`ssogate_redemptions_total{result="rejected",route="redirect"}`: 1,
		`ssogate_redemptions_total{result="bad_redirect",route="auth"}`: 1,
		`ssogate_sessions_created_total`:                                1,
		`ssogate_revocations_total`:                                     1,
		`ssogate_redeem_duration_seconds_count`:                         3,
	} {
		if delta[series] != want {
			t.Errorf("%s moved by %v, want %v", series, delta[series], want)
		}
	}
	var moved []string
	for k := range delta {
		moved = append(moved, k)
	}
	sort.Strings(moved)
	t.Logf("series moved: %s", strings.Join(moved, ", "))

	// A reload gives Caddy a fresh registry: the counters are still there,
	// with their counts.
	mid := scaleScrape(t, admin)
	g.caddy.Reload(t, cf)
	after := scaleScrape(t, admin)
	for _, s := range []string{`ssogate_tokens_minted_total{credential="scale-partner"}`, `ssogate_sessions_created_total`} {
		if after[s] < mid[s] || after[s] == 0 {
			t.Errorf("%s after a reload: %v, before %v", s, after[s], mid[s])
		}
	}
}

// TestScaleReloadKeepsTokensAndSessions mints and signs in on the memory and
// the redis store, reloads Caddy with a changed config, and uses both after.
func TestScaleReloadKeepsTokensAndSessions(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	pm, pr := harness.FreePort(t), harness.FreePort(t)
	config := func(version string) string {
		mark := "header X-Config " + version
		return scaleCaddyfile("", up.Addr(),
			scaleSite{port: pm, store: "store memory", site: mark},
			scaleSite{port: pr, store: "store redis " + rd.URL(), site: mark})
	}
	gws := scaleStart(t, config("v1"), harness.CaddyOptions{}, pm, pr)

	type held struct {
		token  string
		cookie *http.Cookie
	}
	before := make([]held, len(gws))
	for i, g := range gws {
		before[i] = held{token: g.mintUser(t, "unredeemed").SSOToken, cookie: g.signIn(t, "reloaded")}
	}

	gws[0].caddy.Reload(t, config("v2"))

	for i, g := range gws {
		if r := g.read(t, http.MethodGet, "/whoami", before[i].cookie, ""); r.header.Get("X-Config") != "v2" {
			t.Fatalf("%s: X-Config %q after the reload; the new config is not running", g.base, r.header.Get("X-Config"))
		}
		if user, status := g.whoami(t, before[i].cookie); user != "reloaded" {
			t.Errorf("%s: a session from before the reload: %d as %q", g.base, status, user)
		}
		if user, _ := g.whoami(t, g.redeem(t, "/redirect/"+before[i].token)); user != "unredeemed" {
			t.Errorf("%s: a token minted before the reload signs in as %q", g.base, user)
		}
	}
}

// TestScaleRedeemRateLimit checks the default limit of 30 failures a minute
// per client IP, with the client IP taken from X-Forwarded-For because the
// server trusts the proxy at 127.0.0.1, as behind a load balancer.
func TestScaleRedeemRateLimit(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	global := "admin off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"
	g := scaleStart(t, scaleCaddyfile(global, up.Addr(), scaleSite{port: p, store: "store redis " + rd.URL()}), harness.CaddyOptions{}, p)[0]
	const attacker, other = "X-Forwarded-For: 198.51.100.7", "X-Forwarded-For: 198.51.100.8"

	good := g.mintUser(t, "patient")
	// Bad redirect targets do not count, however many.
	for range 40 {
		if r := g.read(t, http.MethodGet, "/auth?sso_token="+good.SSOToken+"&next=https://evil.test/", nil, "", attacker); r.status != http.StatusBadRequest {
			t.Fatalf("bad redirect: %d, want 400", r.status)
		}
	}
	for i := range 30 {
		if r := g.read(t, http.MethodGet, "/redirect/"+harness.KeyHash(fmt.Sprint(i))[:43], nil, "", attacker); r.status != http.StatusForbidden {
			t.Fatalf("bad token %d: %d, want 403", i+1, r.status)
		}
	}
	r := g.read(t, http.MethodGet, "/redirect/"+harness.KeyHash("31")[:43], nil, "", attacker, "Accept: application/json")
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != http.StatusTooManyRequests || err != nil || retry < 1 || retry > 60 || !strings.Contains(r.body, "rate_limited") {
		t.Fatalf("31st bad token: %d Retry-After %q %s; want 429 rate_limited, 1 to 60 s", r.status, r.header.Get("Retry-After"), r.body)
	}
	// A good token from that client is refused too, and not consumed: the
	// store was not asked.
	if r := g.read(t, http.MethodGet, "/redirect/"+good.SSOToken, nil, "", attacker); r.status != http.StatusTooManyRequests || r.cookie() != nil {
		t.Fatalf("good token from the limited client: %d, want 429 and no cookie", r.status)
	}
	if n, err := rd.Client().Exists(context.Background(), "ssogate:tok:"+harness.KeyHash(good.SSOToken)).Result(); err != nil || n != 1 {
		t.Fatalf("token consumed by a refused redeem (EXISTS = %d, %v)", n, err)
	}
	// Another client behind the same proxy is not limited.
	if r := g.read(t, http.MethodGet, "/redirect/"+good.SSOToken, nil, "", other); r.status != http.StatusFound {
		t.Fatalf("good token from another client: %d, want 302", r.status)
	}
	if !strings.Contains(g.caddy.Logs(), `"reason":"rate limited","client_ip":"198.51.100.7"`) {
		t.Error("no rate limit rejection logged for the client")
	}
}
