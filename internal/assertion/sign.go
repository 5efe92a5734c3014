package assertion

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxTTL is the longest an assertion may live.
const MaxTTL = 5 * time.Minute

// Signer signs assertions with the first of its keys and publishes all of
// them, so that keys rotate without a verifier ever missing one: add the new
// key second, deploy (and wait for the key set's max-age), move it first,
// then later remove the old one.
type Signer struct {
	keys []*Key
	ttl  int64  // seconds
	head string // the signing key's encoded JOSE header, with its '.'
	jwks []byte
}

// Claims are what one assertion says. Times are whole seconds, as in JWTs.
type Claims struct {
	Issuer    string
	Audience  string
	Subject   string
	Claims    map[string]string // nil is sent as {}
	SessionID string
	IssuedAt  int64 // unix seconds
	Expiry    int64 // unix seconds
}

// payload is the JWT claims set, in the order a reader expects.
type payload struct {
	Issuer    string            `json:"iss"`
	Audience  string            `json:"aud"`
	Subject   string            `json:"sub"`
	Claims    map[string]string `json:"claims"`
	SessionID string            `json:"sid"`
	IssuedAt  int64             `json:"iat"`
	Expiry    int64             `json:"exp"`
}

// NewSigner returns a signer of assertions that live ttl (at least a
// second, at most MaxTTL; whole seconds), signed with keys[0].
func NewSigner(keys []*Key, ttl time.Duration) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	if ttl < time.Second || ttl > MaxTTL {
		return nil, fmt.Errorf("ttl %s: want 1s to %s", ttl, MaxTTL)
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k.ID] {
			return nil, fmt.Errorf("key id %q given twice", k.ID)
		}
		seen[k.ID] = true
	}
	head, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{"ES256", keys[0].ID, "JWT"})
	if err != nil {
		return nil, fmt.Errorf("encoding the JOSE header: %w", err)
	}
	s := &Signer{
		keys: keys,
		ttl:  int64(ttl / time.Second),
		head: base64.RawURLEncoding.EncodeToString(head) + ".",
	}
	if s.jwks, err = keySet(keys); err != nil {
		return nil, err
	}
	return s, nil
}

// TTL is how long an assertion lives, in whole seconds.
func (s *Signer) TTL() time.Duration { return time.Duration(s.ttl) * time.Second }

// KeyID is the kid of the signing key.
func (s *Signer) KeyID() string { return s.keys[0].ID }

// Sign returns c as a compact ES256 JWT.
func (s *Signer) Sign(c Claims) (string, error) {
	claims := c.Claims
	if claims == nil {
		claims = map[string]string{}
	}
	body, err := json.Marshal(payload{c.Issuer, c.Audience, c.Subject, claims, c.SessionID, c.IssuedAt, c.Expiry})
	if err != nil {
		return "", fmt.Errorf("encoding the assertion: %w", err)
	}
	enc := base64.RawURLEncoding
	// header.payload.signature, the signature 86 characters (64 bytes).
	buf := make([]byte, 0, len(s.head)+enc.EncodedLen(len(body))+1+86)
	buf = append(buf, s.head...)
	buf = enc.AppendEncode(buf, body)
	digest := sha256.Sum256(buf)
	r, sv, err := ecdsa.Sign(rand.Reader, s.keys[0].priv, digest[:])
	if err != nil {
		return "", fmt.Errorf("signing the assertion: %w", err)
	}
	// RFC 7518 §3.4: R and S as 32-byte big-endian integers, concatenated.
	var sig [64]byte
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig[:])
	return string(buf), nil
}

// JWKS is the JSON Web Key Set of every key, the signing key first: public
// halves only.
func (s *Signer) JWKS() []byte { return s.jwks }

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

func keySet(keys []*Key) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		x, y := k.coordinates()
		set.Keys = append(set.Keys, jwk{Kty: "EC", Crv: "P-256", X: x, Y: y, Kid: k.ID, Use: "sig", Alg: "ES256"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encoding the key set: %w", err)
	}
	return b, nil
}
