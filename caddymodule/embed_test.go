package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
	_ "github.com/ssogate/ssogate/plugins/store/memory"
)

// embedOrigins is the embed_from of the tests, and embedFA the frame-ancestors
// source list it must turn into.
var embedOrigins = []string{"https://emr.test:9443", "https://*.example.com"}

const embedFA = "'self' https://emr.test:9443 https://*.example.com"

// embedHandler provisions h as Caddy does, with /health and /assets/* as skip
// paths, and returns it with a session cookie of a signed-in user.
func embedHandler(t *testing.T, h *Handler) (*Handler, *http.Cookie) {
	t.Helper()
	h.Skip = []string{"/health", "/assets/*"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	id, err := h.newSession(context.Background(), store.Token{UserID: "embed-user"})
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	return h, &http.Cookie{Name: h.CookieName, Value: id}
}

// embedServe serves h on a real HTTP server, with next behind it, building the
// request context Caddy's server would, and returns the server's URL.
func embedServe(t *testing.T, h *Handler, next caddyhttp.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
		if err := h.ServeHTTP(w, r.WithContext(ctx), next); err != nil {
			t.Errorf("ServeHTTP %s: %v", r.URL.Path, err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// embedUpstream answers like a portal that knows nothing of framing: it sends
// the headers hdr (several values per name kept) and a body.
func embedUpstream(hdr http.Header) caddyhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		for k, vs := range hdr {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(http.StatusOK)
		_, err := io.WriteString(w, "portal page")
		return err
	}
}

// embedGet sends a GET with the given cookie (if any) and returns the answer
// with its body read.
func embedGet(t *testing.T, url string, c *http.Cookie, accept string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		req.AddCookie(c)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	asBrowserNavigation(req)
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

// wantHeader fails unless hdr[name] is exactly want (nil: absent).
func wantHeader(t *testing.T, hdr http.Header, name string, want ...string) {
	t.Helper()
	got := hdr.Values(name)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", name, got, want)
	}
}

// The upstream's CSP keeps everything but frame-ancestors, which becomes the
// embed_from list, on gated and skip paths alike; X-Frame-Options goes.
func TestEmbedMergesUpstreamCSP(t *testing.T) {
	h, cookie := embedHandler(t, &Handler{EmbedFrom: embedOrigins})
	tests := []struct {
		name     string
		csp      []string // the upstream's Content-Security-Policy headers
		xfo      string
		want     []string
		reportRO []string // Content-Security-Policy-Report-Only, in and out
		wantRO   []string
	}{{
		name: "no CSP, X-Frame-Options DENY",
		xfo:  "DENY",
		want: []string{"frame-ancestors " + embedFA},
	}, {
		name: "frame-ancestors alone",
		csp:  []string{"frame-ancestors 'none'"},
		xfo:  "SAMEORIGIN",
		want: []string{"frame-ancestors " + embedFA},
	}, {
		name: "other directives around frame-ancestors",
		csp:  []string{"default-src 'self'; frame-ancestors 'self'; img-src * data:"},
		want: []string{"default-src 'self'; img-src * data:; frame-ancestors " + embedFA},
	}, {
		name: "other directives, no frame-ancestors",
		csp:  []string{"default-src 'self'; script-src 'self' 'nonce-abc'"},
		xfo:  "DENY",
		want: []string{"default-src 'self'; script-src 'self' 'nonce-abc'; frame-ancestors " + embedFA},
	}, {
		name: "several headers, each with frame-ancestors",
		csp:  []string{"default-src 'self'; FRAME-ANCESTORS 'none'", "frame-ancestors https://evil.test", "script-src 'none'; frame-ancestors 'self'"},
		want: []string{"default-src 'self'; frame-ancestors " + embedFA, "script-src 'none'"},
	}, {
		name: "comma-separated policies in one header",
		csp:  []string{"default-src 'self', frame-ancestors 'none'"},
		want: []string{"default-src 'self'; frame-ancestors " + embedFA},
	}, {
		name:     "report-only loses frame-ancestors, gets none",
		reportRO: []string{"frame-ancestors 'none'; report-uri /csp"},
		want:     []string{"frame-ancestors " + embedFA},
		wantRO:   []string{"report-uri /csp"},
	}}
	for _, tt := range tests {
		for _, path := range []string{"/patients/1", "/health", "/assets/app.js"} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				hdr := http.Header{"Content-Security-Policy": tt.csp, "Content-Security-Policy-Report-Only": tt.reportRO}
				if tt.xfo != "" {
					hdr.Set("X-Frame-Options", tt.xfo)
				}
				url := embedServe(t, h, embedUpstream(hdr))
				resp, body := embedGet(t, url+path, cookie, "")
				if resp.StatusCode != http.StatusOK || body != "portal page" {
					t.Fatalf("got %d %q, want 200 from the upstream", resp.StatusCode, body)
				}
				wantHeader(t, resp.Header, "Content-Security-Policy", tt.want...)
				wantHeader(t, resp.Header, "Content-Security-Policy-Report-Only", tt.wantRO...)
				wantHeader(t, resp.Header, "X-Frame-Options")
			})
		}
	}
}

