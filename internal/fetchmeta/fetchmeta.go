// Package fetchmeta reads what browsers say about a request's context: the
// fetch metadata headers (Sec-Fetch-Mode, Sec-Fetch-Dest, Sec-Fetch-Site),
// which no page can set, and Origin. It tells a browser's navigation from
// any other fetch, and a same-origin form from another site's.
package fetchmeta

import "net/http"

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
// none (none is the user's own action, such as a bookmark), or an Origin that
// own does not accept. A request with neither header is no browser's
// cross-site form, and passes.
//
// "Origin: null" is what Chromium and Firefox send for a same-origin form on
// a page with Referrer-Policy: no-referrer; sandboxed frames and opaque
// origins send it too. With nullSameOrigin it counts as same-origin when
// Sec-Fetch-Site says same-origin; without, it is always another site.
func CrossSite(h http.Header, nullSameOrigin bool, own func(origin string) bool) bool {
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
		return !nullSameOrigin || site != "same-origin"
	default:
		return !own(origin)
	}
}
