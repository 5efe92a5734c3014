// Package signedtoken encodes and checks signed sign-in tokens, the kind a
// backend that cannot reach the gateway's store mints on its own.
//
// A token is "v1.<payload>.<sig>": payload is the JSON [Claims], base64url
// without padding; sig is the HMAC-SHA256 of the ASCII bytes "v1.<payload>",
// also base64url without padding, keyed by the secret named by the payload's
// "kid". Several secrets can be live at once so that they can be rotated:
// add the new kid, move the minters to it, then remove the old one, which
// invalidates every token still signed with it.
//
//	keys, err := signedtoken.NewKeys(map[string][]byte{"2025-06": secret})
//	tok, err := keys.Sign(signedtoken.Claims{
//		KeyID: "2025-06", Subject: "user-42", ID: uuid,
//		Expiry: time.Now().Add(30 * time.Second).Unix(),
//	})
//	claims, err := keys.Verify(tok, time.Now(), 30*time.Second)
//
// Single use is not enforced here: the gateway does it with the token's jti.
package signedtoken

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ssogate/ssogate/internal/token"
)

// The errors Verify wraps, so the gateway can tell in its audit log why a token
// was refused. The user sees the same 403 for all of them.
var (
	// ErrMalformed: the token is not v1 syntax, or its payload is not the strict
	// JSON this package writes, or a required claim is missing or invalid.
	ErrMalformed = errors.New("signedtoken: malformed token")
	// ErrUnknownKey: the payload names a kid that is not configured, for
	// instance one rotated out.
	ErrUnknownKey = errors.New("signedtoken: unknown key id")
	// ErrBadSignature: the HMAC does not match the named key's secret.
	ErrBadSignature = errors.New("signedtoken: bad signature")
	// ErrExpired: exp is not after the time of the check.
	ErrExpired = errors.New("signedtoken: token expired")
	// ErrTooLong: exp lies further ahead than the maximum lifetime, so the
	// minter would otherwise choose how long its links stay usable.
	ErrTooLong = errors.New("signedtoken: token lifetime exceeds maximum")
)

const (
	// Version is the first dot-separated part of every token this package
	// reads or writes.
	Version = "v1"
	// MinSecretLen is the shortest secret NewKeys accepts: 256 bits, the
	// output size of SHA-256, below which HMAC-SHA256 is weaker than it could be.
	MinSecretLen = 32
	// MaxIDLen bounds the jti, which the gateway stores as part of a key name.
	MaxIDLen = 128
)

var b64 = base64.RawURLEncoding.Strict()

// Claims is the token's payload.
type Claims struct {
	// KeyID names the secret that signs the token.
	KeyID string `json:"kid"`
	// Subject is the user id the session will be for. Required.
	Subject string `json:"sub"`
	// Expiry is when the token stops being redeemable, in unix seconds. Required.
	Expiry int64 `json:"exp"`
	// ID makes the token single use: the gateway refuses a second redemption
	// of the same jti. Required, 1 to 128 characters of [A-Za-z0-9_.:-].
	ID string `json:"jti"`
	// IssuedAt is informational (audit logs), in unix seconds.
	IssuedAt int64 `json:"iat,omitempty"`
	// Redirect is where the user goes after sign-in; the gateway checks it
	// against its redirect rules like any other target.
	Redirect string `json:"redirect,omitempty"`
	// Claims are passed to the portal in the claims header.
	Claims map[string]string `json:"claims,omitempty"`
}

// Keys holds the HMAC secrets by key id. It never changes after NewKeys, so
// one value may be used from many goroutines; rotating means building a new one.
type Keys struct {
	secrets map[string][]byte
}

// NewKeys copies secrets, so that later changes by the caller cannot alter
// which tokens verify. It refuses an empty set, an empty kid and any secret
// shorter than MinSecretLen bytes.
func NewKeys(secrets map[string][]byte) (*Keys, error) {
	if len(secrets) == 0 {
		return nil, errors.New("signedtoken: no keys")
	}
	k := &Keys{secrets: make(map[string][]byte, len(secrets))}
	for kid, s := range secrets {
		if kid == "" {
			return nil, errors.New("signedtoken: empty key id")
		}
		if len(s) < MinSecretLen {
			// The kid is the operator's own configuration, safe to name; the
			// secret is not.
			return nil, fmt.Errorf("signedtoken: secret for key id %q is %d bytes, need at least %d", kid, len(s), MinSecretLen)
		}
		k.secrets[kid] = bytes.Clone(s)
	}
	return k, nil
}

