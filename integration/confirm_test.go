package integration

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/integration/harness"
)

// Real link scanners' user agents: each fetches a link before the person
// does, and none sends a browser's fetch metadata.
var scannerAgents = []string{
	"Mozilla/5.0 (compatible; Microsoft Outlook SafeLinks)",
	"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36 Edg/124.0 BingPreview/1.0b",
	"Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
	"TelegramBot (like TwitterBot)",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
	"WhatsApp/2.23.20.0",
}

// confirmPageForm is the form of a confirm page: where it posts and what.
type confirmPageForm struct {
	action string
	fields url.Values
}

var (
	confirmActionRE = regexp.MustCompile(`<form id="confirm" method="post" action="([^"]*)">`)
	confirmHiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// readConfirmPage checks that resp is a confirm page (200, not cached, no
// Referer, no session) and returns its form and its probe cookie.
func readConfirmPage(t *testing.T, resp *http.Response) (confirmPageForm, *http.Cookie) {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" ||
		resp.Header.Get("Referrer-Policy") != "no-referrer" || sessionCookie(resp) != nil {
		t.Fatalf("confirm page: %s, Cache-Control %q, Referrer-Policy %q, session %v\n%s", resp.Status,
			resp.Header.Get("Cache-Control"), resp.Header.Get("Referrer-Policy"), sessionCookie(resp), b)
	}
	var probe *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-ssogate-probe" {
			probe = c
		}
	}
	m := confirmActionRE.FindSubmatch(b)
	if m == nil {
		if resp.Request.Method == http.MethodHead {
			return confirmPageForm{}, probe
		}
		t.Fatalf("no confirm form:\n%s", b)
	}
	f := confirmPageForm{action: html.UnescapeString(string(m[1])), fields: url.Values{}}
	for _, m := range confirmHiddenRE.FindAllSubmatch(b, -1) {
		f.fields.Add(html.UnescapeString(string(m[1])), html.UnescapeString(string(m[2])))
	}
	return f, probe
}

// post sends the form to g with the probe cookie and headers.
func (f confirmPageForm) post(t *testing.T, g *gateway, probe *http.Cookie, headers ...string) *http.Response {
	t.Helper()
	return g.do(t, http.MethodPost, f.action, f.fields.Encode(), probe,
		append([]string{"Content-Type: application/x-www-form-urlencoded"}, headers...)...)
}

