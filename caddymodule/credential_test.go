package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ssogate/ssogate/internal/principal"
	"github.com/ssogate/ssogate/plugins/store"
)

func TestCredentialProvisionRefuses(t *testing.T) {
	good := hashKey("a-good-key-for-the-tests")
	for _, tc := range []struct {
		name string
		c    Credential
		want string // in the error
	}{
		{"no id", Credential{KeySHA256: good, User: "u"}, "no id"},
		{"key not hex", Credential{ID: "c", KeySHA256: strings.Repeat("z", 64), User: "u"}, "64 hex"},
		{"key too short", Credential{ID: "c", KeySHA256: good[:62], User: "u"}, "64 hex"},
		{"the key itself", Credential{ID: "c", KeySHA256: "a-good-key-for-the-tests", User: "u"}, "64 hex"},
		{"user and users", Credential{ID: "c", KeySHA256: good, User: "u", Users: []string{"*"}}, "exclude"},
		{"no scope", Credential{ID: "c", KeySHA256: good}, "fixed user or users"},
		{"empty pattern", Credential{ID: "c", KeySHA256: good, Users: []string{""}}, "empty users pattern"},
		{"claim key", Credential{ID: "c", KeySHA256: good, User: "u", Claims: map[string]string{"a b": "x"}}, "claim key"},
		{"claim value", Credential{ID: "c", KeySHA256: good, User: "u", Claims: map[string]string{"g": "a\nb"}}, "control"},
		{"request claim key", Credential{ID: "c", KeySHA256: good, User: "u", RequestClaims: []string{"a;b"}}, "request_claims: claim key"},
		{"request claim id", Credential{ID: "c", KeySHA256: good, Users: []string{"*"}, RequestClaims: []string{"id"}}, "reserved for the user id"},
		{"fixed claim id", Credential{ID: "c", KeySHA256: good, Users: []string{"*"}, Claims: map[string]string{"id": "x"}}, "reserved for the user id"},
		{"padded fixed user", Credential{ID: "c", KeySHA256: good, User: " hcp-7"}, "white space"},
		{"request claim fixed", Credential{ID: "c", KeySHA256: good, User: "u", Claims: map[string]string{"group": "a"}, RequestClaims: []string{"group"}}, "fixed claim"},
		{"unknown permission", Credential{ID: "c", KeySHA256: good, User: "u", Allow: []string{"mint", "admin"}}, "unknown permission"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newCredentials([]*Credential{&tc.c})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCredentialsRefuseDuplicates(t *testing.T) {
	a := &Credential{ID: "a", KeySHA256: hashKey("key-one-for-the-tests"), User: "u"}
	if _, err := newCredentials([]*Credential{a, {ID: "a", KeySHA256: hashKey("key-two-for-the-tests"), User: "u"}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("same id twice: err = %v", err)
	}
	// Two credentials with one key: whichever matched would be a guess.
	if _, err := newCredentials([]*Credential{a, {ID: "b", KeySHA256: strings.ToUpper(a.KeySHA256), User: "v"}}); err == nil || !strings.Contains(err.Error(), "same key") {
		t.Errorf("same key twice: err = %v", err)
	}
}

func TestCredentialDefaults(t *testing.T) {
	c := &Credential{ID: "c", KeySHA256: hashKey("a-good-key-for-the-tests"), Users: []string{"*"}}
	if _, err := newCredentials([]*Credential{c}); err != nil {
		t.Fatal(err)
	}
	if !c.mint || c.revoke {
		t.Errorf("default permissions: mint %v revoke %v, want mint only", c.mint, c.revoke)
	}
	if len(c.settable) != 0 {
		t.Errorf("default request claims: %v, want none", c.settable)
	}
}

func TestUsersPatterns(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		user     string
		want     bool
	}{
		{[]string{"*"}, "anyone", true},
		{[]string{"org-a-*"}, "org-a-17", true},
		{[]string{"org-a-*"}, "org-a-", true},
		{[]string{"org-a-*"}, "org-b-17", false},
		{[]string{"org-a-*"}, "xorg-a-17", false}, // anchored at the start
		{[]string{"*-org-a"}, "u-org-a-x", false}, // and at the end
		{[]string{"hcp-?"}, "hcp-7", true},
		{[]string{"hcp-?"}, "hcp-77", false},
		{[]string{"a.b"}, "axb", false},    // only * and ? are special
		{[]string{"(a|b)"}, "a", false},    // regexp syntax is literal
		{[]string{"(a|b)"}, "(a|b)", true}, // ... and matches itself
		{[]string{"org-a-*", "admin"}, "admin", true},
		{[]string{"org-a-*", "admin"}, "admin2", false},
	} {
		c := &Credential{ID: "c", KeySHA256: hashKey("a-good-key-for-the-tests"), Users: tc.patterns}
		if err := c.provision(); err != nil {
			t.Fatal(err)
		}
		if got := c.mayActFor(tc.user); got != tc.want {
			t.Errorf("users %q, user %q: mayActFor = %v, want %v", tc.patterns, tc.user, got, tc.want)
		}
	}
}

func TestScopeUser(t *testing.T) {
	fixed := &Credential{ID: "clinic-7", KeySHA256: hashKey("a-good-key-for-the-tests"), User: "hcp-7"}
	pattern := &Credential{ID: "org-a", KeySHA256: hashKey("another-key-for-the-tests"), Users: []string{"org-a-*"}}
	if _, err := newCredentials([]*Credential{fixed, pattern}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		c         *Credential
		requested string
		want      string // the user, or the problem code
	}{
		{"fixed, none asked", fixed, "", "hcp-7"},
		{"fixed, itself asked", fixed, "hcp-7", "hcp-7"},
		{"fixed, another asked", fixed, "hcp-8", "forbidden_scope"},
		{"pattern, inside", pattern, "org-a-1", "org-a-1"},
		{"pattern, outside", pattern, "org-b-1", "forbidden_scope"},
		{"pattern, none asked", pattern, "", "bad_request"},
		{"pattern, control char", pattern, "org-a-\n1", "bad_request"},
		{"pattern, too long", pattern, "org-a-" + strings.Repeat("x", 300), "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, p := tc.c.scopeUser(tc.requested)
			got := user
			if p != nil {
				got = p.code
			}
			if got != tc.want {
				t.Errorf("scopeUser(%q) = %q, want %q", tc.requested, got, tc.want)
			}
		})
	}
}

func TestScopeClaims(t *testing.T) {
	c := &Credential{
		ID: "org-a", KeySHA256: hashKey("a-good-key-for-the-tests"), Users: []string{"*"},
		Claims:        map[string]string{"group": "org-a"},
		RequestClaims: []string{"role", "ward"},
	}
	if err := c.provision(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		requested map[string]string
		want      string // the merged claims as k=v;…, or the problem code
	}{
		{"none", nil, "group=org-a"},
		{"empty", map[string]string{}, "group=org-a"},
		{"listed", map[string]string{"role": "nurse"}, "group=org-a;role=nurse"},
		{"two listed", map[string]string{"role": "nurse", "ward": "3"}, "group=org-a;role=nurse;ward=3"},
		{"not listed", map[string]string{"admin": "true"}, "forbidden_scope"},
		{"fixed", map[string]string{"group": "org-b"}, "forbidden_scope"},
		{"fixed, same value", map[string]string{"group": "org-a"}, "forbidden_scope"},
		{"listed and not", map[string]string{"role": "nurse", "admin": "true"}, "forbidden_scope"},
		{"control character", map[string]string{"role": "a\x00b"}, "bad_request"},
		{"too long", map[string]string{"role": strings.Repeat("x", 257)}, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, p := c.scopeClaims(tc.requested)
			got := ""
			if p != nil {
				got = p.code
			} else {
				got = formatClaims(claims)
			}
			if got != tc.want {
				t.Errorf("scopeClaims(%v) = %q, want %q", tc.requested, got, tc.want)
			}
		})
	}
	if c.Claims["role"] != "" {
		t.Errorf("a request changed the credential's own claims: %v", c.Claims)
	}
}

func TestAuthenticate(t *testing.T) {
	a := &Credential{ID: "a", KeySHA256: hashKey("key-of-a-0123456789"), User: "u"}
	b := &Credential{ID: "b", KeySHA256: hashKey("key-of-b-0123456789"), User: "v"}
	cs, err := newCredentials([]*Credential{a, b})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header string
		want   string // credential id, "" for none
	}{
		{"Bearer key-of-a-0123456789", "a"},
		{"Bearer key-of-b-0123456789", "b"},
		{"bearer key-of-b-0123456789", "b"},  // the scheme is case-insensitive
		{"Bearer key-of-b-0123456789 ", "b"}, // surrounding space is not the key
		{"Bearer key-of-c-0123456789", ""},   // wrong key
		{"Bearer key-of-a-012345678", ""},    // a prefix of a key
		{"Bearer " + a.KeySHA256, ""},        // the hash is not the key
		{"Basic key-of-a-0123456789", ""},    // another scheme
		{"key-of-a-0123456789", ""},          // no scheme
		{"Bearer ", ""},                      // nothing
		{"", ""},
	} {
		r, _ := http.NewRequest(http.MethodPost, "/sso/tokens", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		got := ""
		if c := cs.authenticate(r); c != nil {
			got = c.ID
		}
		if got != tc.want {
			t.Errorf("Authorization %q: credential %q, want %q", tc.header, got, tc.want)
		}
	}
}

func TestCheckGrant(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    store.Token
		ok   bool
	}{
		{"user only", store.Token{UserID: "u1"}, true},
		{"claims", store.Token{UserID: "u1", Claims: map[string]string{"group": "org-a"}}, true},
		{"no user", store.Token{Claims: map[string]string{"group": "org-a"}}, false},
		{"newline in user", store.Token{UserID: "u1\r\nX-Forwarded-User: admin"}, false},
		{"long user", store.Token{UserID: strings.Repeat("u", 257)}, false},
		{"bad claim key", store.Token{UserID: "u1", Claims: map[string]string{"a;b": "x"}}, false},
		{"bad claim value", store.Token{UserID: "u1", Claims: map[string]string{"a": "x\ny"}}, false},
		{"padded user", store.Token{UserID: " alias-user "}, false},
		{"zero-width user", store.Token{UserID: "a\u200bb"}, false},
		{"claim id", store.Token{UserID: "u1", Claims: map[string]string{"id": "admin"}}, false},
	} {
		if err := principal.Check(tc.t.UserID, tc.t.Claims); (err == nil) != tc.ok {
			t.Errorf("%s: principal.Check = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// formatClaims writes claims as the upstream sees them.
func formatClaims(claims map[string]string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	h := &Handler{UserHeader: "X-User", ClaimsHeader: "X-Claims"}
	h.applyIdentity(r, newIdentity(store.Session{UserID: "u", Claims: claims}))
	return r.Header.Get("X-Claims")
}
