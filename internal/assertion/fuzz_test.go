package assertion

import (
	"crypto/elliptic"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// FuzzParseKey feeds ParseKey arbitrary files: it never panics, and what it
// accepts is a P-256 key.
func FuzzParseKey(f *testing.F) {
	good, _, err := NewKeyPEM()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, file []byte) {
		k, err := ParseKey("k", file)
		if err != nil {
			return
		}
		if k.priv.Curve != elliptic.P256() {
			t.Fatalf("accepted a key on %s", k.priv.Curve.Params().Name)
		}
		if _, err := k.priv.ECDH(); err != nil {
			t.Fatalf("accepted an unusable key: %v", err)
		}
	})
}

// FuzzAssertionRoundTrip signs whatever a session may hold (valid UTF-8, as
// the gateway's user id and claim rules require) and checks that go-jose
// verifies it and reads back exactly what was signed.
func FuzzAssertionRoundTrip(f *testing.F) {
	s := newSigner(f, time.Minute, newKey(f, "k"))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		f.Fatal(err)
	}
	f.Add("dr.jones", "group", "org-a", "https://portal.test:8443", "portal-app")
	f.Add("é😀\u2028<script>", "k.e-y_", "\"\\\x00", "http://[::1]:8080", "")
	f.Fuzz(func(t *testing.T, sub, key, val, iss, aud string) {
		for _, s := range []string{sub, key, val, iss, aud} {
			if !utf8.ValidString(s) {
				return
			}
		}
		c := Claims{Issuer: iss, Audience: aud, Subject: sub, Claims: map[string]string{key: val}, SessionID: "sid", IssuedAt: 1000, Expiry: 1060}
		tok, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("go-jose cannot parse %q: %v", tok, err)
		}
		var std jwt.Claims
		var extra custom
		if err := parsed.Claims(set, &std, &extra); err != nil {
			t.Fatalf("go-jose refuses %q: %v", tok, err)
		}
		if std.Subject != sub || std.Issuer != iss || len(std.Audience) != 1 || std.Audience[0] != aud ||
			len(extra.Claims) != 1 || extra.Claims[key] != val || extra.SID != "sid" ||
			std.IssuedAt.Time().Unix() != 1000 || std.Expiry.Time().Unix() != 1060 {
			t.Fatalf("signed %+v, read back %+v %+v", c, std, extra)
		}
	})
}
