package harness

import (
	"context"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserThirdPartyCookieControl proves what the product's browser tests
// rely on: with StartBrowser's defaults a cross-site iframe loses an
// unpartitioned cookie but keeps a partitioned one, and with
// AllowThirdPartyCookies it keeps both. If the first half ever stops holding
// (a Chromium update changing defaults, a flag renamed), the embed tests would
// pass for the wrong reason; this test fails instead.
func TestBrowserThirdPartyCookieControl(t *testing.T) {
	if !HaveChromium() {
		// The README's test command installs it: missing here means the
		// control did not run, which must not pass silently.
		t.Fatal("Chromium not installed (apt-get install chromium): cannot check the browser helper")
	}
	portal, emrURL := startCookieSites(t)

	cases := []struct {
		cookie, attrs    string
		blocked, allowed bool // whether the frame gets the cookie back
	}{
		{"probe_unpart", "SameSite=None; Secure", false, true},
		{"probe_part", "SameSite=None; Secure; Partitioned", true, true},
		{"probe_lax", "SameSite=Lax", false, false},
	}
	for _, mode := range []struct {
		name  string
		allow bool
	}{{"blocked", false}, {"allowed", true}} {
		t.Run("3pc-"+mode.name, func(t *testing.T) {
			start := time.Now()
			ctx := StartBrowser(t, BrowserOptions{
				HostMap:                []string{"portal.test", "emr.test"},
				AllowThirdPartyCookies: mode.allow,
			})
			t.Logf("browser started in %v", time.Since(start))

			// First-party cookies must work in either mode, or "no cookie"
			// in a frame below would prove nothing about third parties.
			top := "top_" + mode.name
			navigate(t, ctx, portal.URL+"/set?"+url.Values{"name": {top}, "attrs": {"SameSite=Lax"}}.Encode())
			if got := text(t, ctx, "got"); got != "yes" {
				t.Fatalf("first-party cookie not sent back: page says %q", got)
			}

			for _, c := range cases {
				want := c.allowed
				if !mode.allow {
					want = c.blocked
				}
				caseStart := time.Now()
				navigate(t, ctx, emrURL+"/?"+url.Values{"name": {c.cookie}, "attrs": {c.attrs}}.Encode())
				frame := FrameContext(ctx, t, portal.URL+"/check?name="+c.cookie)
				got := text(t, frame, "got")
				if got != yesNo(want) {
					t.Errorf("%s (%s) inside the frame: cookie sent back = %s, want %s", c.cookie, c.attrs, got, yesNo(want))
				}
				if server, ok := portal.got(c.cookie); !ok || server != want {
					t.Errorf("%s: server saw cookie = %v (check requested: %v), want %v", c.cookie, server, ok, want)
				}
				t.Logf("%s: %s in %v", c.cookie, got, time.Since(caseStart))
			}
		})
	}
}

// cookieSite is the framed site of the browser self-test. /set?name=&attrs=
// sets cookie name with those attributes and redirects to /check?name=,
// which says whether the cookie came back: the redeem-then-302 shape of the
// gateway's own sign-in.
type cookieSite struct {
	URL string // https://portal.test:P

	mu     sync.Mutex
	checks map[string]bool // cookie name -> sent back to /check
}

// got reports whether /check?name= was requested and received the cookie.
func (s *cookieSite) got(name string) (sent, checked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent, checked = s.checks[name]
	return sent, checked
}

// startCookieSites starts the framed site (https://portal.test:P2) and the
// embedding site (https://emr.test:P1, whose page frames /set with its own
// query), each on its own port over TLS. It returns the framed site and the
// embedding site's URL.
func startCookieSites(t *testing.T) (*cookieSite, string) {
	portal := &cookieSite{checks: map[string]bool{}}
	psrv := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		switch r.URL.Path {
		case "/set":
			w.Header().Add("Set-Cookie", name+"=1; Path=/; "+r.URL.Query().Get("attrs"))
			http.Redirect(w, r, "/check?name="+url.QueryEscape(name), http.StatusFound)
		case "/check":
			_, err := r.Cookie(name)
			portal.mu.Lock()
			portal.checks[name] = err == nil
			portal.mu.Unlock()
			fmt.Fprintf(w, "<!doctype html><title>check</title><p id=\"got\">%s</p>", yesNo(err == nil))
		default:
			http.NotFound(w, r)
		}
	}))
	portal.URL = fmt.Sprintf("https://portal.test:%d", psrv.Listener.Addr().(*net.TCPAddr).Port)

	esrv := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		src := portal.URL + "/set?" + r.URL.RawQuery
		fmt.Fprintf(w, "<!doctype html><title>emr</title><p>embedding app</p><iframe src=\"%s\"></iframe>", html.EscapeString(src))
	}))
	return portal, fmt.Sprintf("https://emr.test:%d", esrv.Listener.Addr().(*net.TCPAddr).Port)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// newTLSServer is httptest.NewTLSServer without the log line for each
// handshake Chromium aborts.
func newTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func navigate(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate %s: %v", u, err)
	}
}

func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("text of #%s: %v", id, err)
	}
	return html.UnescapeString(s)
}
