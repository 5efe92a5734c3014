package harness

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeouts of the Caddy helpers. Caddy starts in well under a second, but
// issuing its first internal certificate can take a few on a loaded machine.
const (
	caddyStartTimeout = 30 * time.Second
	caddyStopGrace    = 5 * time.Second
	caddyBuildTimeout = 10 * time.Minute
)

var (
	caddyBuildOnce sync.Once
	caddyBuilt     string
	caddyBuildErr  error
)

// CaddyBinary returns the Caddy binary the tests run. If SSOGATE_CADDY is
// set it is that path (the test script builds ./caddy with xcaddy.sh, as
// released). Otherwise it builds github.com/ssogate/ssogate/cmd/caddy once per
// test process, from the module root found above the working directory.
//
// The build goes to a fixed path under the system temp dir, replaced by an
// atomic rename, so repeated runs do not pile up 100 MB binaries and
// packages tested in parallel do not overwrite a binary that another runs.
func CaddyBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SSOGATE_CADDY"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Fatalf("harness: SSOGATE_CADDY=%s is not an executable file (%v)", p, err)
		}
		return p
	}
	caddyBuildOnce.Do(func() { caddyBuilt, caddyBuildErr = buildCaddy() })
	if caddyBuildErr != nil {
		t.Fatalf("harness: build caddy: %v", caddyBuildErr)
	}
	return caddyBuilt
}

// buildCaddy runs go build for cmd/caddy; see CaddyBinary.
func buildCaddy() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "ssogate-test-caddy-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "caddy-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())

	ctx, cancel := context.WithTimeout(context.Background(), caddyBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp.Name(), "github.com/ssogate/ssogate/cmd/caddy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy in %s: %w\n%s", root, err, out)
	}
	bin := filepath.Join(dir, "caddy")
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// CaddyOptions says how StartCaddy runs Caddy. The zero value is fine.
type CaddyOptions struct {
	// DataDir is where Caddy keeps its storage, internal CA included
	// (XDG_DATA_HOME, XDG_CONFIG_HOME and HOME point there). Two instances
	// that must trust one CA, as behind one load balancer, share it.
	// Default: a fresh temp dir.
	DataDir string

	// Env adds KEY=value pairs to Caddy's environment; they win over the
	// harness's own, so a test can use {env.X} placeholders.
	Env []string

	// AdminPort is the port of Caddy's admin endpoint on 127.0.0.1, passed as
	// CADDY_ADMIN so that it is the default when the Caddyfile has no admin
	// option. Reload needs it. A Caddyfile that sets `admin 127.0.0.1:<port>`
	// must pass that port here; one with `admin off` cannot be reloaded.
	// Default: a free port, so instances never fight over localhost:2019.
	AdminPort int
}

// Caddy is a running `caddy run` process owned by the test.
type Caddy struct {
	t          testing.TB
	bin        string
	dir        string
	configPath string
	logPath    string
	dataDir    string
	adminPort  int
	env        []string
	proc       *process

	mu    sync.Mutex
	roots *x509.CertPool
}

