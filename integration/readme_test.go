package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/integration/harness"
)

// readmeBlock is a fenced block of the README marked for testing with
// <!-- readme-test: <check> <arg> --> on the line before it.
type readmeBlock struct {
	line  int    // of the fence, 1-based
	lang  string // sh or python
	check string // signs-in or output
	arg   string // the user, or the text the output contains
	code  string
}

var readmeMarker = regexp.MustCompile(`^<!-- readme-test: (\S+) (.+) -->$`)

// readmeBlocks extracts the marked blocks, and the fenced blocks of lang
// whose first line starts with prefix.
func readREADME(t *testing.T) (marked []readmeBlock, fenced map[string][]string) {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fenced = map[string][]string{}
	var (
		n       int
		pending *readmeBlock
		cur     *strings.Builder
		curLang string
		curB    *readmeBlock
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			curLang, cur = strings.TrimPrefix(line, "```"), &strings.Builder{}
			curB, pending = pending, nil
			if curB != nil {
				curB.line, curB.lang = n, curLang
			}
		case cur != nil && line == "```":
			fenced[curLang] = append(fenced[curLang], cur.String())
			if curB != nil {
				curB.code = cur.String()
				marked = append(marked, *curB)
			}
			cur, curB = nil, nil
		case cur != nil:
			cur.WriteString(line + "\n")
		default:
			if m := readmeMarker.FindStringSubmatch(line); m != nil {
				pending = &readmeBlock{check: m[1], arg: m[2]}
			} else if pending != nil && line != "" {
				t.Fatalf("README.md:%d: a readme-test marker not followed by a fenced block", n)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return marked, fenced
}

// readmeCaddyfile is the README's smallest configuration with the signing key
// line of its "Signed tokens" section added, on this test's Redis, upstream
// and port, with the test credentials' hashes for its placeholders.
func readmeCaddyfile(t *testing.T, fenced map[string][]string, port int, redisURL, upstream string) string {
	t.Helper()
	var base, signing string
	for _, b := range fenced["caddyfile"] {
		if base == "" && strings.HasPrefix(b, "{\n\tadmin off") {
			base = b
		}
		if strings.HasPrefix(b, "signing_key ") {
			signing = strings.TrimSpace(b)
		}
	}
	if base == "" || signing == "" {
		t.Fatal("README.md: no minimal Caddyfile or no signing_key block")
	}
	cf := base
	for _, r := range []struct {
		old, new string
		n        int
	}{
		{"https://portal.test:8443 {", fmt.Sprintf("https://portal.localhost:%d {", port), 1},
		{"redis://127.0.0.1:6379/0", redisURL, 1},
		{"<64 hex chars>", harness.KeyHash(orgAKey), 1},
		{"<64 hex chars>", harness.KeyHash(clinicKey), 1},
		{"reverse_proxy 127.0.0.1:9000", "reverse_proxy " + upstream, 1},
		{"\tssogate {\n", "\tssogate {\n\t\t" + signing + "\n", 1},
	} {
		if !strings.Contains(cf, r.old) {
			t.Fatalf("README.md's Caddyfile has no %q any more; update readme_test.go with it", r.old)
		}
		cf = strings.Replace(cf, r.old, r.new, r.n)
	}
	return cf
}

var readmeLink = regexp.MustCompile(`https://portal\.localhost:\d+/redirect/[A-Za-z0-9_.\-]+`)

// TestReadmeExamples runs every README block marked readme-test, as written,
// against a gateway running the README's own Caddyfile on a real Redis.
func TestReadmeExamples(t *testing.T) {
	t.Parallel()
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import redis").Run(); err != nil {
		t.Fatalf("%s with redis-py is needed for the README's Python examples (apt-get install python3-redis): %v", python, err)
	}
	for _, bin := range []string{"curl", "redis-cli", "bash", "sha256sum"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is needed for the README's shell examples: %v", bin, err)
		}
	}
	marked, fenced := readREADME(t)
	if len(marked) < 6 {
		t.Fatalf("%d blocks marked readme-test in README.md, want at least 6", len(marked))
	}

	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	port := harness.FreePort(t)
	const signingKey = "readme-signing-key-0123456789abcdef0123"
	c := harness.StartCaddy(t, readmeCaddyfile(t, fenced, port, rd.URL(), up.Addr()),
		harness.CaddyOptions{Env: []string{"SSOGATE_SIGNING_KEY=" + signingKey}})
	hostport := fmt.Sprintf("portal.localhost:%d", port)
	c.WaitHTTPS(t, hostport)
	client := c.Client(t)
	root := filepath.Join(c.DataDir(), "caddy", "pki", "authorities", "local", "root.crt")

	// What a reader has: caddy on the PATH, a key file, the variables the
	// Minting section names, and Caddy's CA trusted.
	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(harness.CaddyBinary(t), filepath.Join(bin, "caddy")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "keyfile"), []byte(orgAKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"PORTAL=https://"+hostport,
		"API_KEY="+orgAKey,
		"REDIS_URL="+rd.URL(),
		"SSOGATE_SIGNING_KEY="+signingKey,
		"SSL_CERT_FILE="+root,
		"CURL_CA_BUNDLE="+root,
		"HOME="+work,
	)

	for _, b := range marked {
		t.Run(fmt.Sprintf("README.md:%d", b.line), func(t *testing.T) {
			if b.check == "adapts" {
				file := filepath.Join(t.TempDir(), "Caddyfile")
				if err := os.WriteFile(file, []byte(b.code), 0o600); err != nil {
					t.Fatal(err)
				}
				// Adapted, not provisioned: its addresses are examples.
				if out, err := exec.Command(harness.CaddyBinary(t), "adapt", "--config", file).CombinedOutput(); err != nil {
					t.Fatalf("caddy adapt: %v\n%s", err, out)
				}
				return
			}
			var cmd *exec.Cmd
			switch b.lang {
			case "sh":
				cmd = exec.Command("bash", "-e", "-o", "pipefail", "-c", b.code)
			case "python":
				cmd = exec.Command(python, "-c", b.code)
			default:
				t.Fatalf("a readme-test block in %q: only sh and python are run", b.lang)
			}
			cmd.Dir, cmd.Env = work, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n--- block\n%s--- output\n%s", err, b.code, out)
			}
			switch b.check {
			case "output":
				if !strings.Contains(string(out), b.arg) {
					t.Fatalf("output has no %s:\n%s", b.arg, out)
				}
			case "signs-in":
				links := readmeLink.FindAllString(string(out), -1)
				if len(links) == 0 {
					t.Fatalf("printed no sign-in link:\n%s", out)
				}
				if got := readmeSignIn(t, client, links[len(links)-1]); got != b.arg {
					t.Fatalf("the printed link signed in %q, want %q\n%s", got, b.arg, out)
				}
			default:
				t.Fatalf("unknown readme-test check %q", b.check)
			}
		})
	}
}

// readmeSignIn opens link as a browser's navigation and returns the user the
// upstream then sees on the page it lands on.
func readmeSignIn(t *testing.T, client *http.Client, link string) string {
	t.Helper()
	nav := func(u string, cookie *http.Cookie) *http.Response {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cookie == nil {
			req.Header.Set("Accept", "text/html")
		} else {
			req.Header.Set("Accept", "application/json") // the upstream's echo
		}
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Sec-Fetch-Dest", "document")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := nav(link, nil)
	cookie := sessionCookie(resp)
	if resp.StatusCode != http.StatusFound || cookie == nil {
		t.Fatalf("redeem: %s, cookie %v", resp.Status, cookie)
	}
	base, _ := url.Parse(link)
	to, err := base.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return readUpstream(t, nav(to.String(), cookie)).User
}
