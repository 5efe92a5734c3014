package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const testKey = "sk_test_0123456789abcdef0123456789abcdef"

// seen is what the fake gateway observed of one request.
type seen struct {
	method, path, rawQuery, userID string
	auth, accept, contentType      string
	body                           string
}

// gateway starts a server that records each request and answers with
// status, content type and body.
func gateway(t *testing.T, status int, contentType, body string) (*httptest.Server, *seen) {
	t.Helper()
	var s seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s = seen{
			method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery, userID: r.URL.Query().Get("userId"),
			auth: r.Header.Get("Authorization"), accept: r.Header.Get("Accept"),
			contentType: r.Header.Get("Content-Type"), body: string(b),
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &s
}

const mintResponse = `{
	"id": "tok_01",
	"ssoToken": "q3Zc6sWmJ1yJ0b2F9a8lJzq0GkQ1mFh1kVbE8m2b3xY",
	"userId": "user-42",
	"createdByApplicationId": "emr-org-a",
	"creationTimestamp": "2025-06-15T10:00:00Z",
	"expiresAt": "2025-06-15T10:00:30Z",
	"url": "https://portal.example.com/redirect/q3Zc6sWmJ1yJ0b2F9a8lJzq0GkQ1mFh1kVbE8m2b3xY"
}`

func TestMint(t *testing.T) {
	srv, s := gateway(t, http.StatusCreated, "application/json", mintResponse)
	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	tok, err := c.Mint(context.Background(), MintRequest{
		UserID: "user-42", Redirect: "/patients/7#/tab", Claims: map[string]string{"role": "hcp"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Token{
		ID:                     "tok_01",
		SSOToken:               "q3Zc6sWmJ1yJ0b2F9a8lJzq0GkQ1mFh1kVbE8m2b3xY",
		UserID:                 "user-42",
		CreatedByApplicationID: "emr-org-a",
		CreationTimestamp:      time.Date(2025, 6, 15, 10, 0, 0, 0, time.UTC),
		ExpiresAt:              time.Date(2025, 6, 15, 10, 0, 30, 0, time.UTC),
		URL:                    "https://portal.example.com/redirect/q3Zc6sWmJ1yJ0b2F9a8lJzq0GkQ1mFh1kVbE8m2b3xY",
	}
	if !tok.CreationTimestamp.Equal(want.CreationTimestamp) || !tok.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("timestamps: got %v, %v", tok.CreationTimestamp, tok.ExpiresAt)
	}
	tok.CreationTimestamp, tok.ExpiresAt = want.CreationTimestamp, want.ExpiresAt
	if *tok != want {
		t.Errorf("got %+v\nwant %+v", *tok, want)
	}

	if s.method != http.MethodPost || s.path != "/sso/tokens" || s.rawQuery != "" {
		t.Errorf("request: %s %s?%s", s.method, s.path, s.rawQuery)
	}
	if s.auth != "Bearer "+testKey {
		t.Errorf("Authorization: %q", s.auth)
	}
	if s.accept != "application/json" || s.contentType != "application/json" {
		t.Errorf("Accept %q, Content-Type %q", s.accept, s.contentType)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(s.body), &body); err != nil {
		t.Fatalf("body %q: %v", s.body, err)
	}
	wantBody := `{"claims":{"role":"hcp"},"redirect":"/patients/7#/tab","userId":"user-42"}`
	if got, _ := json.Marshal(body); string(got) != wantBody {
		t.Errorf("body %s, want %s", got, wantBody)
	}
}

func TestMintEmptyRequest(t *testing.T) {
	// A credential with a fixed user sends no fields at all.
	srv, s := gateway(t, http.StatusCreated, "application/json", mintResponse)
	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	if _, err := c.Mint(context.Background(), MintRequest{}); err != nil {
		t.Fatal(err)
	}
	if s.body != "{}" {
		t.Errorf("body %q, want {}", s.body)
	}
}

func TestMintBadSuccessBody(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":     "<html>ok</html>",
		"no token":     `{"id":"x","url":"https://p/redirect/x"}`,
		"bad time":     `{"ssoToken":"x","url":"u","expiresAt":"tomorrow"}`,
		"empty object": `{}`,
	} {
		srv, _ := gateway(t, http.StatusCreated, "application/json", body)
		c := &Client{BaseURL: srv.URL, APIKey: testKey}
		if tok, err := c.Mint(context.Background(), MintRequest{UserID: "u"}); err == nil {
			t.Errorf("%s: got %+v", name, tok)
		}
	}
}

func TestAccess(t *testing.T) {
	for _, want := range []bool{true, false} {
		body, _ := json.Marshal(map[string]any{"userId": "a b&c=d/é", "access": want})
		srv, s := gateway(t, http.StatusOK, "application/json", string(body))
		c := &Client{BaseURL: srv.URL, APIKey: testKey}
		got, err := c.Access(context.Background(), "a b&c=d/é")
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("access %v, want %v", got, want)
		}
		if s.method != http.MethodGet || s.path != "/sso/access" || s.userID != "a b&c=d/é" {
			t.Errorf("request: %s %s ?%s", s.method, s.path, s.rawQuery)
		}
		if s.auth != "Bearer "+testKey || s.accept != "application/json" {
			t.Errorf("headers: %q %q", s.auth, s.accept)
		}
	}

	srv, _ := gateway(t, http.StatusOK, "application/json", `{"userId":"u"}`)
	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	if got, err := c.Access(context.Background(), "u"); err == nil {
		t.Errorf("missing access field: got %v", got)
	}
}

func TestRevokeUser(t *testing.T) {
	srv, s := gateway(t, http.StatusOK, "application/json", `{"userId":"user-42","revoked":3}`)
	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	n, err := c.RevokeUser(context.Background(), "user-42")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("revoked %d, want 3", n)
	}
	if s.method != http.MethodDelete || s.path != "/sso/sessions" || s.rawQuery != "userId=user-42" {
		t.Errorf("request: %s %s?%s", s.method, s.path, s.rawQuery)
	}
	if s.auth != "Bearer "+testKey || s.accept != "application/json" {
		t.Errorf("headers: %q %q", s.auth, s.accept)
	}

	srv, _ = gateway(t, http.StatusOK, "application/json", `{"userId":"user-42"}`)
	c = &Client{BaseURL: srv.URL, APIKey: testKey}
	if n, err := c.RevokeUser(context.Background(), "user-42"); err == nil {
		t.Errorf("missing revoked field: got %d", n)
	}
}

