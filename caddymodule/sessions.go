package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// The session model, in one place:
//
//   - A session ends by logout (POST /sso/logout from the portal's own pages),
//     by an admin (DELETE /sso/sessions/{id} for one, DELETE
//     /sso/sessions?userId=… for all of a user's sessions in the credential's
//     scope), by idle or absolute expiry, or when the credential or signing
//     key that created it is no longer configured.
//   - An admin's reach is the credential's scope: users it may mint for, and
//     only sessions that carry every one of its fixed claims (its tenant).
//   - Revoking a user also refuses, at redeem, every token of that user in
//     the same tenant issued at or before the revocation, through a "revoked
//     before" mark kept as long as such a token can live (see revokeMarkTTL).

// sessionHandle is the public handle of the session under the store key key:
// what listings, DELETE /sso/sessions/{id} and the identity assertion's sid
// name it by. It reveals neither the cookie value nor its store key.
func sessionHandle(key string) string { return store.SessionHandle(key) }

// sessionHandleLen is the length of every handle sessionHandle makes.
const sessionHandleLen = 22

// reaches tells whether a session of userID with claims is in the
// credential's scope: a user it may mint for, and every fixed claim of the
// credential carried with the same value.
func (c *Credential) reaches(userID string, claims map[string]string) bool {
	return c.mayActFor(userID) && claimsCover(claims, c.Claims)
}

// claimsCover tells whether have carries every claim of want.
func claimsCover(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// listedSession is one session in the answer of GET /sso/sessions.
type listedSession struct {
	ID         string `json:"id"`
	CreatedAt  string `json:"createdAt"`
	LastSeenAt string `json:"lastSeenAt"`
	ExpiresAt  string `json:"expiresAt"`
	CreatedBy  string `json:"createdBy"`
}

// serveSessions answers /sso/sessions (GET lists, DELETE revokes) and
// /sso/sessions/{id} (DELETE ends one session).
func (h *Handler) serveSessions(w http.ResponseWriter, r *http.Request) error {
	handle, one := strings.CutPrefix(r.URL.Path, h.APIPrefix+"/sessions/")
	if r.Method != http.MethodDelete && (one || r.Method != http.MethodGet) {
		allowed := "GET, DELETE"
		if one {
			allowed = http.MethodDelete
		}
		w.Header().Set("Allow", allowed)
		return h.refuse(w, r, nil, "method not allowed", errMethod)
	}
	cred, err := h.authorize(w, r, r.Method, func(c *Credential) bool { return c.revoke })
	if cred == nil {
		return err
	}
	if one {
		return h.serveEndSession(w, r, cred, handle)
	}
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		return h.refuse(w, r, cred, "no userId", badRequest("userId is required."))
	}
	if !cred.mayActFor(userID) {
		return h.refuse(w, r, cred, "user out of scope", errForbiddenScope.withDetail("This credential may not manage that user's sessions."))
	}
	if r.Method == http.MethodGet {
		return h.serveListSessions(w, r, cred, userID)
	}
	return h.serveRevoke(w, r, cred, userID)
}

