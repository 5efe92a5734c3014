package integration

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssogate/ssogate/client"
	"github.com/ssogate/ssogate/integration/harness"
	"github.com/ssogate/ssogate/internal/token"
)

// SPEC "Sessions and cookies": listing and ending sessions, tenant scope,
// revocation of earlier tokens, sessions bound to their creator, the user
// index, logout only from the portal's own pages; "Stores": the memory
// store's size and the mint rate limit. Each runs on both stores where it
// applies.

// orgBKey is the API key of a second tenant's credential, emr-org-b.
const orgBKey = "it-org-b-5e4d3c2b1a0f9e8d7c6b5a4938271605"

// orgBCredential is an ssogate subdirective for a second tenant with the
// same powers as emr-org-a but the fixed claim group=org-b.
var orgBCredential = `credential emr-org-b {
			key_sha256 ` + harness.KeyHash(orgBKey) + `
			users *
			claims group=org-b
			allow mint revoke
		}`

// bothStores runs fn once on the memory store and once on a fresh Redis.
func bothStores(t *testing.T, fn func(t *testing.T, storeLine string)) {
	t.Run("memory", func(t *testing.T) { fn(t, "store memory") })
	t.Run("redis", func(t *testing.T) { fn(t, "store redis "+harness.StartRedis(t).URL()) })
}

// listedSessions is the body of GET /sso/sessions.
type listedSessions struct {
	UserID   string `json:"userId"`
	Sessions []struct {
		ID, CreatedAt, LastSeenAt, ExpiresAt, CreatedBy string
	} `json:"sessions"`
}

func (g *gateway) listSessions(t *testing.T, key, user string) listedSessions {
	t.Helper()
	resp := g.do(t, http.MethodGet, "/sso/sessions?userId="+url.QueryEscape(user), "", nil, "Authorization: Bearer "+key)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list sessions: %s %s", resp.Status, b)
	}
	var l listedSessions
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("list answer %s: %v", b, err)
	}
	return l
}

// revokeUser calls DELETE /sso/sessions?userId=… and returns the count.
func (g *gateway) revokeUser(t *testing.T, key, user string) int {
	t.Helper()
	resp := g.do(t, http.MethodDelete, "/sso/sessions?userId="+url.QueryEscape(user), "", nil, "Authorization: Bearer "+key)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s %s", resp.Status, b)
	}
	var r struct{ Revoked int }
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("revoke answer %s: %v", b, err)
	}
	return r.Revoked
}

// signInWith redeems a fresh token minted with key for user.
func (g *gateway) signInWith(t *testing.T, key, user string) *http.Cookie {
	t.Helper()
	m := g.mint(t, key, `{"userId":"`+user+`"}`)
	resp := g.do(t, http.MethodGet, m.URL, "", nil)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusFound || c == nil {
		t.Fatalf("redeem: %s, cookie %v", resp.Status, c)
	}
	return c
}

// status is the status of a signed-in GET of the portal with c.
func (g *gateway) status(t *testing.T, c *http.Cookie) int {
	t.Helper()
	resp := g.do(t, http.MethodGet, "/patients/1", "", c, "Accept: application/json")
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// handleOf is the public handle SPEC gives the session of cookie c: the
// first 22 characters of base64url(SHA-256("ssogate-handle:" + its store key)).
func handleOf(c *http.Cookie) string {
	sum := sha256.Sum256([]byte("ssogate-handle:" + token.Hash(c.Value)))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:22]
}

