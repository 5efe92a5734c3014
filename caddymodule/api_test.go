package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ssogate/ssogate/internal/signedtoken"
	_ "github.com/ssogate/ssogate/plugins/store/memory"
)

// The API keys of the test credentials; only their hashes are configured.
const (
	apiKeyOrgA    = "test-key-org-a-0123456789abcdef"
	apiKeyClinic  = "test-key-clinic-7-0123456789abc"
	apiKeyRevoker = "test-key-revoker-0123456789abcd"
	apiKeyPartner = "test-key-partner-0123456789abcd"
)

// apiTestHandler is a Handler provisioned the way Caddy does it, on the
// embedded memory store, with its audit log observed.
type apiTestHandler struct {
	*Handler
	logs *observer.ObservedLogs
}

// apiHandler provisions h (credentials default to apiCredentials) and tears it
// down with the test.
func apiHandler(t *testing.T, h *Handler) apiTestHandler {
	t.Helper()
	if h.Credentials == nil {
		h.Credentials = apiCredentials()
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	return apiTestHandler{h, logs}
}

// apiCredentials covers every kind of scope. Each test uses its own users,
// since every handler in this process shares the one memory store.
func apiCredentials() []*Credential {
	return []*Credential{
		{ID: "emr-org-a", KeySHA256: hashKey(apiKeyOrgA), Users: []string{"org-a-*"},
			Claims: map[string]string{"group": "org-a"}, RequestClaims: []string{"role"}},
		{ID: "clinic-7", KeySHA256: hashKey(apiKeyClinic), User: "hcp-7"},
		{ID: "revoker", KeySHA256: hashKey(apiKeyRevoker), Users: []string{"*"}, Allow: []string{"revoke"}},
		{ID: "partner", KeySHA256: hashKey(apiKeyPartner), Users: []string{"*"}, Allow: []string{"mint", "revoke"}},
	}
}

// do sends one request through ServeHTTP as Caddy's server would, and returns
// the answer and the request next saw (nil if next was not reached).
func (h apiTestHandler) do(t *testing.T, method, target, key, body string, cookies ...*http.Cookie) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	r := httptest.NewRequest(method, "https://portal.test"+target, strings.NewReader(body))
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	if method == http.MethodGet {
		asBrowserNavigation(r)
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
	r = r.WithContext(ctx)
	var seen *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		w.WriteHeader(http.StatusOK)
		return nil
	})
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, next); err != nil {
		// Caddy would answer a handler error with its status.
		var he caddyhttp.HandlerError
		if !asHandlerError(err, &he) {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		w.Code = he.StatusCode
	}
	return w, seen
}

func asHandlerError(err error, he *caddyhttp.HandlerError) bool {
	e, ok := err.(caddyhttp.HandlerError)
	if ok {
		*he = e
	}
	return ok
}

// mint mints through the API and returns the decoded 201 answer.
func (h apiTestHandler) mint(t *testing.T, key, body string) mintResponse {
	t.Helper()
	w, _ := h.do(t, http.MethodPost, "/sso/tokens", key, body)
	if w.Code != http.StatusCreated {
		t.Fatalf("mint %s: %d %s", body, w.Code, w.Body)
	}
	var resp mintResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("mint response %q: %v", w.Body, err)
	}
	return resp
}

