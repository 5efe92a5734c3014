package caddymodule

import (
	"fmt"
	"strings"

	"github.com/ssogate/ssogate/internal/reqclean"
)

// notOwnable are request headers the gateway cannot own: hop-by-hop headers,
// which reverse_proxy drops; the X-Forwarded-* and Via headers reverse_proxy
// writes itself; and headers that frame, route or authenticate the request,
// or that the gateway reads from the client (Accept, Origin, Sec-Fetch-*),
// which the request cleaner would remove from every request.
var notOwnable = reqclean.New(
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Proxy-Authenticate", "Proxy-Authorization",
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Via",
	"Host", "Cookie", "Content-Length", "Content-Type", "Content-Encoding", "Authorization", "Expect",
	"Accept", "Origin", "Referer",
)

// checkOwnedHeaders refuses identity header names that could not reach the
// upstream exactly as the gateway sets them: names that are no HTTP token,
// names in notOwnable or starting with Sec- (the browser's own), and one name
// given twice (in any case, "_" for "-").
func checkOwnedHeaders(names map[string]string) error {
	var accepted []string
	for _, what := range []string{"user_header", "claims_header", "identity_assertion header"} {
		name, ok := names[what]
		if !ok {
			continue
		}
		switch {
		case !isToken(name):
			return fmt.Errorf("%s %q is not a valid header name", what, name)
		case notOwnable.Owns(name) || strings.HasPrefix(strings.ToLower(name), "sec-"):
			return fmt.Errorf("%s %q: the gateway cannot set that header for the upstream (a proxy drops, rewrites or needs it); choose another name", what, name)
		case reqclean.New(accepted...).Owns(name):
			return fmt.Errorf("%s %q is already used by another identity header", what, name)
		}
		accepted = append(accepted, name)
	}
	return nil
}
