package integration

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ssogate/ssogate/integration/harness"
)

// In Chromium, with embed_from (so a SameSite=None session cookie): a POST
// to /sso/logout from the embedding site, which the browser sends with the
// partitioned cookie, is refused and the session lives on; the portal's own
// sign-out form inside the frame (as the demo portal's button) signs out.
func TestBrowserLogoutOnlyFromThePortal(t *testing.T) {
	requireBrowser(t)
	s := startBrowserSites(t)
	const prefix, user = "/logout", "browser-logout"
	b := openEmbedPage(t, s.embedPage(t, s.embed, "emr.test", user, prefix))
	fctx := harness.FrameContext(b.ctx, t, s.embed+"/")
	first := browserFrameWhen(t, fctx, "the portal's first page", func(f browserFrame) bool { return f.blocked() || f.Path != nil })
	if first.User == nil || *first.User != user {
		t.Fatalf("first page in the frame: %v; want %s signed in", first, user)
	}

	// The embedding page posts a logout, as any script or form of that
	// site could; the browser attaches the partitioned session cookie.
	sent, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`fetch("`+s.embed+`/sso/logout", {method: "POST", credentials: "include", mode: "no-cors"}).then(() => "sent", e => "error: " + e)`, chromedp.EvalAwaitPromise))
	if err != nil || sent != "sent" {
		t.Fatalf("cross-site logout from the embedding page: %q, %v", sent, err)
	}
	if _, err := chromedp.Run(fctx, chromedp.Evaluate[chromedp.Void](`location.assign("`+prefix+`/second")`)); err != nil {
		t.Logf("navigating the frame: %v (the poll below decides)", err)
	}
	second := browserFrameWhen(t, fctx, prefix+"/second", func(f browserFrame) bool { return f.blocked() || strings.HasSuffix(f.Href, prefix+"/second") })
	if second.User == nil || *second.User != user {
		t.Fatalf("after a cross-site logout the frame shows %v; want %s still signed in", second, user)
	}

	// The portal's own sign-out button: a same-origin form post in the frame.
	const signOut = `(() => { const f = document.createElement("form"); f.method = "post"; f.action = "/sso/logout";
		document.body.append(f); f.submit(); })()`
	if _, err := chromedp.Run(fctx, chromedp.Evaluate[chromedp.Void](signOut)); err != nil {
		t.Logf("submitting the sign-out form: %v (the poll below decides)", err)
	}
	out := browserFrameWhen(t, fctx, "the signed-out page", func(f browserFrame) bool {
		return f.blocked() || strings.HasSuffix(f.Href, "/sso/logout")
	})
	if !strings.Contains(out.Text, "You are signed out") {
		t.Fatalf("the portal's own sign-out in the frame: %v; want the signed-out page", out)
	}
	if _, err := chromedp.Run(fctx, chromedp.Evaluate[chromedp.Void](`location.assign("`+prefix+`/third")`)); err != nil {
		t.Logf("navigating the frame: %v (the poll below decides)", err)
	}
	third := browserFrameWhen(t, fctx, prefix+"/third", func(f browserFrame) bool { return f.blocked() || strings.HasSuffix(f.Href, prefix+"/third") })
	if third.User != nil {
		t.Errorf("after signing out the frame still shows the portal: %v", third)
	}
}
