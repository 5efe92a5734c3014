package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssogate/ssogate/internal/assertion"
)

// The README's Go verification code is the demo's, to the byte.
func TestReadmeShowsTheDemoVerifier(t *testing.T) {
	src, err := os.ReadFile("verify.go")
	if err != nil {
		t.Fatal(err)
	}
	_, code, ok := strings.Cut(string(src), "// README:begin\n\n")
	if !ok {
		t.Fatal("verify.go has no README:begin marker")
	}
	code, _, ok = strings.Cut(code, "\n// README:end")
	if !ok {
		t.Fatal("verify.go has no README:end marker")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+strings.TrimRight(code, "\n")+"\n```\n") {
		t.Error("README.md's Go verification snippet is not demo/verify.go's code between the README markers: copy it over")
	}
}

// gatewayKeys serves a key set the way the gateway does, counting fetches.
type gatewayKeys struct {
	srv     *httptest.Server
	signer  atomic.Pointer[assertion.Signer]
	fetches atomic.Int32
}

func newGatewayKeys(t *testing.T, s *assertion.Signer) *gatewayKeys {
	g := &gatewayKeys{}
	g.signer.Store(s)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		g.fetches.Add(1)
		_, _ = w.Write(g.signer.Load().JWKS())
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func testSigner(t *testing.T, kids ...string) *assertion.Signer {
	t.Helper()
	var keys []*assertion.Key
	for _, kid := range kids {
		p, _, err := assertion.NewKeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		k, err := assertion.ParseKey(kid, p)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	s, err := assertion.NewSigner(keys, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sign(t *testing.T, s *assertion.Signer, iss, aud string, exp int64) string {
	t.Helper()
	now := time.Now().Unix()
	tok, err := s.Sign(assertion.Claims{Issuer: iss, Audience: aud, Subject: "dr.jones",
		Claims: map[string]string{"group": "demo-clinic"}, SessionID: "abcdefghijklmnopqrstuv", IssuedAt: now, Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifyAssertion(t *testing.T) {
	const gw = "https://portal.localhost:8443"
	s := testSigner(t, "k1")
	g := newGatewayKeys(t, s)
	keys := &keySet{url: g.srv.URL, get: http.Get}
	soon := time.Now().Add(time.Minute).Unix()

	id, err := VerifyAssertion(sign(t, s, gw, gw, soon), keys, gw, gw)
	if err != nil || id.UserID != "dr.jones" || id.Claims["group"] != "demo-clinic" || id.SessionID == "" {
		t.Fatalf("VerifyAssertion: %+v, %v", id, err)
	}
	for name, tok := range map[string]string{
		"other issuer":   sign(t, s, "https://evil.test", gw, soon),
		"other audience": sign(t, s, gw, "other-app", soon),
		"expired":        sign(t, s, gw, gw, time.Now().Add(-time.Minute).Unix()),
		"another key":    sign(t, testSigner(t, "k1"), gw, gw, soon),
		"unknown kid":    sign(t, testSigner(t, "k9"), gw, gw, soon),
	} {
		if _, err := VerifyAssertion(tok, keys, gw, gw); err == nil {
			t.Errorf("%s: verifies", name)
		}
	}
	// An unknown kid within 10 s of the last fetch does not fetch again:
	// forged kids cannot make the portal hammer the gateway.
	if n := g.fetches.Load(); n != 1 {
		t.Errorf("%d fetches of the key set, want 1", n)
	}

	// After a rotation the new kid is fetched: the set is older than 10 s.
	rotated := testSigner(t, "k2")
	g.signer.Store(rotated)
	keys.fetched = keys.fetched.Add(-11 * time.Second)
	if _, err := VerifyAssertion(sign(t, rotated, gw, gw, soon), keys, gw, gw); err != nil || g.fetches.Load() != 2 {
		t.Errorf("after a rotation: %v (%d fetches, want 2)", err, g.fetches.Load())
	}
}
