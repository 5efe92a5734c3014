package embed

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Origins is a parsed embed_from list: the origins whose pages may frame the
// portal, in the order the operator wrote them, without duplicates.
//
// The zero value lists no origin, so only the portal itself may frame it.
type Origins struct {
	sources []source
	// list and fa are serialized once at parse time because FrameAncestors is
	// asked on every proxied response.
	list string
	fa   string
}

// source is one CSP host-source without path. Only what a frame-ancestors
// check of an origin needs is kept.
type source struct {
	scheme   string // "https", or "http" for local development
	host     string // lower case; for a wildcard, the part after "*."
	wildcard bool
	port     int // 0 when none was written
}

// ParseOrigins validates embed_from entries: exact origins
// ("https://emr.test:9443", "https://app.example.com") and wildcards with one
// leading "*." label ("https://*.example.com"). Wildcards and everything else
// must use https; http is accepted only for localhost and 127.0.0.1, for
// development. Entries with a path (even a lone "/"), query, fragment,
// userinfo, no scheme, IPv6 literals (CSP cannot express them) or a bare "*"
// are refused, so that what the operator wrote is exactly what browsers
// enforce. Scheme and host are lower-cased; ports are kept as written, since
// in CSP "https://a.test" and "https://a.test:443" are distinct sources.
//
// The error lists every bad entry, so a configuration is fixed in one go.
func ParseOrigins(list []string) (Origins, error) {
	var (
		o    Origins
		errs []error
		b    strings.Builder
		seen = make(map[string]bool, len(list))
	)
	for _, entry := range list {
		src, err := parseSource(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("embed origin %q: %w", entry, err))
			continue
		}
		s := src.String()
		if seen[s] {
			continue
		}
		seen[s] = true
		o.sources = append(o.sources, src)
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	if len(errs) > 0 {
		return Origins{}, errors.Join(errs...)
	}
	o.list = b.String()
	if o.list != "" {
		o.fa = "'self' " + o.list
	}
	return o, nil
}

// String is the normalized source list, space separated, as it appears in
// the frame-ancestors directive after 'self'; empty for no origins.
func (o Origins) String() string { return o.list }

// Len is the number of distinct origins, so a caller can tell whether
// embedding is configured at all.
func (o Origins) Len() int { return len(o.sources) }

// FrameAncestors is the frame-ancestors source list to hand to MergeCSP:
// "'self' https://emr.test:9443 https://*.example.com". 'self' is always
// there because portals commonly frame their own pages (previews, dialogs).
// With no origins it is "'self'"; pages of the gateway that must not be
// framed at all use NoFraming instead.
func (o Origins) FrameAncestors() string {
	if o.fa == "" {
		return "'self'"
	}
	return o.fa
}

// String serializes s as a CSP host-source.
func (s source) String() string {
	var b strings.Builder
	b.WriteString(s.scheme)
	b.WriteString("://")
	if s.wildcard {
		b.WriteString("*.")
	}
	b.WriteString(s.host)
	if s.port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(s.port))
	}
	return b.String()
}

