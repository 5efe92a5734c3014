# ssogate — `make demo` runs the demo, `make test` runs every check and test.

.PHONY: demo test unit caddy bench fmt

# The version `caddy ssogate version` prints and ssogate_build_info carries.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/ssogate/ssogate/internal/version.version=$(VERSION)

# Builds Caddy with ssogate and runs the demo portal, the embedding app and the
# gateway on the memory store; prints a fresh sign-in link.
demo:
	go build -ldflags '$(LDFLAGS)' -o caddy ./cmd/caddy
	go run ./demo -caddy ./caddy $(DEMO_FLAGS)

# Installs what is missing (redis-server, chromium, firefox-esr, Node and the
# Firefox driver's npm packages), then static checks, unit
# tests with the race detector, ./caddy via xcaddy.sh, integration and browser tests.
test:
	./scripts/test.sh

# Unit tests only, for a quick loop.
unit:
	go test -race -count=1 $$(go list ./... | grep -v '/integration')

# Caddy with ssogate, built by xcaddy at the pinned Caddy version.
caddy:
	./xcaddy.sh

# The load benchmark: gated vs plain reverse_proxy, redeem latency, Redis
# commands per request, memory per session. A Go benchmark run once
# (BenchmarkGateway); prints the table and writes bench-results/latest.md.
# Its flags go in BENCHFLAGS, e.g. make bench BENCHFLAGS='-rounds 3'.
bench:
	go test -run '^$$' -bench '^BenchmarkGateway$$' -benchtime 1x -timeout 15m ./integration/bench $(BENCHFLAGS)

fmt:
	gofmt -w $$(git ls-files '*.go')
