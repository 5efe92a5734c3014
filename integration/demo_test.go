package integration

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// demoPortFlags picks four free ports for the demo, so that it runs next to
// another demo or test.
func demoPortFlags(t *testing.T) []string {
	return []string{
		fmt.Sprintf("-portal-port=%d", harness.FreePort(t)),
		fmt.Sprintf("-emr-port=%d", harness.FreePort(t)),
		fmt.Sprintf("-portal-upstream-port=%d", harness.FreePort(t)),
		fmt.Sprintf("-emr-upstream-port=%d", harness.FreePort(t)),
	}
}

// TestDemo runs the demo of the README's first command, as `make demo` does but
// with -check and on free ports: Caddyfile.example on the memory store, the
// demo portal and embedding app, the printed sign-in link followed and the
// portal seeing the user.
func TestDemo(t *testing.T) {
	t.Parallel()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "./demo", "-caddy", harness.CaddyBinary(t), "-data", t.TempDir(), "-check"}, demoPortFlags(t)...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "demo check passed") {
		t.Fatalf("demo -check: %v\n%s", err, tail(string(out), 3000))
	}
}

// demoLinkDelay is how long TestDemoFreshClone waits before it opens the
// printed link, as a person reading the instructions would: twice the
// longest a minted token lives (token_ttl 30s).
const demoLinkDelay = 61 * time.Second

// TestDemoFreshClone clones the repository as committed, runs `make demo` in
// the clone, waits a minute, then opens the printed sign-in link as a browser
// would and signs in; and runs the printed `caddy ssogate mint` and `health`
// commands and the printed curl literally.
func TestDemoFreshClone(t *testing.T) {
	t.Parallel()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "ssogate")
	if out, err := exec.Command("git", "clone", "-q", root, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	cmd := exec.Command("make", "demo", "DEMO_FLAGS="+strings.Join(demoPortFlags(t), " "))
	cmd.Dir = clone
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Ctrl-C, as a person ends the demo: make, go run, the demo and
		// Caddy are one process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})

	// Read the instructions as they are printed (the build comes first).
	printed := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "ssogate health") {
				printed <- b.String()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		close(printed)
	}()
	var text string
	select {
	case s, ok := <-printed:
		if !ok {
			t.Fatalf("make demo ended without printing its instructions\n%s", demoLog(logPath))
		}
		text = s
	case <-time.After(5 * time.Minute):
		t.Fatalf("make demo printed no instructions in 5 minutes\n%s", demoLog(logPath))
	}
	t.Logf("make demo printed:\n%s", text)
	lines := strings.Split(text, "\n")
	find := func(what string) string {
		for _, l := range lines {
			if strings.Contains(l, what) {
				return strings.TrimSpace(l)
			}
		}
		t.Fatalf("no line with %q in the demo's instructions", what)
		return ""
	}
	link := find("https://emr.localhost:")
	client := demoBrowser(t, filepath.Join(clone, "demo", ".data", "caddy", "pki", "authorities", "local", "root.crt"))

	time.Sleep(demoLinkDelay)
	demoSignIn(t, client, link, "dr.jones")

	// The printed commands, run as printed, in the clone.
	sh := func(line string) string {
		t.Helper()
		c := exec.Command("sh", "-c", line)
		c.Dir = clone
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return string(out)
	}
	minted := strings.TrimSpace(sh(find("ssogate mint")))
	if !strings.HasPrefix(minted, "https://portal.localhost:") {
		t.Fatalf("caddy ssogate mint printed %q, want a link", minted)
	}
	demoSignIn(t, client, minted, "nurse.lee")
	if out := sh(find("ssogate health")); !strings.Contains(out, `{"status":"ok","store":"ok"}`) {
		t.Fatalf("caddy ssogate health printed %q", out)
	}
	// make demo stamps the version git describes on the binary it builds.
	describe, err := exec.Command("git", "-C", clone, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(sh("./caddy ssogate version")); got != strings.TrimSpace(string(describe)) || got == "" {
		t.Fatalf("caddy ssogate version printed %q, want %q", got, strings.TrimSpace(string(describe)))
	}
	var curl strings.Builder
	for i, l := range lines {
		if strings.Contains(l, "curl ") {
			for _, c := range lines[i:] {
				curl.WriteString(c + "\n")
				if !strings.HasSuffix(c, `\`) {
					break
				}
			}
		}
	}
	if out := sh(curl.String()); !strings.Contains(out, `"userId":"nurse.lee"`) || !strings.Contains(out, `"url":"https://portal.localhost:`) {
		t.Fatalf("the printed curl answered %s", out)
	}
}

// demoBrowser is an HTTP client as a browser on this machine: it trusts the
// demo's CA, reaches *.localhost on loopback, keeps cookies and follows
// redirects.
func demoBrowser(t *testing.T, rootFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", rootFile)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := harness.TLSClient(t, pool)
	hc.CheckRedirect = nil // a browser follows redirects
	hc.Jar = jar
	return hc
}

// demoSignIn navigates to link as a browser's top-level navigation and wants
// the demo portal to show user signed in.
func demoSignIn(t *testing.T, c *http.Client, link, user string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, link, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("opening %s: %v", link, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<strong id="user">`+user+`</strong>`) {
		t.Fatalf("opening %s ended at %s: %s\n%s", link, resp.Request.URL.Redacted(), resp.Status, tail(string(body), 1000))
	}
}

func demoLog(path string) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), 3000)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