// bareGet sends a GET or HEAD without a browser's fetch metadata, as a link
// scanner does.
func bareGet(t *testing.T, g *gateway, method, link, agent string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, link, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", agent)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	resp, err := g.caddy.BareClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, link, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The headers of the confirm page's own POST in a browser: Referrer-Policy
// no-referrer makes it send Origin: null, vouched for by Sec-Fetch-Site.
var confirmPostHeaders = []string{"Origin: null", "Sec-Fetch-Site: same-origin", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document"}

// Link scanners and HEAD requests leave every route's token unused; the
// confirm page's same-origin POST redeems it once, with the link's target;
// another site's POST is refused; redeem_confirm off restores the one-hop GET.
func TestRedeemConfirm(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	links := map[string]func(tok string) string{
		"redirect": func(tok string) string { return g.base + "/redirect/" + tok },
		"consume_ssotoken": func(tok string) string {
			return g.base + "/consume_ssotoken/?ssoToken=" + tok + "&redirect=%2Fapp%2F%3Fx%3D1"
		},
		"auth": func(tok string) string {
			return g.base + "/auth?sso_token=" + tok + "&next=https://app.example.com/home"
		},
	}
	wantTarget := map[string]string{"redirect": "/", "consume_ssotoken": "/app/?x=1", "auth": "https://app.example.com/home"}
	var minted []string
	mint := func(user string) harness.MintAnswer {
		m := g.mint(t, orgAKey, `{"userId":"`+user+`"}`)
		minted = append(minted, m.SSOToken)
		return m
	}

	t.Run("scanners leave the token unused", func(t *testing.T) {
		for name, link := range links {
			tok := mint("scanned").SSOToken
			readConfirmPage(t, bareGet(t, g, http.MethodHead, link(tok), scannerAgents[0]))
			for _, agent := range scannerAgents {
				form, probe := readConfirmPage(t, bareGet(t, g, http.MethodGet, link(tok), agent))
				if probe == nil || strings.Contains(form.action, tok) {
					t.Fatalf("%s, %s: probe cookie %v, form action %q", name, agent, probe, form.action)
				}
			}
			// A HEAD that says it is a navigation is still a HEAD.
			readConfirmPage(t, g.do(t, http.MethodHead, link(tok), "", nil, "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document"))
			// The person's browser comes last and signs in, in one hop.
			resp := g.do(t, http.MethodGet, link(tok), "", nil)
			if resp.StatusCode != http.StatusFound || sessionCookie(resp) == nil || resp.Header.Get("Location") != wantTarget[name] {
				t.Fatalf("%s after the scanners: %s to %q; want 302 to %s with a session", name, resp.Status, resp.Header.Get("Location"), wantTarget[name])
			}
		}
	})

	t.Run("the confirm page's POST redeems once", func(t *testing.T) {
		for name, link := range links {
			m := mint("confirmer")
			form, probe := readConfirmPage(t, bareGet(t, g, http.MethodGet, link(m.SSOToken), "Mozilla/5.0 (old browser)"))
			resp := form.post(t, g, probe, confirmPostHeaders...)
			c := sessionCookie(resp)
			if resp.StatusCode != http.StatusSeeOther || c == nil || resp.Header.Get("Location") != wantTarget[name] {
				t.Fatalf("%s: POST %s: %s to %q; want 303 to %s with a session", name, form.action, resp.Status, resp.Header.Get("Location"), wantTarget[name])
			}
			if saw := readUpstream(t, g.do(t, http.MethodGet, "/whoami", "", c)); saw.User != "confirmer" {
				t.Errorf("%s: upstream saw user %q", name, saw.User)
			}
			if again := form.post(t, g, probe, confirmPostHeaders...); again.StatusCode != http.StatusForbidden || sessionCookie(again) != nil {
				t.Errorf("%s: second POST: %s, want 403", name, again.Status)
			}
		}
	})

	t.Run("the target is checked again on the POST", func(t *testing.T) {
		m := mint("retargeted")
		form, probe := readConfirmPage(t, bareGet(t, g, http.MethodGet, links["auth"](m.SSOToken), scannerAgents[1]))
		form.fields.Set("next", "https://evil.test/")
		if resp := form.post(t, g, probe, confirmPostHeaders...); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("POST with a foreign target: %s, want 400", resp.Status)
		}
		form.fields.Set("next", "/fine")
		if resp := form.post(t, g, probe, confirmPostHeaders...); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/fine" {
			t.Fatalf("POST after the refused target: %s to %q, want 303 to /fine", resp.Status, resp.Header.Get("Location"))
		}
	})

	t.Run("another site cannot post a token", func(t *testing.T) {
		m := mint("csrf-victim")
		form, probe := readConfirmPage(t, bareGet(t, g, http.MethodGet, m.URL, scannerAgents[2]))
		for _, hdrs := range [][]string{
			{"Origin: https://evil.test", "Sec-Fetch-Site: cross-site"},
			{"Origin: null"},
			{"Origin: https://evil.test"},
			{"Sec-Fetch-Site: same-site"},
		} {
			resp := form.post(t, g, probe, hdrs...)
			if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
				t.Fatalf("POST with %q: %s, want 403", hdrs, resp.Status)
			}
		}
		// The token was never touched.
		if resp := g.do(t, http.MethodGet, m.URL, "", nil); resp.StatusCode != http.StatusFound {
			t.Fatalf("token after cross-site POSTs: %s, want 302", resp.Status)
		}
	})

	t.Run("no probe cookie back: the fallback, the token unused", func(t *testing.T) {
		m := mint("cookieless")
		form, _ := readConfirmPage(t, g.do(t, http.MethodGet, m.URL, "", nil, "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: iframe"))
		resp := form.post(t, g, nil, "Origin: null", "Sec-Fetch-Site: same-origin", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: iframe")
		b, _ := io.ReadAll(resp.Body)
		link := strings.TrimPrefix(m.URL, g.base)
		if resp.StatusCode != http.StatusOK || sessionCookie(resp) != nil || !strings.Contains(string(b), `href="`+link+`" target="_blank" rel="noopener"`) {
			t.Fatalf("fallback: %s\n%s", resp.Status, b)
		}
		if resp := g.do(t, http.MethodGet, m.URL, "", nil); resp.StatusCode != http.StatusFound {
			t.Fatalf("token after the fallback: %s, want 302", resp.Status)
		}
	})

	t.Run("audited, and no token in the logs", func(t *testing.T) {
		logs := g.caddy.Logs()
		for _, event := range []string{`"deferred"`, `"fell back"`, `"cross-site post"`, `"redeemed"`} {
			if !strings.Contains(logs, event) {
				t.Errorf("no %s in the log", event)
			}
		}
		for _, tok := range minted {
			if strings.Contains(logs, tok) {
				t.Fatalf("a token is in the log")
			}
		}
	})
}

// redeem_confirm off redeems a scanner's GET at once, as before; HEAD still
// never spends a token.
func TestRedeemConfirmOff(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: "redeem_confirm off"})
	m := g.mint(t, orgAKey, `{"userId":"one-hop"}`)
	if resp := bareGet(t, g, http.MethodHead, m.URL, scannerAgents[0]); resp.StatusCode != http.StatusOK || sessionCookie(resp) != nil {
		t.Fatalf("HEAD: %s, want 200 without a session", resp.Status)
	}
	resp := bareGet(t, g, http.MethodGet, m.URL, scannerAgents[0])
	if resp.StatusCode != http.StatusFound || sessionCookie(resp) == nil {
		t.Fatalf("bare GET with redeem_confirm off: %s, want 302 with a session", resp.Status)
	}
}
