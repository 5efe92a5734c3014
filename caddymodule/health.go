package caddymodule

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/ssogate/ssogate/internal/healthcheck"
)

// Health answers GET <api_prefix>/health (no credential), for load balancers
// and scripts:
//
//	200 {"status":"ok","store":"ok"}                    the store answered a round trip
//	503 {"status":"unavailable","store":"unavailable"}  it did not, within healthTimeout
//
// The store's answer is reused for healthMaxAge, and concurrent requests share
// one check, so however many load balancer nodes poll however many instances,
// each instance pings its store at most once a second. The answer is always
// JSON, whatever error_pages says, and never cached.
const (
	healthMaxAge  = time.Second
	healthTimeout = time.Second
)

// healthAnswer is the body of a health answer.
type healthAnswer struct {
	Status string `json:"status"`
	Store  string `json:"store"`
}

// provisionHealth sets up the cached store check; it needs h.store.
func (h *Handler) provisionHealth() {
	h.health = healthcheck.New(h.store.Ping, healthMaxAge, healthTimeout, time.Now)
}

// serveHealth answers <api_prefix>/health.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return h.fail(w, r, errMethod, true)
	}
	status, answer := http.StatusOK, healthAnswer{Status: "ok", Store: "ok"}
	if err := h.health.Result(r.Context()); err != nil {
		// The cause (an address, a timeout) is in the store's own log
		// line; an unauthenticated endpoint does not tell it.
		h.storeFailed("health", err)
		status, answer = http.StatusServiceUnavailable, healthAnswer{Status: "unavailable", Store: "unavailable"}
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	return json.NewEncoder(w).Encode(answer)
}
