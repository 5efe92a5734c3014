// Package skippath decides which requests may reach the upstream without a
// session. A skip list is only as safe as the agreement between the gateway
// and the upstream about what a path means: "/assets/..;/secret" is under
// /assets/ to a matcher and is "/secret" to Tomcat, "/assets/..%5Csecret" is
// "/secret" to IIS, "/assets/%252e%252e/secret" to a server that decodes
// twice. So a path is skipped only when it is unambiguous, that is, when it
// means the same thing to any server: no dot segments, no empty segments, no
// ";" parameters, no backslashes, no control characters, valid UTF-8 (no
// overlong forms), nothing that Unicode compatibility normalization (NFKC)
// would change (a fullwidth "．．" is ".." to a server that normalizes), and
// no percent-encoded ".", "/", "\", "%" or ";". Any other
// path is gated like every path not on the list; it is never refused for
// being odd, only never let through unauthenticated.
package skippath

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// List is a provisioned skip list.
type List struct {
	patterns []string
}

// New checks the patterns, in the syntax of Caddy's path matcher but always
// rooted in a path: an exact path ("/health"), a prefix ("/assets/*") or a
// glob ("/static/*/logo.png", "/assets/*.css"). Bare suffixes ("*.css") are
// refused: a framework with suffix matching serves /admin.css as /admin.
// Matching is case-sensitive, as most upstreams' paths are: "/ASSETS/x" is
// not under "/assets/*".
func New(patterns []string) (*List, error) {
	for _, p := range patterns {
		if p == "" || p == "*" {
			return nil, fmt.Errorf("skip %q would let every request through without a session", p)
		}
		if !strings.HasPrefix(p, "/") {
			// "*.css" would pass /admin.css, which Spring's suffix
			// matching serves as /admin.
			return nil, fmt.Errorf("skip %q: a skip pattern starts with a path (/assets/*); a bare suffix would let any page through that some server reads without it", p)
		}
		if _, err := path.Match(p, "/"); err != nil {
			return nil, fmt.Errorf("skip %q: %v", p, err)
		}
		if plain := "/" + strings.TrimPrefix(strings.ReplaceAll(p, "*", "x"), "/"); !Unambiguous(plain, plain) {
			return nil, fmt.Errorf("skip %q: the pattern itself is not a plain path", p)
		}
	}
	return &List{patterns: patterns}, nil
}

// Match reports whether a request may skip the gate: its decoded path matches
// a pattern and it is unambiguous. escaped is the path as the client sent it
// (url.URL.EscapedPath), decoded its decoded form (url.URL.Path).
func (l *List) Match(escaped, decoded string) bool {
	if l == nil || !Unambiguous(escaped, decoded) {
		return false
	}
	for _, p := range l.patterns {
		if matches(p, decoded) {
			return true
		}
	}
	return false
}

func matches(pattern, p string) bool {
	star := strings.IndexByte(pattern, '*')
	switch {
	case star < 0:
		return p == pattern
	case star == len(pattern)-1:
		return strings.HasPrefix(p, pattern[:star])
	}
	ok, _ := path.Match(pattern, p) // checked in New
	return ok
}

// Unambiguous reports whether a path means the same thing to every server:
// see the package doc for what that excludes.
func Unambiguous(escaped, decoded string) bool {
	if !strings.HasPrefix(decoded, "/") || !utf8.ValidString(decoded) {
		return false
	}
	for i := 0; i < len(decoded); i++ {
		switch c := decoded[i]; {
		case c < 0x20, c == 0x7f, c == '\\', c == ';', c == '%':
			return false
		}
	}
	for seg := range strings.SplitSeq(decoded[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	if strings.Contains(decoded, "//") {
		return false
	}
	if !ascii(decoded) && !norm.NFKC.IsNormalString(decoded) {
		return false
	}
	for i := 0; i < len(escaped); i++ {
		switch c := escaped[i]; c {
		case '\\', ';':
			return false
		case '%':
			if i+2 >= len(escaped) {
				return false
			}
			b, ok := unhex(escaped[i+1], escaped[i+2])
			if !ok || b < 0x20 || b == 0x7f || strings.IndexByte("./\\%;", b) >= 0 {
				return false
			}
			i += 2
		}
	}
	return true
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func unhex(a, b byte) (byte, bool) {
	hi, ok1 := hexVal(a)
	lo, ok2 := hexVal(b)
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
