package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// API keys of the test credentials; only their hashes go into Caddyfiles.
const (
	orgAKey   = "it-org-a-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	clinicKey = "it-clinic-7-f9e8d7c6b5a493827160f5e4d3c2b1a0"
)

// mintResult is harness.MintAnswer, kept for the tests that still name it.
type mintResult = harness.MintAnswer

// keyHash is harness.KeyHash, kept for the tests that still call it.
func keyHash(key string) string { return harness.KeyHash(key) }

// gateway is a real Caddy with ssogate on https://portal.test:<port>, in front
// of a real upstream.
type gateway struct {
	caddy    *harness.Caddy
	upstream *harness.Upstream
	port     int
	base     string // https://portal.test:<port>
	client   *http.Client
}

// gatewayOptions shape the Caddyfile of startGateway.
type gatewayOptions struct {
	store  string // the store line, e.g. "store redis redis://…"; default memory
	extra  string // more ssogate subdirectives
	global string // more global options
	port   int    // default: a free port
	// rateLimit is the redeem_rate_limit line. Default: off, because every
	// test client shares 127.0.0.1 and many tests fail redemptions on purpose.
	rateLimit string
	// admin keeps Caddy's admin endpoint on (at the harness's port), which
	// reload and /metrics need. Default: off, as in SPEC's Caddyfile.
	admin bool
	// caddy shapes the process, e.g. a shared DataDir for a second instance.
	caddy harness.CaddyOptions
	// site, if set, gives the site's handlers after the ssogate block, for
	// the upstream at the given host:port. Default: a reverse_proxy to it
	// with header_up lines for Caddy's placeholders.
	site func(upstream string) string
	// upstream is the portal. Default: harness.StartUpstream.
	upstream *harness.Upstream
}

// gatewayCaddyfile is SPEC's minimal Caddyfile, parameterised.
func gatewayCaddyfile(port int, upstream string, o gatewayOptions) string {
	if o.store == "" {
		o.store = "store memory"
	}
	if o.rateLimit == "" {
		o.rateLimit = "redeem_rate_limit off"
	}
	admin := "admin off"
	if o.admin {
		admin = ""
	}
	site := o.site
	if site == nil {
		site = defaultSite
	}
	return fmt.Sprintf(`{
	%s
	skip_install_trust
	auto_https disable_redirects
	%s
}
https://portal.test:%d {
	tls internal
	ssogate {
		%s
		credential emr-org-a {
			key_sha256 %s
			users *
			claims group=org-a
			allow mint revoke
		}
		credential clinic-7 {
			key_sha256 %s
			user hcp-7
		}
		redirect_hosts portal.test app.example.com
		%s
		%s
	}
%s
}
`, admin, o.global, port, o.store, keyHash(orgAKey), keyHash(clinicKey), o.rateLimit, o.extra, site(upstream))
}

// defaultSite is the site body of gatewayCaddyfile without gatewayOptions.site.
func defaultSite(upstream string) string {
	return `	reverse_proxy ` + upstream + ` {
		# Caddy's placeholders, as a portal that wants other header names would use them.
		header_up X-Auth-Id {http.auth.user.id}
		header_up X-Auth-Group {http.auth.user.group}
	}`
}

func startGateway(t *testing.T, o gatewayOptions) *gateway {
	t.Helper()
	up := o.upstream
	if up == nil {
		up = harness.StartUpstream(t)
	}
	port := o.port
	if port == 0 {
		port = harness.FreePort(t)
	}
	c := harness.StartCaddy(t, gatewayCaddyfile(port, up.Addr(), o), o.caddy)
	hostport := fmt.Sprintf("portal.test:%d", port)
	c.WaitHTTPS(t, hostport)
	return &gateway{caddy: c, upstream: up, port: port, base: "https://" + hostport, client: c.Client(t)}
}

