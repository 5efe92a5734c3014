#!/usr/bin/env bash
# Runs every check and test of ssogate on a fresh machine: installs what is
# missing (Redis, Chromium, Firefox ESR, Node and the Firefox driver's npm
# packages), runs static checks and unit tests, builds ./caddy with xcaddy.sh, then
# runs the integration and browser tests against it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v chromium >/dev/null || [ -x /usr/lib/chromium/chromium ] || missing+=(chromium)
command -v curl >/dev/null || missing+=(curl)
/usr/bin/python3 -c 'import redis' 2>/dev/null || missing+=(python3-redis) # the README's Python examples
command -v firefox-esr >/dev/null || missing+=(firefox-esr)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
redis-server --version
# The Firefox tests' driver: puppeteer-core pinned by its lockfile.
if [ ! -d integration/firefox/node_modules/puppeteer-core ]; then
	(cd integration/firefox && npm ci --no-audit --no-fund --loglevel=error)
fi

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "unit tests (race detector)"
go test -race -count=1 $(go list ./... | grep -v '/integration')

step "build ./caddy with xcaddy"
./xcaddy.sh

step "integration and browser tests"
SSOGATE_CADDY="$PWD/caddy" go test -count=1 -timeout 20m ./integration/...
