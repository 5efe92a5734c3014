package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// SPEC "Minting": strict JSON for the API and signed payloads (case-exact
// field names, no duplicates, a 400 that names the field); a user id is 1–256
// bytes of printable UTF-8 without leading or trailing white space, control
// or invisible format characters; claim keys are [A-Za-z0-9_.-] and `id` is
// reserved. The same rules hold for API, direct and signed tokens: a token
// that breaks them is refused at redeem with 403.

// partnerKey is the API key of the credential that may set request claims.
const partnerKey = "rules-partner-5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d"

// rulesSecret is the signing secret of kid k2 in the rules gateway.
const rulesSecret = "rules-signing-secret-k2-0123456789abcdef"

// rulesCredential lets a partner set the request claims named, besides
// signing_key k2.
func rulesCredential(claims string) string {
	return fmt.Sprintf(`credential partner {
			key_sha256 %s
			users *
			request_claims %s
		}
		signing_key k2 %s`, harness.KeyHash(partnerKey), claims, rulesSecret)
}

// caddyValidate runs `caddy validate` on a Caddyfile and returns its error
// output, empty when the configuration is valid.
func caddyValidate(t *testing.T, caddyfile string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(harness.CaddyBinary(t), "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out)
	}
	return ""
}

// rulesRedeem opens a redeem link as a browser navigation and returns the
// status and the session cookie, if any.
func rulesRedeem(t *testing.T, g *gateway, path string) (int, *http.Cookie) {
	t.Helper()
	resp := g.do(t, http.MethodGet, path, "", nil, "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document", "Accept: text/html")
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, sessionCookie(resp)
}

