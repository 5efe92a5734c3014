package integration

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// SPEC "Proxying": skip paths are proxied without a session only when the
// path the upstream receives means the same thing to any server. Dot
// segments, ";" path parameters, backslashes, encoded ".", "/", "\" or "%"
// and overlong encodings are never skipped: Tomcat/Spring, IIS and
// double-decoding servers resolve "/assets/..;/secret" and its kin to
// "/secret".

// skipPathCase is one request target (sent byte for byte) under
// `skip /assets/* /health`.
type skipPathCase struct {
	target string
	// skipped: 200 without a session and no identity headers. Otherwise
	// gated: 401 without a session and the upstream receives nothing.
	skipped bool
	// upstream is the request target the upstream receives (signed in, or
	// skipped). Default: target, unchanged.
	upstream string
	// status without a session when gated. Default: 401. A 400 is Go's
	// server refusing the request line before any handler runs.
	status int
}

var skipPathCases = []skipPathCase{
	// Plain paths under the skip patterns.
	{target: "/assets/app.js", skipped: true},
	{target: "/assets/css/site.css", skipped: true},
	{target: "/health", skipped: true},
	{target: "/assets/app.js?v=1", skipped: true},
	{target: "/assets/img/logo.png?next=../../secret", skipped: true},

	// The findings.
	{target: "/assets/..;/secret"},
	{target: "/assets/..%5Csecret"},
	{target: "/assets/%2e%2e/secret"},
	{target: "/assets/%252e%252e/secret"},
	{target: "/assets/.;/../secret"},
	{target: "/assets/%c0%ae%c0%ae/secret"},

	// ";" path parameters.
	{target: "/assets/app.js;jsessionid=x"},
	{target: "/assets/..;jsessionid=x/secret"},
	{target: "/assets/x/..;/..;/secret"},
	{target: "/assets/%2e%2e;/secret"},
	{target: "/health;x=1"},
	{target: "/health/..;/secret"},
	{target: "/assets;/app.js"},

	// Encoded dots, in either case, single and double encoded.
	{target: "/assets/%2E%2E/secret"},
	{target: "/assets/%2e./secret"},
	{target: "/assets/.%2E/secret"},
	{target: "/assets/%2e/app.js"},
	{target: "/assets/app%2ejs"},
	{target: "/assets/%252E%252E/secret"},

	// Encoded slashes and backslashes, and encoded percent signs.
	{target: "/assets/..%2fsecret"},
	{target: "/assets/..%2Fsecret"},
	{target: "/assets/%2e%2e%2fsecret"},
	{target: "/assets/..%5csecret"},
	{target: "/assets/%2e%2e%5csecret"},
	{target: "/health%2f..%2fsecret"},
	{target: "/assets/..%252fsecret"},
	{target: "/assets/..%255csecret"},
	{target: "/assets/%25/x"},

	// Overlong UTF-8 dots, slashes and backslashes.
	{target: "/assets/%C0%AE%C0%AE/secret"},
	{target: "/assets/%e0%80%ae%e0%80%ae/secret"},
	{target: "/assets/..%c0%afsecret"},
	{target: "/assets/..%c1%9csecret"},

	// Dot segments and doubled slashes, as sent.
	{target: "/assets/../secret"},
	{target: "/assets/x/../../secret"},
	{target: "/assets/./app.js"},
	{target: "/./health"},
	{target: "/assets//../secret"},
	{target: "/assets//app.js"},
	{target: "//health"},

	// Raw backslashes; Go's proxy sends them encoded.
	{target: `/assets/..\secret`, upstream: "/assets/..%5Csecret"},
	{target: `/assets\..\secret`, upstream: "/assets%5C..%5Csecret"},

	// Case variants of the findings, and of the patterns: a case-sensitive
	// upstream may route /ASSETS/ to the application, not the files.
	{target: "/ASSETS/..;/secret"},
	{target: "/Assets/%2e%2e/secret"},
	{target: "/ASSETS/app.js"},
	{target: "/Health"},

	// Odd request targets: a "#" (not a fragment in a request line), an
	// absolute URI, NUL, IIS %u escapes (refused by Go's server), and
	// dots only in the query (skipped: the path is plain).
	{target: "/assets/app.js#/../../secret", upstream: "/assets/app.js%23/../../secret"},
	{target: "https://portal.test/assets/..;/secret", upstream: "/assets/..;/secret"},
	{target: "/assets/%00/x"},
	{target: "/assets/%u002e%u002e/secret", status: http.StatusBadRequest},
	{target: "/health/"},
	{target: "/assets/app.js?/../../secret", skipped: true},
	{target: "/health?x", skipped: true},
}

