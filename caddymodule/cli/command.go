// Package cli is the `caddy ssogate` command: hash-key, mint, health, version
// and assertion-key. It is a package of its own so that the handler does not
// depend on the API client (client/) the mint command uses.
package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ssogate/ssogate/caddymodule"
	"github.com/ssogate/ssogate/client"
	"github.com/ssogate/ssogate/internal/version"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "ssogate",
		Usage: "hash-key|mint|health|version|assertion-key [flags]",
		Short: "Manages ssogate API keys and mints sign-in links",
		Long: `
Tools for the ssogate handler.

caddy ssogate hash-key [--key <key>] [--generate]
    Prints the SHA-256 of an API key in hex, the value of a credential's
    key_sha256. The key is read from --key, or else from stdin (without
    echo on a terminal). With --generate, makes a new key of 256 random
    bits (base64url) and prints both the key and its key_sha256.

caddy ssogate mint --url <gateway> --key-file <file> [--user <id>]
                   [--redirect <target>] [--claim <k>=<v>]...
                   [--ca-cert <pem>] [--insecure] [--timeout <duration>] [--json]
    Mints a sign-in token through the gateway's API (POST /sso/tokens) and
    prints the single-use link. The key file holds the API key (surrounding
    whitespace is ignored; "-" reads stdin). Without --key-file, the key is
    taken from the SSOGATE_API_KEY environment variable.

caddy ssogate health --url <gateway> [--path /sso/health] [--ca-cert <pem>]
                     [--insecure] [--timeout <duration>]
    Asks the gateway's health endpoint and prints its answer. Exits 0 when
    the gateway and its store are up, 1 otherwise, for scripts and probes.

caddy ssogate version
    Prints the ssogate version of this binary.

caddy ssogate assertion-key --out <file> [--kid <kid>]
    Writes a new P-256 private key (PKCS#8 PEM, mode 0600) for
    identity_assertion and prints the config block that uses it.

mint and health reach localhost and *.localhost names (RFC 6761) on this
machine's loopback, whatever the system resolver says of them.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("unknown ssogate command %q (want hash-key, mint, health, version or assertion-key)", args[0])
				}
				return cmd.Help()
			}

			hashKey := &cobra.Command{
				Use:   "hash-key [--key <key>] [--generate]",
				Short: "Prints the key_sha256 of an API key, or makes a new key",
				Args:  cobra.NoArgs,
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdHashKey),
			}
			hashKey.Flags().StringP("key", "k", "", "The API key (default: read from stdin)")
			hashKey.Flags().BoolP("generate", "g", false, "Make a new random key and print it with its hash")

			mint := &cobra.Command{
				Use:   "mint --url <gateway> --key-file <file> [--user <id>] [--redirect <target>] [--claim <k>=<v>]...",
				Short: "Mints a single-use sign-in link through the gateway's API",
				Args:  cobra.NoArgs,
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdMint),
			}
			f := mint.Flags()
			f.String("url", "", "The gateway's base URL, e.g. https://portal.example.com")
			f.String("key-file", "", `File holding the API key ("-" for stdin; default: $SSOGATE_API_KEY)`)
			f.String("user", "", "The user to sign in (optional for a credential with a fixed user)")
			f.String("redirect", "", "Where the user lands after sign-in")
			f.StringArray("claim", nil, "A claim k=v for the token (repeatable; only keys in the credential's request_claims)")
			f.String("ca-cert", "", "PEM file of a CA to trust besides the system's (e.g. Caddy's local CA)")
			f.Bool("insecure", false, "Do not verify the gateway's TLS certificate (testing only)")
			f.Duration("timeout", 10*time.Second, "How long to wait for the gateway")
			f.Bool("json", false, "Print the whole mint response as JSON instead of the link")

			cmd.AddCommand(hashKey, mint, assertionKeyCommand())
			cmd.AddCommand(opsCommands()...)
		},
	})
}

// generatedKeyBytes is the entropy of a key made by hash-key --generate: as
// much as the SHA-256 it is checked against.
const generatedKeyBytes = 32

// weakKeyLen is the length under which hash-key warns: a key this short is
// guessable offline by anyone who sees its key_sha256 in a config.
const weakKeyLen = 20

func cmdHashKey(fs caddycmd.Flags) (int, error) {
	if fs.Bool("generate") {
		if fs.String("key") != "" {
			return caddy.ExitCodeFailedStartup, errors.New("--generate and --key exclude each other")
		}
		raw := make([]byte, generatedKeyBytes)
		_, _ = rand.Read(raw) // crypto/rand.Read never fails (Go 1.24+)
		key := base64.RawURLEncoding.EncodeToString(raw)
		fmt.Printf("key:        %s\nkey_sha256: %s\n", key, hashKey(key))
		return 0, nil
	}

	key := fs.String("key")
	if key == "" {
		var err error
		if key, err = readKeyFromStdin(); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	}
	key, err := cleanKey(key)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if len(key) < weakKeyLen {
		fmt.Fprintf(os.Stderr, "warning: a %d-character key is weak; `caddy ssogate hash-key --generate` makes a strong one\n", len(key))
	}
	fmt.Println(hashKey(key))
	return 0, nil
}

// hashKey is the key_sha256 of key, as Credential compares it.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// cleanKey trims the key the way the gateway reads the Authorization header
// (surrounding whitespace ignored) and refuses keys no header can carry.
func cleanKey(key string) (string, error) {
	key = strings.TrimSpace(key)
	if key == "" {
		return "", errors.New("the API key is empty")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < ' ' || c == 0x7f {
			return "", errors.New("the API key contains a control character")
		}
	}
	return key, nil
}

// readKeyFromStdin reads one line, without echo when stdin is a terminal.
func readKeyFromStdin() (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the key from stdin: %w", err)
		}
		return line, nil
	}
	// Restore the terminal's echo if the user gives up with Ctrl-C.
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("reading the terminal state: %w", err)
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt)
	defer signal.Stop(c)
	go func() {
		if _, ok := <-c; ok {
			_ = term.Restore(fd, state)
			os.Exit(caddy.ExitCodeFailedStartup)
		}
	}()
	fmt.Fprint(os.Stderr, "API key: ")
	key, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", fmt.Errorf("reading the key: %w", err)
	}
	return string(key), nil
}

func cmdMint(fs caddycmd.Flags) (int, error) {
	baseURL := fs.String("url")
	if baseURL == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--url is required")
	}
	key, err := mintKey(fs.String("key-file"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	claimArgs, err := fs.GetStringArray("claim")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	req := client.MintRequest{UserID: fs.String("user"), Redirect: fs.String("redirect")}
	for _, kv := range claimArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--claim %q: want key=value", kv)
		}
		if req.Claims == nil {
			req.Claims = map[string]string{}
		}
		if _, dup := req.Claims[k]; dup {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--claim %q given twice", k)
		}
		req.Claims[k] = v
	}

	transport, err := commandTransport(fs)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	c := &client.Client{
		BaseURL:    baseURL,
		APIKey:     key,
		HTTPClient: &http.Client{Transport: transport},
	}

	timeout := fs.Duration("timeout")
	if timeout <= 0 {
		return caddy.ExitCodeFailedStartup, errors.New("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tok, err := c.Mint(ctx, req)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if fs.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(tok); err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("writing the response: %w", err)
		}
		return 0, nil
	}
	fmt.Println(tok.URL)
	return 0, nil
}

// mintKey reads the API key from file ("-" is stdin), or from $SSOGATE_API_KEY
// without one. Never from a flag: command lines are visible to every user of
// the machine.
func mintKey(file string) (string, error) {
	var raw string
	switch file {
	case "":
		raw = os.Getenv("SSOGATE_API_KEY")
		if raw == "" {
			return "", errors.New("--key-file is required (or set SSOGATE_API_KEY)")
		}
	case "-":
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
		if err != nil {
			return "", fmt.Errorf("reading the key from stdin: %w", err)
		}
		raw = string(b)
	default:
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--key-file: %w", err)
		}
		raw = string(b)
	}
	key, err := cleanKey(raw)
	if err != nil {
		return "", fmt.Errorf("--key-file: %w", err)
	}
	return key, nil
}

// opsCommands are the subcommands for operators' scripts: health and version.
func opsCommands() []*cobra.Command {
	health := &cobra.Command{
		Use:   "health --url <gateway> [--path /sso/health]",
		Short: "Asks the gateway's health endpoint; exits 0 if it and its store are up, else 1",
		Args:  cobra.NoArgs,
		RunE:  caddycmd.WrapCommandFuncForCobra(cmdHealth),
	}
	f := health.Flags()
	f.String("url", "", "The gateway's base URL, e.g. https://portal.example.com")
	f.String("path", caddymodule.DefaultAPIPrefix+"/health", "The health endpoint's path (<api_prefix>/health)")
	f.String("ca-cert", "", "PEM file of a CA to trust besides the system's (e.g. Caddy's local CA)")
	f.Bool("insecure", false, "Do not verify the gateway's TLS certificate (testing only)")
	f.Duration("timeout", 5*time.Second, "How long to wait for the gateway")

	versionCmd := &cobra.Command{
		Use:   "version",
		Short: "Prints the ssogate version of this binary",
		Args:  cobra.NoArgs,
		RunE:  caddycmd.WrapCommandFuncForCobra(cmdVersion),
	}
	return []*cobra.Command{health, versionCmd}
}

func cmdVersion(caddycmd.Flags) (int, error) {
	fmt.Println(version.String())
	return 0, nil
}

// cmdHealth prints the health endpoint's answer; the exit code says whether
// the gateway answered 200.
func cmdHealth(fs caddycmd.Flags) (int, error) {
	base := strings.TrimSuffix(fs.String("url"), "/")
	if base == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--url is required")
	}
	timeout := fs.Duration("timeout")
	if timeout <= 0 {
		return caddy.ExitCodeFailedStartup, errors.New("--timeout must be positive")
	}
	transport, err := commandTransport(fs)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+fs.String("path"), nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("reading the answer: %w", err)
	}
	fmt.Printf("%s %s", resp.Status, body)
	if resp.StatusCode != http.StatusOK {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("gateway unhealthy: %s", resp.Status)
	}
	return 0, nil
}

// commandTransport is the HTTP transport of the commands that call a
// gateway: the TLS settings of --ca-cert and --insecure, and localhost names
// dialled on loopback.
func commandTransport(fs caddycmd.Flags) (*http.Transport, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if file := fs.String("ca-cert"); file != "" {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-cert %s: no PEM certificate in it", file)
		}
		tlsConfig.RootCAs = pool
	}
	if fs.Bool("insecure") {
		fmt.Fprintln(os.Stderr, "warning: --insecure: the gateway's certificate is not checked, so anyone may answer (and get an API key)")
		tlsConfig.InsecureSkipVerify = true
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	transport.DialContext = dialLocalhostOnLoopback(&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second})
	return transport, nil
}

// dialLocalhostOnLoopback dials localhost and *.localhost names on 127.0.0.1
// (then ::1), as RFC 6761 says they are, and as browsers and curl do; Go's
// resolver asks DNS for *.localhost, which often has no answer. Every other
// address is dialled as given.
func dialLocalhostOnLoopback(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !isLocalhostName(host) {
			return d.DialContext(ctx, network, addr)
		}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		if err == nil {
			return conn, nil
		}
		if conn6, err6 := d.DialContext(ctx, network, net.JoinHostPort("::1", port)); err6 == nil {
			return conn6, nil
		}
		return nil, err
	}
}

// isLocalhostName tells whether host is "localhost" or a name under it.
func isLocalhostName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}
