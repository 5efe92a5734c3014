package integration

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// SPEC "Minting" and the revocation of "Sessions and cookies", on real Caddy
// processes and a real Redis: every scope rule of a credential, signed tokens,
// direct minting with redis-cli, revocation across instances, and the
// `caddy ssogate` commands.

// API keys of the minting tests; only their hashes go into the Caddyfile.
const (
	mintKeyOrgA   = "mint-org-a-6c1f0e9d8b7a65432100fedcba987654"
	mintKeyClinic = "mint-clinic-7-00112233445566778899aabbccddeeff"
	mintKeyMinter = "mint-minter-ffeeddccbbaa99887766554433221100"
	mintKeyAdmin  = "mint-admin-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
)

// Signing secrets, given to Caddy through the environment.
const (
	mintSecretK1 = "mint-signing-secret-k1-0123456789abcdef"
	mintSecretK2 = "mint-signing-secret-k2-fedcba9876543210"
)

// mintCaddyfile serves the gateway on portal.test and localhost (the CLI
// needs a name that resolves) at port, on the Redis at redisURL. withK1 keeps
// the signing key k1; dropping it is the rotation.
func mintCaddyfile(port int, redisURL, upstream string, withK1 bool) string {
	k1 := ""
	if withK1 {
		k1 = "signing_key k1 {env.SSOGATE_MINT_K1}"
	}
	return fmt.Sprintf(`{
	skip_install_trust
	auto_https disable_redirects
}
https://portal.test:%[1]d, https://localhost:%[1]d {
	tls internal
	ssogate {
		store redis %[2]s
		redeem_rate_limit off
		credential emr-org-a {
			key_sha256 %[3]s
			users org-a-*
			claims group=org-a
			request_claims role
		}
		credential clinic-7 {
			key_sha256 %[4]s
			user hcp-7
		}
		credential minter {
			key_sha256 %[5]s
			users *
		}
		credential admin {
			key_sha256 %[6]s
			users *
			allow mint revoke
		}
		%[7]s
		signing_key k2 {env.SSOGATE_MINT_K2}
		redirect_hosts portal.test
	}
	reverse_proxy %[8]s
}
`, port, redisURL, harness.KeyHash(mintKeyOrgA), harness.KeyHash(mintKeyClinic), harness.KeyHash(mintKeyMinter), harness.KeyHash(mintKeyAdmin), k1, upstream)
}

// mintStart starts an instance on redis and upstream, sharing dataDir (and so
// the internal CA) when it is not empty.
func mintStart(t *testing.T, redis *harness.Redis, up *harness.Upstream, dataDir string) *gateway {
	t.Helper()
	port := harness.FreePort(t)
	c := harness.StartCaddy(t, mintCaddyfile(port, redis.URL(), up.Addr(), true), harness.CaddyOptions{
		DataDir: dataDir,
		Env:     []string{"SSOGATE_MINT_K1=" + mintSecretK1, "SSOGATE_MINT_K2=" + mintSecretK2},
	})
	g := newGateway(t, c, port, mintKeyAdmin, nil, up)
	c.WaitHTTPS(t, fmt.Sprintf("localhost:%d", port))
	return g
}

// redeemTo opens link and returns the session cookie, failing unless the
// gateway answers 302 to wantLocation with a cookie.
func (g *gateway) redeemTo(t *testing.T, link, wantLocation string) *http.Cookie {
	t.Helper()
	resp, b := g.call(t, http.MethodGet, link, "", "", nil)
	c := issuedCookie(resp)
	if resp.StatusCode != http.StatusFound || c == nil || resp.Header.Get("Location") != wantLocation {
		t.Fatalf("redeem: %s to %q, cookie %v, %s; want 302 to %q with a cookie", resp.Status, resp.Header.Get("Location"), c != nil, b, wantLocation)
	}
	return c
}

