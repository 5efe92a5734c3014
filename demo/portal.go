package main

import (
	"crypto/rand"
	"encoding/hex"
	"html/template"
	"net/http"
)

// portal is the web portal behind the gateway. It knows nothing of sign-in
// links: it reads who the user is from the headers the gateway sets, checks
// the gateway's signed assertion of it with v, and keeps a cookie of its own,
// as real portals do.
func portal(v *assertionVerifier) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		own, err := r.Cookie("portal_visits")
		visits := "first visit"
		if err == nil {
			visits = "returning (portal cookie " + own.Value[:8] + "…)"
		} else {
			var b [16]byte
			_, _ = rand.Read(b[:])
			http.SetCookie(w, &http.Cookie{Name: "portal_visits", Value: hex.EncodeToString(b[:]), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		}
		// The portal's own framing policy; the gateway replaces it with
		// embed_from's.
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		user := r.Header.Get("X-Forwarded-User")
		verified := "verified"
		if id, err := v.verify(r); err != nil {
			verified = "not verified: " + err.Error()
		} else if id.UserID != user {
			verified = "not verified: the assertion is for " + id.UserID
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = portalPage.Execute(w, map[string]string{
			"User":     user,
			"Verified": verified,
			"Claims":   r.Header.Get("X-Forwarded-Claims"),
			"Path":     r.URL.Path,
			"Visits":   visits,
		})
	})
	return mux
}

var portalPage = template.Must(template.New("portal").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo portal</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:1.5rem;color:#1f2933}code{background:#eef2f7;padding:.1rem .3rem;border-radius:3px}</style></head>
<body><h1>Demo portal</h1>
<p>Signed in as <strong id="user">{{.User}}</strong> <span id="verified">{{.Verified}}</span></p>
<p>X-Forwarded-Claims: <code id="claims">{{.Claims}}</code></p>
<p>Page <code>{{.Path}}</code>, {{.Visits}}</p>
<div><a href="/patients/6422">Another page</a> ·
<form method="post" action="/sso/logout" style="display:inline"><button>Sign out</button></form></div>
</body></html>
`))
