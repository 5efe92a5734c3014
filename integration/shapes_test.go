package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/integration/harness"
)

// SPEC "Proxying": the ssogate directive orders itself ahead of every handler
// that can answer or proxy a request, as basic_auth and forward_auth do, so
// any ordinary Caddyfile of a site is gated whole. Each shape below is a real
// site: SPEC's minimal ssogate block beside the handlers such a site has.

// shapeSecret is the content of the file the file_server shapes serve.
const shapeSecret = "file-secret-4711"

// shapeUser is the user the shapes sign in as (with emr-org-a: group=org-a).
const shapeUser = "shape-user"

// shapeProbe is one request to a shape and what a signed-in user gets.
type shapeProbe struct {
	path string
	// status signed in. Default: 200.
	status int
	// upstream is the path the upstream receives signed in; empty when the
	// upstream is not involved (respond, file_server, redir).
	upstream string
	// body is a substring of the signed-in response body, if not empty.
	body string
	// header are request headers the upstream receives besides the
	// identity headers, from the site's header_up lines.
	header map[string]string
	// anon are the statuses allowed without a session. Default: 401.
	anon []int
	// anonBody is a substring of the body without a session, if not empty.
	anonBody string
}

type siteShape struct {
	name string
	site func(upstream, root string) string
	// fastcgi: the upstream speaks FastCGI, as PHP-FPM does.
	fastcgi bool
	// extra are more ssogate subdirectives.
	extra  string
	probes []shapeProbe
}

var siteShapes = []siteShape{
	{
		name: "handle blocks",
		site: func(up, _ string) string {
			return `	handle /api/* {
		reverse_proxy ` + up + `
	}
	handle {
		reverse_proxy ` + up + `
	}`
		},
		probes: []shapeProbe{{path: "/api/x", upstream: "/api/x"}, {path: "/", upstream: "/"}},
	},
	{
		name: "handle_path",
		site: func(up, _ string) string {
			return `	handle_path /app/* {
		reverse_proxy ` + up + `
	}
	handle {
		respond "root of the site"
	}`
		},
		probes: []shapeProbe{{path: "/app/patients", upstream: "/patients"}, {path: "/", body: "root of the site"}},
	},
	{
		name: "route",
		site: func(up, _ string) string {
			return `	route {
		header X-Shape route
		reverse_proxy ` + up + `
	}`
		},
		probes: []shapeProbe{{path: "/records/1", upstream: "/records/1"}},
	},
	{
		name: "respond",
		site: func(string, string) string {
			return `	respond "hello {http.auth.user.id}"`
		},
		probes: []shapeProbe{{path: "/", body: "hello " + shapeUser}},
	},
	{
		name: "file_server",
		site: func(_, root string) string {
			return `	root * ` + root + `
	file_server`
		},
		probes: []shapeProbe{{path: "/secret.txt", body: shapeSecret}},
	},
	{
		// templates sees the request the gate let through.
		name: "templates and file_server",
		site: func(_, root string) string {
			return `	root * ` + root + `
	templates
	file_server`
		},
		probes: []shapeProbe{{path: "/whoami.html", body: "user=" + shapeUser + " claims=group=org-a id=" + shapeUser}},
	},
	{
		name: "php_fastcgi-style reverse_proxy with header_up",
		site: func(up, _ string) string {
			return `	reverse_proxy ` + up + ` {
		header_up Host {upstream_hostport}
		header_up X-Real-IP {remote_host}
		header_up X-Portal-User {http.auth.user.id}
		header_up X-Portal-Group {http.auth.user.group}
		header_up -X-Debug
	}`
		},
		probes: []shapeProbe{{path: "/index.php", upstream: "/index.php",
			header: map[string]string{"X-Portal-User": shapeUser, "X-Portal-Group": "org-a", "X-Real-Ip": "127.0.0.1"}}},
	},
	{
		// php_fastcgi rewrites to index.php (try_files) and proxies over
		// FastCGI; REQUEST_URI keeps the path as sent.
		name:    "php_fastcgi",
		fastcgi: true,
		site: func(up, root string) string {
			return `	root * ` + root + `
	php_fastcgi ` + up
		},
		probes: []shapeProbe{{path: "/index.php", upstream: "/index.php"}, {path: "/patients/1", upstream: "/patients/1"}},
	},
	{
		name: "rewrite",
		site: func(up, _ string) string {
			return `	rewrite /legacy /portal/home
	reverse_proxy ` + up
		},
		probes: []shapeProbe{{path: "/legacy", upstream: "/portal/home"}, {path: "/portal/x", upstream: "/portal/x"}},
	},
	{
		name: "uri strip_prefix",
		site: func(up, _ string) string {
			return `	uri strip_prefix /portal
	reverse_proxy ` + up
		},
		probes: []shapeProbe{{path: "/portal/patients", upstream: "/patients"}},
	},
	{
		// Caddy orders redir ahead of basic_auth and forward_auth, so a
		// top-level redir may answer before the gate: it reveals only
		// its Location, and the target is gated.
		name: "redir",
		site: func(up, _ string) string {
			return `	redir /old /new 302
	reverse_proxy ` + up
		},
		probes: []shapeProbe{
			{path: "/old", status: http.StatusFound, anon: []int{http.StatusUnauthorized, http.StatusFound}},
			{path: "/new", upstream: "/new"},
		},
	},
	{
		name: "handle_errors",
		site: func(up, root string) string {
			return `	handle /api/* {
		reverse_proxy ` + up + `
	}
	handle {
		root * ` + root + `
		file_server
	}
	handle_errors {
		respond "branded error page {err.status_code}"
	}`
		},
		probes: []shapeProbe{
			{path: "/api/records", upstream: "/api/records"},
			{path: "/secret.txt", body: shapeSecret},
			{path: "/missing.txt", status: http.StatusNotFound, body: "branded error page 404"},
		},
	},
	{
		// With error_pages caddy, the gate's own 401 reaches handle_errors.
		name:  "handle_errors with error_pages caddy",
		extra: "error_pages caddy",
		site: func(up, _ string) string {
			return `	handle /api/* {
		reverse_proxy ` + up + `
	}
	handle_errors {
		respond "branded error page {err.status_code}"
	}`
		},
		probes: []shapeProbe{
			{path: "/api/records", upstream: "/api/records", anonBody: "branded error page 401"},
			{path: "/elsewhere", status: http.StatusOK},
		},
	},
}

