package cli

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/ssogate/ssogate/caddymodule"
	_ "github.com/ssogate/ssogate/plugins/store/memory"
)

// What hash-key prints must be what the gateway compares with: a key written
// the way an operator does (a file with a newline, a pasted line) is accepted
// with the key_sha256 made from it.
func TestHashKeyMatchesTheGateway(t *testing.T) {
	const key = "a-partner-key-0123456789abcdef"
	for _, typed := range []string{key, key + "\n", key + "\r\n", "  " + key + "\t"} {
		clean, err := cleanKey(typed)
		if err != nil {
			t.Fatalf("cleanKey(%q): %v", typed, err)
		}
		h := &caddymodule.Handler{Credentials: []*caddymodule.Credential{{ID: "c", KeySHA256: hashKey(clean), User: "u"}}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, "https://portal.test/sso/tokens", strings.NewReader("{}"))
		r.Header.Set("Authorization", "Bearer "+key)
		r.Header.Set("Accept", "application/json")
		w := httptest.NewRecorder()
		_ = h.ServeHTTP(w, r, nil)
		if w.Code != http.StatusCreated {
			t.Errorf("key typed as %q: the gateway answers %d %s to the key its hash was made from", typed, w.Code, w.Body)
		}
		_ = h.Cleanup()
		cancel()
	}
}

func TestCleanKeyRefuses(t *testing.T) {
	for _, key := range []string{"", " \n", "a\x00b-0123456789abcdef", "key\nsecond-line"} {
		if _, err := cleanKey(key); err == nil {
			t.Errorf("cleanKey(%q): no error", key)
		}
	}
}

func TestMintKeyFromFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("file-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if key, err := mintKey(file); err != nil || key != "file-key-0123456789abcdef" {
		t.Errorf("mintKey(file) = %q, %v", key, err)
	}
	t.Setenv("SSOGATE_API_KEY", "env-key-0123456789abcdef")
	if key, err := mintKey(""); err != nil || key != "env-key-0123456789abcdef" {
		t.Errorf("mintKey from $SSOGATE_API_KEY = %q, %v", key, err)
	}
	if _, err := mintKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--key-file") {
		t.Errorf("missing key file: %v", err)
	}
	t.Setenv("SSOGATE_API_KEY", "")
	if _, err := mintKey(""); err == nil {
		t.Error("no key file and no $SSOGATE_API_KEY: no error")
	}
}

func TestIsLocalhostName(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "portal.localhost": true, "a.b.localhost.": true,
		"localhost.example.com": false, "notlocalhost": false, "portal.test": false, "127.0.0.1": false, "": false,
	} {
		if got := isLocalhostName(host); got != want {
			t.Errorf("isLocalhostName(%q) = %v, want %v", host, got, want)
		}
	}
}

// The commands reach *.localhost on loopback, whatever the resolver says.
func TestDialLocalhostOnLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	dial := dialLocalhostOnLoopback(&net.Dialer{Timeout: time.Second})
	conn, err := dial(context.Background(), "tcp", net.JoinHostPort("portal.localhost", port))
	if err != nil {
		t.Fatalf("dial portal.localhost:%s: %v", port, err)
	}
	if got := conn.RemoteAddr().String(); got != l.Addr().String() {
		t.Errorf("dialled %s, want %s", got, l.Addr())
	}
	conn.Close()
}

// health exits 0 when the gateway answers 200, 1 otherwise, with a CA given
// by --ca-cert.
func TestCmdHealthExitCode(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sso/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"status":"x","store":"x"}` + "\n"))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() (int, error) {
		cmd := opsCommands()[0]
		fs := cmd.Flags()
		if err := fs.Parse([]string{"--url", srv.URL, "--ca-cert", ca, "--timeout", "5s"}); err != nil {
			t.Fatal(err)
		}
		return cmdHealth(caddycmd.Flags{FlagSet: fs})
	}
	if code, err := run(); code != 0 || err != nil {
		t.Fatalf("healthy gateway: exit %d, %v", code, err)
	}
	status = http.StatusServiceUnavailable
	if code, err := run(); code != 1 || err == nil {
		t.Fatalf("unhealthy gateway: exit %d, %v; want 1", code, err)
	}
}