func TestAPIErrors(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        APIError
		wantText    string
	}{
		{
			"gateway JSON", http.StatusForbidden, "application/json",
			`{"error":"this credential may not mint for that user","code":"forbidden_scope"}`,
			APIError{403, "forbidden_scope", "this credential may not mint for that user"},
			"ssogate: 403 forbidden_scope: this credential may not mint for that user",
		},
		{
			"JSON without content type", http.StatusUnauthorized, "",
			`{"error":"missing or wrong API key","code":"unauthorized"}`,
			APIError{401, "unauthorized", "missing or wrong API key"},
			"ssogate: 401 unauthorized: missing or wrong API key",
		},
		{
			"HTML page", http.StatusBadGateway, "text/html; charset=utf-8",
			"<html><body><h1>502 Bad Gateway</h1></body></html>",
			APIError{502, "", "Bad Gateway"},
			"ssogate: 502: Bad Gateway",
		},
		{
			"plain text", http.StatusServiceUnavailable, "text/plain; charset=utf-8",
			"store unavailable\r\nretry later\x1b[31m\n",
			APIError{503, "", "store unavailable retry later[31m"},
			"ssogate: 503: store unavailable retry later[31m",
		},
		{
			"long plain text", http.StatusInternalServerError, "text/plain",
			strings.Repeat("é", 500),
			APIError{500, "", strings.Repeat("é", maxMessage/2) + "…"},
			"",
		},
		{
			"empty body", http.StatusTooManyRequests, "", "",
			APIError{429, "", "Too Many Requests"},
			"ssogate: 429: Too Many Requests",
		},
		{
			"unknown status", 599, "", "",
			APIError{599, "", "status 599"},
			"ssogate: 599: status 599",
		},
		{
			"JSON of another shape", http.StatusBadRequest, "application/json",
			`{"message":"nope"}`,
			APIError{400, "", "Bad Request"},
			"ssogate: 400: Bad Request",
		},
		{
			"key echoed back", http.StatusBadRequest, "application/json",
			`{"error":"bad header Bearer ` + testKey + `","code":"bad_request"}`,
			APIError{400, "bad_request", "bad header Bearer [redacted]"},
			"ssogate: 400 bad_request: bad header Bearer [redacted]",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := gateway(t, tc.status, tc.contentType, tc.body)
			c := &Client{BaseURL: srv.URL, APIKey: testKey}
			calls := map[string]func() error{
				"Mint": func() error {
					_, err := c.Mint(context.Background(), MintRequest{UserID: "u"})
					return err
				},
				"Access": func() error {
					_, err := c.Access(context.Background(), "u")
					return err
				},
				"RevokeUser": func() error {
					_, err := c.RevokeUser(context.Background(), "u")
					return err
				},
			}
			for name, call := range calls {
				err := call()
				var apiErr *APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("%s: %v (%T), want *APIError", name, err, err)
				}
				if *apiErr != tc.want {
					t.Errorf("%s: got %#v\nwant %#v", name, *apiErr, tc.want)
				}
				if tc.wantText != "" && err.Error() != tc.wantText {
					t.Errorf("%s: Error() = %q, want %q", name, err.Error(), tc.wantText)
				}
				if strings.Contains(err.Error(), testKey) {
					t.Errorf("%s: error contains the API key", name)
				}
			}
		})
	}
}

