// Package principal holds the rules for whom a token or session speaks for: a
// user id and a set of claims. The same rules apply however a token was minted
// (API, a direct Redis write, a signed token), because the upstream, the
// revocation index and Caddy's placeholders must all read one identity the
// same way: a user id that is " alice" to one of them and "alice" to another
// is two people to the gateway and one to the portal.
package principal

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxUserIDLen bounds a user id: it travels in a header and in key names.
	MaxUserIDLen = 256
	// MaxClaimKeyLen and MaxClaimValueLen bound a claim.
	MaxClaimKeyLen   = 64
	MaxClaimValueLen = 256
	// ReservedClaim is the claim key that would stand for the user id itself
	// in {http.auth.user.id}: no token may carry it.
	ReservedClaim = "id"
)

// CheckUserID refuses a user id that is not 1–256 bytes of printable UTF-8,
// that starts or ends with white space, that holds a control or invisible
// format character (zero-width spaces, bidi overrides), or a comma.
func CheckUserID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty user id")
	case len(id) > MaxUserIDLen:
		return fmt.Errorf("user id longer than %d bytes", MaxUserIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("user id is not UTF-8")
	}
	first, _ := utf8.DecodeRuneInString(id)
	last, _ := utf8.DecodeLastRuneInString(id)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Errorf("user id starts or ends with white space")
	}
	if !printable(id) {
		return fmt.Errorf("user id holds a control, format or non-printable character")
	}
	if strings.ContainsRune(id, ',') {
		// HTTP reads a comma in a header as a list separator: "org-a-x,
		// admin" would be two users to a portal that takes the last.
		return fmt.Errorf("user id holds a comma, which a header would read as a list")
	}
	return nil
}

// CheckClaimKey refuses a claim key outside [A-Za-z0-9_.-]{1,64}, and the
// reserved key "id".
func CheckClaimKey(k string) error {
	if k == "" || len(k) > MaxClaimKeyLen {
		return fmt.Errorf("claim key %.64q: want 1-%d of A-Z a-z 0-9 _ . -", k, MaxClaimKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if !keyByte(k[i]) {
			return fmt.Errorf("claim key %.64q: want 1-%d of A-Z a-z 0-9 _ . -", k, MaxClaimKeyLen)
		}
	}
	if k == ReservedClaim {
		return fmt.Errorf("claim key %q is reserved for the user id", k)
	}
	return nil
}

// CheckClaim checks a key and its value: at most 256 bytes of UTF-8 with no
// control character (it ends up in a request header).
func CheckClaim(k, v string) error {
	if err := CheckClaimKey(k); err != nil {
		return err
	}
	switch {
	case len(v) > MaxClaimValueLen:
		return fmt.Errorf("claim %q: value longer than %d bytes", k, MaxClaimValueLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("claim %q: value is not UTF-8", k)
	case hasControl(v):
		return fmt.Errorf("claim %q: control character in value", k)
	case strings.ContainsRune(v, utf8.RuneError):
		return fmt.Errorf("claim %q: value holds U+FFFD, the remains of invalid input", k)
	}
	return nil
}

// Check applies CheckUserID and CheckClaim to a whole identity.
func Check(userID string, claims map[string]string) error {
	if err := CheckUserID(userID); err != nil {
		return err
	}
	for k, v := range claims {
		if err := CheckClaim(k, v); err != nil {
			return err
		}
	}
	return nil
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// printable reports whether every rune is a letter, mark, number, punctuation,
// symbol or the ASCII space (unicode.IsPrint) that shows: none is a default
// ignorable code point (format characters, variation selectors, fillers such
// as U+3164, the combining grapheme joiner), which render as nothing and so
// make two ids that read the same, and none is U+FFFD, which is what a decoder
// leaves of invalid input (a lone surrogate escape in JSON, say), so that two
// different inputs would become one id.
func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) || invisible(r) {
			return false
		}
	}
	return true
}

func invisible(r rune) bool {
	return r == utf8.RuneError || unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}
