// Package embed makes a portal's responses frameable by listed origins.
//
// The gateway proxies a portal that was usually written to be a top-level site:
// it sends X-Frame-Options or a CSP frame-ancestors that forbids framing, and
// its cookies default to SameSite=Lax, which a browser does not send inside a
// cross-site iframe. The functions here rewrite upstream response headers so the
// portal works inside the embedding app's iframe, also in browsers that block
// third-party cookies (which still accept partitioned ones).
//
// Everything here is a pure function of its input, standard library only, and
// cheap on responses that need no change, because it runs on every proxied
// response.
package embed

import "strings"

// NoFraming is a complete Content-Security-Policy header value for the
// gateway's own pages when no embed_from is configured: nothing may frame them,
// not even the portal's origin, so a sign-in link cannot be clickjacked.
const NoFraming = "frame-ancestors 'none'"

// equalFoldASCII compares like the CSP and cookie specs do. strings.EqualFold
// folds Unicode too ("ſecure" would equal "secure"), which browsers do not, so
// it could make us believe an attribute is present when the browser sees none.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// containsFoldASCII is a cheap pre-check so that headers without the word we
// look for are never parsed. sub must be lower case.
func containsFoldASCII(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if lowerASCII(s[i]) == sub[0] && equalFoldASCII(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

// isSpace is ASCII whitespace as the Infra standard defines it, which is what
// the CSP parser strips; cookie parsers strip a subset of it.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func trimLeftSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}

// trimRightSep drops trailing whitespace and separators so that an appended
// directive or attribute does not follow an empty one.
func trimRightSep(s, seps string) string {
	for len(s) > 0 {
		c := s[len(s)-1]
		if !isSpace(c) && strings.IndexByte(seps, c) < 0 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}
