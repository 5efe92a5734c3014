package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ssogate/ssogate/internal/principal"
	"github.com/ssogate/ssogate/internal/sessioncache"
	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// The gate, one way through: the request's session cookies → at most two
// store lookups (or cache hits) → the session's identity on the request →
// next. ServeHTTP has already removed every header the gate sets.

// serveGated lets the request through to next only with a valid session, with
// the identity headers and placeholders set from it.
func (h *Handler) serveGated(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	id, err := h.requestSession(r)
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
	h.dropOwnCookies(r)
	if err := h.applyAssertion(r, id); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	return next.ServeHTTP(w, r)
}

// dropOwnCookies removes the gateway's cookies (the session's and the frame
// probe's) from what the upstream receives: the session id is the gateway's
// secret, and no portal needs it (nor should its logs hold it).
func (h *Handler) dropOwnCookies(r *http.Request) {
	lines := r.Header["Cookie"]
	own := false
	for _, line := range lines {
		if strings.Contains(line, h.CookieName) {
			own = true
			break
		}
	}
	if !own {
		return
	}
	var b strings.Builder
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			part = textproto.TrimString(part)
			name, _, _ := strings.Cut(part, "=")
			if part == "" || h.ownCookie(name) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			} else {
				b.Grow(len(line))
			}
			b.WriteString(part)
		}
	}
	if b.Len() == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{b.String()}
}

// ownCookie tells whether name is the session cookie or the frame probe's
// (probeCookieName), without building the latter's name on every request.
func (h *Handler) ownCookie(name string) bool {
	rest, ok := strings.CutPrefix(name, h.CookieName)
	return ok && (rest == "" || rest == probeSuffix)
}

// sessionIDLen is the length of a session id: 256 bits in unpadded base64url.
const sessionIDLen = 43

// maxSessionCookies is how many session cookies of one request are looked at:
// a browser may hold a partitioned and an unpartitioned copy at once (after
// embed_from was turned on), and the stale one may come first. A request
// carrying hundreds costs no more than one carrying two.
const maxSessionCookies = 2

// validSessionID tells whether a cookie value has the syntax of a session id, so
// that nothing else is ever hashed or looked up.
func validSessionID(v string) bool {
	return len(v) == sessionIDLen && token.Classify(v) == token.Opaque
}

// sessionKey is the store key of a session id as bytes (its SHA-256).
type sessionKey = sessioncache.Key

// keyOf hashes a session id without allocating.
func keyOf(id string) sessionKey { return sessioncache.KeyOf(id) }

// cookieKeys returns the keys of the first maxSessionCookies distinct session
// cookies of r that have a session id's syntax. The Cookie header is scanned
// in place rather than parsed into http.Cookie values, which would allocate
// for every cookie the portal sets on every request.
func (h *Handler) cookieKeys(r *http.Request) (keys [maxSessionCookies]sessionKey, n int) {
	for _, line := range r.Header["Cookie"] {
		for line != "" && n < len(keys) {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, val, ok := strings.Cut(textproto.TrimString(part), "=")
			if !ok || name != h.CookieName {
				continue
			}
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if !validSessionID(val) {
				continue
			}
			k := keyOf(val)
			if n == 1 && keys[0] == k {
				continue
			}
			keys[n] = k
			n++
		}
	}
	return keys, n
}

// requestSession returns the live session of the request's cookies.
func (h *Handler) requestSession(r *http.Request) (*identity, error) {
	keys, n := h.cookieKeys(r)
	for _, k := range keys[:n] {
		id, err := h.lookupSession(r.Context(), k)
		if err == nil && !h.creatorKnown(id.createdBy) {
			continue // its credential or signing key was removed
		}
		if err == nil || errors.Is(err, store.ErrUnavailable) {
			return id, err
		}
	}
	return nil, store.ErrNotFound
}

