package signedtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	secretA = []byte("0123456789abcdef0123456789abcdef")
	secretB = []byte("fedcba9876543210fedcba9876543210")
	// now is a fixed clock with a fractional second, so that the second
	// rounding in the expiry checks is exercised.
	now    = time.Unix(1_750_000_000, 500_000_000)
	maxTTL = 30 * time.Second
)

func testKeys(t testing.TB) *Keys {
	t.Helper()
	k, err := NewKeys(map[string][]byte{"a": secretA, "b": secretB})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func validClaims() Claims {
	return Claims{
		KeyID:    "a",
		Subject:  "user-42",
		Expiry:   now.Unix() + 20,
		ID:       "jti-0001:x.y_z",
		IssuedAt: now.Unix(),
		Redirect: "/patients/7#/tab",
		Claims:   map[string]string{"group": "org-a", "role": "hcp"},
	}
}

// forge builds a token from a raw payload, signed with secret, bypassing the
// checks Sign makes, so tests can present payloads Sign would refuse.
func forge(payload string, secret []byte) string {
	signed := "v1." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func mustSign(t testing.TB, k *Keys, c Claims) string {
	t.Helper()
	tok, err := k.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	k := testKeys(t)
	want := validClaims()
	tok := mustSign(t, k, want)
	got, err := k.Verify(tok, now, maxTTL)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	// Minimal claims, other kid.
	min := Claims{KeyID: "b", Subject: "u", Expiry: now.Unix() + 1, ID: "j"}
	got, err = k.Verify(mustSign(t, k, min), now, maxTTL)
	if err != nil || !reflect.DeepEqual(got, min) {
		t.Fatalf("minimal: got %+v, %v", got, err)
	}
}

func TestVerifyErrors(t *testing.T) {
	k := testKeys(t)
	good := mustSign(t, k, validClaims())
	dot := strings.LastIndexByte(good, '.')
	signed, sig := good[:dot], good[dot+1:]

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	with := func(f func(*Claims)) string {
		c := validClaims()
		f(&c)
		// Sign refuses some of these claims, so build them by hand.
		return forge(mustJSON(t, c), secretA)
	}
	exp := func(d time.Duration) string {
		return with(func(c *Claims) { c.Expiry = now.Add(d).Unix() })
	}

	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"forged signature", signed + "." + flip(sig, 3), ErrBadSignature},
		{"signature of zeros", signed + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 32)), ErrBadSignature},
		{"payload tampered", forgeKeepSig(t, good, func(s string) string {
			return strings.Replace(s, "user-42", "admin", 1)
		}), ErrBadSignature},
		{"signed with the other kid's secret", forge(mustJSON(t, validClaims()), secretB), ErrBadSignature},
		{"kid switched, signature kept", forgeKeepSig(t, good, func(s string) string {
			return strings.Replace(s, `"kid":"a"`, `"kid":"b"`, 1)
		}), ErrBadSignature},
		{"unknown kid", with(func(c *Claims) { c.KeyID = "zzz" }), ErrUnknownKey},
		{"no kid", forge(`{"sub":"u","exp":1750000010,"jti":"j"}`, secretA), ErrMalformed},
		{"expired", exp(-time.Second), ErrExpired},
		{"exp is now (second)", with(func(c *Claims) { c.Expiry = now.Unix() }), ErrExpired},
		{"exp too far", exp(maxTTL + time.Second), ErrTooLong},
		{"exp far far away", with(func(c *Claims) { c.Expiry = 1<<63 - 1 }), ErrTooLong},
		{"exp very negative", with(func(c *Claims) { c.Expiry = -1 << 63 }), ErrExpired},
		{"missing sub", with(func(c *Claims) { c.Subject = "" }), ErrMalformed},
		{"missing jti", with(func(c *Claims) { c.ID = "" }), ErrMalformed},
		{"missing exp", with(func(c *Claims) { c.Expiry = 0 }), ErrMalformed},
		{"jti bad char", with(func(c *Claims) { c.ID = "a/b" }), ErrMalformed},
		{"jti too long", with(func(c *Claims) { c.ID = strings.Repeat("j", MaxIDLen+1) }), ErrMalformed},
		{"unknown field", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","admin":true}`, secretA), ErrMalformed},
		{"field in other case", forge(`{"kid":"a","SUB":"u","exp":1750000010,"jti":"j"}`, secretA), ErrMalformed},
		{"duplicate field", forge(`{"kid":"a","sub":"u","sub":"admin","exp":1750000010,"jti":"j"}`, secretA), ErrMalformed},
		{"duplicate kid", forge(`{"kid":"b","kid":"a","sub":"u","exp":1750000010,"jti":"j"}`, secretA), ErrMalformed},
		{"null sub", forge(`{"kid":"a","sub":null,"exp":1750000010,"jti":"j"}`, secretA), ErrMalformed},
		{"numeric claim", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","claims":{"n":1}}`, secretA), ErrMalformed},
		{"null claim", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","claims":{"n":null}}`, secretA), ErrMalformed},
		{"nested claim", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","claims":{"n":{}}}`, secretA), ErrMalformed},
		{"duplicate claim", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","claims":{"g":"a","g":"b"}}`, secretA), ErrMalformed},
		{"claims array", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","claims":[]}`, secretA), ErrMalformed},
		{"exp as string", forge(`{"kid":"a","sub":"u","exp":"1750000010","jti":"j"}`, secretA), ErrMalformed},
		{"exp fractional", forge(`{"kid":"a","sub":"u","exp":1750000010.5,"jti":"j"}`, secretA), ErrMalformed},
		{"exp exponent", forge(`{"kid":"a","sub":"u","exp":1.75e9,"jti":"j"}`, secretA), ErrMalformed},
		{"exp overflow", forge(`{"kid":"a","sub":"u","exp":99999999999999999999,"jti":"j"}`, secretA), ErrMalformed},
		{"trailing data", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j"} {}`, secretA), ErrMalformed},
		{"trailing comma", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j",}`, secretA), ErrMalformed},
		{"not an object", forge(`["kid","a"]`, secretA), ErrMalformed},
		{"invalid UTF-8", forge("{\"kid\":\"a\",\"sub\":\"u\xff\",\"exp\":1750000010,\"jti\":\"j\"}", secretA), ErrMalformed},
		{"payload not JSON", forge(`kid=a`, secretA), ErrMalformed},
		{"padding", good + "=", ErrMalformed},
		{"padded payload", signed + "=." + sig, ErrMalformed},
		{"std base64 plus", signed[:5] + "+" + signed[6:] + "." + sig, ErrMalformed},
		{"std base64 slash", signed + "." + sig[:5] + "/" + sig[6:], ErrMalformed},
		{"newline inside", signed[:10] + "\n" + signed[10:] + "." + sig, ErrMalformed},
		{"non-canonical base64", signed + "." + nonCanonical(sig), ErrMalformed},
		{"short signature", signed + "." + sig[:20], ErrMalformed},
		{"too long", forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","redirect":"/`+strings.Repeat("x", 2000)+`"}`, secretA), ErrMalformed},
		{"extra dot part", good + ".AAAA", ErrMalformed},
		{"empty part", "v1.." + sig, ErrMalformed},
		{"two parts", signed, ErrMalformed},
		{"other version", "v2" + good[2:], ErrMalformed},
		{"no version", good[3:], ErrMalformed},
		{"empty", "", ErrMalformed},
	}
	sentinels := []error{ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired, ErrTooLong}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := k.Verify(c.tok, now, maxTTL)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !reflect.DeepEqual(got, Claims{}) {
				t.Errorf("claims returned with an error: %+v", got)
			}
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == c.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, !(s == c.want))
				}
			}
			if strings.Contains(err.Error(), c.tok) && c.tok != "" {
				t.Errorf("error contains the token: %v", err)
			}
		})
	}
}

// forgeKeepSig decodes good's payload, edits it and re-encodes it, keeping
// the original signature.
func forgeKeepSig(t *testing.T, good string, edit func(string) string) string {
	t.Helper()
	parts := strings.Split(good, ".")
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	edited := edit(string(p))
	if edited == string(p) {
		t.Fatal("edit changed nothing")
	}
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(edited)) + "." + parts[2]
}

