package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// sessionIDLen is the length of a session id: 256 bits in unpadded base64url.
const sessionIDLen = 43

// serveGated lets the request through to next only with a valid session, with
// the identity headers and placeholders set from it.
func (h *Handler) serveGated(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	id, _, err := h.requestSession(r)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			h.storeFailed("session check", err)
			return h.fail(w, r, errStoreUnavailable, false)
		}
		if h.LoginURL != "" && strings.Contains(r.Header.Get("Accept"), "text/html") {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, h.LoginURL, http.StatusFound)
			return nil
		}
		return h.fail(w, r, errNotSignedIn, false)
	}
	h.applyIdentity(r, id)
	return next.ServeHTTP(w, r)
}

// validSessionID tells whether a cookie value has the syntax of a session id, so
// that nothing else is ever hashed or looked up.
func validSessionID(v string) bool {
	return len(v) == sessionIDLen && token.Classify(v) == token.Opaque
}

// newSession stores a fresh session for t's user and returns its id, which is
// the cookie value.
func (h *Handler) newSession(ctx context.Context, userID string, claims map[string]string) (string, error) {
	id := token.New()
	now := time.Now().UTC()
	s := store.Session{UserID: userID, Claims: claims, CreatedAt: now, ExpiresAt: now.Add(time.Duration(h.SessionTTL))}
	if err := h.store.AddSession(ctx, token.Hash(id), s, time.Duration(h.SessionIdle)); err != nil {
		return "", err
	}
	return id, nil
}

// sessionCookie is the Set-Cookie for id; an empty id deletes the cookie. With
// embed_from, the cookie must be sent inside a third-party iframe, which takes
// SameSite=None, and must survive third-party cookie blocking, which takes
// Partitioned (CHIPS).
func (h *Handler) sessionCookie(id string) *http.Cookie {
	c := &http.Cookie{
		Name:     h.CookieName,
		Value:    id,
		Path:     "/",
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	if len(h.EmbedFrom) > 0 {
		c.SameSite = http.SameSiteNoneMode
		c.Partitioned = true
	}
	if id == "" {
		c.MaxAge = -1
	}
	return c
}

// escapeClaim percent-encodes what would break the k=v;k=v format or the header.
func escapeClaim(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f || c == '%' || c == ';' || c == '=' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c == 0x7f || c == '%' || c == ';' || c == '=' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// stripIdentity removes every header a backend could read as an identity
// header: CGI-style backends (PHP, many Python servers) fold "_" into "-", so
// X_Forwarded_User would pass for X-Forwarded-User.
func (h *Handler) stripIdentity(hdr http.Header) {
	for name := range hdr {
		for _, s := range h.stripped {
			if len(name) == len(s) && strings.EqualFold(strings.ReplaceAll(name, "_", "-"), s) {
				delete(hdr, name)
			}
		}
	}
}

// serveLogout ends the browser's session on every instance and clears the cookie.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.fail(w, r, errMethod, wantsJSON(r))
	}
	for _, c := range r.CookiesNamed(h.CookieName) {
		if !validSessionID(c.Value) {
			continue
		}
		key := token.Hash(c.Value)
		// Read first only to say whose session ended in the audit log.
		sess, err := h.store.Session(r.Context(), key, 0)
		if err == nil || errors.Is(err, store.ErrNotFound) {
			err = h.store.DeleteSession(r.Context(), key)
		}
		if err != nil {
			h.storeFailed("logout", err)
			return h.fail(w, r, errStoreUnavailable, false)
		}
		h.forget(store.Invalidation{SessionKey: key})
		h.audit(zapcore.InfoLevel, "logout", zap.String("user", sess.UserID), zap.String("session", token.LogID(c.Value)))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.SetCookie(w, h.sessionCookie(""))
	if wantsJSON(r) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if h.LoginURL != "" {
		http.Redirect(w, r, h.LoginURL, http.StatusSeeOther)
		return nil
	}
	h.setPageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return pageTemplate.Execute(w, page{Title: "You are signed out.", Advice: "Open the portal from your app to sign in again."})
}
