package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ssogate/ssogate/integration/harness"
)

// SPEC "Proxying": the identity headers sent by the client are removed on
// every request, signed in or not, as headers, as request trailers and as
// names in the client's Connection header (which would make reverse_proxy
// drop the gateway's own copies); what the gateway sets reaches the upstream
// exactly as set. The Go client manages Connection and trailers itself, so
// these requests are written by hand, over HTTP/1.1 and HTTP/2.

// hopUser is an emr-org-a user: its session carries group=org-a, the tenant
// claim that must never go missing.
const hopUser = "hcp-7"

// hopGateway is a gateway with /health as a skip path, and a session of hopUser.
func hopGateway(t *testing.T) (*gateway, *http.Cookie) {
	t.Helper()
	g := startGateway(t, gatewayOptions{extra: "skip /health"})
	return g, g.signIn(t, hopUser)
}

// wantIdentity fails unless the only request the upstream received carries
// exactly user and claims (nil: none) as the default identity headers, and
// neither as trailers.
func wantIdentity(t *testing.T, what string, reqs []harness.Recorded, user, claims []string) {
	t.Helper()
	wantIdentityAs(t, what, reqs, "X-Forwarded-User", "X-Forwarded-Claims", user, claims)
}

// wantIdentityAs is wantIdentity for the header names userName, claimsName.
func wantIdentityAs(t *testing.T, what string, reqs []harness.Recorded, userName, claimsName string, user, claims []string) {
	t.Helper()
	if len(reqs) != 1 {
		t.Errorf("%s: the upstream received %d requests, want 1", what, len(reqs))
		return
	}
	r := reqs[0]
	if u, c := r.Header.Values(userName), r.Header.Values(claimsName); !slices.Equal(u, user) || !slices.Equal(c, claims) {
		t.Errorf("%s: the upstream received %s %q, %s %q; want %q, %q (Connection %q)",
			what, userName, u, claimsName, c, user, claims, r.Header.Values("Connection"))
	}
	if u, c := r.Trailer.Values(userName), r.Trailer.Values(claimsName); u != nil || c != nil {
		t.Errorf("%s: the upstream received trailers %s %q, %s %q; want none", what, userName, u, claimsName, c)
	}
}

// TestHopByHopConnectionTokens: identity header names in the client's
// Connection header do not make the gateway's own values go missing.
func TestHopByHopConnectionTokens(t *testing.T) {
	g, c := hopGateway(t)
	for _, conn := range [][]string{
		{"Connection: close, X-Forwarded-Claims"},
		{"Connection: keep-alive, X-Forwarded-User"},
		{"Connection: X-Forwarded-User,X-Forwarded-Claims"},
		{"Connection: CLOSE, x-forwarded-claims, X-FORWARDED-USER"},
		{"Connection: keep-alive", "Connection: x-Forwarded-User", "Connection: X-forwarded-claims"},
		{"Connection: close, X-Forwarded-Claims", "X-Forwarded-User: admin", "X-Forwarded-Claims: group=org-b"},
	} {
		var b strings.Builder
		fmt.Fprintf(&b, "GET /records HTTP/1.1\r\nHost: portal.test:%d\r\nAccept: application/json\r\nCookie: %s=%s\r\n", g.port, c.Name, c.Value)
		for _, h := range conn {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("\r\n")
		g.upstream.Reset()
		resp, body := g.raw(t, b.String())
		what := strings.Join(conn, " / ")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s %.120q, want 200", what, resp.Status, body)
			continue
		}
		wantIdentity(t, what, g.upstream.Requests(), []string{hopUser}, []string{"group=org-a"})
	}
}

// trailerDeclarations are the Trailer headers the trailer tests send:
// naming the identity headers, none, and naming another trailer only (a
// server that reads every trailer once one is declared takes the rest too).
var trailerDeclarations = []string{"X-Forwarded-User, X-Forwarded-Claims", "", "X-Checksum"}

// chunkedPOST is a chunked POST with the trailers X-Forwarded-User: admin,
// X-Forwarded-Claims: group=org-b and X-Checksum: 1, with the Trailer
// header declared if not empty.
func chunkedPOST(g *gateway, path string, c *http.Cookie, declared string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: portal.test:%d\r\nAccept: application/json\r\nContent-Type: text/plain\r\n", path, g.port)
	if c != nil {
		fmt.Fprintf(&b, "Cookie: %s=%s\r\n", c.Name, c.Value)
	}
	if declared != "" {
		b.WriteString("Trailer: " + declared + "\r\n")
	}
	b.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	b.WriteString("5\r\nhello\r\n0\r\nX-Forwarded-User: admin\r\nX-Forwarded-Claims: group=org-b\r\nX-Checksum: 1\r\n\r\n")
	return b.String()
}

