package signedtoken

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify arbitrary tokens. A random token almost never has a
// valid HMAC, which would leave the strict JSON parser unexplored, so when
// resign is set the fuzzer's payload is signed with the right secret first and
// the mutations land on the parser instead.
//
// Invariants: Verify never panics; it returns exactly one sentinel error or
// claims that satisfy every rule; an accepted token is the canonical encoding
// of its payload and signature (re-signing the payload reproduces it); the same
// token is refused when the kid's secret is different; and the accepted claims
// survive a Sign/Verify round trip.
func FuzzVerify(f *testing.F) {
	k := testKeys(f)
	wrong, err := NewKeys(map[string][]byte{"a": secretB, "b": secretA})
	if err != nil {
		f.Fatal(err)
	}
	good := mustSign(f, k, validClaims())
	dot := strings.LastIndexByte(good, '.')
	seeds := []string{
		good,
		mustSign(f, k, Claims{KeyID: "b", Subject: "u", Expiry: now.Unix() + 1, ID: "j"}),
		good + ".AAAA",
		good[:dot],
		good[:dot] + ".AAAA",
		good[:dot] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 32)),
		good + "=",
		"v1..",
		"v1.e30.e30",
		"",
		forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","claims":{"g":"x"}}`, secretA),
		forge(`{"kid":"a","sub":"u","sub":"v","exp":1750000010,"jti":"j"}`, secretA),
		forge(`{"kid":"a","sub":"u","exp":1750000010,"jti":"j","claims":{"n":1}}`, secretA),
		forge(`{"kid":"a","sub":"u","exp":1.75e9,"jti":"j"}`, secretA),
		forge(`{"kid":"zz","sub":"u","exp":1750000010,"jti":"j"}`, secretA),
		forge(`{"KID":"a","sub":"u","exp":1750000010,"jti":"j"}`, secretA),
		forge(`{"kid":"a","sub":"\u00e9\ud83d\ude00","exp":1750000010,"jti":"j","redirect":"/\u003cx\u003e"}`, secretA),
		forge(`{"kid":"a","sub":"u","exp":9223372036854775807,"jti":"j"}`, secretA),
		forge(`{"kid":"a"}`, secretA),
	}
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	sentinels := []error{ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired, ErrTooLong}

	f.Fuzz(func(t *testing.T, tok string, resign bool) {
		if resign {
			// Sign with whatever secret the payload's kid names, as a
			// minter holding that secret would.
			if secret, ok := k.secrets[kidOf(tok)]; ok {
				tok = resignWith(tok, secret)
			}
		}
		c, err := k.Verify(tok, now, maxTTL)
		if err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v matches %d sentinels", err, n)
			}
			if !reflect.DeepEqual(c, Claims{}) {
				t.Fatalf("claims returned with error: %+v", c)
			}
			return
		}

		if len(tok) > 2048 || strings.Count(tok, ".") != 2 || !strings.HasPrefix(tok, "v1.") {
			t.Fatalf("accepted bad syntax %q", tok)
		}
		if c.Subject == "" || !validID(c.ID) || c.Expiry <= now.Unix() || c.Expiry > now.Add(maxTTL).Unix() {
			t.Fatalf("accepted invalid claims %+v", c)
		}
		// Re-signing the payload as presented must reproduce the token: the
		// signature is genuine and has a single encoding.
		if got := resignWith(tok, k.secrets[c.KeyID]); got != tok {
			t.Fatalf("accepted token is not its own signature:\n got %q\nwant %q", tok, got)
		}
		if _, err := wrong.Verify(tok, now, maxTTL); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("wrong secret: %v", err)
		}
		tok2, err := k.Sign(c)
		if err != nil {
			t.Fatalf("Sign(accepted claims %+v): %v", c, err)
		}
		c2, err := k.Verify(tok2, now, maxTTL)
		if err != nil {
			t.Fatalf("round trip of accepted claims: %v", err)
		}
		if len(c.Claims) == 0 {
			// Sign omits an empty claims object, which Verify reads as nil.
			c.Claims = nil
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed claims:\n%+v\n%+v", c, c2)
		}
	})
}

// kidOf reads the kid the way Verify does before the HMAC check.
func kidOf(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) < 2 {
		return ""
	}
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var head struct {
		KeyID string `json:"kid"`
	}
	_ = json.Unmarshal(p, &head)
	return head.KeyID
}

// resignWith replaces the signature of tok, everything after its last dot,
// with the HMAC of the rest under secret.
func resignWith(tok string, secret []byte) string {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return tok
	}
	return tok[:i] + "." + base64.RawURLEncoding.EncodeToString(mac(secret, tok[:i]))
}
