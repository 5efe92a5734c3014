package fetchmeta

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func header(pairs ...string) http.Header {
	h := http.Header{}
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, ":")
		h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h
}

func TestNavigation(t *testing.T) {
	for _, tc := range []struct {
		h    []string
		want Dest
	}{
		{[]string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document"}, Document},
		{[]string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: iframe"}, Frame},
		{[]string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: frame"}, Frame},
		{[]string{"Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: empty"}, Other},
		{[]string{"Sec-Fetch-Mode: navigate"}, Other},
		{[]string{"Sec-Fetch-Dest: document"}, Other},
		{[]string{"Sec-Fetch-Mode: no-cors", "Sec-Fetch-Dest: image"}, Other},
		{[]string{"Sec-Fetch-Mode: cors", "Sec-Fetch-Dest: document"}, Other},
		{nil, Other},
	} {
		if got := Navigation(header(tc.h...)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestCrossSite(t *testing.T) {
	// own is the portal's origin check, as the handler makes it.
	own := func(origin string) bool {
		u, err := url.Parse(origin)
		if err != nil || u.Scheme != "https" || u.Path != "" || u.User != nil {
			return false
		}
		return strings.EqualFold(u.Host, "portal.test:8443") || strings.EqualFold(u.Host, "portal.example.com")
	}
	for _, tc := range []struct {
		h    []string
		want bool
	}{
		{nil, false},
		{[]string{"Origin: https://portal.test:8443"}, false},
		{[]string{"Origin: https://PORTAL.test:8443", "Sec-Fetch-Site: same-origin"}, false},
		{[]string{"Origin: https://portal.example.com"}, false},
		{[]string{"Origin: null", "Sec-Fetch-Site: same-origin"}, false},
		{[]string{"Sec-Fetch-Site: none"}, false},
		{[]string{"Sec-Fetch-Site: same-origin"}, false},
		{[]string{"Origin: null"}, true},
		{[]string{"Origin: null", "Sec-Fetch-Site: cross-site"}, true},
		{[]string{"Origin: null", "Sec-Fetch-Site: none"}, true},
		{[]string{"Sec-Fetch-Site: cross-site"}, true},
		{[]string{"Sec-Fetch-Site: same-site"}, true},
		{[]string{"Sec-Fetch-Site: bogus"}, true},
		{[]string{"Origin: https://portal.test:8443", "Sec-Fetch-Site: cross-site"}, true},
		{[]string{"Origin: https://portal.test"}, true},
		{[]string{"Origin: https://portal.test:8443.evil.test"}, true},
		{[]string{"Origin: https://evil.test@portal.test:8443"}, true},
		{[]string{"Origin: https://portal.test:8443/path"}, true},
		{[]string{"Origin: ftp://portal.test:8443"}, true},
		{[]string{"Origin: portal.test:8443"}, true},
		{[]string{"Origin: %zz"}, true},
	} {
		if got := CrossSite(header(tc.h...), true, own); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.h, got, tc.want)
		}
	}
	// Without nullSameOrigin (logout, as SPEC says), null is another site.
	if !CrossSite(header("Origin: null", "Sec-Fetch-Site: same-origin"), false, own) {
		t.Error("Origin: null passed without nullSameOrigin")
	}
}