// StartCaddy writes caddyfile to a temp dir and runs
//
//	<CaddyBinary> run --config <file> --adapter caddyfile
//
// with stdout and stderr captured (see Logs). It returns once Caddy logs
// "serving initial configuration", and fails with the log tail if Caddy exits
// first (a Caddyfile error, a port in use). Sites may still be obtaining
// their certificates: use WaitHTTPS before the first request.
//
// Give every site a port from FreePort, and set the global option
// auto_https disable_redirects (or http_port to a free port): otherwise
// Caddy listens on port 80 too, and parallel instances fight over it.
//
// The Caddyfile must set the global option skip_install_trust: otherwise
// Caddy, running as root here, installs its test CA into the machine's trust
// store. StartCaddy refuses a Caddyfile without it. Caddy is stopped at
// cleanup.
func StartCaddy(t testing.TB, caddyfile string, opt CaddyOptions) *Caddy {
	t.Helper()
	checkCaddyfile(t, caddyfile)
	c := &Caddy{
		t:         t,
		bin:       CaddyBinary(t),
		dir:       tempDir(t, "caddy"),
		dataDir:   opt.DataDir,
		adminPort: opt.AdminPort,
	}
	if c.dataDir == "" {
		c.dataDir = tempDir(t, "caddy-data")
	}
	if c.adminPort == 0 {
		c.adminPort = FreePort(t)
	}
	c.configPath = filepath.Join(c.dir, "Caddyfile")
	c.logPath = filepath.Join(c.dir, "caddy.log")
	c.env = append(os.Environ(),
		"XDG_DATA_HOME="+c.dataDir,
		"XDG_CONFIG_HOME="+c.dataDir,
		"HOME="+c.dataDir,
		"CADDY_ADMIN="+addr(c.adminPort),
	)
	c.env = append(c.env, opt.Env...)
	writeFile(t, c.configPath, withoutStorageClean(caddyfile))

	c.proc = startProcess(t, "caddy", c.logPath, c.env, c.bin, "run", "--config", c.configPath, "--adapter", "caddyfile")
	t.Cleanup(c.Stop)
	waitFor(t, "caddy start", caddyStartTimeout, func() error {
		if !strings.Contains(c.Logs(), "serving initial configuration") {
			return errors.New(`no "serving initial configuration" in the log yet`)
		}
		return nil
	}, c.proc)
	return c
}

// checkCaddyfile refuses a Caddyfile that would touch the machine's trust
// store; see StartCaddy.
func checkCaddyfile(t testing.TB, caddyfile string) {
	t.Helper()
	if !strings.Contains(caddyfile, "skip_install_trust") {
		t.Fatal("harness: the Caddyfile must set the global option skip_install_trust, " +
			"or Caddy installs its test CA into this machine's trust store")
	}
}

// withoutStorageClean turns off Caddy's storage cleaner in the global options
// block (which checkCaddyfile makes sure exists). On a fresh data directory the
// cleaner's first pass, at start, can delete the folder of a certificate being
// issued at that moment ("deleting site folder because key is empty"), so that
// the issuance fails and is retried only a minute later.
func withoutStorageClean(caddyfile string) string {
	if strings.Contains(caddyfile, "storage_clean_interval") {
		return caddyfile
	}
	trimmed := strings.TrimLeft(caddyfile, " \t\r\n")
	if !strings.HasPrefix(trimmed, "{") {
		return caddyfile
	}
	return "{\n\tstorage_clean_interval off" + trimmed[1:]
}

// DataDir is the directory Caddy keeps its storage in; pass it as
// CaddyOptions.DataDir to a second instance that must share the CA.
func (c *Caddy) DataDir() string { return c.dataDir }

// AdminPort is the port of the admin endpoint on 127.0.0.1 (when the
// Caddyfile does not turn it off).
func (c *Caddy) AdminPort() int { return c.adminPort }

// Logs returns everything Caddy wrote to stdout and stderr so far. Tests scan
// it for secrets that must never be logged, such as tokens and session ids.
func (c *Caddy) Logs() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("(no caddy log: %v)", err)
	}
	return string(b)
}

// Stop ends Caddy with SIGTERM, which lets it finish its shutdown, and
// SIGKILL if it has not exited within five seconds. It runs at cleanup too.
func (c *Caddy) Stop() { c.proc.stop(caddyStopGrace) }

// Kill ends Caddy with SIGKILL, as a crash or an OOM kill would, and
// returns once it has exited.
func (c *Caddy) Kill() { c.proc.kill() }