// refused checks that link is refused with 403 and no cookie.
func (g *gateway) refused(t *testing.T, what, link string) {
	t.Helper()
	resp, b := g.call(t, http.MethodGet, link, "", "", nil)
	if resp.StatusCode != http.StatusForbidden || issuedCookie(resp) != nil {
		t.Errorf("%s: %s %s, cookie %v; want 403 and no cookie", what, resp.Status, b, issuedCookie(resp) != nil)
	}
}

// identity makes a signed-in request and returns the identity headers the
// upstream received, or the status when it was not let through.
func (g *gateway) identity(t *testing.T, c *http.Cookie) (user, claims string, status int) {
	t.Helper()
	resp, b := g.call(t, http.MethodGet, "/records", "", "", c)
	if resp.StatusCode != http.StatusOK {
		return "", "", resp.StatusCode
	}
	var saw harness.UpstreamReply
	if err := json.Unmarshal([]byte(b), &saw); err != nil {
		t.Fatalf("upstream answer %s: %v", b, err)
	}
	return saw.User, saw.Claims, resp.StatusCode
}

// mintErrorCode is the "code" of a JSON error answer.
func mintErrorCode(body string) string {
	var e struct{ Code string }
	_ = json.Unmarshal([]byte(body), &e)
	return e.Code
}

// mintSign makes a signed token the way SPEC describes it, written here from
// scratch as a partner's backend would, not with the gateway's own codec:
// "v1." + base64url(JSON payload) + "." + base64url(HMAC-SHA256(secret, "v1.<payload>")).
func mintSign(t *testing.T, secret string, payload map[string]any) string {
	t.Helper()
	js, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return mintSignJSON(secret, js)
}

