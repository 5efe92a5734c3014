package caddymodule

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ssogate/ssogate/internal/embed"
)

// setPageHeaders sets the framing policy of the gateway's own pages: framable by
// the embed_from origins, else by nobody.
func (h *Handler) setPageHeaders(hdr http.Header) {
	hdr.Set("Content-Security-Policy", h.pageCSP)
	hdr.Del("X-Frame-Options")
}

// provisionEmbed parses embed_from and prepares the headers it implies.
func (h *Handler) provisionEmbed() error {
	origins, err := embed.ParseOrigins(h.EmbedFrom)
	if err != nil {
		return err
	}
	if origins.Len() == 0 {
		h.pageCSP = embed.NoFraming
		return nil
	}
	h.frameAncestors = origins.FrameAncestors()
	h.pageCSP = "frame-ancestors " + h.frameAncestors
	return nil
}

// wrapResponse returns w unchanged without embed_from (upstream framing headers
// are then the upstream's business), else a writer that rewrites the
// response's headers as it starts. ServeHTTP wraps every response this way,
// the gateway's own and those of skip paths included, so that no answer of the
// portal's host contradicts the framing policy.
func (h *Handler) wrapResponse(w http.ResponseWriter) http.ResponseWriter {
	if h.frameAncestors == "" {
		return w
	}
	return &embedWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h}
}

// embedWriter rewrites framing headers and cookies once, just before the
// final response header goes out, whichever call sends it: WriteHeader, a
// Write or ReadFrom without one, or a Flush. Every other capability (Hijack,
// deadlines, full duplex) is reached through Unwrap by http.ResponseController.
type embedWriter struct {
	// By value, so a response costs one allocation, not two.
	caddyhttp.ResponseWriterWrapper
	h       *Handler
	written bool
}

// rewrite edits the headers of the final response, once.
func (ew *embedWriter) rewrite() {
	if ew.written {
		return
	}
	ew.written = true
	hdr := ew.Header()
	embed.MergeCSP(hdr, ew.h.frameAncestors)
	if *ew.h.RewriteUpstreamCookies {
		embed.RewriteSetCookies(hdr)
	}
}

// WriteHeader rewrites the headers before the final status goes out. 1xx
// responses (103 Early Hints) are not the response yet: they pass unchanged
// and leave the rewrite to the final one.
func (ew *embedWriter) WriteHeader(status int) {
	if status >= 200 {
		ew.rewrite()
	}
	ew.ResponseWriterWrapper.WriteHeader(status)
}

// Write sends an implicit 200 through WriteHeader, as net/http would.
func (ew *embedWriter) Write(b []byte) (int, error) {
	if !ew.written {
		ew.WriteHeader(http.StatusOK)
	}
	return ew.ResponseWriterWrapper.Write(b)
}

// ReadFrom is overridden because the wrapper's own would hand the body to the
// underlying writer and send its header unrewritten; io.Copy prefers it to Write.
func (ew *embedWriter) ReadFrom(r io.Reader) (int64, error) {
	if !ew.written {
		ew.WriteHeader(http.StatusOK)
	}
	return ew.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError is what http.ResponseController calls first. A flush before any
// write sends the header, so it is rewritten here too rather than bypassed
// through Unwrap.
func (ew *embedWriter) FlushError() error {
	if !ew.written {
		ew.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(ew.ResponseWriterWrapper.ResponseWriter).Flush()
}

// Flush serves handlers that still assert http.Flusher; an underlying writer
// that cannot flush makes it a no-op, as http.Flusher has no way to say so.
func (ew *embedWriter) Flush() {
	_ = ew.FlushError()
}

// Interface guards
var (
	_ http.ResponseWriter = (*embedWriter)(nil)
	_ http.Flusher        = (*embedWriter)(nil)
	_ io.ReaderFrom       = (*embedWriter)(nil)
)
