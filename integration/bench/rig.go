// Package bench is ssogate's load benchmark, `make bench`: a Go benchmark,
// BenchmarkGateway in bench_test.go, run once with the real *testing.B:
//
//	go test -run '^$' -bench Gateway -benchtime 1x -timeout 15m ./integration/bench \
//		[-rounds 5] [-duration 3s] [-conns 16] [-out bench-results/latest.md]
//
// In one run, on this machine and loopback only, it starts through the
// integration harness redis-server, a fixed upstream (1 KiB body), Caddy with
// a plain reverse_proxy, and Caddy with ssogate (store redis) in front of the
// same upstream, once with the session cache, once with `session_cache off`
// and once with identity_assertion (a signed JWT on every request), then
// measures:
//
//   - signed-in requests/s and p50/p99 latency of each, in alternating rounds
//     (medians), with its own HTTP/1.1 keep-alive load generator (load.go);
//   - redeem latency at a fixed 1,000 redeems/s (open loop), without and
//     with a replica's confirmation of each consumed token (a replica on
//     loopback, consume_replicas 1), and the most
//     redeems/s it sustains;
//   - Redis commands per signed-in request and per redeem (INFO commandstats);
//   - memory per idle session of the memory store, and the gate's
//     allocations per request (the caddymodule Go benchmarks).
//
// It prints a markdown report, writes it to -out and reports the headline
// figures as benchmark metrics. Nothing is asserted: the numbers are for the
// README and for spotting regressions by eye.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ssogate/ssogate/integration/harness"
	"github.com/ssogate/ssogate/internal/assertion"
	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
	"github.com/ssogate/ssogate/plugins/store/memory"
)

// options are the benchmark's flags (bench_test.go).
type options struct {
	rounds     int
	duration   time.Duration
	conns      int
	redeemRate int
	redeemFor  time.Duration
	sessions   int
	benchtime  string
	out        string
}

// target is one Caddy configuration under test.
type target struct {
	name string
	addr string // 127.0.0.1:port
}

