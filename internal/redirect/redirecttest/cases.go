// Package redirecttest holds the redirect targets every redeem route is held
// to, for the tests of package redirect and the integration tests alike. It is
// imported by tests only, so it is not compiled into Caddy.
package redirecttest

import "strings"

// MaxLen is redirect.MaxLen. It is repeated because the tests of package
// redirect import this package, which therefore cannot import it; a test there
// keeps the two equal.
const MaxLen = 2048

// BadTargets are targets every redeem route's integration test must refuse
// (with 400, the token left unconsumed), for a request to host "portal.test"
// with redirect_hosts "app.example.com". They are kept here, in a package of
// their own, so that every route is held to the same list.
var BadTargets = []string{
	// other hosts
	"https://evil.com/",
	"https://portal.test.evil.com/",
	"https://evilportal.test/",
	"https://example.com/",
	"https://sub.app.example.com/",
	// downgrade and script schemes
	"http://portal.test/",
	"javascript:alert(document.domain)",
	"JavaScript:alert(1)",
	"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
	"vbscript:msgbox(1)",
	"file:///etc/passwd",
	// scheme-relative and missing slashes
	"//evil.com",
	"//evil.com/portal",
	"///evil.com",
	"https:evil.com",
	"https:/evil.com",
	"https:///evil.com",
	// backslashes
	"/\\evil.com",
	"\\\\evil.com",
	"\\/evil.com",
	"https://portal.test\\@evil.com/",
	"/portal\\..\\..\\evil",
	// control characters and whitespace
	"/\t/evil.com",
	"/\r\nSet-Cookie: x=1",
	"/portal\x00",
	"/portal\x7f",
	" /portal",
	"/portal ",
	"java\tscript:alert(1)",
	// percent-encoded tricks
	"/%2f%2fevil.com",
	"/%2F%2Fevil.com",
	"%2F%2Fevil.com",
	"/%5cevil.com",
	"/%252f%252fevil.com",
	"/%09/evil.com",
	"/%0d%0aSet-Cookie:x=1",
	"/%00",
	"https://evil.com%2eportal.test/",
	// userinfo
	"https://portal.test@evil.com/",
	"https://user:pw@portal.test/",
	"https://portal.test:443@evil.com/",
	// unicode look-alikes and non-ASCII hosts
	"/\u2215\u2215evil.com",
	"/\u2044evil.com",
	"/\uff0f\uff0fevil.com",
	"https://evil\u3002com/",
	"https://portal\uff0etest/",
	"https://p\u043ertal.test/",
	// IP literals and empty hosts
	"https://127.0.0.1/",
	"https://[::1]/",
	"https://2130706433/",
	"https://0x7f.0.0.1/",
	"https://:443/",
	"https://",
	// not an absolute path
	"evil.com",
	"./portal",
	"../portal",
	"portal/index.html",
	"?next=/",
	"#/patients",
	// too long
	"/" + strings.Repeat("a", MaxLen),
}

// GoodTargets are targets every redeem route's integration test must accept
// and redirect to byte for byte, for a request to host "portal.test" with
// redirect_hosts "app.example.com".
var GoodTargets = []string{
	"/",
	"/portal/",
	"/portal/#/patients/6422/details/overview",
	"/portal/index.html?tab=labs&sort=desc",
	"/search?q=a%20b&from=%2F%2Fhome",
	"/caf%C3%A9/menu",
	"/a/b;v=1/c:d@e~f",
	"https://portal.test",
	"https://portal.test/",
	"https://portal.test/app/#/x?y=1",
	"https://PORTAL.test:8443/app?x=1#frag",
	"https://app.example.com/dashboard",
	"https://app.example.com:9443/x?y=z#/w//v",
	"/" + strings.Repeat("a", MaxLen-1),
}
