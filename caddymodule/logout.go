package caddymodule

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/plugins/store"
)

// serveLogout ends the browser's session on every instance and clears the cookie.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.fail(w, r, errMethod, wantsJSON(r))
	}
	if refused, err := h.refuseCrossSiteLogout(w, r); refused {
		return err
	}
	keys, n := h.cookieKeys(r)
	for _, k := range keys[:n] {
		key := k.Hex()
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
		h.audit(zapcore.InfoLevel, "logout", zap.String("user", sess.UserID), zap.String("session", key[:8]), zap.String("client_ip", clientIP(r)))
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
