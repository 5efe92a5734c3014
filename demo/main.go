// Command demo runs the ssogate demo: a portal behind the gateway, an embedding
// app on a second site, and Caddy with Caddyfile.example on the memory store.
// It prints a fresh sign-in link and the embedding page, then runs until
// interrupted. With -check it signs in once through the gateway and exits.
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
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ssogate/ssogate/client"
	"github.com/ssogate/ssogate/internal/token"
)

const (
	portalURL    = "https://portal.localhost:8443"
	emrURL       = "https://emr.localhost:9443"
	portalListen = "127.0.0.1:9000"
	emrListen    = "127.0.0.1:9100"
)

func main() {
	caddyBin := flag.String("caddy", "./caddy", "Caddy binary built with ssogate")
	config := flag.String("config", "Caddyfile.example", "Caddyfile to run")
	dataDir := flag.String("data", "demo/.data", "Caddy's data directory (its internal CA lives here)")
	check := flag.Bool("check", false, "sign in once through the gateway, then exit")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*caddyBin, *config, *dataDir, *check); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(caddyBin, config, dataDir string, check bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// A fresh API key for each run: only its hash goes into the config.
	key := token.New()
	sum := sha256.Sum256([]byte(key))

	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	caddy := exec.CommandContext(ctx, caddyBin, "run", "--config", config, "--adapter", "caddyfile")
	caddy.Env = append(os.Environ(), "DEMO_KEY_SHA256="+hex.EncodeToString(sum[:]), "XDG_DATA_HOME="+dataDir, "XDG_CONFIG_HOME="+dataDir)
	caddy.Stdout, caddy.Stderr = os.Stderr, os.Stderr
	caddy.Cancel = func() error { return caddy.Process.Signal(os.Interrupt) }
	caddy.WaitDelay = 5 * time.Second

	// The emr app needs the client, which needs Caddy's CA: hand it over
	// once Caddy is up.
	api := &client.Client{BaseURL: portalURL, APIKey: key}
	for addr, h := range map[string]http.Handler{portalListen: portal(), emrListen: emr(api)} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s (is another demo running?): %w", addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
	}
	httpClient, err := loopbackClient(ctx, filepath.Join(dataDir, "caddy", "pki", "authorities", "local", "root.crt"), caddy)
	if err != nil {
		return err
	}
	defer func() {
		stop() // interrupts caddy (its Cancel), then waits for it
		_ = caddy.Wait()
	}()
	api.HTTPClient = httpClient

	tok, err := api.Mint(ctx, client.MintRequest{UserID: "dr.jones", Redirect: "/#/patients/6422/details/overview"})
	if err != nil {
		return fmt.Errorf("minting the first link: %w", err)
	}
	if check {
		return signInOnce(ctx, httpClient, tok.URL)
	}
	fmt.Printf(`
ssogate demo is running (Ctrl-C to stop). Certificates come from Caddy's
internal CA: accept the browser's warning once for each of the two hosts.

  Sign-in link for dr.jones, valid until %s (single use):
    %s

  The embedding app, framing the portal (mints a fresh link per view):
    %s/

  Mint your own:
    curl -k -X POST %s/sso/tokens -H 'Authorization: Bearer %s' \
      -H 'Content-Type: application/json' -d '{"userId":"nurse.lee"}'
`, tok.ExpiresAt.Local().Format("15:04:05"), tok.URL, emrURL, portalURL, key)
	<-ctx.Done()
	return nil
}

// loopbackClient starts caddy and returns a client that trusts its internal CA
// and reaches the demo hostnames on this machine, whatever the resolver says
// of *.localhost.
func loopbackClient(ctx context.Context, rootFile string, caddy *exec.Cmd) (*http.Client, error) {
	if err := caddy.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (build it with `go build -o caddy ./cmd/caddy`): %w", caddy.Path, err)
	}
	var pem []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if pem, err = os.ReadFile(rootFile); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, errors.New("caddy did not create its internal CA in 20s; see its log above")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	c := &http.Client{
		Timeout: 10 * time.Second,
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
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// Wait for the gateway to serve, not just for the CA file to exist.
	for {
		resp, err := c.Get(portalURL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("gateway not ready in 20s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signInOnce follows a sign-in link as a browser would and checks the portal
// sees the user.
func signInOnce(ctx context.Context, c *http.Client, link string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	// A browser's top-level navigation, which redeems in one hop.
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || len(resp.Cookies()) == 0 {
		return fmt.Errorf("redeem answered %s without a session cookie", resp.Status)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, portalURL+resp.Header.Get("Location"), nil)
	req.AddCookie(resp.Cookies()[0])
	page, err := c.Do(req)
	if err != nil {
		return err
	}
	defer page.Body.Close()
	body := make([]byte, 4096)
	n, _ := page.Body.Read(body)
	if page.StatusCode != http.StatusOK || !strings.Contains(string(body[:n]), `<strong id="user">dr.jones</strong>`) {
		return fmt.Errorf("portal answered %s without the signed-in user", page.Status)
	}
	fmt.Println("demo check passed: minted, redeemed, and the portal saw dr.jones")
	return nil
}