func TestSessionsListAndEndOne(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, storeLine string) {
		g := startGateway(t, gatewayOptions{store: storeLine})
		user := "list-user"
		first := g.signIn(t, user)
		second := g.signIn(t, user)
		other := g.signIn(t, "list-bystander")

		l := g.listSessions(t, orgAKey, user)
		if l.UserID != user || len(l.Sessions) != 2 {
			t.Fatalf("listing = %+v, want the user's two sessions", l)
		}
		ids := map[string]bool{}
		for _, s := range l.Sessions {
			ids[s.ID] = true
			if s.ID == first.Value || s.ID == second.Value || strings.Contains(token.Hash(first.Value)+token.Hash(second.Value), s.ID) {
				t.Fatalf("listed id %q reveals a cookie value or its hash", s.ID)
			}
			if s.CreatedBy != "emr-org-a" {
				t.Errorf("createdBy = %q, want emr-org-a", s.CreatedBy)
			}
			created, err1 := time.Parse(time.RFC3339, s.CreatedAt)
			seen, err2 := time.Parse(time.RFC3339, s.LastSeenAt)
			exp, err3 := time.Parse(time.RFC3339, s.ExpiresAt)
			if err1 != nil || err2 != nil || err3 != nil || seen.Before(created) || !exp.After(time.Now()) {
				t.Errorf("session times %+v: want RFC 3339, lastSeenAt ≥ createdAt, expiresAt ahead", s)
			}
		}
		if !ids[handleOf(first)] || !ids[handleOf(second)] {
			t.Fatalf("listed ids %v are not the handles of the two sessions", ids)
		}

		resp := g.do(t, http.MethodDelete, "/sso/sessions/"+handleOf(first), "", nil, "Authorization: Bearer "+orgAKey)
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("DELETE one session: %s %s", resp.Status, b)
		}
		if s := g.status(t, first); s != http.StatusUnauthorized {
			t.Errorf("the ended session: %d, want 401", s)
		}
		for _, c := range []*http.Cookie{second, other} {
			if s := g.status(t, c); s != http.StatusOK {
				t.Errorf("a session not named: %d, want 200", s)
			}
		}
		if l := g.listSessions(t, orgAKey, user); len(l.Sessions) != 1 || l.Sessions[0].ID != handleOf(second) {
			t.Errorf("listing after ending one = %+v, want the second alone", l)
		}
		for _, h := range []string{handleOf(first), "AAAAAAAAAAAAAAAAAAAAAA", "not-a-handle"} {
			if resp := g.do(t, http.MethodDelete, "/sso/sessions/"+h, "", nil, "Authorization: Bearer "+orgAKey); resp.StatusCode != http.StatusNotFound {
				t.Errorf("DELETE %s: %s, want 404", h, resp.Status)
			}
		}
		// The permission: clinic-7 may mint, not revoke or list.
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if resp := g.do(t, m, "/sso/sessions?userId=hcp-7", "", nil, "Authorization: Bearer "+clinicKey); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s /sso/sessions without allow revoke: %s, want 403", m, resp.Status)
			}
		}
		if resp := g.do(t, http.MethodDelete, "/sso/sessions/"+handleOf(second), "", nil, "Authorization: Bearer "+clinicKey); resp.StatusCode != http.StatusForbidden {
			t.Errorf("DELETE one without allow revoke: %s, want 403", resp.Status)
		}
		if resp := g.do(t, http.MethodGet, "/sso/sessions?userId="+user, "", nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("listing without a key: %s, want 401", resp.Status)
		}
	})
}

// Two tenants, the same user id: neither reaches the other's sessions or
// pending tokens, and a revocation counts only what it ended.
func TestSessionsTenantIsolation(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, storeLine string) {
		g := startGateway(t, gatewayOptions{store: storeLine, extra: orgBCredential})
		user := "shared-user"
		a := g.signInWith(t, orgAKey, user)
		b := g.signInWith(t, orgBKey, user)
		pendingB := g.mint(t, orgBKey, `{"userId":"`+user+`"}`)

		// The finding: a users * credential of one tenant ended every
		// session of another tenant's users.
		if n := g.revokeUser(t, orgAKey, user); n != 1 {
			t.Errorf("org-a's revocation counted %d, want 1 (its own session only)", n)
		}
		if s := g.status(t, a); s != http.StatusUnauthorized {
			t.Errorf("org-a's session after its revocation: %d, want 401", s)
		}
		if s := g.status(t, b); s != http.StatusOK {
			t.Errorf("org-b's session after org-a's revocation: %d, want 200", s)
		}
		resp := g.do(t, http.MethodGet, pendingB.URL, "", nil)
		if resp.StatusCode != http.StatusFound {
			t.Errorf("org-b's token minted before org-a's revocation: %s, want 302", resp.Status)
		}
		if resp := g.do(t, http.MethodDelete, "/sso/sessions/"+handleOf(b), "", nil, "Authorization: Bearer "+orgAKey); resp.StatusCode != http.StatusNotFound {
			t.Errorf("org-a ending org-b's session: %s, want 404", resp.Status)
		}
		if s := g.status(t, b); s != http.StatusOK {
			t.Errorf("org-b's session after org-a tried to end it: %d, want 200", s)
		}
		if l := g.listSessions(t, orgAKey, user); len(l.Sessions) != 0 {
			t.Errorf("org-a lists %+v, want none: its own session is revoked, the others are org-b's", l)
		}
		if l := g.listSessions(t, orgBKey, user); len(l.Sessions) != 2 {
			t.Errorf("org-b lists %+v, want its two sessions", l)
		}
		if n := g.revokeUser(t, orgBKey, user); n != 2 {
			t.Errorf("org-b's revocation counted %d, want its 2 sessions", n)
		}
	})
}

