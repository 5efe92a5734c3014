// Package ssogate registers every ssogate Caddy module: the
// http.handlers.ssogate handler, its Caddyfile directive, its `caddy ssogate`
// commands, and the memory and redis stores. Build Caddy with it:
//
//	xcaddy build v2.11.9 --with github.com/ssogate/ssogate
package ssogate

import (
	_ "github.com/ssogate/ssogate/caddymodule"
	_ "github.com/ssogate/ssogate/caddymodule/cli"
	_ "github.com/ssogate/ssogate/plugins/store/memory"
	_ "github.com/ssogate/ssogate/plugins/store/redis"
)
