package harness

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Default security headers of the upstream: the ones a real portal sends and
// that embed_from must rewrite, or the portal cannot be framed.
const (
	DefaultUpstreamXFO = "SAMEORIGIN"
	DefaultUpstreamCSP = "default-src 'self'; frame-ancestors 'none'"
)

// UpstreamReply is the JSON body the upstream answers non-HTML requests with.
type UpstreamReply struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	// User is the X-Forwarded-User header the gateway set, empty if none.
	User string `json:"user"`
	// Claims is the X-Forwarded-Claims header, empty if none.
	Claims string `json:"claims"`
	// Cookie is the request's Cookie header without the gateway's own
	// __Host-ssogate* cookies, so the portal's cookies can be checked
	// without echoing a session id into a response body.
	Cookie string `json:"cookie"`
	// Padding makes the body 1 KiB bigger, closer to a real page for the
	// benchmark.
	Padding string `json:"padding"`
}

// Recorded is one request as the upstream received it.
type Recorded struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	// RequestURI is the request target exactly as it came on the wire
	// (escaped path and query), for tests of what a path means upstream.
	RequestURI string
	// Trailer holds the request trailers, read after the whole body.
	Trailer http.Header
}

// Upstream is a stand-in for the portal: a real HTTP server on 127.0.0.1 and
// a free port that records every request it gets.
//
// Every path answers 200: HTML (<p id="user">, <p id="portal-cookie">yes|no)
// when Accept contains text/html, otherwise UpstreamReply as JSON. A request
// without a portal_sid cookie gets
// "Set-Cookie: portal_sid=<random>; Path=/; HttpOnly; SameSite=Lax", the
// portal's own session, which the gateway must make usable in an iframe.
// Responses carry X-Frame-Options and a CSP with frame-ancestors 'none' (see
// SetFrameHeaders), which the gateway must rewrite. A WebSocket upgrade
// (Upgrade: websocket) is accepted with 101, and the upgraded connection
// carries one UpgradeReply line. Every request is recorded with its raw
// request target and, the body read, its trailers.
type Upstream struct {
	srv  *httptest.Server
	fcgi net.Listener // the FastCGI listener of StartFastCGIUpstream, else nil

	mu       sync.Mutex
	requests []Recorded
	xfo, csp string
}

// StartUpstream starts the upstream; it is closed at cleanup.
func StartUpstream(t testing.TB) *Upstream {
	t.Helper()
	u := &Upstream{xfo: DefaultUpstreamXFO, csp: DefaultUpstreamCSP}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

// StartFastCGIUpstream is StartUpstream speaking FastCGI, as PHP-FPM does,
// for `php_fastcgi <addr>` sites (net/http/fcgi; the request headers are
// rebuilt from the HTTP_* parameters Caddy sends). It has no URL.
func StartFastCGIUpstream(t testing.TB) *Upstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: FastCGI upstream: %v", err)
	}
	u := &Upstream{xfo: DefaultUpstreamXFO, csp: DefaultUpstreamCSP, fcgi: l}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fcgi.Serve(l, http.HandlerFunc(u.serve))
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return u
}

// Addr is the upstream's host:port, for `reverse_proxy <addr>`.
func (u *Upstream) Addr() string {
	if u.fcgi != nil {
		return u.fcgi.Addr().String()
	}
	return u.srv.Listener.Addr().String()
}

// URL is the upstream's base URL, http://127.0.0.1:P; empty for FastCGI.
func (u *Upstream) URL() string {
	if u.srv == nil {
		return ""
	}
	return u.srv.URL
}

// SetFrameHeaders sets the X-Frame-Options and Content-Security-Policy values
// of later responses; an empty value leaves that header out.
func (u *Upstream) SetFrameHeaders(xfo, csp string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.xfo, u.csp = xfo, csp
}

// Requests returns the requests received so far, oldest first.
func (u *Upstream) Requests() []Recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Recorded, len(u.requests))
	for i, r := range u.requests {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// Reset forgets the requests received so far.
func (u *Upstream) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.requests = nil
}

// padding is the 1 KiB filler of UpstreamReply.
var padding = strings.Repeat("x", 1024)

// maxUpstreamBody bounds how much of a request body the upstream reads (to
// see the trailers behind it).
const maxUpstreamBody = 1 << 20

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		u.upgrade(w, r)
		return
	}
	// The trailers arrive after the body.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxUpstreamBody))
	u.record(r)
	u.mu.Lock()
	xfo, csp := u.xfo, u.csp
	u.mu.Unlock()

	_, portalErr := r.Cookie("portal_sid")
	hasPortalCookie := portalErr == nil
	h := w.Header()
	if !hasPortalCookie {
		h.Add("Set-Cookie", "portal_sid="+randomID()+"; Path=/; HttpOnly; SameSite=Lax")
	}
	if xfo != "" {
		h.Set("X-Frame-Options", xfo)
	}
	if csp != "" {
		h.Set("Content-Security-Policy", csp)
	}
	h.Set("Cache-Control", "no-store")

	user := r.Header.Get("X-Forwarded-User")
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		yes := "no"
		if hasPortalCookie {
			yes = "yes"
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html><head><title>portal</title></head><body>"+
			"<p id=\"user\">%s</p><p id=\"portal-cookie\">%s</p><p id=\"path\">%s</p></body></html>\n",
			html.EscapeString(user), yes, html.EscapeString(r.URL.Path))
		return
	}
	h.Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(UpstreamReply{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		User:    user,
		Claims:  r.Header.Get("X-Forwarded-Claims"),
		Cookie:  cookiesWithout(r, "__Host-ssogate"),
		Padding: padding,
	})
}

// record appends r to the requests received.
func (u *Upstream) record(r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.requests = append(u.requests, Recorded{
		Method:     r.Method,
		Path:       r.URL.Path,
		RawQuery:   r.URL.RawQuery,
		Header:     r.Header.Clone(),
		RequestURI: r.RequestURI,
		Trailer:    r.Trailer.Clone(),
	})
}

// UpgradeReply is what the upstream writes after its 101 answer to a
// WebSocket upgrade: the request headers it received, as one JSON line.
type UpgradeReply struct {
	Header http.Header `json:"header"`
}

// upgrade accepts a WebSocket upgrade as a real portal's socket endpoint
// would (101 with Sec-WebSocket-Accept), records it, writes UpgradeReply on
// the upgraded connection and closes it.
func (u *Upstream) upgrade(w http.ResponseWriter, r *http.Request) {
	u.record(r)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "upgrade: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: %s\r\n\r\n", base64.StdEncoding.EncodeToString(sum[:]))
	_ = json.NewEncoder(brw).Encode(UpgradeReply{Header: r.Header})
	_ = brw.Flush()
}

// cookiesWithout is the request's cookies as a Cookie header, minus those
// whose name starts with prefix.
func cookiesWithout(r *http.Request, prefix string) string {
	var kept []string
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, prefix) {
			kept = append(kept, c.Name+"="+c.Value)
		}
	}
	return strings.Join(kept, "; ")
}

// randomID is an unguessable cookie value.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