// Sign returns the token for c, refusing claims that Verify would reject for
// their content (the expiry is not compared with any clock here).
func (k *Keys) Sign(c Claims) (string, error) {
	secret, ok := k.secrets[c.KeyID]
	if !ok {
		return "", fmt.Errorf("%w %.64q", ErrUnknownKey, c.KeyID)
	}
	if err := c.check(); err != nil {
		return "", err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("signedtoken: encoding claims: %w", err)
	}
	signed := Version + "." + b64.EncodeToString(payload)
	tok := signed + "." + b64.EncodeToString(mac(secret, signed))
	if len(tok) > token.MaxSignedLen {
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(tok), token.MaxSignedLen)
	}
	return tok, nil
}

// Verify checks tok at time now and returns its claims. maxTTL is the longest
// lifetime the gateway allows (its token_ttl): a token whose exp lies more than
// maxTTL after now is refused, so clock skew between minter and gateway counts
// against the minter. The error wraps one of the Err values of this package.
//
// The order of the checks matters, because the payload is attacker-controlled
// until the HMAC has been checked:
//
//  1. Syntax only: length, "v1", exactly three non-empty base64url parts,
//     canonical base64 (Strict, so no two encodings of one signature exist).
//  2. The payload is decoded and parsed just enough to read "kid". That is
//     the only thing taken from it before the HMAC check, and it is safe: the
//     kid can only select one of the configured secrets, the HMAC covers the
//     payload bytes that carry the kid, and encoding/json is memory safe on
//     hostile input bounded to 2048 bytes.
//  3. The HMAC of the token's bytes up to the last dot is compared with
//     hmac.Equal, in constant time.
//  4. Only now is the payload parsed strictly and its claims believed: no
//     unknown, duplicate or differently cased keys, string claim values,
//     integer times, valid UTF-8, and the kid read here must be the one used.
//  5. Required claims, then exp against now and maxTTL.
func (k *Keys) Verify(tok string, now time.Time, maxTTL time.Duration) (Claims, error) {
	// Classify bounds the length and checks the characters of every part,
	// which also keeps out the '\r' and '\n' that base64 decoders skip.
	if token.Classify(tok) != token.Signed || !strings.HasPrefix(tok, Version+".") {
		return Claims{}, fmt.Errorf("%w: syntax", ErrMalformed)
	}
	rest := tok[len(Version)+1:]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 || strings.IndexByte(rest[dot+1:], '.') >= 0 {
		return Claims{}, fmt.Errorf("%w: want 3 parts", ErrMalformed)
	}
	signed, sigText := tok[:len(Version)+1+dot], rest[dot+1:]
	payload, err := b64.DecodeString(rest[:dot])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload encoding", ErrMalformed)
	}
	sig, err := b64.DecodeString(sigText)
	if err != nil || len(sig) != sha256.Size {
		return Claims{}, fmt.Errorf("%w: signature encoding", ErrMalformed)
	}

	var head struct {
		KeyID string `json:"kid"`
	}
	if err := json.Unmarshal(payload, &head); err != nil || head.KeyID == "" {
		return Claims{}, fmt.Errorf("%w: no kid", ErrMalformed)
	}
	secret, ok := k.secrets[head.KeyID]
	if !ok {
		// %.64q: the kid is attacker-chosen, so it is quoted and cut short
		// before it can reach a log line.
		return Claims{}, fmt.Errorf("%w %.64q", ErrUnknownKey, head.KeyID)
	}
	if !hmac.Equal(mac(secret, signed), sig) {
		return Claims{}, ErrBadSignature
	}

	c, err := decodeStrict(payload)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.KeyID != head.KeyID {
		// Unreachable while both parsers agree; kept so that a difference
		// between them can never let one secret vouch for another kid.
		return Claims{}, fmt.Errorf("%w: ambiguous kid", ErrMalformed)
	}
	if err := c.check(); err != nil {
		return Claims{}, err
	}
	if err := checkExpiry(c.Expiry, now, maxTTL); err != nil {
		return Claims{}, err
	}
	return c, nil
}

