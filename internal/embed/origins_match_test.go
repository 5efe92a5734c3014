package embed

import "strings"

// The browser's side of frame-ancestors: which embedding origins a parsed
// embed_from list lets frame the portal. The gateway never needs it (browsers
// enforce the policy); the tests use it to check that what ParseOrigins
// writes means what the operator wrote.

// Allows reports whether a page of origin (scheme://host[:port], as in an
// Origin header) may frame the portal, matching the way browsers match
// frame-ancestors host-sources (CSP Level 3): a wildcard matches subdomains at
// any depth but not the bare domain; a source without port matches only the
// scheme's default port; an http source also matches https. 'self' is not
// considered, since Origins does not know the gateway's own origin. A
// malformed origin, including "null", is not allowed.
func (o Origins) Allows(origin string) bool {
	scheme, host, port, ok := splitOrigin(origin)
	if !ok {
		return false
	}
	for _, s := range o.sources {
		if s.matches(scheme, host, port) {
			return true
		}
	}
	return false
}

// matches follows CSP3 "Does url match expression in origin": scheme-part,
// host-part and port-part. port is 0 when the URL's port is its scheme's
// default, as the URL standard serializes it.
func (s source) matches(scheme, host string, port int) bool {
	// An http source is upgraded to https, never the reverse.
	if scheme != s.scheme && (s.scheme != "http" || scheme != "https") {
		return false
	}
	if s.wildcard {
		// At least one label before the suffix: "*.example.com" does not
		// match "example.com". s.host ends with a non-numeric label, so a host
		// ending like it cannot be an IP address.
		n := len(host) - len(s.host)
		if n < 2 || host[n-1] != '.' || !equalFoldASCII(host[n:], s.host) {
			return false
		}
	} else if !equalFoldASCII(host, s.host) {
		return false
	}
	return port == s.port || (port == 0 && s.port == defaultPort(scheme))
}

func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// splitOrigin parses a serialized origin without allocating. port is 0 when
// absent or the scheme's default, as browsers serialize it.
func splitOrigin(origin string) (scheme, host string, port int, ok bool) {
	sch, rest, found := strings.Cut(origin, "://")
	switch {
	case !found:
		return "", "", 0, false
	case equalFoldASCII(sch, "https"):
		scheme = "https"
	case equalFoldASCII(sch, "http"):
		scheme = "http"
	default:
		return "", "", 0, false
	}
	host = rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host = rest[:i]
		if port, ok = parsePort(rest[i+1:]); !ok {
			return "", "", 0, false
		}
		if port == defaultPort(scheme) {
			port = 0
		}
	}
	// checkHost refuses '/', '?', '@', '[' and the like, so a path or
	// userinfo cannot sneak a host past the wildcard suffix check.
	if _, _, err := checkHost(host); err != nil {
		return "", "", 0, false
	}
	return scheme, host, port, true
}
