package redis

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// go-redis prints every failed dial to stderr, outside Caddy's logs and once
// per request during an outage, and it has one logger for the whole process.
// So that the store's own lines go to the logger of the config that uses the
// client (at debug level: the store logs an outage once, at its start and
// end), without changing what go-redis prints for any other client in the
// binary:
//
//   - every command of this store's clients carries its connection in its
//     context, and every failed dial returns an error that names it
//     (clientHook): go-redis hands both to its logger (dials run on a
//     context of their own, so the error is what tells them apart);
//   - while any redis store is provisioned, go-redis's logger is a router
//     that sends such lines to that connection's logger, and every other
//     line to stderr exactly as go-redis's default logger would;
//   - when the last redis store is cleaned up, go-redis's default logger is
//     put back.
//
// The router is held in the connections usage pool under routerKey, so it is
// installed by the first Provision, not at init, and removed with the last
// Cleanup.

// routerKey is the router's key in connections; settings keys are JSON
// objects, so it cannot collide with one.
const routerKey = "go-redis log router"

// connKey is the context key under which a command carries its connection.
type connKey struct{}

// logRouter is go-redis's logger while a redis store is provisioned.
type logRouter struct{ fallback *log.Logger }

// Printf implements go-redis's internal.Logging.
func (l logRouter) Printf(ctx context.Context, format string, v ...any) {
	c, ok := ctx.Value(connKey{}).(*connection)
	for _, a := range v {
		var de *dialError
		if err, isErr := a.(error); !ok && isErr && errors.As(err, &de) {
			c, ok = de.c, true
		}
	}
	if ok {
		if ce := c.logger.Load().Check(zapcore.DebugLevel, "go-redis"); ce != nil {
			ce.Write(zap.String("message", fmt.Sprintf(format, v...)))
		}
		return
	}
	_ = l.fallback.Output(3, fmt.Sprintf(format, v...))
}

// Destruct implements caddy.Destructor: go-redis's own logger is back.
func (logRouter) Destruct() error {
	logging.Enable()
	return nil
}

// holdRouter installs the router if no store holds it yet; releaseRouter
// lets go of it.
func holdRouter() error {
	_, _, err := connections.LoadOrNew(routerKey, func() (caddy.Destructor, error) {
		r := logRouter{fallback: log.New(os.Stderr, "redis: ", log.LstdFlags|log.Lshortfile)}
		goredis.SetLogger(r)
		return r, nil
	})
	return err
}

func releaseRouter() error {
	_, err := connections.Delete(routerKey)
	return err
}

// clientHook puts the connection in the context of every command and dial of
// its client, for the router.
type clientHook struct{ c *connection }

func (h clientHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(context.WithValue(ctx, connKey{}, h.c), network, addr)
		if err != nil {
			return nil, &dialError{c: h.c, err: err}
		}
		return conn, nil
	}
}

// dialError is a failed dial of one of the store's clients. It reads, wraps
// and times out as the error it carries.
type dialError struct {
	c   *connection
	err error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Timeout tells go-redis's retry logic what the dial error would have.
func (e *dialError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}

func (h clientHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		return next(context.WithValue(ctx, connKey{}, h.c), cmd)
	}
}

func (h clientHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		return next(context.WithValue(ctx, connKey{}, h.c), cmds)
	}
}

// Interface guards
var (
	_ goredis.Hook     = clientHook{}
	_ caddy.Destructor = logRouter{}
)
