package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", addr(p))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		l.Close()
	}
}

func TestRedisKillRestart(t *testing.T) {
	start := time.Now()
	r := StartRedis(t)
	t.Logf("redis started in %v", time.Since(start))
	ctx := context.Background()
	if r.Addr() == "127.0.0.1:6379" {
		t.Fatal("harness used the system Redis port")
	}
	if got, want := r.URL(), "redis://"+r.Addr()+"/0"; got != want {
		t.Fatalf("URL = %q, want %q", got, want)
	}
	if err := r.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	r.Kill()
	if _, err := redisDo(r.Addr(), "PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}

	start = time.Now()
	r.Restart()
	t.Logf("redis restarted in %v", time.Since(start))
	if _, err := redisDo(r.Addr(), "PING"); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	// The same client must work again without a new one: the gateway's
	// client goes through the same reconnect.
	if err := r.Client().Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("GET after restart = %v, want redis.Nil (no persistence)", err)
	}
	if !strings.Contains(readLog(t, r.LogPath()), "Ready to accept connections") {
		t.Fatalf("log has no start message:\n%s", logTail(r.LogPath()))
	}

	r.Stop()
	if _, err := redisDo(r.Addr(), "PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
}

func TestRedisExtraArgsAndCommandStats(t *testing.T) {
	r := StartRedis(t, "--requirepass", "s3cret")
	if _, err := redisDo(r.Addr(), "GET", "x"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET without password: %v, want NOAUTH", err)
	}
	if err := r.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Client() does not use --requirepass: %v", err)
	}

	r2 := StartRedis(t)
	ctx := context.Background()
	if err := r2.ResetCommandStats(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r2.Client().Set(ctx, fmt.Sprint("k", i), "v", time.Minute)
	}
	r2.Client().Get(ctx, "k0")
	stats, err := r2.CommandStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats["set"] != 3 || stats["get"] != 1 {
		t.Fatalf("stats = %v, want set=3 get=1", stats)
	}
}

func TestParseCommandStats(t *testing.T) {
	got, err := parseCommandStats("# Commandstats\r\n" +
		"cmdstat_get:calls=10,usec=25,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=3,usec_per_call=1.50,rejected_calls=0,failed_calls=0\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["get"] != 10 || got["client|setinfo"] != 2 {
		t.Fatalf("got %v", got)
	}
}

func TestSentinelFailover(t *testing.T) {
	start := time.Now()
	s := StartSentinel(t)
	t.Logf("sentinel deployment ready in %v", time.Since(start))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName(),
		SentinelAddrs: s.SentinelAddrs(),
		DialTimeout:   time.Second,
		MaxRetries:    -1,
	})
	defer fc.Close()
	if err := fc.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: wait for the write to reach the replica
	// so that it survives the failover below.
	if err := fc.Wait(ctx, 1, time.Second).Err(); err != nil {
		t.Fatal(err)
	}

	old := s.KillMaster()
	start = time.Now()
	newMaster, err := s.WaitFailover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover %s -> %s in %v", old, newMaster, time.Since(start))
	if newMaster == old {
		t.Fatalf("new master %s is the old one", newMaster)
	}
	if got, err := s.MasterAddr(ctx); err != nil || got != newMaster {
		t.Fatalf("MasterAddr = %q, %v; want %s", got, err, newMaster)
	}

	// A go-redis failover client, as the gateway uses, writes to the new
	// master and still reads the replicated key.
	var lastErr error
	if err := poll(10*time.Second, func() error {
		lastErr = fc.Set(ctx, "after", "1", 0).Err()
		return lastErr
	}); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	if v, err := fc.Get(ctx, "before").Result(); err != nil || v != "1" {
		t.Fatalf("GET before = %q, %v", v, err)
	}
}

func TestClusterAcrossSlots(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("3-master cluster ready in %v", time.Since(start))
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc := c.Client()
	owners := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprintf("ssogate:tok:%d", i)
		if err := cc.Set(ctx, key, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		if v, err := cc.Get(ctx, key).Int(); err != nil || v != i {
			t.Fatalf("GET %s = %d, %v", key, v, err)
		}
		owners[ownerOf(t, c, key)] = true
	}
	if len(owners) != 3 {
		t.Fatalf("30 keys landed on %d masters, want all 3: %v", len(owners), owners)
	}
}

// ownerOf asks every node for key without following MOVED: only the
// master serving the key's slot answers.
func ownerOf(t *testing.T, c *Cluster, key string) string {
	t.Helper()
	owner := ""
	for _, a := range c.Addrs() {
		if _, err := redisDo(a, "GET", key); err == nil {
			if owner != "" {
				t.Fatalf("%s served by %s and %s", key, owner, a)
			}
			owner = a
		} else if !strings.Contains(err.Error(), "MOVED") {
			t.Fatalf("GET %s on %s: %v", key, a, err)
		}
	}
	if owner == "" {
		t.Fatalf("no node serves %s", key)
	}
	return owner
}

