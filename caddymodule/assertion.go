package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/assertion"
)

// IdentityAssertion makes the gateway send, on every signed-in request it
// lets through, a JWT the upstream can verify instead of trusting a header:
//
//	X-Ssogate-Assertion: <header>.<payload>.<signature>
//
// signed with ES256 (header: alg ES256, kid, typ JWT), whose payload says
//
//	iss     the site's origin (scheme://host[:port] of the request), or public_url
//	aud     audience, default the issuer
//	sub     the user id
//	claims  the session's claims, an object of strings
//	sid     the session's public handle (never the cookie nor its hash)
//	iat     when it was signed
//	exp     at most ttl after iat, and never after the session's end
//
// The public keys are published as a JWK Set at GET <api_prefix>/jwks.json
// (no credential needed, cacheable for 5 minutes). An upstream checks the
// signature with the key of the header's kid from that set, the alg (ES256
// only), iss, aud and exp.
//
// The client's own copy of the header is removed from every request, skip
// paths included. One assertion is signed per session and reused for half
// its ttl, so the gate's cost stays a map lookup; the metric
// ssogate_assertions_signed_total counts the signatures.
type IdentityAssertion struct {
	// The signing keys: P-256 private keys in PEM files, PKCS#8 ("PRIVATE
	// KEY", as `caddy ssogate assertion-key` writes them) or SEC 1 ("EC
	// PRIVATE KEY"). The first signs; all are published, so that keys
	// rotate: add the new key second, deploy, wait 5 minutes (the key set's
	// max-age), move it first, and remove the old one a ttl later. At least
	// one.
	Keys []*AssertionKey `json:"keys,omitempty"`

	// The aud claim. Default: the issuer.
	Audience string `json:"audience,omitempty"`

	// Request header carrying the assertion. Default: X-Ssogate-Assertion.
	Header string `json:"header,omitempty"`

	// How long an assertion is valid (exp − iat), in whole seconds.
	// Default: 60s. At most 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`

	cache *assertion.Cache
}

// AssertionKey is one signing key of identity_assertion.
type AssertionKey struct {
	// The key id, the kid of the JOSE header and of the JWK: letters,
	// digits, '-', '_' and '.', at most 64.
	ID string `json:"id"`
	// Path of the PEM file. Global placeholders such as
	// {env.SSOGATE_ASSERTION_KEY} and {file.…} are resolved when the
	// config loads. The file should be readable by Caddy only (mode 0600).
	File string `json:"file"`
}

const (
	defaultAssertionHeader = "X-Ssogate-Assertion"
	defaultAssertionTTL    = 60 * time.Second
	// jwksMaxAge is the key set's Cache-Control max-age, and so how long to
	// wait between publishing a new key and signing with it.
	jwksMaxAge = 5 * time.Minute
)

var assertionsSigned = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "ssogate",
	Name:      "assertions_signed_total",
	Help:      "Identity assertions signed; far fewer than signed-in requests while assertions are reused.",
})

// assertionHeader is the header of identity_assertion, which the request
// cleaner removes from every client request; empty without
// identity_assertion.
func (h *Handler) assertionHeader() string {
	a := h.IdentityAssertion
	if a == nil {
		return ""
	}
	if a.Header == "" {
		a.Header = defaultAssertionHeader
	}
	a.Header = http.CanonicalHeaderKey(a.Header)
	return a.Header
}