// A token minted before a revocation and not yet redeemed is refused after
// it, on every instance; one minted later works.
func TestRevokeRefusesEarlierTokens(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{})
		revokeRefusesEarlierTokens(t, g, g)
	})
	t.Run("redis, two instances", func(t *testing.T) {
		rds := harness.StartRedis(t)
		a := startGateway(t, gatewayOptions{store: "store redis " + rds.URL()})
		b := startGateway(t, gatewayOptions{store: "store redis " + rds.URL()})
		revokeRefusesEarlierTokens(t, a, b)
	})
}

func revokeRefusesEarlierTokens(t *testing.T, a, b *gateway) {
	user := "revoke-pending"
	early := a.mint(t, orgAKey, `{"userId":"`+user+`"}`)
	bystander := a.mint(t, orgAKey, `{"userId":"revoke-bystander"}`)
	if n := a.revokeUser(t, orgAKey, user); n != 0 {
		t.Fatalf("revocation of a user without sessions counted %d", n)
	}
	link := strings.Replace(early.URL, a.base, b.base, 1)
	resp := b.do(t, http.MethodGet, link, "", nil)
	if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
		t.Fatalf("a token minted before the revocation: %s, want 403 without a cookie", resp.Status)
	}
	if resp := b.do(t, http.MethodGet, strings.Replace(bystander.URL, a.base, b.base, 1), "", nil); resp.StatusCode != http.StatusFound {
		t.Errorf("another user's token: %s, want 302", resp.Status)
	}
	// Tokens carry their issue time in whole seconds: one minted within the
	// revocation's second is refused too. A later one redeems.
	harness.Eventually(t, "a token minted after the revocation's second", 5*time.Second, func() error {
		m := a.mint(t, orgAKey, `{"userId":"`+user+`"}`)
		resp := b.do(t, http.MethodGet, strings.Replace(m.URL, a.base, b.base, 1), "", nil)
		if resp.StatusCode != http.StatusFound {
			return fmt.Errorf("tokens minted after the revocation are still refused: %s", resp.Status)
		}
		return nil
	})
}

// A session stops working once the credential or signing key that created it
// is removed from the config; the others go on.
func TestSessionsEndWithTheirCreator(t *testing.T) {
	t.Parallel()
	const tempKey = "it-temp-partner-00aa11bb22cc33dd44ee55ff6677"
	const secret = "it-signing-secret-k9-0123456789abcdef0123"
	temp := `credential temp-partner {
			key_sha256 ` + harness.KeyHash(tempKey) + `
			users *
		}
		signing_key k9 ` + secret
	bothStores(t, func(t *testing.T, storeLine string) {
		o := gatewayOptions{store: storeLine, extra: temp, admin: true}
		g := startGateway(t, o)
		byCred := g.signInWith(t, tempKey, "creator-user")
		resp := g.do(t, http.MethodGet, "/redirect/"+mintSign(t, secret, mintPayload("k9", "creator-user")), "", nil)
		bySigned := sessionCookie(resp)
		if resp.StatusCode != http.StatusFound || bySigned == nil {
			t.Fatalf("signed redeem: %s", resp.Status)
		}
		kept := g.signIn(t, "creator-bystander")
		for _, c := range []*http.Cookie{byCred, bySigned, kept} {
			if s := g.status(t, c); s != http.StatusOK {
				t.Fatalf("before the reload: %d, want 200", s)
			}
		}
		o.extra = ""
		g.reload(t, o)
		for name, c := range map[string]*http.Cookie{"credential": byCred, "signing key": bySigned} {
			if s := g.status(t, c); s != http.StatusUnauthorized {
				t.Errorf("session of a removed %s: %d, want 401", name, s)
			}
		}
		if s := g.status(t, kept); s != http.StatusOK {
			t.Errorf("session of a kept credential: %d, want 200", s)
		}
	})
}

