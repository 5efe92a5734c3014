// Package fetchmeta reads what browsers say about a request's context: the
// fetch metadata headers (Sec-Fetch-Mode, Sec-Fetch-Dest, Sec-Fetch-Site),
// which no page can set, and Origin. It tells a browser's navigation from
// any other fetch, and a same-origin form from another site's.
package fetchmeta

import (
	"net/http"
	"net/url"
	"strings"
)

// Dest is what a request says it loads.
type Dest int

const (
	// Other is anything but a browser navigation: a link scanner, a
	// preview, a script, an old browser that sends no fetch metadata.
	Other Dest = iota
	// Document is a top-level navigation.
	Document
	// Frame is a navigation inside an iframe (or a frame).
	Frame
)

// Navigation classifies h: Document or Frame for a browser navigation
// (Sec-Fetch-Mode: navigate with Sec-Fetch-Dest document, iframe or frame),
// else Other.
func Navigation(h http.Header) Dest {
	if h.Get("Sec-Fetch-Mode") != "navigate" {
		return Other
	}
	switch h.Get("Sec-Fetch-Dest") {
	case "document":
		return Document
	case "iframe", "frame":
		return Frame
	}
	return Other
}

// CrossSite reports whether a state-changing request (a POST) says it was
// sent by a page of another origin: Sec-Fetch-Site other than same-origin or
// none (none is the user's own action, such as a bookmark), or an Origin
// whose host is none of hosts (host[:port], compared case-insensitively).
//
// "Origin: null" is what Chromium and Firefox send for a same-origin form on
// a page with Referrer-Policy: no-referrer; sandboxed frames send it too. So
// it counts as same-origin only when Sec-Fetch-Site says same-origin. A
// request with neither header is no browser's cross-site form, and passes.
func CrossSite(h http.Header, hosts ...string) bool {
	site := h.Get("Sec-Fetch-Site")
	switch site {
	case "", "same-origin", "none":
	default:
		return true
	}
	switch origin := h.Get("Origin"); origin {
	case "":
		return false
	case "null":
		return site != "same-origin"
	default:
		return !originOf(origin, hosts)
	}
}

// originOf reports whether origin is a serialized http(s) origin on one of
// hosts.
func originOf(origin string, hosts []string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	for _, h := range hosts {
		if h != "" && strings.EqualFold(u.Host, h) {
			return true
		}
	}
	return false
}