func run(t testing.TB, o options, root string) *report {
	began := time.Now()
	r := &report{opts: o, date: began.UTC().Format("2006-01-02 15:04 MST"), loadBefore: loadAverage()}

	log.Print("starting redis-server, a replica, the upstream and five Caddy instances")
	rds := harness.StartRedis(t, "--repl-diskless-sync-delay", "0")
	// A replica, for the redeems that wait for its acknowledgement.
	host, port, _ := strings.Cut(rds.Addr(), ":")
	replica := harness.StartRedis(t, "--replicaof", host, port)
	replica.WaitSynced(t)
	up := startUpstream(t)
	apiKey := token.New()
	keyHash := harness.KeyHash(apiKey)

	gated := startCaddy(t, "ssogate, session cache (default)", gatedSite(rds.URL(), keyHash, up, ""), 401)
	uncached := startCaddy(t, "ssogate, session_cache off", gatedSite(rds.URL(), keyHash, up, "session_cache off"), 401)
	plain := startCaddy(t, "plain reverse_proxy", "\treverse_proxy "+up+"\n", 200)
	// Every redeem waits for the replica (WAIT 1 250 after taking), as
	// Sentinel and Cluster deployments do by default.
	confirmed := startCaddy(t, "ssogate, consume_replicas 1", gatedSite(rds.URL()+" {\n\t\t\tconsume_replicas 1\n\t\t}", keyHash, up, ""), 401)
	asserted := startCaddy(t, "ssogate + identity_assertion", gatedSite(rds.URL(), keyHash, up, assertionConfig(t)), 401)
	targets := []target{plain, gated, uncached, asserted}

	log.Printf("signing in %d browsers", o.conns)
	cookies := make([]string, o.conns)
	for i := range cookies {
		cookies[i] = "portal_sid=" + token.New()[:22] + "; _ga=GA1.1.1234567890.1700000000; " +
			"__Host-ssogate=" + signIn(t, gated.addr, apiKey, fmt.Sprintf("bench-user-%d", i)) + "; lang=en"
	}
	reqs := map[string][][]byte{}
	for _, tg := range targets {
		for _, c := range cookies {
			reqs[tg.name] = append(reqs[tg.name], getRequest(tg.addr, "/patients/42?tab=summary", c))
		}
	}

	// Warm-up: connections, Caddy's pools, the session cache (which the
	// gateway distrusts for a few seconds after its Redis subscription is
	// made), and the CPU's frequency.
	for _, tg := range targets {
		res, err := closedLoop(tg.addr, reqs[tg.name], 200, time.Second)
		check(t, err, "warm-up %s", tg.name)
		if res.errors > 0 {
			t.Fatalf("warm-up %s: %d errors, first: %v", tg.name, res.errors, res.firstErr)
		}
	}

	waitWarmCache(t, rds, gated, reqs[gated.name])
	waitWarmCache(t, rds, asserted, reqs[asserted.name])

	log.Printf("throughput: %d rounds of %s per configuration, alternating", o.rounds, o.duration)
	r.throughput = map[string][]round{}
	r.commands = map[string]commandCount{}
	for rn := range o.rounds {
		for k := range targets {
			tg := targets[(rn+k)%len(targets)]
			before := commandStats(t, rds)
			res, err := closedLoop(tg.addr, reqs[tg.name], 200, o.duration)
			check(t, err, "round %d %s", rn+1, tg.name)
			if res.errors > 0 {
				t.Fatalf("round %d %s: %d errors, first: %v", rn+1, tg.name, res.errors, res.firstErr)
			}
			after := commandStats(t, rds)
			cc := r.commands[tg.name]
			cc.add(before, after, res.requests)
			r.commands[tg.name] = cc
			r.throughput[tg.name] = append(r.throughput[tg.name], round{rate: res.rate(), p50: res.percentile(50), p99: res.percentile(99)})
			log.Printf("  round %d %-34s %8.0f req/s  p50 %s  p99 %s", rn+1, tg.name, res.rate(), ms(res.percentile(50)), ms(res.percentile(99)))
		}
	}
	r.targets = []string{plain.name, gated.name, uncached.name, asserted.name}

	log.Printf("redeem: %d/s for %s, open loop", o.redeemRate, o.redeemFor)
	n := o.redeemRate * int(o.redeemFor/time.Millisecond) / 1000
	links := mintDirect(t, rds.Client(), gated.addr, n)
	before := commandStats(t, rds)
	res, err := openLoop(gated.addr, 32, n, time.Second/time.Duration(o.redeemRate), func(i int) []byte { return links[i] }, 302)
	check(t, err, "fixed-rate redeem")
	if res.errors > 0 {
		t.Fatalf("fixed-rate redeem: %d errors, first: %v", res.errors, res.firstErr)
	}
	r.redeemFixed = res
	cc := commandCount{}
	cc.add(before, commandStats(t, rds), res.requests)
	r.commands["redeem"] = cc
	log.Printf("  p50 %s  p99 %s  max %s", ms(res.percentile(50)), ms(res.percentile(99)), ms(res.percentile(100)))

	log.Printf("redeem with replica confirmation: %d/s for %s, open loop", o.redeemRate, o.redeemFor)
	links = mintDirect(t, rds.Client(), confirmed.addr, n)
	before = commandStats(t, rds)
	res, err = openLoop(confirmed.addr, 32, n, time.Second/time.Duration(o.redeemRate), func(i int) []byte { return links[i] }, 302)
	check(t, err, "fixed-rate confirmed redeem")
	if res.errors > 0 {
		t.Fatalf("fixed-rate confirmed redeem: %d errors, first: %v", res.errors, res.firstErr)
	}
	r.redeemConfirmed = res
	cc = commandCount{}
	cc.add(before, commandStats(t, rds), res.requests)
	r.commands["redeem, consume_replicas 1"] = cc
	log.Printf("  p50 %s  p99 %s  max %s", ms(res.percentile(50)), ms(res.percentile(99)), ms(res.percentile(100)))

	log.Print("redeem: maximum rate, closed loop")
	links = mintDirect(t, rds.Client(), gated.addr, 40000)
	res, err = drainLoop(gated.addr, o.conns, links, 302, 3*time.Second)
	check(t, err, "maximum redeem rate")
	if res.errors > 0 {
		t.Fatalf("maximum redeem rate: %d errors, first: %v", res.errors, res.firstErr)
	}
	r.redeemMax = res
	r.redeemMaxExhausted = res.requests >= len(links)
	log.Printf("  %.0f redeems/s", res.rate())

	log.Printf("memory store: %d idle sessions", o.sessions)
	r.memPerSession = memoryPerSession(t, o.sessions)

	log.Print("Go benchmarks of ./caddymodule")
	r.goBench = goBenchmarks(t, root, o.benchtime)

	r.cpu = cpuModel()
	r.loadAfter = loadAverage()
	r.took = time.Since(began)
	return r
}

