package integration

import (
	"net/http"
	"testing"
)

// TestGateSkipAndLoginURL covers SPEC's skip paths (proxied without a session,
// identity headers still stripped) and login_url (browsers without a session
// are sent there; API clients still get 401).
func TestGateSkipAndLoginURL(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: `skip /health /assets/*
		login_url https://emr.test/login`})

	g.upstream.Reset()
	for _, path := range []string{"/health", "/assets/app.js", "/assets/css/site.css"} {
		saw := readUpstream(t, g.do(t, http.MethodGet, path, "", nil, "X-Forwarded-User: admin", "X-Forwarded-Claims: group=root"))
		if saw.Path != path || saw.User != "" || saw.Claims != "" {
			t.Errorf("skip path %s: upstream saw %+v; want it proxied with no identity", path, saw)
		}
	}

	for _, path := range []string{"/healthz", "/assets", "/app/health"} {
		resp := g.do(t, http.MethodGet, path, "", nil, "Accept: application/json")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s is not a skip path: %s, want 401", path, resp.Status)
		}
	}

	resp := g.do(t, http.MethodGet, "/records", "", nil, "Accept: text/html,application/xhtml+xml")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://emr.test/login" {
		t.Fatalf("browser without a session: %s to %q, want 302 to the login_url", resp.Status, resp.Header.Get("Location"))
	}
	if resp := g.do(t, http.MethodGet, "/records", "", nil, "Accept: application/json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API client without a session: %s, want 401", resp.Status)
	}

	c := g.signIn(t, "gina")
	if saw := readUpstream(t, g.do(t, http.MethodGet, "/records", "", c)); saw.User != "gina" {
		t.Fatalf("signed in, upstream saw %+v", saw)
	}
}
