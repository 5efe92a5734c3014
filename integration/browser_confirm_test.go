package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ssogate/ssogate/client"
	"github.com/ssogate/ssogate/integration/harness"
)

// Texts of the gateway's pages that the browser cases look for.
const (
	fallbackText = "Your browser keeps no sign-in inside this frame"
	usedLinkText = "This sign-in link was already used or has expired"
	accessText   = "Allow sign-in inside this frame"
)

// cookieControlPage writes the page that frames the cookie control site.
func (s *browserSites) cookieControlPage(t *testing.T, name string) string {
	t.Helper()
	return s.framePage(t, "emr.test", name, s.cookieCtl+"/set")
}

// usedLink mints a link at the embed gateway and spends it, as a browser
// would, so that a frame can be shown a used link.
func (s *browserSites) usedLink(t *testing.T, user string) string {
	t.Helper()
	hc := s.caddy.Client(t)
	c := client.Client{BaseURL: s.embed, APIKey: browserAPIKey, HTTPClient: hc}
	ctx, cancel := context.WithTimeout(context.Background(), browserWait)
	defer cancel()
	tok, err := c.Mint(ctx, client.MintRequest{UserID: user})
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	resp, err := hc.Get(tok.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("spending the link: %s, want 302", resp.Status)
	}
	return tok.URL
}

// chromiumFrameCookie loads the cookie control in a frame of emr.test and
// returns what it shows: "cookie:kept" where the browser keeps a
// partitioned cookie in the frame, "cookie:" where it keeps none.
func chromiumFrameCookie(t *testing.T, s *browserSites, b *browserRun) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.cookieControlPage(t, "ctl-chromium"))); err != nil {
		t.Fatalf("load the cookie control: %v", err)
	}
	fctx := harness.FrameContext(b.ctx, t, s.cookieCtl+"/")
	f := browserFrameWhen(t, fctx, "the cookie control's answer", func(f browserFrame) bool { return strings.HasPrefix(f.Text, "cookie:") })
	return f.Text
}

// The confirm step in Chromium, third-party cookies blocked as by default:
// the frame signs in without a click (TestBrowserEmbed), a used link shows
// its page inside the frame, and where the browser keeps no cookie in the
// frame the link is not spent and one click signs in top-level.
func TestBrowserConfirmChromium(t *testing.T) {
	requireBrowser(t)
	s := startBrowserSites(t)

	t.Run("a used link shows its page in the frame", func(t *testing.T) {
		start := time.Now()
		b := openEmbedPage(t, s.framePage(t, "emr.test", "used-chromium", s.usedLink(t, "browser-used")))
		fctx := harness.FrameContext(b.ctx, t, s.embed+"/")
		f := browserFrameWhen(t, fctx, "the used-link page", func(f browserFrame) bool {
			return f.blocked() || f.Path != nil || strings.Contains(f.Text, usedLinkText) || strings.Contains(f.Text, fallbackText)
		})
		if f.blocked() || !strings.Contains(f.Text, usedLinkText) {
			t.Errorf("frame: %v; want the used-link page", f)
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("a query route signs in inside the frame, to its own target", func(t *testing.T) {
		start := time.Now()
		const user = "browser-query"
		c := client.Client{BaseURL: s.embed, APIKey: browserAPIKey, HTTPClient: s.caddy.Client(t)}
		ctx, cancel := context.WithTimeout(context.Background(), browserWait)
		defer cancel()
		tok, err := c.Mint(ctx, client.MintRequest{UserID: user, Redirect: "/stored/first"})
		if err != nil {
			t.Fatal(err)
		}
		link := s.embed + "/auth?sso_token=" + tok.SSOToken + "&next=%2Fquery%2Ffirst%3Fa%3D1"
		b := openEmbedPage(t, s.framePage(t, "emr.test", "query-chromium", link))
		fctx := harness.FrameContext(b.ctx, t, s.embed+"/")
		f := browserFrameWhen(t, fctx, "the portal's page", func(f browserFrame) bool { return f.blocked() || f.Path != nil })
		if f.Href != s.embed+"/query/first?a=1" || f.User == nil || *f.User != user {
			t.Errorf("frame: %v; want %s signed in at /query/first?a=1", f, user)
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("no cookie in the frame: the link survives, one click signs in top-level", func(t *testing.T) {
		start := time.Now()
		const prefix, user = "/fallback-chromium", "browser-fallback-1"
		b := &browserRun{ctx: harness.StartBrowser(t, harness.BrowserOptions{HostMap: browserHosts,
			BlockFrameCookies: [][2]string{{"portal.test", "emr.test"}}})}
		// The control: this browser really keeps no cookie in the frame.
		if got := chromiumFrameCookie(t, s, b); got != "cookie:" {
			t.Fatalf("cookie control shows %q; want no cookie kept in the frame", got)
		}
		ctx, cancel := context.WithTimeout(b.ctx, browserWait)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(s.embedPage(t, s.embed, "emr.test", user, prefix))); err != nil {
			t.Fatal(err)
		}
		fctx := harness.FrameContext(b.ctx, t, s.embed+"/")
		f := browserFrameWhen(t, fctx, "the fallback page", func(f browserFrame) bool {
			return f.blocked() || f.Path != nil || strings.Contains(f.Text, fallbackText)
		})
		if f.User != nil || !strings.Contains(f.Text, fallbackText) {
			t.Fatalf("frame: %v; want the fallback page", f)
		}
		// Its script ran under the page's CSP (nonce) and, the browser
		// having the Storage Access API, showed the offer.
		if !strings.Contains(f.Text, accessText) {
			t.Errorf("frame: %v; want the storage access offer shown", f)
		}
		if saw := s.upstreamSaw(prefix); len(saw) != 0 {
			t.Fatalf("upstream saw %d requests; want none before the click", len(saw))
		}
		clickCtx, cancelClick := context.WithTimeout(fctx, browserWait)
		defer cancelClick()
		if err := chromedp.Do(clickCtx, chromedp.Click(chromedp.CSS("#open"))); err != nil {
			t.Fatalf("click: %v", err)
		}
		tab := harness.TabContext(b.ctx, t, s.embed+prefix+"/first")
		top := browserFrameWhen(t, tab, "the portal in the new tab", func(f browserFrame) bool { return f.Path != nil })
		if top.User == nil || *top.User != user {
			t.Errorf("new tab: %v; want %s signed in", top, user)
		}
		if saw := s.upstreamSaw(prefix); len(saw) != 1 || saw[0].Header.Get("X-Forwarded-User") != user {
			t.Errorf("upstream saw %d requests under %s; want 1 from %s", len(saw), prefix, user)
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("control: the default browser keeps a partitioned cookie in the frame", func(t *testing.T) {
		b := &browserRun{ctx: harness.StartBrowser(t, harness.BrowserOptions{HostMap: browserHosts})}
		if got := chromiumFrameCookie(t, s, b); got != "cookie:kept" {
			t.Fatalf("cookie control shows %q; want the partitioned cookie kept", got)
		}
	})
}