// mintAnswer posts body to /sso/tokens with key.
func mintAnswer(t *testing.T, g *gateway, key, body string) (int, string) {
	t.Helper()
	resp := g.do(t, http.MethodPost, "/sso/tokens", body, nil, "Authorization: Bearer "+key, "Content-Type: application/json", "Accept: application/json")
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMintRules: the rules of SPEC "Minting" at the API, for direct Redis
// tokens and for signed tokens, on one gateway with a Redis store.
func TestMintRules(t *testing.T) {
	rds := harness.StartRedis(t)
	store := "store redis " + rds.URL()

	// A credential listing `id` in request_claims may be refused when the
	// config loads (naming it); if it loads, minting with claim id is refused.
	idConfig := gatewayCaddyfile(harness.FreePort(t), "127.0.0.1:9", gatewayOptions{store: store, extra: rulesCredential("id role")})
	// caddy validate prints the error JSON-escaped.
	idRefusedAtLoad := strings.ReplaceAll(caddyValidate(t, idConfig), `\"`, `"`)
	claims := "id role"
	if idRefusedAtLoad != "" {
		if !strings.Contains(idRefusedAtLoad, `"id"`) && !strings.Contains(idRefusedAtLoad, " id ") {
			t.Errorf("request_claims id refused with a message that does not name it: %s", tail(idRefusedAtLoad, 400))
		}
		t.Logf("request_claims id is refused at load: %s", tail(idRefusedAtLoad, 200))
		claims = "role"
	}
	// With an access log: Caddy logs {http.auth.user.id} as its user_id.
	g := startGateway(t, gatewayOptions{store: store, extra: rulesCredential(claims),
		site: func(up string) string { return defaultSite(up) + "\n\tlog" }})

	t.Run("StrictJSON", func(t *testing.T) {
		for _, tc := range []struct{ body, field string }{
			{`{"USERID":"a"}`, "USERID"},
			{`{"userid":"a"}`, "userid"},
			{`{"UserId":"a"}`, "UserId"},
			{`{"userId":"a","userId":"b"}`, "userId"},
			{`{"userId":"a","Redirect":"/x"}`, "Redirect"},
			{`{"userId":"a","redirect":"/x","redirect":"/y"}`, "redirect"},
			{`{"userId":"a","claims":{"role":"x","role":"y"}}`, "role"},
			{`{"userId":"a","CLAIMS":{"role":"x"}}`, "CLAIMS"},
		} {
			status, body := mintAnswer(t, g, partnerKey, tc.body)
			if status != http.StatusBadRequest || !strings.Contains(body, tc.field) {
				t.Errorf("mint %s: %d %.200s, want 400 naming %q", tc.body, status, body, tc.field)
			}
		}
	})

	t.Run("UserIDs", func(t *testing.T) {
		for _, id := range []string{
			`" alias-user "`, `"alias-user "`, `" alias-user"`, `"\talias"`,
			`"a\u200bb"`, `"\u00a0x"`, `"x\u00a0"`, `"\ufeffx"`, `"a\u202eb"`, `"a\u2060b"`,
			`"a\u0000b"`, `"a\u007fb"`, `"a\u0085b"`, `""`,
			`"` + strings.Repeat("u", 257) + `"`,
		} {
			if status, body := mintAnswer(t, g, orgAKey, `{"userId":`+id+`}`); status != http.StatusBadRequest {
				t.Errorf("mint userId %.40s: %d %.200s, want 400", id, status, body)
			}
		}
		for _, id := range []string{"alias-user", "a b", "élodie@example.com", strings.Repeat("u", 256)} {
			if status, body := mintAnswer(t, g, orgAKey, `{"userId":"`+id+`"}`); status != http.StatusCreated {
				t.Errorf("mint userId %.40q: %d %.200s, want 201", id, status, body)
			}
		}
	})

	t.Run("ClaimID", func(t *testing.T) {
		if idRefusedAtLoad != "" {
			// The credential has no claim id; asking for it is outside its scope.
			if status, body := mintAnswer(t, g, partnerKey, `{"userId":"claim-user","claims":{"id":"admin"}}`); status != http.StatusForbidden && status != http.StatusBadRequest {
				t.Errorf("mint with claim id: %d %.200s, want 400 or 403", status, body)
			}
			return
		}
		status, body := mintAnswer(t, g, partnerKey, `{"userId":"claim-user","claims":{"id":"admin","role":"nurse"}}`)
		if status == http.StatusBadRequest || status == http.StatusForbidden {
			return
		}
		t.Errorf("mint with claim id: %d %.200s, want 400 or 403", status, body)
		if status != http.StatusCreated {
			return
		}
		// What that token does: {http.auth.user.id} must still be the user.
		var m harness.MintAnswer
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatal(err)
		}
		code, c := rulesRedeem(t, g, m.URL)
		if code != http.StatusFound || c == nil {
			return
		}
		g.upstream.Reset()
		readUpstream(t, g.do(t, http.MethodGet, "/records", "", c))
		for _, r := range g.upstream.Requests() {
			if got := r.Header.Get("X-Auth-Id"); got != "claim-user" {
				t.Errorf("claim id overwrote {http.auth.user.id}: the upstream received X-Auth-Id %q, want claim-user", got)
			}
		}
		if strings.Contains(g.caddy.Logs(), `"user_id":"admin"`) {
			t.Errorf(`claim id overwrote the access log's user: "user_id":"admin" in the log`)
		}
	})

	t.Run("DirectTokens", func(t *testing.T) {
		ctx := context.Background()
		for _, tc := range []struct {
			record string
			status int
		}{
			{`{"userId":"direct-ok","claims":{"role":"x"}}`, http.StatusFound},
			{`{"userId":" alias-user "}`, http.StatusForbidden},
			{`{"userId":"a\u200bb"}`, http.StatusForbidden},
			{`{"userId":"\u00a0x"}`, http.StatusForbidden},
			{`{"userId":"direct-id","claims":{"id":"admin"}}`, http.StatusForbidden},
			{`{"userId":"direct-key","claims":{"bad key":"x"}}`, http.StatusForbidden},
			{`{"userId":""}`, http.StatusForbidden},
		} {
			tok := mintRandom()
			if err := rds.Client().SetNX(ctx, "ssogate:tok:"+harness.KeyHash(tok), tc.record, 30*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
			if status, _ := rulesRedeem(t, g, "/redirect/"+tok); status != tc.status {
				t.Errorf("direct token %s: %d at redeem, want %d", tc.record, status, tc.status)
			}
		}
	})

	t.Run("SignedTokens", func(t *testing.T) {
		exp := time.Now().Add(20 * time.Second).Unix()
		payload := func(fields string) []byte {
			return fmt.Appendf(nil, `{"kid":"k2","exp":%d,"jti":%q,%s}`, exp, mintRandom(), fields)
		}
		for _, tc := range []struct {
			fields string
			status int
		}{
			{`"sub":"signed-ok","claims":{"role":"x"}`, http.StatusFound},
			{`"sub":" alias-user "`, http.StatusForbidden},
			{`"sub":"a\u200bb"`, http.StatusForbidden},
			{`"sub":"signed-id","claims":{"id":"admin"}`, http.StatusForbidden},
			{`"sub":"signed-a","sub":"admin"`, http.StatusForbidden},
			{`"SUB":"signed-case"`, http.StatusForbidden},
			{`"sub":"signed-c","claims":{"role":"a","role":"b"}`, http.StatusForbidden},
		} {
			tok := mintSignJSON(rulesSecret, payload(tc.fields))
			if status, _ := rulesRedeem(t, g, "/redirect/"+tok); status != tc.status {
				t.Errorf("signed token {%s}: %d at redeem, want %d", tc.fields, status, tc.status)
			}
		}
	})
}

// TestMintRulesLoneSurrogates: a JSON escape of half a UTF-16 surrogate pair
// is no character at all. Go's decoder turns it into U+FFFD, JavaScript and
// Python keep it, so the minting app and the gateway would disagree about
// who the token is for: refused like invalid UTF-8 (400 at the API, 403 at
// redeem for direct and signed tokens).
func TestMintRulesLoneSurrogates(t *testing.T) {
	rds := harness.StartRedis(t)
	g := startGateway(t, gatewayOptions{store: "store redis " + rds.URL(), extra: rulesCredential("role")})
	for _, id := range []string{`a\ud800b`, `a\udc00`, `\udbff`} {
		if status, body := mintAnswer(t, g, orgAKey, `{"userId":"`+id+`"}`); status != http.StatusBadRequest {
			t.Errorf("mint userId %q: %d %.160s, want 400", id, status, body)
		}
		if status, body := mintAnswer(t, g, partnerKey, `{"userId":"ok-user","claims":{"role":"`+id+`"}}`); status != http.StatusBadRequest {
			t.Errorf("mint claim value %q: %d %.160s, want 400", id, status, body)
		}
		tok := mintRandom()
		if err := rds.Client().SetNX(context.Background(), "ssogate:tok:"+harness.KeyHash(tok), `{"userId":"`+id+`"}`, 30*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		if status, _ := rulesRedeem(t, g, "/redirect/"+tok); status != http.StatusForbidden {
			t.Errorf("direct token for %q: %d at redeem, want 403", id, status)
		}
		signed := mintSignJSON(rulesSecret, fmt.Appendf(nil, `{"kid":"k2","exp":%d,"jti":%q,"sub":"%s"}`, time.Now().Add(20*time.Second).Unix(), mintRandom(), id))
		if status, _ := rulesRedeem(t, g, "/redirect/"+signed); status != http.StatusForbidden {
			t.Errorf("signed token for %q: %d at redeem, want 403", id, status)
		}
	}
}

// TestMintRulesDefaultIgnorables: characters Unicode marks
// Default_Ignorable_Code_Point render as nothing, like the zero-width space
// SPEC names, though their category is not Cf: the combining grapheme
// joiner, variation selectors, the Mongolian free variation selector and
// the Hangul fillers. "alias\u034f-user" looks like "alias-user" and escapes
// its revocation.
func TestMintRulesDefaultIgnorables(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	for _, id := range []string{`alias\u034f-user`, `alias\ufe0f-user`, `alias\u180b-user`, `alias\u3164-user`, `alias\uffa0-user`, `\u115falias`} {
		if status, body := mintAnswer(t, g, orgAKey, `{"userId":"`+id+`"}`); status != http.StatusBadRequest {
			t.Errorf("mint userId %q: %d %.160s, want 400", id, status, body)
		}
	}
}
