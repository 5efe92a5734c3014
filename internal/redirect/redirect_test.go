package redirect

import (
	"errors"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/internal/redirect/redirecttest"
)

func TestSharedCasesKnowTheLimit(t *testing.T) {
	if redirecttest.MaxLen != MaxLen {
		t.Fatalf("redirecttest.MaxLen = %d, redirect.MaxLen = %d", redirecttest.MaxLen, MaxLen)
	}
}

// testPolicy is the policy of the SPEC's sample Caddyfile, plus a wildcard.
var testPolicy = Policy{Hosts: []string{"portal.test", "app.example.com", "*.clinic.example"}}

const testHost = "portal.test:8443"

// badExtras add, to the shared redirecttest.BadTargets, cases that need the wider test
// policy or the port in the request host, and more variants per category.
var badExtras = []struct{ name, target string }{
	{"other host", "https://evil.com:8443/"},
	{"other host, suffix of allowed", "https://xportal.test/"},
	{"other host, allowed as prefix", "https://portal.test.evil.com:8443/"},
	{"wildcard base itself", "https://clinic.example/"},
	{"wildcard lookalike suffix", "https://evilclinic.example/"},
	{"wildcard suffix then other", "https://a.clinic.example.evil.com/"},
	{"host with trailing dot", "https://portal.test./"},
	{"host with underscore", "https://por_tal.test/"},
	{"host with empty label", "https://portal..test/"},
	{"host label starting with dash", "https://-portal.test/"},
	{"http downgrade, uppercase", "HTTP://portal.test/"},
	{"http downgrade, own port", "http://portal.test:8443/"},
	{"javascript with leading space", " javascript:alert(1)"},
	{"javascript uppercase", "JAVASCRIPT:alert(1)"},
	{"javascript in path-ish", "javascript://portal.test/%0aalert(1)"},
	{"data scheme uppercase", "DATA:text/html,<script>alert(1)</script>"},
	{"vbscript uppercase", "VBScript:msgbox(1)"},
	{"other scheme", "ftp://portal.test/"},
	{"scheme-relative to own host", "//portal.test/"},
	{"scheme-relative with port", "//evil.com:8443"},
	{"backslash after slash", "/\\/evil.com"},
	{"backslash in authority", "https:\\\\evil.com"},
	{"backslash in query", "/portal?x=\\"},
	{"backslash in fragment", "/portal#\\"},
	{"tab inside scheme", "ht\ttps://evil.com"},
	{"newline in host", "https://portal.test\n.evil.com/"},
	{"CR in path", "/portal\r/x"},
	{"NUL in host", "https://evil.com\x00.portal.test/"},
	{"DEL in path", "/\x7f/evil.com"},
	{"trailing tab", "/portal\t"},
	{"space in query", "/portal?q=a b"},
	{"encoded tab in path", "/portal%09"},
	{"encoded LF in path", "/portal%0a"},
	{"encoded CR in path", "/portal%0D"},
	{"encoded NUL in path", "/portal%00.html"},
	{"encoded DEL in path", "/portal%7f"},
	{"encoded slash after slash", "/%2fevil.com"},
	{"encoded slashes, absolute", "https://portal.test/%2f%2fevil.com"},
	{"encoded backslash, absolute", "https://portal.test/%5C%5Cevil.com"},
	{"double-encoded backslash", "/%255cevil.com"},
	{"triple-encoded slashes", "/%25252f%25252fevil.com"},
	{"quadruple-encoded slash", "/%2525252fx"},
	{"encoded look-alike slash", "/%E2%88%95%E2%88%95evil.com"},
	{"encoded ideographic stop", "/x%E3%80%82y"},
	{"lenient decoder double slash", "/%25%252f%252fevil.com"},
	{"malformed escape in path", "/portal%zz"},
	{"truncated escape in path", "/portal%2"},
	{"malformed escape in query", "/portal?x=%"},
	{"malformed escape in fragment", "/portal#%g0"},
	{"percent in host", "https://%70ortal.test/"},
	{"encoded dot in host", "https://portal%2etest/"},
	{"empty segment in path", "/portal//evil.com"},
	{"dot segment forming //", "/.//evil.com"},
	{"userinfo with own port", "https://portal.test:8443@evil.com/"},
	{"userinfo, user only", "https://user@portal.test/"},
	{"userinfo, empty", "https://@portal.test/"},
	{"userinfo, listed host", "https://evil.com@app.example.com/"},
	{"division slash in path", "/portal\u2215x"},
	{"fullwidth reverse solidus", "/\uff3cevil.com"},
	{"ideographic full stop in host", "https://portal\u3002test/"},
	{"halfwidth ideographic stop in host", "https://app\uff61example.com/"},
	{"fullwidth letters in host", "https://\uff50\uff4f\uff52\uff54\uff41\uff4c.test/"},
	{"non-ASCII in fragment", "/portal#/\u00e9"},
	{"IPv4 loopback", "https://127.0.0.1:8443/"},
	{"IPv4 short form", "https://127.1/"},
	{"IPv4 octal", "https://0177.0.0.1/"},
	{"IPv4 ends in number", "https://evil.1/"},
	{"IPv4 ends in hex", "https://evil.0x1f/"},
	{"IPv6 loopback", "https://[::1]:8443/"},
	{"IPv6 mapped IPv4", "https://[::ffff:127.0.0.1]/"},
	{"IPv6 unclosed", "https://[::1/"},
	{"IPv6 zone", "https://[fe80::1%25eth0]/"},
	{"empty host with port", "https://:8443/"},
	{"empty host with query", "https://?x"},
	{"empty port", "https://portal.test:/"},
	{"port not a number", "https://portal.test:443x/"},
	{"port too large", "https://portal.test:65536/"},
	{"two ports", "https://portal.test:443:443/"},
	{"relative, bare host", "portal.test/x"},
	{"relative, dot", "."},
	{"relative, query only", "?"},
	{"fragment only", "#"},
	{"scheme only", "https:"},
	{"bad characters in path", "/portal/<script>"},
	{"quote in path", "/portal\"onload=x"},
	{"brace in query", "/portal?x={}"},
	{"too long, absolute", "https://portal.test/" + strings.Repeat("a", MaxLen)},
	{"empty", ""},
}

