// Package redirect decides whether a post-sign-in redirect target is safe.
//
// A target that passes is sent to the browser as the Location of a 302, so
// this package judges it the way both net/url and a browser (the WHATWG URL
// standard) would read it, and accepts only what every reading agrees stays
// on an allowed host. It is deliberately an allow-list of plain RFC 3986
// syntax: anything a browser would first have to repair (backslashes, stray
// whitespace, non-ASCII, missing slashes) is refused rather than guessed at,
// because the repairs are exactly where open redirects hide.
package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest target accepted, in bytes. Sign-in links are meant to
// carry a deep link into the portal, not data; a bound keeps audit logs and
// headers small.
const MaxLen = 2048

// maxDecode is how many rounds of percent-decoding a path is inspected
// through. Some servers and proxies decode twice; a path that still holds
// escapes after that many rounds has no honest use in a sign-in link.
const maxDecode = 3

// maxEcho bounds how much of the target a refusal quotes, so that a hostile
// target cannot flood the audit log.
const maxEcho = 64

// Policy says which hosts, besides the request's own, a target may point to.
type Policy struct {
	// Hosts are extra allowed hostnames (compared case-insensitively, without
	// port). An entry "*.example.com" allows any subdomain of example.com (not
	// example.com itself). A listed host may be reached on any port. IP
	// literals are never matched against Hosts, only against the request's
	// own host.
	Hosts []string
}

// ErrNotAllowed is wrapped by every refusal; errors.Is(err, ErrNotAllowed).
var ErrNotAllowed = errors.New("redirect target not allowed")

// Check returns the Location to send for target (the empty string means "no
// target given" and is not handled here: the caller defaults), or an error
// wrapping ErrNotAllowed saying why (the reason goes into audit logs; it
// never echoes more than 64 bytes of the input).
//
// requestHost is the Host of the request (may include a port, may be an IPv6
// literal in brackets).
//
// An allowed target is returned unchanged: it is already a valid,
// header-safe URI reference, and re-encoding it could alter a fragment the
// portal's client-side router depends on. An empty target is refused too, so
// that a caller who forgets to default cannot send an empty Location.
func (p Policy) Check(target, requestHost string) (string, error) {
	if target == "" {
		return "", refuse("empty target")
	}
	if len(target) > MaxLen {
		return "", refuse(fmt.Sprintf("longer than %d bytes", MaxLen))
	}
	// Browsers silently drop tabs and newlines and trim spaces and controls,
	// and read '\' as '/'; refusing them anywhere means what we check is what
	// the browser navigates to.
	if err := checkBytes(target); err != nil {
		return "", err
	}

	rest, fragment, _ := strings.Cut(target, "#")
	rest, query, _ := strings.Cut(rest, "?")
	if err := checkPart(query, "query", isQueryByte); err != nil {
		return "", err
	}
	if err := checkPart(fragment, "fragment", isFragmentByte); err != nil {
		return "", err
	}

	if strings.HasPrefix(rest, "/") {
		if strings.HasPrefix(rest, "//") {
			return "", refuse("scheme-relative URL")
		}
		if err := checkPath(rest); err != nil {
			return "", err
		}
		return target, nil
	}

	scheme, afterScheme, ok := cutScheme(rest)
	if !ok {
		return "", refuse("relative target not starting with /")
	}
	switch strings.ToLower(scheme) {
	case "https":
	case "http":
		return "", refuse("http downgrade")
	default:
		return "", refuse("scheme " + quote(scheme) + " not allowed")
	}
	// "https:evil.com" and "https:/evil.com" are absolute URLs to evil.com
	// for a browser, while net/url sees an opaque URL or a path: both
	// readings must agree, so only the canonical form is accepted.
	authority, ok := strings.CutPrefix(afterScheme, "//")
	if !ok {
		return "", refuse("https URL without //")
	}
	authority, path, hasPath := strings.Cut(authority, "/")
	if hasPath {
		path = "/" + path
		if err := checkPath(path); err != nil {
			return "", err
		}
	}
	if err := p.checkAuthority(authority, requestHost); err != nil {
		return "", err
	}
	return target, nil
}

// checkBytes refuses, anywhere in the target, what a browser would rewrite or
// what cannot travel in a Location header as-is.
func checkBytes(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return refuse("control character")
		case c == ' ':
			return refuse("space")
		case c == '\\':
			return refuse("backslash")
		case c >= utf8.RuneSelf:
			r, _ := utf8.DecodeRuneInString(s[i:])
			if isLookalike(r) {
				return refuse("look-alike of / or .")
			}
			return refuse("non-ASCII character")
		}
	}
	return nil
}