func mac(secret []byte, signed string) []byte {
	h := hmac.New(sha256.New, secret)
	_, _ = io.WriteString(h, signed) // a hash never fails to write
	return h.Sum(nil)
}

// check enforces the claims every token must carry, whatever the clock says.
func (c *Claims) check() error {
	switch {
	case c.KeyID == "":
		return fmt.Errorf("%w: no kid", ErrMalformed)
	case c.Subject == "":
		return fmt.Errorf("%w: no sub", ErrMalformed)
	case c.Expiry == 0:
		return fmt.Errorf("%w: no exp", ErrMalformed)
	case !validID(c.ID):
		return fmt.Errorf("%w: jti missing or not 1..%d of [A-Za-z0-9_.:-]", ErrMalformed, MaxIDLen)
	}
	return nil
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '_', c == '-', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// checkExpiry works in integers: time.Unix overflows for exp near the int64
// limits, and such an exp must still be reported as too long, not expired.
func checkExpiry(exp int64, now time.Time, maxTTL time.Duration) error {
	nowSec := now.Unix()
	// exp is whole seconds, so exp <= now exactly when exp <= floor(now).
	if exp <= nowSec {
		return ErrExpired
	}
	maxTTL = max(maxTTL, 0)
	// The unsigned difference is exact: it is positive and below 2^64.
	ahead := uint64(exp) - uint64(nowSec)
	if ahead > uint64(maxTTL/time.Second)+1 {
		return fmt.Errorf("%w: exp %ds ahead, max %s", ErrTooLong, ahead, maxTTL)
	}
	left := time.Duration(ahead)*time.Second - time.Duration(now.Nanosecond())
	if left > maxTTL {
		return fmt.Errorf("%w: exp %s ahead, max %s", ErrTooLong, left, maxTTL)
	}
	return nil
}

// decodeStrict parses the payload token by token, because json.Unmarshal
// accepts duplicate keys (last one wins), matches names case-insensitively
// and reads null as a zero value: all ways for two parsers of one payload to
// disagree.
func decodeStrict(payload []byte) (Claims, error) {
	var c Claims
	// encoding/json would silently turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(payload) {
		return c, errors.New("payload is not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return c, err
	}
	seen := make(map[string]bool, 7)
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return c, err
		}
		if seen[key] {
			return c, fmt.Errorf("duplicate field %q", key)
		}
		seen[key] = true
		switch key {
		case "kid":
			c.KeyID, err = stringToken(dec)
		case "sub":
			c.Subject, err = stringToken(dec)
		case "jti":
			c.ID, err = stringToken(dec)
		case "redirect":
			c.Redirect, err = stringToken(dec)
		case "exp":
			c.Expiry, err = intToken(dec)
		case "iat":
			c.IssuedAt, err = intToken(dec)
		case "claims":
			c.Claims, err = claimsObject(dec)
		default:
			return c, fmt.Errorf("unknown field %.64q", key)
		}
		if err != nil {
			return c, fmt.Errorf("field %q: %w", key, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return c, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("data after the JSON object")
	}
	return c, nil
}

func claimsObject(dec *json.Decoder) (map[string]string, error) {
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for dec.More() {
		k, err := stringToken(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate claim %.64q", k)
		}
		v, err := stringToken(dec)
		if err != nil {
			return nil, fmt.Errorf("claim %.64q: %w", k, err)
		}
		m[k] = v
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	return m, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q", want)
	}
	return nil
}

func stringToken(dec *json.Decoder) (string, error) {
	t, err := dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", errors.New("want a string")
	}
	return s, nil
}

func intToken(dec *json.Decoder) (int64, error) {
	t, err := dec.Token()
	if err != nil {
		return 0, err
	}
	n, ok := t.(json.Number)
	if !ok {
		return 0, errors.New("want an integer")
	}
	// ParseInt also refuses fractions and exponents, which json.Number allows.
	return strconv.ParseInt(string(n), 10, 64)
}