// goodExtras add, to the shared redirecttest.GoodTargets, cases that need the wider test
// policy or the port in the request host.
var goodExtras = []struct{ name, target string }{
	{"own host with its port", "https://portal.test:8443/portal/"},
	{"own host on another port", "https://portal.test:9443/"},
	{"scheme uppercase", "HTTPS://portal.test/"},
	{"wildcard subdomain", "https://a.clinic.example/x"},
	{"wildcard deeper subdomain", "https://b.a.clinic.example:8443/x#y"},
	{"wildcard uppercase", "https://A.CLINIC.example/"},
	{"SPA fragment", "/portal/#/patients/6422/details/overview"},
	{"fragment with query", "https://portal.test/app/#/x?y=1"},
	{"fragment with #", "/portal/#/a#b"},
	{"fragment with //", "/portal/#//x"},
	{"brackets in query", "/api?filter[0]=x&sort[]=y"},
	{"query with URL", "/portal?next=https://evil.com/"},
	{"query with encoded LF", "/portal?note=a%0Ab"},
	{"encoded space in path", "/files/my%20report.pdf"},
	{"double-encoded harmless", "/a%2541"},
	{"dot segments", "/portal/../sso/x/./y"},
	{"colon in first segment", "/javascript:alert(1)"},
	{"at sign in path", "/@evil.com"},
	{"exactly max length", "/" + strings.Repeat("b", MaxLen-1)},
}

func TestCheckRefuses(t *testing.T) {
	if n := len(redirecttest.BadTargets) + len(badExtras); n < 40 {
		t.Fatalf("only %d bad targets", n)
	}
	for _, target := range redirecttest.BadTargets {
		t.Run("BadTargets/"+testName(target), func(t *testing.T) {
			assertRefused(t, testPolicy, target, testHost)
			assertRefused(t, Policy{Hosts: []string{"app.example.com"}}, target, "portal.test")
		})
	}
	for _, c := range badExtras {
		t.Run(c.name, func(t *testing.T) {
			assertRefused(t, testPolicy, c.target, testHost)
		})
	}
}

func TestCheckAccepts(t *testing.T) {
	if n := len(redirecttest.GoodTargets) + len(goodExtras); n < 10 {
		t.Fatalf("only %d good targets", n)
	}
	for _, target := range redirecttest.GoodTargets {
		t.Run("GoodTargets/"+testName(target), func(t *testing.T) {
			assertAccepted(t, testPolicy, target, testHost)
			assertAccepted(t, Policy{Hosts: []string{"app.example.com"}}, target, "portal.test")
		})
	}
	for _, c := range goodExtras {
		t.Run(c.name, func(t *testing.T) {
			assertAccepted(t, testPolicy, c.target, testHost)
		})
	}
}