// TestSiteShapes: for each shape, no session gets 401 and nothing serves;
// the client's identity headers never arrive; a real session arrives as
// itself.
func TestSiteShapes(t *testing.T) {
	root := t.TempDir()
	for name, content := range map[string]string{"secret.txt": shapeSecret + "\n", "index.php": "<?php echo 'index'; ?>\n",
		"whoami.html": `user={{.Req.Header.Get "X-Forwarded-User"}} claims={{.Req.Header.Get "X-Forwarded-Claims"}} id={{placeholder "http.auth.user.id"}}` + "\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The underscore forms become the same CGI variable (HTTP_X_FORWARDED_USER)
	// for a FastCGI upstream.
	spoofed := []string{"X-Forwarded-User: admin", "X-Forwarded-Claims: group=org-b",
		"X-Forwarded_User: admin", "X-Forwarded_Claims: group=org-b", "Accept: application/json"}
	for _, shape := range siteShapes {
		t.Run(shape.name, func(t *testing.T) {
			o := gatewayOptions{extra: shape.extra, site: func(up string) string { return shape.site(up, root) }}
			if shape.fastcgi {
				o.upstream = harness.StartFastCGIUpstream(t)
			}
			g := startGateway(t, o)

			for _, p := range shape.probes {
				g.upstream.Reset()
				resp := g.do(t, http.MethodGet, p.path, "", nil, spoofed...)
				b, _ := io.ReadAll(resp.Body)
				anon := p.anon
				if anon == nil {
					anon = []int{http.StatusUnauthorized}
				}
				if !slices.Contains(anon, resp.StatusCode) {
					t.Errorf("no session, GET %s: %s %.200q, want %v", p.path, resp.Status, b, anon)
				}
				if p.anonBody != "" && !strings.Contains(string(b), p.anonBody) {
					t.Errorf("no session, GET %s: body %.200q, want it to contain %q", p.path, b, p.anonBody)
				}
				if reqs := g.upstream.Requests(); len(reqs) != 0 {
					t.Errorf("no session, GET %s: the upstream received %d request(s), first %s as %q/%q",
						p.path, len(reqs), reqs[0].RequestURI, reqs[0].Header.Values("X-Forwarded-User"), reqs[0].Header.Values("X-Forwarded-Claims"))
				}
				if strings.Contains(string(b), shapeSecret) || strings.Contains(string(b), "hello") || strings.Contains(string(b), "root of the site") || strings.Contains(string(b), "user=") {
					t.Errorf("no session, GET %s: the site answered: %.200q", p.path, b)
				}
			}

			c := g.signIn(t, shapeUser)
			for _, p := range shape.probes {
				g.upstream.Reset()
				resp := g.do(t, http.MethodGet, p.path, "", c, spoofed...)
				b, _ := io.ReadAll(resp.Body)
				want := p.status
				if want == 0 {
					want = http.StatusOK
				}
				if resp.StatusCode != want {
					t.Errorf("signed in, GET %s: %s %.200q, want %d", p.path, resp.Status, b, want)
				}
				if p.body != "" && !strings.Contains(string(b), p.body) {
					t.Errorf("signed in, GET %s: body %.200q, want it to contain %q", p.path, b, p.body)
				}
				reqs := g.upstream.Requests()
				if p.upstream == "" {
					if len(reqs) != 0 {
						t.Errorf("signed in, GET %s: the upstream received %d request(s), want none", p.path, len(reqs))
					}
					continue
				}
				if len(reqs) != 1 {
					t.Errorf("signed in, GET %s: the upstream received %d requests, want 1", p.path, len(reqs))
					continue
				}
				r := reqs[0]
				if r.Path != p.upstream {
					t.Errorf("signed in, GET %s: the upstream received path %q, want %q", p.path, r.Path, p.upstream)
				}
				if u, cl := r.Header.Values("X-Forwarded-User"), r.Header.Values("X-Forwarded-Claims"); !slices.Equal(u, []string{shapeUser}) || !slices.Equal(cl, []string{"group=org-a"}) {
					t.Errorf("signed in with spoofed headers, GET %s: the upstream received user %q claims %q, want [%s] [group=org-a]", p.path, u, cl, shapeUser)
				}
				for k, v := range p.header {
					if got := r.Header.Values(k); !slices.Equal(got, []string{v}) {
						t.Errorf("signed in, GET %s: the upstream received %s %q, want [%s]", p.path, k, got, v)
					}
				}
			}
		})
	}
}