func TestCaddyBinaryFromEnv(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "caddy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSOGATE_CADDY", bin)
	if got := CaddyBinary(t); got != bin {
		t.Fatalf("CaddyBinary = %q, want %q", got, bin)
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// caddyfileFor is a plain reverse proxy in front of up on https://portal.test:port,
// with extra inside the site block.
func caddyfileFor(httpPort, port int, up *Upstream, extra string) string {
	return fmt.Sprintf(`{
	skip_install_trust
	auto_https disable_redirects
	http_port %d
}
https://portal.test:%d {
	tls internal
	%s
	reverse_proxy %s
}
`, httpPort, port, extra, up.Addr())
}

func TestCaddyUpstreamReload(t *testing.T) {
	up := StartUpstream(t)
	port := FreePort(t)
	httpPort := FreePort(t)
	site := fmt.Sprintf("https://portal.test:%d", port)

	start := time.Now()
	c := StartCaddy(t, caddyfileFor(httpPort, port, up, ""), CaddyOptions{})
	c.WaitHTTPS(t, fmt.Sprintf("portal.test:%d", port))
	t.Logf("caddy started and serving HTTPS in %v", time.Since(start))

	hc := c.Client(t)
	req, _ := http.NewRequest(http.MethodGet, site+"/patients/7?x=1", nil)
	req.Header.Set("Cookie", "__Host-ssogate=secret; other=1")
	req.Header.Set("X-Forwarded-User", "spoofed")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body UpstreamReply
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body.Path != "/patients/7" || body.Query != "x=1" || len(body.Padding) != 1024 {
		t.Fatalf("status %d, body %+v", resp.StatusCode, body)
	}
	if body.Cookie != "other=1" {
		t.Fatalf("upstream echoed cookies %q, want the gateway cookie left out", body.Cookie)
	}
	// No gateway in front here: the spoofed header arrives, and the
	// recording shows it, which is what a gateway test asserts against.
	if got := up.Requests(); len(got) != 1 || got[0].Header.Get("X-Forwarded-User") != "spoofed" {
		t.Fatalf("recorded %+v", got)
	}
	if resp.Header.Get("X-Frame-Options") != DefaultUpstreamXFO || resp.Header.Get("Content-Security-Policy") != DefaultUpstreamCSP {
		t.Fatalf("frame headers not passed through: %v", resp.Header)
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "portal_sid=") {
		t.Fatalf("no portal_sid cookie: %v", resp.Header)
	}

	// The jar keeps portal_sid, so the next request no longer gets one.
	jc := c.JarClient(t)
	for i, wantSet := range []bool{true, false} {
		req, _ := http.NewRequest(http.MethodGet, site+"/", nil)
		req.Header.Set("Accept", "text/html")
		resp, err := jc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if set := resp.Header.Get("Set-Cookie") != ""; set != wantSet {
			t.Fatalf("request %d: Set-Cookie present = %v, want %v", i, set, wantSet)
		}
		if want := fmt.Sprintf(`<p id="portal-cookie">%s</p>`, yesNo(!wantSet)); !strings.Contains(string(b), want) {
			t.Fatalf("request %d: page %s lacks %s", i, b, want)
		}
	}

	up.Reset()
	start = time.Now()
	c.Reload(t, caddyfileFor(httpPort, port, up, "header X-Reloaded yes"))
	t.Logf("caddy reloaded in %v", time.Since(start))
	resp, err = hc.Get(site + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Reloaded") != "yes" {
		t.Fatalf("reload not applied: %v", resp.Header)
	}
	if len(up.Requests()) != 1 {
		t.Fatalf("Reset did not forget: %d requests", len(up.Requests()))
	}

	// A second instance on the same data dir trusts the same CA.
	port2 := FreePort(t)
	c2 := StartCaddy(t, caddyfileFor(FreePort(t), port2, up, ""), CaddyOptions{DataDir: c.DataDir()})
	c2.WaitHTTPS(t, fmt.Sprintf("portal.test:%d", port2))
	resp, err = hc.Get(fmt.Sprintf("https://portal.test:%d/", port2))
	if err != nil {
		t.Fatalf("first instance's client does not trust the second: %v", err)
	}
	resp.Body.Close()

	c.Stop()
	if !strings.Contains(c.Logs(), "serving initial configuration") {
		t.Fatalf("Logs() misses Caddy's output:\n%s", c.Logs())
	}
	if _, err := hc.Get(site + "/"); err == nil {
		t.Fatal("Caddy still answers after Stop")
	}
}

func TestStartCaddyReportsBadConfig(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartCaddy(ft, "{\n\tskip_install_trust\n}\nhttps://portal.test:1 {\n\tno_such_directive\n}\n", CaddyOptions{})
	}()
	<-done
	if !strings.Contains(ft.msg, "no_such_directive") {
		t.Fatalf("failure does not show Caddy's log: %q", ft.msg)
	}
}

// fatalRecorder catches the Fatal of a helper under test; its caller runs the
// helper in a goroutine, since Fatal ends that goroutine.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUpstreamRecordsTrailersAndUpgrades(t *testing.T) {
	up := StartUpstream(t)
	conn, err := net.Dial("tcp", up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /a/..;/b?q=1 HTTP/1.1\r\nHost: x\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"2\r\nhi\r\n0\r\nX-T: v\r\n\r\n"+
		"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Seen: yes\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %s %v", resp.Status, resp.Header)
	}
	var reply UpgradeReply
	if err := json.NewDecoder(br).Decode(&reply); err != nil || reply.Header.Get("X-Seen") != "yes" {
		t.Fatalf("upgrade reply %+v: %v", reply, err)
	}
	reqs := up.Requests()
	if len(reqs) != 2 || reqs[0].RequestURI != "/a/..;/b?q=1" || reqs[0].Trailer.Get("X-T") != "v" || reqs[1].Path != "/ws" {
		t.Fatalf("recorded %+v", reqs)
	}
}
