package integration

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/ssogate/ssogate/client"
	"github.com/ssogate/ssogate/integration/harness"
)

// browserAPIKey is the minting key of the browser tests' gateways.
const browserAPIKey = "it-browser-5e6f708192a3b4c5d6e7f8091a2b3c4d"

// browserWait bounds every wait on the browser: a load, a frame, a navigation.
const browserWait = 15 * time.Second

// browserHosts are mapped to 127.0.0.1 in the browser. portal.test is the
// gateway; emr.test the embedding app listed in embed_from; other.test a site
// that is not.
var browserHosts = []string{"portal.test", "emr.test", "other.test"}

// browserSites is one real Caddy holding every site of the browser tests: a
// gateway per configuration, all on portal.test, and the embedding pages.
type browserSites struct {
	caddy    *harness.Caddy
	upstream *harness.Upstream
	// Gateways by configuration, as https://portal.test:<port>.
	embed     string // embed_from https://emr.test:<port>
	noRewrite string // the same with rewrite_upstream_cookies off
	plain     string // no embed_from: the control
	// unpartitioned has embed_from, but Caddy's header directive strips
	// Partitioned from the session cookie: the control for Partitioned.
	unpartitioned string
	// cookieCtl is no gateway: /set sets a `SameSite=None; Secure;
	// Partitioned` cookie and refreshes to /get, which shows whether it
	// came back. Framed, it is the control of whether a browser keeps
	// cookies in a frame at all.
	cookieCtl string
	pages     string // directory served on emr.test and other.test
	pagesPort int
}

// startBrowserSites starts the upstream and Caddy and waits until every site
// serves its certificate.
func startBrowserSites(t *testing.T) *browserSites {
	t.Helper()
	s := &browserSites{upstream: harness.StartUpstream(t), pages: t.TempDir(), pagesPort: harness.FreePort(t)}
	ports := map[*string]int{&s.embed: harness.FreePort(t), &s.noRewrite: harness.FreePort(t),
		&s.plain: harness.FreePort(t), &s.unpartitioned: harness.FreePort(t), &s.cookieCtl: harness.FreePort(t)}
	for base, port := range ports {
		*base = fmt.Sprintf("https://portal.test:%d", port)
	}
	emr := fmt.Sprintf("https://emr.test:%d", s.pagesPort)
	site := func(base, siteExtra, ssogateExtra string) string {
		return fmt.Sprintf(`%s {
	tls internal
	%s
	ssogate {
		store memory
		credential browser-emr {
			key_sha256 %s
			users *
		}
		%s
	}
	reverse_proxy %s
}
`, base, siteExtra, harness.KeyHash(browserAPIKey), ssogateExtra, s.upstream.Addr())
	}
	caddyfile := `{
	admin off
	skip_install_trust
	auto_https disable_redirects
}
` + site(s.embed, "", "embed_from "+emr) +
		site(s.noRewrite, "", "embed_from "+emr+"\n\t\trewrite_upstream_cookies off") +
		site(s.plain, "", "") +
		site(s.unpartitioned, `header >Set-Cookie "; Partitioned" ""`, "embed_from "+emr) +
		fmt.Sprintf(`%s {
	tls internal
	header Content-Type "text/html; charset=utf-8"
	handle /set {
		header Set-Cookie "ctl=kept; Path=/; Secure; SameSite=None; Partitioned"
		respond `+"`"+`<!doctype html><meta http-equiv="refresh" content="0;url=/get"><p id="ctl">setting</p>`+"`"+`
	}
	handle /get {
		respond `+"`"+`<!doctype html><p id="ctl">cookie:{http.request.cookie.ctl}</p>`+"`"+`
	}
}
`, s.cookieCtl) +
		fmt.Sprintf(`https://emr.test:%[1]d, https://other.test:%[1]d {
	tls internal
	root * %[2]s
	file_server
}
`, s.pagesPort, s.pages)
	s.caddy = harness.StartCaddy(t, caddyfile, harness.CaddyOptions{})
	for base := range ports {
		s.caddy.WaitHTTPS(t, strings.TrimPrefix(*base, "https://"))
	}
	for _, host := range []string{"emr.test", "other.test"} {
		s.caddy.WaitHTTPS(t, fmt.Sprintf("%s:%d", host, s.pagesPort))
	}
	return s
}

