package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/ssogate/ssogate/internal/assertion"
)

// assertionKeyCommand is `caddy ssogate assertion-key`.
func assertionKeyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "assertion-key --out <file> [--kid <kid>]",
		Short: "Writes a new P-256 signing key for identity_assertion",
		Long: `Writes a new P-256 private key as PKCS#8 PEM to --out, with mode 0600,
refusing to overwrite a file, and prints the identity_assertion block that
uses it. The key id defaults to the start of the key's RFC 7638 thumbprint.`,
		Args: cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(cmdAssertionKey),
	}
	c.Flags().StringP("out", "o", "", "File to write the private key to (must not exist)")
	c.Flags().String("kid", "", "Key id to suggest in the printed config (default: from the key's thumbprint)")
	return c
}

func cmdAssertionKey(fs caddycmd.Flags) (int, error) {
	out := fs.String("out")
	if out == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--out is required")
	}
	kid, err := writeAssertionKey(out, fs.String("kid"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		abs = out
	}
	fmt.Printf("wrote a new P-256 key to %s (mode 0600)\n\n\tidentity_assertion {\n\t\tkey %s %s\n\t}\n", out, kid, abs)
	return 0, nil
}

// writeAssertionKey writes a fresh key to path, which must not exist, readable
// by its owner only, and returns the kid to use: kid, or else the first 16
// characters of the key's thumbprint.
func writeAssertionKey(path, kid string) (string, error) {
	pemBytes, thumb, err := assertion.NewKeyPEM()
	if err != nil {
		return "", err
	}
	if kid == "" {
		kid = thumb[:16]
	}
	if _, err := assertion.ParseKey(kid, pemBytes); err != nil {
		return "", fmt.Errorf("--kid: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	// The mode is set again in case the umask or the file system widened it.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("--out: %w", err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("--out: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("--out: %w", err)
	}
	return kid, nil
}
