package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/ssogate/ssogate/plugins/store/memory"
	_ "github.com/ssogate/ssogate/plugins/store/redis"
)

// TestCaddyfileAdapt checks that each testdata/caddyfile_adapt/*.caddyfiletest
// Caddyfile (above the ---------- line) adapts to exactly the JSON below it.
// They double as the reference of the syntax.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s has no ---------- line", f)
			}
			if !caddytest.CompareAdapt(t, f, in, "caddyfile", strings.TrimSpace(want)) {
				t.Fatalf("%s does not adapt to the JSON it holds (diff above)", f)
			}
		})
	}
}

// TestCaddyfileErrors says what each malformed ssogate block gets.
func TestCaddyfileErrors(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	cases := []struct{ name, in, want string }{
		{"argument on the directive", "ssogate extra", "wrong argument count"},
		{"unknown subdirective", "ssogate {\n bogus\n}", `unrecognized subdirective "bogus"`},
		{"store without a name", "ssogate {\n store\n}", "wrong argument count"},
		{"unknown store", "ssogate {\n store etcd\n}", "ssogate.stores.etcd"},
		{"credential without id", "ssogate {\n credential {\n key_sha256 " + hash + "\n }\n}", "wrong argument count"},
		{"unknown credential option", "ssogate {\n credential a {\n scope all\n }\n}", `unrecognized credential option "scope"`},
		{"claim without =", "ssogate {\n credential a {\n claims grouporg\n }\n}", "is not key=value"},
		{"bad duration", "ssogate {\n token_ttl soon\n}", "token_ttl"},
		{"signing_key without secret", "ssogate {\n signing_key k1\n}", "wrong argument count"},
		{"signing_key twice", "ssogate {\n signing_key k1 a\n signing_key k1 b\n}", "given twice"},
		{"on/off typo", "ssogate {\n rewrite_upstream_cookies no\n}", "want on or off"},
		{"unknown redeem route", "ssogate {\n redeem login /login\n}", `unknown route "login"`},
		{"redeem redirect with params", "ssogate {\n redeem redirect /r tok\n}", "no parameters"},
		{"redeem off with extra", "ssogate {\n redeem auth off now\n}", "wrong argument count"},
		{"redeem without path", "ssogate {\n redeem auth\n}", "wrong argument count"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one containing %q", err, c.want)
			}
		})
	}
}
