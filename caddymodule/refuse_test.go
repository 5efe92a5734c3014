package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

// Every refused API request is audited once, with the client IP and, when the
// key was recognised, the credential.
func TestEveryAPIRefusalIsAudited(t *testing.T) {
	h := apiHandler(t, &Handler{})
	for _, c := range []struct {
		what, method, target, key, body string
		status                          int
		credential                      string
	}{
		{"no key", http.MethodPost, "/sso/tokens", "", `{}`, http.StatusUnauthorized, ""},
		{"wrong key", http.MethodPost, "/sso/tokens", "not-a-key-0123456789abcdef", `{}`, http.StatusUnauthorized, ""},
		{"wrong method", http.MethodGet, "/sso/tokens", apiKeyOrgA, "", http.StatusMethodNotAllowed, ""},
		{"not allowed to mint", http.MethodPost, "/sso/tokens", apiKeyRevoker, `{"userId":"u"}`, http.StatusForbidden, "revoker"},
		{"bad JSON", http.MethodPost, "/sso/tokens", apiKeyOrgA, `{"userId":`, http.StatusBadRequest, "emr-org-a"},
		{"unknown field", http.MethodPost, "/sso/tokens", apiKeyOrgA, `{"user":"org-a-1"}`, http.StatusBadRequest, "emr-org-a"},
		{"body too large", http.MethodPost, "/sso/tokens", apiKeyOrgA, `{"userId":"` + strings.Repeat("a", maxMintBody) + `"}`, http.StatusBadRequest, "emr-org-a"},
		{"user out of scope", http.MethodPost, "/sso/tokens", apiKeyOrgA, `{"userId":"org-b-1"}`, http.StatusForbidden, "emr-org-a"},
		{"no userId", http.MethodPost, "/sso/tokens", apiKeyOrgA, `{}`, http.StatusBadRequest, "emr-org-a"},
		{"claim not allowed", http.MethodPost, "/sso/tokens", apiKeyOrgA, `{"userId":"org-a-1","claims":{"admin":"yes"}}`, http.StatusForbidden, "emr-org-a"},
		{"bad redirect", http.MethodPost, "/sso/tokens", apiKeyOrgA, `{"userId":"org-a-1","redirect":"https://evil.test/"}`, http.StatusBadRequest, "emr-org-a"},
		{"access without userId", http.MethodGet, "/sso/access", apiKeyOrgA, "", http.StatusBadRequest, "emr-org-a"},
		{"revoke without userId", http.MethodDelete, "/sso/sessions", apiKeyPartner, "", http.StatusBadRequest, "partner"},
	} {
		before := h.logs.FilterMessage("rejected").Len()
		w, _ := h.do(t, c.method, c.target, c.key, c.body)
		if w.Code != c.status {
			t.Errorf("%s: %d %s, want %d", c.what, w.Code, w.Body, c.status)
			continue
		}
		entries := h.logs.FilterMessage("rejected").All()[before:]
		if len(entries) != 1 {
			t.Errorf("%s: %d rejected events, want 1", c.what, len(entries))
			continue
		}
		f := entries[0].ContextMap()
		if f["client_ip"] != "192.0.2.1" {
			t.Errorf("%s: client_ip %v, want 192.0.2.1", c.what, f["client_ip"])
		}
		if got, _ := f["credential"].(string); got != c.credential {
			t.Errorf("%s: credential %q, want %q", c.what, got, c.credential)
		}
		if f["reason"] == "" || f["reason"] == nil {
			t.Errorf("%s: no reason", c.what)
		}
	}
}
