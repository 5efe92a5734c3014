package caddymodule

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/internal/fetchmeta"
	"github.com/ssogate/ssogate/internal/token"
)

// The values of redeem_confirm.
const (
	// confirmAuto redeems a browser's top-level navigation at once and
	// answers everything else (HEAD, GETs without fetch metadata, frames)
	// with the confirm page.
	confirmAuto = "auto"
	// confirmAlways answers every GET with the confirm page, whose button
	// the user must press.
	confirmAlways = "always"
	// confirmOff redeems every GET at once, frames included.
	confirmOff = "off"
)

// Form fields of the confirm page besides the route's own token and
// redirect parameters.
const (
	// pathTokenField carries the token of the path route (/redirect/{token}),
	// whose POST goes to /redirect/ so that no URL holds the token.
	pathTokenField = "token"
	// stepField says which page posted: stepProbe (the confirm page, which
	// set the probe cookie) or stepAccess (the fallback page, after the
	// browser granted storage access: the probe is run once more).
	stepField  = "ssogate_step"
	stepProbe  = "probe"
	stepAccess = "access"
)

// maxConfirmBody bounds a confirm POST: a signed token (2 KiB), a redirect
// target and the field names fit many times over.
const maxConfirmBody = 16 << 10

// probeMaxAge is how long the probe cookie lives, in seconds: long enough for
// a slow click on the confirm page's button, short enough to be gone soon.
const probeMaxAge = 120

// provisionConfirm checks redeem_confirm and sets its default.
func (h *Handler) provisionConfirm() error {
	switch h.RedeemConfirm {
	case "":
		h.RedeemConfirm = confirmAuto
	case confirmAuto, confirmAlways, confirmOff:
	default:
		return fmt.Errorf("redeem_confirm %q: want auto, always or off", h.RedeemConfirm)
	}
	return nil
}

// unmarshalConfirm parses `redeem_confirm auto|always|off`.
func (h *Handler) unmarshalConfirm(d *caddyfile.Dispenser) error {
	var v string
	if !d.AllArgs(&v) {
		return d.ArgErr()
	}
	switch v {
	case confirmAuto, confirmAlways, confirmOff:
		h.RedeemConfirm = v
		return nil
	}
	return d.Errf("redeem_confirm: want auto, always or off, got %q", v)
}

// confirmStep decides, after the redirect target was checked and before the
// token is touched, whether this request may spend it. When it may not, it
// ends the redemption with the page to answer: the confirm page (HEAD, a GET
// that is not a top-level browser navigation, any GET with redeem_confirm
// always), or the fallback page (a POST whose browser did not send the probe
// cookie back).
//
// The rule it keeps: a token is spent only by a request that brings proof
// that the session will stick. A top-level navigation of a browser keeps
// first-party cookies; anything else must first show it keeps the probe
// cookie, which the confirm page sets with exactly the attributes of the
// session cookie. No page it leads to looks at the store, so neither the
// confirm page nor the fallback tells a valid token from an invalid one, and
// none of them counts against the failure limit. A malformed token goes on,
// to be refused (and counted) as ever.
func (h *Handler) confirmStep(r *http.Request, rd *redemption) {
	if token.Classify(rd.token) == token.Invalid {
		return
	}
	dest := fetchmeta.Navigation(r.Header)
	switch {
	case r.Method == http.MethodPost:
		if validProbe(r, h.probeCookieName()) {
			return
		}
		if r.PostForm.Get(stepField) == stepAccess {
			// The fallback page's storage access was granted: probe
			// once more, now that the frame may keep cookies.
			h.deferRedeem(rd, "storage access granted", true)
			return
		}
		h.fallBack(rd, dest == fetchmeta.Frame)
	case r.Method == http.MethodHead:
		h.deferRedeem(rd, "head", true)
	case h.RedeemConfirm == confirmOff, h.RedeemConfirm == confirmAuto && dest == fetchmeta.Document:
		return
	case h.RedeemConfirm == confirmAlways:
		h.deferRedeem(rd, "redeem_confirm always", false)
	case dest == fetchmeta.Frame:
		h.deferRedeem(rd, "frame probe", true)
	default:
		h.deferRedeem(rd, "not a browser navigation", true)
	}
}