// reload gives the running gateway the Caddyfile of o (same port and
// upstream); it must have been started with admin on.
func (g *gateway) reload(t *testing.T, o gatewayOptions) {
	t.Helper()
	o.admin = true
	g.caddy.Reload(t, gatewayCaddyfile(g.port, g.upstream.Addr(), o))
}

// do sends a request; header pairs are "Name: value" strings.
func (g *gateway) do(t *testing.T, method, path, body string, cookie *http.Cookie, headers ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	url := path
	if strings.HasPrefix(path, "/") {
		url = g.base + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// mint calls the API and fails the test unless it answers 201.
func (g *gateway) mint(t *testing.T, key, body string) harness.MintAnswer {
	t.Helper()
	resp := g.do(t, http.MethodPost, "/sso/tokens", body, nil, "Authorization: Bearer "+key, "Content-Type: application/json")
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint %s: %s %s", body, resp.Status, b)
	}
	var m harness.MintAnswer
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("mint answer %s: %v", b, err)
	}
	return m
}

// signIn redeems a fresh token for user and returns the session cookie.
func (g *gateway) signIn(t *testing.T, user string) *http.Cookie {
	t.Helper()
	m := g.mint(t, orgAKey, `{"userId":"`+user+`"}`)
	resp := g.do(t, http.MethodGet, m.URL, "", nil)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusFound || c == nil {
		t.Fatalf("redeem: %s, cookie %v", resp.Status, c)
	}
	return c
}

// sessionCookie is the __Host-ssogate cookie a response sets, or nil.
func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-ssogate" {
			return c
		}
	}
	return nil
}

// upstreamSaw decodes the upstream's JSON echo of what it received.
type upstreamSaw struct {
	Path   string `json:"path"`
	User   string `json:"user"`
	Claims string `json:"claims"`
}

func readUpstream(t *testing.T, resp *http.Response) upstreamSaw {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("proxied request: %s %s", resp.Status, b)
	}
	var s upstreamSaw
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("upstream answer %s: %v", b, err)
	}
	return s
}

// rawTimeout bounds one hand-written exchange with the gateway.
const rawTimeout = 10 * time.Second

// dialTLS opens a TLS connection to the gateway (127.0.0.1, SNI portal.test)
// offering only the ALPN protocol proto ("http/1.1" or "h2"), for requests
// the Go client would not send as written. It is closed at cleanup.
func (g *gateway) dialTLS(t *testing.T, proto string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", g.port), &tls.Config{
		ServerName: "portal.test",
		RootCAs:    g.caddy.RootCAs(t),
		NextProtos: []string{proto},
	})
	if err != nil {
		t.Fatalf("dial the gateway: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if got := conn.ConnectionState().NegotiatedProtocol; got != proto && !(proto == "http/1.1" && got == "") {
		t.Fatalf("ALPN: the gateway chose %q, want %q", got, proto)
	}
	_ = conn.SetDeadline(time.Now().Add(rawTimeout))
	return conn
}

// raw sends one hand-written HTTP/1.1 request, byte for byte as given, on a
// fresh TLS connection and returns the response with its body read.
func (g *gateway) raw(t *testing.T, request string) (*http.Response, string) {
	t.Helper()
	conn := g.dialTLS(t, "http/1.1")
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", firstLine(request), err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body of the answer to %q: %v", firstLine(request), err)
	}
	return resp, string(b)
}

// rawGET is a hand-written GET of target (sent as is) on host portal.test,
// with the session cookie if c is not nil and more header lines.
func (g *gateway) rawGET(target string, c *http.Cookie, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: portal.test:%d\r\nAccept: application/json\r\n", target, g.port)
	if c != nil {
		fmt.Fprintf(&b, "Cookie: %s=%s\r\n", c.Name, c.Value)
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

// firstLine is a request's request line, for messages.
func firstLine(request string) string {
	l, _, _ := strings.Cut(request, "\r\n")
	return l
}
