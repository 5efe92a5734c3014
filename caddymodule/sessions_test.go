package caddymodule

import (
	"crypto/tls"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/ssogate/ssogate/plugins/store"
)

func TestGrantRevoked(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC)
	orgA := map[string]string{"group": "org-a"}
	marks := []store.Revocation{{Claims: orgA, At: at}}
	for _, c := range []struct {
		name  string
		grant store.Token
		want  bool
	}{
		{"issued before, same tenant", store.Token{Claims: orgA, IssuedAt: "2026-01-02T03:04:04Z"}, true},
		{"issued in the revocation's second", store.Token{Claims: orgA, IssuedAt: "2026-01-02T03:04:05Z"}, true},
		{"issued after", store.Token{Claims: orgA, IssuedAt: "2026-01-02T03:04:06Z"}, false},
		{"another tenant", store.Token{Claims: map[string]string{"group": "org-b"}, IssuedAt: "2026-01-02T03:04:04Z"}, false},
		{"same tenant, more claims", store.Token{Claims: map[string]string{"group": "org-a", "role": "x"}, IssuedAt: "2026-01-02T03:04:04Z"}, true},
		{"no issue time", store.Token{Claims: orgA}, true},
		{"unreadable issue time", store.Token{Claims: orgA, IssuedAt: "yesterday"}, true},
	} {
		if got := grantRevoked(c.grant, marks); got != c.want {
			t.Errorf("%s: revoked = %v, want %v", c.name, got, c.want)
		}
	}
	everyone := []store.Revocation{{At: at}}
	if !grantRevoked(store.Token{Claims: map[string]string{"group": "org-b"}, IssuedAt: "2026-01-02T03:04:00Z"}, everyone) {
		t.Error("a mark without claims (a credential without fixed claims) must reach every tenant")
	}
}

func TestCrossSiteLogout(t *testing.T) {
	h := &Handler{publicURL: &url.URL{Scheme: "https", Host: "portal.example.com"}}
	for _, c := range []struct {
		headers map[string]string
		want    bool
	}{
		{nil, false},
		{map[string]string{"Origin": "https://portal.test:8443"}, false},
		{map[string]string{"Origin": "https://PORTAL.test:8443", "Sec-Fetch-Site": "same-origin"}, false},
		{map[string]string{"Origin": "https://portal.example.com"}, false},
		{map[string]string{"Sec-Fetch-Site": "none"}, false},
		{map[string]string{"Origin": "https://evil.test"}, true},
		{map[string]string{"Origin": "http://portal.test:8443"}, true},
		{map[string]string{"Origin": "https://portal.test:9443"}, true},
		{map[string]string{"Origin": "null"}, true},
		{map[string]string{"Sec-Fetch-Site": "cross-site"}, true},
		{map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://a.portal.test:8443"}, true},
		{map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.test"}, true},
	} {
		r := httptest.NewRequest("POST", "https://portal.test:8443/sso/logout", nil)
		r.TLS = &tls.ConnectionState{}
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		if got := h.crossSite(r, false); got != c.want {
			t.Errorf("headers %v: cross-site = %v, want %v", c.headers, got, c.want)
		}
	}
	// Behind a proxy that ends TLS, the browser's https origin is still the
	// portal's own.
	r := httptest.NewRequest("POST", "http://portal.test:8443/sso/logout", nil)
	r.Header.Set("Origin", "https://portal.test:8443")
	if h.crossSite(r, false) {
		t.Error("the https origin of a plain-HTTP request to the same host was refused")
	}
}

func TestSessionCreator(t *testing.T) {
	h := &Handler{Credentials: []*Credential{{ID: "emr-org-a"}}, SigningKeys: map[string]string{"k1": "x"}}
	h.buildCreators()
	for in, want := range map[string]string{
		"":          "",
		"emr-org-a": "emr-org-a",
		"signed:k1": "signed:k1",
		"billing":   "direct:billing",
		"signed:k2": "direct:signed:k2",
	} {
		if got := h.sessionCreator(in); got != want || !h.creatorKnown(got) {
			t.Errorf("sessionCreator(%q) = %q (known %v), want %q", in, got, h.creatorKnown(got), want)
		}
	}
	h.Credentials = nil
	h.buildCreators()
	if h.creatorKnown("emr-org-a") {
		t.Error("a removed credential is still a known creator")
	}
}

func TestSessionsRoutesMethods(t *testing.T) {
	h := apiHandler(t, &Handler{})
	for _, c := range []struct {
		method, target, allow string
	}{
		{"POST", "/sso/sessions?userId=u", "GET, DELETE"},
		{"E", "/sso/sessions?userId=u", "GET, DELETE"},
		{"GET", "/sso/sessions/AAAAAAAAAAAAAAAAAAAAAA", "DELETE"},
		{"PUT", "/sso/sessions/AAAAAAAAAAAAAAAAAAAAAA", "DELETE"},
	} {
		w, _ := h.do(t, c.method, c.target, apiKeyRevoker, "")
		if w.Code != 405 || w.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow %q", c.method, c.target, w.Code, w.Header().Get("Allow"), c.allow)
		}
	}
}