// TestHopByHopTrailers: identity trailers never reach the upstream, signed
// in or on a skip path without a session.
func TestHopByHopTrailers(t *testing.T) {
	g, c := hopGateway(t)
	for _, tc := range []struct {
		what   string
		path   string
		cookie *http.Cookie
		user   []string
		claims []string
	}{
		{"signed in", "/records", c, []string{hopUser}, []string{"group=org-a"}},
		{"skip path, no session", "/health", nil, nil, nil},
	} {
		for _, declared := range trailerDeclarations {
			what := fmt.Sprintf("HTTP/1.1 %s, Trailer: %q", tc.what, declared)
			g.upstream.Reset()
			resp, body := g.raw(t, chunkedPOST(g, tc.path, tc.cookie, declared))
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %s %.120q, want 200", what, resp.Status, body)
				continue
			}
			wantIdentity(t, what, g.upstream.Requests(), tc.user, tc.claims)
		}
	}
	if resp, _ := g.raw(t, chunkedPOST(g, "/records", nil, trailerDeclarations[0])); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("chunked POST with identity trailers, no session: %s, want 401", resp.Status)
	}
}

// h2Answer is how the gateway answered one HTTP/2 stream.
type h2Answer struct {
	status int // :status of the response, 0 if none
	body   string
	reset  bool // the stream was reset (RST_STREAM)
	code   http2.ErrCode
	goAway bool
}

// h2 sends one request on a fresh HTTP/2 connection, frame by frame: HEADERS
// with the pseudo-headers for method and path and the given fields (names
// lower case, as HTTP/2 requires), then DATA with body if not empty, then a
// HEADERS frame of trailers if any.
func (g *gateway) h2(t *testing.T, method, path string, fields, trailers []hpack.HeaderField, body string) h2Answer {
	t.Helper()
	conn := g.dialTLS(t, "h2")
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatalf("h2 preface: %v", err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	encode := func(fs []hpack.HeaderField) []byte {
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for _, f := range fs {
			if err := enc.WriteField(f); err != nil {
				t.Fatalf("hpack: %v", err)
			}
		}
		return buf.Bytes()
	}
	head := append([]hpack.HeaderField{
		{Name: ":method", Value: method},
		{Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: fmt.Sprintf("portal.test:%d", g.port)},
		{Name: ":path", Value: path},
	}, fields...)
	must := func(err error) {
		if err != nil {
			t.Fatalf("h2 write: %v", err)
		}
	}
	must(fr.WriteSettings())
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: encode(head),
		EndStream: body == "" && trailers == nil, EndHeaders: true}))
	if body != "" {
		must(fr.WriteData(1, trailers == nil, []byte(body)))
	}
	if trailers != nil {
		must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: encode(trailers), EndStream: true, EndHeaders: true}))
	}

	var a h2Answer
	var b strings.Builder
	for range 200 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("h2 read: %v (so far %+v)", err, a)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				must(fr.WriteSettingsAck())
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				must(fr.WritePing(true, f.Data))
			}
		case *http2.GoAwayFrame:
			a.goAway, a.code = true, f.ErrCode
			a.body = b.String()
			return a
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				a.reset, a.code = true, f.ErrCode
				a.body = b.String()
				return a
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				if s := f.PseudoValue("status"); s != "" && a.status == 0 {
					fmt.Sscan(s, &a.status)
				}
				if f.StreamEnded() {
					a.body = b.String()
					return a
				}
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				b.Write(f.Data())
				if f.StreamEnded() {
					a.body = b.String()
					return a
				}
			}
		}
	}
	t.Fatalf("h2: no end of stream 1 in 200 frames (so far %+v)", a)
	return a
}