// nonCanonical sets the unused low bits of the last base64 character, which a
// lenient decoder would ignore: 32 bytes leave 2 spare bits in 43 characters.
func nonCanonical(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i^1])
}

func mustJSON(t *testing.T, c Claims) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExpiryBounds(t *testing.T) {
	k := testKeys(t)
	c := validClaims()
	// now is x.5s: exp = x+30 is 29.5s ahead, within 30s; x+31 is 30.5s, not.
	c.Expiry = now.Unix() + 30
	if _, err := k.Verify(mustSign(t, k, c), now, maxTTL); err != nil {
		t.Errorf("29.5s ahead: %v", err)
	}
	c.Expiry = now.Unix() + 31
	if _, err := k.Verify(mustSign(t, k, c), now, maxTTL); !errors.Is(err, ErrTooLong) {
		t.Errorf("30.5s ahead: %v", err)
	}
	// Exactly maxTTL ahead is allowed (exp - now <= maxTTL).
	whole := time.Unix(now.Unix(), 0)
	c.Expiry = whole.Unix() + 30
	if _, err := k.Verify(mustSign(t, k, c), whole, maxTTL); err != nil {
		t.Errorf("exactly 30s ahead: %v", err)
	}
	// Half a second left is still valid.
	c.Expiry = now.Unix() + 1
	if _, err := k.Verify(mustSign(t, k, c), now, maxTTL); err != nil {
		t.Errorf("0.5s left: %v", err)
	}
	// A zero or negative maxTTL admits nothing.
	for _, m := range []time.Duration{0, -time.Hour} {
		if _, err := k.Verify(mustSign(t, k, c), now, m); !errors.Is(err, ErrTooLong) {
			t.Errorf("maxTTL %v: %v", m, err)
		}
	}
}

