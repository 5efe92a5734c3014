package embed

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestParseOrigins(t *testing.T) {
	tests := []struct {
		name   string
		in     []string
		list   string
		fa     string
		errHas string // empty: must succeed
	}{
		{name: "empty list", in: nil, list: "", fa: "'self'"},
		{name: "exact with port", in: []string{"https://emr.test:9443"}, list: "https://emr.test:9443", fa: "'self' https://emr.test:9443"},
		{name: "exact and wildcard in order", in: []string{"https://app.example.com", "https://*.example.com"}, list: "https://app.example.com https://*.example.com", fa: "'self' https://app.example.com https://*.example.com"},
		{name: "order kept", in: []string{"https://b.test", "https://a.test"}, list: "https://b.test https://a.test", fa: "'self' https://b.test https://a.test"},
		{name: "duplicates dropped after lower-casing", in: []string{"https://a.test", "HTTPS://A.Test", "https://a.test"}, list: "https://a.test", fa: "'self' https://a.test"},
		{name: "default port kept as written", in: []string{"https://a.test:443", "https://a.test"}, list: "https://a.test:443 https://a.test", fa: "'self' https://a.test:443 https://a.test"},
		{name: "leading zeros in port normalized", in: []string{"https://a.test:09443"}, list: "https://a.test:9443", fa: "'self' https://a.test:9443"},
		{name: "http localhost", in: []string{"http://localhost:3000"}, list: "http://localhost:3000", fa: "'self' http://localhost:3000"},
		{name: "http loopback IP", in: []string{"http://127.0.0.1:8080"}, list: "http://127.0.0.1:8080", fa: "'self' http://127.0.0.1:8080"},
		{name: "https IPv4", in: []string{"https://10.0.0.1"}, list: "https://10.0.0.1", fa: "'self' https://10.0.0.1"},
		{name: "punycode", in: []string{"https://xn--bcher-kva.example"}, list: "https://xn--bcher-kva.example", fa: "'self' https://xn--bcher-kva.example"},

		{name: "bare star", in: []string{"*"}, errHas: "bare wildcard"},
		{name: "https star", in: []string{"https://*"}, errHas: "bare wildcard"},
		{name: "empty entry", in: []string{""}, errHas: "empty"},
		{name: "bare host", in: []string{"emr.test"}, errHas: "missing scheme"},
		{name: "bare host with port", in: []string{"emr.test:9443"}, errHas: "missing scheme"},
		{name: "scheme only host", in: []string{"https:emr.test"}, errHas: "missing scheme"},
		{name: "self keyword", in: []string{"'self'"}, errHas: "keywords"},
		{name: "path", in: []string{"https://emr.test/app"}, errHas: "no path"},
		{name: "trailing slash", in: []string{"https://emr.test/"}, errHas: `write "https://emr.test"`},
		{name: "query", in: []string{"https://emr.test?x=1"}, errHas: "no path"},
		{name: "fragment", in: []string{"https://emr.test#x"}, errHas: "no path"},
		{name: "userinfo", in: []string{"https://user@emr.test"}, errHas: "user information"},
		{name: "userinfo trick", in: []string{"https://emr.test:443@evil.test"}, errHas: "user information"},
		{name: "other scheme", in: []string{"wss://emr.test"}, errHas: "scheme must be https"},
		{name: "javascript scheme", in: []string{"javascript://x"}, errHas: "scheme must be https"},
		{name: "http public host", in: []string{"http://emr.test"}, errHas: "only for localhost"},
		{name: "http wildcard", in: []string{"http://*.example.com"}, errHas: "only for localhost"},
		{name: "wildcard on TLD", in: []string{"https://*.com"}, errHas: "at least two labels"},
		{name: "wildcard on IP", in: []string{"https://*.10.0.0.1"}, errHas: "at least two labels"},
		{name: "wildcard in the middle", in: []string{"https://a.*.example.com"}, errHas: "whole first label"},
		{name: "wildcard glued", in: []string{"https://*example.com"}, errHas: "whole first label"},
		{name: "two wildcards", in: []string{"https://*.*.example.com"}, errHas: "whole first label"},
		{name: "port zero", in: []string{"https://emr.test:0"}, errHas: "port"},
		{name: "port too big", in: []string{"https://emr.test:65536"}, errHas: "port"},
		{name: "port empty", in: []string{"https://emr.test:"}, errHas: "port"},
		{name: "port star", in: []string{"https://emr.test:*"}, errHas: "port"},
		{name: "ipv6", in: []string{"https://[::1]:8443"}, errHas: "IPv6"},
		{name: "space injection", in: []string{"https://a.test 'unsafe-inline'"}, errHas: "invalid character"},
		{name: "semicolon injection", in: []string{"https://a.test;script-src"}, errHas: "invalid character"},
		{name: "comma injection", in: []string{"https://a.test,https://b.test"}, errHas: "invalid character"},
		{name: "underscore", in: []string{"https://a_b.test"}, errHas: "invalid character"},
		{name: "trailing dot", in: []string{"https://a.test."}, errHas: "trailing dot"},
		{name: "label dash", in: []string{"https://-a.test"}, errHas: "'-'"},
		{name: "unicode host", in: []string{"https://bücher.example"}, errHas: "punycode"},
		{name: "numeric not IPv4", in: []string{"https://1.2.3"}, errHas: "IPv4"},
		{name: "hex IPv4", in: []string{"https://a.0x7f"}, errHas: "IPv4"},
		{name: "IPv4 out of range", in: []string{"https://1.2.3.256"}, errHas: "IPv4"},
		{name: "all bad entries reported", in: []string{"https://ok.test", "emr.test", "*"}, errHas: `"*"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOrigins(tt.in)
			if tt.errHas != "" {
				if err == nil {
					t.Fatalf("ParseOrigins(%q) = %q, want error containing %q", tt.in, o.String(), tt.errHas)
				}
				if !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("ParseOrigins(%q) error %q, want it to contain %q", tt.in, err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOrigins(%q): %v", tt.in, err)
			}
			if got := o.String(); got != tt.list {
				t.Errorf("String() = %q, want %q", got, tt.list)
			}
			if got := o.FrameAncestors(); got != tt.fa {
				t.Errorf("FrameAncestors() = %q, want %q", got, tt.fa)
			}
		})
	}
}

func TestParseOriginsReportsEveryBadEntry(t *testing.T) {
	_, err := ParseOrigins([]string{"emr.test", "https://ok.test", "http://evil.test"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`"emr.test"`, `"http://evil.test"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "ok.test") {
		t.Errorf("error %q mentions a good entry", err)
	}
}

func TestZeroOrigins(t *testing.T) {
	var o Origins
	if got := o.FrameAncestors(); got != "'self'" {
		t.Errorf("FrameAncestors() = %q, want 'self'", got)
	}
	if o.Len() != 0 || o.String() != "" || o.Allows("https://a.test") {
		t.Errorf("zero Origins must list and allow nothing")
	}
}

func TestAllows(t *testing.T) {
	o, err := ParseOrigins([]string{
		"https://emr.test:9443",
		"https://app.example.com",
		"https://*.example.com",
		"https://default.test:443",
		"http://localhost:3000",
		"http://127.0.0.1",
		"https://10.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		origin string
		want   bool
	}{
		{"exact with port", "https://emr.test:9443", true},
		{"exact case-insensitive", "HTTPS://EMR.Test:9443", true},
		{"port must match", "https://emr.test:9444", false},
		{"port missing when source has one", "https://emr.test", false},
		{"http not upgraded to source https", "http://emr.test:9443", false},
		{"exact without port default", "https://app.example.com", true},
		{"exact without port explicit default", "https://app.example.com:443", true},
		{"no port in source means default only", "https://other.test:8443", false},
		{"wildcard one label", "https://a.example.com", true},
		{"wildcard any depth", "https://a.b.example.com", true},
		{"wildcard not bare domain", "https://example.com", false},
		{"wildcard other port", "https://a.example.com:8443", false},
		{"wildcard suffix trick", "https://evilexample.com", false},
		{"wildcard suffix in other domain", "https://a.example.com.evil.test", false},
		{"wildcard case-insensitive", "https://A.EXAMPLE.COM", true},
		{"source port 443 matches default", "https://default.test", true},
		{"source port 443 matches explicit", "https://default.test:443", true},
		{"http source port", "http://localhost:3000", true},
		{"http source upgraded to https", "https://localhost:3000", true},
		{"http source no port", "http://127.0.0.1", true},
		{"http source no port and https default", "https://127.0.0.1", true},
		{"http source no port other port", "http://127.0.0.1:8080", false},
		{"IP exact", "https://10.0.0.1", true},
		{"IP not by wildcard", "https://10.0.0.2", false},
		{"unlisted", "https://evil.test", false},
		{"null origin", "null", false},
		{"empty", "", false},
		{"path", "https://emr.test:9443/", false},
		{"userinfo", "https://x@a.example.com", false},
		{"bad port", "https://emr.test:99999", false},
		{"ipv6", "https://[::1]", false},
		{"wildcard origin", "https://*.example.com", false},
		{"unicode fold is not ASCII fold", "https://emr.te\u017Ft:9443", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := o.Allows(tt.origin); got != tt.want {
				t.Errorf("Allows(%q) = %v, want %v", tt.origin, got, tt.want)
			}
		})
	}
}

const fa = "'self' https://emr.test:9443"

func TestMergeCSP(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{
			name: "no CSP",
			in:   http.Header{"Content-Type": {"text/html"}},
			want: http.Header{"Content-Type": {"text/html"}, "Content-Security-Policy": {"frame-ancestors " + fa}},
		},
		{
			name: "one CSP without frame-ancestors",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self'; img-src * data:"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; img-src * data:; frame-ancestors " + fa}},
		},
		{
			name: "odd whitespace of other directives kept",
			in:   http.Header{"Content-Security-Policy": {"default-src  'self' ;img-src\t*"}},
			want: http.Header{"Content-Security-Policy": {"default-src  'self' ;img-src\t*; frame-ancestors " + fa}},
		},
		{
			name: "trailing semicolon",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self';"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}},
		},
		{
			name: "trailing semicolons and whitespace",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self' ; ;  "}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}},
		},
		{
			name: "frame-ancestors first",
			in:   http.Header{"Content-Security-Policy": {"frame-ancestors 'none'; default-src 'self'"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}},
		},
		{
			name: "frame-ancestors middle",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors 'none'; script-src 'nonce-abc'"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; script-src 'nonce-abc'; frame-ancestors " + fa}},
		},
		{
			name: "frame-ancestors last",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors 'self'"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}},
		},
		{
			name: "frame-ancestors last with trailing semicolon",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors 'self';"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}},
		},
		{
			name: "odd casing",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self'; Frame-Ancestors https://x.test; FRAME-ANCESTORS 'none'"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}},
		},
		{
			name: "frame-ancestors alone",
			in:   http.Header{"Content-Security-Policy": {"frame-ancestors 'none'"}},
			want: http.Header{"Content-Security-Policy": {"frame-ancestors " + fa}},
		},
		{
			name: "frame-ancestors with no value",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors; img-src *"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; img-src *; frame-ancestors " + fa}},
		},
		{
			name: "empty directives kept",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self';; frame-ancestors 'none'; ;img-src *"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self';; ;img-src *; frame-ancestors " + fa}},
		},
		{
			name: "lookalike names are other directives",
			in:   http.Header{"Content-Security-Policy": {"frame-ancestors-x a; frame-ancestors'none'; report-uri /frame-ancestors"}},
			want: http.Header{"Content-Security-Policy": {"frame-ancestors-x a; frame-ancestors'none'; report-uri /frame-ancestors; frame-ancestors " + fa}},
		},
		{
			name: "several CSP headers",
			in: http.Header{"Content-Security-Policy": {
				"default-src 'self'",
				"frame-ancestors 'none'; upgrade-insecure-requests",
				"script-src 'self'; frame-ancestors https://old.test",
			}},
			want: http.Header{"Content-Security-Policy": {
				"default-src 'self'; frame-ancestors " + fa,
				"upgrade-insecure-requests",
				"script-src 'self'",
			}},
		},
		{
			name: "first header only frame-ancestors",
			in: http.Header{"Content-Security-Policy": {
				"frame-ancestors 'none'",
				"default-src 'self'",
			}},
			want: http.Header{"Content-Security-Policy": {
				"default-src 'self'; frame-ancestors " + fa,
			}},
		},
		{
			name: "comma-separated policies",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors 'none', script-src 'self'; frame-ancestors 'self', img-src *"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self', script-src 'self', img-src *; frame-ancestors " + fa}},
		},
		{
			name: "policy of only frame-ancestors dropped with its comma",
			in:   http.Header{"Content-Security-Policy": {"frame-ancestors 'none', default-src 'self', frame-ancestors 'self'; ,img-src *"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self',img-src *; frame-ancestors " + fa}},
		},
		{
			name: "trailing comma",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self',"}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}},
		},
		{
			name: "empty CSP value",
			in:   http.Header{"Content-Security-Policy": {""}},
			want: http.Header{"Content-Security-Policy": {"frame-ancestors " + fa}},
		},
		{
			name: "report-only stripped, nothing added",
			in: http.Header{
				"Content-Security-Policy-Report-Only": {"default-src 'self'; Frame-Ancestors 'none'; report-uri /csp"},
			},
			want: http.Header{
				"Content-Security-Policy-Report-Only": {"default-src 'self'; report-uri /csp"},
				"Content-Security-Policy":             {"frame-ancestors " + fa},
			},
		},
		{
			name: "report-only of only frame-ancestors removed",
			in: http.Header{
				"Content-Security-Policy":             {"default-src 'self'"},
				"Content-Security-Policy-Report-Only": {"frame-ancestors 'none'"},
			},
			want: http.Header{
				"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa},
			},
		},
		{
			name: "report-only without frame-ancestors untouched",
			in: http.Header{
				"Content-Security-Policy-Report-Only": {"script-src 'self' ;"},
			},
			want: http.Header{
				"Content-Security-Policy-Report-Only": {"script-src 'self' ;"},
				"Content-Security-Policy":             {"frame-ancestors " + fa},
			},
		},
		{
			name: "X-Frame-Options DENY removed",
			in:   http.Header{"X-Frame-Options": {"DENY"}},
			want: http.Header{"Content-Security-Policy": {"frame-ancestors " + fa}},
		},
		{
			name: "X-Frame-Options SAMEORIGIN removed",
			in:   http.Header{"X-Frame-Options": {"SAMEORIGIN"}, "Content-Security-Policy": {"frame-ancestors 'self'"}},
			want: http.Header{"Content-Security-Policy": {"frame-ancestors " + fa}},
		},
		{
			name: "already merged",
			in:   http.Header{"Content-Security-Policy": {"default-src 'self' ;img-src *; frame-ancestors " + fa}},
			want: http.Header{"Content-Security-Policy": {"default-src 'self' ;img-src *; frame-ancestors " + fa}},
		},
		{
			name: "right value but a second one elsewhere",
			in:   http.Header{"Content-Security-Policy": {"frame-ancestors " + fa, "frame-ancestors 'none'"}},
			want: http.Header{"Content-Security-Policy": {"frame-ancestors " + fa}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			MergeCSP(h, fa)
			if !reflect.DeepEqual(h, tt.want) {
				t.Fatalf("MergeCSP(%q)\n got %q\nwant %q", tt.in, h, tt.want)
			}
			// Idempotent: a response merged twice (an error page of the
			// gateway, a retried handler) must not change again.
			again := h.Clone()
			MergeCSP(again, fa)
			if !reflect.DeepEqual(again, h) {
				t.Fatalf("MergeCSP is not idempotent:\nonce  %q\ntwice %q", h, again)
			}
			if n := countDirectives(h[cspHeader]); n != 1 {
				t.Fatalf("%d frame-ancestors directives in %q, want exactly 1", n, h[cspHeader])
			}
		})
	}
}