// waitWarmCache waits until every session is in the gateway's cache: a
// round of one request per session costs Redis no command. The gateway
// bypasses its cache for a few seconds after its Redis subscription is made,
// which a fast start may not have left behind yet.
func waitWarmCache(t testing.TB, rds *harness.Redis, tg target, reqs [][]byte) {
	harness.Eventually(t, "a warm session cache", 15*time.Second, func() error {
		before := commandStats(t, rds)
		for _, req := range reqs {
			c, err := dial(tg.addr)
			check(t, err, "cache probe")
			status, _, err := c.do(req, false)
			c.close()
			if err != nil || status != 200 {
				t.Fatalf("cache probe: status %d, %v", status, err)
			}
		}
		if n := commandStats(t, rds)["getex"] - before["getex"]; n != 0 {
			return fmt.Errorf("session cache still cold: %d of %d requests asked Redis", n, len(reqs))
		}
		return nil
	})
}

// gatedSite is the site block of a gateway in front of upstream.
func gatedSite(redisURL, keyHash, upstream, extra string) string {
	return fmt.Sprintf(`	ssogate {
		store redis %s
		credential bench {
			key_sha256 %s
			users *
			claims group=org-a
		}
		# All load comes from one IP, which the failure limit would count.
		redeem_rate_limit off
		# The portal embedded, as the product is used: every response
		# carries the framing policy and has its cookies rewritten.
		embed_from https://emr.test
		%s
	}
	reverse_proxy %s
`, redisURL, keyHash, extra, upstream)
}

// startCaddy runs one Caddy with site on a free port, over cleartext HTTP:
// TLS costs the same with and without the gateway, so it would only dilute
// the difference measured. It returns once the site answers want on /.
func startCaddy(t testing.TB, name, site string, want int) target {
	port := harness.FreePort(t)
	cf := fmt.Sprintf(`{
	admin off
	skip_install_trust
	auto_https off
}
http://:%d {
%s}
`, port, site)
	harness.StartCaddy(t, cf, harness.CaddyOptions{})
	tg := target{name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	harness.Eventually(t, name+" on "+tg.addr, 30*time.Second, func() error {
		resp, err := http.Get("http://" + tg.addr + "/")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("status %d, want %d", resp.StatusCode, want)
		}
		return nil
	})
	return tg
}