// deferRedeem ends rd with the confirm page, which sets the probe cookie and
// posts the token back to the route: by script when auto, else on a click.
func (h *Handler) deferRedeem(rd *redemption, reason string, auto bool) {
	rd.end(redeemDeferred, reason)
	p := &confirmPage{
		Title:  "Sign in to the portal",
		Advice: "Press Continue to sign in.",
		Button: "Continue",
		Action: rd.route.formAction(),
		Fields: rd.route.formFields(rd.token, rd.rawTarget, stepProbe),
	}
	if auto {
		p.Title, p.Advice, p.Script = "Signing you in…", "If nothing happens, press Continue.", scriptSubmit
	}
	rd.confirm = p
}

// fallBack ends rd with the fallback page: the POST came back without the
// probe cookie, so the browser keeps no cookie here (in a frame: third-party
// cookies fully blocked) and spending the token would sign nobody in. The
// link stays unused; the page offers to open it where the browser keeps
// cookies.
func (h *Handler) fallBack(rd *redemption, inFrame bool) {
	rt := rd.route
	p := &confirmPage{
		Title:    "Your browser did not keep the sign-in cookie.",
		Advice:   "Allow cookies for this site, then open the link again.",
		Link:     rt.link(rd.token, rd.rawTarget),
		LinkText: "Open the link again",
	}
	reason := "no probe cookie at top level"
	if inFrame {
		reason = "no probe cookie in a frame"
		p.Title = "Your browser keeps no sign-in inside this frame."
		p.Advice = "Open the portal in a new tab to sign in there. Your sign-in link has not been used."
		p.LinkText = "Open the portal in a new tab"
		p.NewTab = true
		// Where the browser has the Storage Access API, the user may
		// let the frame keep cookies; the form then probes again.
		p.Access = "Allow sign-in inside this frame"
		p.Action = rt.formAction()
		p.Fields = rt.formFields(rd.token, rd.rawTarget, stepAccess)
		p.Script = scriptAccess
	}
	rd.end(redeemFellBack, reason)
	rd.confirm = p
}

// answerConfirm is finishRedeem's answer for the outcomes of the confirm
// step and of refuseCrossSite; route and ip are the audit fields every
// outcome has, ip last.
func (h *Handler) answerConfirm(w http.ResponseWriter, r *http.Request, rd *redemption, route, ip zap.Field) error {
	reason := zap.String("reason", rd.reason)
	switch rd.outcome {
	case redeemCrossSite:
		h.audit(zapcore.WarnLevel, "rejected", route, reason, zap.String("origin", r.Header.Get("Origin")),
			zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")), ip)
		return h.fail(w, r, errCrossSite, false)
	case redeemDeferred:
		h.audit(zapcore.InfoLevel, "deferred", route, reason, zap.String("token", token.LogID(rd.token)), ip)
		http.SetCookie(w, h.probeCookie(newProbeValue()))
	default: // redeemFellBack
		h.audit(zapcore.InfoLevel, "fell back", route, reason, zap.String("token", token.LogID(rd.token)), ip)
	}
	return h.writeConfirmPage(w, r, *rd.confirm)
}

// clearProbe deletes the probe cookie when a confirm POST signed in: the
// session cookie takes over.
func (h *Handler) clearProbe(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		http.SetCookie(w, h.probeCookie(""))
	}
}

// refuseCrossSite ends a POST that another site's page sent (login CSRF):
// 403, the token not even read. It is no guess at a token, so the failure
// limit does not count it.
func (h *Handler) refuseCrossSite(r *http.Request, rd *redemption) {
	if r.Method == http.MethodPost && h.crossSite(r, true) {
		rd.end(redeemCrossSite, "cross-site post")
	}
}

