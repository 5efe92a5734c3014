package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	dto "github.com/prometheus/client_model/go"

	"github.com/ssogate/ssogate/internal/assertion"
	"github.com/ssogate/ssogate/plugins/store"
)

// assertionKeyFile writes a new key to a temp file and returns its path.
func assertionKeyFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "assertion.pem")
	pemBytes, _, err := assertion.NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// signedIn stores a session for user and returns its cookie.
func signedIn(t testing.TB, h *Handler, user string, claims map[string]string) *http.Cookie {
	t.Helper()
	id, err := h.newSession(context.Background(), store.Token{UserID: user, Claims: claims})
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: h.CookieName, Value: id}
}

// fetchJWKS gets the key set through ServeHTTP, as a portal would.
func fetchJWKS(t *testing.T, h apiTestHandler) jose.JSONWebKeySet {
	t.Helper()
	w, seen := h.do(t, http.MethodGet, h.APIPrefix+"/jwks.json", "", "")
	if w.Code != http.StatusOK || seen != nil {
		t.Fatalf("jwks.json: %d %s (proxied: %v)", w.Code, w.Body, seen != nil)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("jwks.json Cache-Control %q", cc)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatalf("jwks.json %s: %v", w.Body, err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("jwks.json publishes a private key: %s", w.Body)
		}
	}
	return set
}

// assertionClaims are the assertion's claims beyond RFC 7519's.
type assertionClaims struct {
	Claims map[string]string `json:"claims"`
	SID    string            `json:"sid"`
}

func verifyAssertion(t *testing.T, tok string, set jose.JSONWebKeySet, iss, aud string) (jwt.Claims, assertionClaims) {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion %q: %v", tok, err)
	}
	var std jwt.Claims
	var extra assertionClaims
	if err := parsed.Claims(set, &std, &extra); err != nil {
		t.Fatalf("assertion does not verify against jwks.json: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{aud}, Time: time.Now()}, time.Second); err != nil {
		t.Fatalf("assertion claims: %v", err)
	}
	return std, extra
}

func TestGateSendsAVerifiableAssertion(t *testing.T) {
	h := apiHandler(t, &Handler{
		Skip:              []string{"/health"},
		IdentityAssertion: &IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: assertionKeyFile(t)}}, Audience: "portal-app"},
	})
	set := fetchJWKS(t, h)
	c := signedIn(t, h.Handler, "gate-assert-user", map[string]string{"group": "org-a"})
	before := signedCount(t)

	seen := h.upstream(t, c)
	if seen == nil {
		t.Fatal("signed-in request not proxied")
	}
	tok := seen.Header.Get("X-Ssogate-Assertion")
	std, extra := verifyAssertion(t, tok, set, "https://portal.test", "portal-app")
	if std.Subject != "gate-assert-user" || extra.Claims["group"] != "org-a" || extra.SID != sessionHandle(keyOf(c.Value).Hex()) {
		t.Errorf("assertion says %+v %+v", std, extra)
	}
	if strings.Contains(tok, c.Value) || strings.Contains(extra.SID, keyOf(c.Value).Hex()[:16]) {
		t.Error("the assertion reveals the session id or its store key")
	}

	// Reused: nine more requests, no more signatures.
	for range 9 {
		if again := h.upstream(t, c).Header.Get("X-Ssogate-Assertion"); again != tok {
			t.Fatal("a second request got a new assertion")
		}
	}
	if n := signedCount(t) - before; n != 1 {
		t.Errorf("ssogate_assertions_signed_total grew by %v over 10 requests, want 1", n)
	}

	// A client's own copy never arrives: signed in, on a skip path, or
	// under a spelling a CGI backend would fold into the same name.
	forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	for _, path := range []string{"/patients", "/health"} {
		for _, name := range []string{"X-Ssogate-Assertion", "x_ssogate_assertion"} {
			r := map[string]bool{}
			w, seen := h.doWithHeader(t, path, name, forged, c)
			if seen == nil {
				t.Fatalf("%s: not proxied (%d)", path, w.Code)
			}
			for k, vs := range seen.Header {
				for _, v := range vs {
					if v == forged {
						r[k] = true
					}
				}
			}
			if len(r) > 0 {
				t.Errorf("%s: the client's %s reached the upstream as %v", path, name, r)
			}
		}
	}
	w, seen := h.doWithHeader(t, "/health", "X-Ssogate-Assertion", forged, nil)
	if seen == nil || seen.Header.Get("X-Ssogate-Assertion") != "" {
		t.Errorf("skip path without a session: proxied %v, header %q (%d)", seen != nil, seen.Header.Get("X-Ssogate-Assertion"), w.Code)
	}
}

