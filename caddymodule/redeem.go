package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/internal/principal"
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

// redemption is one redeem request as it walks the steps of a sign-in:
// parse the link → check its target → admit the client → consume the token →
// start a session. Each step fills in what it learnt, or sets the outcome that
// ends the walk; finishRedeem then counts, audits, feeds the failure limiter
// and answers, in one place for every outcome.
type redemption struct {
	route  *redeemRoute
	token  string // as presented; possibly empty or malformed
	target string // where the browser goes on success
	// rawTarget is the redirect target as the link gave it, which the
	// confirm page's form posts back to be checked again.
	rawTarget string
	// confirm is the confirm or fallback page to answer with, when the
	// confirm step leaves the token unused (outcome redeemDeferred or
	// redeemFellBack).
	confirm *confirmPage
	grant   store.Token // what the consumed token stood for
	// session is the new session's id (the cookie value), on success.
	session string

	outcome string // one of the redeem* results; "" while the walk goes on
	reason  string // why it failed, for the audit log
	// retryAfter is how long a rate-limited client should wait.
	retryAfter   time.Duration
	firstRefusal bool   // the first refusal of a streak, which is logged
	release      func() // gives the limiter's reservation back
	storeErr     error  // the store's error, with outcome redeemStoreUnavailable
}

// end sets the outcome that stops the walk.
func (rd *redemption) end(outcome, reason string) {
	rd.outcome, rd.reason = outcome, reason
}

// serveRedeem swaps a token for a session: check the target, consume the token
// (exactly once across all instances), start a fresh session, redirect.
func (h *Handler) serveRedeem(w http.ResponseWriter, r *http.Request, rt *redeemRoute, tok string) error {
	start := time.Now()
	rd := &redemption{route: rt, token: tok}
	h.redeem(r, rd)
	err := h.finishRedeem(w, r, rd)
	if rd.release != nil {
		rd.release()
	}
	if rd.outcome != redeemMethod {
		observeRedeem(start)
	}
	return err
}

// redeem walks rd through the steps until one of them decides the outcome.
func (h *Handler) redeem(r *http.Request, rd *redemption) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		rd.end(redeemMethod, "method "+r.Method)
		return
	}
	for _, step := range []func(*http.Request, *redemption){
		h.admit,
		h.refuseCrossSite,
		h.parseLink,
		h.confirmStep,
		h.consumeToken,
		h.resolveTarget,
		h.startSession,
		h.refuseRevoked,
	} {
		if step(r, rd); rd.outcome != "" {
			return
		}
	}
	rd.outcome = redeemSuccess
}

// admit holds back clients past the failure rate limit, before any lookup.
func (h *Handler) admit(r *http.Request, rd *redemption) {
	release, retry, first, ok := h.admitRedeem(r)
	if !ok {
		rd.retryAfter, rd.firstRefusal = retry, first
		rd.end(redeemRateLimited, "rate limited")
		return
	}
	rd.release = release
}

// parseLink reads the token and the target of a query route's link, or of
// the confirm page's form (a POST: from its body only, never a URL). The
// target is checked before the token is touched: a bad link must not burn a
// good token.
func (h *Handler) parseLink(r *http.Request, rd *redemption) {
	var targets []string
	switch {
	case r.Method == http.MethodPost:
		var err error
		if rd.token, targets, err = rd.route.readConfirmForm(r); err != nil {
			rd.end(redeemRejected, err.Error())
			return
		}
	case rd.route.tokenInPath:
		return
	default:
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			rd.end(redeemRejected, "malformed query")
			return
		}
		toks := q[rd.route.tokenParam]
		if len(toks) != 1 {
			rd.end(redeemRejected, "no single token parameter")
			return
		}
		rd.token, targets = toks[0], q[rd.route.redirectParam]
	}
	switch {
	case len(targets) > 1:
		rd.end(redeemBadRedirect, "several redirect targets")
	case len(targets) == 1 && targets[0] != "":
		rd.rawTarget = targets[0]
		var err error
		if rd.target, err = h.policy.Check(targets[0], r.Host); err != nil {
			rd.end(redeemBadRedirect, err.Error())
		}
	}
}

// consumeToken spends the token: of any number of requests presenting it, on
// any number of instances, exactly one gets its grant.
func (h *Handler) consumeToken(r *http.Request, rd *redemption) {
	grant, reason, err := h.consume(r.Context(), rd.token)
	switch {
	case err != nil:
		rd.storeErr = err
		rd.end(redeemStoreUnavailable, "redeem")
	case reason != "":
		rd.end(redeemRejected, reason)
	default:
		// Direct and signed minters bypass the API's checks.
		if err := principal.Check(grant.UserID, grant.Claims); err != nil {
			rd.end(redeemRejected, "bad grant: "+err.Error())
			return
		}
		rd.grant = grant
	}
}