// errCrossSite answers a confirm POST sent by another site's page.
var errCrossSite = problem{http.StatusForbidden, "cross_site",
	"This sign-in was sent by another site.",
	"Go back to the app and open the link from there again."}

// redeemStatus is the status of a successful redemption's redirect: 302 for
// a GET, as ever; 303 for the confirm page's POST, so the target is fetched
// with a GET.
func redeemStatus(r *http.Request) int {
	if r.Method == http.MethodPost {
		return http.StatusSeeOther
	}
	return http.StatusFound
}

// errConfirmForm is a confirm POST that is not the confirm page's form.
var errConfirmForm = errors.New("not a confirm form")

// readConfirmForm parses the body of a confirm POST into r.PostForm (the
// query is not read: on a POST, the token and target come from the form
// only) and returns the token and the redirect targets it holds.
func (rt *redeemRoute) readConfirmForm(r *http.Request) (tok string, targets []string, err error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", nil, fmt.Errorf("%w: content type %q", errConfirmForm, r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxConfirmBody+1))
	if err != nil {
		return "", nil, fmt.Errorf("%w: body: %v", errConfirmForm, err)
	}
	if len(body) > maxConfirmBody {
		return "", nil, fmt.Errorf("%w: body over %d bytes", errConfirmForm, maxConfirmBody)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", errConfirmForm, err)
	}
	r.PostForm = form
	name := pathTokenField
	if !rt.tokenInPath {
		name = rt.tokenParam
		targets = form[rt.redirectParam]
	}
	toks := form[name]
	if len(toks) != 1 {
		return "", nil, fmt.Errorf("%w: no single %s field", errConfirmForm, name)
	}
	return toks[0], targets, nil
}

// formAction is where the confirm page posts: the route's own path, with the
// token in the body. The path route posts to /redirect/, with no token in
// the path.
func (rt *redeemRoute) formAction() string {
	if rt.tokenInPath {
		return rt.path + "/"
	}
	return rt.path
}

// formFields are the hidden fields of the confirm and fallback pages.
func (rt *redeemRoute) formFields(tok, rawTarget, step string) []formField {
	if rt.tokenInPath {
		return []formField{{pathTokenField, tok}, {stepField, step}}
	}
	f := []formField{{rt.tokenParam, tok}}
	if rawTarget != "" {
		f = append(f, formField{rt.redirectParam, rawTarget})
	}
	return append(f, formField{stepField, step})
}

// link is the sign-in link itself, as a relative URL: what the fallback
// opens where the browser keeps cookies.
func (rt *redeemRoute) link(tok, rawTarget string) string {
	if rt.tokenInPath {
		return rt.path + "/" + tok
	}
	q := url.Values{rt.tokenParam: {tok}}
	if rawTarget != "" {
		q.Set(rt.redirectParam, rawTarget)
	}
	return rt.path + "?" + q.Encode()
}

// probeCookieName is the session cookie's name with -probe appended.
func (h *Handler) probeCookieName() string { return h.CookieName + probeSuffix }

// probeSuffix makes the probe cookie's name from the session cookie's.
const probeSuffix = "-probe"

// probeCookie has the attributes of the session cookie, so that the browser
// keeping it proves it will keep the session; an empty value deletes it. Its
// value is random and means nothing: only its return is looked at.
func (h *Handler) probeCookie(value string) *http.Cookie {
	c := h.sessionCookie(value)
	c.Name = h.probeCookieName()
	if value != "" {
		c.MaxAge = probeMaxAge
	}
	return c
}

// probeLen is the length of a probe cookie's value: 96 bits in base64url.
const probeLen = 16

func newProbeValue() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails; see token.New
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validProbe reports whether r brings back a probe cookie.
func validProbe(r *http.Request, name string) bool {
	for _, c := range r.CookiesNamed(name) {
		if len(c.Value) == probeLen && token.Classify(c.Value) == token.Opaque {
			return true
		}
	}
	return false
}

// newNonce returns a fresh CSP nonce: 144 random bits in base64url, which
// CSP's base64-value admits and HTML attributes need not escape.
func newNonce() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
