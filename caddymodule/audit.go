package caddymodule

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// audit writes one security event (minted, redeemed, rejected, logout,
// revoked). Tokens and session ids never appear: callers pass token.LogID.
func (h *Handler) audit(level zapcore.Level, event string, fields ...zap.Field) {
	if c := h.logger.Check(level, event); c != nil {
		c.Write(append(fields, zap.String("audit", event))...)
	}
}
