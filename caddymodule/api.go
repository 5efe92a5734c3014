package caddymodule

import (
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/internal/principal"
	"github.com/ssogate/ssogate/internal/strictjson"
	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// mintRequest is the body of POST /sso/tokens; every field is optional.
type mintRequest struct {
	UserID   string            `json:"userId"`
	Redirect string            `json:"redirect"`
	Claims   map[string]string `json:"claims"`
}

// mintResponse is the 201 answer, in the shape the copied portals use.
type mintResponse struct {
	ID                     string `json:"id"`
	SSOToken               string `json:"ssoToken"`
	UserID                 string `json:"userId"`
	CreatedByApplicationID string `json:"createdByApplicationId"`
	CreationTimestamp      string `json:"creationTimestamp"`
	ExpiresAt              string `json:"expiresAt"`
	URL                    string `json:"url"`
}

// maxMintBody bounds a mint request: a few claims fit many times over.
const maxMintBody = 16 << 10

// authorize returns the credential of r if it may do perm, else answers.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, method string, perm func(*Credential) bool) (*Credential, bool) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		_ = h.fail(w, r, errMethod, true)
		return nil, false
	}
	c := h.creds.authenticate(r)
	if c == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssogate"`)
		h.audit(zapcore.InfoLevel, "rejected", zap.String("route", r.URL.Path), zap.String("reason", "no or wrong API key"), zap.String("client_ip", clientIP(r)))
		_ = h.fail(w, r, errUnauthorized, true)
		return nil, false
	}
	if !perm(c) {
		h.audit(zapcore.InfoLevel, "rejected", zap.String("route", r.URL.Path), zap.String("credential", c.ID), zap.String("reason", "permission not allowed"))
		_ = h.fail(w, r, errForbiddenScope.withDetail("This credential is not allowed to do that."), true)
		return nil, false
	}
	return c, true
}

// serveMint answers POST /sso/tokens.
func (h *Handler) serveMint(w http.ResponseWriter, r *http.Request) error {
	cred, ok := h.authorize(w, r, http.MethodPost, func(c *Credential) bool { return c.mint })
	if !ok {
		return nil
	}
	var req mintRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMintBody+1))
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	if len(body) > maxMintBody {
		return h.fail(w, r, badRequest("The request body is larger than 16 KiB."), true)
	}
	if len(body) > 0 {
		if err := strictjson.Unmarshal(body, &req); err != nil {
			return h.fail(w, r, badRequest("The request body is not valid: "+err.Error()), true)
		}
	}

	outOfScope := func(p *problem) error {
		h.audit(zapcore.InfoLevel, "rejected", zap.String("route", "mint"), zap.String("credential", cred.ID), zap.String("reason", p.title))
		return h.fail(w, r, *p, true)
	}
	userID, p := cred.scopeUser(req.UserID)
	if p != nil {
		return outOfScope(p)
	}
	claims, p := cred.scopeClaims(req.Claims)
	if p != nil {
		return outOfScope(p)
	}
	base := h.baseURL(r)
	if req.Redirect != "" {
		if _, err := h.policy.Check(req.Redirect, base.Host); err != nil {
			return h.fail(w, r, errBadRedirect.withDetail("redirect is not allowed: "+err.Error()), true)
		}
	}

	now := time.Now().UTC().Truncate(time.Second)
	ttl := time.Duration(h.TokenTTL)
	tok := token.New()
	rec := store.Token{UserID: userID, Claims: claims, Redirect: req.Redirect, CreatedBy: cred.ID, IssuedAt: now.Format(time.RFC3339)}
	if err := h.store.AddToken(r.Context(), token.Hash(tok), rec, ttl); err != nil {
		h.storeFailed("mint", err)
		return h.fail(w, r, errStoreUnavailable, true)
	}
	h.audit(zapcore.InfoLevel, "minted", zap.String("credential", cred.ID), zap.String("user", userID), zap.String("token", token.LogID(tok)))
	tokensMinted.WithLabelValues(cred.ID).Inc()

	resp := mintResponse{
		ID:                     token.LogID(tok),
		SSOToken:               tok,
		UserID:                 userID,
		CreatedByApplicationID: cred.ID,
		CreationTimestamp:      now.Format(time.RFC3339),
		ExpiresAt:              now.Add(ttl).Format(time.RFC3339),
		URL:                    h.redeemURL(base, tok),
	}
	return writeJSON(w, http.StatusCreated, resp)
}