// sessionsInScope lists userID's live sessions that cred reaches.
func (h *Handler) sessionsInScope(ctx context.Context, cred *Credential, userID string) ([]store.Listed, error) {
	all, err := h.store.Sessions(ctx, userID)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	mine := all[:0]
	for _, l := range all {
		if l.UserID == userID && now.Before(l.ExpiresAt) && cred.reaches(l.UserID, l.Claims) {
			mine = append(mine, l)
		}
	}
	slices.SortFunc(mine, func(a, b store.Listed) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return mine, nil
}

// serveListSessions answers GET /sso/sessions?userId=…. lastSeenAt is when
// the store last pushed the idle expiry, which the session cache does at most
// every session_cache ttl: it is that precise. expiresAt is when the session
// ends unless used again: the earlier of its idle and absolute expiry.
func (h *Handler) serveListSessions(w http.ResponseWriter, r *http.Request, cred *Credential, userID string) error {
	list, err := h.sessionsInScope(r.Context(), cred, userID)
	if err != nil {
		h.storeFailed("list sessions", err)
		return h.fail(w, r, errStoreUnavailable, true)
	}
	idle := time.Duration(h.SessionIdle)
	out := make([]listedSession, 0, len(list))
	for _, l := range list {
		seen := l.IdleUntil.Add(-idle)
		if seen.Before(l.CreatedAt) {
			seen = l.CreatedAt
		}
		if now := time.Now(); seen.After(now) {
			seen = now // session_idle was lowered since the last touch
		}
		exp := l.ExpiresAt
		if l.IdleUntil.Before(exp) {
			exp = l.IdleUntil
		}
		out = append(out, listedSession{
			ID:         sessionHandle(l.Key),
			CreatedAt:  rfc3339(l.CreatedAt),
			LastSeenAt: rfc3339(seen),
			ExpiresAt:  rfc3339(exp),
			CreatedBy:  l.CreatedBy,
		})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"userId": userID, "sessions": out})
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// revokeMarkTTL is how long a revocation refuses earlier tokens: as long as
// any token minted before it can live (token_ttl, and the 30 seconds the
// contract gives direct minters), which is at most 5 minutes.
func (h *Handler) revokeMarkTTL() time.Duration {
	return max(time.Duration(h.TokenTTL), defaultTokenTTL)
}

// serveRevoke answers DELETE /sso/sessions?userId=…: first the mark that
// refuses the user's earlier tokens in this tenant, then every session in
// scope ends, on every instance. The order matters: a redemption racing the
// revocation checks the mark after it stored its session (see
// endIfRevoked), so either it sees the mark, or its session is already
// there for the listing below.
func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request, cred *Credential, userID string) error {
	ctx := r.Context()
	err := h.store.MarkRevoked(ctx, userID, store.Revocation{Claims: cred.Claims, At: time.Now().UTC()}, h.revokeMarkTTL())
	var list []store.Listed
	if err == nil {
		list, err = h.sessionsInScope(ctx, cred, userID)
	}
	n := 0
	if err == nil {
		keys := make([]string, len(list))
		for i, l := range list {
			keys[i] = l.Key
		}
		n, err = h.store.EndSessions(ctx, userID, keys)
		for _, k := range keys {
			h.forget(store.Invalidation{SessionKey: k})
		}
	}
	if err != nil {
		h.storeFailed("revoke", err)
		return h.fail(w, r, errStoreUnavailable, true)
	}
	h.audit(zapcore.InfoLevel, "revoked", zap.String("credential", cred.ID), zap.String("user", userID), zap.Int("sessions", n), zap.String("client_ip", clientIP(r)))
	revocations.Inc()
	return writeJSON(w, http.StatusOK, map[string]any{"userId": userID, "revoked": n})
}

// serveEndSession answers DELETE /sso/sessions/{id}. A session out of the
// credential's scope is answered as unknown: a tenant learns nothing of
// another's sessions.
func (h *Handler) serveEndSession(w http.ResponseWriter, r *http.Request, cred *Credential, handle string) error {
	notFound := func() error {
		return h.fail(w, r, errSessionNotFound, true)
	}
	if !validHandle(handle) {
		return notFound()
	}
	ctx := r.Context()
	l, err := h.store.SessionByHandle(ctx, handle)
	if err == nil && !cred.reaches(l.UserID, l.Claims) {
		return notFound()
	}
	n := 0
	if err == nil {
		n, err = h.store.EndSessions(ctx, l.UserID, []string{l.Key})
		h.forget(store.Invalidation{SessionKey: l.Key})
	}
	switch {
	case err == nil && n == 0, isNotFound(err):
		return notFound()
	case err != nil:
		h.storeFailed("end session", err)
		return h.fail(w, r, errStoreUnavailable, true)
	}
	h.audit(zapcore.InfoLevel, "revoked", zap.String("credential", cred.ID), zap.String("user", l.UserID), zap.String("session", handle), zap.Int("sessions", 1), zap.String("client_ip", clientIP(r)))
	revocations.Inc()
	return writeJSON(w, http.StatusOK, map[string]any{"id": handle, "userId": l.UserID, "revoked": 1})
}

