package main

import (
	"context"
	"html/template"
	"log"
	"net/http"

	"github.com/ssogate/ssogate/client"
)

// emr is the embedding app: another product whose backend mints a sign-in link
// for its user on every page view and frames the portal with it.
func emr(api *client.Client) http.Handler {
	mint := func(ctx context.Context, user string) (string, error) {
		tok, err := api.Mint(ctx, client.MintRequest{UserID: user, Claims: map[string]string{"role": "clinician"}})
		if err != nil {
			return "", err
		}
		return tok.URL, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		link, err := mint(r.Context(), "dr.jones")
		if err != nil {
			log.Printf("emr: minting failed: %v", err)
			http.Error(w, "could not reach the portal", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = emrPage.Execute(w, link)
	})
	// The sign-in button: mints at the click, not before, and sends the
	// browser straight in, so the link it follows is never stale.
	mux.HandleFunc("GET /open", func(w http.ResponseWriter, r *http.Request) {
		link, err := mint(r.Context(), "dr.jones")
		if err != nil {
			log.Printf("emr: minting failed: %v", err)
			http.Error(w, "could not reach the portal", http.StatusBadGateway)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, link, http.StatusFound)
	})
	return mux
}

var emrPage = template.Must(template.New("emr").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo EMR</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:1.5rem;background:#f0f4f8}iframe{width:100%;height:420px;border:1px solid #bcccdc;border-radius:6px;background:#fff}</style></head>
<body><h1>Demo EMR <small>(emr.localhost, another site)</small></h1>
<p>The portal below is framed from another site and signed in with a link minted for this page view.
<a href="/open" target="_blank">Open the portal in a new tab</a> (mints a fresh link on click)</p>
<iframe id="portal" src="{{.}}" title="Portal"></iframe>
</body></html>
`))
