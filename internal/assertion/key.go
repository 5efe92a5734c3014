// Package assertion makes the signed identity assertions ssogate sends to the
// upstream: ES256 JWTs (RFC 7519, RFC 7518 §3.4) signed with P-256 keys, the
// JWK Set (RFC 7517) that publishes their public halves, and a cache that
// reuses one signed assertion per session until shortly before it expires.
//
// It imports nothing of Caddy: the caddymodule package loads the key files
// and calls it on the request path.
package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
)

// Key is one P-256 signing key and the key id ("kid") it is published under.
type Key struct {
	ID   string
	priv *ecdsa.PrivateKey
}

// maxKeyIDLen bounds a kid: it goes into every assertion's header.
const maxKeyIDLen = 64

// ParseKey reads the first private key in a PEM file: PKCS#8 ("PRIVATE
// KEY", what `caddy ssogate assertion-key` and `openssl genpkey` write) or
// SEC 1 ("EC PRIVATE KEY", what `openssl ecparam -genkey` writes, after an
// "EC PARAMETERS" block that is skipped). The key must be on P-256.
func ParseKey(kid string, pemBytes []byte) (*Key, error) {
	if err := checkKeyID(kid); err != nil {
		return nil, err
	}
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key in it (want a P-256 key as PRIVATE KEY or EC PRIVATE KEY)")
		}
		var (
			parsed any
			err    error
		)
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			parsed, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted: the gateway needs it unencrypted (keep the file mode 0600)")
		default:
			return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY or EC PRIVATE KEY)", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the %s block: %w", block.Type, err)
		}
		priv, ok := parsed.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the key is a %T, not an ECDSA P-256 key", parsed)
		}
		if priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("the key is on %s, not P-256 (ES256 needs P-256)", priv.Curve.Params().Name)
		}
		return &Key{ID: kid, priv: priv}, nil
	}
}

// checkKeyID refuses a kid that would not survive a header, a log line or a
// Caddyfile token unchanged.
func checkKeyID(kid string) error {
	if kid == "" || len(kid) > maxKeyIDLen {
		return fmt.Errorf("key id %q: want 1 to %d characters", kid, maxKeyIDLen)
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("key id %q: only letters, digits, '-', '_' and '.'", kid)
		}
	}
	return nil
}

// NewKeyPEM makes a new P-256 private key and returns it as a PKCS#8 PEM
// block, and the RFC 7638 thumbprint of its public key (base64url), which
// makes a good kid.
func NewKeyPEM() (pemBytes []byte, thumbprint string, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generating a P-256 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("encoding the key: %w", err)
	}
	k := &Key{priv: priv}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), k.Thumbprint(), nil
}

// Thumbprint is the RFC 7638 JWK thumbprint of the key's public half,
// base64url without padding.
func (k *Key) Thumbprint() string {
	x, y := k.coordinates()
	// RFC 7638 §3.2: the required members in lexicographic order, no
	// white space.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// coordinates are the public point's x and y as JWK members: 32 bytes each,
// big-endian, base64url.
func (k *Key) coordinates() (x, y string) {
	pub, err := k.priv.PublicKey.ECDH()
	if err != nil {
		// Unreachable: ParseKey and NewKeyPEM only make P-256 keys.
		panic("assertion: " + err.Error())
	}
	raw := pub.Bytes() // 0x04 || X || Y
	return base64.RawURLEncoding.EncodeToString(raw[1:33]), base64.RawURLEncoding.EncodeToString(raw[33:65])
}
