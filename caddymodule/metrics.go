package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssogate/ssogate/internal/sessioncache"
	"github.com/ssogate/ssogate/internal/version"
)

// The collectors are made once per process and registered with the registry of
// every config Caddy loads: each load gets a fresh registry, so registering only
// once would leave the metrics out after a reload, while making new collectors
// each time would reset the counters.
var (
	tokensMinted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "tokens_minted_total",
		Help:      "Sign-in tokens minted through the API, by credential.",
	}, []string{"credential"})
	redemptions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "redemptions_total",
		Help:      "Redeem requests by route and result: success, rejected (malformed, unknown, used or expired token), bad_redirect, rate_limited, store_unavailable, deferred_to_confirm (token left unused, confirm page served), fell_back (no cookie kept, token left unused, fallback page served), cross_site (a confirm POST from another site, refused).",
	}, []string{"route", "result"})
	sessionsCreated = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "sessions_created_total",
		Help:      "Sessions created by successful redemptions.",
	})
	revocations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "revocations_total",
		Help:      "Admin revocations of a user's sessions.",
	})
	storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "store_errors_total",
		Help:      "Store operations that failed because the store could not answer, by operation.",
	}, []string{"op"})
	redeemDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "ssogate",
		Name:      "redeem_duration_seconds",
		Help:      "Time to answer a redeem request, store round trips included.",
		Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	storeUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "ssogate",
		Name:      "store_up",
		Help:      "1 while the store answers, 0 from its first failed round trip (a request or the health check) until one succeeds again.",
	})
	apiAuthFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "api_auth_failures_total",
		Help:      "API requests refused before they did anything, by reason: no_key (no Bearer key), wrong_key (matches no credential), not_allowed (the credential lacks the permission).",
	}, []string{"reason"})
	sessionCacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "session_cache_hits_total",
		Help:      "Session lookups answered from the in-memory cache without a store round trip.",
	})
	sessionCacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ssogate",
		Name:      "session_cache_misses_total",
		Help:      "Session lookups that asked the store: not cached, due for revalidation, or the cache bypassed after lost events.",
	})
	buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "ssogate",
		Name:      "build_info",
		Help:      "Always 1; the version label is the ssogate version of this binary.",
	}, []string{"version"})
)

// The reasons of api_auth_failures_total.
const (
	authNoKey      = "no_key"
	authWrongKey   = "wrong_key"
	authNotAllowed = "not_allowed"
)

var authFailureReasons = []string{authNoKey, authWrongKey, authNotAllowed}

// The results of a redeem request, the values of redemptions_total's label.
const (
	redeemSuccess          = "success"
	redeemRejected         = "rejected"
	redeemBadRedirect      = "bad_redirect"
	redeemRateLimited      = "rate_limited"
	redeemStoreUnavailable = "store_unavailable"
	// redeemMethod is a request with a method no redeem route answers; it
	// is not a redemption and is not counted.
	redeemMethod = "method_not_allowed"
	// The token was left unused and the confirm page served (HEAD, a link
	// scanner, a frame's cookie probe, redeem_confirm always).
	redeemDeferred = "deferred_to_confirm"
	// A confirm POST came back without the probe cookie: the browser keeps
	// no cookie there, the token was left unused, the fallback page served.
	redeemFellBack = "fell_back"
	// A confirm POST sent by another site's page; the token was not read.
	redeemCrossSite = "cross_site"
)

var redeemResults = []string{redeemSuccess, redeemRejected, redeemBadRedirect, redeemRateLimited, redeemStoreUnavailable, redeemDeferred, redeemFellBack, redeemCrossSite}

// storeOps are the values of store_errors_total's label, one per Store method
// that talks to the store.
var storeOps = []string{"add_token", "take_token", "use_once", "add_session", "session", "delete_session", "revoke_user", "ping",
	"sessions", "session_by_handle", "end_sessions", "mark_revoked", "revocations"}

// registerMetrics adds the collectors to reg, and makes every series the
// handler can produce visible at zero, so that rate() works from the first
// event and dashboards show the routes before anyone uses them.
func (h *Handler) registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil // a context made outside a config load (tests)
	}
	for _, c := range append([]prometheus.Collector{tokensMinted, redemptions, sessionsCreated, revocations, storeErrors, redeemDuration,
		storeUp, apiAuthFailures, sessionCacheHits, sessionCacheMisses, buildInfo, assertionsSigned}, limitCollectors()...) {
		if err := reg.Register(c); err != nil {
			// Several ssogate handlers in one config share the
			// collectors; anything else by those names is a conflict.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) || are.ExistingCollector != c {
				return fmt.Errorf("registering metrics: %w", err)
			}
		}
	}
	for _, rt := range h.routes {
		for _, res := range redeemResults {
			redemptions.WithLabelValues(rt.name, res)
		}
	}
	for _, c := range h.Credentials {
		tokensMinted.WithLabelValues(c.ID)
	}
	for _, op := range storeOps {
		storeErrors.WithLabelValues(op)
	}
	for _, r := range authFailureReasons {
		apiAuthFailures.WithLabelValues(r)
	}
	// A new config starts with a new watchedStore, which assumes the store
	// is up until a call fails.
	storeUp.Set(1)
	buildInfo.WithLabelValues(version.String()).Set(1)
	return nil
}

// countRedeem records the result of one redeem request.
func countRedeem(rt *redeemRoute, result string) {
	redemptions.WithLabelValues(rt.name, result).Inc()
}

// countCacheLookup records whether a session lookup was served by the cache
// alone (hit) or asked the store (miss, revalidate, bypass).
func countCacheLookup(res sessioncache.Result) {
	if res == sessioncache.Hit {
		sessionCacheHits.Inc()
	} else {
		sessionCacheMisses.Inc()
	}
}

// observeRedeem records the duration of a redeem request begun at start.
func observeRedeem(start time.Time) {
	redeemDuration.Observe(time.Since(start).Seconds())
}
