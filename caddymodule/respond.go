package caddymodule

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The values of error_pages.
const (
	// errorPagesBuiltin: the gateway answers its errors itself, a page
	// or JSON (the default).
	errorPagesBuiltin = "builtin"
	// errorPagesCaddy: the gateway returns its errors to Caddy, so that a
	// site's handle_errors answers them.
	errorPagesCaddy = "caddy"
)

// problem is an error a person or a partner's backend sees: a status, a stable
// machine-readable code, what happened, and what to do about it.
type problem struct {
	status int
	code   string
	title  string
	advice string
}

var (
	errInvalidToken = problem{http.StatusForbidden, "invalid_or_used_token",
		"This sign-in link was already used or has expired.",
		"Go back to the app and open it again."}
	errBadRedirect = problem{http.StatusBadRequest, "bad_redirect",
		"This sign-in link points to a page it may not send you to.",
		"Go back to the app and open it again. If this keeps happening, tell the app's support team."}
	errNotSignedIn = problem{http.StatusUnauthorized, "not_signed_in",
		"You are not signed in, or your session has ended.",
		"Go back to the app and open the portal from there again."}
	errStoreUnavailable = problem{http.StatusServiceUnavailable, "store_unavailable",
		"Sign-in is unavailable right now.",
		"Wait a moment, then try again."}
	errRateLimited = problem{http.StatusTooManyRequests, "rate_limited",
		"Too many failed sign-in attempts from your network.",
		"Wait a minute, then open the link from your app again."}
	errForbiddenScope = problem{http.StatusForbidden, "forbidden_scope",
		"This credential may not do that.",
		"Use a credential whose scope covers this user, claim or action."}
	errUnauthorized = problem{http.StatusUnauthorized, "unauthorized",
		"No valid API key.",
		"Send the key as `Authorization: Bearer <key>`."}
	errMethod = problem{http.StatusMethodNotAllowed, "method_not_allowed",
		"This address does not answer that method.",
		"See the ssogate README for the routes and their methods."}
)

// withDetail returns p with a more specific title, for API callers who need to
// know which field was wrong. It is never used with secrets.
func (p problem) withDetail(title string) problem {
	p.title = title
	return p
}

func badRequest(title string) problem {
	return problem{http.StatusBadRequest, "bad_request", title, "Fix the request and send it again."}
}

// wantsJSON tells whether the client asked for JSON rather than a page.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// fail is the one exit of every error answer. With error_pages builtin it
// answers with p: JSON when asked for (and always on the API), else a small
// page that reads well on its own and inside an iframe. With error_pages
// caddy it returns p to Caddy as a handler error, for the site's
// handle_errors: {http.error.status_code} is p's status and
// {http.error.message} its code; {ssogate.error.title} and
// {ssogate.error.advice} say what happened and what to do. Headers set before
// (Retry-After, WWW-Authenticate, Allow), no-store and the framing policy are
// kept on the response either way, so a branded page works in a frame too.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, p problem, api bool) error {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if h.ErrorPages == errorPagesCaddy {
		h.setPageHeaders(hdr)
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("ssogate.error.code", p.code)
			repl.Set("ssogate.error.title", p.title)
			repl.Set("ssogate.error.advice", p.advice)
		}
		return caddyhttp.Error(p.status, problemError{p.code})
	}
	if api || wantsJSON(r) {
		hdr.Set("Content-Type", "application/json")
		w.WriteHeader(p.status)
		return json.NewEncoder(w).Encode(map[string]string{"error": p.title, "code": p.code})
	}
	h.setPageHeaders(hdr)
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(p.status)
	if r.Method == http.MethodHead {
		return nil
	}
	return pageTemplate.Execute(w, p.page())
}

// problemError is a problem handed to Caddy; its message is the code, which
// handle_errors sees as {http.error.message}.
type problemError struct{ code string }

func (e problemError) Error() string { return e.code }

// validateErrorPages checks the error_pages value.
func (h *Handler) validateErrorPages() error {
	switch h.ErrorPages {
	case "", errorPagesBuiltin, errorPagesCaddy:
		return nil
	}
	return fmt.Errorf("error_pages %q: want builtin or caddy", h.ErrorPages)
}

// unmarshalErrorPages parses
//
//	error_pages builtin|caddy
func (h *Handler) unmarshalErrorPages(d *caddyfile.Dispenser) error {
	if !d.AllArgs(&h.ErrorPages) {
		return d.ArgErr()
	}
	if err := h.validateErrorPages(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// writeJSON answers a successful API call.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

type page struct{ Title, Advice, Code string }

func (p problem) page() page { return page{p.title, p.advice, p.code} }

// pageTemplate has no external resources, scripts or links out of the frame, so
// it renders the same inside an embedding app's iframe and on its own.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;color:#1f2933;background:#f5f7fa;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;padding:2rem 2.5rem;max-width:32rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.25rem;margin:0 0 .75rem}p{margin:0 0 .5rem}small{color:#7b8794}</style></head>
<body><main><h1>{{.Title}}</h1><p>{{.Advice}}</p>{{if .Code}}<small>Error code: {{.Code}}</small>{{end}}</main></body></html>
`))
