package caddymodule

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCheckOwnedHeaders says what each identity header name gets.
func TestCheckOwnedHeaders(t *testing.T) {
	for _, c := range []struct {
		user, claims, assertion, want string
	}{
		{"X-Forwarded-User", "X-Forwarded-Claims", "", ""},
		{"X-Portal-User", "X-Portal-Claims", "X-Portal-Assertion", ""},
		{"Connection", "X-C", "", "cannot set that header"},
		{"X-U", "Transfer-Encoding", "", "cannot set that header"},
		{"X-U", "X-C", "te", "cannot set that header"},
		{"X_Forwarded_For", "X-C", "", "cannot set that header"},
		{"Host", "X-C", "", "cannot set that header"},
		{"Cookie", "X-C", "", "cannot set that header"},
		{"Sec-Fetch-Site", "X-C", "", "cannot set that header"},
		{"X-U", "Accept", "", "cannot set that header"},
		{"X-U", "x_u", "", "already used"},
		{"X-U", "X-C", "X-C", "already used"},
		{"X Portal User", "X-C", "", "not a valid header name"},
		{"X-Portal:User", "X-C", "", "not a valid header name"},
		{"", "X-C", "", "not a valid header name"},
	} {
		names := map[string]string{"user_header": c.user, "claims_header": c.claims}
		if c.assertion != "" {
			names["identity_assertion header"] = c.assertion
		}
		err := checkOwnedHeaders(names)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want accepted", c, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error containing %q", c, err, c.want)
		}
	}
}

// TestDropOwnCookies: the upstream never receives the gateway's cookies, and
// receives the portal's own as they were.
func TestDropOwnCookies(t *testing.T) {
	h := &Handler{CookieName: defaultCookieName}
	for _, c := range []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"portal_sid=abc; lang=en"}, []string{"portal_sid=abc; lang=en"}},
		{[]string{"__Host-ssogate=s1"}, nil},
		{[]string{"a=1; __Host-ssogate=s1; b=2"}, []string{"a=1; b=2"}},
		{[]string{"__Host-ssogate=s1; __Host-ssogate-probe=p", "portal_sid=x"}, []string{"portal_sid=x"}},
		{[]string{"__Host-ssogatex=keep; __Host-ssogate=s1"}, []string{"__Host-ssogatex=keep"}},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.in != nil {
			r.Header["Cookie"] = c.in
		}
		h.dropOwnCookies(r)
		if got := r.Header["Cookie"]; strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("Cookie %q → %q, want %q", c.in, got, c.want)
		}
	}
}