// The gateway's own answers, pages, JSON and redirects, carry the same policy.
func TestEmbedGatewayAnswersFramable(t *testing.T) {
	h, cookie := embedHandler(t, &Handler{EmbedFrom: embedOrigins})
	url := embedServe(t, h, embedUpstream(nil))
	tok := token.New()
	if err := h.store.AddToken(context.Background(), token.Hash(tok), store.Token{UserID: "embed-redeemer"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, accept string
		cookie             *http.Cookie
		status             int
	}{
		{"401 page", "/", "text/html", nil, http.StatusUnauthorized},
		{"401 JSON", "/", "application/json", nil, http.StatusUnauthorized},
		{"403 page for a used link", "/redirect/" + token.New(), "text/html", nil, http.StatusForbidden},
		{"302 after redeem", "/redirect/" + tok, "text/html", nil, http.StatusFound},
		{"API 405 JSON", "/sso/tokens", "", nil, http.StatusMethodNotAllowed},
		{"logout 405 page", "/sso/logout", "", cookie, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := embedGet(t, url+tt.path, tt.cookie, tt.accept)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			wantHeader(t, resp.Header, "Content-Security-Policy", "frame-ancestors "+embedFA)
		})
	}
}

// Without embed_from the upstream's framing headers and cookies are its own
// business and pass untouched; the gateway's pages forbid all framing.
func TestEmbedOffLeavesUpstreamAlone(t *testing.T) {
	h, cookie := embedHandler(t, &Handler{})
	if w := httptest.NewRecorder(); h.wrapResponse(w) != http.ResponseWriter(w) {
		t.Error("wrapResponse wraps without embed_from")
	}
	hdr := http.Header{
		"Content-Security-Policy": {"default-src 'self'; frame-ancestors 'none'"},
		"X-Frame-Options":         {"DENY"},
		"Set-Cookie":              {"portal_sid=abc; Path=/; HttpOnly; SameSite=Lax"},
	}
	url := embedServe(t, h, embedUpstream(hdr))
	for _, path := range []string{"/patients/1", "/health"} {
		resp, _ := embedGet(t, url+path, cookie, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		for name, want := range hdr {
			wantHeader(t, resp.Header, name, want...)
		}
	}
	resp, _ := embedGet(t, url+"/", nil, "text/html")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no cookie: status %d, want 401", resp.StatusCode)
	}
	wantHeader(t, resp.Header, "Content-Security-Policy", "frame-ancestors 'none'")
}

// The upstream's cookies become partitioned third-party cookies, unless
// rewrite_upstream_cookies is off; the framing headers are merged either way.
func TestEmbedRewritesUpstreamCookies(t *testing.T) {
	upstream := []string{
		"portal_sid=abc; Path=/; HttpOnly; SameSite=Lax",
		"pref=dark; Path=/; Secure; Max-Age=3600",
		"csrf=x; samesite=strict; SameSite=Lax; Secure",
		"done=1; Path=/; SameSite=None; Secure; Partitioned",
		"gone=; Path=/; Max-Age=0",
	}
	rewritten := []string{
		"portal_sid=abc; Path=/; HttpOnly; SameSite=None; Secure; Partitioned",
		"pref=dark; Path=/; Secure; Max-Age=3600; SameSite=None; Partitioned",
		"csrf=x; SameSite=None; Secure; Partitioned",
		"done=1; Path=/; SameSite=None; Secure; Partitioned",
		"gone=; Path=/; Max-Age=0; SameSite=None; Secure; Partitioned",
	}
	off := false
	for _, tt := range []struct {
		name    string
		rewrite *bool
		want    []string
	}{
		{"default on", nil, rewritten},
		{"rewrite_upstream_cookies off", &off, upstream},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, cookie := embedHandler(t, &Handler{EmbedFrom: embedOrigins, RewriteUpstreamCookies: tt.rewrite})
			url := embedServe(t, h, embedUpstream(http.Header{"Set-Cookie": upstream, "X-Frame-Options": {"DENY"}}))
			for _, path := range []string{"/", "/health"} {
				resp, _ := embedGet(t, url+path, cookie, "")
				wantHeader(t, resp.Header, "Set-Cookie", tt.want...)
				wantHeader(t, resp.Header, "Content-Security-Policy", "frame-ancestors "+embedFA)
				wantHeader(t, resp.Header, "X-Frame-Options")
			}
		})
	}
}

