package caddymodule

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ssogate/ssogate/plugins/store"
	"github.com/ssogate/ssogate/plugins/store/memory"
)

// healthFlakyStore is a memory store that fails with ErrUnavailable while down.
type healthFlakyStore struct {
	*memory.Memory
	down atomic.Bool
}

func (s *healthFlakyStore) Session(ctx context.Context, key string, idle time.Duration) (store.Session, error) {
	if s.down.Load() {
		return store.Session{}, store.Unavailable("get session", errors.New("dial tcp: connection refused"))
	}
	return s.Memory.Session(ctx, key, idle)
}

func (s *healthFlakyStore) TakeToken(ctx context.Context, key string) (store.Token, error) {
	if s.down.Load() {
		return store.Token{}, store.Unavailable("take token", errors.New("i/o timeout"))
	}
	return s.Memory.TakeToken(ctx, key)
}

func TestWatchedStoreLogsAnOutageOnce(t *testing.T) {
	mem := memory.New(time.Now, time.Minute)
	t.Cleanup(func() { _ = mem.Close() })
	flaky := &healthFlakyStore{Memory: mem}
	core, logs := observer.New(zapcore.DebugLevel)
	s := watchStore(flaky, zap.New(core))
	ctx := context.Background()
	sessionErrors := storeErrors.WithLabelValues("session")
	before := counterValue(t, sessionErrors)

	// Not found is an answer: no outage.
	if _, err := s.Session(ctx, "k", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Session = %v, want ErrNotFound", err)
	}
	flaky.down.Store(true)
	for range 100 {
		if _, err := s.Session(ctx, "k", 0); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Session while down = %v, want ErrUnavailable", err)
		}
		if _, err := s.TakeToken(ctx, "k"); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("TakeToken while down = %v, want ErrUnavailable", err)
		}
	}
	flaky.down.Store(false)
	for range 10 {
		_, _ = s.Session(ctx, "k", 0)
	}

	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+" "+e.Message)
	}
	want := []string{
		"error store unavailable: sign-in and session checks answer 503 until it is back",
		"info store recovered",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logs of 200 failed calls and a recovery:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := counterValue(t, sessionErrors) - before; n != 100 {
		t.Errorf("store_errors_total{op=session} moved by %v, want 100", n)
	}
	// A second outage is logged again.
	flaky.down.Store(true)
	_, _ = s.TakeToken(ctx, "k")
	if n := logs.FilterMessageSnippet("store unavailable").Len(); n != 2 {
		t.Errorf("%d outage logs after a second outage, want 2", n)
	}
}

func TestRegisterMetricsAcrossReloads(t *testing.T) {
	h := &Handler{Credentials: []*Credential{{ID: "partner-x"}}, routes: []redeemRoute{{name: "redirect"}}}
	first := prometheus.NewPedanticRegistry()
	if err := h.registerMetrics(first); err != nil {
		t.Fatal(err)
	}
	// A second handler in the same config shares the collectors.
	if err := h.registerMetrics(first); err != nil {
		t.Fatalf("second handler in one config: %v", err)
	}
	// A reload brings a fresh registry: the same collectors, counts kept.
	minted := tokensMinted.WithLabelValues("partner-x")
	minted.Inc()
	reloaded := prometheus.NewPedanticRegistry()
	if err := h.registerMetrics(reloaded); err != nil {
		t.Fatalf("after a reload: %v", err)
	}
	families, err := reloaded.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		seen[f.GetName()] = true
		if f.GetName() != "ssogate_tokens_minted_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == "partner-x" && m.GetCounter().GetValue() < 1 {
				t.Errorf("minted count lost across the reload: %v", m.GetCounter().GetValue())
			}
		}
	}
	for _, name := range []string{"ssogate_tokens_minted_total", "ssogate_redemptions_total", "ssogate_sessions_created_total",
		"ssogate_revocations_total", "ssogate_store_errors_total", "ssogate_redeem_duration_seconds",
		"ssogate_store_up", "ssogate_api_auth_failures_total", "ssogate_session_cache_hits_total",
		"ssogate_session_cache_misses_total", "ssogate_build_info"} {
		if !seen[name] {
			t.Errorf("%s not gathered from the new registry", name)
		}
	}

	// Another collector by one of our names is a conflict, not ignored.
	clash := prometheus.NewPedanticRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ssogate_revocations_total", Help: "not ours"}))
	if err := h.registerMetrics(clash); err == nil {
		t.Error("registered over another collector of the same name")
	}
	if err := h.registerMetrics(nil); err != nil {
		t.Errorf("no registry: %v", err)
	}
}