// mintSignJSON is mintSign of a payload given as JSON text, so that a test
// can sign what json.Marshal would never write (duplicate or miscased keys).
func mintSignJSON(secret string, js []byte) string {
	signed := "v1." + base64.RawURLEncoding.EncodeToString(js)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// mintPayload is a valid payload for user, expiring in 20 s, with a fresh jti.
func mintPayload(kid, user string) map[string]any {
	return map[string]any{"kid": kid, "sub": user, "exp": time.Now().Add(20 * time.Second).Unix(), "jti": mintRandom()}
}

// mintRandom is 256 random bits, base64url: a valid opaque token or jti.
func mintRandom() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestMinting runs the minting contract against one gateway instance (a second
// joins for revocation), in order: the last subtest reloads the config.
func TestMinting(t *testing.T) {
	t.Parallel()
	redis := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	g := mintStart(t, redis, up, "")
	// Every token and session id seen, to check none reaches the log.
	var secrets []string

	t.Run("FixedUser", func(t *testing.T) {
		for _, body := range []string{"", `{}`, `{"userId":"hcp-7"}`} {
			if m := g.mint(t, mintKeyClinic, body); m.UserID != "hcp-7" || m.CreatedByApplicationID != "clinic-7" {
				t.Errorf("body %q: token for %q by %q, want hcp-7 by clinic-7", body, m.UserID, m.CreatedByApplicationID)
			}
		}
		resp, b := g.call(t, http.MethodPost, "/sso/tokens", mintKeyClinic, `{"userId":"hcp-8"}`, nil)
		if resp.StatusCode != http.StatusForbidden || mintErrorCode(b) != "forbidden_scope" {
			t.Errorf("fixed-user credential asked for another user: %s %s, want 403 forbidden_scope", resp.Status, b)
		}
	})

	t.Run("UsersPattern", func(t *testing.T) {
		if m := g.mint(t, mintKeyOrgA, `{"userId":"org-a-17"}`); m.UserID != "org-a-17" {
			t.Errorf("token for %q", m.UserID)
		}
		for body, want := range map[string]int{
			`{"userId":"org-b-17"}`:  http.StatusForbidden,
			`{"userId":"xorg-a-17"}`: http.StatusForbidden,
			`{}`:                     http.StatusBadRequest, // a users credential must name the user
		} {
			if resp, b := g.call(t, http.MethodPost, "/sso/tokens", mintKeyOrgA, body, nil); resp.StatusCode != want {
				t.Errorf("users org-a-*, body %s: %s %s, want %d", body, resp.Status, b, want)
			}
		}
	})

	t.Run("ClaimsReachTheUpstream", func(t *testing.T) {
		m := g.mint(t, mintKeyOrgA, `{"userId":"org-a-claims","claims":{"role":"nurse"},"redirect":"/app/"}`)
		c := g.redeemTo(t, m.URL, "/app/")
		secrets = append(secrets, m.SSOToken, c.Value)
		up.Reset()
		user, claims, status := g.identity(t, c)
		if status != http.StatusOK || user != "org-a-claims" || claims != "group=org-a;role=nurse" {
			t.Fatalf("upstream saw user %q claims %q (%d); want org-a-claims, group=org-a;role=nurse", user, claims, status)
		}
		// The raw header as it arrived, not only the echo.
		reqs := up.Requests()
		if len(reqs) != 1 || reqs[0].Header.Get("X-Forwarded-Claims") != "group=org-a;role=nurse" {
			t.Fatalf("upstream requests %+v", reqs)
		}
		// Without request claims, the fixed ones are still stamped.
		c = g.redeemTo(t, g.mint(t, mintKeyOrgA, `{"userId":"org-a-plain"}`).URL, "/")
		if _, claims, _ := g.identity(t, c); claims != "group=org-a" {
			t.Errorf("fixed claims only: upstream saw %q, want group=org-a", claims)
		}
	})

	t.Run("RequestClaimsStayInScope", func(t *testing.T) {
		for _, tc := range []struct{ what, key, body string }{
			{"a key not in request_claims", mintKeyOrgA, `{"userId":"org-a-1","claims":{"admin":"true"}}`},
			{"a fixed claim overridden", mintKeyOrgA, `{"userId":"org-a-1","claims":{"group":"org-b"}}`},
			{"a fixed claim restated", mintKeyOrgA, `{"userId":"org-a-1","claims":{"group":"org-a"}}`},
			{"any claim without request_claims", mintKeyClinic, `{"claims":{"role":"nurse"}}`},
		} {
			resp, b := g.call(t, http.MethodPost, "/sso/tokens", tc.key, tc.body, nil)
			if resp.StatusCode != http.StatusForbidden || mintErrorCode(b) != "forbidden_scope" {
				t.Errorf("%s: %s %s, want 403 forbidden_scope", tc.what, resp.Status, b)
			}
		}
	})

	t.Run("Permissions", func(t *testing.T) {
		// Both may mint; neither has revoke.
		for _, key := range []string{mintKeyMinter, mintKeyOrgA} {
			resp, b := g.call(t, http.MethodDelete, "/sso/sessions?userId=org-a-1", key, "", nil)
			if resp.StatusCode != http.StatusForbidden || mintErrorCode(b) != "forbidden_scope" {
				t.Errorf("DELETE /sso/sessions without revoke: %s %s, want 403 forbidden_scope", resp.Status, b)
			}
		}
	})

	t.Run("Keys", func(t *testing.T) {
		for what, key := range map[string]string{
			"no key":      "",
			"wrong key":   mintKeyOrgA + "x",
			"hash as key": harness.KeyHash(mintKeyOrgA),
		} {
			for _, rt := range []struct{ method, path, body string }{
				{http.MethodPost, "/sso/tokens", `{"userId":"org-a-1"}`},
				{http.MethodGet, "/sso/access?userId=org-a-1", ""},
				{http.MethodDelete, "/sso/sessions?userId=org-a-1", ""},
			} {
				resp, b := g.call(t, rt.method, rt.path, key, rt.body, nil)
				if resp.StatusCode != http.StatusUnauthorized || mintErrorCode(b) != "unauthorized" {
					t.Errorf("%s, %s %s: %s %s, want 401 unauthorized", what, rt.method, rt.path, resp.Status, b)
				}
			}
		}
	})

	t.Run("BadBodies", func(t *testing.T) {
		for what, body := range map[string]string{
			"not JSON":         `userId=org-a-1`,
			"cut short":        `{"userId":"org-a-1"`,
			"unknown field":    `{"userId":"org-a-1","ttl":3600}`,
			"claim not string": `{"userId":"org-a-1","claims":{"role":7}}`,
		} {
			resp, b := g.call(t, http.MethodPost, "/sso/tokens", mintKeyOrgA, body, nil)
			if resp.StatusCode != http.StatusBadRequest || mintErrorCode(b) != "bad_request" {
				t.Errorf("%s: %s %s, want 400 bad_request", what, resp.Status, b)
			}
		}
	})

	t.Run("Access", func(t *testing.T) {
		for _, tc := range []struct {
			key, user string
			want      bool
		}{
			{mintKeyOrgA, "org-a-9", true},
			{mintKeyOrgA, "org-b-9", false},
			{mintKeyClinic, "hcp-7", true},
			{mintKeyClinic, "hcp-8", false},
		} {
			resp, b := g.call(t, http.MethodGet, "/sso/access?userId="+url.QueryEscape(tc.user), tc.key, "", nil)
			want := fmt.Sprintf(`{"access":%v,"userId":%q}`, tc.want, tc.user)
			if resp.StatusCode != http.StatusOK || strings.TrimSpace(b) != want {
				t.Errorf("access %s: %s %s, want 200 %s", tc.user, resp.Status, b, want)
			}
		}
	})

	t.Run("SignedTokensOnEveryRoute", func(t *testing.T) {
		routes := map[string]func(tok string) string{
			"redirect":         func(tok string) string { return "/redirect/" + tok },
			"consume_ssotoken": func(tok string) string { return "/consume_ssotoken/?ssoToken=" + url.QueryEscape(tok) },
			"auth":             func(tok string) string { return "/auth?sso_token=" + url.QueryEscape(tok) },
		}
		for name, link := range routes {
			p := mintPayload("k2", "signed-"+name)
			p["claims"] = map[string]string{"group": "signed"}
			p["redirect"] = "/app/"
			tok := mintSign(t, mintSecretK2, p)
			c := g.redeemTo(t, link(tok), "/app/")
			secrets = append(secrets, tok, c.Value)
			if user, claims, status := g.identity(t, c); user != "signed-"+name || claims != "group=signed" {
				t.Errorf("%s: upstream saw %q %q (%d)", name, user, claims, status)
			}
			// Single use, across routes too.
			for other, l := range routes {
				g.refused(t, name+" token replayed on "+other, l(tok))
			}
			// The jti is held in Redis as SPEC says, until the token's exp.
			jti := p["jti"].(string)
			ctx := context.Background()
			val, err := redis.Client().Get(ctx, "ssogate:jti:"+jti).Result()
			ttl := redis.Client().TTL(ctx, "ssogate:jti:"+jti).Val()
			if err != nil || val != "1" || ttl <= 0 || ttl > 30*time.Second {
				t.Errorf("%s: ssogate:jti:<jti> = %q (%v), TTL %s; want \"1\" with a TTL of at most token_ttl", name, val, err, ttl)
			}
		}
	})

	t.Run("SignedTokensRefused", func(t *testing.T) {
		now := time.Now()
		forged := mintPayload("k2", "admin")
		expired := mintPayload("k2", "u-expired")
		expired["exp"] = now.Add(-2 * time.Second).Unix()
		tooLong := mintPayload("k2", "u-long")
		tooLong["exp"] = now.Add(10 * time.Minute).Unix() // token_ttl is 30s
		unknownKid := mintPayload("k9", "u-kid")
		noJTI := mintPayload("k2", "u-nojti")
		delete(noJTI, "jti")
		for what, tok := range map[string]string{
			"forged (another secret)":   mintSign(t, "not-the-secret-but-long-enough-1234567", forged),
			"signed with k1's secret":   mintSign(t, mintSecretK1, forged), // kid k2 names the key
			"expired":                   mintSign(t, mintSecretK2, expired),
			"exp beyond token_ttl":      mintSign(t, mintSecretK2, tooLong),
			"unknown kid":               mintSign(t, mintSecretK2, unknownKid),
			"no jti":                    mintSign(t, mintSecretK2, noJTI),
			"payload edited after sign": strings.Replace(mintSign(t, mintSecretK2, mintPayload("k2", "u-x")), "v1.", "v1.e", 1),
			"wrong version":             "v2" + strings.TrimPrefix(mintSign(t, mintSecretK2, mintPayload("k2", "u-v")), "v1"),
		} {
			g.refused(t, what, "/redirect/"+tok)
		}
	})

	t.Run("DirectRedisMinting", func(t *testing.T) {
		if _, err := exec.LookPath("redis-cli"); err != nil {
			t.Fatalf("redis-cli not installed (the README's test command installs redis-tools): %v", err)
		}
		host, port, _ := net.SplitHostPort(redis.Addr())

		// The README's one-liner, run by a shell.
		tok := mintRandom()
		script := `redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" SET "ssogate:tok:$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" '{"userId":"u1"}' EX 30 NX`
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(os.Environ(), "TOKEN="+tok, "REDIS_HOST="+host, "REDIS_PORT="+port)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("redis-cli SET: %v %q", err, out)
		}
		// NX: a second write of the same token does not replace the first.
		cmd = exec.Command("sh", "-c", strings.Replace(script, `"u1"`, `"admin"`, 1))
		cmd.Env = append(os.Environ(), "TOKEN="+tok, "REDIS_HOST="+host, "REDIS_PORT="+port)
		if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("second redis-cli SET NX: %v %q, want nil (empty)", err, out)
		}
		c := g.redeemTo(t, "/redirect/"+tok, "/")
		secrets = append(secrets, tok, c.Value)
		if user, claims, _ := g.identity(t, c); user != "u1" || claims != "" {
			t.Errorf("direct token: upstream saw %q %q, want u1 and no claims", user, claims)
		}
		g.refused(t, "direct token replayed", "/redirect/"+tok)

		// Every documented field, plus one the gateway must ignore, written
		// with redis-cli directly (no shell).
		tok = mintRandom()
		// iat is now: an older one than token_ttl is refused (directmint_test.go).
		val := `{"userId":"u2","claims":{"group":"direct"},"redirect":"/app/","createdBy":"billing","iat":"` +
			time.Now().UTC().Format(time.RFC3339) + `","futureField":[1]}`
		out, err = exec.Command("redis-cli", "-h", host, "-p", port, "SET", "ssogate:tok:"+harness.KeyHash(tok), val, "EX", "30", "NX").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("redis-cli SET: %v %q", err, out)
		}
		c = g.redeemTo(t, "/consume_ssotoken/?ssoToken="+tok, "/app/")
		secrets = append(secrets, tok, c.Value)
		if user, claims, _ := g.identity(t, c); user != "u2" || claims != "group=direct" {
			t.Errorf("direct token with claims: upstream saw %q %q", user, claims)
		}

		// A record whose user id would break the header is refused.
		tok = mintRandom()
		out, err = exec.Command("redis-cli", "-h", host, "-p", port, "SET", "ssogate:tok:"+harness.KeyHash(tok), `{"userId":"u3\r\nX-Forwarded-User: admin"}`, "EX", "30", "NX").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("redis-cli SET: %v %q", err, out)
		}
		g.refused(t, "direct token with a control character in userId", "/redirect/"+tok)
	})

	t.Run("RevocationReachesEveryInstance", func(t *testing.T) {
		b := mintStart(t, redis, up, g.caddy.DataDir())
		// Two sessions of the user, one started on each instance, each used
		// on both so that both instances have seen (and may cache) both.
		onA := g.redeemTo(t, g.mint(t, mintKeyAdmin, `{"userId":"rev-1"}`).URL, "/")
		onB := b.redeemTo(t, b.mint(t, mintKeyAdmin, `{"userId":"rev-1"}`).URL, "/")
		other := b.redeemTo(t, b.mint(t, mintKeyAdmin, `{"userId":"rev-2"}`).URL, "/")
		secrets = append(secrets, onA.Value, onB.Value, other.Value)
		for _, inst := range []*gateway{g, b} {
			for _, c := range []*http.Cookie{onA, onB, other} {
				if _, _, status := inst.identity(t, c); status != http.StatusOK {
					t.Fatalf("fresh session on port %d: %d", inst.port, status)
				}
			}
		}
		index := "ssogate:user:" + harness.KeyHash("rev-1")
		if n := redis.Client().SCard(context.Background(), index).Val(); n != 2 {
			t.Fatalf("%s holds %d sessions, want 2", index, n)
		}

		resp, body := g.call(t, http.MethodDelete, "/sso/sessions?userId=rev-1", mintKeyAdmin, "", nil)
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != `{"revoked":2,"userId":"rev-1"}` {
			t.Fatalf("revoke: %s %s", resp.Status, body)
		}
		revoked := time.Now()
		// Instance B must refuse both at once; SPEC allows a cache up to 1s,
		// the bound here only keeps a broken build from hanging.
		for _, c := range []*http.Cookie{onA, onB} {
			harness.Eventually(t, "the revocation reaching the other instance", 5*time.Second, func() error {
				if _, _, status := b.identity(t, c); status != http.StatusUnauthorized {
					return fmt.Errorf("revoked session still answered %d on the other instance", status)
				}
				return nil
			})
		}
		t.Logf("revocation on A reached B after %s", time.Since(revoked).Round(time.Millisecond))
		for _, c := range []*http.Cookie{onA, onB} {
			if _, _, status := g.identity(t, c); status != http.StatusUnauthorized {
				t.Errorf("revoked session on the revoking instance: %d, want 401", status)
			}
		}
		for _, inst := range []*gateway{g, b} {
			if user, _, status := inst.identity(t, other); user != "rev-2" {
				t.Errorf("another user's session after the revocation: %d %q", status, user)
			}
		}
	})

	t.Run("HashKeyCommand", func(t *testing.T) {
		bin := harness.CaddyBinary(t)
		key := "a-partner-key-0123456789abcdefghij"
		cmd := exec.Command(bin, "ssogate", "hash-key")
		cmd.Stdin = strings.NewReader(key + "\n")
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != harness.KeyHash(key) {
			t.Errorf("hash-key from stdin: %v %q, want %s", err, out, harness.KeyHash(key))
		}
		out, err = exec.Command(bin, "ssogate", "hash-key", "--key", key).Output()
		if err != nil || strings.TrimSpace(string(out)) != harness.KeyHash(key) {
			t.Errorf("hash-key --key: %v %q, want %s", err, out, harness.KeyHash(key))
		}

		out, err = exec.Command(bin, "ssogate", "hash-key", "--generate").Output()
		if err != nil {
			t.Fatalf("hash-key --generate: %v", err)
		}
		fields := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			k, v, _ := strings.Cut(line, ":")
			fields[k] = strings.TrimSpace(v)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(fields["key"])
		if err != nil || len(raw) != 32 || fields["key_sha256"] != harness.KeyHash(fields["key"]) {
			t.Errorf("hash-key --generate printed %q: want a 256-bit base64url key and its SHA-256", out)
		}
		if out2, _ := exec.Command(bin, "ssogate", "hash-key", "--generate").Output(); string(out2) == string(out) {
			t.Error("two --generate runs made the same key")
		}
	})

	t.Run("MintCommand", func(t *testing.T) {
		bin := harness.CaddyBinary(t)
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "key")
		if err := os.WriteFile(keyFile, []byte(mintKeyOrgA+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		caCert := filepath.Join(g.caddy.DataDir(), "caddy", "pki", "authorities", "local", "root.crt")
		gatewayURL := "https://localhost:" + strconv.Itoa(g.port)
		run := func(args ...string) (stdout, stderr string, err error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"ssogate", "mint"}, args...)...)
			var o, e strings.Builder
			cmd.Stdout, cmd.Stderr = &o, &e
			err = cmd.Run()
			return o.String(), e.String(), err
		}

		out, errOut, err := run("--url", gatewayURL, "--key-file", keyFile, "--user", "org-a-cli",
			"--redirect", "/app/", "--claim", "role=doctor", "--ca-cert", caCert)
		if err != nil {
			t.Fatalf("caddy ssogate mint: %v\n%s", err, errOut)
		}
		link := strings.TrimSpace(out)
		if !strings.HasPrefix(link, gatewayURL+"/redirect/") || strings.Contains(link, "\n") {
			t.Fatalf("caddy ssogate mint printed %q, want one %s/redirect/… link", out, gatewayURL)
		}
		c := g.redeemTo(t, link, "/app/")
		secrets = append(secrets, strings.TrimPrefix(link, gatewayURL+"/redirect/"), c.Value)
		if user, claims, _ := g.identity(t, c); user != "org-a-cli" || claims != "group=org-a;role=doctor" {
			t.Errorf("CLI link: upstream saw %q %q", user, claims)
		}

		// The credential's scope holds for the CLI too, and the API's
		// answer is shown without the key.
		_, errOut, err = run("--url", gatewayURL, "--key-file", keyFile, "--user", "org-b-cli", "--ca-cert", caCert)
		if err == nil || !strings.Contains(errOut, "403") || strings.Contains(errOut, mintKeyOrgA) {
			t.Errorf("out of scope: err %v, stderr %q; want a failure naming 403, without the key", err, errOut)
		}
		// Without the CA the certificate is not trusted: no key is sent.
		if _, errOut, err = run("--url", gatewayURL, "--key-file", keyFile, "--user", "org-a-cli"); err == nil || !strings.Contains(errOut, "certificate") {
			t.Errorf("untrusted certificate: err %v, stderr %q; want a certificate failure", err, errOut)
		}
		// --insecure skips the check, and says so.
		out, errOut, err = run("--url", gatewayURL, "--key-file", keyFile, "--user", "org-a-cli", "--insecure")
		if err != nil || !strings.HasPrefix(out, gatewayURL+"/redirect/") || !strings.Contains(errOut, "insecure") {
			t.Errorf("--insecure: err %v, stdout %q, stderr %q", err, out, errOut)
		}
	})

	t.Run("RotatedOutSigningKey", func(t *testing.T) {
		// Minted before the rotation, never used.
		oldTok := mintSign(t, mintSecretK1, mintPayload("k1", "rot-old"))
		g.caddy.Reload(t, mintCaddyfile(g.port, redis.URL(), up.Addr(), false))
		g.refused(t, "token of the rotated-out kid k1", "/redirect/"+oldTok)
		newTok := mintSign(t, mintSecretK2, mintPayload("k2", "rot-new"))
		c := g.redeemTo(t, "/redirect/"+newTok, "/")
		secrets = append(secrets, oldTok, newTok, c.Value)
		if user, _, _ := g.identity(t, c); user != "rot-new" {
			t.Errorf("k2 token after the rotation: upstream saw %q", user)
		}
	})

	t.Run("NoSecretInTheLog", func(t *testing.T) {
		logs := g.caddy.Logs()
		for _, s := range append(secrets, mintKeyOrgA, mintKeyAdmin, mintSecretK1, mintSecretK2) {
			if strings.Contains(logs, s) {
				t.Errorf("the log contains a secret (%d characters)", len(s))
			}
		}
	})
}
