// Package caddymodule is the ssogate Caddy module: the http.handlers.ssogate
// handler, its Caddyfile directive and its `caddy ssogate` commands.
package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/failurelimit"
	"github.com/ssogate/ssogate/internal/healthcheck"
	"github.com/ssogate/ssogate/internal/redirect"
	"github.com/ssogate/ssogate/internal/reqclean"
	"github.com/ssogate/ssogate/internal/sessioncache"
	"github.com/ssogate/ssogate/internal/signedtoken"
	"github.com/ssogate/ssogate/internal/skippath"
	"github.com/ssogate/ssogate/internal/tokenbucket"
	"github.com/ssogate/ssogate/plugins/store"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler turns short-lived, single-use sign-in links into sessions, and lets
// only signed-in requests through to the next handler (normally reverse_proxy).
//
// It answers these routes itself (each can be moved or turned off):
//
//	GET    /redirect/{token}                             redeem, Planhat style
//	GET    /consume_ssotoken/?ssoToken={t}&redirect={u}  redeem, FibriCheck style
//	GET    /auth?sso_token={t}&next={u}                  redeem, VSee style
//	POST   /redirect/, /consume_ssotoken, /auth          the confirm page's form (see RedeemConfirm)
//	POST   /sso/tokens                                   mint (API credential)
//	GET    /sso/access?userId={id}                       may this credential mint for id?
//	GET    /sso/sessions?userId={id}                     list a user's sessions (in scope)
//	DELETE /sso/sessions?userId={id}                     revoke a user's sessions and earlier tokens (in scope)
//	DELETE /sso/sessions/{handle}                        end one session (in scope)
//	POST   /sso/logout                                   end this browser's session
//	GET    /sso/health                                   is the store reachable? (for load balancers)
//	GET    /sso/jwks.json                                public keys of identity_assertion
//
// Every other request needs a valid session cookie, except the skip paths. The
// identity headers (X-Forwarded-User, X-Forwarded-Claims by default) are always
// removed from the client's request first, then set from the session, so the
// upstream can trust them.
//
// Placeholders set for signed-in requests, as Caddy's authentication handler
// does:
//
//	{http.auth.user.id}        the user id
//	{http.auth.user.<claim>}   each claim of the session
type Handler struct {
	// The store holding tokens and sessions, a module in the
	// "ssogate.stores" namespace. Default: memory (one instance only).
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=ssogate.stores inline_key=backend"`

	// API credentials that may mint tokens and revoke sessions.
	Credentials []*Credential `json:"credentials,omitempty"`

	// Secrets for HMAC-signed tokens, by key id (the token payload's "kid").
	// Several at once allow rotation: add the new kid, move the minters to
	// it, then remove the old one, which refuses every token still signed
	// with it. Each at least 32 bytes. Global placeholders such as
	// {env.SSOGATE_SIGNING_KEY} are resolved when the config loads, so the
	// secret need not be in the config file.
	SigningKeys map[string]string `json:"signing_keys,omitempty"`

	// How long a minted token stays valid. Default: 30s. At most 5m.
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`
	// A session ends after this long without a request. Default: 30m.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`
	// A session ends this long after sign-in, however busy. Default: 12h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`

	// Name of the session cookie. The __Host- prefix makes browsers insist
	// on Secure, Path=/ and no Domain. Default: __Host-ssogate.
	CookieName string `json:"cookie_name,omitempty"`

	// The gateway's public base URL (https://portal.example.com), used to
	// build minted links. Default: the minting request's scheme and host.
	// Setting it is safer: links are then never built from a Host header.
	PublicURL string `json:"public_url,omitempty"`

	// Hosts, besides the request's own, that redeem links may redirect to
	// (https only). "*.example.com" allows every subdomain.
	RedirectHosts []string `json:"redirect_hosts,omitempty"`

	// Origins allowed to frame the portal, such as https://emr.example.com
	// or https://*.example.com. Setting it makes every response carry
	// `Content-Security-Policy: frame-ancestors 'self' <origins>` (skip
	// paths and the gateway's own answers too; the upstream's other CSP
	// directives are kept), removes the upstream's X-Frame-Options, and
	// makes the session cookie `SameSite=None; Secure; HttpOnly;
	// Partitioned`, so it is sent in a third-party iframe even where
	// third-party cookies are blocked. Default: none; the gateway's own
	// pages then forbid framing and upstream framing headers pass unchanged.
	EmbedFrom []string `json:"embed_from,omitempty"`

	// With embed_from, rewrite the upstream's own Set-Cookie headers to
	// `SameSite=None; Secure; Partitioned`, so the portal's session works in
	// the iframe too. Default: true.
	RewriteUpstreamCookies *bool `json:"rewrite_upstream_cookies,omitempty"`

	// Paths proxied without a session (identity headers are still
	// removed): exact ("/health"), prefix ("/assets/*") or glob
	// ("/assets/*.css") patterns, always starting with a path (a bare
	// "*.css" would pass /admin.css, which Spring serves as /admin),
	// matched case-sensitively against the path the client sent. Only
	// unambiguous paths are skipped: one with dot or empty segments, ";"
	// parameters, backslashes, control characters, invalid UTF-8, what
	// NFKC would change, or a percent-encoded ".", "/", "\", "%" or ";"
	// could mean another path to the upstream (Tomcat, IIS, double
	// decoding), so it is gated like any other.
	Skip []string `json:"skip,omitempty"`

	// Where browsers (Accept: text/html) without a session are sent, with a
	// 302, instead of a 401 page.
	LoginURL string `json:"login_url,omitempty"`

	// Request header carrying the user id to the upstream.
	// Default: X-Forwarded-User.
	UserHeader string `json:"user_header,omitempty"`
	// Request header carrying the session's claims to the upstream, as
	// k=v pairs joined by ";", sorted by key, with "%", ";", "=" and control
	// characters percent-encoded. Default: X-Forwarded-Claims.
	ClaimsHeader string `json:"claims_header,omitempty"`

	// The redeem routes, by name: "redirect" (/redirect/{token}),
	// "consume_ssotoken" and "auth". Routes not named keep their defaults.
	Redeem map[string]*RedeemRoute `json:"redeem,omitempty"`

	// Path prefix of the API and logout routes. Default: /sso.
	APIPrefix string `json:"api_prefix,omitempty"`

	// Failed redemptions allowed per client IP. Default: 30 per minute.
	RedeemRateLimit *RedeemRateLimit `json:"redeem_rate_limit,omitempty"`

	// Who may spend a token with a GET. "auto": a browser's top-level
	// navigation (Sec-Fetch-Mode: navigate, Sec-Fetch-Dest: document)
	// redeems at once; HEAD, a GET without that fetch metadata (mail and
	// chat link scanners, previews, old browsers) and a navigation inside a
	// frame get a small confirm page instead, which leaves the token
	// unused and posts it back same-origin (by script, or its button),
	// and which in a frame first proves that the browser keeps the
	// gateway's cookie there (else a fallback page opens the same link in
	// a new tab). "always": every GET gets the confirm page, and the user
	// presses its button. "off": every GET redeems at once (HEAD never
	// does). Default: auto.
	RedeemConfirm string `json:"redeem_confirm,omitempty"`

	// The in-memory cache of validated sessions, which spares most
	// signed-in requests a store round trip. Default: 10000 sessions, 30s.
	SessionCache *SessionCache `json:"session_cache,omitempty"`

	// Who answers the gateway's errors (401, 403, 429, 503, …): "builtin"
	// pages and JSON, or "caddy": every error is returned to Caddy with its
	// status, and its code as the message, so that the site's handle_errors
	// can brand it ({http.error.status_code}, {http.error.message}; also
	// {ssogate.error.title} and {ssogate.error.advice}). The health
	// endpoint always answers JSON itself. Default: builtin.
	ErrorPages string `json:"error_pages,omitempty"`
	// How many tokens each credential may mint; a credential's own
	// mint_rate_limit overrides it. Default: none.
	MintRateLimit *MintRateLimit `json:"mint_rate_limit,omitempty"`
	// A signed JWT of the user's identity on every signed-in request, and
	// its public keys at <api_prefix>/jwks.json. Default: none.
	IdentityAssertion *IdentityAssertion `json:"identity_assertion,omitempty"`

	store     store.Store
	logger    *zap.Logger
	policy    redirect.Policy
	skip      *skippath.List
	routes    []redeemRoute
	publicURL *url.URL
	owned     *reqclean.Names // request headers only the gateway sets
	creds     credentials
	signing   *signedtoken.Keys

	frameAncestors string // the embed_from source list; empty without embed_from
	pageCSP        string // CSP of the gateway's own pages

	limiter *failurelimit.Limiter // nil with redeem_rate_limit off

	cache       *sessioncache.Cache[*identity] // nil with session_cache off
	clock       func() time.Time               // the session cache's; nil: time.Now
	unsubscribe func()                         // ends the cache's store subscription

	health *healthcheck.Cached // the store check of <api_prefix>/health

	mintLimits map[string]*tokenbucket.Bucket // by credential id; none without a limit
	creators   map[string]struct{}            // configured session creators (creatorKnown)
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.ssogate",
		New: func() caddy.Module { return new(Handler) },
	}
}

