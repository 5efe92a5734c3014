package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// clock is a clock the tests move by hand.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }

func newKey(t testing.TB, kid string) *Key {
	t.Helper()
	p, _, err := NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(kid, p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSigner(t testing.TB, ttl time.Duration, keys ...*Key) *Signer {
	t.Helper()
	s, err := NewSigner(keys, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func handleOf(key [32]byte) string { return "h-" + base64.RawURLEncoding.EncodeToString(key[:4]) }

// jwks parses the signer's key set with go-jose, as a verifier would.
func jwks(t *testing.T, s *Signer) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatalf("key set %s: %v", s.JWKS(), err)
	}
	return set
}

// custom are the claims beyond RFC 7519's.
type custom struct {
	Claims map[string]string `json:"claims"`
	SID    string            `json:"sid"`
}

// verify checks tok with go-jose against set, as the README tells portals to.
func verify(tok string, set jose.JSONWebKeySet, iss, aud string, now time.Time) (jwt.Claims, custom, error) {
	var std jwt.Claims
	var c custom
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return std, c, err
	}
	if err := parsed.Claims(set, &std, &c); err != nil {
		return std, c, err
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{aud}, Time: now}, 0)
	return std, c, err
}

func TestSignVerifiesWithGoJose(t *testing.T) {
	clk := newClock()
	s := newSigner(t, time.Minute, newKey(t, "k1"))
	c := NewCache(s, CacheConfig{Audience: "portal-app", Size: 10, Handle: handleOf, Now: clk.now})
	key := [32]byte{1, 2, 3}
	sess := Session{Subject: "dr.jones", Claims: map[string]string{"group": "org-a", "role": "hcp"}, Expires: clk.now().Add(time.Hour).UnixNano()}
	tok, signed, err := c.Get(key, "https", "Portal.Test:8443", sess)
	if err != nil || !signed {
		t.Fatalf("Get: %v, signed %v", err, signed)
	}
	std, cl, err := verify(tok, jwks(t, s), "https://portal.test:8443", "portal-app", clk.now())
	if err != nil {
		t.Fatalf("go-jose refuses the assertion: %v", err)
	}
	if std.Subject != "dr.jones" || cl.SID != handleOf(key) || cl.Claims["group"] != "org-a" || cl.Claims["role"] != "hcp" {
		t.Errorf("claims: %+v %+v", std, cl)
	}
	if got, want := std.IssuedAt.Time(), clk.now(); !got.Equal(want) {
		t.Errorf("iat %v, want %v", got, want)
	}
	parsed, _ := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	h := parsed.Signatures[0].Protected
	if h.Algorithm != "ES256" || h.KeyID != "k1" || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header: %+v", h)
	}
	// Without a configured audience, it is the issuer; without claims, {}.
	c = NewCache(s, CacheConfig{Issuer: "https://portal.example.com", Size: 10, Handle: handleOf, Now: clk.now})
	tok, _, err = c.Get(key, "https", "ignored.test", Session{Subject: "u", Expires: sess.Expires})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := verify(tok, jwks(t, s), "https://portal.example.com", "https://portal.example.com", clk.now()); err != nil {
		t.Errorf("fixed issuer, default audience: %v", err)
	}
	if !strings.Contains(decodePart(t, tok, 1), `"claims":{}`) {
		t.Errorf("no claims: payload %s", decodePart(t, tok, 1))
	}
}

