package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/integration/harness"
	"github.com/ssogate/ssogate/internal/redirect/redirecttest"
)

// redeemLink builds the link of one redeem route for tok, with an optional
// target in the route's redirect parameter.
type redeemStyle struct {
	name string
	link func(tok, target string) string
}

var queryStyles = []redeemStyle{
	{"consume_ssotoken", func(tok, target string) string {
		q := url.Values{"ssoToken": {tok}}
		if target != "" {
			q.Set("redirect", target)
		}
		return "/consume_ssotoken/?" + q.Encode()
	}},
	{"consume_ssotoken without slash", func(tok, target string) string {
		q := url.Values{"ssoToken": {tok}}
		if target != "" {
			q.Set("redirect", target)
		}
		return "/consume_ssotoken?" + q.Encode()
	}},
	{"auth", func(tok, target string) string {
		q := url.Values{"sso_token": {tok}}
		if target != "" {
			q.Set("next", target)
		}
		return "/auth?" + q.Encode()
	}},
}

// TestRedeemRoutes is SPEC's "Redeem routes", on a real Caddy and Redis.
func TestRedeemRoutes(t *testing.T) {
	g := startGateway(t, gatewayOptions{store: "store redis " + harness.StartRedis(t).URL()})
	const deep = "/portal/#/patients/6422/details/overview"

	t.Run("PathRouteLandsOnStoredTargetWithFragment", func(t *testing.T) {
		m := g.mint(t, orgAKey, `{"userId":"u1","redirect":"`+deep+`"}`)
		resp := g.do(t, http.MethodGet, m.URL, "", nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != deep {
			t.Fatalf("%s to %q, want 302 to %q", resp.Status, resp.Header.Get("Location"), deep)
		}
	})

	for _, st := range queryStyles {
		t.Run(st.name, func(t *testing.T) {
			t.Run("LandsOnTargetWithFragment", func(t *testing.T) {
				m := g.mint(t, orgAKey, `{"userId":"u2"}`)
				resp := g.do(t, http.MethodGet, st.link(m.SSOToken, deep), "", nil)
				if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != deep || sessionCookie(resp) == nil {
					t.Fatalf("%s to %q, want 302 to %q with a cookie", resp.Status, resp.Header.Get("Location"), deep)
				}
				if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("redeem headers %v", resp.Header)
				}
				saw := readUpstream(t, g.do(t, http.MethodGet, "/portal/", "", sessionCookie(resp)))
				if saw.User != "u2" {
					t.Fatalf("upstream saw %+v", saw)
				}
			})
			t.Run("StoredTargetThenRoot", func(t *testing.T) {
				m := g.mint(t, orgAKey, `{"userId":"u3","redirect":"/stored"}`)
				if loc := g.do(t, http.MethodGet, st.link(m.SSOToken, ""), "", nil).Header.Get("Location"); loc != "/stored" {
					t.Fatalf("without a target: Location %q, want the stored /stored", loc)
				}
				m = g.mint(t, orgAKey, `{"userId":"u3"}`)
				if loc := g.do(t, http.MethodGet, st.link(m.SSOToken, ""), "", nil).Header.Get("Location"); loc != "/" {
					t.Fatalf("without any target: Location %q, want /", loc)
				}
			})
			t.Run("BadTargetsRefusedAndTokenKept", func(t *testing.T) {
				m := g.mint(t, orgAKey, `{"userId":"u4"}`)
				for _, bad := range redirecttest.BadTargets {
					resp := g.do(t, http.MethodGet, st.link(m.SSOToken, bad), "", nil)
					if resp.StatusCode != http.StatusBadRequest || sessionCookie(resp) != nil {
						t.Errorf("target %q: %s, want 400 and no cookie", bad, resp.Status)
					}
				}
				// None of that burned the token.
				resp := g.do(t, http.MethodGet, st.link(m.SSOToken, "/ok"), "", nil)
				if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ok" {
					t.Fatalf("after the refusals the token gives %s, want 302 to /ok", resp.Status)
				}
			})
			t.Run("GoodTargetsAccepted", func(t *testing.T) {
				for _, good := range redirecttest.GoodTargets {
					m := g.mint(t, orgAKey, `{"userId":"u5"}`)
					resp := g.do(t, http.MethodGet, st.link(m.SSOToken, good), "", nil)
					if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != good {
						t.Errorf("target %q: %s to %q, want 302 there", good, resp.Status, resp.Header.Get("Location"))
					}
				}
			})
		})
	}

	t.Run("MintRefusesBadStoredTargets", func(t *testing.T) {
		for _, bad := range redirecttest.BadTargets {
			body, _ := json.Marshal(map[string]string{"userId": "u6", "redirect": bad})
			resp := g.do(t, http.MethodPost, "/sso/tokens", string(body), nil, "Authorization: Bearer "+orgAKey)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("mint with redirect %q: %s, want 400", bad, resp.Status)
			}
		}
	})

	t.Run("SessionFixation", func(t *testing.T) {
		first := g.signIn(t, "fix")
		m := g.mint(t, orgAKey, `{"userId":"fix"}`)
		resp := g.do(t, http.MethodGet, m.URL, "", first)
		second := sessionCookie(resp)
		if second == nil || second.Value == first.Value {
			t.Fatalf("a redeem with a session cookie kept the id (%v)", second)
		}
		if r := g.do(t, http.MethodGet, "/", "", first); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the replaced session still works: %s", r.Status)
		}
		if r := g.do(t, http.MethodGet, "/", "", second); r.StatusCode != http.StatusOK {
			t.Fatalf("the new session does not work: %s", r.Status)
		}
	})

	t.Run("ErrorsAsJSONOrPage", func(t *testing.T) {
		tok := strings.Repeat("x", 43)
		resp := g.do(t, http.MethodGet, "/redirect/"+tok, "", nil, "Accept: application/json")
		var e struct{ Error, Code string }
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != http.StatusForbidden || e.Code != "invalid_or_used_token" || e.Error == "" {
			t.Fatalf("JSON error: %s %s", resp.Status, b)
		}
		resp = g.do(t, http.MethodGet, "/redirect/"+tok, "", nil, "Accept: text/html")
		b, _ = io.ReadAll(resp.Body)
		page := string(b)
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(page, "already used or has expired") ||
			!strings.Contains(page, "Go back to the app") || strings.Contains(page, tok) {
			t.Fatalf("HTML error page (%s): %s", resp.Header.Get("Content-Type"), page)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors") {
			t.Fatalf("error page CSP %q: want a frame-ancestors policy", csp)
		}
		codes := map[string]string{
			"/redirect/" + tok: "invalid_or_used_token",
			"/auth?sso_token=" + tok + "&next=//evil.example": "bad_redirect",
			"/records": "not_signed_in",
		}
		for path, code := range codes {
			resp := g.do(t, http.MethodGet, path, "", nil, "Accept: application/json")
			b, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(b), `"code":"`+code+`"`) {
				t.Errorf("%s: %s %s, want code %s", path, resp.Status, b, code)
			}
		}
	})

	t.Run("OddQueriesGetClearAnswers", func(t *testing.T) {
		for path, want := range map[string]int{
			"/auth?sso_token=" + strings.Repeat("a", 6000): http.StatusForbidden,
			"/auth?sso_token=%zz":                          http.StatusForbidden,
			"/auth?sso_token=a&sso_token=b":                http.StatusForbidden,
			"/auth":                                        http.StatusForbidden,
			"/consume_ssotoken/?ssoToken=" + strings.Repeat("a", 43) + "&redirect=/a&redirect=/b": http.StatusBadRequest,
			"/redirect/" + strings.Repeat("v1.", 700):                                             http.StatusForbidden,
		} {
			resp := g.do(t, http.MethodGet, path, "", nil)
			if resp.StatusCode != want {
				t.Errorf("%.60s…: %s, want %d", path, resp.Status, want)
			}
		}
		if resp := g.do(t, http.MethodPut, "/auth?sso_token="+strings.Repeat("a", 43), "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("PUT to a redeem route: %s, want 405", resp.Status)
		}
		// A POST is the confirm page's form: a token in its query is not read.
		if resp := g.do(t, http.MethodPost, "/auth?sso_token="+strings.Repeat("a", 43), "", nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST with the token in the query: %s, want 403", resp.Status)
		}
	})
}

