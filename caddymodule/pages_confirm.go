package caddymodule

import (
	"html/template"
	"net/http"
)

// confirmPage is the confirm page or the fallback page: both small, with no
// external resource, framable by the embed_from origins like every page of
// the gateway, and a strict CSP whose nonce admits only their own inline
// script and style.
type confirmPage struct {
	Title, Advice string

	// The form that posts the token back to the route (the confirm page;
	// the fallback's storage access retry), and its submit button's text.
	Action string
	Fields []formField
	Button string

	// The fallback's link: the same, unused sign-in link, in a new tab
	// (NewTab) when shown inside a frame.
	Link, LinkText string
	NewTab         bool
	// The fallback's storage access button, shown by its script only
	// where the browser has document.requestStorageAccess.
	Access string

	Script template.JS
	Nonce  string
}

type formField struct{ Name, Value string }

// The pages' scripts. scriptSubmit posts the confirm form at once;
// scriptAccess offers storage access on the fallback page and, once
// granted, posts the form, which probes again inside the frame.
const (
	scriptSubmit template.JS = `document.getElementById("confirm").submit();`
	scriptAccess template.JS = `(function () {
	var b = document.getElementById("access"), f = document.getElementById("confirm");
	if (!b || !f || typeof document.requestStorageAccess !== "function") return;
	b.hidden = false;
	b.addEventListener("click", function () {
		document.requestStorageAccess().then(function () { f.submit(); }, function () {
			b.hidden = true;
			document.getElementById("denied").hidden = false;
		});
	});
})();`
)

// writeConfirmPage sends p with the headers of a redeem answer (no-store,
// no-referrer, set by serveRedeem) and a CSP with a fresh nonce. A HEAD gets
// the headers alone.
func (h *Handler) writeConfirmPage(w http.ResponseWriter, r *http.Request, p confirmPage) error {
	hdr := w.Header()
	p.Nonce = newNonce()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	// form-action is left out on purpose: it would also govern the
	// redirect after the POST, to any of redirect_hosts.
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+p.Nonce+"'; style-src 'nonce-"+p.Nonce+
		"'; base-uri 'none'; "+h.pageCSP)
	hdr.Del("X-Frame-Options")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	return confirmTemplate.Execute(w, p)
}

var confirmTemplate = template.Must(template.New("confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style nonce="{{.Nonce}}">body{font:16px/1.5 system-ui,sans-serif;color:#1f2933;background:#f5f7fa;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;padding:2rem 2.5rem;max-width:32rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.25rem;margin:0 0 .75rem}p{margin:0 0 .75rem}
.button,button{display:inline-block;font:inherit;padding:.5rem 1rem;border:0;border-radius:6px;background:#2563eb;color:#fff;text-decoration:none;cursor:pointer}
button.secondary{background:#e4e7eb;color:#1f2933}[hidden]{display:none!important}</style></head>
<body><main><h1>{{.Title}}</h1><p>{{.Advice}}</p>
{{- if .Link}}
<p><a id="open" class="button" href="{{.Link}}"{{if .NewTab}} target="_blank" rel="noopener"{{end}}>{{.LinkText}}</a></p>
{{- end}}
{{- if .Action}}
<form id="confirm" method="post" action="{{.Action}}">
{{- range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end}}
{{- if .Button}}<button id="continue" type="submit">{{.Button}}</button>{{end}}
{{- if .Access}}<button id="access" class="secondary" type="button" hidden>{{.Access}}</button>
<p id="denied" hidden>The browser did not allow it. Use the new tab instead.</p>{{end}}
</form>
{{- end}}
</main>
{{- if .Script}}
<script nonce="{{.Nonce}}">{{.Script}}</script>
{{- end}}
</body></html>
`))
