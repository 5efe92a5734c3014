package embed

import (
	"net/http"
	"strings"
)

const setCookieHeader = "Set-Cookie"

// sameSiteNone is written exactly like this; an attribute spelled otherwise is
// rewritten, so the fast path can compare bytes.
const sameSiteNone = "SameSite=None"

// RewriteSetCookies rewrites every Set-Cookie header in h so that the cookie
// is stored and sent inside a cross-site iframe, including in browsers that
// block third-party cookies: those still accept a cookie partitioned by the
// top-level site (CHIPS), which must be SameSite=None, Secure and Partitioned.
//
// An existing SameSite attribute, in any case and with any value, becomes
// "SameSite=None" where it stands (later duplicates are dropped); Secure and
// Partitioned, looked up case-insensitively, are appended when missing (a
// spelling some parser would miss, such as "Secure =x", counts as missing:
// a duplicate flag is harmless, a missing one loses the cookie). All
// other attributes stay as written and in order, Domain included (it rules
// out the __Host- prefix but is otherwise fine). Deletion cookies are
// rewritten too: a browser deletes a partitioned cookie only with a
// partitioned Set-Cookie. A line without '=' in its first pair, or with an
// empty name, is malformed and left exactly as it is, as is one that already
// ends up right, without allocating.
func RewriteSetCookies(h http.Header) {
	vs := h[setCookieHeader]
	for i, v := range vs {
		if nv, ok := rewriteSetCookie(v); ok {
			vs[i] = nv
		}
	}
}

// rewriteSetCookie returns the rewritten line and true, or v and false when
// nothing needs to change.
func rewriteSetCookie(v string) (string, bool) {
	pair, attrs, hasAttrs := strings.Cut(v, ";")
	name, _, ok := strings.Cut(pair, "=")
	if !ok || trimWSP(name) == "" {
		return v, false
	}

	sameSites, exact := 0, false
	secure, partitioned := false, false
	for rest, more := attrs, hasAttrs; more; {
		var a string
		a, rest, more = strings.Cut(rest, ";")
		switch {
		case equalFoldASCII(attrName(a), "samesite"):
			sameSites++
			exact = trimWSP(a) == sameSiteNone
		case isFlag(a, "secure"):
			secure = true
		case isFlag(a, "partitioned"):
			partitioned = true
		}
	}
	if sameSites == 1 && exact && secure && partitioned {
		return v, false
	}

	appending := sameSites == 0 || !secure || !partitioned
	if appending {
		// Appended attributes must not follow an empty one.
		v = strings.TrimRight(v, " \t;")
		pair, attrs, hasAttrs = strings.Cut(v, ";")
	}
	var b strings.Builder
	b.Grow(len(v) + len("; SameSite=None; Secure; Partitioned"))
	b.WriteString(pair)
	wroteSameSite := false
	for rest, more := attrs, hasAttrs; more; {
		var a string
		a, rest, more = strings.Cut(rest, ";")
		if equalFoldASCII(attrName(a), "samesite") {
			if wroteSameSite {
				continue
			}
			wroteSameSite = true
			b.WriteByte(';')
			b.WriteString(a[:len(a)-len(strings.TrimLeft(a, " \t"))])
			b.WriteString(sameSiteNone)
			continue
		}
		b.WriteByte(';')
		b.WriteString(a)
	}
	if !wroteSameSite {
		b.WriteString("; " + sameSiteNone)
	}
	if !secure {
		b.WriteString("; Secure")
	}
	if !partitioned {
		b.WriteString("; Partitioned")
	}
	return b.String(), true
}

// attrName is a cookie attribute's name as RFC 6265 and browsers parse it:
// up to the first '=', whitespace trimmed.
func attrName(a string) string {
	n, _, _ := strings.Cut(a, "=")
	return trimWSP(n)
}

// isFlag reports whether attribute a is name in a spelling every parser
// agrees on. Browsers would also take "Secure =x", net/http would not; a
// second "; Secure" harms no one, a missing one loses the cookie.
func isFlag(a, name string) bool {
	a = trimWSP(a)
	if len(a) > len(name) && a[len(name)] == '=' {
		a = a[:len(name)]
	}
	return equalFoldASCII(a, name)
}

// trimWSP trims what RFC 6265 calls whitespace, space and tab only: a cookie
// parser keeps a form feed, so for it "Secure\f" is not Secure.
func trimWSP(s string) string {
	return strings.Trim(s, " \t")
}