// TestHopByHopHTTP2: the same over HTTP/2: client identity headers and
// trailers never arrive; a Connection header, illegal in HTTP/2, gets the
// stream refused and reaches nothing.
func TestHopByHopHTTP2(t *testing.T) {
	g, c := hopGateway(t)
	cookie := hpack.HeaderField{Name: "cookie", Value: c.Name + "=" + c.Value}
	accept := hpack.HeaderField{Name: "accept", Value: "application/json"}
	spoofed := []hpack.HeaderField{{Name: "x-forwarded-user", Value: "admin"}, {Name: "x-forwarded-claims", Value: "group=org-b"}}
	spoofedTrailers := append(slices.Clone(spoofed), hpack.HeaderField{Name: "x-checksum", Value: "1"})
	gate := []string{hopUser}
	claims := []string{"group=org-a"}

	g.upstream.Reset()
	a := g.h2(t, http.MethodGet, "/records", append([]hpack.HeaderField{cookie, accept}, spoofed...), nil, "")
	if a.status != http.StatusOK {
		t.Errorf("h2 spoofed headers, signed in: %+v, want 200", a)
	} else {
		wantIdentity(t, "h2 spoofed headers, signed in", g.upstream.Requests(), gate, claims)
	}

	for _, tc := range []struct {
		what         string
		path         string
		fields       []hpack.HeaderField
		user, claims []string
	}{
		{"signed in", "/records", []hpack.HeaderField{cookie, accept}, gate, claims},
		{"skip path, no session", "/health", []hpack.HeaderField{accept}, nil, nil},
	} {
		for _, declared := range trailerDeclarations {
			what := fmt.Sprintf("h2 %s, trailer: %q", tc.what, declared)
			fields := tc.fields
			if declared != "" {
				fields = append(slices.Clone(fields), hpack.HeaderField{Name: "trailer", Value: declared})
			}
			g.upstream.Reset()
			a := g.h2(t, http.MethodPost, tc.path, fields, spoofedTrailers, "hello")
			if a.status != http.StatusOK {
				t.Errorf("%s: %+v, want 200", what, a)
				continue
			}
			wantIdentity(t, what, g.upstream.Requests(), tc.user, tc.claims)
		}
	}

	// Connection is a connection-specific header, which HTTP/2 forbids
	// (RFC 9113 8.2.2): Go's server resets the stream before any handler runs.
	for _, v := range []string{"close, x-forwarded-claims", "keep-alive, x-forwarded-user"} {
		g.upstream.Reset()
		a := g.h2(t, http.MethodGet, "/records", []hpack.HeaderField{cookie, accept, {Name: "connection", Value: v}}, nil, "")
		if !(a.reset && a.code == http2.ErrCodeProtocol) && a.status != http.StatusBadRequest {
			t.Errorf("h2 connection: %s: %+v, want the stream reset with PROTOCOL_ERROR (or 400)", v, a)
		}
		t.Logf("h2 connection: %s: %+v", v, a)
		if n := len(g.upstream.Requests()); n != 0 {
			t.Errorf("h2 connection: %s: the upstream received %d requests, want none", v, n)
		}
	}
}

// TestHopByHopWebSocket: a WebSocket upgrade naming an identity header in
// Connection keeps the gateway's identity headers; without a session it is
// refused.
func TestHopByHopWebSocket(t *testing.T) {
	g, c := hopGateway(t)
	upgrade := func(cookie *http.Cookie, connection string) (*http.Response, harness.UpgradeReply) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "GET /socket HTTP/1.1\r\nHost: portal.test:%d\r\n", g.port)
		if cookie != nil {
			fmt.Fprintf(&b, "Cookie: %s=%s\r\n", cookie.Name, cookie.Value)
		}
		fmt.Fprintf(&b, "Connection: %s\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-User: admin\r\n\r\n", connection)
		conn := g.dialTLS(t, "http/1.1")
		if _, err := io.WriteString(conn, b.String()); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("upgrade, Connection: %s: %v", connection, err)
		}
		var reply harness.UpgradeReply
		if resp.StatusCode == http.StatusSwitchingProtocols {
			line, err := br.ReadBytes('\n')
			if err != nil {
				t.Fatalf("upgrade, Connection: %s: read the upgraded connection: %v", connection, err)
			}
			if err := json.Unmarshal(line, &reply); err != nil {
				t.Fatalf("upgrade reply %q: %v", line, err)
			}
		}
		return resp, reply
	}

	for _, conn := range []string{"Upgrade, X-Forwarded-Claims", "Upgrade, X-Forwarded-User", "upgrade,x-forwarded-claims,x-forwarded-user"} {
		g.upstream.Reset()
		resp, reply := upgrade(c, conn)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("upgrade, Connection: %s: %s, want 101", conn, resp.Status)
			continue
		}
		if u, cl := reply.Header.Values("X-Forwarded-User"), reply.Header.Values("X-Forwarded-Claims"); !slices.Equal(u, []string{hopUser}) || !slices.Equal(cl, []string{"group=org-a"}) {
			t.Errorf("upgrade, Connection: %s: the upstream received X-Forwarded-User %q, X-Forwarded-Claims %q (Connection %q); want [%s] [group=org-a]",
				conn, u, cl, reply.Header.Values("Connection"), hopUser)
		}
	}

	g.upstream.Reset()
	if resp, _ := upgrade(nil, "Upgrade, X-Forwarded-Claims"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upgrade without a session: %s, want 401", resp.Status)
	}
	if n := len(g.upstream.Requests()); n != 0 {
		t.Errorf("upgrade without a session: the upstream received %d requests", n)
	}
}

