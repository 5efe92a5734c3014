package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// With error_pages caddy, errors go to Caddy with their status and SPEC code,
// headers kept; with the default, the gateway answers them itself.
func TestErrorPagesCaddy(t *testing.T) {
	h := apiHandler(t, &Handler{ErrorPages: "caddy", EmbedFrom: []string{"https://emr.test"}})
	serve := func(method, target string, header ...string) (*httptest.ResponseRecorder, *caddy.Replacer, error) {
		r := httptest.NewRequest(method, "https://portal.test"+target, nil)
		asBrowserNavigation(r)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		repl := caddy.NewReplacer()
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
		w := httptest.NewRecorder()
		err := h.ServeHTTP(w, r.WithContext(ctx), caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			t.Fatal("an error exit reached next")
			return nil
		}))
		return w, repl, err
	}
	for _, c := range []struct {
		method, target string
		header         []string
		status         int
		code           string
	}{
		{http.MethodGet, "/patients", nil, http.StatusUnauthorized, "not_signed_in"},
		{http.MethodGet, "/redirect/" + strings.Repeat("A", 43), nil, http.StatusForbidden, "invalid_or_used_token"},
		{http.MethodGet, "/redirect/" + strings.Repeat("A", 43), []string{"Accept", "application/json"}, http.StatusForbidden, "invalid_or_used_token"},
		{http.MethodGet, "/auth?sso_token=" + strings.Repeat("A", 43) + "&next=https://evil.test/", nil, http.StatusBadRequest, "bad_redirect"},
		{http.MethodPost, "/sso/tokens", nil, http.StatusUnauthorized, "unauthorized"},
		{http.MethodGet, "/sso/logout", nil, http.StatusMethodNotAllowed, "method_not_allowed"},
	} {
		w, repl, err := serve(c.method, c.target, c.header...)
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("%s %s: %v (answered %d %q), want a Caddy error", c.method, c.target, err, w.Code, w.Body)
		}
		if he.StatusCode != c.status || he.Err.Error() != c.code {
			t.Errorf("%s %s: Caddy error %d %q, want %d %q", c.method, c.target, he.StatusCode, he.Err, c.status, c.code)
		}
		if w.Body.Len() != 0 {
			t.Errorf("%s %s: the gateway wrote %q itself", c.method, c.target, w.Body)
		}
		hdr := w.Header()
		if hdr.Get("Cache-Control") != "no-store" || !strings.Contains(hdr.Get("Content-Security-Policy"), "frame-ancestors 'self' https://emr.test") {
			t.Errorf("%s %s: headers %v, want no-store and the embed_from frame-ancestors", c.method, c.target, hdr)
		}
		if got, _ := repl.GetString("ssogate.error.title"); got == "" {
			t.Errorf("%s %s: no {ssogate.error.title}", c.method, c.target)
		}
	}
	if _, _, err := serve(http.MethodPost, "/sso/tokens", "Authorization", "Bearer wrong-key-0123456789abcdef"); err == nil {
		t.Error("a wrong API key: no Caddy error")
	}
}

func TestErrorPagesBuiltinIsTheDefault(t *testing.T) {
	h := apiHandler(t, &Handler{})
	w, _ := h.do(t, http.MethodGet, "/patients", "", "")
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "You are not signed in") {
		t.Fatalf("default error pages: %d %q", w.Code, w.Body)
	}
}

func TestErrorPagesCaddyfile(t *testing.T) {
	for in, want := range map[string]string{"ssogate {\n error_pages caddy\n}": "caddy", "ssogate {\n error_pages builtin\n}": "builtin"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil || h.ErrorPages != want {
			t.Errorf("%q: %q, %v", in, h.ErrorPages, err)
		}
	}
	for _, in := range []string{"ssogate {\n error_pages\n}", "ssogate {\n error_pages fancy\n}", "ssogate {\n error_pages caddy builtin\n}"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	if err := (&Handler{ErrorPages: "Caddy", TokenTTL: 1, SessionIdle: 1, SessionTTL: 1, CookieName: "c", APIPrefix: "/sso"}).Validate(); err == nil {
		t.Error(`error_pages "Caddy" validated`)
	}
}