// doWithHeader sends a GET through ServeHTTP with one more request header,
// its name as the client spelled it, and returns what next saw (nil if not
// reached).
func (h apiTestHandler) doWithHeader(t *testing.T, path, name, value string, c *http.Cookie) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	cookie := ""
	if c != nil {
		cookie = c.Name + "=" + c.Value
	}
	r := benchRequest(http.MethodGet, path, cookie)
	r.Header[name] = []string{value}
	var seen *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		return nil
	})
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return w, seen
}

func TestJWKSOnlyWithIdentityAssertion(t *testing.T) {
	h := apiHandler(t, &Handler{})
	c := signedIn(t, h.Handler, "jwks-off-user", nil)
	if _, seen := h.do(t, http.MethodGet, "/sso/jwks.json", "", "", c); seen == nil || seen.Header.Get("X-Ssogate-Assertion") != "" {
		t.Errorf("without identity_assertion, /sso/jwks.json is not proxied like any path")
	}
	if w, seen := h.do(t, http.MethodGet, "/sso/jwks.json", "", ""); seen != nil || w.Code != http.StatusUnauthorized {
		t.Errorf("without identity_assertion and a session, /sso/jwks.json: %d, proxied %v", w.Code, seen != nil)
	}
	h = apiHandler(t, &Handler{IdentityAssertion: &IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: assertionKeyFile(t)}}}})
	if w, _ := h.do(t, http.MethodPost, "/sso/jwks.json", "", ""); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST jwks.json: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

// With public_url, iss is public_url whatever the Host; rotation publishes
// both keys and signs with the first.
func TestAssertionIssuerAndRotation(t *testing.T) {
	oldKey, newKey := assertionKeyFile(t), assertionKeyFile(t)
	h := apiHandler(t, &Handler{
		PublicURL:         "https://portal.example.com",
		IdentityAssertion: &IdentityAssertion{Keys: []*AssertionKey{{ID: "new", File: newKey}, {ID: "old", File: oldKey}}, TTL: caddy.Duration(90 * time.Second)},
	})
	set := fetchJWKS(t, h)
	if len(set.Keys) != 2 || set.Keys[0].KeyID != "new" || set.Keys[1].KeyID != "old" {
		t.Fatalf("published %+v, want new and old", set.Keys)
	}
	tok := h.upstream(t, signedIn(t, h.Handler, "rotation-user", nil)).Header.Get("X-Ssogate-Assertion")
	std, _ := verifyAssertion(t, tok, set, "https://portal.example.com", "https://portal.example.com")
	if d := std.Expiry.Time().Sub(std.IssuedAt.Time()); d > 90*time.Second {
		t.Errorf("exp − iat = %s, ttl 90s", d)
	}
	parsed, _ := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if kid := parsed.Headers[0].KeyID; kid != "new" {
		t.Errorf("signed with %q, want the first key", kid)
	}
}

func TestAssertionProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	good := assertionKeyFile(t)
	for name, tc := range map[string]struct {
		a    *IdentityAssertion
		want string
	}{
		"no key":         {&IdentityAssertion{}, "no key"},
		"missing file":   {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: filepath.Join(dir, "nope.pem")}}}, "no such file"},
		"not PEM":        {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: write("text", []byte("hello"))}}}, "no PEM private key"},
		"RSA":            {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: write("rsa", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}))}}}, "not an ECDSA"},
		"P-384":          {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: write("p384", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}))}}}, "not P-256"},
		"unset env":      {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: "{env.SSOGATE_TEST_UNSET_KEY}"}}}, "resolves to nothing"},
		"kid twice":      {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: good}, {ID: "k", File: good}}}, "given twice"},
		"bad kid":        {&IdentityAssertion{Keys: []*AssertionKey{{ID: "a b", File: good}}}, "key id"},
		"ttl too long":   {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: good}}, TTL: caddy.Duration(6 * time.Minute)}, "ttl"},
		"bad header":     {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: good}}, Header: "X Bad"}, "not a valid header"},
		"user header":    {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: good}}, Header: "x_forwarded_user"}, "already used by another identity header"},
		"a directory":    {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: dir}}}, "identity_assertion: key \"k\""},
		"encrypted file": {&IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: write("enc", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))}}}, "encrypted"},
	} {
		h := &Handler{IdentityAssertion: tc.a}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "identity_assertion") {
			t.Errorf("%s: provision error %v, want one saying identity_assertion and %q", name, err, tc.want)
		}
	}
}

// The key path's placeholders are resolved when the config loads.
func TestAssertionKeyPathPlaceholders(t *testing.T) {
	path := assertionKeyFile(t)
	t.Setenv("SSOGATE_TEST_ASSERTION_KEY", path)
	pointer := filepath.Join(t.TempDir(), "key-path")
	if err := os.WriteFile(pointer, []byte(path), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"{env.SSOGATE_TEST_ASSERTION_KEY}", "{file." + pointer + "}"} {
		h := apiHandler(t, &Handler{IdentityAssertion: &IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: file}}}})
		if got := h.upstream(t, signedIn(t, h.Handler, "placeholder-user", nil)).Header.Get("X-Ssogate-Assertion"); got == "" {
			t.Errorf("key file %s: no assertion", file)
		}
	}
}

func TestIdentityAssertionCaddyfileErrors(t *testing.T) {
	for in, want := range map[string]string{
		"ssogate {\n identity_assertion\n}":                                                                "no key",
		"ssogate {\n identity_assertion on {\n key k /k.pem\n }\n}":                                        "wrong argument count",
		"ssogate {\n identity_assertion {\n key k\n }\n}":                                                  "wrong argument count",
		"ssogate {\n identity_assertion {\n key k /a.pem\n key k /b.pem\n }\n}":                            "given twice",
		"ssogate {\n identity_assertion {\n key k /a.pem\n ttl 10m\n }\n}":                                 "ttl",
		"ssogate {\n identity_assertion {\n key k /a.pem\n ttl soon\n }\n}":                                "ttl",
		"ssogate {\n identity_assertion {\n key k /a.pem\n issuer x\n }\n}":                                `unrecognized identity_assertion option "issuer"`,
		"ssogate {\n identity_assertion {\n key k /a.pem\n }\n identity_assertion {\n key j /b.pem\n }\n}": "given twice",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", in, err, want)
		}
	}
}

// signedCount reads ssogate_assertions_signed_total.
func signedCount(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	if err := assertionsSigned.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Without the session cache, the gate's store path carries the session's
// key to the assertion too.
func TestAssertionWithoutSessionCache(t *testing.T) {
	h := apiHandler(t, &Handler{
		SessionCache:      &SessionCache{Disabled: true},
		IdentityAssertion: &IdentityAssertion{Keys: []*AssertionKey{{ID: "k", File: assertionKeyFile(t)}}},
	})
	c := signedIn(t, h.Handler, "uncached-assert-user", nil)
	tok := h.upstream(t, c).Header.Get("X-Ssogate-Assertion")
	std, extra := verifyAssertion(t, tok, fetchJWKS(t, h), "https://portal.test", "https://portal.test")
	if std.Subject != "uncached-assert-user" || extra.SID != sessionHandle(keyOf(c.Value).Hex()) {
		t.Errorf("assertion says %+v %+v", std, extra)
	}
	if again := h.upstream(t, c).Header.Get("X-Ssogate-Assertion"); again != tok {
		t.Error("without the session cache, assertions are not reused")
	}
}