const (
	defaultTokenTTL    = 30 * time.Second
	maxTokenTTL        = 5 * time.Minute
	defaultSessionIdle = 30 * time.Minute
	defaultSessionTTL  = 12 * time.Hour
	defaultCookieName  = "__Host-ssogate"
	// DefaultAPIPrefix is where the API, logout and health routes are
	// unless api_prefix says otherwise.
	DefaultAPIPrefix = "/sso"
)

// Provision sets defaults, checks and prepares the configuration, and only
// then loads the store, so that a cheap mistake is refused before any
// connection is opened.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.setDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	if err := h.prepare(); err != nil {
		return err
	}
	if err := h.loadStore(ctx); err != nil {
		return err
	}
	if err := h.provisionSessionCache(); err != nil {
		return err
	}
	return h.registerMetrics(ctx.GetMetricsRegistry())
}

// setDefaults fills in every field left empty.
func (h *Handler) setDefaults() {
	if h.TokenTTL == 0 {
		h.TokenTTL = caddy.Duration(defaultTokenTTL)
	}
	if h.SessionIdle == 0 {
		h.SessionIdle = caddy.Duration(defaultSessionIdle)
	}
	if h.SessionTTL == 0 {
		h.SessionTTL = caddy.Duration(defaultSessionTTL)
	}
	if h.CookieName == "" {
		h.CookieName = defaultCookieName
	}
	if h.UserHeader == "" {
		h.UserHeader = "X-Forwarded-User"
	}
	if h.ClaimsHeader == "" {
		h.ClaimsHeader = "X-Forwarded-Claims"
	}
	if h.APIPrefix == "" {
		h.APIPrefix = DefaultAPIPrefix
	}
	h.APIPrefix = strings.TrimSuffix(h.APIPrefix, "/")
	if h.RewriteUpstreamCookies == nil {
		on := true
		h.RewriteUpstreamCookies = &on
	}
	if h.StoreRaw == nil {
		h.StoreRaw = json.RawMessage(`{"backend":"memory"}`)
	}
}