// redeemURL is the ready link for tok, on the first enabled redeem route.
func (h *Handler) redeemURL(base *url.URL, tok string) string {
	u := *base
	for _, rt := range h.routes {
		if rt.tokenInPath {
			u.Path = rt.path + "/" + tok
			return u.String()
		}
	}
	if len(h.routes) == 0 {
		return ""
	}
	rt := h.routes[0]
	u.Path = rt.path
	u.RawQuery = url.Values{rt.tokenParam: {tok}}.Encode()
	return u.String()
}

// baseURL is where minted links point: public_url, else the request's own
// scheme and host.
func (h *Handler) baseURL(r *http.Request) *url.URL {
	if h.publicURL != nil {
		return h.publicURL
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return &url.URL{Scheme: scheme, Host: r.Host}
}

// scopeUser decides whom a token is for, within the credential's scope.
func (c *Credential) scopeUser(requested string) (string, *problem) {
	if c.User != "" {
		if requested != "" && requested != c.User {
			p := errForbiddenScope.withDetail("This credential mints only for its own fixed user.")
			return "", &p
		}
		return c.User, nil
	}
	if requested == "" {
		p := badRequest("userId is required for this credential.")
		return "", &p
	}
	if err := principal.CheckUserID(requested); err != nil {
		p := badRequest("userId: " + err.Error() + ".")
		return "", &p
	}
	if !c.mayActFor(requested) {
		p := errForbiddenScope.withDetail("This credential may not mint for that user.")
		return "", &p
	}
	return requested, nil
}

// scopeClaims merges the credential's fixed claims with the request's, which
// may only set keys listed in request_claims and never a fixed one.
func (c *Credential) scopeClaims(requested map[string]string) (map[string]string, *problem) {
	if len(requested) == 0 {
		return c.Claims, nil
	}
	out := make(map[string]string, len(c.Claims)+len(requested))
	for k, v := range requested {
		if _, fixed := c.Claims[k]; fixed || !c.settable[k] {
			p := errForbiddenScope.withDetail("This credential may not set the claim " + quoteShort(k) + ".")
			return nil, &p
		}
		if err := principal.CheckClaim(k, v); err != nil {
			p := badRequest(err.Error())
			return nil, &p
		}
		out[k] = v
	}
	for k, v := range c.Claims {
		out[k] = v
	}
	return out, nil
}

// serveAccess answers GET /sso/access?userId=…: may this credential mint for
// that user? Apps use it to decide whether to show the portal button.
func (h *Handler) serveAccess(w http.ResponseWriter, r *http.Request) error {
	cred, ok := h.authorize(w, r, http.MethodGet, func(*Credential) bool { return true })
	if !ok {
		return nil
	}
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		return h.fail(w, r, badRequest("userId is required."), true)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"userId": userID, "access": cred.mint && cred.mayActFor(userID)})
}

// serveRevoke answers DELETE /sso/sessions?userId=…: every session of that user
// ends, on every instance.
func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request) error {
	cred, ok := h.authorize(w, r, http.MethodDelete, func(c *Credential) bool { return c.revoke })
	if !ok {
		return nil
	}
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		return h.fail(w, r, badRequest("userId is required."), true)
	}
	if !cred.mayActFor(userID) {
		return h.fail(w, r, errForbiddenScope.withDetail("This credential may not revoke that user's sessions."), true)
	}
	n, err := h.store.RevokeUser(r.Context(), userID)
	if err != nil {
		h.storeFailed("revoke", err)
		return h.fail(w, r, errStoreUnavailable, true)
	}
	h.forget(store.Invalidation{UserID: userID})
	h.audit(zapcore.InfoLevel, "revoked", zap.String("credential", cred.ID), zap.String("user", userID), zap.Int("sessions", n))
	revocations.Inc()
	return writeJSON(w, http.StatusOK, map[string]any{"userId": userID, "revoked": n})
}

func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return "\"" + s + "\""
}