func decodePart(t *testing.T, tok string, i int) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func encodePart(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestTamperedAssertionsFail(t *testing.T) {
	clk := newClock()
	s := newSigner(t, time.Minute, newKey(t, "k1"), newKey(t, "k2"))
	c := NewCache(s, CacheConfig{Issuer: "https://portal.test", Size: 10, Handle: handleOf, Now: clk.now})
	tok, _, err := c.Get([32]byte{9}, "", "", Session{Subject: "alice", Expires: clk.now().Add(time.Hour).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	set := jwks(t, s)
	if _, _, err := verify(tok, set, "https://portal.test", "https://portal.test", clk.now()); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	parts := strings.Split(tok, ".")
	head, body := decodePart(t, tok, 0), decodePart(t, tok, 1)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	flipped := append([]byte(nil), sig...)
	flipped[10] ^= 1
	for name, bad := range map[string]string{
		"payload sub":        parts[0] + "." + encodePart(strings.Replace(body, `"alice"`, `"admin"`, 1)) + "." + parts[2],
		"payload exp":        parts[0] + "." + encodePart(strings.Replace(body, `"exp":`, `"exp":9`, 1)) + "." + parts[2],
		"header kid":         encodePart(strings.Replace(head, `"k1"`, `"k2"`, 1)) + "." + parts[1] + "." + parts[2],
		"header alg none":    encodePart(strings.Replace(head, `"ES256"`, `"none"`, 1)) + "." + parts[1] + ".",
		"header alg HS256":   encodePart(strings.Replace(head, `"ES256"`, `"HS256"`, 1)) + "." + parts[1] + "." + parts[2],
		"signature bit":      parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(flipped),
		"signature cut":      parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig[:63]),
		"signature dropped":  parts[0] + "." + parts[1] + ".",
		"signature of other": parts[0] + "." + parts[1] + "." + strings.Split(mustGet(t, c, clk), ".")[2],
	} {
		if _, _, err := verify(bad, set, "https://portal.test", "https://portal.test", clk.now()); err == nil {
			t.Errorf("%s: verifies", name)
		}
	}
	// Expired, wrong issuer, wrong audience: the signature holds, the
	// checks a portal must make refuse it.
	if _, _, err := verify(tok, set, "https://portal.test", "https://portal.test", clk.now().Add(61*time.Second)); err == nil {
		t.Error("expired: verifies")
	}
	if _, _, err := verify(tok, set, "https://evil.test", "https://portal.test", clk.now()); err == nil {
		t.Error("wrong issuer: verifies")
	}
	if _, _, err := verify(tok, set, "https://portal.test", "other-app", clk.now()); err == nil {
		t.Error("wrong audience: verifies")
	}
	// A key set without the signing key refuses it.
	other := jwks(t, newSigner(t, time.Minute, newKey(t, "k1")))
	if _, _, err := verify(tok, other, "https://portal.test", "https://portal.test", clk.now()); err == nil {
		t.Error("another key under the same kid: verifies")
	}
}

func mustGet(t *testing.T, c *Cache, clk *clock) string {
	t.Helper()
	tok, _, err := c.Get([32]byte{8}, "", "", Session{Subject: "bob", Expires: clk.now().Add(time.Hour).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// exp − iat never exceeds the ttl, and an assertion never outlives its
// session.
func TestLifetimeAtMostTTL(t *testing.T) {
	clk := newClock()
	clk.add(700 * time.Millisecond) // not on a second boundary
	for _, ttl := range []time.Duration{time.Second, 10 * time.Second, 60 * time.Second, 90500 * time.Millisecond, MaxTTL} {
		s := newSigner(t, ttl, newKey(t, "k"))
		c := NewCache(s, CacheConfig{Issuer: "https://p.test", Size: 10, Handle: handleOf, Now: clk.now})
		for i, sessLeft := range []time.Duration{time.Hour, ttl / 2, 1500 * time.Millisecond} {
			tok, _, err := c.Get([32]byte{byte(i)}, "", "", Session{Subject: "u", Expires: clk.now().Add(sessLeft).UnixNano()})
			if err != nil {
				t.Fatal(err)
			}
			var p payload
			if err := json.Unmarshal([]byte(decodePart(t, tok, 1)), &p); err != nil {
				t.Fatal(err)
			}
			if d := time.Duration(p.Expiry-p.IssuedAt) * time.Second; d > ttl || d <= 0 {
				t.Errorf("ttl %s, session left %s: exp − iat = %s", ttl, sessLeft, d)
			}
			if end := clk.now().Add(sessLeft).Unix(); p.Expiry > end && sessLeft > time.Second {
				t.Errorf("ttl %s: exp %d after the session's end %d", ttl, p.Expiry, end)
			}
			if p.IssuedAt != clk.now().Unix() {
				t.Errorf("iat %d, want %d", p.IssuedAt, clk.now().Unix())
			}
		}
	}
	for _, bad := range []time.Duration{0, -time.Second, 999 * time.Millisecond, MaxTTL + time.Second} {
		if _, err := NewSigner([]*Key{newKey(t, "k")}, bad); err == nil {
			t.Errorf("ttl %s accepted", bad)
		}
	}
}

// Rotation: every key is published, the first signs, and an assertion of
// the old key still verifies while the old key is published second.
func TestRotationPublishesBothSignsWithFirst(t *testing.T) {
	clk := newClock()
	old, next := newKey(t, "2026-11"), newKey(t, "2026-12")
	sess := Session{Subject: "u", Expires: clk.now().Add(time.Hour).UnixNano()}
	sign := func(s *Signer) string {
		tok, _, err := NewCache(s, CacheConfig{Issuer: "https://p.test", Size: 10, Handle: handleOf, Now: clk.now}).Get([32]byte{1}, "", "", sess)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	before := newSigner(t, time.Minute, old)
	oldTok := sign(before)
	for _, step := range []struct {
		s       *Signer
		signer  string
		publish []string
	}{
		{newSigner(t, time.Minute, old, next), "2026-11", []string{"2026-11", "2026-12"}},
		{newSigner(t, time.Minute, next, old), "2026-12", []string{"2026-12", "2026-11"}},
	} {
		set := jwks(t, step.s)
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.KeyID)
			if !k.IsPublic() || k.Algorithm != "ES256" || k.Use != "sig" {
				t.Errorf("published key %s: public %v, alg %q, use %q", k.KeyID, k.IsPublic(), k.Algorithm, k.Use)
			}
		}
		if strings.Join(kids, ",") != strings.Join(step.publish, ",") {
			t.Errorf("published %v, want %v", kids, step.publish)
		}
		tok := sign(step.s)
		parsed, _ := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if kid := parsed.Signatures[0].Protected.KeyID; kid != step.signer || step.s.KeyID() != step.signer {
			t.Errorf("signed with %s, want %s", kid, step.signer)
		}
		for name, tk := range map[string]string{"new": tok, "from before the rotation": oldTok} {
			if _, _, err := verify(tk, set, "https://p.test", "https://p.test", clk.now()); err != nil {
				t.Errorf("publishing %v: %s assertion: %v", kids, name, err)
			}
		}
	}
	if _, err := NewSigner([]*Key{old, newKey(t, "2026-11")}, time.Minute); err == nil {
		t.Error("a kid given twice is accepted")
	}
	if strings.Contains(string(newSigner(t, time.Minute, old, next).JWKS()), `"d"`) {
		t.Error("the key set holds a private part")
	}
}

func TestCacheReusesUntilHalfLife(t *testing.T) {
	clk := newClock()
	s := newSigner(t, time.Minute, newKey(t, "k"))
	c := NewCache(s, CacheConfig{Size: 100, Handle: handleOf, Now: clk.now})
	sess := Session{Subject: "u", Expires: clk.now().Add(time.Hour).UnixNano()}
	key := [32]byte{7}
	first, signed, _ := c.Get(key, "https", "portal.test", sess)
	if !signed {
		t.Fatal("first request: not signed")
	}
	clk.add(30*time.Second - 1)
	if tok, signed, _ := c.Get(key, "https", "PORTAL.test", sess); signed || tok != first {
		t.Errorf("just before half its life: signed again (%v)", signed)
	}
	// Another origin of the same session gets its own issuer.
	other, signed, _ := c.Get(key, "https", "other.test", sess)
	if !signed || !strings.Contains(decodePart(t, other, 1), `"iss":"https://other.test"`) {
		t.Errorf("other origin: signed %v, payload %s", signed, decodePart(t, other, 1))
	}
	if _, signed, _ := c.Get(key, "http", "other.test", sess); !signed {
		t.Error("other scheme: reused")
	}
	tok, _, _ := c.Get(key, "https", "portal.test", sess)
	clk.add(30 * time.Second)
	again, signed, _ := c.Get(key, "https", "portal.test", sess)
	if !signed || again == tok {
		t.Errorf("at half its life: reused (signed %v)", signed)
	}
	// Near the session's end, the assertion ends with it and is not
	// signed again before.
	clk.add(time.Hour - 70*time.Second)
	last, signed, _ := c.Get(key, "https", "portal.test", sess)
	if !signed {
		t.Fatal("after an hour: not signed")
	}
	clk.add(8 * time.Second)
	if tok, signed, _ := c.Get(key, "https", "portal.test", sess); signed || tok != last {
		t.Error("an assertion capped by its session's end is signed again before that end")
	}
}

func TestCacheBounded(t *testing.T) {
	clk := newClock()
	c := NewCache(newSigner(t, time.Minute, newKey(t, "k")), CacheConfig{Issuer: "https://p.test", Size: 128, Handle: handleOf, Now: clk.now})
	sess := Session{Subject: "u", Expires: clk.now().Add(time.Hour).UnixNano()}
	for i := range 2000 {
		var key [32]byte
		key[0], key[1] = byte(i), byte(i>>8)
		if _, _, err := c.Get(key, "", "", sess); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Len(); n > 128 {
		t.Errorf("%d assertions cached, size 128", n)
	}
}

func TestParseKeyFormats(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(priv)
	sec1, _ := x509.MarshalECPrivateKey(priv)
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	for name, file := range map[string][]byte{
		"PKCS#8":                 pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"SEC 1":                  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"SEC 1 after parameters": append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...),
	} {
		k, err := ParseKey("k", file)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !k.priv.Equal(priv) {
			t.Errorf("%s: another key", name)
		}
	}

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	for name, tc := range map[string]struct {
		file []byte
		want string
	}{
		"empty":      {nil, "no PEM private key"},
		"not PEM":    {[]byte("hello"), "no PEM private key"},
		"P-384":      {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384der}), "not P-256"},
		"RSA":        {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}), "not an ECDSA"},
		"public key": {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), "not a private key"},
		"encrypted":  {pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "encrypted"},
		"garbage":    {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "parsing"},
	} {
		if _, err := ParseKey("k", tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		}
	}
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	for _, kid := range []string{"", "a b", "a\"b", strings.Repeat("k", 65), "ké"} {
		if _, err := ParseKey(kid, good); err == nil {
			t.Errorf("kid %q accepted", kid)
		}
	}
}