// parseSource validates one embed_from entry by hand rather than with
// net/url, which accepts much that a CSP source cannot say (or says
// differently) and would let ';' or ',' through into the header.
func parseSource(entry string) (source, error) {
	var src source
	switch {
	case entry == "":
		return src, errors.New("empty origin")
	case entry == "*" || entry == "https://*" || entry == "http://*":
		return src, errors.New("a bare wildcard would let any site frame the portal; list the origins")
	case entry[0] == '\'':
		return src, errors.New("keywords are not origins ('self' is always included)")
	}
	scheme, rest, ok := strings.Cut(entry, "://")
	if !ok {
		return src, errors.New(`missing scheme: write it as "https://host[:port]"`)
	}
	switch {
	case equalFoldASCII(scheme, "https"):
		src.scheme = "https"
	case equalFoldASCII(scheme, "http"):
		src.scheme = "http"
	default:
		return src, errors.New("scheme must be https")
	}
	// The path is reported last, so that its suggested fix is a valid origin.
	hostport, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		hostport, tail = rest[:i], rest[i:]
	}
	if strings.Contains(hostport, "@") {
		return src, errors.New("an origin has no user information")
	}
	if strings.HasPrefix(hostport, "[") {
		return src, errors.New("IPv6 addresses cannot be written in a CSP source; use a host name")
	}
	for i := 0; i < len(hostport); i++ {
		// Caught before the port is split off, so "https://a.test,https://b.test"
		// is reported as the list it is, not as a bad port.
		if c := hostport[i]; c < 0x80 && !isHostChar(c) && c != '.' && c != ':' && c != '*' {
			return src, fmt.Errorf("invalid character %q (write one origin per entry)", c)
		}
	}
	host := hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		host = hostport[:i]
		p, ok := parsePort(hostport[i+1:])
		if !ok {
			return src, errors.New("port must be a number from 1 to 65535")
		}
		src.port = p
	}
	host = strings.ToLower(host)
	if strings.HasPrefix(host, "*.") {
		src.wildcard = true
		host = host[2:]
	}
	ip, labels, err := checkHost(host)
	if err != nil {
		return src, err
	}
	if src.wildcard && (ip || labels < 2) {
		// "*.com" or "*.127.0.0.1" would be far wider than the operator meant.
		return src, errors.New("a wildcard must be followed by a domain of at least two labels, as in https://*.example.com")
	}
	if src.scheme == "http" && (src.wildcard || (host != "localhost" && host != "127.0.0.1")) {
		// Framing over http would expose the session to anyone on the path.
		return src, errors.New("http is allowed only for localhost and 127.0.0.1; use https")
	}
	if tail != "" {
		return src, fmt.Errorf("an origin has no path, query or fragment: write %q", entry[:len(entry)-len(tail)])
	}
	src.host = host
	return src, nil
}

// parsePort accepts what browsers accept in a port: decimal digits, leading
// zeros included, with a value that fits.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n >= 1 && n <= 65535
}

// checkHost accepts a DNS name made of CSP host-chars (letters, digits,
// hyphens) or a dotted-quad IPv4 address. Like the URL standard, it treats a
// name whose last label looks numeric as an IPv4 address, so that "1.2.3"
// cannot mean something else to the browser than to us.
func checkHost(host string) (ip bool, labels int, err error) {
	if host == "" {
		return false, 0, errors.New("missing host")
	}
	if len(host) > 253 {
		return false, 0, errors.New("host name too long")
	}
	last := ""
	for rest, more := host, true; more; {
		var label string
		label, rest, more = strings.Cut(rest, ".")
		labels++
		last = label
		if label == "" || len(label) > 63 {
			return false, 0, errors.New("host must be a DNS name without empty labels or a trailing dot")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return false, 0, errors.New("a host label cannot start or end with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 0x80:
				return false, 0, errors.New("international host names must be written in punycode (xn--…)")
			case c == '*':
				return false, 0, errors.New("a wildcard is allowed only as the whole first label, as in https://*.example.com")
			case !isHostChar(c):
				return false, 0, fmt.Errorf("invalid character %q in host", c)
			}
		}
	}
	if !isDigits(last) && !(len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
		return false, labels, nil
	}
	if !isIPv4(host) {
		return false, 0, errors.New("host looks numeric but is not a dotted-quad IPv4 address")
	}
	return true, labels, nil
}

func isHostChar(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '-'
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isIPv4 accepts only the canonical form (no leading zeros), which is the
// form a browser serializes an origin with.
func isIPv4(s string) bool {
	n := 0
	for rest, more := s, true; more; n++ {
		var part string
		part, rest, more = strings.Cut(rest, ".")
		if !isDigits(part) || len(part) > 3 || (len(part) > 1 && part[0] == '0') {
			return false
		}
		if v, _ := strconv.Atoi(part); v > 255 {
			return false
		}
	}
	return n == 4
}