// prepare turns the configuration into what requests use, refusing what
// cannot work; it opens no connection.
func (h *Handler) prepare() error {
	// The default assertion header is removed even without
	// identity_assertion: no client copy of it ever reaches the portal.
	h.owned = reqclean.New(h.UserHeader, h.ClaimsHeader, h.assertionHeader(), defaultAssertionHeader)
	h.policy = redirect.Policy{Hosts: h.RedirectHosts}
	var err error
	if h.PublicURL != "" {
		u, err := url.Parse(h.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("public_url %q: want https://host[:port] with no path", h.PublicURL)
		}
		u.Path = ""
		h.publicURL = u
	}
	if len(h.Skip) > 0 {
		if h.skip, err = skippath.New(h.Skip); err != nil {
			return err
		}
	}
	if h.routes, err = buildRedeemRoutes(h.Redeem); err != nil {
		return err
	}
	if h.creds, err = newCredentials(h.Credentials); err != nil {
		return err
	}
	if err := h.provisionEmbed(); err != nil {
		return fmt.Errorf("embed_from: %w", err)
	}
	if err := h.provisionAssertion(); err != nil {
		return err
	}
	if len(h.SigningKeys) > 0 {
		secrets := make(map[string][]byte, len(h.SigningKeys))
		repl := caddy.NewReplacer()
		for kid, secret := range h.SigningKeys {
			secrets[kid] = []byte(repl.ReplaceKnown(secret, ""))
		}
		if h.signing, err = signedtoken.NewKeys(secrets); err != nil {
			return fmt.Errorf("signing_keys: %w", err)
		}
	}
	if err := h.provisionConfirm(); err != nil {
		return err
	}
	if err := h.provisionLimits(); err != nil {
		return err
	}
	return h.provisionRateLimit()
}