// The session cookie is a partitioned third-party cookie with embed_from, a
// first-party Lax cookie without; so is the cookie that deletes it.
func TestEmbedSessionCookie(t *testing.T) {
	for _, tt := range []struct {
		name        string
		embedFrom   []string
		sameSite    http.SameSite
		partitioned bool
	}{
		{"embed_from", embedOrigins, http.SameSiteNoneMode, true},
		{"no embed_from", nil, http.SameSiteLaxMode, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, cookie := embedHandler(t, &Handler{EmbedFrom: tt.embedFrom})
			url := embedServe(t, h, embedUpstream(nil))
			tok := token.New()
			if err := h.store.AddToken(context.Background(), token.Hash(tok), store.Token{UserID: "embed-cookie"}, time.Minute); err != nil {
				t.Fatal(err)
			}
			resp, _ := embedGet(t, url+"/redirect/"+tok, nil, "")
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("redeem: status %d, want 302", resp.StatusCode)
			}
			req, _ := http.NewRequest(http.MethodPost, url+"/sso/logout", nil)
			req.AddCookie(cookie)
			out, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out.Body.Close()
			for what, lines := range map[string][]string{"redeem": resp.Header.Values("Set-Cookie"), "logout": out.Header.Values("Set-Cookie")} {
				if len(lines) != 1 {
					t.Fatalf("%s: Set-Cookie %q, want one", what, lines)
				}
				c, err := http.ParseSetCookie(lines[0])
				if err != nil {
					t.Fatalf("%s: %q: %v", what, lines[0], err)
				}
				if c.Name != "__Host-ssogate" || c.Path != "/" || !c.Secure || !c.HttpOnly || c.SameSite != tt.sameSite || c.Partitioned != tt.partitioned || c.Domain != "" {
					t.Errorf("%s: Set-Cookie %q, want Path=/, Secure, HttpOnly, SameSite %v, Partitioned %v", what, lines[0], tt.sameSite, tt.partitioned)
				}
			}
		})
	}
}

// A 103 Early Hints goes out as the upstream wrote it and does not count as
// the response: headers set after it are still rewritten.
func TestEmbedEarlyHintsNotRewritten(t *testing.T) {
	h, cookie := embedHandler(t, &Handler{EmbedFrom: embedOrigins})
	url := embedServe(t, h, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Link", "</app.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Set-Cookie", "portal_sid=abc; Path=/; SameSite=Lax")
		w.WriteHeader(http.StatusOK)
		return nil
	})
	var hints []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		if code == http.StatusEarlyHints {
			hints = append(hints, hdr)
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url+"/", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(hints) != 1 {
		t.Fatalf("got %d 103 responses, want 1", len(hints))
	}
	wantHeader(t, http.Header(hints[0]), "Link", "</app.css>; rel=preload; as=style")
	wantHeader(t, http.Header(hints[0]), "Content-Security-Policy")
	wantHeader(t, http.Header(hints[0]), "Set-Cookie")
	wantHeader(t, resp.Header, "Content-Security-Policy", "default-src 'self'; frame-ancestors "+embedFA)
	wantHeader(t, resp.Header, "X-Frame-Options")
	wantHeader(t, resp.Header, "Set-Cookie", "portal_sid=abc; Path=/; SameSite=None; Secure; Partitioned")
}

// embedReader hides strings.Reader's WriteTo, so that io.Copy takes the
// writer's ReadFrom, as it does for a proxied body.
type embedReader struct{ io.Reader }