func TestBaseURL(t *testing.T) {
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		_, _ = io.WriteString(w, `{"userId":"u","access":true}`)
	}))
	t.Cleanup(srv.Close)

	for base, want := range map[string]string{
		srv.URL:                  "/sso/access",
		srv.URL + "/":            "/sso/access",
		srv.URL + "/gateway":     "/gateway/sso/access",
		srv.URL + "/gateway/":    "/gateway/sso/access",
		srv.URL + "/a/b//":       "/a/b/sso/access",
		srv.URL + "/gate%20way/": "/gate way/sso/access",
	} {
		c := &Client{BaseURL: base, APIKey: testKey}
		if _, err := c.Access(context.Background(), "u"); err != nil {
			t.Errorf("%s: %v", base, err)
			continue
		}
		if gotPath != want {
			t.Errorf("BaseURL %q: path %q, want %q", base, gotPath, want)
		}
	}

	for _, base := range []string{
		"", "portal.example.com", "/sso", "ftp://portal.example.com",
		"https://", "https://portal.example.com/?x=1", "https://portal.example.com/#f",
		"https://user:" + testKey + "@portal example.com",
	} {
		c := &Client{BaseURL: base, APIKey: testKey}
		_, err := c.Access(context.Background(), "u")
		if err == nil {
			t.Errorf("BaseURL %q accepted", base)
			continue
		}
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("BaseURL %q: error contains the key: %v", base, err)
		}
	}
}

func TestRefusedLocally(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent: %s %s", r.Method, r.URL)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	if _, err := c.Access(ctx, ""); err == nil {
		t.Error("Access with empty user id")
	}
	if _, err := c.RevokeUser(ctx, ""); err == nil {
		t.Error("RevokeUser with empty user id")
	}
	c.APIKey = ""
	if _, err := c.Mint(ctx, MintRequest{UserID: "u"}); err == nil {
		t.Error("Mint without API key")
	}
}

func TestContextCancel(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	// Close blocks until handlers return, so release first.
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{BaseURL: srv.URL, APIKey: testKey, HTTPClient: srv.Client()}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Mint(ctx, MintRequest{UserID: "u"})
		errc <- err
	}()
	<-arrived
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error contains the key: %v", err)
	}

	// Already cancelled: nothing is sent.
	if _, err := c.Access(ctx, "u"); !errors.Is(err, context.Canceled) {
		t.Errorf("pre-cancelled: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	if _, err := c.RevokeUser(ctx, "u"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var followed seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed = seen{method: r.Method, auth: r.Header.Get("Authorization")}
			_, _ = io.WriteString(w, mintResponse)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusPermanentRedirect)
	}))
	t.Cleanup(srv.Close)

	// The caller's client keeps its own redirect policy for its other uses.
	policyCalled := false
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		policyCalled = true
		return nil
	}}
	c := &Client{BaseURL: srv.URL, APIKey: testKey, HTTPClient: hc}
	_, err := c.Mint(context.Background(), MintRequest{UserID: "u"})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("got %v, want a 308 *APIError", err)
	}
	if followed.method != "" {
		t.Errorf("redirect followed: %+v", followed)
	}
	if policyCalled || hc.CheckRedirect == nil {
		t.Error("caller's CheckRedirect was used or replaced")
	}
}