// provisionAssertion loads the keys of identity_assertion. It runs after
// public_url and the identity headers are set up.
func (h *Handler) provisionAssertion() error {
	a := h.IdentityAssertion
	if a == nil {
		return nil
	}
	// The header's name was checked with the identity headers' (Validate).
	if a.TTL == 0 {
		a.TTL = caddy.Duration(defaultAssertionTTL)
	}
	if len(a.Keys) == 0 {
		return errors.New("identity_assertion: no key (want key <kid> <PEM file>)")
	}
	repl := caddy.NewReplacer()
	keys := make([]*assertion.Key, 0, len(a.Keys))
	for _, ak := range a.Keys {
		if ak == nil {
			return errors.New("identity_assertion: empty key entry")
		}
		path := repl.ReplaceKnown(ak.File, "")
		if path == "" {
			return fmt.Errorf("identity_assertion: key %q: no file (%q resolves to nothing)", ak.ID, ak.File)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("identity_assertion: key %q: %w", ak.ID, err)
		}
		pemBytes, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("identity_assertion: key %q: %w", ak.ID, err)
		}
		k, err := assertion.ParseKey(ak.ID, pemBytes)
		if err != nil {
			return fmt.Errorf("identity_assertion: key %q: %s: %w", ak.ID, path, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			h.logger.Warn("identity_assertion key file is readable by other users; chmod 600 it",
				zap.String("kid", ak.ID), zap.String("file", path), zap.Stringer("mode", fi.Mode().Perm()))
		}
		keys = append(keys, k)
	}
	signer, err := assertion.NewSigner(keys, time.Duration(a.TTL))
	if err != nil {
		return fmt.Errorf("identity_assertion: %w", err)
	}
	issuer := ""
	if h.publicURL != nil {
		issuer = h.publicURL.Scheme + "://" + h.publicURL.Host
	}
	size := defaultCacheSize
	if h.SessionCache != nil && h.SessionCache.Size > 0 {
		size = h.SessionCache.Size
	}
	a.cache = assertion.NewCache(signer, assertion.CacheConfig{
		Issuer:   issuer,
		Audience: a.Audience,
		Size:     size,
		Handle:   func(k [32]byte) string { return sessionHandle(sessionKey(k).Hex()) },
	})
	return nil
}

// applyAssertion sets the signed identity header of a signed-in request,
// after the identity headers: from the cache, signing only when the session
// has no fresh assertion.
func (h *Handler) applyAssertion(r *http.Request, id *identity) error {
	a := h.IdentityAssertion
	if a == nil || a.cache == nil {
		return nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	tok, signed, err := a.cache.Get(id.key, scheme, r.Host, assertion.Session{Subject: id.userID, Claims: id.claims, Expires: id.expires})
	if err != nil {
		return fmt.Errorf("identity_assertion: %w", err)
	}
	if signed {
		assertionsSigned.Inc()
	}
	r.Header[a.Header] = []string{tok}
	return nil
}

// serveJWKS answers GET <api_prefix>/jwks.json with the public keys.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return h.fail(w, r, errMethod, true)
	}
	body := h.IdentityAssertion.cache.Signer().JWKS()
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(jwksMaxAge/time.Second)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(body)
	return err
}

// unmarshalIdentityAssertion parses
//
//	identity_assertion {
//		key      <kid> <PEM file>   # repeat to rotate; the first signs
//		audience <aud>              # default: the issuer
//		header   <name>             # default: X-Ssogate-Assertion
//		ttl      <duration>         # default: 60s, at most 5m
//	}
func (h *Handler) unmarshalIdentityAssertion(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if h.IdentityAssertion != nil {
		return d.Err("identity_assertion given twice")
	}
	a := &IdentityAssertion{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key":
			k := &AssertionKey{}
			if !d.AllArgs(&k.ID, &k.File) {
				return d.ArgErr()
			}
			for _, o := range a.Keys {
				if o.ID == k.ID {
					return d.Errf("identity_assertion: key %q given twice", k.ID)
				}
			}
			a.Keys = append(a.Keys, k)
		case "audience":
			if !d.AllArgs(&a.Audience) {
				return d.ArgErr()
			}
		case "header":
			if !d.AllArgs(&a.Header) {
				return d.ArgErr()
			}
		case "ttl":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < time.Second || dur > assertion.MaxTTL {
				return d.Errf("identity_assertion: ttl %q: want a duration from 1s to %s", v, assertion.MaxTTL)
			}
			a.TTL = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized identity_assertion option %q", d.Val())
		}
	}
	if len(a.Keys) == 0 {
		return d.Err("identity_assertion: no key (want key <kid> <PEM file>)")
	}
	h.IdentityAssertion = a
	return nil
}
