package caddymodule

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/failurelimit"
	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// asBrowserNavigation marks r as a browser's top-level navigation, which
// redeems a link at once under redeem_confirm auto. Test helpers that stand
// for a browser opening a link call it.
func asBrowserNavigation(r *http.Request) {
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Sec-Fetch-Dest", "document")
}

// Real link scanners' user agents: each fetches a link before the person does.
var scannerAgents = []string{
	"Mozilla/5.0 (compatible; Microsoft Outlook SafeLinks)", // Defender for Office 365 Safe Links
	"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36 Edg/124.0 BingPreview/1.0b",
	"TelegramBot (like TwitterBot)",
	"Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
	"WhatsApp/2.23.20.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
	"Proofpoint URL Defense",
	"Go-http-client/1.1",
}

// confirmHandler provisions a handler with embed_from and the given
// redeem_confirm, its failure limit off.
func confirmHandler(t *testing.T, mode string) *Handler {
	t.Helper()
	h := &Handler{EmbedFrom: embedOrigins, RedeemConfirm: mode, RedirectHosts: []string{"app.example.com"},
		RedeemRateLimit: &RedeemRateLimit{Disabled: true}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	h.logger = zap.NewNop()
	return h
}

// confirmToken stores a fresh token for user and returns it.
func confirmToken(t *testing.T, h *Handler, user, redirect string) string {
	t.Helper()
	tok := token.New()
	if err := h.store.AddToken(context.Background(), token.Hash(tok), store.Token{UserID: user, Redirect: redirect}, time.Minute); err != nil {
		t.Fatal(err)
	}
	return tok
}

// confirmDo sends one request through h; headers are "Name: value" pairs.
func confirmDo(t *testing.T, h *Handler, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "https://portal.test"+target, strings.NewReader(body))
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ":")
		r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.9"})
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatalf("%s %s reached next", method, target)
		return nil
	})
	if err := h.ServeHTTP(w, r.WithContext(ctx), next); err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return w
}

// cookieOf returns the cookie name that w sets, or nil.
func cookieOf(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// confirmForm is the form a confirm or fallback page holds.
type confirmForm struct {
	action string
	fields url.Values
}

var (
	formActionRE = regexp.MustCompile(`<form id="confirm" method="post" action="([^"]*)">`)
	hiddenRE     = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
	scriptRE     = regexp.MustCompile(`<script nonce="([^"]+)">`)
	styleRE      = regexp.MustCompile(`<style nonce="([^"]+)">`)
)

// pageForm reads the form of a page, failing the test if there is none.
func pageForm(t *testing.T, body string) confirmForm {
	t.Helper()
	m := formActionRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no confirm form in the page:\n%s", body)
	}
	f := confirmForm{action: html.UnescapeString(m[1]), fields: url.Values{}}
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		f.fields.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return f
}

// post sends the form as the browser would, with the given extra headers.
func (f confirmForm) post(t *testing.T, h *Handler, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	return confirmDo(t, h, http.MethodPost, f.action, f.fields.Encode(),
		append([]string{"Content-Type: application/x-www-form-urlencoded"}, headers...)...)
}

// sameOriginPost are the headers of the confirm page's own POST: the page's
// Referrer-Policy no-referrer makes browsers send Origin: null.
var sameOriginPost = []string{"Origin: null", "Sec-Fetch-Site: same-origin", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document"}

func withProbe(w *httptest.ResponseRecorder, h *Handler, headers ...string) []string {
	c := cookieOf(w, h.probeCookieName())
	if c == nil {
		return headers
	}
	return append(headers, "Cookie: "+c.Name+"="+c.Value)
}

// wantConfirmPage checks the headers of a confirm or fallback page: not
// cached, no Referer, framable by embed_from only, and a CSP that admits the
// page's own script and style by a nonce and nothing else.
func wantConfirmPage(t *testing.T, w *httptest.ResponseRecorder, head bool) {
	t.Helper()
	hdr := w.Header()
	if w.Code != http.StatusOK || hdr.Get("Cache-Control") != "no-store" || hdr.Get("Referrer-Policy") != "no-referrer" ||
		!strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d, Cache-Control %q, Referrer-Policy %q, Content-Type %q", w.Code,
			hdr.Get("Cache-Control"), hdr.Get("Referrer-Policy"), hdr.Get("Content-Type"))
	}
	csp := hdr.Values("Content-Security-Policy")
	if len(csp) != 1 || !strings.HasPrefix(csp[0], "default-src 'none'; script-src 'nonce-") ||
		!strings.HasSuffix(csp[0], "; frame-ancestors "+embedFA) || strings.Contains(csp[0], "unsafe") {
		t.Fatalf("CSP %q", csp)
	}
	if head {
		if w.Body.Len() != 0 {
			t.Errorf("HEAD got a body of %d bytes", w.Body.Len())
		}
		return
	}
	for _, re := range []*regexp.Regexp{scriptRE, styleRE} {
		for _, m := range re.FindAllStringSubmatch(w.Body.String(), -1) {
			if !strings.Contains(csp[0], "'nonce-"+html.UnescapeString(m[1])+"'") {
				t.Errorf("element nonce %q not in the CSP %q", m[1], csp[0])
			}
		}
	}
}