// TestHopByHopRandomized sends 150 hand-written HTTP/1.1 requests mixing, at
// random from a fixed seed, spoofed identity headers (any case, "_" for
// "-"), their names as Connection tokens (one header or several), and
// identity trailers (declared or not): the upstream's view of the identity
// is always exactly what the gateway set, signed in or on a skip path.
func TestHopByHopRandomized(t *testing.T) {
	g, c := hopGateway(t)
	rng := rand.New(rand.NewPCG(10, 2026))
	names := []string{"X-Forwarded-User", "X-Forwarded-Claims"}
	spell := func(name string) string {
		b := []byte(name)
		for i := range b {
			switch {
			case b[i] == '-' && rng.IntN(4) == 0:
				b[i] = '_'
			case rng.IntN(2) == 0:
				b[i] = byte(strings.ToUpper(string(b[i]))[0])
			default:
				b[i] = byte(strings.ToLower(string(b[i]))[0])
			}
		}
		return string(b)
	}
	firstFailed := -1
	for i := range 150 {
		if t.Failed() && firstFailed < 0 {
			firstFailed = i - 1
		}
		if firstFailed >= 0 && i-firstFailed > 8 {
			t.Fatalf("stopped at request %d, 8 requests after the first failing one (%d)", i, firstFailed)
		}
		signedIn := rng.IntN(3) != 0
		path := "/records"
		if !signedIn {
			path = "/health"
		}
		var head, tr []string
		for _, n := range names {
			if rng.IntN(2) == 0 {
				head = append(head, spell(n)+": "+[]string{"admin", "group=org-b", ""}[rng.IntN(3)])
			}
		}
		var tokens []string
		for _, n := range names {
			if rng.IntN(3) != 0 {
				tokens = append(tokens, spell(n))
			}
		}
		tokens = append(tokens, []string{"close", "keep-alive", "Upgrade-Insecure", "te"}[rng.IntN(4)])
		rng.Shuffle(len(tokens), func(a, b int) { tokens[a], tokens[b] = tokens[b], tokens[a] })
		if rng.IntN(2) == 0 {
			head = append(head, "Connection: "+strings.Join(tokens, ", "))
		} else {
			for _, tok := range tokens {
				head = append(head, "Connection: "+tok)
			}
		}
		chunked := rng.IntN(2) == 0
		if chunked {
			for _, n := range names {
				if rng.IntN(3) != 0 {
					tr = append(tr, spell(n)+": admin")
				}
			}
			if len(tr) > 0 && rng.IntN(2) == 0 {
				head = append(head, "Trailer: "+strings.Join(names, ", "))
			}
		}

		var b strings.Builder
		method := "GET"
		if chunked {
			method = "POST"
		}
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: portal.test:%d\r\nAccept: application/json\r\n", method, path, g.port)
		if signedIn {
			fmt.Fprintf(&b, "Cookie: %s=%s\r\n", c.Name, c.Value)
		}
		for _, h := range head {
			b.WriteString(h + "\r\n")
		}
		if chunked {
			b.WriteString("Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n")
			for _, h := range tr {
				b.WriteString(h + "\r\n")
			}
		}
		b.WriteString("\r\n")

		g.upstream.Reset()
		resp, body := g.raw(t, b.String())
		what := fmt.Sprintf("request %d %q", i, b.String())
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s %.120q, want 200", what, resp.Status, body)
			continue
		}
		if signedIn {
			wantIdentity(t, what, g.upstream.Requests(), []string{hopUser}, []string{"group=org-a"})
		} else {
			wantIdentity(t, what, g.upstream.Requests(), nil, nil)
		}
		for _, r := range g.upstream.Requests() {
			for k := range r.Header {
				if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Forwarded-User") && k != "X-Forwarded-User" ||
					strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Forwarded-Claims") && k != "X-Forwarded-Claims" {
					t.Errorf("%s: the upstream received %s: %q", what, k, r.Header[k])
				}
			}
			for k := range r.Trailer {
				if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Forwarded-User") || strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Forwarded-Claims") {
					t.Errorf("%s: the upstream received trailer %s: %q", what, k, r.Trailer[k])
				}
			}
		}
	}
}