// resolveTarget falls back on the token's stored target, then on "/". A
// stored target was checked when minted through the API, but a direct or
// signed minter may have written anything.
func (h *Handler) resolveTarget(r *http.Request, rd *redemption) {
	if rd.target == "" && rd.grant.Redirect != "" {
		target, err := h.policy.Check(rd.grant.Redirect, r.Host)
		if err != nil {
			h.audit(zapcore.WarnLevel, "stored redirect refused", zap.String("route", rd.route.name), zap.String("user", rd.grant.UserID), zap.String("reason", err.Error()))
		}
		rd.target = target
	}
	if rd.target == "" {
		rd.target = "/"
	}
}

// startSession ends the browser's previous sessions, if any, by their
// cookies' keys, and creates a fresh one: a new id on every redemption, so no
// session can be fixed by whoever planted a cookie.
func (h *Handler) startSession(r *http.Request, rd *redemption) {
	keys, n := h.cookieKeys(r)
	for _, k := range keys[:n] {
		key := k.Hex()
		if err := h.store.DeleteSession(r.Context(), key); err != nil {
			// The new session does not depend on it: the old one
			// still ends at its own expiry, and its cookie is replaced.
			h.storeFailed("end previous session", err)
			continue
		}
		h.forget(store.Invalidation{SessionKey: key})
	}
	id, err := h.newSession(r.Context(), rd.grant)
	if err != nil {
		rd.storeErr = err
		rd.end(redeemStoreUnavailable, "create session")
		return
	}
	rd.session = id
}

// finishRedeem is the one exit of a redemption: it counts and audits the
// outcome, feeds the failure limiter, and answers.
func (h *Handler) finishRedeem(w http.ResponseWriter, r *http.Request, rd *redemption) error {
	hdr := w.Header()
	// The URL carries a secret: no cache may keep the answer, and no
	// Referer may carry it to the next page.
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	rt := rd.route
	if rd.outcome != redeemMethod {
		countRedeem(rt, rd.outcome)
	}
	route, ip := zap.String("route", rt.name), zap.String("client_ip", clientIP(r))
	switch rd.outcome {
	case redeemSuccess:
		h.audit(zapcore.InfoLevel, "redeemed", route, zap.String("user", rd.grant.UserID), zap.String("credential", rd.grant.CreatedBy),
			zap.String("token", token.LogID(rd.token)), zap.String("session", token.LogID(rd.session)), ip)
		sessionsCreated.Inc()
		h.clearProbe(w, r)
		http.SetCookie(w, h.sessionCookie(rd.session))
		hdr.Set("Location", rd.target)
		w.WriteHeader(redeemStatus(r))
		return nil
	case redeemDeferred, redeemFellBack, redeemCrossSite:
		return h.answerConfirm(w, r, rd, route, ip)
	case redeemMethod:
		hdr.Set("Allow", "GET, HEAD, POST")
		return h.fail(w, r, errMethod, false)
	case redeemRateLimited:
		// Logged once per streak of refusals: a client hammering the
		// route must not fill the log.
		level := zapcore.DebugLevel
		if rd.firstRefusal {
			level = zapcore.WarnLevel
		}
		h.audit(level, "rejected", route, zap.String("reason", rd.reason), ip)
		hdr.Set("Retry-After", strconv.Itoa(int((rd.retryAfter+time.Second-1)/time.Second)))
		return h.fail(w, r, errRateLimited, false)
	case redeemStoreUnavailable:
		h.storeFailed(rd.reason, rd.storeErr)
		return h.fail(w, r, storeProblem("redeem", rd.storeErr), false)
	case redeemBadRedirect:
		h.audit(zapcore.InfoLevel, "rejected", route, zap.String("reason", rd.reason), ip)
		return h.fail(w, r, errBadRedirect, false)
	default: // redeemRejected: the only outcome the limiter counts
		h.audit(zapcore.InfoLevel, "rejected", route, zap.String("reason", rd.reason), ip)
		h.redeemFailed(r)
		return h.fail(w, r, errInvalidToken, false)
	}
}

// consume redeems tok. A token that creates no session gets a reason (for the
// audit log); err is only for a store that could not answer.
func (h *Handler) consume(ctx context.Context, tok string) (grant store.Token, reason string, err error) {
	switch token.Classify(tok) {
	case token.Opaque:
		grant, err = h.store.TakeToken(ctx, token.Hash(tok))
		if errors.Is(err, store.ErrNotFound) {
			if err != store.ErrNotFound {
				// The store said why (a direct token outside token_ttl).
				return grant, err.Error(), nil
			}
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
	grant := store.Token{UserID: c.Subject, Claims: c.Claims, Redirect: c.Redirect, CreatedBy: "signed:" + c.KeyID}
	if c.IssuedAt > 0 {
		grant.IssuedAt = time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339) // for revocation marks
	}
	return grant, "", nil
}
