package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// Timeouts of the browser helpers. One start measures about 1 s here.
const (
	browserStartTimeout = 30 * time.Second
	frameWaitTimeout    = 15 * time.Second
)

// chromiumPaths are tried in order. The real binary comes first: Debian's
// /usr/bin/chromium wrapper adds flags of its own.
var chromiumPaths = []string{"/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"}

// chromiumPath returns the browser to run, or "" if none is installed.
func chromiumPath() string {
	for _, p := range chromiumPaths {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}

// HaveChromium reports whether a Chromium binary is installed.
func HaveChromium() bool { return chromiumPath() != "" }

// BrowserOptions says how StartBrowser runs Chromium.
type BrowserOptions struct {
	// HostMap lists host names the browser resolves to 127.0.0.1, such as
	// "portal.test" and "emr.test" (--host-resolver-rules), so that two
	// sites of one test are really cross-site without /etc/hosts.
	HostMap []string

	// AllowThirdPartyCookies turns third-party cookies on, for a control
	// case. By default they are blocked, as in browsers users now have: an
	// embed test that passes only with them allowed proves nothing.
	AllowThirdPartyCookies bool

	// BlockFrameCookies lists {host, embedding host} pairs whose cookies
	// Chromium must refuse entirely, partitioned ones too, when host is
	// framed by the embedding host: a browser that keeps no cookie in the
	// frame (like Safari without CHIPS). It is the profile's cookie
	// content setting for the pattern "[*.]host,[*.]embedding" (block);
	// the host's own first-party cookies still work. Nothing else found
	// blocks partitioned cookies in this Chromium.
	BlockFrameCookies [][2]string
}

// StartBrowser starts a headless Chromium with a fresh profile and returns a
// chromedp context for its first tab, cancelled (browser ended, profile
// removed) at cleanup. The browser is running when it returns, so actions
// may run on a child with a deadline: context.WithTimeout(ctx, 10*time.Second).
//
// Third-party cookies are blocked twice over unless opt allows them: the
// profile's cookie_controls_mode is 1 and --test-third-party-cookie-phaseout
// is set; allowing writes cookie_controls_mode 0. TLS errors are ignored, as
// test sites use Caddy's internal CA or httptest's certificate.
//
// Without Chromium the test is skipped, except under CI (CI set), where a
// silently skipped browser test would hide a broken install: it fails.
func StartBrowser(t testing.TB, opt BrowserOptions) context.Context {
	t.Helper()
	exe := chromiumPath()
	if exe == "" {
		msg := "harness: Chromium not installed (apt-get install chromium); browser test skipped"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " — not allowed under CI")
		}
		t.Skip(msg)
	}

	profile := tempDir(t, "chromium-profile")
	mode := 1
	if opt.AllowThirdPartyCookies {
		mode = 0
	}
	if err := os.MkdirAll(filepath.Join(profile, "Default"), 0o700); err != nil {
		t.Fatalf("harness: chromium profile: %v", err)
	}
	prefs := map[string]any{"cookie_controls_mode": mode}
	if len(opt.BlockFrameCookies) > 0 {
		rules := map[string]any{}
		for _, p := range opt.BlockFrameCookies {
			rules["[*.]"+p[0]+",[*.]"+p[1]] = map[string]int{"setting": 2}
		}
		prefs["block_third_party_cookies"] = true
		prefs["content_settings"] = map[string]any{"exceptions": map[string]any{"cookies": rules}}
	}
	pj, err := json.Marshal(map[string]any{"profile": prefs})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(profile, "Default", "Preferences"), string(pj))

	logPath := filepath.Join(tempDir(t, "chromium-log"), "chromium.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("harness: chromium log: %v", err)
	}

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // we run as root
		chromedp.DisableGPU,
		chromedp.IgnoreCertErrors,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.CombinedOutput(logf),
	)
	if len(opt.HostMap) > 0 {
		rules := make([]string, len(opt.HostMap))
		for i, h := range opt.HostMap {
			rules[i] = "MAP " + h + " 127.0.0.1"
		}
		opts = append(opts, chromedp.Flag("host-resolver-rules", strings.Join(rules, ", ")))
	}
	if !opt.AllowThirdPartyCookies {
		opts = append(opts, chromedp.Flag("test-third-party-cookie-phaseout", true))
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		logf.Close()
	})

	// The first Run starts the browser and binds it to ctx, so it cannot
	// take a context with a deadline; it is bounded from outside instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("harness: start chromium: %v\n%s", err, logTail(logPath))
		}
	case <-time.After(browserStartTimeout):
		cancelCtx()
		t.Fatalf("harness: chromium did not start within %v\n%s", browserStartTimeout, logTail(logPath))
	}
	return ctx
}

// FrameContext returns a chromedp context attached to the cross-site iframe
// whose URL starts with urlPrefix, in the browser of ctx, polling until the
// frame exists (15 s at most).
//
// Chromium runs a cross-site iframe in its own process and target (site
// isolation), which a DOM query from the parent page cannot reach; actions
// on the returned context run inside the frame. A same-site iframe has no
// target of its own and is never found. If the frame later navigates to
// another site it gets a new target: call FrameContext again. The context
// is attached when FrameContext returns, so actions may run on a child with
// a deadline, and detaches (without closing the frame) at cleanup.
func FrameContext(ctx context.Context, t testing.TB, urlPrefix string) context.Context {
	t.Helper()
	return targetContext(ctx, t, "iframe", urlPrefix)
}

// TabContext is FrameContext for a tab (a "page" target) whose URL starts
// with urlPrefix, such as one a link with target=_blank opened.
func TabContext(ctx context.Context, t testing.TB, urlPrefix string) context.Context {
	t.Helper()
	return targetContext(ctx, t, "page", urlPrefix)
}

// targetContext attaches to the target of type typ whose URL starts with
// urlPrefix; see FrameContext.
func targetContext(ctx context.Context, t testing.TB, typ, urlPrefix string) context.Context {
	t.Helper()
	var id target.ID
	var seen []string
	err := poll(frameWaitTimeout, func() error {
		infos, err := chromedp.Targets(ctx)
		if err != nil {
			return err
		}
		seen = seen[:0]
		for _, info := range infos {
			seen = append(seen, info.Type+" "+info.URL)
			if info.Type == typ && strings.HasPrefix(info.URL, urlPrefix) {
				id = info.TargetID
				return nil
			}
		}
		return fmt.Errorf("no %s target with URL prefix %q", typ, urlPrefix)
	})
	if err != nil {
		t.Fatalf("harness: attach to a %s: %v; targets: %q", typ, err, seen)
	}
	fctx, cancel := chromedp.NewContext(ctx, chromedp.WithTargetID(id), chromedp.WithDetachOnCancel())
	t.Cleanup(cancel)
	// Attach now, bounded like StartBrowser, so that the caller's actions
	// may use deadlines (the first Run binds the attachment to its context).
	attached := make(chan error, 1)
	go func() { attached <- chromedp.Do(fctx) }()
	select {
	case err := <-attached:
		if err != nil {
			t.Fatalf("harness: attach to the %s %s: %v", typ, urlPrefix, err)
		}
	case <-time.After(frameWaitTimeout):
		cancel()
		t.Fatalf("harness: attach to the %s %s: no answer within %v", typ, urlPrefix, frameWaitTimeout)
	}
	return fctx
}
