package cli

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/ssogate/ssogate/internal/assertion"
)

func TestAssertionKeyCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.pem")
	kid, err := writeAssertionKey(path, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(path)
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("not a PKCS#8 PEM file:\n%s", data)
	}
	if _, err := assertion.ParseKey(kid, data); err != nil {
		t.Errorf("the gateway refuses the key it made (kid %q): %v", kid, err)
	}
	if _, err := writeAssertionKey(path, ""); err == nil {
		t.Error("an existing key file is overwritten")
	}
	if after, _ := os.ReadFile(path); string(after) != string(data) {
		t.Error("the existing key file changed")
	}
	if _, err := writeAssertionKey(filepath.Join(t.TempDir(), "x.pem"), "bad kid"); err == nil {
		t.Error("a bad --kid is accepted")
	}
}