// A link is spent only where a browser navigates to it: HEAD, GETs without
// fetch metadata (scanners' real user agents) and frame navigations get the
// confirm page, the token unused; a top-level navigation then redeems it.
func TestConfirmScannersLeaveTokensUnused(t *testing.T) {
	h := confirmHandler(t, "")
	if h.RedeemConfirm != confirmAuto {
		t.Fatalf("default redeem_confirm %q, want auto", h.RedeemConfirm)
	}
	deferred := redemptions.WithLabelValues("redirect", redeemDeferred)
	routes := map[string]func(tok string) string{
		"redirect":         func(tok string) string { return "/redirect/" + tok },
		"consume_ssotoken": func(tok string) string { return "/consume_ssotoken/?ssoToken=" + tok + "&redirect=/app/" },
		"auth":             func(tok string) string { return "/auth?sso_token=" + tok + "&next=/home" },
	}
	for name, link := range routes {
		t.Run(name, func(t *testing.T) {
			tok := confirmToken(t, h, "scanned-"+name, "")
			kinds := [][]string{{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: iframe"}, {"Sec-Fetch-Mode: no-cors", "Sec-Fetch-Dest: image"},
				{"Sec-Fetch-Mode: navigate"}, {"Sec-Fetch-Dest: document"}}
			for _, ua := range scannerAgents {
				kinds = append(kinds, []string{"User-Agent: " + ua})
			}
			before := counterValue(t, deferred)
			if w := confirmDo(t, h, http.MethodHead, link(tok), "", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document"); true {
				wantConfirmPage(t, w, true)
			}
			for _, hdrs := range kinds {
				w := confirmDo(t, h, http.MethodGet, link(tok), "", hdrs...)
				wantConfirmPage(t, w, false)
				if c := cookieOf(w, h.CookieName); c != nil {
					t.Fatalf("%q: session cookie set", hdrs)
				}
				probe := cookieOf(w, h.probeCookieName())
				if probe == nil || !probe.Secure || !probe.Partitioned || probe.SameSite != http.SameSiteNoneMode || probe.MaxAge <= 0 || probe.MaxAge > 300 {
					t.Fatalf("%q: probe cookie %+v; want the session cookie's attributes, short-lived", hdrs, probe)
				}
				body := w.Body.String()
				if strings.Contains(pageForm(t, body).action, tok) {
					t.Errorf("%q: the form posts to a URL holding the token", hdrs)
				}
			}
			if name == "redirect" {
				if got := counterValue(t, deferred) - before; got != float64(len(kinds)+1) {
					t.Errorf("deferred_to_confirm moved by %v, want %d", got, len(kinds)+1)
				}
			}
			w := confirmDo(t, h, http.MethodGet, link(tok), "", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document")
			if w.Code != http.StatusFound || cookieOf(w, h.CookieName) == nil {
				t.Fatalf("navigation after the scanners: %d, want 302 with a session", w.Code)
			}
		})
	}
	// A malformed token is refused as before, without a page.
	if w := confirmDo(t, h, http.MethodGet, "/redirect/short", "", "User-Agent: "+scannerAgents[0]); w.Code != http.StatusForbidden {
		t.Errorf("malformed token: %d, want 403", w.Code)
	}
}

// The confirm page's POST redeems once, to the target the link named,
// checked again; the probe cookie is cleared.
func TestConfirmPostRedeemsOnce(t *testing.T) {
	h := confirmHandler(t, "")
	for _, tc := range []struct{ link, want string }{
		{"/redirect/%s", "/stored"},
		{"/consume_ssotoken?ssoToken=%s&redirect=https://app.example.com/x%%3Fa=1%%26b=2", "https://app.example.com/x?a=1&b=2"},
		{"/auth?sso_token=%s", "/stored"},
	} {
		tok := confirmToken(t, h, "poster", "/stored")
		link := strings.Replace(tc.link, "%s", tok, 1)
		link = strings.ReplaceAll(link, "%%", "%")
		page := confirmDo(t, h, http.MethodGet, link, "", "User-Agent: "+scannerAgents[1])
		form := pageForm(t, page.Body.String())
		if !strings.Contains(page.Body.String(), `document.getElementById("confirm").submit()`) {
			t.Errorf("%s: no auto-submit script", link)
		}
		w := form.post(t, h, withProbe(page, h, sameOriginPost...)...)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != tc.want || cookieOf(w, h.CookieName) == nil {
			t.Fatalf("%s: POST %s: %d to %q, cookie %v; want 303 to %s with a session", link, form.action, w.Code, w.Header().Get("Location"), cookieOf(w, h.CookieName), tc.want)
		}
		if c := cookieOf(w, h.probeCookieName()); c == nil || c.MaxAge >= 0 {
			t.Errorf("%s: probe cookie not cleared: %+v", link, c)
		}
		if w := form.post(t, h, withProbe(page, h, sameOriginPost...)...); w.Code != http.StatusForbidden || cookieOf(w, h.CookieName) != nil {
			t.Errorf("%s: second POST: %d, want 403", link, w.Code)
		}
	}
}

// Another site cannot post a token (login CSRF), whatever it sends: the
// token stays good. Same-origin posts pass with Origin the page's own or
// null (vouched for by Sec-Fetch-Site), or without fetch metadata.
func TestConfirmPostRefusedCrossSite(t *testing.T) {
	h := confirmHandler(t, "")
	tok := confirmToken(t, h, "csrf-target", "")
	page := confirmDo(t, h, http.MethodGet, "/redirect/"+tok, "")
	form := pageForm(t, page.Body.String())
	for _, hdrs := range [][]string{
		{"Origin: https://evil.test"},
		{"Origin: https://emr.test:9443", "Sec-Fetch-Site: cross-site"},
		{"Origin: null"},
		{"Origin: null", "Sec-Fetch-Site: cross-site"},
		{"Sec-Fetch-Site: same-site"},
		{"Sec-Fetch-Site: cross-site"},
		{"Origin: https://portal.test.evil.test", "Sec-Fetch-Site: same-origin"},
		{"Origin: http://portal.test:1", "Sec-Fetch-Site: same-origin"},
	} {
		w := form.post(t, h, withProbe(page, h, hdrs...)...)
		if w.Code != http.StatusForbidden || cookieOf(w, h.CookieName) != nil {
			t.Fatalf("POST with %q: %d, want 403", hdrs, w.Code)
		}
	}
	for i, hdrs := range [][]string{
		{"Origin: https://portal.test", "Sec-Fetch-Site: same-origin"},
		{"Origin: null", "Sec-Fetch-Site: same-origin"},
		{},
	} {
		if i > 0 {
			tok := confirmToken(t, h, "csrf-target", "")
			page = confirmDo(t, h, http.MethodGet, "/redirect/"+tok, "")
			form = pageForm(t, page.Body.String())
		}
		if w := form.post(t, h, withProbe(page, h, hdrs...)...); w.Code != http.StatusSeeOther {
			t.Fatalf("POST with %q: %d, want 303", hdrs, w.Code)
		}
	}
	// A POST that is not the page's form is refused, the token untouched.
	tok = confirmToken(t, h, "csrf-target", "")
	for _, body := range []string{"", "token=" + tok + "&token=" + tok, "other=" + tok} {
		w := confirmDo(t, h, http.MethodPost, "/redirect/", body, "Content-Type: application/x-www-form-urlencoded")
		if w.Code != http.StatusForbidden {
			t.Errorf("POST %q: %d, want 403", body, w.Code)
		}
	}
	if w := confirmDo(t, h, http.MethodPost, "/redirect/", "token="+tok, "Content-Type: text/plain"); w.Code != http.StatusForbidden {
		t.Errorf("text/plain POST: %d, want 403", w.Code)
	}
	// The token rode in no URL, so it was never consumed.
	if w := confirmDo(t, h, http.MethodGet, "/redirect/"+tok, "", sameOriginPost[2:]...); w.Code != http.StatusFound {
		t.Errorf("token after refused POSTs: %d, want 302", w.Code)
	}
}

// A POST whose browser kept no probe cookie gets the fallback page, and the
// token stays unused: in a frame, with the same link in a new tab and a
// storage access offer that probes again; a bad target is still refused.
func TestConfirmFallbackKeepsToken(t *testing.T) {
	h := confirmHandler(t, "")
	fellBack := redemptions.WithLabelValues("auth", redeemFellBack)
	before := counterValue(t, fellBack)
	tok := confirmToken(t, h, "frame-user", "")
	link := "/auth?sso_token=" + tok + "&next=%2Fhome%3Fa%3D1"
	frameNav := []string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: iframe"}
	page := confirmDo(t, h, http.MethodGet, link, "", frameNav...)
	wantConfirmPage(t, page, false)
	form := pageForm(t, page.Body.String())
	if form.fields.Get("next") != "/home?a=1" || form.fields.Get(stepField) != stepProbe {
		t.Fatalf("form fields %v", form.fields)
	}
	inFrame := []string{"Origin: null", "Sec-Fetch-Site: same-origin", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: iframe"}
	fb := form.post(t, h, inFrame...) // no cookie came back
	wantConfirmPage(t, fb, false)
	body := fb.Body.String()
	wantLink := `href="` + html.EscapeString("/auth?next=%2Fhome%3Fa%3D1&sso_token="+tok) + `" target="_blank" rel="noopener"`
	if !strings.Contains(body, "keeps no sign-in inside this frame") || !strings.Contains(body, wantLink) ||
		!strings.Contains(body, "requestStorageAccess") || cookieOf(fb, h.CookieName) != nil {
		t.Fatalf("fallback page (want link %s):\n%s", wantLink, body)
	}
	if got := counterValue(t, fellBack) - before; got != 1 {
		t.Errorf("fell_back moved by %v, want 1", got)
	}
	// Storage access granted: the fallback's form probes again.
	again := pageForm(t, body)
	if again.fields.Get(stepField) != stepAccess {
		t.Fatalf("fallback form step %q", again.fields.Get(stepField))
	}
	reprobe := again.post(t, h, inFrame...)
	if reprobe.Code != http.StatusOK || cookieOf(reprobe, h.probeCookieName()) == nil || pageForm(t, reprobe.Body.String()).fields.Get(stepField) != stepProbe {
		t.Fatalf("after storage access: %d, probe %v", reprobe.Code, cookieOf(reprobe, h.probeCookieName()))
	}
	// Outside a frame the fallback says so, and opens the link in place.
	top := form.post(t, h, sameOriginPost...)
	if b := top.Body.String(); top.Code != http.StatusOK || !strings.Contains(b, "did not keep the sign-in cookie") || strings.Contains(b, "_blank") {
		t.Errorf("top-level fallback: %d\n%s", top.Code, b)
	}
	// The target is checked on the POST too.
	bad := url.Values{"sso_token": {tok}, "next": {"//evil.test"}, stepField: {stepProbe}}
	if w := confirmDo(t, h, http.MethodPost, "/auth", bad.Encode(), withProbe(page, h, append(sameOriginPost, "Content-Type: application/x-www-form-urlencoded")...)...); w.Code != http.StatusBadRequest {
		t.Errorf("POST with a bad target: %d, want 400", w.Code)
	}
	// With the probe cookie back, the frame signs in; the link was unused.
	w := form.post(t, h, withProbe(page, h, inFrame...)...)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/home?a=1" || cookieOf(w, h.CookieName) == nil {
		t.Fatalf("POST with the probe cookie: %d to %q", w.Code, w.Header().Get("Location"))
	}
}

// always asks every browser for a click; off redeems every GET at once, and
// HEAD never redeems.
func TestConfirmModes(t *testing.T) {
	always := confirmHandler(t, "always")
	tok := confirmToken(t, always, "clicker", "")
	page := confirmDo(t, always, http.MethodGet, "/redirect/"+tok, "", sameOriginPost[2:]...)
	wantConfirmPage(t, page, false)
	if b := page.Body.String(); strings.Contains(b, "<script") || !strings.Contains(b, `<button id="continue" type="submit">`) {
		t.Errorf("always: want a button and no script:\n%s", b)
	}
	if w := pageForm(t, page.Body.String()).post(t, always, withProbe(page, always, sameOriginPost...)...); w.Code != http.StatusSeeOther {
		t.Errorf("always: POST %d, want 303", w.Code)
	}

	off := confirmHandler(t, "off")
	tok = confirmToken(t, off, "old-style", "")
	if w := confirmDo(t, off, http.MethodHead, "/redirect/"+tok, ""); w.Code != http.StatusOK || cookieOf(w, off.CookieName) != nil {
		t.Errorf("off: HEAD %d, want 200 without a session", w.Code)
	}
	if w := confirmDo(t, off, http.MethodGet, "/redirect/"+tok, "", "User-Agent: "+scannerAgents[0]); w.Code != http.StatusFound {
		t.Errorf("off: bare GET %d, want 302", w.Code)
	}
	if w := confirmDo(t, off, http.MethodPut, "/redirect/"+tok, ""); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("PUT: %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

func TestConfirmConfig(t *testing.T) {
	for _, v := range []string{"auto", "always", "off"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ssogate {\n redeem_confirm " + v + "\n}")); err != nil || h.RedeemConfirm != v {
			t.Errorf("redeem_confirm %s: %q, %v", v, h.RedeemConfirm, err)
		}
	}
	for _, in := range []string{"redeem_confirm", "redeem_confirm sometimes", "redeem_confirm auto off"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ssogate {\n " + in + "\n}")); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
	h := &Handler{RedeemConfirm: "never"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "redeem_confirm") {
		t.Errorf("provision with redeem_confirm never: %v", err)
	}
}

// The confirm and fallback pages never ask the store, so they tell a guesser
// nothing and cost nothing; every POST that does ask counts as ever, and
// past the limit a POST gets 429 with the token untouched.
func TestConfirmUnderTheFailureLimit(t *testing.T) {
	h := confirmHandler(t, "")
	h.limiter = failurelimit.New(2, time.Minute, 100, time.Now)
	counting := &rlCountingStore{Store: h.store}
	h.store = counting
	good := confirmToken(t, h, "limited", "")
	page := confirmDo(t, h, http.MethodGet, "/redirect/"+good, "")
	form := pageForm(t, page.Body.String())
	for range 20 {
		guess := token.New()
		if w := confirmDo(t, h, http.MethodGet, "/redirect/"+guess, ""); w.Code != http.StatusOK {
			t.Fatalf("confirm page for a guess: %d, want 200", w.Code)
		}
		f := confirmForm{form.action, url.Values{"token": {guess}, stepField: {stepProbe}}}
		if w := f.post(t, h, sameOriginPost...); w.Code != http.StatusOK { // no probe cookie: the fallback
			t.Fatalf("fallback for a guess: %d, want 200", w.Code)
		}
	}
	if n := counting.takes.Load(); n != 0 {
		t.Fatalf("%d store lookups for confirm and fallback pages, want none", n)
	}
	for range 2 {
		f := confirmForm{form.action, url.Values{"token": {token.New()}, stepField: {stepProbe}}}
		if w := f.post(t, h, withProbe(page, h, sameOriginPost...)...); w.Code != http.StatusForbidden {
			t.Fatalf("POST of a guess: %d, want 403", w.Code)
		}
	}
	if w := form.post(t, h, withProbe(page, h, sameOriginPost...)...); w.Code != http.StatusTooManyRequests {
		t.Fatalf("POST past the limit: %d, want 429", w.Code)
	}
	if n := counting.takes.Load(); n != 2 {
		t.Fatalf("%d store lookups, want 2 (the guesses before the limit)", n)
	}
}
