package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/integration/harness"
)

// TestDemo runs the demo of the README's first command, as `make demo` does but
// with -check: Caddyfile.example on the memory store, the demo portal and
// embedding app, a minted link redeemed and the portal seeing the user.
func TestDemo(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "./demo", "-caddy", harness.CaddyBinary(t), "-data", t.TempDir(), "-check")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "demo check passed") {
		t.Fatalf("demo -check: %v\n%s", err, tail(string(out), 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