// TestHopByHopCustomHeaderNames: with user_header and claims_header set,
// those names are the ones cleaned from headers, Connection and trailers.
func TestHopByHopCustomHeaderNames(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: "skip /health\n\t\tuser_header X-Portal-User\n\t\tclaims_header X-Portal-Claims"})
	c := g.signIn(t, hopUser)
	for _, tc := range []struct {
		what, path   string
		cookie       *http.Cookie
		user, claims []string
	}{
		{"signed in", "/records", c, []string{hopUser}, []string{"group=org-a"}},
		{"skip path, no session", "/health", nil, nil, nil},
	} {
		var b strings.Builder
		fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: portal.test:%d\r\nAccept: application/json\r\n", tc.path, g.port)
		if tc.cookie != nil {
			fmt.Fprintf(&b, "Cookie: %s=%s\r\n", tc.cookie.Name, tc.cookie.Value)
		}
		b.WriteString("X-Portal-User: admin\r\nX-Portal_Claims: group=org-b\r\nConnection: close, x-portal-claims, X-PORTAL-USER\r\n" +
			"Trailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n" +
			"X-Portal-User: admin\r\nX-Portal-Claims: group=org-b\r\nX-Checksum: 1\r\n\r\n")
		g.upstream.Reset()
		resp, body := g.raw(t, b.String())
		what := "custom header names, " + tc.what
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s %.120q, want 200", what, resp.Status, body)
			continue
		}
		wantIdentityAs(t, what, g.upstream.Requests(), "X-Portal-User", "X-Portal-Claims", tc.user, tc.claims)
	}
}

// TestHopByHopHTTP3: Caddy serves HTTP/3 on the site's UDP port too, with
// quic-go's server, which fills request trailers its own way (it replaces
// the request's Trailer map once the trailer HEADERS frame arrives, so with
// Caddy 2.11.9 the upstream gets the declared trailer names without values).
// Spoofed identity headers and trailers never arrive there either. (quic-go
// refuses Connection in HTTP/3, and its client never sends it.)
func TestHopByHopHTTP3(t *testing.T) {
	g, c := hopGateway(t)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: g.caddy.RootCAs(t), ServerName: "portal.test", NextProtos: []string{http3.NextProtoH3}},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, fmt.Sprintf("127.0.0.1:%d", g.port), tlsCfg, cfg)
		},
	}
	t.Cleanup(func() { tr.Close() })
	client := &http.Client{Transport: tr, Timeout: rawTimeout}

	for _, tc := range []struct {
		what, path   string
		cookie       *http.Cookie
		user, claims []string
	}{
		{"signed in", "/records", c, []string{hopUser}, []string{"group=org-a"}},
		{"skip path, no session", "/health", nil, nil, nil},
	} {
		for _, withTrailers := range []bool{false, true} {
			what := fmt.Sprintf("h3 %s, trailers %v", tc.what, withTrailers)
			body := io.Reader(strings.NewReader("hello"))
			req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("https://portal.test:%d%s", g.port, tc.path), io.NopCloser(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json")
			req.Header.Set("X-Forwarded-User", "admin")
			req.Header.Set("X-Forwarded-Claims", "group=org-b")
			if tc.cookie != nil {
				req.AddCookie(tc.cookie)
			}
			if withTrailers {
				req.Trailer = http.Header{"X-Forwarded-User": {"admin"}, "X-Forwarded-Claims": {"group=org-b"}, "X-Checksum": {"1"}}
			}
			g.upstream.Reset()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/3.0" {
				t.Errorf("%s: %s %s %.120q, want 200 over HTTP/3", what, resp.Proto, resp.Status, b)
				continue
			}
			if reqs := g.upstream.Requests(); len(reqs) == 1 {
				t.Logf("%s: the upstream received trailers %v", what, reqs[0].Trailer)
			}
			wantIdentity(t, what, g.upstream.Requests(), tc.user, tc.claims)
		}
	}
}