// TestRedeemRoutesMovedAndOff shows each route can be moved or turned off.
func TestRedeemRoutesMovedAndOff(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: `redeem redirect /go
		redeem consume_ssotoken /fc/consume token to
		redeem auth off`})
	m := g.mint(t, orgAKey, `{"userId":"mover"}`)
	if !strings.Contains(m.URL, "/go/"+m.SSOToken) {
		t.Fatalf("minted link %s does not use the moved route", m.URL)
	}
	resp := g.do(t, http.MethodGet, "/fc/consume?token="+m.SSOToken+"&to=/x", "", nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/x" {
		t.Fatalf("moved query route: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	m = g.mint(t, orgAKey, `{"userId":"mover"}`)
	for _, old := range []string{"/redirect/" + m.SSOToken, "/auth?sso_token=" + m.SSOToken, "/consume_ssotoken/?ssoToken=" + m.SSOToken} {
		// Off or moved: the path is an ordinary portal path, gated.
		if resp := g.do(t, http.MethodGet, old, "", nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %s, want 401 (no redeem route there)", old, resp.Status)
		}
	}
	if resp := g.do(t, http.MethodGet, m.URL, "", nil); resp.StatusCode != http.StatusFound {
		t.Fatalf("the token was burned by a disabled route: %s", resp.Status)
	}
}