// validHandle tells whether s has the shape of a handle: 22 base64url
// characters.
func validHandle(s string) bool {
	return len(s) == sessionHandleLen && token.URLSafe(s)
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

var errSessionNotFound = problem{http.StatusNotFound, "session_not_found",
	"No such session in this credential's scope.",
	"List the user's sessions with GET /sso/sessions?userId=… and use an id from there."}

// endIfRevoked is the redeem's check against revocations, made once the new
// session (under sessionKey) is stored: if a revocation in the grant's
// tenant came at or after the grant was issued, it ends that session and
// reports true, and the redeem answers 403. Checking after storing closes
// the race with serveRevoke (which marks, then lists): either this sees the
// mark, or the revocation sees the session.
//
// A grant's issue time is its iat, which the API writes in whole seconds: a
// token minted within the same second as a revocation is refused too. A
// direct or signed token without a readable iat is refused while any mark
// of its tenant lives (at most revokeMarkTTL).
//
// Tenants are kept apart: a mark carries the fixed claims of the credential
// that revoked, and only refuses grants carrying all of them; a revocation
// by a credential without fixed claims refuses every grant of the user.
func (h *Handler) endIfRevoked(ctx context.Context, grant store.Token, sessionKey string) (bool, error) {
	marks, err := h.store.Revocations(ctx, grant.UserID)
	if err == nil && !grantRevoked(grant, marks) {
		return false, nil
	}
	// Revoked, or unknown: the session must not outlive this answer.
	if derr := h.store.DeleteSession(ctx, sessionKey); err == nil {
		err = derr
	}
	h.forget(store.Invalidation{SessionKey: sessionKey})
	return err == nil, err
}

// grantRevoked tells whether one of marks refuses grant.
func grantRevoked(grant store.Token, marks []store.Revocation) bool {
	issued, err := time.Parse(time.RFC3339, grant.IssuedAt)
	for _, m := range marks {
		if claimsCover(grant.Claims, m.Claims) && (err != nil || !issued.After(m.At)) {
			return true
		}
	}
	return false
}

// creatorKnown tells whether the credential or signing key that created a
// session is still configured: a map lookup, no store round trip. Sessions of
// direct tokens (no creator, or "direct:…") have none to remove.
func (h *Handler) creatorKnown(createdBy string) bool {
	if createdBy == "" || strings.HasPrefix(createdBy, directCreator) {
		return true
	}
	_, ok := h.creators[createdBy]
	return ok
}

// directCreator prefixes the createdBy a direct token named when it is no
// credential or signing key of the config: the session is a direct one, which
// no config change ends, and its listing still says who wrote the token.
const directCreator = "direct:"

// sessionCreator is the createdBy a new session records for a token's:
// a configured credential id or "signed:<kid>" as it is (the session ends
// when that creator is removed), anything else as a direct token's.
func (h *Handler) sessionCreator(createdBy string) string {
	if h.creatorKnown(createdBy) {
		return createdBy
	}
	return directCreator + createdBy
}

// buildCreators is the set creatorKnown looks in: every credential id, and
// "signed:<kid>" for every signing key id.
func (h *Handler) buildCreators() {
	h.creators = make(map[string]struct{}, len(h.Credentials)+len(h.SigningKeys))
	for _, c := range h.Credentials {
		h.creators[c.ID] = struct{}{}
	}
	for kid := range h.SigningKeys {
		h.creators["signed:"+kid] = struct{}{}
	}
}

var errCrossSiteLogout = problem{http.StatusForbidden, "cross_site_logout",
	"Sign-out was refused because the request came from another site.",
	"Sign out with the portal's own sign-out button."}

// refuseCrossSiteLogout answers 403 when crossSiteLogout holds, keeping the
// session; it reports whether it answered.
func (h *Handler) refuseCrossSiteLogout(w http.ResponseWriter, r *http.Request) (bool, error) {
	if !h.crossSite(r, false) {
		return false, nil
	}
	h.audit(zapcore.InfoLevel, "rejected", zap.String("route", "logout"), zap.String("reason", "cross-site"),
		zap.String("origin", quoteShort(r.Header.Get("Origin"))), zap.String("client_ip", clientIP(r)))
	return true, h.fail(w, r, errCrossSiteLogout, wantsJSON(r))
}

// refuseRevoked is the redeem's last step: the new session ends at once, and
// the token counts as refused, when a revocation came after the token was
// issued (see endIfRevoked).
func (h *Handler) refuseRevoked(r *http.Request, rd *redemption) {
	revoked, err := h.endIfRevoked(r.Context(), rd.grant, token.Hash(rd.session))
	switch {
	case err != nil:
		rd.storeErr = err
		rd.end(redeemStoreUnavailable, "revocation check")
	case revoked:
		rd.end(redeemRejected, "issued before a revocation of its user")
	}
	if rd.outcome != "" {
		rd.session = ""
	}
}
