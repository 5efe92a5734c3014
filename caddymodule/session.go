package caddymodule

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// newSession stores a fresh session for grant's user, bound to its creator,
// and returns its id, which is the cookie value.
func (h *Handler) newSession(ctx context.Context, grant store.Token) (string, error) {
	id := token.New()
	now := time.Now().UTC()
	s := store.Session{UserID: grant.UserID, Claims: grant.Claims, CreatedAt: now, ExpiresAt: now.Add(time.Duration(h.SessionTTL)), CreatedBy: h.sessionCreator(grant.CreatedBy)}
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
