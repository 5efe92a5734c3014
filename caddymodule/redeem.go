package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// RedeemRoute places one redeem route. Fields left empty keep the route's
// defaults.
type RedeemRoute struct {
	// Path of the route. The "redirect" route takes the token as the path
	// segment after it (/redirect/{token}); the others match the path with
	// or without a trailing slash and read the token from the query.
	Path string `json:"path,omitempty"`
	// Query parameter carrying the token (query routes only).
	TokenParam string `json:"token_param,omitempty"`
	// Query parameter carrying the redirect target (query routes only).
	RedirectParam string `json:"redirect_param,omitempty"`
	// Turns the route off.
	Disabled bool `json:"disabled,omitempty"`
}

// defaultRedeemRoutes are the three styles of the portals ssogate copies.
var defaultRedeemRoutes = map[string]RedeemRoute{
	"redirect":         {Path: "/redirect"},
	"consume_ssotoken": {Path: "/consume_ssotoken", TokenParam: "ssoToken", RedirectParam: "redirect"},
	"auth":             {Path: "/auth", TokenParam: "sso_token", RedirectParam: "next"},
}

// redeemRoute is a provisioned route.
type redeemRoute struct {
	name                      string
	path                      string
	tokenInPath               bool
	tokenParam, redirectParam string
}

func buildRedeemRoutes(cfg map[string]*RedeemRoute) ([]redeemRoute, error) {
	for name := range cfg {
		if _, ok := defaultRedeemRoutes[name]; !ok {
			return nil, fmt.Errorf("redeem: unknown route %q (want redirect, consume_ssotoken, auth)", name)
		}
	}
	var routes []redeemRoute
	for _, name := range []string{"redirect", "consume_ssotoken", "auth"} {
		rt := defaultRedeemRoutes[name]
		if c := cfg[name]; c != nil {
			if c.Disabled {
				continue
			}
			if c.Path != "" {
				rt.Path = c.Path
			}
			if c.TokenParam != "" {
				rt.TokenParam = c.TokenParam
			}
			if c.RedirectParam != "" {
				rt.RedirectParam = c.RedirectParam
			}
		}
		p := strings.TrimSuffix(rt.Path, "/")
		if !strings.HasPrefix(p, "/") || p == "" {
			return nil, fmt.Errorf("redeem %s: path %q must start with / and not be the root", name, rt.Path)
		}
		for _, other := range routes {
			if other.path == p {
				return nil, fmt.Errorf("redeem %s and %s share the path %s", other.name, name, p)
			}
		}
		routes = append(routes, redeemRoute{
			name:          name,
			path:          p,
			tokenInPath:   name == "redirect",
			tokenParam:    rt.TokenParam,
			redirectParam: rt.RedirectParam,
		})
	}
	return routes, nil
}

// matchRedeem finds the redeem route of r, and the token it presents (possibly
// empty or malformed: that is the route's answer to give).
func (h *Handler) matchRedeem(r *http.Request) (*redeemRoute, string, bool) {
	p := r.URL.Path
	for i := range h.routes {
		rt := &h.routes[i]
		if rt.tokenInPath {
			if tok, ok := strings.CutPrefix(p, rt.path+"/"); ok {
				return rt, tok, true
			}
			continue
		}
		if p == rt.path || p == rt.path+"/" {
			return rt, "", true
		}
	}
	return nil, "", false
}