func TestCheckIPv6RequestHost(t *testing.T) {
	const host = "[2001:db8::1]:8443"
	p := Policy{Hosts: []string{"app.example.com"}}
	for _, target := range []string{
		"/portal/#/x",
		"https://[2001:db8::1]/",
		"https://[2001:db8::1]:8443/portal?x=1#y",
		"https://[2001:DB8::1]/",
		"https://[2001:db8:0:0::1]/",
		"https://app.example.com/",
	} {
		assertAccepted(t, p, target, host)
	}
	for _, target := range append([]string{
		"https://[2001:db8::2]/",
		"https://[2001:db8::1%25eth0]/",
		"https://[2001:db8::1]x/",
		"https://2001:db8::1/",
		"https://[2001:db8::1]@evil.com/",
		"https://[127.0.0.1]/",
		"https://portal.test/",
	}, redirecttest.BadTargets...) {
		assertRefused(t, p, target, host)
	}
}

func TestCheckIPv4RequestHost(t *testing.T) {
	const host = "192.0.2.7:8443"
	var p Policy
	assertAccepted(t, p, "https://192.0.2.7/x", host)
	assertAccepted(t, p, "https://192.0.2.7:9443/x", host)
	for _, target := range []string{
		"https://192.0.2.8/",
		"https://192.0.2.007/",
		"https://3221225991/",
		"https://0xc0.0.2.7/",
		"https://192.0.519/",
		"https://[::ffff:192.0.2.7]/",
	} {
		assertRefused(t, p, target, host)
	}
}

// Listing an IP never allows it: only the request's own address is.
func TestCheckIPNotViaHosts(t *testing.T) {
	p := Policy{Hosts: []string{"10.0.0.1", "[::1]", "::1"}}
	for _, target := range []string{"https://10.0.0.1/", "https://[::1]/"} {
		assertRefused(t, p, target, "portal.test")
	}
}

func TestCheckOddPolicies(t *testing.T) {
	// An empty request host (HTTP/1.0) leaves only the listed hosts.
	assertRefused(t, Policy{}, "https://portal.test/", "")
	assertAccepted(t, Policy{}, "/x", "")
	// "*" and "*." are not "any host".
	assertRefused(t, Policy{Hosts: []string{"*", "*.", ""}}, "https://evil.com/", "portal.test")
	// The request host is compared case-insensitively, like a listed one.
	assertAccepted(t, Policy{}, "https://portal.test/", "PORTAL.TEST:8443")
	assertAccepted(t, Policy{Hosts: []string{"App.Example.COM"}}, "https://app.example.com/", "portal.test")
}

func TestRefusalDoesNotEchoInput(t *testing.T) {
	long := "https://" + strings.Repeat("e", 200) + ".com/"
	for _, target := range []string{long, "javascript" + strings.Repeat("x", 300) + ":1", "/" + strings.Repeat("%", 5000)} {
		_, err := testPolicy.Check(target, testHost)
		if err == nil {
			t.Fatalf("accepted %.40q", target)
		}
		if strings.Contains(err.Error(), strings.Repeat("e", 65)) ||
			strings.Contains(err.Error(), strings.Repeat("x", 65)) ||
			len(err.Error()) > 200 {
			t.Errorf("reason echoes too much: %q", err)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	targets := []string{
		"/portal/#/patients/6422/details/overview",
		"https://app.example.com:9443/x?y=z#w",
		"/search?q=a%20b&from=%2F%2Fhome",
		"//evil.com",
	}
	for b.Loop() {
		for _, t := range targets {
			_, _ = testPolicy.Check(t, testHost)
		}
	}
}

func assertRefused(t *testing.T, p Policy, target, host string) {
	t.Helper()
	got, err := p.Check(target, host)
	if err == nil {
		t.Errorf("Check(%q, %q) = %q, want refusal", target, host, got)
		return
	}
	if !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Check(%q, %q): error %v does not wrap ErrNotAllowed", target, host, err)
	}
	if got != "" {
		t.Errorf("Check(%q, %q) refused but returned %q", target, host, got)
	}
}

func assertAccepted(t *testing.T, p Policy, target, host string) {
	t.Helper()
	got, err := p.Check(target, host)
	if err != nil {
		t.Errorf("Check(%q, %q): %v", target, host, err)
		return
	}
	if got != target {
		t.Errorf("Check(%q, %q) = %q, want it unchanged", target, host, got)
	}
}

func testName(target string) string {
	if len(target) > 40 {
		target = target[:40] + "…"
	}
	return target
}