// embedPage mints a sign-in link at gateway for user, landing on
// prefix+"/first", writes a page of host framing it, and returns the page's URL.
func (s *browserSites) embedPage(t *testing.T, gateway, host, user, prefix string) string {
	t.Helper()
	c := client.Client{BaseURL: gateway, APIKey: browserAPIKey, HTTPClient: s.caddy.Client(t)}
	ctx, cancel := context.WithTimeout(context.Background(), browserWait)
	defer cancel()
	tok, err := c.Mint(ctx, client.MintRequest{UserID: user, Redirect: prefix + "/first"})
	if err != nil {
		t.Fatalf("mint at %s: %v", gateway, err)
	}
	if !strings.HasPrefix(tok.URL, gateway+"/redirect/") {
		t.Fatalf("minted link %q is not on %s", tok.URL, gateway)
	}
	return s.framePage(t, host, strings.Trim(prefix, "/"), tok.URL)
}

// framePage writes a page of host, name.html, framing src, and returns its URL.
func (s *browserSites) framePage(t *testing.T, host, name, src string) string {
	t.Helper()
	page := `<!doctype html><html><head><meta charset="utf-8"><title>EMR</title></head><body>
<h1>EMR</h1><iframe id="portal" width="800" height="400" src="` + html.EscapeString(src) + `"></iframe>
</body></html>`
	if err := os.WriteFile(filepath.Join(s.pages, name+".html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("https://%s:%d/%s.html", host, s.pagesPort, name)
}

// redeemSetCookie mints a link at gateway, redeems it without a browser and
// returns the Set-Cookie line of the answer.
func (s *browserSites) redeemSetCookie(t *testing.T, gateway string) string {
	t.Helper()
	hc := s.caddy.Client(t)
	c := client.Client{BaseURL: gateway, APIKey: browserAPIKey, HTTPClient: hc}
	ctx, cancel := context.WithTimeout(context.Background(), browserWait)
	defer cancel()
	tok, err := c.Mint(ctx, client.MintRequest{UserID: "browser-http"})
	if err != nil {
		t.Fatalf("mint at %s: %v", gateway, err)
	}
	resp, err := hc.Get(tok.URL)
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	resp.Body.Close()
	lines := resp.Header.Values("Set-Cookie")
	if resp.StatusCode != http.StatusFound || len(lines) != 1 {
		t.Fatalf("redeem: %d with Set-Cookie %q; want 302 with one cookie", resp.StatusCode, lines)
	}
	return lines[0]
}

// upstreamSaw returns the requests under prefix that reached the portal.
func (s *browserSites) upstreamSaw(prefix string) []harness.Recorded {
	var out []harness.Recorded
	for _, r := range s.upstream.Requests() {
		if strings.HasPrefix(r.Path, prefix+"/") {
			out = append(out, r)
		}
	}
	return out
}

// browserFrame is what the document inside the portal's frame shows. User,
// PortalCookie and Path are the upstream page's #user, #portal-cookie and
// #path, nil when the element is absent (an error page, the gateway's page).
type browserFrame struct {
	Href         string  `json:"href"`
	Ready        string  `json:"ready"`
	User         *string `json:"user"`
	PortalCookie *string `json:"portalCookie"`
	Path         *string `json:"path"`
	Text         string  `json:"text"`
}

func (f browserFrame) String() string {
	deref := func(p *string) string {
		if p == nil {
			return "<none>"
		}
		return *p
	}
	return fmt.Sprintf("href=%s user=%s portal-cookie=%s path=%s text=%q",
		f.Href, deref(f.User), deref(f.PortalCookie), deref(f.Path), f.Text)
}

// blocked reports whether Chromium replaced the frame's document with its
// error page, which is what a frame-ancestors refusal looks like from inside.
func (f browserFrame) blocked() bool { return strings.HasPrefix(f.Href, "chrome-error://") }

const browserFrameJS = `(() => {
	const text = id => { const e = document.getElementById(id); return e ? e.textContent : null; };
	return {href: location.href, ready: document.readyState, user: text("user"),
		portalCookie: text("portal-cookie"), path: text("path"),
		text: document.body ? document.body.innerText.trim().slice(0, 300) : ""};
})()`

// browserFrameWhen polls the frame until its document has loaded and done
// says it is the one awaited, and returns it. Evaluation errors while the
// frame navigates (its context destroyed) are retried.
func browserFrameWhen(t *testing.T, fctx context.Context, what string, done func(browserFrame) bool) browserFrame {
	t.Helper()
	var last browserFrame
	harness.Eventually(t, "frame: "+what, browserWait, func() error {
		ctx, cancel := context.WithTimeout(fctx, 2*time.Second)
		f, err := chromedp.Run(ctx, chromedp.Evaluate[browserFrame](browserFrameJS))
		cancel()
		if err != nil {
			return fmt.Errorf("last: %v (error %v)", last, err)
		}
		last = f
		if f.Ready == "complete" && done(f) {
			return nil
		}
		return fmt.Errorf("last: %v", last)
	})
	return last
}

// browserRun is one browser case: a fresh Chromium with third-party cookies
// blocked, its log of framing refusals, and the embedding page loaded.
type browserRun struct {
	ctx  context.Context
	mu   sync.Mutex
	logs []string
}

// openEmbedPage starts a browser and loads pageURL in its tab.
func openEmbedPage(t *testing.T, pageURL string) *browserRun {
	t.Helper()
	b := &browserRun{ctx: harness.StartBrowser(t, harness.BrowserOptions{HostMap: browserHosts})}
	// Chromium reports a frame-ancestors refusal in the embedding page's log.
	if err := chromedp.Listen(b.ctx, func(ev any) {
		if e, ok := ev.(*log.EventEntryAdded); ok && e.Entry != nil {
			b.mu.Lock()
			b.logs = append(b.logs, string(e.Entry.Level)+": "+e.Entry.Text)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("load %s: %v", pageURL, err)
	}
	return b
}

// framingRefusals returns the log lines in which Chromium refused to frame.
func (b *browserRun) framingRefusals() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range b.logs {
		if strings.Contains(l, "frame-ancestors") {
			out = append(out, l)
		}
	}
	return out
}

// cookies returns the browser's cookies for host, partitioned ones included.
func (b *browserRun) cookies(t *testing.T, host string) map[string]*network.Cookie {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	res, err := chromedp.CallBrowser(ctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		t.Fatalf("Storage.getCookies: %v", err)
	}
	out := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		if c.Domain != host {
			continue
		}
		if prev, dup := out[c.Name]; dup {
			t.Errorf("cookie %s stored twice (partition keys %v and %v)", c.Name, prev.PartitionKey, c.PartitionKey)
		}
		out[c.Name] = c
	}
	return out
}

// wantPartitioned fails unless c is stored as a third-party cookie of the
// portal partitioned under the embedding site.
func wantPartitioned(t *testing.T, name string, c *network.Cookie, topLevelSite string) {
	t.Helper()
	switch {
	case c == nil:
		t.Errorf("cookie %s not stored", name)
	case c.PartitionKey == nil || c.PartitionKey.TopLevelSite != topLevelSite:
		t.Errorf("cookie %s: partition key %+v, want top-level site %s", name, c.PartitionKey, topLevelSite)
	case c.SameSite != network.CookieSameSiteNone || !c.Secure:
		t.Errorf("cookie %s: SameSite %q, Secure %v; want None, true", name, c.SameSite, c.Secure)
	}
}

// requireBrowser fails without Chromium: CI installs it, and a browser test
// that skips silently proves nothing. SSOGATE_SKIP_BROWSER=1 skips on purpose.
func requireBrowser(t *testing.T) {
	t.Helper()
	if harness.HaveChromium() {
		return
	}
	if os.Getenv("SSOGATE_SKIP_BROWSER") == "1" {
		t.Skip("Chromium not installed and SSOGATE_SKIP_BROWSER=1")
	}
	t.Fatal("Chromium not installed (apt-get install chromium); set SSOGATE_SKIP_BROWSER=1 to skip the browser tests")
}

// The portal works inside another site's iframe in a Chromium that blocks
// third-party cookies, only where embed_from allows it, and only thanks to
// the partitioned cookies it implies. Each case runs its own browser.
func TestBrowserEmbed(t *testing.T) {
	requireBrowser(t)
	s := startBrowserSites(t)
	emrSite := "https://emr.test"

	t.Run("signs in and stays signed in inside the frame", func(t *testing.T) {
		start := time.Now()
		const prefix, user = "/signin", "browser-user-1"
		b := openEmbedPage(t, s.embedPage(t, s.embed, "emr.test", user, prefix))
		fctx := harness.FrameContext(b.ctx, t, s.embed+"/")
		first := browserFrameWhen(t, fctx, "the portal's first page", func(f browserFrame) bool { return f.blocked() || f.Path != nil })
		if first.Href != s.embed+prefix+"/first" || first.User == nil || *first.User != user {
			t.Fatalf("first page in the frame: %v; want %s signed in at %s", first, user, prefix+"/first")
		}
		// It went through the confirm step's cookie probe, without a click.
		if !strings.Contains(s.caddy.Logs(), `"reason":"frame probe"`) {
			t.Error("no frame probe in the gateway's log: the frame was redeemed in one hop")
		}
		// The portal set its own cookie on the first page; a second
		// navigation inside the frame must carry it and the session.
		if _, err := chromedp.Run(fctx, chromedp.Evaluate[chromedp.Void](`location.assign("`+prefix+`/second")`)); err != nil {
			t.Logf("navigating the frame: %v (the poll below decides)", err)
		}
		second := browserFrameWhen(t, fctx, prefix+"/second", func(f browserFrame) bool { return f.blocked() || (f.Path != nil && *f.Path == prefix+"/second") })
		if second.User == nil || *second.User != user || second.PortalCookie == nil || *second.PortalCookie != "yes" {
			t.Errorf("second page in the frame: %v; want user %s and portal-cookie yes", second, user)
		}
		if r := b.framingRefusals(); len(r) > 0 {
			t.Errorf("Chromium refused framing: %q", r)
		}
		cookies := b.cookies(t, "portal.test")
		wantPartitioned(t, "__Host-ssogate", cookies["__Host-ssogate"], emrSite)
		if c := cookies["__Host-ssogate"]; c != nil && !c.HTTPOnly {
			t.Error("session cookie is not HttpOnly")
		}
		wantPartitioned(t, "portal_sid", cookies["portal_sid"], emrSite)
		saw := s.upstreamSaw(prefix)
		if len(saw) != 2 || saw[1].Header.Get("X-Forwarded-User") != user || !strings.Contains(saw[1].Header.Get("Cookie"), "portal_sid=") {
			t.Errorf("upstream saw %d requests under %s; want 2, the second from %s with portal_sid", len(saw), prefix, user)
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("rewrite_upstream_cookies off: the portal's Lax cookie is lost", func(t *testing.T) {
		start := time.Now()
		const prefix, user = "/norewrite", "browser-user-2"
		b := openEmbedPage(t, s.embedPage(t, s.noRewrite, "emr.test", user, prefix))
		fctx := harness.FrameContext(b.ctx, t, s.noRewrite+"/")
		browserFrameWhen(t, fctx, "the portal's first page", func(f browserFrame) bool { return f.blocked() || f.Path != nil })
		if _, err := chromedp.Run(fctx, chromedp.Evaluate[chromedp.Void](`location.assign("`+prefix+`/second")`)); err != nil {
			t.Logf("navigating the frame: %v (the poll below decides)", err)
		}
		second := browserFrameWhen(t, fctx, prefix+"/second", func(f browserFrame) bool { return f.blocked() || (f.Path != nil && *f.Path == prefix+"/second") })
		// Still signed in through the gateway's own cookie, but the
		// portal's SameSite=Lax one was never stored in the frame.
		if second.User == nil || *second.User != user || second.PortalCookie == nil || *second.PortalCookie != "no" {
			t.Errorf("second page in the frame: %v; want user %s and portal-cookie no", second, user)
		}
		if c := b.cookies(t, "portal.test")["portal_sid"]; c != nil {
			t.Errorf("portal_sid stored (%+v) though it was SameSite=Lax in a cross-site frame", c)
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("control: without embed_from the frame is not signed in", func(t *testing.T) {
		start := time.Now()
		const prefix = "/plain"
		b := openEmbedPage(t, s.embedPage(t, s.plain, "emr.test", "browser-user-3", prefix))
		fctx := harness.FrameContext(b.ctx, t, s.plain+"/")
		f := browserFrameWhen(t, fctx, "the frame settled", func(f browserFrame) bool { return f.blocked() || f.Path != nil })
		if f.User != nil {
			t.Errorf("frame shows the portal: %v; want no user", f)
		}
		// The SameSite=Lax cookie was refused in the cross-site frame, so
		// the gate answered 401 and nothing reached the portal; that page
		// forbids framing, which Chromium reports.
		if c := b.cookies(t, "portal.test")["__Host-ssogate"]; c != nil {
			t.Errorf("session cookie stored in the frame: %+v", c)
		}
		if saw := s.upstreamSaw(prefix); len(saw) != 0 {
			t.Errorf("upstream saw %d requests; want none (401 at the gate)", len(saw))
		}
		if !f.blocked() || !browserLogged(b.framingRefusals(), "frame-ancestors 'none'") {
			t.Errorf("frame %v, refusals %q; want the 401 page refused by frame-ancestors 'none'", f, b.framingRefusals())
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("control: an unpartitioned session cookie is blocked", func(t *testing.T) {
		start := time.Now()
		const prefix = "/unpartitioned"
		// The control is only one if the cookie differs from the real
		// one by Partitioned alone.
		line := s.redeemSetCookie(t, s.unpartitioned)
		if c, err := http.ParseSetCookie(line); err != nil || c.Partitioned || c.SameSite != http.SameSiteNoneMode || !c.Secure || !c.HttpOnly {
			t.Fatalf("session cookie %q (%v); want SameSite=None, Secure, HttpOnly and not Partitioned", line, err)
		}
		b := openEmbedPage(t, s.embedPage(t, s.unpartitioned, "emr.test", "browser-user-4", prefix))
		fctx := harness.FrameContext(b.ctx, t, s.unpartitioned+"/")
		f := browserFrameWhen(t, fctx, "the frame settled", func(f browserFrame) bool {
			return f.blocked() || f.Path != nil || strings.Contains(f.Text, "not signed in") || strings.Contains(f.Text, "keeps no sign-in")
		})
		// The probe cookie, as unpartitioned as the session cookie, did
		// not come back: the frame shows the fallback, the link unspent.
		if f.blocked() || f.User != nil || !strings.Contains(f.Text, "Your browser keeps no sign-in inside this frame") {
			t.Errorf("frame: %v; want the gateway's fallback page", f)
		}
		if c := b.cookies(t, "portal.test")["__Host-ssogate"]; c != nil {
			t.Errorf("unpartitioned session cookie stored with third-party cookies blocked: %+v", c)
		}
		if saw := s.upstreamSaw(prefix); len(saw) != 0 {
			t.Errorf("upstream saw %d requests; want none", len(saw))
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("an origin not in embed_from cannot frame the portal", func(t *testing.T) {
		start := time.Now()
		const prefix = "/other"
		b := openEmbedPage(t, s.embedPage(t, s.embed, "other.test", "browser-user-5", prefix))
		fctx := harness.FrameContext(b.ctx, t, s.embed+"/")
		f := browserFrameWhen(t, fctx, "the frame settled", func(f browserFrame) bool { return f.blocked() || f.Path != nil })
		if !f.blocked() || f.User != nil {
			t.Errorf("frame: %v; want Chromium's error page", f)
		}
		want := fmt.Sprintf("frame-ancestors 'self' https://emr.test:%d", s.pagesPort)
		if !browserLogged(b.framingRefusals(), want) {
			t.Errorf("refusals %q; want one citing %q", b.framingRefusals(), want)
		}
		t.Logf("case took %v", time.Since(start))
	})
}

// browserLogged reports whether a log line contains want.
func browserLogged(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}