// The finding: after session_ttl was lowered and the config reloaded, a new
// session shortened the user index's TTL, so a revocation later found
// nothing while the older session kept working.
func TestUserIndexOutlivesShorterSessionTTL(t *testing.T) {
	t.Parallel()
	rds := harness.StartRedis(t)
	o := gatewayOptions{store: "store redis " + rds.URL(), admin: true}
	g := startGateway(t, o)
	user := "index-user"
	long := g.signIn(t, user)
	o.extra = "session_ttl 2s\n\t\tsession_idle 1s"
	g.reload(t, o)
	short := g.signIn(t, user)
	index := "ssogate:user:" + token.Hash(user)
	if ttl := rds.Client().PTTL(t.Context(), index).Val(); ttl < 11*time.Hour {
		t.Fatalf("user index TTL %v after a 2s session: want ≥ the 12h session's remaining life", ttl)
	}
	harness.Eventually(t, "the 2s session expiring", 10*time.Second, func() error {
		if s := g.status(t, short); s != http.StatusUnauthorized {
			return fmt.Errorf("the 2s session never expired: %d", s)
		}
		return nil
	})
	// Past the short session's life: the index must still list the long one.
	time.Sleep(time.Second)
	if n := g.revokeUser(t, orgAKey, user); n != 1 {
		t.Errorf("revocation counted %d, want 1 (the long session)", n)
	}
	if s := g.status(t, long); s != http.StatusUnauthorized {
		t.Errorf("the long session after the revocation: %d, want 401", s)
	}
}

// With embed_from the cookie is SameSite=None: any site could post a logout
// for the user. Only the portal's own pages (or a client sending neither
// Origin nor Sec-Fetch-Site) may.
func TestLogoutOnlyFromThePortal(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{extra: "embed_from https://emr.test:9443"})
	c := g.signIn(t, "logout-user")
	for _, hdrs := range [][]string{
		{"Origin: https://emr.test:9443", "Sec-Fetch-Site: cross-site"},
		{"Origin: https://evil.test"},
		{"Origin: null"},
		{"Sec-Fetch-Site: cross-site"},
		{"Sec-Fetch-Site: same-site", "Origin: https://other.portal.test:" + strconv.Itoa(g.port)},
		{"Sec-Fetch-Site: same-origin", "Origin: https://evil.test"},
	} {
		resp := g.do(t, http.MethodPost, "/sso/logout", "", c, append(hdrs, "Accept: application/json")...)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "cross_site_logout") || sessionCookie(resp) != nil {
			t.Errorf("logout with %v: %s %s, want 403 cross_site_logout and no cookie change", hdrs, resp.Status, b)
		}
		if s := g.status(t, c); s != http.StatusOK {
			t.Fatalf("after a refused logout (%v) the session answers %d, want 200", hdrs, s)
		}
	}
	own := fmt.Sprintf("Origin: https://portal.test:%d", g.port)
	resp := g.do(t, http.MethodPost, "/sso/logout", "", c, own, "Sec-Fetch-Site: same-origin", "Accept: application/json")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("same-origin logout: %s, want 204", resp.Status)
	}
	if s := g.status(t, c); s != http.StatusUnauthorized {
		t.Errorf("after a same-origin logout: %d, want 401", s)
	}
	c2 := g.signIn(t, "logout-user")
	if resp := g.do(t, http.MethodPost, "/sso/logout", "", c2, "Accept: application/json"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("logout with neither header (not a browser): %s, want 204", resp.Status)
	}
	if s := g.status(t, c2); s != http.StatusUnauthorized {
		t.Errorf("after a header-less logout: %d, want 401", s)
	}
}