// However the upstream starts its answer without WriteHeader (Write, io.Copy
// into ReadFrom, a flush), the headers are rewritten before they go out.
func TestEmbedImplicitHeader(t *testing.T) {
	h, cookie := embedHandler(t, &Handler{EmbedFrom: embedOrigins})
	for _, tt := range []struct {
		name  string
		start func(w http.ResponseWriter) error
	}{
		{"Write", func(w http.ResponseWriter) error {
			_, err := io.WriteString(w, "body")
			return err
		}},
		{"ReadFrom", func(w http.ResponseWriter) error {
			_, err := io.Copy(w, embedReader{strings.NewReader("body")})
			return err
		}},
		{"ResponseController.Flush", func(w http.ResponseWriter) error {
			if err := http.NewResponseController(w).Flush(); err != nil {
				return err
			}
			_, err := io.WriteString(w, "body")
			return err
		}},
		{"http.Flusher", func(w http.ResponseWriter) error {
			f, ok := w.(http.Flusher)
			if !ok {
				return errors.New("the writer is no http.Flusher")
			}
			f.Flush()
			_, err := io.WriteString(w, "body")
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := embedServe(t, h, func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Content-Security-Policy", "frame-ancestors 'none'")
				w.Header().Set("X-Frame-Options", "DENY")
				w.Header().Set("Set-Cookie", "portal_sid=abc; Path=/")
				return tt.start(w)
			})
			resp, body := embedGet(t, url+"/", cookie, "")
			if resp.StatusCode != http.StatusOK || body != "body" {
				t.Fatalf("got %d %q, want 200 \"body\"", resp.StatusCode, body)
			}
			wantHeader(t, resp.Header, "Content-Security-Policy", "frame-ancestors "+embedFA)
			wantHeader(t, resp.Header, "X-Frame-Options")
			wantHeader(t, resp.Header, "Set-Cookie", "portal_sid=abc; Path=/; SameSite=None; Secure; Partitioned")
		})
	}
}

// A flush through the wrapper reaches the client while the upstream is still
// answering (server-sent events, long polls), and the rest of
// http.ResponseController still finds the connection through Unwrap.
func TestEmbedFlushStreams(t *testing.T) {
	h, cookie := embedHandler(t, &Handler{EmbedFrom: embedOrigins})
	release := make(chan struct{})
	url := embedServe(t, h, func(w http.ResponseWriter, r *http.Request) error {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Frame-Options", "DENY")
		w.WriteHeader(http.StatusOK)
		if _, err := io.WriteString(w, "data: first\n\n"); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return errors.New("the client never read the flushed event")
		}
		_, err := io.WriteString(w, "data: second\n\n")
		return err
	})
	req, _ := http.NewRequest(http.MethodGet, url+"/events", nil)
	req.AddCookie(cookie)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantHeader(t, resp.Header, "Content-Security-Policy", "frame-ancestors "+embedFA)
	wantHeader(t, resp.Header, "X-Frame-Options")
	first := make([]byte, len("data: first\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: first\n\n" {
		t.Fatalf("first event: %q, %v", first, err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "data: second\n\n" {
		t.Fatalf("second event: %q, %v", rest, err)
	}
}

// embed_from takes one or more origins and may repeat; the cookie switch
// takes on or off. Anything else is a Caddyfile error.
func TestEmbedCaddyfile(t *testing.T) {
	on, off := true, false
	for _, tt := range []struct {
		input     string
		embedFrom []string
		rewrite   *bool
		err       string // "" when it must parse
	}{
		{"ssogate {\n embed_from https://emr.test:9443 https://*.example.com\n}", embedOrigins, nil, ""},
		{"ssogate {\n embed_from https://a.test\n embed_from https://b.test\n rewrite_upstream_cookies off\n}", []string{"https://a.test", "https://b.test"}, &off, ""},
		{"ssogate {\n rewrite_upstream_cookies on\n}", nil, &on, ""},
		{"ssogate {\n embed_from\n}", nil, nil, "wrong argument count"},
		{"ssogate {\n rewrite_upstream_cookies\n}", nil, nil, "wrong argument count"},
		{"ssogate {\n rewrite_upstream_cookies off on\n}", nil, nil, "wrong argument count"},
		{"ssogate {\n rewrite_upstream_cookies no\n}", nil, nil, "want on or off"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want one containing %q", tt.input, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.input, err)
			continue
		}
		if !reflect.DeepEqual(h.EmbedFrom, tt.embedFrom) || !reflect.DeepEqual(h.RewriteUpstreamCookies, tt.rewrite) {
			t.Errorf("%q: embed_from %q, rewrite %v; want %q, %v", tt.input, h.EmbedFrom, h.RewriteUpstreamCookies, tt.embedFrom, tt.rewrite)
		}
	}
}

// A bad origin stops the config from loading, naming the entry; it never
// reaches a header.
func TestEmbedProvisionRejectsBadOrigins(t *testing.T) {
	for _, origin := range []string{"emr.test", "http://emr.test", "https://emr.test/app", "*", "https://*.com", "https://a.test, https://b.test", "'self'"} {
		h := &Handler{EmbedFrom: []string{"https://ok.test", origin}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "embed_from") || !strings.Contains(err.Error(), origin) {
			t.Errorf("embed_from %q: error %v, want one naming embed_from and the entry", origin, err)
		}
	}
}
