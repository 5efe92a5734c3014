package caddymodule

import (
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
// upstream's headers as the response starts.
func (h *Handler) wrapResponse(w http.ResponseWriter) http.ResponseWriter {
	if h.frameAncestors == "" {
		return w
	}
	return &embedWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h}
}

// embedWriter rewrites framing headers and cookies once, when the final
// status is written.
type embedWriter struct {
	*caddyhttp.ResponseWriterWrapper
	h       *Handler
	written bool
}

func (ew *embedWriter) WriteHeader(status int) {
	// 1xx responses (103 Early Hints) are not the response yet.
	if !ew.written && status >= 200 {
		ew.written = true
		hdr := ew.Header()
		embed.MergeCSP(hdr, ew.h.frameAncestors)
		if *ew.h.RewriteUpstreamCookies {
			embed.RewriteSetCookies(hdr)
		}
	}
	ew.ResponseWriterWrapper.WriteHeader(status)
}

func (ew *embedWriter) Write(b []byte) (int, error) {
	if !ew.written {
		ew.WriteHeader(http.StatusOK)
	}
	return ew.ResponseWriterWrapper.Write(b)
}