// mint_rate_limit holds one credential to its rate (429 with Retry-After)
// and leaves the others alone; the refusals are counted in the metrics.
func TestMintRateLimit(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{admin: true, extra: "mint_rate_limit 3 1m"})
	for i := range 3 {
		g.mint(t, orgAKey, fmt.Sprintf(`{"userId":"rate-%d"}`, i))
	}
	resp := g.do(t, http.MethodPost, "/sso/tokens", `{"userId":"rate-4"}`, nil, "Authorization: Bearer "+orgAKey)
	b, _ := io.ReadAll(resp.Body)
	retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || retry < 1 || retry > 60 || !strings.Contains(string(b), `"rate_limited"`) {
		t.Fatalf("fourth mint in a minute: %s Retry-After %q %s; want 429, 1–60 s, rate_limited", resp.Status, resp.Header.Get("Retry-After"), b)
	}
	g.mint(t, clinicKey, `{}`) // another credential is not affected
	m := scaleScrape(t, g.caddy.AdminPort())
	if v := m[`ssogate_mint_rate_limited_total{credential="emr-org-a"}`]; v != 1 {
		t.Errorf("ssogate_mint_rate_limited_total{credential=emr-org-a} = %v, want 1", v)
	}
}

// store memory { max_entries } bounds the store: past it, minting answers 503
// store_full, never more memory.
func TestMemoryStoreCap(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{admin: true, store: "store memory {\n\t\t\tmax_entries 4\n\t\t}"})
	var links []string
	var full *http.Response
	var body []byte
	for i := range 10 {
		resp := g.do(t, http.MethodPost, "/sso/tokens", fmt.Sprintf(`{"userId":"cap-%d"}`, i), nil, "Authorization: Bearer "+orgAKey)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusCreated {
			var m harness.MintAnswer
			_ = json.Unmarshal(b, &m)
			links = append(links, m.URL)
			continue
		}
		full, body = resp, b
		break
	}
	if full == nil || full.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"store_full"`) {
		t.Fatalf("minting past max_entries 4: %d tokens minted, then %v %s; want 503 store_full after 4", len(links), full, body)
	}
	if len(links) != 4 {
		t.Errorf("%d tokens minted before the store was full, want 4", len(links))
	}
	// A redemption swaps a token for a session: it still fits.
	if resp := g.do(t, http.MethodGet, links[0], "", nil); resp.StatusCode != http.StatusFound {
		t.Errorf("redeeming in a full store: %s, want 302", resp.Status)
	}
	m := scaleScrape(t, g.caddy.AdminPort())
	if v := m[`ssogate_store_full_total{op="mint"}`]; v != 1 {
		t.Errorf("ssogate_store_full_total{op=mint} = %v, want 1", v)
	}
}

// The Go client's Sessions and EndSession against the real gateway.
func TestClientSessions(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})
	c := g.signIn(t, "client-user")
	api := client.Client{BaseURL: g.base, APIKey: orgAKey, HTTPClient: g.client}
	ctx := t.Context()
	list, err := api.Sessions(ctx, "client-user")
	if err != nil || len(list) != 1 || list[0].ID != handleOf(c) || list[0].CreatedBy != "emr-org-a" {
		t.Fatalf("Sessions = %+v, %v; want the one session", list, err)
	}
	if err := api.EndSession(ctx, list[0].ID); err != nil {
		t.Fatalf("EndSession: %v", err)
	}
	if s := g.status(t, c); s != http.StatusUnauthorized {
		t.Errorf("after EndSession: %d, want 401", s)
	}
	var apiErr *client.APIError
	if err := api.EndSession(ctx, list[0].ID); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("EndSession of an ended session: %v, want a 404 APIError", err)
	}
}