// startUpstream serves the same 1 KiB page to every request, as a portal's
// cached page would, and returns its address.
func startUpstream(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, err, "upstream listen")
	body := bytes.Repeat([]byte("x"), 1024)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/html; charset=utf-8"}
			h["Content-Length"] = []string{"1024"}
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// signIn mints a link through the API and redeems it, as an embedding app
// and its user's browser would, and returns the session cookie's value.
func signIn(t testing.TB, addr, apiKey, user string) string {
	hc := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/sso/tokens", strings.NewReader(`{"userId":"`+user+`"}`))
	check(t, err, "mint request")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	check(t, err, "mint")
	var minted harness.MintAnswer
	err = json.NewDecoder(resp.Body).Decode(&minted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil {
		t.Fatalf("mint: %s %v", resp.Status, err)
	}
	req, err = http.NewRequest(http.MethodGet, "http://"+addr+"/redirect/"+minted.SSOToken, nil)
	check(t, err, "redeem request")
	req.Header.Set("Sec-Fetch-Mode", "navigate") // a browser's navigation redeems at once
	req.Header.Set("Sec-Fetch-Dest", "document")
	resp, err = hc.Do(req)
	check(t, err, "redeem")
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-ssogate" && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("redeem: %s without a session cookie", resp.Status)
	return ""
}

// mintDirect writes n tokens straight into Redis, as a backend minting with
// the documented key schema does, and returns their redeem requests.
func mintDirect(t testing.TB, rc *goredis.Client, addr string, n int) [][]byte {
	reqs := make([][]byte, n)
	ctx := context.Background()
	iat := time.Now().UTC().Format(time.RFC3339)
	const batch = 1000
	for start := 0; start < n; start += batch {
		pipe := rc.Pipeline()
		for i := start; i < min(start+batch, n); i++ {
			tok := token.New()
			rec, _ := json.Marshal(store.Token{UserID: fmt.Sprintf("redeem-user-%d", i), Claims: map[string]string{"group": "org-a"}, IssuedAt: iat})
			pipe.SetNX(ctx, "ssogate:tok:"+token.Hash(tok), rec, 30*time.Second)
			reqs[i] = getRequest(addr, "/redirect/"+tok, "")
		}
		_, err := pipe.Exec(ctx)
		check(t, err, "minting %d tokens", n)
	}
	return reqs
}

// commandStats snapshots INFO commandstats.
func commandStats(t testing.TB, r *harness.Redis) map[string]int64 {
	s, err := r.CommandStats(context.Background())
	check(t, err, "INFO commandstats")
	return s
}

// commandCount accumulates Redis commands over some requests.
type commandCount struct {
	requests int
	calls    map[string]int64
}

// notPerRequest are commands no request causes: the benchmark's own INFO,
// and the PINGs with which the invalidation subscriber checks a quiet
// channel about once a second.
var notPerRequest = map[string]bool{"info": true, "ping": true, "config|resetstat": true}

func (c *commandCount) add(before, after map[string]int64, requests int) {
	if c.calls == nil {
		c.calls = map[string]int64{}
	}
	c.requests += requests
	for name, n := range after {
		if d := n - before[name]; d > 0 && !notPerRequest[name] {
			c.calls[name] += d
		}
	}
}

// perRequest formats the commands per request, total then by command.
func (c commandCount) perRequest() string {
	if c.requests == 0 {
		return "n/a"
	}
	var total int64
	names := make([]string, 0, len(c.calls))
	for name, n := range c.calls {
		total += n
		names = append(names, name)
	}
	slices.Sort(names)
	s := fmt.Sprintf("%.4g", float64(total)/float64(c.requests))
	if len(names) > 0 {
		parts := make([]string, len(names))
		for i, name := range names {
			parts[i] = fmt.Sprintf("%s %.4g", strings.ToUpper(name), float64(c.calls[name])/float64(c.requests))
		}
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// memoryPerSession fills a memory store of its own with n idle sessions and
// returns the heap growth per session, after a full GC on both sides. The
// sessions look like real ones: their own user id, the claims their
// organisation stamps on every session.
func memoryPerSession(t testing.TB, n int) float64 {
	ctx := context.Background()
	m := memory.New(time.Now, time.Hour)
	defer m.Close()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = token.Hash(token.New())
	}
	claims := map[string]string{"group": "org-a"}
	now := time.Now()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	for i, k := range keys {
		// The user id is made here, so that it counts: the store keeps
		// the caller's string.
		s := store.Session{UserID: fmt.Sprintf("user-%07d", i), Claims: claims, CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour)}
		check(t, m.AddSession(ctx, k, s, 30*time.Minute), "AddSession")
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	runtime.KeepAlive(m)
	runtime.KeepAlive(keys)
	return float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / float64(n)
}

// goBenchmarks runs the caddymodule microbenchmarks and returns their lines.
func goBenchmarks(t testing.TB, root, benchtime string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run=^$", "-bench=.", "-benchmem", "-benchtime="+benchtime, "./caddymodule/")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test -bench: %v\n%s", err, out)
	}
	var lines []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	if len(lines) == 0 {
		t.Fatalf("go test -bench printed no results:\n%s", out)
	}
	return lines
}

// loadAverage is the 1-minute load average, to tell a quiet machine's
// numbers from a busy one's.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// assertionConfig is the identity_assertion block of the gateway that signs
// identities, with a fresh key file.
func assertionConfig(t testing.TB) string {
	pemBytes, _, err := assertion.NewKeyPEM()
	check(t, err, "assertion key")
	path := filepath.Join(t.TempDir(), "assertion.pem")
	check(t, os.WriteFile(path, pemBytes, 0o600), "assertion key file")
	return "identity_assertion {\n\t\t\tkey bench " + path + "\n\t\t}"
}

// check fails the run with a message when err is not nil.
func check(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