// loadStore loads the store module, which connects to it.
func (h *Handler) loadStore(ctx caddy.Context) error {
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading store: %w", err)
	}
	st, ok := mod.(store.Store)
	if !ok {
		return fmt.Errorf("module %T is not an ssogate store", mod)
	}
	// A store that takes direct tokens holds them to token_ttl.
	if l, ok := st.(interface{ SetTokenTTL(time.Duration) }); ok {
		l.SetTokenTTL(time.Duration(h.TokenTTL))
	}
	// Watched, so that an outage is logged once and counted.
	h.store = watchStore(st, h.logger)
	h.provisionHealth()
	return nil
}

// Validate checks the config for values that cannot work.
func (h *Handler) Validate() error {
	switch {
	case time.Duration(h.TokenTTL) < 0 || time.Duration(h.TokenTTL) > maxTokenTTL:
		return fmt.Errorf("token_ttl %s: must be at most %s", time.Duration(h.TokenTTL), maxTokenTTL)
	case h.SessionIdle < 0 || h.SessionTTL < 0:
		return errors.New("session_idle and session_ttl must be positive")
	case h.SessionIdle > h.SessionTTL:
		return fmt.Errorf("session_idle %s is longer than session_ttl %s", time.Duration(h.SessionIdle), time.Duration(h.SessionTTL))
	case !isToken(h.CookieName):
		return fmt.Errorf("cookie_name %q is not a valid cookie name", h.CookieName)
	case h.LoginURL != "" && !strings.HasPrefix(h.LoginURL, "https://") && !strings.HasPrefix(h.LoginURL, "/"):
		return fmt.Errorf("login_url %q: want an https URL or a path", h.LoginURL)
	case !strings.HasPrefix(h.APIPrefix, "/"):
		return fmt.Errorf("api_prefix %q must start with /", h.APIPrefix)
	}
	owned := map[string]string{"user_header": h.UserHeader, "claims_header": h.ClaimsHeader}
	if h.IdentityAssertion != nil {
		owned["identity_assertion header"] = h.assertionHeader()
	}
	if err := checkOwnedHeaders(owned); err != nil {
		return err
	}
	return h.validateErrorPages()
}

// Cleanup ends the session cache's subscription to the store. Caddy cleans
// up the store module it loaded, which releases its share of the usage pool.
func (h *Handler) Cleanup() error {
	if h.unsubscribe != nil {
		h.unsubscribe()
	}
	return nil
}

// ServeHTTP walks the request one way: clean it, then one decision (redeem,
// API, skip, gate), each answered by its own handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Before anything reads the request: no client speaks for the gateway.
	h.owned.Clean(r)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// Until the gate sets them from a session, the identity's
		// placeholders are empty, not their own text: a header_up of
		// {http.auth.user.id} on a skip path must not hand the upstream
		// "{http.auth.user.id}" as if it were a user.
		repl.Map(noIdentityPlaceholders)
	}
	// Every answer of the portal's host, the gateway's own and skip paths
	// included, carries the one framing policy.
	w = h.wrapResponse(w)
	if route, tok, ok := h.matchRedeem(r); ok {
		return h.serveRedeem(w, r, route, tok)
	}
	if serve := h.apiRoute(r); serve != nil {
		return serve(w, r)
	}
	if h.skip.Match(r.URL.EscapedPath(), r.URL.Path) {
		h.dropOwnCookies(r)
		return next.ServeHTTP(w, r)
	}
	return h.serveGated(w, r, next)
}

// noIdentityPlaceholders resolves every {http.auth.user.*} placeholder the gate
// has not set to the empty string. The gate's own values take precedence: a
// Caddy replacer asks its static values before the providers added by Map.
func noIdentityPlaceholders(key string) (any, bool) {
	if strings.HasPrefix(key, "http.auth.user.") {
		return "", true
	}
	return nil, false
}

// apiRoute returns the handler of an API or logout route, or nil.
func (h *Handler) apiRoute(r *http.Request) func(http.ResponseWriter, *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, h.APIPrefix+"/")
	if !ok {
		return nil
	}
	if strings.HasPrefix(rest, "sessions/") {
		return h.serveSessions
	}
	switch rest {
	case "tokens":
		return h.serveMint
	case "access":
		return h.serveAccess
	case "sessions":
		return h.serveSessions
	case "logout":
		return h.serveLogout
	case "health":
		return h.serveHealth
	case "jwks.json":
		if h.IdentityAssertion != nil {
			return h.serveJWKS
		}
	}
	return nil
}

// isToken tells whether name is an RFC 9110 token, as header and cookie names
// must be.
func isToken(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
