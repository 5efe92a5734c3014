package caddymodule

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ssogate/ssogate/plugins/store"
)

// watchedStore wraps the handler's store to see every call's outcome: an
// outage is logged once when the first call fails and once when a call
// succeeds again, rather than on every request in between (a busy gateway
// would write thousands of lines a second), and every failure is counted in
// store_errors_total. Only calls that reached the store decide, so a request
// that never asked it (no cookie) cannot report a recovery.
type watchedStore struct {
	store.Store
	logger *zap.Logger
	down   *atomic.Bool
}

// watchStore returns s wrapped in a watchedStore logging to logger.
func watchStore(s store.Store, logger *zap.Logger) store.Store {
	return &watchedStore{Store: s, logger: logger, down: new(atomic.Bool)}
}

// observe notes the outcome of op. Not found and already exists are answers,
// not faults.
func (w *watchedStore) observe(op string, err error) {
	if err != nil && errors.Is(err, store.ErrUnavailable) {
		storeErrors.WithLabelValues(op).Inc()
		if w.down.CompareAndSwap(false, true) {
			storeUp.Set(0)
			w.logger.Error("store unavailable: sign-in and session checks answer 503 until it is back", zap.String("op", op), zap.Error(err))
		}
		return
	}
	if w.down.Load() && w.down.CompareAndSwap(true, false) {
		storeUp.Set(1)
		w.logger.Info("store recovered", zap.String("op", op))
	}
}

// AddToken implements store.Store.
func (w *watchedStore) AddToken(ctx context.Context, key string, t store.Token, ttl time.Duration) error {
	err := w.Store.AddToken(ctx, key, t, ttl)
	w.observe("add_token", err)
	return err
}

// TakeToken implements store.Store.
func (w *watchedStore) TakeToken(ctx context.Context, key string) (store.Token, error) {
	t, err := w.Store.TakeToken(ctx, key)
	w.observe("take_token", err)
	return t, err
}

// UseOnce implements store.Store.
func (w *watchedStore) UseOnce(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	fresh, err := w.Store.UseOnce(ctx, id, ttl)
	w.observe("use_once", err)
	return fresh, err
}

// AddSession implements store.Store.
func (w *watchedStore) AddSession(ctx context.Context, key string, s store.Session, idle time.Duration) error {
	err := w.Store.AddSession(ctx, key, s, idle)
	w.observe("add_session", err)
	return err
}

// Session implements store.Store.
func (w *watchedStore) Session(ctx context.Context, key string, idle time.Duration) (store.Session, error) {
	s, err := w.Store.Session(ctx, key, idle)
	w.observe("session", err)
	return s, err
}

// DeleteSession implements store.Store.
func (w *watchedStore) DeleteSession(ctx context.Context, key string) error {
	err := w.Store.DeleteSession(ctx, key)
	w.observe("delete_session", err)
	return err
}

// RevokeUser implements store.Store.
func (w *watchedStore) RevokeUser(ctx context.Context, userID string) (int, error) {
	n, err := w.Store.RevokeUser(ctx, userID)
	w.observe("revoke_user", err)
	return n, err
}

// Ping implements store.Store.
func (w *watchedStore) Ping(ctx context.Context) error {
	err := w.Store.Ping(ctx)
	w.observe("ping", err)
	return err
}

// Sessions implements store.Store.
func (w *watchedStore) Sessions(ctx context.Context, userID string) ([]store.Listed, error) {
	l, err := w.Store.Sessions(ctx, userID)
	w.observe("sessions", err)
	return l, err
}

// SessionByHandle implements store.Store.
func (w *watchedStore) SessionByHandle(ctx context.Context, handle string) (store.Listed, error) {
	l, err := w.Store.SessionByHandle(ctx, handle)
	w.observe("session_by_handle", err)
	return l, err
}

// EndSessions implements store.Store.
func (w *watchedStore) EndSessions(ctx context.Context, userID string, keys []string) (int, error) {
	n, err := w.Store.EndSessions(ctx, userID, keys)
	w.observe("end_sessions", err)
	return n, err
}

// MarkRevoked implements store.Store.
func (w *watchedStore) MarkRevoked(ctx context.Context, userID string, r store.Revocation, ttl time.Duration) error {
	err := w.Store.MarkRevoked(ctx, userID, r, ttl)
	w.observe("mark_revoked", err)
	return err
}

// Revocations implements store.Store.
func (w *watchedStore) Revocations(ctx context.Context, userID string) ([]store.Revocation, error) {
	rs, err := w.Store.Revocations(ctx, userID)
	w.observe("revocations", err)
	return rs, err
}

// storeFailed notes, for debugging, which request the store failed; the
// outage itself is logged once by watchedStore.
func (h *Handler) storeFailed(op string, err error) {
	if c := h.logger.Check(zapcore.DebugLevel, "store unavailable"); c != nil {
		c.Write(zap.String("op", op), zap.Error(err))
	}
}

// Interface guard
var _ store.Store = (*watchedStore)(nil)