// directives parses values the way a browser does, independently of the code
// under test: the non-empty directives in order, whitespace trimmed, and how
// many of them are frame-ancestors.
func directives(vs []string) (others []string, frameAncestors int) {
	const ws = " \t\n\f\r"
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			for _, d := range strings.Split(p, ";") {
				d = strings.Trim(d, ws)
				if d == "" {
					continue
				}
				name := d
				if i := strings.IndexAny(d, ws); i >= 0 {
					name = d[:i]
				}
				lower := strings.Map(func(r rune) rune {
					if 'A' <= r && r <= 'Z' {
						return r + ('a' - 'A')
					}
					return r
				}, name)
				if lower == "frame-ancestors" {
					frameAncestors++
				} else {
					others = append(others, d)
				}
			}
		}
	}
	return others, frameAncestors
}

func countDirectives(vs []string) int {
	_, n := directives(vs)
	return n
}

// FuzzMergeCSP checks what MergeCSP promises on any upstream policy: one
// frame-ancestors, ours; every other directive kept, in order; none left in
// report-only policies; and a second run changes nothing.
func FuzzMergeCSP(f *testing.F) {
	for _, seed := range [][2]string{
		{"default-src 'self'; frame-ancestors 'none'", ""},
		{"frame-ancestors 'none', script-src 'self'; Frame-Ancestors *,", "frame-ancestors 'none'"},
		{";; ,, ; frame-ancestors", "a; frame-ancestors x, b"},
		{"a, frame-ancestors " + fa, "frame-ancestors\t'self'"},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, csp, reportOnly string) {
		in := http.Header{
			"Content-Security-Policy":             {csp, "img-src *; frame-ancestors 'self'"},
			"Content-Security-Policy-Report-Only": {reportOnly},
			"X-Frame-Options":                     {"DENY"},
		}
		wantOthers, _ := directives(in[cspHeader])
		wantReport, _ := directives(in[cspReportOnlyHeader])
		h := in.Clone()
		MergeCSP(h, fa)
		others, n := directives(h[cspHeader])
		if n != 1 || !strings.HasSuffix(h[cspHeader][0], "frame-ancestors "+fa) {
			t.Fatalf("%q: %d frame-ancestors, want ours only", h[cspHeader], n)
		}
		if !reflect.DeepEqual(others, wantOthers) {
			t.Fatalf("directives changed:\n in %q\nout %q", wantOthers, others)
		}
		report, n := directives(h[cspReportOnlyHeader])
		if n != 0 || !reflect.DeepEqual(report, wantReport) {
			t.Fatalf("report-only %q from %q", h[cspReportOnlyHeader], reportOnly)
		}
		if _, ok := h[xFrameOptions]; ok {
			t.Fatal("X-Frame-Options kept")
		}
		again := h.Clone()
		MergeCSP(again, fa)
		if !reflect.DeepEqual(again, h) {
			t.Fatalf("not idempotent:\nonce  %q\ntwice %q", h, again)
		}
	})
}

