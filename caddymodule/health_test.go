package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/ssogate/ssogate/internal/healthcheck"
	"github.com/ssogate/ssogate/internal/testclock"
	"github.com/ssogate/ssogate/plugins/store"
)

// pingFlakyStore fails Ping with ErrUnavailable while down, and counts pings.
type pingFlakyStore struct {
	store.Store
	down  atomic.Bool
	pings atomic.Int32
}

func (s *pingFlakyStore) Ping(ctx context.Context) error {
	s.pings.Add(1)
	if s.down.Load() {
		return store.Unavailable("ping", errors.New("dial tcp 10.0.0.5:6379: connection refused"))
	}
	return s.Store.Ping(ctx)
}

func TestHealth(t *testing.T) {
	h := apiHandler(t, &Handler{})
	flaky := &pingFlakyStore{Store: h.store}
	h.store = watchStore(flaky, zap.NewNop())
	clk := testclock.New()
	h.health = healthcheck.New(h.store.Ping, healthMaxAge, healthTimeout, clk.Now)

	check := func(wantStatus int, wantBody string) {
		t.Helper()
		w, seen := h.do(t, http.MethodGet, "/sso/health", "", "")
		if seen != nil {
			t.Fatal("the health route reached next")
		}
		if w.Code != wantStatus || w.Body.String() != wantBody+"\n" {
			t.Fatalf("GET /sso/health: %d %q, want %d %s", w.Code, w.Body, wantStatus, wantBody)
		}
		if cc, ct := w.Header().Get("Cache-Control"), w.Header().Get("Content-Type"); cc != "no-store" || ct != "application/json" {
			t.Fatalf("Cache-Control %q, Content-Type %q", cc, ct)
		}
	}
	check(http.StatusOK, `{"status":"ok","store":"ok"}`)
	if up := gaugeValue(t, storeUp); up != 1 {
		t.Fatalf("ssogate_store_up %v while the store answers, want 1", up)
	}
	for range 50 {
		check(http.StatusOK, `{"status":"ok","store":"ok"}`)
	}
	if n := flaky.pings.Load(); n != 1 {
		t.Fatalf("%d pings for 51 health checks within a second, want 1", n)
	}

	flaky.down.Store(true)
	clk.Add(healthMaxAge)
	check(http.StatusServiceUnavailable, `{"status":"unavailable","store":"unavailable"}`)
	if up := gaugeValue(t, storeUp); up != 0 {
		t.Fatalf("ssogate_store_up %v while the store is down, want 0", up)
	}
	flaky.down.Store(false)
	clk.Add(healthMaxAge)
	check(http.StatusOK, `{"status":"ok","store":"ok"}`)
	if up := gaugeValue(t, storeUp); up != 1 {
		t.Fatalf("ssogate_store_up %v after the store came back, want 1", up)
	}

	w, _ := h.do(t, http.MethodPost, "/sso/health", "", "")
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /sso/health: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
	w, _ = h.do(t, http.MethodHead, "/sso/health", "", "")
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Fatalf("HEAD /sso/health: %d, %d bytes", w.Code, w.Body.Len())
	}
}

// gaugeValue reads g's current value.
func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
