package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// firefoxFrameWhen polls the frame (or tab) of f whose URL starts with prefix
// until its document has loaded and done says it is the one awaited.
func firefoxFrameWhen(t *testing.T, f *harness.Firefox, prefix, what string, done func(browserFrame) bool) browserFrame {
	t.Helper()
	var last browserFrame
	harness.Eventually(t, "firefox: "+what, browserWait, func() error {
		var fr browserFrame
		if err := f.Eval(prefix, browserFrameJS, &fr); err != nil {
			return fmt.Errorf("last: %v (error %v); frames: %s", last, err, f.Frames())
		}
		last = fr
		if fr.Ready == "complete" && done(fr) {
			return nil
		}
		return fmt.Errorf("last: %v; frames: %s", last, f.Frames())
	})
	return last
}

// firefoxFrameCookie loads the cookie control in a frame of emr.test; see
// chromiumFrameCookie.
func firefoxFrameCookie(t *testing.T, s *browserSites, f *harness.Firefox) string {
	t.Helper()
	f.Goto(t, s.cookieControlPage(t, "ctl-firefox"))
	fr := firefoxFrameWhen(t, f, s.cookieCtl+"/get", "the cookie control's answer", func(fr browserFrame) bool { return strings.HasPrefix(fr.Text, "cookie:") })
	return fr.Text
}

// The portal embedded in Firefox ESR, driven over WebDriver BiDi. With Total
// Cookie Protection (the default) the frame signs in without a click and a
// used link shows its page in the frame; with every third-party cookie
// blocked (cookieBehavior 1) the link is not spent and one click signs in
// top-level.
func TestBrowserFirefox(t *testing.T) {
	s := startBrowserSites(t)

	t.Run("default: signs in inside the frame without a click; a used link shows its page", func(t *testing.T) {
		start := time.Now()
		const prefix, user = "/ff-signin", "firefox-user-1"
		f := harness.StartFirefox(t, harness.FirefoxOptions{CookieBehavior: 5})
		if got := firefoxFrameCookie(t, s, f); got != "cookie:kept" {
			t.Fatalf("cookie control shows %q; want the partitioned cookie kept", got)
		}
		f.Goto(t, s.embedPage(t, s.embed, "emr.test", user, prefix))
		fr := firefoxFrameWhen(t, f, s.embed+prefix+"/first", "the portal's first page", func(fr browserFrame) bool { return fr.Path != nil })
		if fr.User == nil || *fr.User != user {
			t.Fatalf("frame: %v; want %s signed in", fr, user)
		}
		if !strings.Contains(s.caddy.Logs(), `"reason":"frame probe"`) {
			t.Error("no frame probe in the gateway's log: the frame was redeemed in one hop")
		}
		if saw := s.upstreamSaw(prefix); len(saw) != 1 || saw[0].Header.Get("X-Forwarded-User") != user {
			t.Errorf("upstream saw %d requests under %s; want 1 from %s", len(saw), prefix, user)
		}

		f.Goto(t, s.framePage(t, "emr.test", "used-firefox", s.usedLink(t, "firefox-used")))
		used := firefoxFrameWhen(t, f, s.embed+"/redirect/", "the used-link page", func(fr browserFrame) bool {
			return strings.Contains(fr.Text, usedLinkText) || strings.Contains(fr.Text, fallbackText)
		})
		if !strings.Contains(used.Text, usedLinkText) {
			t.Errorf("frame: %v; want the used-link page", used)
		}
		t.Logf("case took %v", time.Since(start))
	})

	t.Run("third-party cookies blocked: the link survives, one click signs in top-level", func(t *testing.T) {
		start := time.Now()
		const prefix, user = "/ff-fallback", "firefox-user-2"
		f := harness.StartFirefox(t, harness.FirefoxOptions{CookieBehavior: 1})
		if got := firefoxFrameCookie(t, s, f); got != "cookie:" {
			t.Fatalf("cookie control shows %q; want no cookie kept in the frame", got)
		}
		f.Goto(t, s.embedPage(t, s.embed, "emr.test", user, prefix))
		fr := firefoxFrameWhen(t, f, s.embed+"/redirect/", "the fallback page", func(fr browserFrame) bool {
			return strings.Contains(fr.Text, fallbackText) || fr.Path != nil
		})
		if fr.User != nil || !strings.Contains(fr.Text, fallbackText) {
			t.Fatalf("frame: %v; want the fallback page", fr)
		}
		// Its script ran under the page's CSP (nonce) and, the browser
		// having the Storage Access API, showed the offer.
		if !strings.Contains(fr.Text, accessText) {
			t.Errorf("frame: %v; want the storage access offer shown", fr)
		}
		if saw := s.upstreamSaw(prefix); len(saw) != 0 {
			t.Fatalf("upstream saw %d requests; want none before the click", len(saw))
		}
		f.Click(t, s.embed+"/redirect/", "#open")
		top := firefoxFrameWhen(t, f, s.embed+prefix+"/first", "the portal in the new tab", func(fr browserFrame) bool { return fr.Path != nil })
		if top.User == nil || *top.User != user {
			t.Errorf("new tab: %v; want %s signed in", top, user)
		}
		t.Logf("case took %v", time.Since(start))
	})
}
