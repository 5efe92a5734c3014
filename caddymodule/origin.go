package caddymodule

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/ssogate/ssogate/internal/fetchmeta"
)

// crossSite reports whether a POST says another site's page sent it (see
// fetchmeta.CrossSite). A confirm page's own form may come as "Origin: null"
// (its Referrer-Policy is no-referrer), so the redeem POST takes
// nullSameOrigin; logout does not, as SPEC says.
func (h *Handler) crossSite(r *http.Request, nullSameOrigin bool) bool {
	return fetchmeta.CrossSite(r.Header, nullSameOrigin, func(origin string) bool { return h.ownOrigin(r, origin) })
}

// ownOrigin tells whether origin is the portal's: the request's own host
// with its scheme (or https, for a gateway behind a proxy that ends TLS), or
// public_url's.
func (h *Handler) ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return false // "null" included
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	if (strings.EqualFold(u.Scheme, scheme) || strings.EqualFold(u.Scheme, "https")) && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	p := h.publicURL
	return p != nil && strings.EqualFold(u.Scheme, p.Scheme) && strings.EqualFold(u.Host, p.Host)
}
