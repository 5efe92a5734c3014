package skippath

import (
	"net/url"
	"testing"
)

func match(t *testing.T, l *List, raw string) bool {
	t.Helper()
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return false // net/http refuses it before any handler
	}
	return l.Match(u.EscapedPath(), u.Path)
}

func TestMatch(t *testing.T) {
	l, err := New([]string{"/health", "/assets/*", "/styles/*.css", "/static/*/logo.png"})
	if err != nil {
		t.Fatal(err)
	}
	skipped := []string{
		"/health", "/health?x=1", "/assets/", "/assets/app.js", "/assets/css/site.css", "/assets/a%20b.js",
		"/assets/%E2%82%AC.js", "/assets/€.js", "/styles/site.css", "/static/v1/logo.png", "/assets/a-b_c~d.js",
	}
	for _, p := range skipped {
		if !match(t, l, p) {
			t.Errorf("%s: not skipped, want skipped", p)
		}
	}
	gated := []string{
		"/healthz", "/health/", "/HEALTH", "/Assets/app.js", "/ASSETS/app.js", "/assets", "/secret", "/",
		"/assets/..;/secret", "/assets/..%5Csecret", "/assets/..%5csecret", "/assets/%2e%2e/secret", "/assets/%2E%2E/secret",
		"/assets/%2e./secret", "/assets/.%2e/secret", "/assets/%252e%252e/secret", "/assets/%25252e/secret", "/assets/.;/../secret",
		"/assets/%c0%ae%c0%ae/secret", "/assets/%C0%AE%C0%AE/secret", "/assets/%e0%80%ae%e0%80%ae/secret", "/assets/%c0%af",
		"/assets/../secret", "/assets/./../secret", "/assets/x/../../secret", "/assets/./app.js", "/assets/.", "/assets/..",
		"/assets//app.js", "//assets/app.js", "/assets/app.js;jsessionid=1", "/assets/x;/../../secret", "/assets/%3b/secret",
		"/assets/%2fsecret", "/assets/%2F..%2Fsecret", "/assets\\..\\secret", "/assets/%5c..%5csecret", "/assets/%00.js",
		"/assets/%0a.js", "/assets/%7f.js", "/assets/%zz.js", "/assets/%2", "/assets/%", "/assets/\x01.js", "/assets/%ff.js",
		"/styles/site.css;.php", "/styles/..%2fsite.css", "/x/site.css", "/admin.css", "/assets/%EF%BC%8E%EF%BC%8E/secret", "/assets/．．/secret",
		"/assets/%ef%bc%8f..", "/assets/ａpp.js", "/assets/\u2024\u2024/secret", "/static/a/b/logo.png", "/static/%2e%2e/logo.png",
	}
	for _, p := range gated {
		if match(t, l, p) {
			t.Errorf("%s: skipped, want gated", p)
		}
	}
	if len(skipped)+len(gated) < 40 {
		t.Fatalf("only %d cases", len(skipped)+len(gated))
	}
	var none *List
	if none.Match("/health", "/health") {
		t.Error("a nil list skipped a path")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, p := range []string{"", "*", "*.css", "*/public/*", "health", "/a/[", "/a/../b", "/a;b/*", "/a\\b"} {
		if _, err := New([]string{p}); err == nil {
			t.Errorf("New(%q) = nil error", p)
		}
	}
}

// FuzzMatch: a skipped path never resolves, for any server, outside the
// pattern it matched: it has no dot segment once decoded once or twice.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{"/assets/app.js", "/assets/%2e%2e/x", "/assets/..;/x", "/assets/%252e"} {
		f.Add(s)
	}
	l, _ := New([]string{"/assets/*"})
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil || !l.Match(u.EscapedPath(), u.Path) {
			return
		}
		for _, p := range []string{u.Path, u.EscapedPath()} {
			once, err := url.PathUnescape(p)
			if err != nil {
				continue
			}
			if !Unambiguous(p, once) {
				t.Fatalf("%q skipped, but %q decodes to the ambiguous %q", raw, p, once)
			}
		}
	})
}
