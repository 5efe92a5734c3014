// Package token holds the syntax of sign-in tokens and session ids, how they are
// made, and how they are hashed before they reach a store.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Kind tells how a presented token must be redeemed.
type Kind int

const (
	// Invalid tokens are refused before any store is asked.
	Invalid Kind = iota
	// Opaque tokens are random strings whose record lives in the store.
	Opaque
	// Signed tokens carry their own claims and an HMAC (see package signedtoken).
	Signed
)

const (
	// MinOpaqueLen and MaxOpaqueLen bound an opaque token: 16 characters of
	// base64url carry 96 bits, but the SPEC asks 128 bits of entropy of the
	// minter; the gateway only checks the syntax.
	MinOpaqueLen = 16
	MaxOpaqueLen = 128
	// MaxSignedLen bounds a signed token, payload and signature included.
	MaxSignedLen = 2048
	// SignedPrefix starts every signed token of format version 1.
	SignedPrefix = "v1."
)

// Classify tells what kind of token s is, looking only at its syntax.
func Classify(s string) Kind {
	if strings.HasPrefix(s, SignedPrefix) {
		if len(s) > MaxSignedLen {
			return Invalid
		}
		parts := strings.Split(s[len(SignedPrefix):], ".")
		if len(parts) < 2 {
			return Invalid
		}
		for _, p := range parts {
			if p == "" || !URLSafe(p) {
				return Invalid
			}
		}
		return Signed
	}
	if len(s) < MinOpaqueLen || len(s) > MaxOpaqueLen || !URLSafe(s) {
		return Invalid
	}
	return Opaque
}

// URLSafe reports whether s holds only base64url characters [A-Za-z0-9_-].
func URLSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// New returns 256 random bits, base64url without padding (43 characters). It is
// used for opaque tokens and session ids alike.
func New() string {
	var b [32]byte
	// crypto/rand.Read never returns an error (it crashes the program
	// irrecoverably instead), so there is nothing to handle.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Hash is the key under which a token or session id is stored: the lowercase hex
// SHA-256 of the string, so the store never holds a usable secret.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// LogID is the short, non-reversible form of a token or session id that may
// appear in logs: the first 8 hex characters of its hash.
func LogID(s string) string {
	return Hash(s)[:8]
}