// lookupSession returns the live session under k, from the cache when it has
// it, else from the store, which then also pushes its idle expiry.
func (h *Handler) lookupSession(ctx context.Context, k sessionKey) (*identity, error) {
	if h.cache == nil {
		return h.fetchSession(ctx, k, time.Now().UnixNano())
	}
	now := h.cache.Now().UnixNano()
	// Bypassed while the store cannot prove it has heard every logout.
	if !h.store.EventsCurrent(now) {
		return h.fetchSession(ctx, k, time.Now().UnixNano())
	}
	e, res := h.cache.Get(k, now)
	countCacheLookup(res)
	switch res {
	case sessioncache.Hit:
		return e.Value, nil
	case sessioncache.Revalidate:
		// Sessions never change in the store, so the store only has to
		// say it still holds this one (and push its idle expiry).
		if _, err := h.store.Session(ctx, k.Hex(), time.Duration(h.SessionIdle)); err != nil {
			h.cache.Remove(e)
			return nil, err
		}
		return e.Value, nil
	}
	epoch := h.cache.Epoch()
	id, err := h.fetchSession(ctx, k, now)
	if err != nil {
		return nil, err
	}
	h.cache.Put(k, id, now, epoch)
	return id, nil
}

// fetchSession reads the session under k from the store, pushing its idle
// expiry, and refuses it at or past its absolute expiry (now, unix nanoseconds).
func (h *Handler) fetchSession(ctx context.Context, k sessionKey, now int64) (*identity, error) {
	s, err := h.store.Session(ctx, k.Hex(), time.Duration(h.SessionIdle))
	if err != nil {
		return nil, err
	}
	if now >= s.ExpiresAt.UnixNano() {
		return nil, store.ErrNotFound
	}
	id := newIdentity(s)
	id.key = k
	return id, nil
}

// identity is a validated session as the gate uses it, with what it sends
// upstream computed once, so a cached request only copies it.
type identity struct {
	userID  string
	claims  map[string]string // shared: never modified
	expires int64             // absolute expiry, unix nanoseconds
	// createdBy is the session's creator, checked by creatorKnown.
	createdBy string
	// key is the session's store key.
	key sessionKey
	// claimsHeader is the claims header's value, empty without claims.
	claimsHeader string
	// placeholders are set on every request; values are boxed once here
	// because boxing a string into an interface allocates.
	placeholders []placeholder
}

type placeholder struct {
	name  string
	value any
}

// newIdentity prepares s for the gate.
func newIdentity(s store.Session) *identity {
	id := &identity{
		userID:       s.UserID,
		claims:       s.Claims,
		expires:      s.ExpiresAt.UnixNano(),
		createdBy:    s.CreatedBy,
		placeholders: make([]placeholder, 0, 1+len(s.Claims)),
	}
	if len(s.Claims) > 0 {
		keys := make([]string, 0, len(s.Claims))
		for k := range s.Claims {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(';')
			}
			b.WriteString(escapeClaim(k))
			b.WriteByte('=')
			b.WriteString(escapeClaim(s.Claims[k]))
			if k != principal.ReservedClaim {
				id.placeholders = append(id.placeholders, placeholder{"http.auth.user." + k, s.Claims[k]})
			}
		}
		id.claimsHeader = b.String()
	}
	// Last, so that nothing can stand for the user id.
	id.placeholders = append(id.placeholders, placeholder{"http.auth.user.id", s.UserID})
	return id
}

// UserID implements sessioncache.Value.
func (id *identity) UserID() string { return id.userID }

// ExpiresAt implements sessioncache.Value.
func (id *identity) ExpiresAt() int64 { return id.expires }

// applyIdentity tells the upstream who is signed in, through headers the
// client could not have set (ServeHTTP removed them) and Caddy placeholders.
func (h *Handler) applyIdentity(r *http.Request, id *identity) {
	r.Header.Set(h.UserHeader, id.userID)
	if id.claimsHeader != "" {
		r.Header.Set(h.ClaimsHeader, id.claimsHeader)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		for _, p := range id.placeholders {
			repl.Set(p.name, p.value)
		}
	}
}

// forget applies inv to this instance's cache at once, after this instance
// ended sessions in the store; the store's event tells the other instances.
func (h *Handler) forget(inv store.Invalidation) {
	if h.cache != nil {
		h.cache.Invalidate(inv)
	}
}