// checkPart validates a query or a fragment: only URI characters and
// well-formed escapes, so net/url and the browser read the same value.
func checkPart(s, what string, ok func(byte) bool) error {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return refuse("character " + quote(s[i:i+1]) + " not allowed in " + what)
		}
	}
	if _, valid := unescape(s); !valid {
		return refuse("malformed percent-encoding in " + what)
	}
	return nil
}

// checkPath validates an absolute path. A path is where "//" turns into a
// host: a server that decodes and redirects, or one that collapses dot
// segments, would turn "/%2f%2fevil.com" or "/.//evil.com" into a
// scheme-relative URL. So the path is inspected through every decoding
// round a server might apply.
func checkPath(path string) error {
	for i := 0; i < len(path); i++ {
		if !isPathByte(path[i]) {
			return refuse("character " + quote(path[i:i+1]) + " not allowed in path")
		}
	}
	if strings.Contains(path, "//") {
		return refuse("empty path segment (//)")
	}
	s := path
	for round := 0; ; round++ {
		// Past the first round a stray '%' may be data, but lenient
		// decoders still decode the escapes around it, so keep going.
		decoded, valid := unescape(s)
		if !valid && round == 0 {
			return refuse("malformed percent-encoding in path")
		}
		if decoded == s {
			return nil
		}
		if round == maxDecode {
			return refuse("path percent-encoded too many times")
		}
		if err := checkDecodedPath(decoded); err != nil {
			return err
		}
		s = decoded
	}
}

func checkDecodedPath(s string) error {
	if strings.Contains(s, "//") {
		return refuse("percent-encoded //")
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return refuse("percent-encoded control character")
		case c == '\\':
			return refuse("percent-encoded backslash")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if isLookalike(r) {
				return refuse("percent-encoded look-alike of / or .")
			}
			i += size
			continue
		}
		i++
	}
	return nil
}

// checkAuthority accepts only host[:port], where host is the request's own
// hostname or one the policy lists.
func (p Policy) checkAuthority(authority, requestHost string) error {
	if authority == "" {
		return refuse("empty host")
	}
	// Userinfo lets "https://portal.test@evil.com" read as portal.test to a
	// human and as evil.com to a browser; it has no use in a redirect.
	if strings.IndexByte(authority, '@') >= 0 {
		return refuse("userinfo in URL")
	}
	// Browsers percent-decode the host before resolving it; net/url does not
	// for reg-names. Refusing escapes keeps both on the same host.
	if strings.IndexByte(authority, '%') >= 0 {
		return refuse("percent-encoding in host")
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return err
	}
	if port != "" && !validPort(port) {
		return refuse("invalid port")
	}
	if host == "" {
		return refuse("empty host")
	}

	if bracketed(host) || endsInNumber(host) {
		// A browser parses any host ending in a number as IPv4 ("127.1",
		// "0x7f.1", "2130706433"); only the canonical form of the very
		// address the request came to is allowed, and never via Hosts, so
		// that listing a name cannot open a path to internal addresses.
		isV6 := bracketed(host)
		addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
		if err != nil || addr.Zone() != "" || addr.Is6() != isV6 {
			return refuse("malformed IP-literal host")
		}
		own, err := netip.ParseAddr(hostname(requestHost))
		if err != nil || own != addr {
			return refuse("IP-literal host " + quote(host) + " is not the request host")
		}
		return nil
	}
	if !validHostname(host) {
		return refuse("malformed host " + quote(host))
	}
	if strings.EqualFold(host, hostname(requestHost)) || p.lists(host) {
		return nil
	}
	return refuse("host " + quote(host) + " not allowed")
}

// lists reports whether host, a valid DNS name, is in p.Hosts.
func (p Policy) lists(host string) bool {
	for _, h := range p.Hosts {
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			// The dot before the suffix makes "evilclinic.example" miss
			// "*.clinic.example"; host has no empty labels, so what is left
			// is a real subdomain.
			if len(host) > len(suffix)+1 &&
				host[len(host)-len(suffix)-1] == '.' &&
				strings.EqualFold(host[len(host)-len(suffix):], suffix) {
				return true
			}
			continue
		}
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// cutScheme splits "scheme:rest". The scheme must come before any '/', as
// in RFC 3986; otherwise the target is a relative reference.
func cutScheme(s string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(s, ':')
	if i <= 0 || strings.IndexByte(s[:i], '/') >= 0 {
		return "", "", false
	}
	scheme = s[:i]
	for j := 0; j < len(scheme); j++ {
		c := scheme[j]
		if isAlpha(c) || j > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.') {
			continue
		}
		return "", "", false
	}
	return scheme, s[i+1:], true
}

