#!/usr/bin/env bash
# Builds ./caddy: Caddy v2.11.9 with ssogate from this working tree, using the
# xcaddy version pinned as a Go tool in go.mod.
#
#   ./xcaddy.sh                     # → ./caddy
#   ./xcaddy.sh --output /usr/local/bin/caddy
#   ./xcaddy.sh --with github.com/mholt/caddy-ratelimit   # more plugins
set -euo pipefail
cd "$(dirname "$0")"
CADDY_VERSION=v2.11.9
out=./caddy
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--output) out=$2; shift 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
exec go tool xcaddy build "$CADDY_VERSION" \
	--with github.com/ssogate/ssogate@v0.0.0-00010101000000-000000000000=. \
	--output "$out" "${args[@]}"
