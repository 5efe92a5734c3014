package caddymodule

import (
	"io"
	"net/http"
	"net/url"
	"time"

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

// authorize returns the credential of r if it may do perm. Otherwise it
// answers, and returns a nil credential and the error for ServeHTTP to
// return (nil when the answer is written).
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, method string, perm func(*Credential) bool) (*Credential, error) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		return nil, h.refuse(w, r, nil, "method not allowed", errMethod)
	}
	c := h.creds.authenticate(r)
	if c == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssogate"`)
		reason, label := "wrong API key", authWrongKey
		if r.Header.Get("Authorization") == "" {
			reason, label = "no API key", authNoKey
		}
		apiAuthFailures.WithLabelValues(label).Inc()
		return nil, h.refuse(w, r, nil, reason, errUnauthorized)
	}
	if !perm(c) {
		apiAuthFailures.WithLabelValues(authNotAllowed).Inc()
		return nil, h.refuse(w, r, c, "permission not allowed", errForbiddenScope.withDetail("This credential is not allowed to do that."))
	}
	return c, nil
}

// refuse is the one exit of a refused API request: it audits the refusal,
// with the client IP (as Caddy determines it) and the credential when one
// was recognised, then answers with p.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, cred *Credential, reason string, p problem) error {
	fields := []zap.Field{zap.String("route", r.URL.Path), zap.String("reason", reason), zap.String("client_ip", clientIP(r))}
	if cred != nil {
		fields = append(fields, zap.String("credential", cred.ID))
	}
	h.audit(zapcore.InfoLevel, "rejected", fields...)
	return h.fail(w, r, p, true)
}

// serveMint answers POST /sso/tokens.
func (h *Handler) serveMint(w http.ResponseWriter, r *http.Request) error {
	cred, err := h.authorize(w, r, http.MethodPost, func(c *Credential) bool { return c.mint })
	if cred == nil {
		return err
	}
	if limited, err := h.mintLimited(w, r, cred); limited {
		return err
	}
	var req mintRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMintBody+1))
	if err != nil {
		return h.refuse(w, r, cred, "body not readable", badRequest("The request body could not be read."))
	}
	if len(body) > maxMintBody {
		return h.refuse(w, r, cred, "body too large", badRequest("The request body is larger than 16 KiB."))
	}
	if len(body) > 0 {
		if err := strictjson.Unmarshal(body, &req); err != nil {
			return h.refuse(w, r, cred, "body not valid", badRequest("The request body is not valid: "+err.Error()))
		}
	}

	userID, p := cred.scopeUser(req.UserID)
	if p != nil {
		return h.refuse(w, r, cred, p.title, *p)
	}
	claims, p := cred.scopeClaims(req.Claims)
	if p != nil {
		return h.refuse(w, r, cred, p.title, *p)
	}
	base := h.baseURL(r)
	if req.Redirect != "" {
		if _, err := h.policy.Check(req.Redirect, base.Host); err != nil {
			return h.refuse(w, r, cred, "redirect not allowed", errBadRedirect.withDetail("redirect is not allowed: "+err.Error()))
		}
	}

	now := time.Now().UTC().Truncate(time.Second)
	ttl := time.Duration(h.TokenTTL)
	tok := token.New()
	rec := store.Token{UserID: userID, Claims: claims, Redirect: req.Redirect, CreatedBy: cred.ID, IssuedAt: now.Format(time.RFC3339)}
	if err := h.store.AddToken(r.Context(), token.Hash(tok), rec, ttl); err != nil {
		h.storeFailed("mint", err)
		return h.fail(w, r, storeProblem("mint", err), true)
	}
	h.audit(zapcore.InfoLevel, "minted", zap.String("credential", cred.ID), zap.String("user", userID), zap.String("token", token.LogID(tok)), zap.String("client_ip", clientIP(r)))
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
	cred, err := h.authorize(w, r, http.MethodGet, func(*Credential) bool { return true })
	if cred == nil {
		return err
	}
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		return h.refuse(w, r, cred, "no userId", badRequest("userId is required."))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"userId": userID, "access": cred.mint && cred.mayActFor(userID)})
}

func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return "\"" + s + "\""
}
