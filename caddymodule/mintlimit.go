package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/internal/tokenbucket"
	"github.com/ssogate/ssogate/plugins/store"
)

// MintRateLimit holds a credential to a minting rate, so that no partner
// can flood the store (and so the other partners' sign-ins) with tokens.
// Past it, POST /sso/tokens answers 429 with Retry-After; the other
// credentials are not affected. A burst of up to Tokens is allowed at once,
// then one token every Window/Tokens. Counted in memory, per instance and per
// config: with N instances a credential may mint up to N times the rate, and
// a reload starts the count afresh.
type MintRateLimit struct {
	// Tokens a credential may mint within Window.
	Tokens int `json:"tokens,omitempty"`
	// The window Tokens are counted in.
	Window caddy.Duration `json:"window,omitempty"`
	// Turns the limit off (for one credential, when the handler sets one
	// for all).
	Disabled bool `json:"disabled,omitempty"`
}

var (
	mintRateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "mint_rate_limited_total",
		Help:      "Mint requests refused by the credential's mint_rate_limit, by credential.",
	}, []string{"credential"})
	storeFull = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "store_full_total",
		Help:      "Store writes refused because the store holds max_entries, by operation.",
	}, []string{"op"})
)

// limitCollectors are the collectors of this file, for registerMetrics.
func limitCollectors() []prometheus.Collector {
	return []prometheus.Collector{mintRateLimited, storeFull}
}

var (
	errMintRateLimited = problem{http.StatusTooManyRequests, "rate_limited",
		"This credential has minted too many tokens.",
		"Wait for the time Retry-After gives, then mint again."}
	errStoreFull = problem{http.StatusServiceUnavailable, "store_full",
		"Sign-in is unavailable right now: the gateway holds as many sign-ins as it may.",
		"Wait a few minutes, then try again. If this keeps happening, tell the portal's support team."}
)

// provisionLimits sets up each credential's mint_rate_limit (its own, else
// the handler's) and the set of configured session creators.
func (h *Handler) provisionLimits() error {
	h.buildCreators()
	h.mintLimits = map[string]*tokenbucket.Bucket{}
	for _, c := range h.Credentials {
		cfg := c.MintRateLimit
		if cfg == nil {
			cfg = h.MintRateLimit
		}
		if cfg == nil || cfg.Disabled {
			continue
		}
		if cfg.Tokens < 1 || cfg.Window <= 0 {
			return fmt.Errorf("credential %q: mint_rate_limit: want a positive number of tokens and window", c.ID)
		}
		h.mintLimits[c.ID] = tokenbucket.New(cfg.Tokens, time.Duration(cfg.Window), time.Now)
		mintRateLimited.WithLabelValues(c.ID)
	}
	for _, op := range []string{"mint", "redeem"} {
		storeFull.WithLabelValues(op)
	}
	return nil
}

// mintLimited answers 429 when cred is past its mint_rate_limit, and reports
// whether it did.
func (h *Handler) mintLimited(w http.ResponseWriter, r *http.Request, cred *Credential) (bool, error) {
	b := h.mintLimits[cred.ID]
	if b == nil {
		return false, nil
	}
	retry, ok := b.Take()
	if ok {
		return false, nil
	}
	mintRateLimited.WithLabelValues(cred.ID).Inc()
	h.audit(zapcore.DebugLevel, "rejected", zap.String("route", "mint"), zap.String("credential", cred.ID), zap.String("reason", "mint rate limited"))
	w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	return true, h.fail(w, r, errMintRateLimited, true)
}

// storeProblem is the answer to a failed store call of op (mint, redeem): 503 store_full
// when the store is at its size limit (counted), else 503 store_unavailable.
func storeProblem(op string, err error) problem {
	if errors.Is(err, store.ErrFull) {
		storeFull.WithLabelValues(op).Inc()
		return errStoreFull
	}
	return errStoreUnavailable
}

// parseMintRateLimit parses `mint_rate_limit <tokens> <window> | off`, in
// the ssogate block (every credential) or a credential block (that one).
func parseMintRateLimit(d *caddyfile.Dispenser) (*MintRateLimit, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		return &MintRateLimit{Disabled: true}, nil
	case len(args) != 2:
		return nil, d.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return nil, d.Errf("mint_rate_limit: tokens %q: want a positive number", args[0])
	}
	window, err := caddy.ParseDuration(args[1])
	if err != nil || window <= 0 {
		return nil, d.Errf("mint_rate_limit: window %q: want a positive duration", args[1])
	}
	return &MintRateLimit{Tokens: n, Window: caddy.Duration(window)}, nil
}

// unmarshalMintRateLimit parses the ssogate block's mint_rate_limit.
func (h *Handler) unmarshalMintRateLimit(d *caddyfile.Dispenser) error {
	l, err := parseMintRateLimit(d)
	h.MintRateLimit = l
	return err
}
