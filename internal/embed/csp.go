package embed

import (
	"net/http"
	"strings"
)

// Header names as net/http canonicalizes them; upstream responses reach the
// handler canonicalized, so map access needs no folding.
const (
	cspHeader           = "Content-Security-Policy"
	cspReportOnlyHeader = "Content-Security-Policy-Report-Only"
	xFrameOptions       = "X-Frame-Options"
	frameAncestors      = "frame-ancestors"
)

// MergeCSP rewrites the response headers h in place so that frame-ancestors fa
// is the one framing rule the browser enforces.
//
// Browsers enforce every policy they receive, across all
// Content-Security-Policy headers and comma-separated policies alike, and a
// frame is allowed only if all of them allow it. So every frame-ancestors
// directive is removed from every policy, and exactly one, with value fa, is
// appended to the first header (or becomes the header when there is none).
// Other directives keep their text byte for byte; separators next to a
// removed directive are tidied, and a policy or header value left empty is
// dropped. Directive names match case-insensitively, as in the CSP parser.
//
// Content-Security-Policy-Report-Only headers lose their frame-ancestors too
// and get none added: browsers ignore frame-ancestors in report-only
// policies, and a leftover one contradicting the enforced rule only misleads
// whoever reads the headers while debugging a blocked frame.
//
// X-Frame-Options is removed: where browsers honour both, it can only forbid
// what frame-ancestors allows, and it cannot name the embedding origin.
//
// fa is a source list such as Origins.FrameAncestors returns; it is written
// as given. An empty fa is written as 'none', which is what an empty source
// list means, only explicitly. A response that already carries exactly the
// result is left untouched, without allocating.
func MergeCSP(h http.Header, fa string) {
	if fa == "" {
		fa = "'none'"
	}
	delete(h, xFrameOptions)
	if vs, ok := h[cspReportOnlyHeader]; ok {
		if vs = stripValues(vs); len(vs) == 0 {
			delete(h, cspReportOnlyHeader)
		} else {
			h[cspReportOnlyHeader] = vs
		}
	}
	vs := h[cspHeader]
	if alreadyMerged(vs, fa) {
		return
	}
	vs = stripValues(vs)
	if len(vs) == 0 {
		h[cspHeader] = []string{frameAncestors + " " + fa}
		return
	}
	if first := trimRightSep(vs[0], ";,"); first == "" {
		vs[0] = frameAncestors + " " + fa
	} else {
		vs[0] = first + "; " + frameAncestors + " " + fa
	}
	h[cspHeader] = vs
}

// alreadyMerged reports whether vs holds exactly one frame-ancestors
// directive, with value fa, written the way MergeCSP writes it at the end of
// the first value; then running MergeCSP again would change nothing.
func alreadyMerged(vs []string, fa string) bool {
	if len(vs) == 0 {
		return false
	}
	v := vs[0]
	if !strings.HasSuffix(v, fa) {
		return false
	}
	v = v[:len(v)-len(fa)]
	if !strings.HasSuffix(v, frameAncestors+" ") {
		return false
	}
	v = trimRightSep(v[:len(v)-len(frameAncestors)-1], "")
	if v != "" && v[len(v)-1] != ';' {
		return false
	}
	n := 0
	for _, v := range vs {
		n += countFoldASCII(v, frameAncestors)
	}
	return n == 1
}

// stripValues removes frame-ancestors from every header value, reusing vs.
func stripValues(vs []string) []string {
	out := vs[:0]
	for _, v := range vs {
		if containsFoldASCII(v, frameAncestors) {
			nv, changed := stripPolicyList(v)
			if changed && trimSpace(nv) == "" {
				continue
			}
			v = nv
		}
		out = append(out, v)
	}
	// Do not keep dropped strings reachable through the backing array.
	clear(vs[len(out):])
	return out
}

// stripPolicyList removes frame-ancestors from each comma-separated policy of
// a header value. Policies that had nothing but frame-ancestors disappear with
// their comma; policies that were empty to begin with are not ours to tidy.
func stripPolicyList(v string) (string, bool) {
	if strings.IndexByte(v, ',') < 0 {
		// The common single policy needs no second copy.
		np, removed := stripPolicy(v)
		if removed && trimRightSep(np, ";") == "" {
			return "", true
		}
		return np, removed
	}
	var b strings.Builder
	changed, wrote := false, false
	i := 0
	for rest, more := v, true; more; i++ {
		var p string
		p, rest, more = strings.Cut(rest, ",")
		np, removed := stripPolicy(p)
		if removed {
			changed = true
			if trimRightSep(np, ";") == "" {
				continue
			}
		}
		if wrote {
			b.WriteByte(',')
		} else if i > 0 {
			// The policies before were dropped: the value starts here.
			np = trimLeftSpace(np)
		}
		b.WriteString(np)
		wrote = true
	}
	if !changed {
		return v, false
	}
	return b.String(), true
}

// stripPolicy removes the frame-ancestors directives of one policy. The
// directive before a removed one keeps its text; the one after keeps its own,
// so only the separator between them goes.
func stripPolicy(p string) (string, bool) {
	found := false
	for rest, more := p, true; more && !found; {
		var d string
		d, rest, more = strings.Cut(rest, ";")
		found = isFrameAncestors(d)
	}
	if !found {
		return p, false
	}
	var b strings.Builder
	b.Grow(len(p))
	wrote := false
	for rest, more := p, true; more; {
		var d string
		d, rest, more = strings.Cut(rest, ";")
		if isFrameAncestors(d) {
			continue
		}
		if wrote {
			b.WriteByte(';')
		} else {
			// Keep the policy's own leading space (after a comma), not the
			// one that followed a removed first directive.
			b.WriteString(p[:len(p)-len(trimLeftSpace(p))])
			d = trimLeftSpace(d)
		}
		b.WriteString(d)
		wrote = true
	}
	return b.String(), true
}

// isFrameAncestors parses a directive's name as the CSP parser does: the
// token's first run of non-whitespace, compared case-insensitively. So
// "frame-ancestors'none'" is not one, as it is not for browsers.
func isFrameAncestors(d string) bool {
	d = trimLeftSpace(d)
	if len(d) < len(frameAncestors) || !equalFoldASCII(d[:len(frameAncestors)], frameAncestors) {
		return false
	}
	return len(d) == len(frameAncestors) || isSpace(d[len(frameAncestors)])
}

// countFoldASCII counts case-insensitive occurrences of sub, which must be
// lower case, in s.
func countFoldASCII(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if lowerASCII(s[i]) == sub[0] && equalFoldASCII(s[i:i+len(sub)], sub) {
			n++
			i += len(sub) - 1
		}
	}
	return n
}
