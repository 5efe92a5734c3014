// Package version is ssogate's version string: set at build time with
//
//	go build -ldflags "-X github.com/ssogate/ssogate/internal/version.version=v1.2.3"
//
// and otherwise read from the module version the Go toolchain records in the
// binary (the version xcaddy or `go install` fetched, or the VCS state of a
// checkout), else "(devel)".
package version

import "runtime/debug"

// modulePath is ssogate's module path, looked up among a binary's modules.
const modulePath = "github.com/ssogate/ssogate"

// version is set by -ldflags -X; empty otherwise. It is the one
// package-level variable: the linker can set nothing else.
var version string

// String returns the version of ssogate in this binary.
func String() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return fromBuildInfo(bi)
}

// fromBuildInfo finds ssogate's module version in bi: the main module when
// ssogate is what was built, else the dependency (a Caddy built by xcaddy).
func fromBuildInfo(bi *debug.BuildInfo) string {
	v := ""
	if bi.Main.Path == modulePath {
		v = bi.Main.Version
	}
	for _, m := range bi.Deps {
		if m.Path == modulePath {
			v = m.Version
			if m.Replace != nil && m.Replace.Version != "" {
				v = m.Replace.Version
			}
		}
	}
	if v == "" {
		return "(devel)"
	}
	return v
}