// NewKeyPEM's thumbprint is the RFC 7638 thumbprint go-jose computes.
func TestThumbprint(t *testing.T) {
	p, thumb, err := NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey("k", p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := (&jose.JSONWebKey{Key: &k.priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if thumb != base64.RawURLEncoding.EncodeToString(want) {
		t.Errorf("thumbprint %s, go-jose %s", thumb, base64.RawURLEncoding.EncodeToString(want))
	}
}

// BenchmarkSign is one signature: what a request costs when its session has
// no assertion to reuse.
func BenchmarkSign(b *testing.B) {
	s := newSigner(b, time.Minute, newKey(b, "k"))
	c := Claims{Issuer: "https://portal.test", Audience: "https://portal.test", Subject: "bench-user",
		Claims: map[string]string{"group": "org-a", "role": "hcp"}, SessionID: "abcdefghijklmnopqrstuv", IssuedAt: 1, Expiry: 61}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheGet is a reused assertion, from every CPU at once: what a
// signed-in request normally costs.
func BenchmarkCacheGet(b *testing.B) {
	c := NewCache(newSigner(b, time.Minute, newKey(b, "k")), CacheConfig{Size: 10000, Handle: handleOf})
	sess := Session{Subject: "bench-user", Claims: map[string]string{"group": "org-a"}, Expires: time.Now().Add(time.Hour).UnixNano()}
	keys := make([][32]byte, 1000)
	for i := range keys {
		keys[i][0], keys[i][1] = byte(i), byte(i>>8)
		if _, _, err := c.Get(keys[i], "https", "portal.test:8443", sess); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, signed, err := c.Get(keys[i%len(keys)], "https", "portal.test:8443", sess); err != nil || signed {
				b.Errorf("lookup %d: signed %v, %v", i, signed, err)
				return
			}
		}
	})
}