// splitHostPort splits an authority without userinfo; host keeps the
// brackets of an IPv6 literal so the caller knows it was one.
func splitHostPort(authority string) (host, port string, err error) {
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", "", refuse("malformed IP-literal host")
		}
		host, rest := authority[:end+1], authority[end+1:]
		if rest == "" {
			return host, "", nil
		}
		port, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return "", "", refuse("malformed IP-literal host")
		}
		return host, port, nil
	}
	host, port, hasPort := strings.Cut(authority, ":")
	if hasPort && port == "" {
		return "", "", refuse("invalid port")
	}
	return host, port, nil
}

// hostname is the request's hostname without port or brackets.
func hostname(requestHost string) string {
	if strings.HasPrefix(requestHost, "[") {
		if end := strings.IndexByte(requestHost, ']'); end > 0 {
			return requestHost[1:end]
		}
		return ""
	}
	if strings.Count(requestHost, ":") > 1 {
		return requestHost // a bare IPv6 address
	}
	h, _, _ := strings.Cut(requestHost, ":")
	return h
}

func validPort(port string) bool {
	if len(port) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return false
		}
		n = n*10 + int(port[i]-'0')
	}
	return n <= 65535
}

// validHostname accepts LDH labels only (internationalized names in their
// xn-- form). A trailing dot is refused: "portal.test." names the same host
// but would not compare equal, and refusing is the safe way to be wrong.
func validHostname(host string) bool {
	if len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlpha(c) && !isDigit(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// endsInNumber follows the WHATWG URL standard: such a host is parsed as an
// IPv4 address, in decimal, octal or hex, and never looked up as a name.
func endsInNumber(host string) bool {
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last == "" && len(labels) > 1 {
		last = labels[len(labels)-2]
	}
	if last == "" {
		return false
	}
	if hex, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

func bracketed(host string) bool { return strings.HasPrefix(host, "[") }

// unescape percent-decodes s the lenient way (a malformed escape is kept
// as it is), reporting false if there was one.
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	valid := true
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			valid = false
			b.WriteByte('%')
			continue
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	return b.String(), valid
}

// isLookalike reports runes that render like '/', '\' or '.', which some
// servers fold to ASCII (NFKC) before routing or redirecting.
func isLookalike(r rune) bool {
	switch r {
	case '\u2044', // fraction slash
		'\u2215', // division slash
		'\u2216', // set minus
		'\u29F5', // reverse solidus operator
		'\u29F8', // big solidus
		'\u29F9', // big reverse solidus
		'\uFE68', // small reverse solidus
		'\uFF0F', // fullwidth solidus
		'\uFF3C', // fullwidth reverse solidus
		'\u3002', // ideographic full stop
		'\uFF0E', // fullwidth full stop
		'\uFF61', // halfwidth ideographic full stop
		'\uFE52', // small full stop
		'\u2024': // one dot leader
		return true
	}
	return false
}

// The character classes below are RFC 3986's, with '[' and ']' also allowed
// in a query or fragment where browsers and servers take them as data
// ("?filter[0]=x").

func isPathByte(c byte) bool {
	return isUnreserved(c) || isSubDelim(c) || c == ':' || c == '@' || c == '/' || c == '%'
}

func isQueryByte(c byte) bool {
	return isPathByte(c) || c == '?' || c == '[' || c == ']'
}

// isFragmentByte also takes '#': only the first one splits the URL, for
// net/url and browsers alike, and client-side routers use more.
func isFragmentByte(c byte) bool {
	return isQueryByte(c) || c == '#'
}

func isUnreserved(c byte) bool {
	return isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

func isSubDelim(c byte) bool {
	return strings.IndexByte("!$&'()*+,;=", c) >= 0
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func refuse(reason string) error {
	return fmt.Errorf("%w: %s", ErrNotAllowed, reason)
}

// quote shows at most maxEcho bytes of attacker-controlled input, escaped so
// it cannot forge log lines.
func quote(s string) string {
	if len(s) > maxEcho {
		return fmt.Sprintf("%q…", s[:maxEcho])
	}
	return fmt.Sprintf("%q", s)
}
