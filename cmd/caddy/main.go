// Command caddy is Caddy with its standard modules and ssogate, for tests and the
// demo. Release builds come from xcaddy.sh; both link the same modules.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/ssogate/ssogate"
)

func main() {
	caddycmd.Main()
}
