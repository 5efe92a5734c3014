package reqclean

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

var identity = New("X-Forwarded-User", "X-Forwarded-Claims", "X-Ssogate-Assertion")

// upstreamView sends the raw request through Clean, sets the gateway's own
// identity headers, and returns what a standard reverse proxy forwards:
// headers and trailers as the upstream receives them.
func upstreamView(t testing.TB, raw string) (http.Header, http.Header, bool) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return nil, nil, false // not a request net/http would serve
	}
	identity.Clean(req)
	req.Header.Set("X-Forwarded-User", "alice")
	req.Header.Set("X-Forwarded-Claims", "group=org-a")
	req.Header.Set("X-Ssogate-Assertion", "signed")

	var outHeader, outTrailer http.Header
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "upstream"}) },
		Transport: roundTripFunc(func(out *http.Request) (*http.Response, error) {
			if out.Body != nil {
				_, _ = io.Copy(io.Discard, out.Body)
			}
			outHeader, outTrailer = out.Header.Clone(), out.Trailer.Clone()
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: out}, nil
		}),
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) {},
	}
	proxy.ServeHTTP(httptest.NewRecorder(), req)
	return outHeader, outTrailer, outHeader != nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// checkView fails unless the upstream sees exactly the gateway's identity.
func checkView(t *testing.T, raw string, hdr, tr http.Header) {
	t.Helper()
	want := map[string]string{"X-Forwarded-User": "alice", "X-Forwarded-Claims": "group=org-a", "X-Ssogate-Assertion": "signed"}
	for name, v := range want {
		if got := hdr.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("%q: upstream got %s %q, want %q", raw, name, got, v)
		}
	}
	for name := range hdr {
		if identity.Owns(name) && want[name] == "" {
			t.Errorf("%q: upstream got client header %s: %q", raw, name, hdr[name])
		}
	}
	for name := range tr {
		if identity.Owns(name) {
			t.Errorf("%q: upstream got trailer %s: %q", raw, name, tr[name])
		}
	}
}

func TestCleanUpstreamView(t *testing.T) {
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: p\r\nX-Forwarded-User: admin\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: p\r\nx-forwarded-user: admin\r\nX_Forwarded_Claims: group=root\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: p\r\nConnection: close, X-Forwarded-Claims\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: p\r\nConnection: keep-alive, x-forwarded-user\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: p\r\nConnection: keep-alive\r\nConnection: X_FORWARDED_USER , X-Ssogate-Assertion\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: p\r\nConnection: Upgrade, X-Forwarded-Claims\r\nUpgrade: websocket\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nTrailer: X-Forwarded-User, X-Forwarded-Claims\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-Forwarded-User: admin\r\nX-Forwarded-Claims: group=org-b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Forwarded-User: admin\r\nx_forwarded_claims: group=org-b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Forwarded-User: admin\r\n\r\n",
	} {
		hdr, tr, ok := upstreamView(t, raw)
		if !ok {
			t.Fatalf("%q: not proxied", raw)
		}
		checkView(t, raw, hdr, tr)
	}
}

func TestCleanKeepsOtherTokens(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["Connection"] = []string{"Upgrade, X-Forwarded-User", "x_forwarded_claims"}
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("X-Forwarded-Userx", "kept: another header")
	identity.Clean(r)
	if got := r.Header["Connection"]; len(got) != 1 || got[0] != "Upgrade" {
		t.Errorf("Connection = %q, want [Upgrade]", got)
	}
	if r.Header.Get("X-Forwarded-Userx") == "" {
		t.Error("a header that only starts like an identity header was removed")
	}
	if r.Body != http.NoBody {
		t.Error("a request without a body got one")
	}
}

func TestOwns(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Forwarded-User": true, "x-forwarded-user": true, "X_FORWARDED_USER": true, "X-Forwarded_User": true,
		"X-Forwarded-Users": false, "X-Forwarded-Use": false, "Forwarded": false, "": false,
	} {
		if got := identity.Owns(name); got != want {
			t.Errorf("Owns(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzClean: whatever headers, Connection tokens and trailers a client sends,
// the upstream's view of the identity headers is what the gateway set.
func FuzzClean(f *testing.F) {
	f.Add("X-Forwarded-User", "admin", "close, X-Forwarded-Claims", "X-Forwarded-User", "admin")
	f.Add("x_forwarded_claims", "group=root", "X_Forwarded_User", "x-forwarded-claims", "group=b")
	f.Add("X-Other", "1", "Upgrade, x-ssogate-assertion", "X-Ssogate-Assertion", "forged")
	f.Fuzz(func(t *testing.T, name, value, connection, trailer, trailerValue string) {
		for _, s := range []string{name, value, connection, trailer, trailerValue} {
			if strings.ContainsAny(s, "\r\n") {
				return
			}
		}
		raw := "POST / HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n" +
			name + ": " + value + "\r\nConnection: " + connection + "\r\nTrailer: " + trailer + "\r\n\r\n" +
			"1\r\nx\r\n0\r\n" + trailer + ": " + trailerValue + "\r\n" + name + ": " + value + "\r\n\r\n"
		hdr, tr, ok := upstreamView(t, raw)
		if !ok {
			return
		}
		checkView(t, raw, hdr, tr)
	})
}