func TestMergeCSPEmptyValueMeansNone(t *testing.T) {
	h := http.Header{}
	MergeCSP(h, "")
	if got := h.Get("Content-Security-Policy"); got != "frame-ancestors 'none'" {
		t.Fatalf("got %q", got)
	}
	h = http.Header{}
	MergeCSP(h, "'none'")
	if got := h.Get("Content-Security-Policy"); got != NoFraming {
		t.Fatalf("got %q, want NoFraming", got)
	}
}

func TestMergeCSPAlreadyMergedDoesNotAllocate(t *testing.T) {
	h := http.Header{"Content-Security-Policy": {"default-src 'self'; frame-ancestors " + fa}}
	if n := testing.AllocsPerRun(100, func() { MergeCSP(h, fa) }); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

func TestRewriteSetCookies(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{
			name: "plain cookie",
			in:   []string{"sid=abc"},
			want: []string{"sid=abc; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "SameSite=Lax replaced in place",
			in:   []string{"sid=abc; Path=/; SameSite=Lax; HttpOnly"},
			want: []string{"sid=abc; Path=/; SameSite=None; HttpOnly; Secure; Partitioned"},
		},
		{
			name: "SameSite=Strict",
			in:   []string{"sid=abc; SameSite=Strict; Secure"},
			want: []string{"sid=abc; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "samesite=none lower case normalized",
			in:   []string{"sid=abc; samesite=none; Secure; Partitioned"},
			want: []string{"sid=abc; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "SameSite without value",
			in:   []string{"sid=abc; SameSite; Secure"},
			want: []string{"sid=abc; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "duplicate SameSite",
			in:   []string{"sid=abc; SameSite=Lax; Path=/; SameSite=Strict"},
			want: []string{"sid=abc; SameSite=None; Path=/; Secure; Partitioned"},
		},
		{
			name: "odd casing",
			in:   []string{"sid=abc; secure; samesite=strict; httponly; PARTITIONED"},
			want: []string{"sid=abc; secure; SameSite=None; httponly; PARTITIONED"},
		},
		{
			name: "no space after semicolons",
			in:   []string{"sid=abc;Path=/;SameSite=Lax"},
			want: []string{"sid=abc;Path=/;SameSite=None; Secure; Partitioned"},
		},
		{
			name: "Domain kept",
			in:   []string{"pref=1; Domain=portal.test; Path=/app"},
			want: []string{"pref=1; Domain=portal.test; Path=/app; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "Max-Age kept",
			in:   []string{"pref=1; Max-Age=3600; HttpOnly"},
			want: []string{"pref=1; Max-Age=3600; HttpOnly; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "Expires with commas in the date",
			in:   []string{"pref=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/"},
			want: []string{"pref=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "deletion with Max-Age=0",
			in:   []string{"sid=; Max-Age=0; Path=/"},
			want: []string{"sid=; Max-Age=0; Path=/; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "deletion with past Expires",
			in:   []string{"sid=deleted; Expires=Thu, 01 Jan 1970 00:00:00 GMT"},
			want: []string{"sid=deleted; Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "unknown attributes kept in order",
			in:   []string{"a=b; Priority=High; Foo; Bar=baz=qux"},
			want: []string{"a=b; Priority=High; Foo; Bar=baz=qux; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "trailing semicolon",
			in:   []string{"a=b; Path=/;"},
			want: []string{"a=b; Path=/; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "trailing semicolons and whitespace",
			in:   []string{"a=b; Path=/ ; ; "},
			want: []string{"a=b; Path=/; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "value with quotes and equals",
			in:   []string{`a="x=y"; Secure`},
			want: []string{`a="x=y"; Secure; SameSite=None; Partitioned`},
		},
		{
			name: "already partitioned",
			in:   []string{"__Host-s=1; Path=/; Secure; HttpOnly; SameSite=None; Partitioned"},
			want: []string{"__Host-s=1; Path=/; Secure; HttpOnly; SameSite=None; Partitioned"},
		},
		{
			name: "partitioned but Lax",
			in:   []string{"s=1; Secure; Partitioned; SameSite=Lax"},
			want: []string{"s=1; Secure; Partitioned; SameSite=None"},
		},
		{
			name: "Secure with a value counts",
			in:   []string{"s=1; Secure=yes"},
			want: []string{"s=1; Secure=yes; SameSite=None; Partitioned"},
		},
		{
			name: "space before equals is not trusted as a flag",
			in:   []string{"s=1; Secure =x; Partitioned\f"},
			want: []string{"s=1; Secure =x; Partitioned\f; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "SameSite with spaces around equals replaced",
			in:   []string{"s=1; SameSite = Lax ; Secure; Partitioned"},
			want: []string{"s=1; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "Unicode lookalike is not Secure",
			in:   []string{"s=1; \u017Fecure"},
			want: []string{"s=1; \u017Fecure; SameSite=None; Secure; Partitioned"},
		},
		{
			name: "malformed: no equals",
			in:   []string{"justavalue; Path=/"},
			want: []string{"justavalue; Path=/"},
		},
		{
			name: "malformed: equals only in attributes",
			in:   []string{"token; SameSite=Lax"},
			want: []string{"token; SameSite=Lax"},
		},
		{
			name: "malformed: empty name",
			in:   []string{"=value; SameSite=Lax"},
			want: []string{"=value; SameSite=Lax"},
		},
		{
			name: "malformed: blank name",
			in:   []string{"  =value"},
			want: []string{"  =value"},
		},
		{
			name: "malformed: empty",
			in:   []string{""},
			want: []string{""},
		},
		{
			name: "several Set-Cookie headers",
			in: []string{
				"a=1; SameSite=Lax",
				"broken",
				"b=2; Secure; SameSite=None; Partitioned",
				"c=3; Domain=.portal.test; samesite=strict; secure",
			},
			want: []string{
				"a=1; SameSite=None; Secure; Partitioned",
				"broken",
				"b=2; Secure; SameSite=None; Partitioned",
				"c=3; Domain=.portal.test; SameSite=None; secure; Partitioned",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Set-Cookie": append([]string(nil), tt.in...), "Content-Type": {"text/html"}}
			RewriteSetCookies(h)
			if got := h["Set-Cookie"]; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("RewriteSetCookies(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if got := h.Get("Content-Type"); got != "text/html" {
				t.Fatalf("other header changed: %q", got)
			}
			RewriteSetCookies(h)
			if got := h["Set-Cookie"]; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("not idempotent: %q", got)
			}
			// What net/http makes of it must agree: the browser-facing
			// attributes are set and the cookie itself is unchanged.
			for i, line := range h["Set-Cookie"] {
				c, err := http.ParseSetCookie(line)
				if err != nil {
					continue // malformed input, left as is
				}
				if c.SameSite != http.SameSiteNoneMode || !c.Secure || !c.Partitioned {
					t.Errorf("%q parses as SameSite=%v Secure=%v Partitioned=%v", line, c.SameSite, c.Secure, c.Partitioned)
				}
				if orig, err := http.ParseSetCookie(tt.in[i]); err == nil && (orig.Name != c.Name || orig.Value != c.Value || orig.Domain != c.Domain || orig.Path != c.Path || orig.MaxAge != c.MaxAge || !orig.Expires.Equal(c.Expires) || orig.HttpOnly != c.HttpOnly) {
					t.Errorf("%q changed other attributes of %q", line, tt.in[i])
				}
			}
		})
	}
}

func TestRewriteSetCookiesNoHeader(t *testing.T) {
	h := http.Header{"Content-Type": {"text/html"}}
	RewriteSetCookies(h)
	if _, ok := h["Set-Cookie"]; ok {
		t.Fatal("Set-Cookie added")
	}
}

func TestRewriteSetCookiesRightAlreadyDoesNotAllocate(t *testing.T) {
	h := http.Header{"Set-Cookie": {
		"a=1; Path=/; Secure; HttpOnly; SameSite=None; Partitioned",
		"b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; secure; SameSite=None; partitioned",
		"malformed",
	}}
	if n := testing.AllocsPerRun(100, func() { RewriteSetCookies(h) }); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

func BenchmarkMergeCSP(b *testing.B) {
	cases := []struct {
		name string
		h    http.Header
	}{
		{"none", http.Header{"Content-Type": {"text/html"}}},
		{"without frame-ancestors", http.Header{"Content-Security-Policy": {"default-src 'self'; script-src 'self' 'nonce-r4nd0m'; img-src * data:; style-src 'self' 'unsafe-inline'"}}},
		{"with frame-ancestors and XFO", http.Header{
			"Content-Security-Policy": {"default-src 'self'; frame-ancestors 'self'; script-src 'self' 'nonce-r4nd0m'; img-src * data:"},
			"X-Frame-Options":         {"SAMEORIGIN"},
		}},
		{"already merged", http.Header{"Content-Security-Policy": {"default-src 'self'; img-src * data:; frame-ancestors " + fa}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			// MergeCSP rewrites values in place: every round starts from
			// scratch copies, refilled without allocating.
			scratch := make(http.Header, len(c.h))
			for k, v := range c.h {
				scratch[k] = make([]string, len(v))
			}
			h := make(http.Header, len(c.h)+1)
			for b.Loop() {
				clear(h)
				for k, v := range c.h {
					h[k] = scratch[k][:copy(scratch[k], v)]
				}
				MergeCSP(h, fa)
			}
		})
	}
}

func BenchmarkRewriteSetCookies(b *testing.B) {
	cases := []struct {
		name string
		vs   []string
	}{
		{"typical portal cookies", []string{
			"PHPSESSID=0123456789abcdef0123456789abcdef; Path=/; HttpOnly; SameSite=Lax",
			"XSRF-TOKEN=eyJpdiI6IjEyMyJ9; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=7200; Path=/; Secure",
		}},
		{"already right", []string{
			"PHPSESSID=0123456789abcdef0123456789abcdef; Path=/; HttpOnly; Secure; SameSite=None; Partitioned",
			"XSRF-TOKEN=eyJpdiI6IjEyMyJ9; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/; Secure; SameSite=None; Partitioned",
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			vs := make([]string, len(c.vs))
			h := http.Header{"Set-Cookie": vs}
			for b.Loop() {
				copy(vs, c.vs)
				RewriteSetCookies(h)
			}
		})
	}
}

// FuzzRewriteSetCookies checks that any line net/http understands comes out
// as a partitioned cross-site cookie with the same name and value, and that a
// second run changes nothing.
func FuzzRewriteSetCookies(f *testing.F) {
	for _, seed := range []string{
		"a=b; SameSite=Lax; Path=/",
		"a=b; samesite=x; SAMESITE; secure;;",
		"a=b; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Partitioned ; ",
		"noequals; Secure",
		"=x",
		"0=;PArtitioned =", // net/http ignores a flag spelled so; browsers do not
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{"Set-Cookie": {line}}
		RewriteSetCookies(h)
		out := h["Set-Cookie"][0]
		pair, _, _ := strings.Cut(line, ";")
		name, _, ok := strings.Cut(pair, "=")
		if !ok || strings.Trim(name, " \t") == "" {
			if out != line {
				t.Fatalf("malformed %q rewritten to %q", line, out)
			}
			return
		}
		if orig, err := http.ParseSetCookie(line); err == nil {
			c, err := http.ParseSetCookie(out)
			if err != nil {
				t.Fatalf("%q became unparsable %q: %v", line, out, err)
			}
			if c.Name != orig.Name || c.Value != orig.Value || c.SameSite != http.SameSiteNoneMode || !c.Secure || !c.Partitioned {
				t.Fatalf("%q became %q", line, out)
			}
		}
		RewriteSetCookies(h)
		if again := h["Set-Cookie"][0]; again != out {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
	})
}
