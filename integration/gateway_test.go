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

// gateway is one https://portal.test:<port> site of a real Caddy with
// ssogate: the one gateway type of the integration tests. startGateway makes
// one from SPEC's minimal Caddyfile; scaleStart and mintStart from their own
// Caddyfiles, several on one Caddy or several Caddys sharing a data dir.
type gateway struct {
	caddy    *harness.Caddy
	upstream *harness.Upstream // nil when the test runs its own
	port     int
	base     string // https://portal.test:<port>
	client   *http.Client
	key      string // the API key signIn and mintUser mint with
}

// newGateway waits until c serves https://portal.test:<port> and returns its
// gateway, with client (c.Client when nil) and the API key signIn uses.
func newGateway(t *testing.T, c *harness.Caddy, port int, key string, client *http.Client, up *harness.Upstream) *gateway {
	t.Helper()
	hostport := fmt.Sprintf("portal.test:%d", port)
	c.WaitHTTPS(t, hostport)
	if client == nil {
		client = c.Client(t)
	}
	return &gateway{caddy: c, upstream: up, port: port, base: "https://" + hostport, client: client, key: key}
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
`, admin, o.global, port, o.store, harness.KeyHash(orgAKey), harness.KeyHash(clinicKey), o.rateLimit, o.extra, site(upstream))
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
	return newGateway(t, c, port, orgAKey, nil, up)
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
	req, err := g.request(method, path, body, cookie, headers...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// request builds a request for path (on the gateway) or an absolute URL;
// header pairs are "Name: value" strings.
func (g *gateway) request(method, path, body string, cookie *http.Cookie, headers ...string) (*http.Request, error) {
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
		return nil, err
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	return req, nil
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

// signIn mints a token for user with the gateway's key, redeems its link
// and returns the session cookie.
func (g *gateway) signIn(t *testing.T, user string) *http.Cookie {
	t.Helper()
	return g.redeem(t, g.mintUser(t, user).URL)
}

// tryMint mints a token for user with the gateway's key; a non-201 answer
// is an error. It is for goroutines and polling.
func (g *gateway) tryMint(user string) (harness.MintAnswer, error) {
	r, err := g.try(http.MethodPost, "/sso/tokens", nil, `{"userId":"`+user+`"}`,
		"Authorization: Bearer "+g.key, "Content-Type: application/json")
	if err != nil {
		return harness.MintAnswer{}, err
	}
	if r.status != http.StatusCreated {
		return harness.MintAnswer{}, fmt.Errorf("mint: %d %s", r.status, r.body)
	}
	var m harness.MintAnswer
	if err := json.Unmarshal([]byte(r.body), &m); err != nil || m.SSOToken == "" {
		return harness.MintAnswer{}, fmt.Errorf("mint answer %q: %v", r.body, err)
	}
	return m, nil
}

// mintUser mints a token for user with the gateway's key.
func (g *gateway) mintUser(t *testing.T, user string) harness.MintAnswer {
	t.Helper()
	m, err := g.tryMint(user)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// redeem opens link (a path or URL) and returns the session cookie, failing
// unless the gateway answers 302 with one.
func (g *gateway) redeem(t *testing.T, link string) *http.Cookie {
	t.Helper()
	r := g.read(t, http.MethodGet, link, nil, "")
	if r.status != http.StatusFound || r.cookie() == nil {
		t.Fatalf("redeem on %s: %d, cookie %v; want 302 with a session cookie", g.base, r.status, r.cookie())
	}
	return r.cookie()
}

// whoami is the user the upstream saw for a request with cookie, or the
// status when the request was not proxied.
func (g *gateway) whoami(t *testing.T, cookie *http.Cookie) (string, int) {
	t.Helper()
	r := g.read(t, http.MethodGet, "/whoami", cookie, "")
	if r.status != http.StatusOK {
		return "", r.status
	}
	var saw upstreamSaw
	if err := json.Unmarshal([]byte(r.body), &saw); err != nil {
		t.Fatalf("upstream answer %q: %v", r.body, err)
	}
	return saw.User, r.status
}

// reply is a response read whole.
type reply struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

// cookie is the session cookie the response sets, or nil.
func (r reply) cookie() *http.Cookie {
	return sessionCookie(&http.Response{Header: r.header})
}

// read sends one request and reads the response whole; headers are
// "Name: value" pairs.
func (g *gateway) read(t *testing.T, method, path string, cookie *http.Cookie, body string, headers ...string) reply {
	t.Helper()
	r, err := g.try(method, path, cookie, body, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// try is read for goroutines and polling: it returns the error.
func (g *gateway) try(method, path string, cookie *http.Cookie, body string, headers ...string) (reply, error) {
	req, err := g.request(method, path, body, cookie, headers...)
	if err != nil {
		return reply{}, err
	}
	start := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(start)}, err
}

// call sends one request as an API client does (Accept: application/json,
// the bearer key unless empty) and returns the response with its body read.
func (g *gateway) call(t *testing.T, method, target, key, body string, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	headers := []string{"Accept: application/json"}
	if key != "" {
		headers = append(headers, "Authorization: Bearer "+key)
	}
	req, err := g.request(method, target, body, cookie, headers...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp, string(b)
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

// issuedCookie is the session cookie a response sets with a value (not one
// that clears it), or nil.
func issuedCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-ssogate" && c.Value != "" {
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
