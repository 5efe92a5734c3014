package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ssogate/ssogate/integration/harness"
)

// TestOpsHealthFollowsRedis: /sso/health answers 200 while Redis answers, 503
// within 2 s of Redis being killed, and 200 again once it is back, without a
// restart of Caddy.
func TestOpsHealthFollowsRedis(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(),
		scaleSite{port: p, store: "store redis " + rd.URL()}), harness.CaddyOptions{}, p)[0]

	health := func() (reply, error) {
		r, err := g.try(http.MethodGet, "/sso/health", nil, "")
		if err != nil {
			return r, err
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("health Cache-Control %q, want no-store", cc)
		}
		return r, nil
	}
	want := func(status int, body string) func() error {
		return func() error {
			r, err := health()
			if err != nil {
				return err
			}
			if r.status != status || strings.TrimSpace(r.body) != body {
				return fmt.Errorf("%d %s", r.status, r.body)
			}
			return nil
		}
	}
	const ok, down = `{"status":"ok","store":"ok"}`, `{"status":"unavailable","store":"unavailable"}`
	if err := want(http.StatusOK, ok)(); err != nil {
		t.Fatalf("health with Redis up: %v", err)
	}

	// Many probes at once cost the store at most one PING a second (plus
	// the session cache subscription's heartbeat, one a second).
	ctx := context.Background()
	if err := rd.ResetCommandStats(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const probers, each = 8, 25
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range probers {
		wg.Go(func() {
			for range each {
				if r, err := g.try(http.MethodGet, "/sso/health", nil, ""); err != nil || r.status != http.StatusOK {
					failed.Add(1)
				}
				time.Sleep(100 * time.Millisecond) // spread over a few seconds of cache lifetimes
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stats, err := rd.CommandStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d concurrent health checks failed with Redis up", n, probers*each)
	}
	seconds := int64(elapsed/time.Second) + 1
	if pings := stats["ping"]; pings < 1 || pings > 2*seconds+1 {
		t.Fatalf("%d PINGs for %d health checks in %v, want 1 to %d", pings, probers*each, elapsed, 2*seconds+1)
	}
	t.Logf("%d concurrent health checks in %v cost %d PINGs", probers*each, elapsed.Round(time.Millisecond), stats["ping"])

	// No credential, no session: a load balancer's plain GET.
	rd.Kill()
	killed := time.Now()
	harness.Eventually(t, "503 after Redis was killed", 2*time.Second, want(http.StatusServiceUnavailable, down))
	t.Logf("503 %v after the kill", time.Since(killed).Round(time.Millisecond))
	rd.Restart()
	restarted := time.Now()
	harness.Eventually(t, "200 after Redis came back", 10*time.Second, want(http.StatusOK, ok))
	t.Logf("200 %v after Redis restarted", time.Since(restarted).Round(time.Millisecond))
	// The same Caddy process all along.
	if n := strings.Count(g.caddy.Logs(), "serving initial configuration"); n != 1 {
		t.Fatalf("Caddy started %d times", n)
	}
}

// TestOpsHandleErrorsBrands: with error_pages caddy, a site's handle_errors
// answers the gateway's 401 and 403 with its own page, seeing the status and
// the code, and the page keeps the embed_from framing policy.
func TestOpsHandleErrorsBrands(t *testing.T) {
	t.Parallel()
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	g := scaleStart(t, scaleCaddyfile("admin off", up.Addr(), scaleSite{
		port:  p,
		store: "store memory",
		extra: "error_pages caddy\n\t\tembed_from https://emr.test:9443\n\t\tredeem_rate_limit off",
		site: `handle_errors {
		header Content-Type "text/html; charset=utf-8"
		respond "<h1>Acme portal</h1><p>{http.error.status_code} {http.error.message}: {ssogate.error.title}</p>"
	}`,
	}), harness.CaddyOptions{}, p)[0]

	for _, c := range []struct {
		what, path string
		headers    []string
		status     int
		body       string
	}{
		{"no session, in a frame", "/records", []string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: iframe", "Accept: text/html"},
			http.StatusUnauthorized, "<h1>Acme portal</h1><p>401 not_signed_in: You are not signed in, or your session has ended.</p>"},
		{"unknown token", "/redirect/" + strings.Repeat("Z", 43), []string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document", "Accept: text/html"},
			http.StatusForbidden, "<h1>Acme portal</h1><p>403 invalid_or_used_token: This sign-in link was already used or has expired.</p>"},
	} {
		r := g.read(t, http.MethodGet, c.path, nil, "", c.headers...)
		if r.status != c.status || r.body != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.what, r.status, r.body, c.status, c.body)
		}
		if csp := r.header.Get("Content-Security-Policy"); csp != "frame-ancestors 'self' https://emr.test:9443" {
			t.Errorf("%s: CSP %q, want the embed_from frame-ancestors", c.what, csp)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q", c.what, cc)
		}
	}
	// The health endpoint is not an error page: it stays JSON.
	if r := g.read(t, http.MethodGet, "/sso/health", nil, ""); r.status != http.StatusOK || !strings.Contains(r.body, `"status":"ok"`) {
		t.Errorf("health with error_pages caddy: %d %q", r.status, r.body)
	}
}

// TestOpsMetricsMove scrapes the new series around the events that move
// them: the store going down and up, API key failures, session cache hits
// and misses, and the build info.
func TestOpsMetricsMove(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	p := harness.FreePort(t)
	// A second credential, allowed only to mint, to be refused a revocation.
	const mintOnlyKey = "it-mint-only-00112233445566778899aabbccdd"
	extra := fmt.Sprintf("redeem_rate_limit off\n\t\tcredential mint-only {\n\t\t\tkey_sha256 %s\n\t\t\tusers *\n\t\t}", harness.KeyHash(mintOnlyKey))
	cf := scaleCaddyfile("", up.Addr(), scaleSite{port: p, store: "store redis " + rd.URL(), extra: extra})
	g := scaleStart(t, cf, harness.CaddyOptions{}, p)[0]
	admin := g.caddy.AdminPort()

	before := scaleScrape(t, admin)
	var build []string
	for s, v := range before {
		if strings.HasPrefix(s, "ssogate_build_info{") && v == 1 {
			build = append(build, s)
		}
	}
	if len(build) != 1 || !strings.Contains(build[0], `version="`) {
		t.Fatalf("ssogate_build_info: %v, want one series with a version label at 1", build)
	}
	for _, s := range []string{`ssogate_store_up`, `ssogate_session_cache_hits_total`, `ssogate_session_cache_misses_total`,
		`ssogate_api_auth_failures_total{reason="no_key"}`, `ssogate_api_auth_failures_total{reason="wrong_key"}`,
		`ssogate_api_auth_failures_total{reason="not_allowed"}`} {
		if _, ok := before[s]; !ok {
			t.Errorf("%s not exposed before any traffic", s)
		}
	}
	if before["ssogate_store_up"] != 1 {
		t.Errorf("ssogate_store_up %v with Redis up, want 1", before["ssogate_store_up"])
	}

	c := g.signIn(t, "metered")
	g.whoami(t, c)
	// The cache serves sessions once its subscription to Redis is proven
	// live (right after a start it asks the store every time).
	harness.Eventually(t, "a session served from the cache", 5*time.Second, func() error {
		g.whoami(t, c)
		if d := scaleMetricDelta(before, scaleScrape(t, admin)); d[`ssogate_session_cache_hits_total`] < 1 {
			return fmt.Errorf("no hit yet: %v misses", d[`ssogate_session_cache_misses_total`])
		}
		return nil
	})
	g.read(t, http.MethodPost, "/sso/tokens", nil, `{"userId":"x"}`)
	g.read(t, http.MethodPost, "/sso/tokens", nil, `{"userId":"x"}`, "Authorization: Bearer not-a-key-0123456789abcdef")
	g.read(t, http.MethodPost, "/sso/tokens", nil, `{"userId":"x"}`, "Authorization: Bearer not-a-key-0123456789abcdef")
	if r := g.read(t, http.MethodDelete, "/sso/sessions?userId=metered", nil, "", "Authorization: Bearer "+mintOnlyKey); r.status != http.StatusForbidden {
		t.Fatalf("revocation by a mint-only credential: %d %s", r.status, r.body)
	}

	delta := scaleMetricDelta(before, scaleScrape(t, admin))
	for series, want := range map[string]float64{
		`ssogate_api_auth_failures_total{reason="no_key"}`:      1,
		`ssogate_api_auth_failures_total{reason="wrong_key"}`:   2,
		`ssogate_api_auth_failures_total{reason="not_allowed"}`: 1,
		// At least the first request with the new cookie asks the store.
		`ssogate_session_cache_misses_total`: 1,
		`ssogate_session_cache_hits_total`:   1,
	} {
		if strings.Contains(series, "session_cache") && delta[series] >= want {
			continue
		}
		if delta[series] != want {
			t.Errorf("%s moved by %v, want %v", series, delta[series], want)
		}
	}

	rd.Kill()
	harness.Eventually(t, "ssogate_store_up at 0 with Redis killed", 5*time.Second, func() error {
		g.try(http.MethodGet, "/sso/health", nil, "")
		if v := scaleScrape(t, admin)["ssogate_store_up"]; v != 0 {
			return fmt.Errorf("ssogate_store_up %v", v)
		}
		return nil
	})
	rd.Restart()
	harness.Eventually(t, "ssogate_store_up back at 1", 10*time.Second, func() error {
		g.try(http.MethodGet, "/sso/health", nil, "")
		if v := scaleScrape(t, admin)["ssogate_store_up"]; v != 1 {
			return fmt.Errorf("ssogate_store_up %v", v)
		}
		return nil
	})
	after := scaleScrape(t, admin)
	var moved []string
	for k := range scaleMetricDelta(before, after) {
		moved = append(moved, k)
	}
	sort.Strings(moved)
	t.Logf("series moved: %s", strings.Join(moved, ", "))
	if after[`ssogate_store_errors_total{op="ping"}`] < 1 {
		t.Errorf(`ssogate_store_errors_total{op="ping"} %v after a failed health check`, after[`ssogate_store_errors_total{op="ping"}`])
	}

	// A reload gives Caddy a fresh registry: the new series are in it, with
	// their counts.
	g.caddy.Reload(t, cf)
	reloaded := scaleScrape(t, admin)
	for _, s := range []string{`ssogate_api_auth_failures_total{reason="wrong_key"}`, `ssogate_session_cache_hits_total`, `ssogate_store_errors_total{op="ping"}`} {
		if reloaded[s] < after[s] || reloaded[s] == 0 {
			t.Errorf("%s after a reload: %v, before %v", s, reloaded[s], after[s])
		}
	}
	if reloaded["ssogate_store_up"] != 1 || reloaded[build[0]] != 1 {
		t.Errorf("after a reload: ssogate_store_up %v, %s %v", reloaded["ssogate_store_up"], build[0], reloaded[build[0]])
	}
}

// TestOpsHandleErrorsBrandsInAFrame: the branded 401 of error_pages caddy
// shows inside the embedding app's cross-site iframe in Chromium (the
// embed_from framing policy is kept on the Caddy error).
func TestOpsHandleErrorsBrandsInAFrame(t *testing.T) {
	t.Parallel()
	up := harness.StartUpstream(t)
	portalPort, emrPort := harness.FreePort(t), harness.FreePort(t)
	pages := t.TempDir()
	portal := fmt.Sprintf("https://portal.test:%d", portalPort)
	emr := fmt.Sprintf("https://emr.test:%d", emrPort)
	cf := scaleCaddyfile("admin off", up.Addr(), scaleSite{
		port:  portalPort,
		store: "store memory",
		extra: "error_pages caddy\n\t\tembed_from " + emr,
		site: `handle_errors {
		header Content-Type "text/html; charset=utf-8"
		respond "<!doctype html><h1>Acme portal</h1><p>{http.error.status_code} {http.error.message}</p>"
	}`,
	}) + fmt.Sprintf("%s {\n\ttls internal\n\troot * %s\n\tfile_server\n}\n", emr, pages)
	page := `<!doctype html><html><head><meta charset="utf-8"><title>EMR</title></head><body>
<iframe id="portal" width="800" height="400" src="` + portal + `/records"></iframe></body></html>`
	if err := os.WriteFile(filepath.Join(pages, "embed.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	c := harness.StartCaddy(t, cf, harness.CaddyOptions{})
	c.WaitHTTPS(t, strings.TrimPrefix(portal, "https://"))
	c.WaitHTTPS(t, strings.TrimPrefix(emr, "https://"))

	ctx := harness.StartBrowser(t, harness.BrowserOptions{HostMap: []string{"portal.test", "emr.test"}})
	nctx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(emr+"/embed.html")); err != nil {
		t.Fatalf("open the embedding page: %v", err)
	}
	fctx := harness.FrameContext(ctx, t, portal+"/")
	f := browserFrameWhen(t, fctx, "the branded 401 in the frame", func(f browserFrame) bool {
		return strings.Contains(f.Text, "Acme portal")
	})
	if f.blocked() || !strings.Contains(f.Text, "401 not_signed_in") {
		t.Fatalf("frame: %s", f)
	}
}