// serveRedeem swaps a token for a session: check the target, consume the token
// (exactly once across all instances), start a fresh session, redirect.
func (h *Handler) serveRedeem(w http.ResponseWriter, r *http.Request, rt *redeemRoute, tok string) error {
	hdr := w.Header()
	// The URL carries a secret: no cache may keep the answer, and no
	// Referer may carry it to the next page.
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		return h.fail(w, r, errMethod, false)
	}
	defer observeRedeem(time.Now())
	release, err := h.admitRedeem(w, r, rt)
	if release == nil {
		return err
	}
	defer release()

	badRedirect := func(reason string) error {
		h.audit(zapcore.InfoLevel, "rejected", zap.String("route", rt.name), zap.String("reason", reason))
		countRedeem(rt, redeemBadRedirect)
		return h.fail(w, r, errBadRedirect, false)
	}
	target := ""
	if !rt.tokenInPath {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			h.reject(r, rt, "malformed query")
			return h.fail(w, r, errInvalidToken, false)
		}
		toks, targets := q[rt.tokenParam], q[rt.redirectParam]
		if len(toks) != 1 {
			h.reject(r, rt, "no single token parameter")
			return h.fail(w, r, errInvalidToken, false)
		}
		tok = toks[0]
		if len(targets) > 1 {
			return badRedirect("several redirect targets")
		}
		if len(targets) == 1 && targets[0] != "" {
			// Checked before the token is touched: a bad link must not
			// burn a good token.
			if target, err = h.policy.Check(targets[0], r.Host); err != nil {
				return badRedirect(err.Error())
			}
		}
	}

	grant, reason, err := h.consume(r.Context(), tok)
	if err != nil {
		h.storeFailed("redeem", err)
		countRedeem(rt, redeemStoreUnavailable)
		return h.fail(w, r, errStoreUnavailable, false)
	}
	if reason == "" {
		// Direct and signed minters bypass the API's checks.
		reason = checkGrant(grant)
	}
	if reason != "" {
		h.reject(r, rt, reason)
		return h.fail(w, r, errInvalidToken, false)
	}

	if target == "" && grant.Redirect != "" {
		// A stored target was checked when minted through the API, but a
		// direct or signed minter may have written anything.
		if target, err = h.policy.Check(grant.Redirect, r.Host); err != nil {
			h.audit(zapcore.WarnLevel, "stored redirect refused", zap.String("route", rt.name), zap.String("user", grant.UserID), zap.String("reason", err.Error()))
			target = ""
		}
	}
	if target == "" {
		target = "/"
	}

	// A fresh id on every redemption (no session fixation); the browser's
	// previous session, if any, ends.
	if _, old, err := h.requestSession(r); err == nil {
		oldKey := old.hex()
		_ = h.store.DeleteSession(r.Context(), oldKey)
		h.forget(store.Invalidation{SessionKey: oldKey})
	}
	id, err := h.newSession(r.Context(), grant.UserID, grant.Claims)
	if err != nil {
		h.storeFailed("create session", err)
		countRedeem(rt, redeemStoreUnavailable)
		return h.fail(w, r, errStoreUnavailable, false)
	}
	h.audit(zapcore.InfoLevel, "redeemed", zap.String("route", rt.name), zap.String("user", grant.UserID),
		zap.String("credential", grant.CreatedBy), zap.String("token", token.LogID(tok)), zap.String("session", token.LogID(id)))
	countRedeem(rt, redeemSuccess)
	sessionsCreated.Inc()
	http.SetCookie(w, h.sessionCookie(id))
	hdr.Set("Location", target)
	w.WriteHeader(http.StatusFound)
	return nil
}

// consume redeems tok. A token that creates no session gets a reason (for the
// audit log); err is only for a store that could not answer.
func (h *Handler) consume(ctx context.Context, tok string) (grant store.Token, reason string, err error) {
	switch token.Classify(tok) {
	case token.Opaque:
		grant, err = h.store.TakeToken(ctx, token.Hash(tok))
		if errors.Is(err, store.ErrNotFound) {
			return grant, "unknown, used or expired", nil
		}
		return grant, "", err
	case token.Signed:
		return h.consumeSigned(ctx, tok)
	default:
		return grant, "malformed", nil
	}
}

// consumeSigned verifies a signed token, then marks its jti used until the
// token would expire anyway, which is what makes it single-use.
func (h *Handler) consumeSigned(ctx context.Context, tok string) (store.Token, string, error) {
	if h.signing == nil {
		return store.Token{}, "signed token but no signing_keys", nil
	}
	now := time.Now()
	c, err := h.signing.Verify(tok, now, time.Duration(h.TokenTTL))
	if err != nil {
		return store.Token{}, "signed: " + err.Error(), nil
	}
	// Whole seconds from the current second to exp: never shorter than the
	// token's remaining life, and sent as `SET … NX EX <seconds>`.
	left := time.Duration(c.Expiry-now.Unix()) * time.Second
	fresh, err := h.store.UseOnce(ctx, c.ID, left)
	if err != nil {
		return store.Token{}, "", err
	}
	if !fresh {
		return store.Token{}, "signed: already used", nil
	}
	return store.Token{UserID: c.Subject, Claims: c.Claims, Redirect: c.Redirect, CreatedBy: "signed:" + c.KeyID}, "", nil
}

func (h *Handler) reject(r *http.Request, rt *redeemRoute, reason string) {
	h.audit(zapcore.InfoLevel, "rejected", zap.String("route", rt.name), zap.String("reason", reason), zap.String("client_ip", clientIP(r)))
	h.redeemFailed(r, rt)
}