// redeem redeems the link's token and returns the session cookie.
func (h apiTestHandler) redeem(t *testing.T, path string) *http.Cookie {
	t.Helper()
	w, _ := h.do(t, http.MethodGet, path, "", "")
	if w.Code != http.StatusFound {
		t.Fatalf("redeem: %d %s, want 302", w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == h.CookieName && c.Value != "" {
			return c
		}
	}
	t.Fatal("redeem: no session cookie")
	return nil
}

// upstream makes a signed-in request and returns what next saw, nil if the
// request did not get through.
func (h apiTestHandler) upstream(t *testing.T, c *http.Cookie) *http.Request {
	t.Helper()
	_, seen := h.do(t, http.MethodGet, "/patients", "", "", c)
	return seen
}

// errorCode is the "code" of a JSON error answer.
func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct{ Code string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return body.Code
}

func TestMintAnswersWithTheToken(t *testing.T) {
	h := apiHandler(t, &Handler{PublicURL: "https://portal.example.com", TokenTTL: caddy.Duration(20 * time.Second)})
	before := time.Now().UTC().Truncate(time.Second)
	resp := h.mint(t, apiKeyOrgA, `{"userId":"org-a-shape","redirect":"/patients/7#/tab"}`)
	if resp.UserID != "org-a-shape" || resp.CreatedByApplicationID != "emr-org-a" {
		t.Errorf("user %q, created by %q", resp.UserID, resp.CreatedByApplicationID)
	}
	if resp.URL != "https://portal.example.com/redirect/"+resp.SSOToken {
		t.Errorf("url %q is not the public_url redeem link of %q", resp.URL, resp.SSOToken)
	}
	if strings.Contains(resp.ID, resp.SSOToken) || resp.ID == "" {
		t.Errorf("id %q must identify the token without being it", resp.ID)
	}
	created, err := time.Parse(time.RFC3339, resp.CreationTimestamp)
	if err != nil || created.Before(before) || !strings.HasSuffix(resp.CreationTimestamp, "Z") {
		t.Errorf("creationTimestamp %q: want RFC 3339 UTC, not before %s (%v)", resp.CreationTimestamp, before, err)
	}
	expires, err := time.Parse(time.RFC3339, resp.ExpiresAt)
	if err != nil || expires.Sub(created) != 20*time.Second {
		t.Errorf("expiresAt %q: want creation + token_ttl (%v)", resp.ExpiresAt, err)
	}
	// The minting is audited without the token.
	var minted bool
	for _, e := range h.logs.All() {
		if strings.Contains(encodeEntry(e), resp.SSOToken) {
			t.Errorf("log entry %q carries the token", e.Message)
		}
		minted = minted || e.Message == "minted"
	}
	if !minted {
		t.Error("no minted audit event")
	}
}

func encodeEntry(e observer.LoggedEntry) string {
	b, _ := json.Marshal(e.ContextMap())
	return e.Message + string(b)
}

func TestMintFixedUser(t *testing.T) {
	h := apiHandler(t, &Handler{})
	// With no userId, or its own, the token is for the fixed user.
	for _, body := range []string{``, `{}`, `{"userId":"hcp-7"}`} {
		if resp := h.mint(t, apiKeyClinic, body); resp.UserID != "hcp-7" {
			t.Errorf("body %q: user %q, want hcp-7", body, resp.UserID)
		}
	}
	w, _ := h.do(t, http.MethodPost, "/sso/tokens", apiKeyClinic, `{"userId":"hcp-8"}`)
	if w.Code != http.StatusForbidden || errorCode(t, w) != "forbidden_scope" {
		t.Errorf("fixed user, another userId: %d %s, want 403 forbidden_scope", w.Code, w.Body)
	}
}

func TestMintUsersPattern(t *testing.T) {
	h := apiHandler(t, &Handler{})
	if resp := h.mint(t, apiKeyOrgA, `{"userId":"org-a-42"}`); resp.UserID != "org-a-42" {
		t.Errorf("user %q", resp.UserID)
	}
	for body, want := range map[string]int{
		`{"userId":"org-b-42"}`:  http.StatusForbidden,  // outside the pattern
		`{"userId":"xorg-a-42"}`: http.StatusForbidden,  // patterns are anchored
		`{}`:                     http.StatusBadRequest, // users needs userId
		`{"userId":""}`:          http.StatusBadRequest,
	} {
		if w, _ := h.do(t, http.MethodPost, "/sso/tokens", apiKeyOrgA, body); w.Code != want {
			t.Errorf("body %s: %d, want %d", body, w.Code, want)
		}
	}
}

func TestMintClaimsReachTheUpstream(t *testing.T) {
	h := apiHandler(t, &Handler{})
	resp := h.mint(t, apiKeyOrgA, `{"userId":"org-a-claims","claims":{"role":"nurse"}}`)
	seen := h.upstream(t, h.redeem(t, "/redirect/"+resp.SSOToken))
	if seen == nil {
		t.Fatal("signed-in request did not reach next")
	}
	if got := seen.Header.Get("X-Forwarded-User"); got != "org-a-claims" {
		t.Errorf("X-Forwarded-User %q", got)
	}
	// The fixed claim is stamped, the allowed request claim added.
	if got := seen.Header.Get("X-Forwarded-Claims"); got != "group=org-a;role=nurse" {
		t.Errorf("X-Forwarded-Claims %q, want group=org-a;role=nurse", got)
	}
}

func TestMintRequestClaimsStayInScope(t *testing.T) {
	h := apiHandler(t, &Handler{})
	for _, tc := range []struct {
		key, body string
		want      int
	}{
		// A key not in request_claims.
		{apiKeyOrgA, `{"userId":"org-a-1","claims":{"admin":"true"}}`, http.StatusForbidden},
		// A fixed claim, whatever the value: a partner cannot widen its scope.
		{apiKeyOrgA, `{"userId":"org-a-1","claims":{"group":"org-b"}}`, http.StatusForbidden},
		{apiKeyOrgA, `{"userId":"org-a-1","claims":{"group":"org-a"}}`, http.StatusForbidden},
		// No request claims by default.
		{apiKeyClinic, `{"claims":{"role":"nurse"}}`, http.StatusForbidden},
		// Allowed key, value with a control character.
		{apiKeyOrgA, `{"userId":"org-a-1","claims":{"role":"a\nb"}}`, http.StatusBadRequest},
	} {
		w, _ := h.do(t, http.MethodPost, "/sso/tokens", tc.key, tc.body)
		if w.Code != tc.want {
			t.Errorf("body %s: %d %s, want %d", tc.body, w.Code, w.Body, tc.want)
		}
	}
}

func TestMintRefusesBadRequests(t *testing.T) {
	h := apiHandler(t, &Handler{})
	for _, tc := range []struct {
		name, key, body string
		want            int
		code            string
	}{
		{"no key", "", `{"userId":"org-a-1"}`, http.StatusUnauthorized, "unauthorized"},
		{"wrong key", "test-key-org-a-0123456789abcdeX", `{"userId":"org-a-1"}`, http.StatusUnauthorized, "unauthorized"},
		{"hash as key", hashKey(apiKeyOrgA), `{"userId":"org-a-1"}`, http.StatusUnauthorized, "unauthorized"},
		{"not JSON", apiKeyOrgA, `userId=org-a-1`, http.StatusBadRequest, "bad_request"},
		{"cut short", apiKeyOrgA, `{"userId":"org-a-1"`, http.StatusBadRequest, "bad_request"},
		{"unknown field", apiKeyOrgA, `{"userId":"org-a-1","user":"org-b-1"}`, http.StatusBadRequest, "bad_request"},
		{"response field", apiKeyOrgA, `{"userId":"org-a-1","expiresAt":"2099-01-01T00:00:00Z"}`, http.StatusBadRequest, "bad_request"},
		{"trailing data", apiKeyOrgA, `{"userId":"org-a-1"} {"userId":"org-a-2"}`, http.StatusBadRequest, "bad_request"},
		{"an array", apiKeyOrgA, `[{"userId":"org-a-1"}]`, http.StatusBadRequest, "bad_request"},
		{"field in upper case", apiKeyOrgA, `{"USERID":"org-a-1"}`, http.StatusBadRequest, "bad_request"},
		{"field in lower case", apiKeyOrgA, `{"userid":"org-a-1"}`, http.StatusBadRequest, "bad_request"},
		{"field twice", apiKeyOrgA, `{"userId":"org-a-1","userId":"org-b-1"}`, http.StatusBadRequest, "bad_request"},
		{"claim twice", apiKeyPartner, `{"userId":"org-a-1","claims":{"role":"a","role":"b"}}`, http.StatusBadRequest, "bad_request"},
		{"padded user", apiKeyOrgA, `{"userId":" org-a-1 "}`, http.StatusBadRequest, "bad_request"},
		{"zero-width user", apiKeyOrgA, `{"userId":"org-a-\u200b1"}`, http.StatusBadRequest, "bad_request"},
		{"claim not a string", apiKeyOrgA, `{"userId":"org-a-1","claims":{"role":1}}`, http.StatusBadRequest, "bad_request"},
		{"too large", apiKeyOrgA, `{"userId":"org-a-1","redirect":"/` + strings.Repeat("a", maxMintBody) + `"}`, http.StatusBadRequest, "bad_request"},
		{"bad redirect", apiKeyOrgA, `{"userId":"org-a-1","redirect":"https://evil.example/"}`, http.StatusBadRequest, "bad_redirect"},
		{"may only revoke", apiKeyRevoker, `{"userId":"org-a-1"}`, http.StatusForbidden, "forbidden_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := h.do(t, http.MethodPost, "/sso/tokens", tc.key, tc.body)
			if w.Code != tc.want || errorCode(t, w) != tc.code {
				t.Errorf("%d %s, want %d %s", w.Code, w.Body, tc.want, tc.code)
			}
			if strings.Contains(tc.name, "case") && !strings.Contains(w.Body.String(), `did you mean \"userId\"`) {
				t.Errorf("%s: the error does not name the field: %s", tc.name, w.Body)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
		})
	}
	if w, _ := h.do(t, http.MethodGet, "/sso/tokens", apiKeyOrgA, ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /sso/tokens: %d, want 405", w.Code)
	}
}

func TestAccess(t *testing.T) {
	h := apiHandler(t, &Handler{})
	for _, tc := range []struct {
		key, user string
		want      bool
	}{
		{apiKeyOrgA, "org-a-1", true},
		{apiKeyOrgA, "org-b-1", false},
		{apiKeyClinic, "hcp-7", true},
		{apiKeyClinic, "hcp-8", false},
		{apiKeyRevoker, "org-a-1", false}, // may not mint at all
	} {
		w, _ := h.do(t, http.MethodGet, "/sso/access?userId="+tc.user, tc.key, "")
		var body struct {
			UserID string `json:"userId"`
			Access *bool  `json:"access"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Access == nil {
			t.Fatalf("access %s: %d %s", tc.user, w.Code, w.Body)
		}
		if body.UserID != tc.user || *body.Access != tc.want {
			t.Errorf("access %s: %s, want access %v", tc.user, w.Body, tc.want)
		}
	}
	if w, _ := h.do(t, http.MethodGet, "/sso/access?userId=org-a-1", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("access without a key: %d, want 401", w.Code)
	}
	if w, _ := h.do(t, http.MethodGet, "/sso/access", apiKeyOrgA, ""); w.Code != http.StatusBadRequest {
		t.Errorf("access without userId: %d, want 400", w.Code)
	}
}

func TestRevoke(t *testing.T) {
	h := apiHandler(t, &Handler{})
	var cookies []*http.Cookie
	for range 2 {
		tok := h.mint(t, apiKeyPartner, `{"userId":"revoke-me"}`).SSOToken
		cookies = append(cookies, h.redeem(t, "/redirect/"+tok))
	}
	other := h.redeem(t, "/redirect/"+h.mint(t, apiKeyPartner, `{"userId":"keep-me"}`).SSOToken)
	for _, c := range append(cookies, other) {
		if h.upstream(t, c) == nil {
			t.Fatal("fresh session refused")
		}
	}

	// Minting does not imply revoking, nor the reverse.
	w, _ := h.do(t, http.MethodDelete, "/sso/sessions?userId=revoke-me", apiKeyOrgA, "")
	if w.Code != http.StatusForbidden || errorCode(t, w) != "forbidden_scope" {
		t.Errorf("revoke with a mint-only credential: %d %s, want 403", w.Code, w.Body)
	}
	if w, _ := h.do(t, http.MethodDelete, "/sso/sessions?userId=revoke-me", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("revoke without a key: %d, want 401", w.Code)
	}
	for _, c := range cookies {
		if h.upstream(t, c) == nil {
			t.Fatal("a refused revocation ended a session")
		}
	}

	w, _ = h.do(t, http.MethodDelete, "/sso/sessions?userId=revoke-me", apiKeyRevoker, "")
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"revoked":2,"userId":"revoke-me"}` {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	for _, c := range cookies {
		if h.upstream(t, c) != nil {
			t.Error("a revoked session still gets through")
		}
	}
	if h.upstream(t, other) == nil {
		t.Error("revoking one user ended another's session")
	}
}

func TestRevokeStaysInScope(t *testing.T) {
	h := apiHandler(t, &Handler{Credentials: []*Credential{
		{ID: "clinic-7", KeySHA256: hashKey(apiKeyClinic), User: "hcp-7", Allow: []string{"mint", "revoke"}},
	}})
	w, _ := h.do(t, http.MethodDelete, "/sso/sessions?userId=hcp-8", apiKeyClinic, "")
	if w.Code != http.StatusForbidden {
		t.Errorf("revoke another user than the fixed one: %d, want 403", w.Code)
	}
	if w, _ := h.do(t, http.MethodDelete, "/sso/sessions?userId=hcp-7", apiKeyClinic, ""); w.Code != http.StatusOK {
		t.Errorf("revoke the fixed user: %d %s", w.Code, w.Body)
	}
}

func TestSignedTokens(t *testing.T) {
	secret := "a-signing-secret-of-at-least-32-bytes!"
	// Secrets come from the environment, not the config file.
	t.Setenv("SSOGATE_TEST_SIGNING", secret)
	h := apiHandler(t, &Handler{SigningKeys: map[string]string{"k2": "{env.SSOGATE_TEST_SIGNING}"}})
	keys, err := signedtoken.NewKeys(map[string][]byte{
		"k2":  []byte(secret),
		"old": []byte("a-rotated-out-secret-of-32-bytes!!"),
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sign := func(kid string, exp time.Time, claims map[string]string) string {
		n++
		tok, err := keys.Sign(signedtoken.Claims{KeyID: kid, Subject: "signed-user", Expiry: exp.Unix(),
			ID: "jti-" + t.Name() + "-" + string(rune('a'+n)), Claims: claims})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	soon := time.Now().Add(20 * time.Second)

	tok := sign("k2", soon, map[string]string{"group": "signed"})
	seen := h.upstream(t, h.redeem(t, "/redirect/"+tok))
	if seen == nil || seen.Header.Get("X-Forwarded-User") != "signed-user" || seen.Header.Get("X-Forwarded-Claims") != "group=signed" {
		t.Fatalf("signed token's identity did not reach next: %v", seen)
	}
	if w, _ := h.do(t, http.MethodGet, "/redirect/"+tok, "", ""); w.Code != http.StatusForbidden {
		t.Errorf("second redemption: %d, want 403", w.Code)
	}

	// Signed with another secret under the right kid.
	forger, err := signedtoken.NewKeys(map[string][]byte{"k2": []byte("not-the-secret-but-32-bytes-long!!")})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := forger.Sign(signedtoken.Claims{KeyID: "k2", Subject: "admin", Expiry: soon.Unix(), ID: "jti-forged"})
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"forged":        forged,
		"rotated out":   sign("old", soon, nil),
		"expired":       sign("k2", time.Now().Add(-time.Second), nil),
		"beyond ttl":    sign("k2", time.Now().Add(2*time.Minute), nil),
		"control chars": sign("k2", soon, map[string]string{"group": "a\r\nb"}),
	} {
		if w, _ := h.do(t, http.MethodGet, "/redirect/"+bad, "", ""); w.Code != http.StatusForbidden {
			t.Errorf("%s signed token: %d, want 403", name, w.Code)
		}
	}
}

// TestProvisionValidatesBeforeTheStore: a cheap mistake is refused before the
// store module is loaded (which would connect to Redis).
func TestProvisionValidatesBeforeTheStore(t *testing.T) {
	h := &Handler{TokenTTL: caddy.Duration(time.Hour)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	err := h.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "token_ttl") {
		t.Fatalf("Provision = %v, want the token_ttl error", err)
	}
	if h.store != nil {
		t.Fatal("the store was loaded before the configuration was checked")
	}
}

// hashKey is the key_sha256 of an API key.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
