package redirect

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/internal/redirect/redirecttest"
)

// fuzzHosts are the request hosts a fuzz input may be checked against,
// picked by its second argument.
var fuzzHosts = []string{"portal.test:8443", "portal.test", "[2001:db8::1]:8443", "192.0.2.7", "PORTAL.Test", ""}

// FuzzCheck holds Check to what matters, whatever the input: an accepted
// target reaches only an allowed host, read by net/url or by a browser.
func FuzzCheck(f *testing.F) {
	for _, s := range redirecttest.BadTargets {
		f.Add(s, uint8(0))
	}
	for _, s := range redirecttest.GoodTargets {
		f.Add(s, uint8(1))
	}
	for _, c := range badExtras {
		f.Add(c.target, uint8(0))
	}
	for _, c := range goodExtras {
		f.Add(c.target, uint8(0))
	}
	for _, s := range []string{
		"https://[2001:db8::1]/", "https://192.0.2.7:1/", "https://a.clinic.example",
		"/%", "/%%2f", "%", "/\u00ff", "\xff", "/\xc0\xaf", "https://\xe3\x80\x82/",
		"https://portal.test#@evil.com", "https://portal.test?@evil.com",
		"https://evil.com#@portal.test", "/;/evil.com", "/..;/evil.com",
		"https://portal.test/..%2f..%2f", "h:", ":", "/:", "https://[", "https://]",
	} {
		f.Add(s, uint8(0))
	}

	f.Fuzz(func(t *testing.T, target string, which uint8) {
		requestHost := fuzzHosts[int(which)%len(fuzzHosts)]
		got, err := testPolicy.Check(target, requestHost)
		if err != nil {
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("error %v does not wrap ErrNotAllowed", err)
			}
			if got != "" {
				t.Fatalf("refused but returned %q", got)
			}
			if len(err.Error()) > len(ErrNotAllowed.Error())+4*maxEcho+80 {
				t.Fatalf("reason too long: %q", err)
			}
			return
		}
		if got != target {
			t.Fatalf("accepted %q as %q", target, got)
		}
		if len(target) > MaxLen {
			t.Fatalf("accepted %d bytes", len(target))
		}
		for i := 0; i < len(target); i++ {
			if c := target[i]; c <= ' ' || c >= 0x7f || c == '\\' {
				t.Fatalf("accepted %q with byte %#x", target, c)
			}
		}
		if strings.HasPrefix(target, "//") {
			t.Fatalf("accepted scheme-relative %q", target)
		}

		// As net/url, and so as Go servers and proxies, reads it.
		u, err := url.Parse(target)
		if err != nil {
			t.Fatalf("accepted %q that net/url cannot parse: %v", target, err)
		}
		if u.User != nil || u.Opaque != "" {
			t.Fatalf("accepted %q with userinfo or opaque part", target)
		}
		switch {
		case u.Scheme == "" && u.Host == "":
			if !strings.HasPrefix(target, "/") {
				t.Fatalf("accepted relative %q", target)
			}
		case strings.EqualFold(u.Scheme, "https") && u.Host != "":
			if !allowedHost(u.Hostname(), requestHost) {
				t.Fatalf("accepted %q: net/url host %q", target, u.Hostname())
			}
		default:
			t.Fatalf("accepted %q: scheme %q host %q", target, u.Scheme, u.Host)
		}
		if strings.Contains(u.Path, "//") || strings.Contains(u.Path, "\\") {
			t.Fatalf("accepted %q: decoded path %q", target, u.Path)
		}
		base := &url.URL{Scheme: "https", Host: requestHost, Path: "/sso/redirect/x"}
		if h := base.ResolveReference(u).Hostname(); h != base.Hostname() && !allowedHost(h, requestHost) {
			t.Fatalf("accepted %q: resolves to host %q", target, h)
		}

		// As a browser reads it.
		if h, ok := browserHost(target); ok && !allowedHost(h, requestHost) {
			t.Fatalf("accepted %q: browser host %q", target, h)
		}
	})
}

// allowedHost is testPolicy written out independently of Check.
func allowedHost(host, requestHost string) bool {
	host = strings.ToLower(host)
	own := strings.ToLower(requestHost)
	if strings.HasPrefix(own, "[") {
		own = own[1:strings.IndexByte(own, ']')]
	} else if i := strings.LastIndexByte(own, ':'); i >= 0 {
		own = own[:i]
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		b, err := netip.ParseAddr(own)
		return err == nil && a == b
	}
	if host == own {
		return own != ""
	}
	switch host {
	case "portal.test", "app.example.com":
		return true
	}
	return strings.HasSuffix(host, ".clinic.example") && len(host) > len(".clinic.example")
}

// browserHost returns the host a browser would navigate to for target, and
// false if it stays on the request's own host. It models the WHATWG URL
// parser pessimistically: leading and trailing C0 controls and spaces are
// trimmed, tab/CR/LF removed anywhere, '\' read as '/', any run of slashes
// after a special scheme taken as the start of the authority, the host
// percent-decoded, and full-width forms and ideographic full stops folded
// to ASCII as IDNA mapping does.
func browserHost(target string) (string, bool) {
	s := strings.TrimFunc(target, func(r rune) bool { return r <= ' ' })
	s = strings.NewReplacer("\t", "", "\r", "", "\n", "", "\\", "/").Replace(s)

	rest := s
	if i := strings.IndexByte(s, ':'); i > 0 && isScheme(s[:i]) {
		switch strings.ToLower(s[:i]) {
		case "http", "https", "ws", "wss", "ftp", "file":
			rest = "//" + strings.TrimLeft(s[i+1:], "/")
		default:
			// Non-special schemes (javascript:, data:) do not navigate to
			// a host; Check must have refused them, which the net/url
			// reading already asserts.
			return "", false
		}
	}
	if !strings.HasPrefix(rest, "//") {
		return "", false
	}
	authority := rest[2:]
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		authority = authority[:i]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	host := authority
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[:i+1]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if d, err := url.PathUnescape(host); err == nil {
		host = d
	}
	host = strings.Map(func(r rune) rune {
		switch {
		case r == '\u3002' || r == '\uff0e' || r == '\uff61':
			return '.'
		case r >= '\uff01' && r <= '\uff5e':
			return r - 0xfee0
		}
		return r
	}, host)
	return host, true
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && (i == 0 || !isDigit(c) && c != '+' && c != '-' && c != '.') {
			return false
		}
	}
	return s != ""
}
