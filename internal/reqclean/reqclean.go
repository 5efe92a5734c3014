// Package reqclean removes, from an incoming request, every way a client could
// speak for the gateway: the headers the gateway alone sets (the identity it
// vouches for), as headers, as trailers, and as names in the hop-by-hop lists
// that would make a proxy drop the gateway's own copies.
//
// A client can reach those headers four ways, and each is closed here:
//
//   - the header itself, in any case and with "_" for "-" (CGI-style
//     backends such as PHP read X_Forwarded_User as X-Forwarded-User);
//   - a name in the Connection header ("Connection: close,
//     X-Forwarded-Claims"), which makes a proxy delete that header as
//     hop-by-hop after the gateway has set it;
//   - a name in the Trailer header, announcing a trailer;
//   - a trailer field, declared or not, which net/http fills in only when the
//     body has been read to its end, long after any handler looked at the
//     headers: the body is wrapped so that the trailers are cleaned at the
//     moment they exist, before a proxy copies them.
package reqclean

import (
	"io"
	"net/http"
	"strings"
)

// Names is the set of request header names that only the gateway may set.
// It is immutable once made and safe for concurrent use.
type Names struct {
	names []string
}

// New returns the set of the given header names.
func New(names ...string) *Names {
	n := &Names{}
	for _, name := range names {
		if name != "" && !n.Owns(name) {
			n.names = append(n.names, http.CanonicalHeaderKey(name))
		}
	}
	return n
}

// Owns reports whether name stands for one of the set's headers to some
// server: the same letters in any case, "_" and "-" alike.
func (n *Names) Owns(name string) bool {
	for _, own := range n.names {
		if sameHeader(name, own) {
			return true
		}
	}
	return false
}

// Clean removes the set's headers from r as headers, as names in its
// Connection and Trailer headers, and as trailers, now and when the body ends.
func (n *Names) Clean(r *http.Request) {
	for name := range r.Header {
		if n.Owns(name) {
			delete(r.Header, name)
		}
	}
	n.cleanList(r.Header, "Connection")
	n.cleanList(r.Header, "Trailer")
	n.cleanTrailers(r.Trailer)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &cleaningBody{ReadCloser: r.Body, req: r, names: n}
	}
}

// cleanTrailers deletes the set's names from a trailer map.
func (n *Names) cleanTrailers(tr http.Header) {
	for name := range tr {
		if n.Owns(name) {
			delete(tr, name)
		}
	}
}

// cleanList removes the set's names from a comma-separated header, keeping
// its other tokens ("Connection: Upgrade, X-Forwarded-User" keeps Upgrade).
func (n *Names) cleanList(h http.Header, key string) {
	values := h[key]
	if len(values) == 0 {
		return
	}
	dirty := false
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if n.Owns(strings.TrimSpace(tok)) {
				dirty = true
			}
		}
	}
	if !dirty {
		return
	}
	kept := make([]string, 0, len(values))
	for _, v := range values {
		var toks []string
		for tok := range strings.SplitSeq(v, ",") {
			if t := strings.TrimSpace(tok); t != "" && !n.Owns(t) {
				toks = append(toks, t)
			}
		}
		if len(toks) > 0 {
			kept = append(kept, strings.Join(toks, ", "))
		}
	}
	if len(kept) == 0 {
		delete(h, key)
		return
	}
	h[key] = kept
}

// cleaningBody cleans the request's trailers when the body reports its end,
// which is when net/http has just merged them into the request, and before
// the reader (a proxy) can copy them.
type cleaningBody struct {
	io.ReadCloser
	req   *http.Request
	names *Names
}

func (b *cleaningBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.names.cleanTrailers(b.req.Trailer)
	}
	return n, err
}

// sameHeader compares header names as the most lenient backend would: ASCII
// case-insensitively, with "_" equal to "-".
func sameHeader(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if fold(a[i]) != fold(b[i]) {
			return false
		}
	}
	return true
}

func fold(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}