func TestRotation(t *testing.T) {
	old := testKeys(t)
	tokA := mustSign(t, old, validClaims())
	// Rotate: "a" removed, "c" added.
	rotated, err := NewKeys(map[string][]byte{"b": secretB, "c": []byte(strings.Repeat("c", 32))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rotated.Verify(tokA, now, maxTTL); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("rotated-out kid: %v", err)
	}
	c := validClaims()
	c.KeyID = "b"
	if _, err := rotated.Verify(mustSign(t, old, c), now, maxTTL); err != nil {
		t.Errorf("kid kept across rotation: %v", err)
	}
	// Same kid, new secret: old tokens fail their signature.
	replaced, err := NewKeys(map[string][]byte{"a": secretB})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replaced.Verify(tokA, now, maxTTL); !errors.Is(err, ErrBadSignature) {
		t.Errorf("replaced secret: %v", err)
	}
}

func TestNewKeys(t *testing.T) {
	short := []byte(strings.Repeat("s", MinSecretLen-1))
	for name, in := range map[string]map[string][]byte{
		"nil":          nil,
		"empty":        {},
		"empty kid":    {"": secretA},
		"short secret": {"a": secretA, "b": short},
		"nil secret":   {"a": nil},
	} {
		if _, err := NewKeys(in); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), string(short)) {
			t.Errorf("%s: error shows the secret: %v", name, err)
		}
	}
	// The caller's map and slices are copied.
	s := []byte(string(secretA))
	m := map[string][]byte{"a": s}
	k, err := NewKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	tok := mustSign(t, k, validClaims())
	s[0] ^= 1
	delete(m, "a")
	if _, err := k.Verify(tok, now, maxTTL); err != nil {
		t.Errorf("after caller changed its map: %v", err)
	}
}

func TestSignRefuses(t *testing.T) {
	k := testKeys(t)
	for name, f := range map[string]func(*Claims){
		"unknown kid": func(c *Claims) { c.KeyID = "zzz" },
		"no kid":      func(c *Claims) { c.KeyID = "" },
		"no sub":      func(c *Claims) { c.Subject = "" },
		"no exp":      func(c *Claims) { c.Expiry = 0 },
		"bad jti":     func(c *Claims) { c.ID = "has space" },
		"too long":    func(c *Claims) { c.Redirect = "/" + strings.Repeat("x", 2048) },
	} {
		c := validClaims()
		f(&c)
		if tok, err := k.Sign(c); err == nil {
			t.Errorf("%s: signed %q", name, tok)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := testKeys(b)
	tok := mustSign(b, k, validClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(tok, now, maxTTL); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyBadSignature(b *testing.B) {
	k := testKeys(b)
	tok := forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j"}`, secretB)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(tok, now, maxTTL); err == nil {
			b.Fatal("accepted")
		}
	}
}