// TestSkipPathVariants sends every variant without a session and with one,
// and records what the upstream receives.
func TestSkipPathVariants(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: `skip /assets/* /health`})
	c := g.signIn(t, "skip-user")
	spoofed := []string{"X-Forwarded-User: admin", "X-Forwarded-Claims: group=org-b"}

	for _, tc := range skipPathCases {
		upstream := tc.upstream
		if upstream == "" {
			upstream = tc.target
		}

		g.upstream.Reset()
		resp, body := g.raw(t, g.rawGET(tc.target, nil, spoofed...))
		reqs := g.upstream.Requests()
		if tc.skipped {
			switch {
			case resp.StatusCode != http.StatusOK || len(reqs) != 1:
				t.Errorf("%s (skip path), no session: %s, upstream got %d requests, want 200 and 1: %.120q", tc.target, resp.Status, len(reqs), body)
			case reqs[0].RequestURI != upstream:
				t.Errorf("%s (skip path), no session: the upstream received %q, want %q", tc.target, reqs[0].RequestURI, upstream)
			case reqs[0].Header.Values("X-Forwarded-User") != nil || reqs[0].Header.Values("X-Forwarded-Claims") != nil:
				t.Errorf("%s (skip path), no session: the upstream received identity %q %q, want none", tc.target,
					reqs[0].Header.Values("X-Forwarded-User"), reqs[0].Header.Values("X-Forwarded-Claims"))
			}
			continue
		}
		status := tc.status
		if status == 0 {
			status = http.StatusUnauthorized
		}
		if resp.StatusCode != status {
			t.Errorf("%s (gated), no session: %s, want %d: %.120q", tc.target, resp.Status, status, body)
		}
		if len(reqs) != 0 {
			t.Errorf("%s (gated), no session: the upstream received %q as %q %q", tc.target, reqs[0].RequestURI,
				reqs[0].Header.Values("X-Forwarded-User"), reqs[0].Header.Values("X-Forwarded-Claims"))
		}

		if status == http.StatusBadRequest {
			continue
		}

		// Signed in, the path is proxied as sent, with the session's identity.
		g.upstream.Reset()
		resp, body = g.raw(t, g.rawGET(tc.target, c, spoofed...))
		reqs = g.upstream.Requests()
		switch {
		case resp.StatusCode != http.StatusOK || len(reqs) != 1:
			t.Errorf("%s (gated), signed in: %s, upstream got %d requests, want 200 and 1: %.120q", tc.target, resp.Status, len(reqs), body)
		case reqs[0].RequestURI != upstream:
			t.Errorf("%s (gated), signed in: the upstream received %q, want %q", tc.target, reqs[0].RequestURI, upstream)
		case !slices.Equal(reqs[0].Header.Values("X-Forwarded-User"), []string{"skip-user"}) ||
			!slices.Equal(reqs[0].Header.Values("X-Forwarded-Claims"), []string{"group=org-a"}):
			t.Errorf("%s (gated), signed in: the upstream received identity %q %q", tc.target,
				reqs[0].Header.Values("X-Forwarded-User"), reqs[0].Header.Values("X-Forwarded-Claims"))
		}
	}
}

// TestSkipPathUnicodeLookalikes: characters that Unicode compatibility
// normalization (NFKC, as applied by some frameworks and by Windows "best
// fit" mappings) turns into "." — FULLWIDTH FULL STOP U+FF0E, ONE DOT LEADER
// U+2024, TWO DOT LEADER U+2025 — make "/assets/．．/secret" mean
// "/secret" to such a server; SPEC's "means the same thing to any server"
// gates them like encoded dots.
func TestSkipPathUnicodeLookalikes(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: `skip /assets/*`})
	for _, target := range []string{
		"/assets/%EF%BC%8E%EF%BC%8E/secret",
		"/assets/%ef%bc%8e%ef%bc%8e/secret",
		"/assets/%E2%80%A4%E2%80%A4/secret",
		"/assets/%E2%80%A5/secret",
		"/assets/\u2025/secret",
		"/assets/..%EF%BC%8Fsecret", // FULLWIDTH SOLIDUS
		"/assets/..%EF%BC%BCsecret", // FULLWIDTH REVERSE SOLIDUS
	} {
		g.upstream.Reset()
		resp, body := g.raw(t, g.rawGET(target, nil, "X-Forwarded-User: admin"))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s, no session: %s, want 401: %.80q", target, resp.Status, body)
		}
		if reqs := g.upstream.Requests(); len(reqs) != 0 {
			t.Errorf("%s, no session: the upstream received %q", target, reqs[0].RequestURI)
		}
	}
}

// TestSkipPathPlaceholdersEmpty: on a skip path without a session there is
// no user, so a site's `header_up X-Auth-Id {http.auth.user.id}` must not
// hand the upstream the placeholder's own text as if it were a user id (a
// portal that trusts a non-empty X-Auth-Id would sign in
// "{http.auth.user.id}"). Likewise a claim the session does not have. The
// kit's default site has those header_up lines.
func TestSkipPathPlaceholdersEmpty(t *testing.T) {
	g := startGateway(t, gatewayOptions{extra: `skip /health`})
	g.upstream.Reset()
	resp, body := g.raw(t, g.rawGET("/health", nil, "X-Forwarded-User: admin"))
	reqs := g.upstream.Requests()
	if resp.StatusCode != http.StatusOK || len(reqs) != 1 {
		t.Fatalf("skip path: %s, upstream got %d requests: %.120q", resp.Status, len(reqs), body)
	}
	for _, name := range []string{"X-Auth-Id", "X-Auth-Group"} {
		for _, v := range reqs[0].Header.Values(name) {
			if strings.Contains(v, "{http.auth.") {
				t.Errorf("skip path, no session: the upstream received %s: %q, the placeholder's text", name, v)
			}
		}
	}

	// clinic-7 mints for hcp-7 with no claims: no group.
	m := g.mint(t, clinicKey, `{}`)
	code, c := rulesRedeem(t, g, m.URL)
	if code != http.StatusFound || c == nil {
		t.Fatalf("redeem clinic-7 token: %d", code)
	}
	g.upstream.Reset()
	readUpstream(t, g.do(t, http.MethodGet, "/records", "", c))
	for _, r := range g.upstream.Requests() {
		if v := r.Header.Get("X-Auth-Id"); v != "hcp-7" {
			t.Errorf("clinic-7 session: the upstream received X-Auth-Id %q, want hcp-7", v)
		}
		for _, v := range r.Header.Values("X-Auth-Group") {
			if strings.Contains(v, "{http.auth.") {
				t.Errorf("session without a group claim: the upstream received X-Auth-Group: %q, the placeholder's text", v)
			}
		}
	}
}