// TestHopByHopHeaderNamesRefusedAtLoad: user_header and claims_header name
// headers the gateway sets for the upstream, so a name that cannot reach the
// upstream exactly as set is a configuration error, refused by `caddy
// validate`: hop-by-hop headers (reverse_proxy drops them), the
// X-Forwarded-* headers reverse_proxy writes itself, headers that frame or
// route the request (the cleaner would remove the client's own), one name
// for both, and names that are no HTTP token at all.
func TestHopByHopHeaderNamesRefusedAtLoad(t *testing.T) {
	valid := "user_header X-Portal-User\n\t\tclaims_header X-Portal-Claims"
	if out := caddyValidate(t, gatewayCaddyfile(harness.FreePort(t), "127.0.0.1:9", gatewayOptions{extra: valid})); out != "" {
		t.Fatalf("custom header names refused: %s", tail(out, 300))
	}
	for _, extra := range []string{
		"user_header Connection", "user_header Keep-Alive", "user_header Proxy-Connection", "user_header Te",
		"claims_header Trailer", "claims_header Transfer-Encoding", "user_header Upgrade",
		"user_header X-Forwarded-For", "claims_header X-Forwarded-Proto", "user_header X-Forwarded-Host",
		"user_header Host", "user_header Cookie", "user_header Content-Length", "user_header Authorization",
		"user_header X-Forwarded-Claims", "claims_header x-forwarded-user",
		`user_header "X Portal User"`, `user_header X-Portal:User`,
	} {
		if out := caddyValidate(t, gatewayCaddyfile(harness.FreePort(t), "127.0.0.1:9", gatewayOptions{extra: extra})); out == "" {
			t.Errorf("%s: caddy validate says the configuration is valid, want it refused", extra)
		}
	}
}

// TestHopByHopAssertionHeader: the signed assertion is a header the gateway
// sets too, so naming it in Connection, sending it as a trailer or on a
// WebSocket upgrade neither drops the gateway's own nor lets a client's in.
func TestHopByHopAssertionHeader(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: assertionBlock("hop1", assertionKey(t, "hop1"))})
	c := g.signIn(t, hopUser)
	const forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.forged"
	check := func(what string, h http.Header, signedIn bool) {
		t.Helper()
		v := h.Values("X-Ssogate-Assertion")
		switch {
		case !signedIn && v != nil:
			t.Errorf("%s: the upstream received X-Ssogate-Assertion %q, want none", what, v)
		case signedIn && (len(v) != 1 || strings.Contains(v[0], "forged") || strings.Count(v[0], ".") != 2):
			t.Errorf("%s: the upstream received X-Ssogate-Assertion %q, want exactly the gateway's JWT", what, v)
		}
	}
	for _, tc := range []struct {
		path   string
		cookie *http.Cookie
	}{{"/records", c}, {"/health", nil}} {
		var b strings.Builder
		fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: portal.test:%d\r\nAccept: application/json\r\n", tc.path, g.port)
		if tc.cookie != nil {
			fmt.Fprintf(&b, "Cookie: %s=%s\r\n", tc.cookie.Name, tc.cookie.Value)
		}
		b.WriteString("X-Ssogate-Assertion: " + forged + "\r\nConnection: close, X-Ssogate-Assertion\r\n" +
			"Trailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n" +
			"X-Ssogate-Assertion: " + forged + "\r\nX-Checksum: 1\r\n\r\n")
		g.upstream.Reset()
		resp, body := g.raw(t, b.String())
		reqs := g.upstream.Requests()
		what := "assertion in Connection and trailers, " + tc.path
		if resp.StatusCode != http.StatusOK || len(reqs) != 1 {
			t.Errorf("%s: %s, upstream got %d requests: %.120q", what, resp.Status, len(reqs), body)
			continue
		}
		check(what, reqs[0].Header, tc.cookie != nil)
		if v := reqs[0].Trailer.Values("X-Ssogate-Assertion"); v != nil {
			t.Errorf("%s: the upstream received the trailer X-Ssogate-Assertion %q", what, v)
		}
	}

	// A WebSocket upgrade naming it in Connection.
	conn := g.dialTLS(t, "http/1.1")
	fmt.Fprintf(conn, "GET /socket HTTP/1.1\r\nHost: portal.test:%d\r\nCookie: %s=%s\r\nConnection: Upgrade, X-Ssogate-Assertion\r\n"+
		"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", g.port, c.Name, c.Value)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var reply harness.UpgradeReply
	if err := json.NewDecoder(br).Decode(&reply); err != nil {
		t.Fatal(err)
	}
	check("upgrade, Connection: Upgrade, X-Ssogate-Assertion", reply.Header, true)
}