// Reload writes caddyfile over the config file and runs
//
//	caddy reload --config <file> --adapter caddyfile --address 127.0.0.1:<AdminPort> --force
//
// which returns once the new config is running. --force makes Caddy
// provision the config again even if it did not change, since a reload
// test is about what survives a reload. The admin endpoint must be on
// (see CaddyOptions.AdminPort).
func (c *Caddy) Reload(t testing.TB, caddyfile string) {
	t.Helper()
	checkCaddyfile(t, caddyfile)
	writeFile(t, c.configPath, withoutStorageClean(caddyfile))
	ctx, cancel := context.WithTimeout(context.Background(), caddyStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "reload", "--config", c.configPath, "--adapter", "caddyfile",
		"--address", addr(c.adminPort), "--force")
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("harness: caddy reload: %v\n%s\n%s\n%s", err, out, c.proc.status(), logTail(c.logPath))
	}
}

// RootCAs returns a pool holding only the root of Caddy's internal CA,
// <DataDir>/caddy/pki/authorities/local/root.crt, waiting for Caddy to
// create it.
func (c *Caddy) RootCAs(t testing.TB) *x509.CertPool {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.roots != nil {
		return c.roots
	}
	path := filepath.Join(c.dataDir, "caddy", "pki", "authorities", "local", "root.crt")
	waitFor(t, "caddy internal CA root "+path, caddyStartTimeout, func() error {
		pem, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in %s yet", path)
		}
		c.roots = pool
		return nil
	}, c.proc)
	return c.roots
}

// WaitHTTPS waits until a TLS handshake with hostport succeeds, dialled at
// 127.0.0.1 on its port with its host as SNI, and the certificate verifies
// against Caddy's internal CA: only then does the site serve its own
// certificate rather than none.
func (c *Caddy) WaitHTTPS(t testing.TB, hostport string) {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("harness: WaitHTTPS(%q): %v", hostport, err)
	}
	roots := c.RootCAs(t)
	waitFor(t, "caddy serving HTTPS for "+hostport, caddyStartTimeout, func() error {
		d := &net.Dialer{Timeout: time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{
			ServerName: host,
			RootCAs:    roots,
		})
		if err != nil {
			return err
		}
		return conn.Close()
	}, c.proc)
}

// Client returns an HTTPS client for the sites of this Caddy: it trusts only
// Caddy's internal root, dials every host:port at 127.0.0.1:port (so
// https://portal.test:8443 works without /etc/hosts), follows no redirect
// (a test asserts each 302 and its Location itself), keeps no cookies, speaks
// HTTP/1.1 or HTTP/2, and gives up on a request after 15 s.
//
// Its GETs are sent as a browser's top-level navigation
// (Sec-Fetch-Mode: navigate, Sec-Fetch-Dest: document), which is what
// redeems a sign-in link at once, unless the request sets Sec-Fetch-Mode
// itself. BareClient sends requests exactly as built, as a link scanner would.
func (c *Caddy) Client(t testing.TB) *http.Client {
	t.Helper()
	hc := c.BareClient(t)
	hc.Transport = navigating{hc.Transport}
	return hc
}

// navigating marks GETs as browser navigations; see Client.
type navigating struct{ base http.RoundTripper }

func (n navigating) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.Header.Get("Sec-Fetch-Mode") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Sec-Fetch-Dest", "document")
	}
	return n.base.RoundTrip(req)
}

// BareClient is Client without the browser's fetch metadata: it sends each
// request with the headers it was built with, as link scanners, previews and
// scripts do.
func (c *Caddy) BareClient(t testing.TB) *http.Client {
	t.Helper()
	return TLSClient(t, c.RootCAs(t))
}

// JarClient is Client with a cookie jar, for a test that walks the browser's
// flow (redeem, then the portal) and needs the session cookie kept between
// requests. Like Client it follows no redirect, so each hop stays visible.
func (c *Caddy) JarClient(t testing.TB) *http.Client {
	t.Helper()
	hc := c.Client(t)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("harness: cookie jar: %v", err)
	}
	hc.Jar = jar
	return hc
}
