// Command demo runs the ssogate demo: a portal behind the gateway, an embedding
// app on a second site, and Caddy with Caddyfile.example on the memory store.
// It prints a link to the embedding app's sign-in button, which mints a fresh
// link on every click (so it never opens expired), and the commands to mint
// and check health by hand, then runs until interrupted. With -check it signs
// in once through that link and exits.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssogate/ssogate/client"
	"github.com/ssogate/ssogate/internal/token"
)

// ports are where the demo listens: Caddy's two sites, and the two apps
// behind them on loopback.
type ports struct {
	portal, emr, portalUpstream, emrUpstream int
}

func main() {
	caddyBin := flag.String("caddy", "./caddy", "Caddy binary built with ssogate")
	config := flag.String("config", "Caddyfile.example", "Caddyfile to run")
	dataDir := flag.String("data", "demo/.data", "Caddy's data directory (its internal CA and the demo's API key live here)")
	check := flag.Bool("check", false, "sign in once through the printed link, then exit")
	var p ports
	flag.IntVar(&p.portal, "portal-port", 8443, "HTTPS port of the portal (https://portal.localhost:<port>)")
	flag.IntVar(&p.emr, "emr-port", 9443, "HTTPS port of the embedding app (https://emr.localhost:<port>)")
	flag.IntVar(&p.portalUpstream, "portal-upstream-port", 9000, "loopback port of the portal behind the gateway")
	flag.IntVar(&p.emrUpstream, "emr-upstream-port", 9100, "loopback port of the embedding app behind Caddy")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*caddyBin, *config, *dataDir, p, *check); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(caddyBin, config, dataDir string, p ports, check bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	portalURL := fmt.Sprintf("https://portal.localhost:%d", p.portal)
	emrURL := fmt.Sprintf("https://emr.localhost:%d", p.emr)

	// A fresh API key for each run: only its hash goes into the config; the
	// key itself goes to a file, for `caddy ssogate mint --key-file`.
	key := token.New()
	sum := sha256.Sum256([]byte(key))
	absData, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(absData, 0o700); err != nil {
		return err
	}
	keyFile := filepath.Join(dataDir, "api-key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the demo's API key: %w", err)
	}

	assertionKey, err := demoAssertionKey(ctx, caddyBin, absData)
	if err != nil {
		return err
	}
	caddy := exec.CommandContext(ctx, caddyBin, "run", "--config", config, "--adapter", "caddyfile")
	caddy.Env = append(os.Environ(),
		"DEMO_KEY_SHA256="+hex.EncodeToString(sum[:]),
		"DEMO_ASSERTION_KEY="+assertionKey,
		"DEMO_PORTAL_PORT="+strconv.Itoa(p.portal),
		"DEMO_EMR_PORT="+strconv.Itoa(p.emr),
		"DEMO_PORTAL_UPSTREAM_PORT="+strconv.Itoa(p.portalUpstream),
		"DEMO_EMR_UPSTREAM_PORT="+strconv.Itoa(p.emrUpstream),
		"XDG_DATA_HOME="+absData, "XDG_CONFIG_HOME="+absData)
	caddy.Stdout, caddy.Stderr = os.Stderr, os.Stderr
	caddy.Cancel = func() error { return caddy.Process.Signal(os.Interrupt) }
	caddy.WaitDelay = 5 * time.Second

	// The emr app needs the client, which needs Caddy's CA: hand it over
	// once Caddy is up.
	api := &client.Client{BaseURL: portalURL, APIKey: key}
	verifier := newAssertionVerifier(portalURL)
	for port, h := range map[int]http.Handler{p.portalUpstream: portal(verifier), p.emrUpstream: emr(api)} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s (is another demo running? pick other ports with the -*-port flags): %w", addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
	}
	rootFile := filepath.Join(dataDir, "caddy", "pki", "authorities", "local", "root.crt")
	httpClient, err := loopbackClient(ctx, rootFile, portalURL, emrURL, caddy)
	if err != nil {
		return err
	}
	defer func() {
		stop() // interrupts caddy (its Cancel), then waits for it
		_ = caddy.Wait()
	}()
	api.HTTPClient = httpClient
	verifier.client.Store(httpClient)

	signIn := emrURL + "/open"
	if check {
		return signInOnce(ctx, httpClient, signIn)
	}
	fmt.Printf(`
ssogate demo is running (Ctrl-C to stop). Certificates come from Caddy's
internal CA: accept the browser's warning once for each of the two hosts.

  Sign in as dr.jones (each visit mints a fresh single-use link, so this
  link never expires):
    %[1]s

  The embedding app, framing the portal (a fresh link per page view):
    %[2]s/

  Mint a link yourself (valid 30 s, single use):
    %[3]s ssogate mint --url %[4]s --key-file %[5]s --ca-cert %[6]s --user nurse.lee
    curl --cacert %[6]s -X POST %[4]s/sso/tokens \
      -H "Authorization: Bearer $(cat %[5]s)" -H 'Content-Type: application/json' \
      -d '{"userId":"nurse.lee","claims":{"role":"nurse"}}'

  Health, as a load balancer sees it:
    %[3]s ssogate health --url %[4]s --ca-cert %[6]s
`, signIn, emrURL, caddyBin, portalURL, keyFile, rootFile)
	<-ctx.Done()
	return nil
}

