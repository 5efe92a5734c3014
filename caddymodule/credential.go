package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/ssogate/ssogate/internal/principal"
)

// Credential is an API key of one partner backend and the scope of what it may
// mint. A token can never reach further than the credential that minted it.
type Credential struct {
	// Identifies the credential in tokens (createdBy), logs and metrics.
	ID string `json:"id"`
	// Hex SHA-256 of the API key. The key itself is never configured;
	// `caddy ssogate hash-key` prints this value.
	KeySHA256 string `json:"key_sha256"`
	// A fixed user: every token is for this user (an organisation-specific
	// account). Excludes Users.
	User string `json:"user,omitempty"`
	// Patterns of the users it may mint for; "*" matches any run of
	// characters, "?" any one character: "*", "org-a-*".
	Users []string `json:"users,omitempty"`
	// Claims stamped on every token it mints; a request cannot change them.
	Claims map[string]string `json:"claims,omitempty"`
	// Claim keys a mint request may set. Default: none.
	RequestClaims []string `json:"request_claims,omitempty"`
	// What it may do: "mint", "revoke". Default: ["mint"].
	Allow []string `json:"allow,omitempty"`
	// How many tokens it may mint, overriding the handler's
	// mint_rate_limit. Default: the handler's (none unless set).
	MintRateLimit *MintRateLimit `json:"mint_rate_limit,omitempty"`

	key      [sha256.Size]byte
	users    []*regexp.Regexp
	mint     bool
	revoke   bool
	settable map[string]bool
}

// credentials is the provisioned list, checked as a whole.
type credentials []*Credential

func newCredentials(list []*Credential) (credentials, error) {
	ids := map[string]bool{}
	keys := map[[sha256.Size]byte]string{}
	for _, c := range list {
		if err := c.provision(); err != nil {
			return nil, fmt.Errorf("credential %q: %w", c.ID, err)
		}
		if ids[c.ID] {
			return nil, fmt.Errorf("credential %q is defined twice", c.ID)
		}
		ids[c.ID] = true
		if other, dup := keys[c.key]; dup {
			return nil, fmt.Errorf("credentials %q and %q have the same key", other, c.ID)
		}
		keys[c.key] = c.ID
	}
	return list, nil
}

func (c *Credential) provision() error {
	if c.ID == "" {
		return fmt.Errorf("no id")
	}
	raw, err := hex.DecodeString(c.KeySHA256)
	if err != nil || len(raw) != sha256.Size {
		return fmt.Errorf("key_sha256 must be 64 hex characters (see `caddy ssogate hash-key`)")
	}
	copy(c.key[:], raw)
	switch {
	case c.User != "" && len(c.Users) > 0:
		return fmt.Errorf("user and users exclude each other")
	case c.User == "" && len(c.Users) == 0:
		return fmt.Errorf("needs a fixed user or users patterns")
	}
	if c.User != "" {
		if err := principal.CheckUserID(c.User); err != nil {
			return fmt.Errorf("user: %w", err)
		}
	}
	c.users = nil
	for _, p := range c.Users {
		if p == "" {
			return fmt.Errorf("empty users pattern")
		}
		c.users = append(c.users, globToRegexp(p))
	}
	for k, v := range c.Claims {
		if err := principal.CheckClaim(k, v); err != nil {
			return err
		}
	}
	c.settable = map[string]bool{}
	for _, k := range c.RequestClaims {
		if err := principal.CheckClaimKey(k); err != nil {
			return fmt.Errorf("request_claims: %w", err)
		}
		if _, fixed := c.Claims[k]; fixed {
			return fmt.Errorf("request_claims: %q is a fixed claim", k)
		}
		c.settable[k] = true
	}
	allow := c.Allow
	if len(allow) == 0 {
		allow = []string{"mint"}
	}
	c.mint, c.revoke = false, false
	for _, a := range allow {
		switch a {
		case "mint":
			c.mint = true
		case "revoke":
			c.revoke = true
		default:
			return fmt.Errorf("allow: unknown permission %q (want mint, revoke)", a)
		}
	}
	return nil
}

// globToRegexp compiles a users pattern; only * and ? are special.
func globToRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, part := range strings.SplitAfter(p, "") {
		switch part {
		case "*":
			b.WriteString(".*")
		case "?":
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(part))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// mayActFor reports whether the credential's scope covers userID.
func (c *Credential) mayActFor(userID string) bool {
	if c.User != "" {
		return userID == c.User
	}
	for _, re := range c.users {
		if re.MatchString(userID) {
			return true
		}
	}
	return false
}

// authenticate finds the credential whose key the request's bearer token is.
// Every configured key is compared, in constant time, so the time taken tells
// nothing about which key, or how much of one, matched.
func (cs credentials) authenticate(r *http.Request) *Credential {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(auth[len(prefix):])))
	var found *Credential
	for _, c := range cs {
		if subtle.ConstantTimeCompare(sum[:], c.key[:]) == 1 {
			found = c
		}
	}
	return found
}
