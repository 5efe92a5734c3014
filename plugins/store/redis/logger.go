package redis

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	// go-redis prints every failed dial to stderr, outside Caddy's logs and
	// once per request during an outage. The store logs an outage once, at
	// its start and end; the client's own lines are detail for debugging.
	goredis.SetLogger(clientLogger{})
}

// clientLogger sends go-redis's log lines to Caddy's default logger at debug
// level.
type clientLogger struct{}

// Printf implements go-redis's internal.Logging.
func (clientLogger) Printf(_ context.Context, format string, v ...any) {
	if c := caddy.Log().Named("ssogate.stores.redis.client").Check(zapcore.DebugLevel, "go-redis"); c != nil {
		c.Write(zap.String("message", fmt.Sprintf(format, v...)))
	}
}