// loopbackClient starts caddy and returns a client that trusts its internal CA
// and reaches the demo hostnames on this machine, whatever the resolver says
// of *.localhost. It keeps cookies and follows redirects, as a browser does.
func loopbackClient(ctx context.Context, rootFile, portalURL, emrURL string, caddy *exec.Cmd) (*http.Client, error) {
	if err := caddy.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (build it with `go build -o caddy ./cmd/caddy`): %w", caddy.Path, err)
	}
	var pem []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if pem, err = os.ReadFile(rootFile); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, errors.New("caddy did not create its internal CA in 30s; see its log above")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{
		Timeout: 10 * time.Second,
		Jar:     jar,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
		},
	}
	// Wait for the gateway to serve, not just for the CA file to exist, and
	// for the embedding app's site too: Caddy issues each site's certificate
	// on its own, and a handshake before it is ready fails.
	for {
		resp, err := c.Get(portalURL + "/sso/health")
		if err == nil {
			resp.Body.Close()
			err = errors.New(resp.Status)
			if resp.StatusCode == http.StatusOK {
				if resp, err = c.Head(emrURL + "/"); err == nil {
					resp.Body.Close()
					return c, nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("gateway not healthy in 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signInOnce follows the sign-in link as a browser navigating to it would, and
// checks the portal sees the user.
func signInOnce(ctx context.Context, c *http.Client, link string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/html")
	// A browser's top-level navigation, which redeems in one hop.
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<strong id="user">dr.jones</strong>`) {
		return fmt.Errorf("the sign-in link ended at %s with %s, not the portal signed in as dr.jones", resp.Request.URL.Redacted(), resp.Status)
	}
	if !strings.Contains(string(body), `<span id="verified">verified</span>`) {
		return fmt.Errorf("the portal could not verify the gateway's identity assertion:\n%s", body)
	}
	fmt.Println("demo check passed: the sign-in link minted, redeemed, and the portal saw dr.jones, verified")
	return nil
}

// demoAssertionKey returns the identity_assertion key file in dataDir, made
// with `caddy ssogate assertion-key` on the first run.
func demoAssertionKey(ctx context.Context, caddyBin, dataDir string) (string, error) {
	path := filepath.Join(dataDir, "assertion-key.pem")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, caddyBin, "ssogate", "assertion-key", "--out", path, "--kid", "demo").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("caddy ssogate assertion-key (build caddy with `go build -o caddy ./cmd/caddy`): %v\n%s", err, out)
	}
	return path, nil
}
